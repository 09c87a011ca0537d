//! Reads each section of the merged tree into its settings type, collecting every problem:
//! one section's (or one connection's) mistakes never hide another's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use config::{Map, Value};
use secrecy::SecretString;

use super::checks;
use super::connector::EnvLookup;
use super::declared::{self, ActorDraft};
use super::problem::{ConfigErrors, Problem};
use super::reader::{Problems, Table};
use super::secret::value_or_file;
use super::settings::*;
use crate::airbyte::{ApiKind, Auth};
use crate::cron::CronRule;

/// The tree as the config crate merged it, read and validated.
/// `env` answers the `${NAME}` references of connector configurations.
/// `base` is where relative `include` paths start (the config file's directory).
pub(super) fn read_config(
    tree: Map<String, Value>,
    env: EnvLookup<'_>,
    base: Option<&std::path::Path>,
) -> Result<Config, ConfigErrors> {
    let mut p = Problems::new();
    let mut root = Table::root(tree);
    let origins = super::include::read(&mut root, base, &mut p);

    let instances = instances(&mut root, &mut p);
    let store = store(root.table("store", &mut p), &mut p);
    let server = server(root.table("server", &mut p), &mut p);
    let workers = workers(root.table("workers", &mut p), &mut p);
    let defaults = defaults(root.table("defaults", &mut p), &mut p);
    let metrics = metrics(root.table("metrics", &mut p), &mut p);
    let log = log(root.table("log", &mut p), &mut p);
    let groups = groups(&mut root, &mut p);
    let notify = super::notify::receivers(&mut root, &mut p);
    let mut sources = declared::actors(&mut root, "sources", env, &mut p);
    let mut destinations = declared::actors(&mut root, "destinations", env, &mut p);
    let mut drafts = connections(&mut root, &defaults, &mut p);
    root.finish(&mut p);

    if let Some(instances) = &instances {
        checks::instances(
            instances,
            &mut drafts,
            &mut sources,
            &mut destinations,
            &mut p,
        );
    }
    checks::connections(&drafts, &groups, &mut p);
    checks::declarations(&drafts, &sources, &destinations, &mut p);

    let connections = settled(drafts);
    let actors = |drafts: Vec<ActorDraft>| -> Option<Vec<ActorSettings>> {
        drafts.into_iter().map(|d| d.settings).collect()
    };
    match (
        instances,
        connections,
        actors(sources),
        actors(destinations),
    ) {
        (Some(instances), Some(connections), Some(sources), Some(destinations)) if p.is_empty() => {
            Ok(Config {
                instances,
                store,
                server,
                workers,
                defaults,
                metrics,
                log,
                groups: groups.into_iter().filter_map(|g| g.settings).collect(),
                notify,
                connections,
                sources,
                destinations,
            })
        }
        _ => {
            if p.is_empty() {
                // Every path that leaves a section unbuilt records why; this is a guard
                // against a future one that forgets.
                p.push(Problem::new("", "the configuration is incomplete"));
            }
            origins.locate(&mut p);
            Err(ConfigErrors { problems: p })
        }
    }
}

/// Only `[store]` of the tree: the rest is neither read nor judged.
pub(super) fn read_store(tree: Map<String, Value>) -> Result<StoreSettings, ConfigErrors> {
    read_one_section(tree, "store", store)
}

/// Only `[server]` of the tree (its token read from `token_file` if given): the rest is
/// neither read nor judged.
pub(super) fn read_server(tree: Map<String, Value>) -> Result<ServerSettings, ConfigErrors> {
    read_one_section(tree, "server", server)
}

/// Only what the schedules need: `[defaults]` and `[[connections]]` (with the
/// files `include` names), for `cronbyte next`. Nothing else is read, so no secret
/// is; the connections' own problems are reported with their key paths.
pub(super) fn read_schedules(
    tree: Map<String, Value>,
    base: Option<&std::path::Path>,
) -> Result<Vec<ConnectionSettings>, ConfigErrors> {
    let mut p = Problems::new();
    let mut root = Table::root(tree);
    let origins = super::include::read(&mut root, base, &mut p);
    let defaults = defaults(root.table("defaults", &mut p), &mut p);
    let drafts = connections(&mut root, &defaults, &mut p);
    let connections = settled(drafts);
    match connections {
        Some(connections) if p.is_empty() => Ok(connections),
        _ => {
            if p.is_empty() {
                p.push(Problem::new("connections", "a connection is incomplete"));
            }
            origins.locate(&mut p);
            Err(ConfigErrors { problems: p })
        }
    }
}

/// Reads the section at `key` with `read`, reporting its problems (unknown keys in it
/// too). The root table is not finished: its other keys are none of this reader's business.
fn read_one_section<T>(
    tree: Map<String, Value>,
    key: &'static str,
    read: fn(Table, &mut Problems) -> T,
) -> Result<T, ConfigErrors> {
    let mut p = Problems::new();
    let mut root = Table::root(tree);
    let section = read(root.table(key, &mut p), &mut p);
    if p.is_empty() {
        Ok(section)
    } else {
        Err(ConfigErrors { problems: p })
    }
}

/// The Airbyte instances: `[instances.<name>]` tables, or `[airbyte]` as the one named
/// [`DEFAULT_INSTANCE`]. `None` when one of them is incomplete.
fn instances(root: &mut Table, p: &mut Problems) -> Option<BTreeMap<String, AirbyteSettings>> {
    if !root.has("instances") {
        return airbyte(root.table("airbyte", p), p)
            .map(|settings| BTreeMap::from([(DEFAULT_INSTANCE.to_string(), settings)]));
    }
    if root.has("airbyte") {
        let _ = root.take("airbyte");
        p.push(Problem::new(
            "airbyte",
            "give Airbyte either as [airbyte] (one instance) or as [instances.<name>] tables, \
             not both; [airbyte] is the instance named \"default\"",
        ));
    }
    let mut table = root.table("instances", p);
    let entries = table.drain();
    if entries.is_empty() {
        p.push(Problem::new(
            "instances",
            "names no instance: add an [instances.<name>] table with its base_url",
        ));
        return None;
    }
    let mut out = BTreeMap::new();
    let mut complete = true;
    for (name, value) in entries {
        let path = format!("instances.{name}");
        if !is_instance_name(&name) {
            p.push(Problem::new(
                &path,
                "an instance name is lower-case letters, digits, `_` and `-`, so that \
                 environment variables (CRONBYTE__INSTANCES__<NAME>__BASE_URL) can reach it",
            ));
            complete = false;
            continue;
        }
        match airbyte(Table::at(path, Some(value), p), p) {
            Some(settings) => {
                out.insert(name, settings);
            }
            None => complete = false,
        }
    }
    complete.then_some(out)
}

/// `[a-z0-9_-]+`: the config crate lower-cases environment keys, so only such a name
/// can be reached by an override.
pub(super) fn is_instance_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `[airbyte]` or one `[instances.<name>]`.
fn airbyte(mut t: Table, p: &mut Problems) -> Option<AirbyteSettings> {
    let base_url = t.required(
        "base_url",
        "the Airbyte API base URL is required, e.g. \"http://localhost:8000/api/v1\" \
         (api = \"config\") or \"https://api.airbyte.com/v1\" (api = \"public\")",
        p,
        |t, key, p| t.read(key, p, parse_base_url),
    );
    let api = t
        .choice(
            "api",
            &[("config", ApiKind::Config), ("public", ApiKind::Public)],
            p,
        )
        .unwrap_or_default();
    let auth = auth(t.table("auth", p), p);
    let request_timeout = t
        .positive_duration("request_timeout", p)
        .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
    let connect_timeout = t
        .positive_duration("connect_timeout", p)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let retry = retry(t.table("retry", p), p);
    let workspace = t.non_empty_string("workspace", p);
    let section = t.location().to_string();
    t.finish(p);
    Some(AirbyteSettings {
        section,
        base_url: base_url?,
        api,
        auth: auth?,
        request_timeout,
        connect_timeout,
        retry,
        workspace,
    })
}

/// An `http(s)` URL without credentials, query or fragment, trailing `/` trimmed. The
/// messages never repeat the URL: one with a password in it must not reach a log.
fn parse_base_url(value: &Value) -> Result<String, String> {
    let raw = match &value.kind {
        config::ValueKind::String(s) => s.trim().to_string(),
        _ => return Err("expected a URL string such as \"http://localhost:8000/api/v1\"".into()),
    };
    let url = reqwest::Url::parse(&raw).map_err(|e| format!("not a valid URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "must be an http:// or https:// URL, not {}://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials; put them in the instance's auth table".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query (?...) or fragment (#...)".into());
    }
    Ok(raw.trim_end_matches('/').to_string())
}

/// `[airbyte.retry]`.
fn retry(mut t: Table, p: &mut Problems) -> RetrySettings {
    let d = RetrySettings::default();
    let r = RetrySettings {
        max_retries: t.uint("max_retries", p).unwrap_or(d.max_retries),
        initial_backoff: t
            .duration("initial_backoff", p)
            .unwrap_or(d.initial_backoff),
        max_backoff: t.duration("max_backoff", p).unwrap_or(d.max_backoff),
        max_elapsed: t.duration("max_elapsed", p).unwrap_or(d.max_elapsed),
    };
    if r.initial_backoff > r.max_backoff {
        p.push(Problem::new(
            t.key_path("initial_backoff"),
            format!(
                "{} is more than max_backoff ({})",
                humantime::format_duration(r.initial_backoff),
                humantime::format_duration(r.max_backoff)
            ),
        ));
    }
    t.finish(p);
    r
}

/// The credential keys of `[airbyte.auth]`, with the kind each belongs to.
const CREDENTIAL_KEYS: [(&str, &str); 8] = [
    ("username", "basic"),
    ("password", "basic"),
    ("password_file", "basic"),
    ("token", "bearer"),
    ("token_file", "bearer"),
    ("client_id", "client_credentials"),
    ("client_secret", "client_credentials"),
    ("client_secret_file", "client_credentials"),
];

/// The kinds of `[airbyte.auth]`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AuthKind {
    None,
    Basic,
    Bearer,
    ClientCredentials,
}

impl AuthKind {
    fn name(self) -> &'static str {
        match self {
            AuthKind::None => "none",
            AuthKind::Basic => "basic",
            AuthKind::Bearer => "bearer",
            AuthKind::ClientCredentials => "client_credentials",
        }
    }
}

/// `[airbyte.auth]`. Only the chosen kind's keys may be given, so a leftover `token`
/// after switching to basic auth is caught rather than silently ignored.
fn auth(mut t: Table, p: &mut Problems) -> Option<Auth> {
    let kind_given = t.has("kind");
    let kind = t.choice(
        "kind",
        &[
            ("none", AuthKind::None),
            ("basic", AuthKind::Basic),
            ("bearer", AuthKind::Bearer),
            ("client_credentials", AuthKind::ClientCredentials),
        ],
        p,
    );
    let kind = if kind_given {
        kind
    } else {
        Some(AuthKind::None)
    };
    let Some(kind) = kind else {
        // A bad `kind` was reported; the credential keys can't be judged without one.
        for (key, _) in CREDENTIAL_KEYS {
            t.declare(key);
        }
        t.finish(p);
        return None;
    };

    let mut misplaced = false;
    for (key, belongs_to) in CREDENTIAL_KEYS {
        t.declare(key);
        if t.has(key) && belongs_to != kind.name() {
            misplaced = true;
            p.push(Problem::new(
                t.key_path(key),
                format!(
                    "does not belong to kind = \"{}\"; it is used with kind = \"{belongs_to}\"",
                    kind.name()
                ),
            ));
        }
    }

    let needs = |what: &str| format!("kind = \"{}\" needs {what}", kind.name());
    let auth = match kind {
        AuthKind::None => Some(Auth::None),
        AuthKind::Basic => {
            let username = t.required("username", &needs("`username`"), p, Table::non_empty_string);
            let password = value_or_file(&mut t, "password", "password_file", p);
            let password = required_secret(&t, password, "password", needs, p);
            match (username, password) {
                (Some(username), Some(password)) => Some(Auth::Basic { username, password }),
                _ => None,
            }
        }
        AuthKind::Bearer => {
            let token = value_or_file(&mut t, "token", "token_file", p);
            required_secret(&t, token, "token", needs, p).map(|token| Auth::Bearer { token })
        }
        AuthKind::ClientCredentials => {
            let client_id = t.required(
                "client_id",
                &needs("`client_id`"),
                p,
                Table::non_empty_string,
            );
            let secret = value_or_file(&mut t, "client_secret", "client_secret_file", p);
            let client_secret = required_secret(&t, secret, "client_secret", needs, p);
            match (client_id, client_secret) {
                (Some(client_id), Some(client_secret)) => Some(Auth::ClientCredentials {
                    client_id,
                    client_secret,
                }),
                _ => None,
            }
        }
    };
    // Keys of other kinds were reported above; drop them so they aren't also "unknown".
    for (key, _) in CREDENTIAL_KEYS {
        let _ = t.take(key);
    }
    t.finish(p);
    auth.filter(|_| !misplaced)
}

/// A secret that must be given (as `key` or `key_file`).
fn required_secret<T>(
    t: &Table,
    read: Option<Option<T>>,
    key: &str,
    needs: impl Fn(&str) -> String,
    p: &mut Problems,
) -> Option<T> {
    match read {
        Some(Some(secret)) => Some(secret),
        Some(None) => {
            p.push(Problem::new(
                t.key_path(key),
                format!("missing: {}", needs(&format!("`{key}` or `{key}_file`"))),
            ));
            None
        }
        None => None,
    }
}

/// `[store]`.
fn store(mut t: Table, p: &mut Problems) -> StoreSettings {
    let d = StoreSettings::default();
    let path_given = t.has("path");
    let path = t.file_path("path", p).unwrap_or(d.path);
    let url = value_or_file(&mut t, "url", "url_file", p).flatten();
    let password = value_or_file(&mut t, "password", "password_file", p).flatten();
    let url = match (url, password) {
        (Some(url), password) => postgres_url(&t, &url, password.as_ref(), p),
        (None, Some(_)) => {
            p.push(Problem::new(
                t.key_path("password"),
                "a password is for the PostgreSQL store: give `url` too",
            ));
            None
        }
        (None, None) => None,
    };
    if url.is_some() && path_given {
        p.push(Problem::new(
            t.key_path("path"),
            "give either `path` (a SQLite file) or `url` (PostgreSQL), not both",
        ));
    }
    let retention = t.retention("retention", p).unwrap_or(d.retention);
    let lease = t.positive_duration("lease", p).unwrap_or(d.lease);
    let lease_renewal = t
        .positive_duration("lease_renewal", p)
        .unwrap_or(d.lease_renewal);
    // A renewal must have time to fail and be tried again before the lease runs out.
    if lease_renewal * 2 >= lease {
        p.push(Problem::new(
            t.key_path("lease_renewal"),
            format!(
                "must be less than half of `lease` ({}), so that a failed renewal is tried again in time",
                humantime::format_duration(lease)
            ),
        ));
    }
    t.finish(p);
    StoreSettings {
        path,
        url,
        retention,
        lease,
        lease_renewal,
    }
}

/// `url` checked as a PostgreSQL URL, with `password` put in. No message repeats
/// the URL or any part of it: it may hold the password.
fn postgres_url(
    t: &Table,
    url: &SecretString,
    password: Option<&SecretString>,
    p: &mut Problems,
) -> Option<SecretString> {
    use secrecy::ExposeSecret;
    let problem = |p: &mut Problems, message: &str| {
        p.push(Problem::new(t.key_path("url"), message));
    };
    let Ok(mut parsed) = reqwest::Url::parse(url.expose_secret().trim()) else {
        problem(
            p,
            "is not a URL; write it as postgres://USER@HOST:PORT/DATABASE (not shown here: it may hold a password)",
        );
        return None;
    };
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        problem(p, "must start with postgres:// or postgresql://");
        return None;
    }
    if let Some(password) = password {
        if parsed.password().is_some() {
            p.push(Problem::new(
                t.key_path("password"),
                "the url holds a password already: give it in one place",
            ));
            return None;
        }
        if parsed.set_password(Some(password.expose_secret())).is_err() {
            problem(p, "cannot take a password");
            return None;
        }
    }
    Some(SecretString::from(parsed.to_string()))
}

/// `[server]`.
fn server(mut t: Table, p: &mut Problems) -> ServerSettings {
    let d = ServerSettings::default();
    let listen = t
        .read("listen", p, |v| match &v.kind {
            config::ValueKind::String(s) => s.trim().parse::<SocketAddr>().map_err(|_| {
                format!(
                    "expected an IP address and port such as \"127.0.0.1:9464\" or \
                     \"[::]:9464\", found {s:?}"
                )
            }),
            _ => Err("expected a string such as \"127.0.0.1:9464\"".into()),
        })
        .unwrap_or(d.listen);
    let token = value_or_file(&mut t, "token", "token_file", p).flatten();
    t.finish(p);
    ServerSettings { listen, token }
}

/// `[workers]`.
fn workers(mut t: Table, p: &mut Problems) -> WorkerSettings {
    let d = WorkerSettings::default();
    let w = WorkerSettings {
        poll_interval: t
            .positive_duration("poll_interval", p)
            .unwrap_or(d.poll_interval),
        max_concurrent_syncs: t
            .positive_uint("max_concurrent_syncs", p)
            .unwrap_or(d.max_concurrent_syncs),
        poll_concurrency: t
            .positive_uint("poll_concurrency", p)
            .unwrap_or(d.poll_concurrency),
    };
    t.finish(p);
    w
}

/// The words `on_overlap` takes.
const ON_OVERLAP: [(&str, OnOverlap); 3] = [
    ("skip", OnOverlap::Skip),
    ("attach", OnOverlap::Attach),
    ("queue", OnOverlap::Queue),
];

/// The words `misfire` takes.
const MISFIRE: [(&str, Misfire); 2] = [("skip", Misfire::Skip), ("run_once", Misfire::RunOnce)];

/// `[defaults]`.
fn defaults(mut t: Table, p: &mut Problems) -> Defaults {
    let d = Defaults::default();
    let out = Defaults {
        timezone: t.timezone("timezone", p).unwrap_or(d.timezone),
        timeout: t.optional_duration("timeout", p).unwrap_or(d.timeout),
        on_overlap: t
            .choice("on_overlap", &ON_OVERLAP, p)
            .unwrap_or(d.on_overlap),
        misfire: t.choice("misfire", &MISFIRE, p).unwrap_or(d.misfire),
        jitter: t.duration("jitter", p).unwrap_or(d.jitter),
        retries: t.uint("retries", p).unwrap_or(d.retries),
        retry_backoff: t.duration("retry_backoff", p).unwrap_or(d.retry_backoff),
        retry_backoff_max: t
            .duration("retry_backoff_max", p)
            .unwrap_or(d.retry_backoff_max),
    };
    check_backoff(&t, out.retry_backoff, out.retry_backoff_max, p);
    t.finish(p);
    out
}

/// `retry_backoff <= retry_backoff_max`, reported at `retry_backoff`.
fn check_backoff(t: &Table, backoff: Duration, max: Duration, p: &mut Problems) {
    if backoff > max {
        p.push(Problem::new(
            t.key_path("retry_backoff"),
            format!(
                "{} is more than retry_backoff_max ({})",
                humantime::format_duration(backoff),
                humantime::format_duration(max)
            ),
        ));
    }
}

/// `[metrics]`.
fn metrics(mut t: Table, p: &mut Problems) -> MetricsSettings {
    let d = MetricsSettings::default();
    let m = MetricsSettings {
        success_ratio_window: t
            .positive_duration("success_ratio_window", p)
            .unwrap_or(d.success_ratio_window),
    };
    t.finish(p);
    m
}

/// The plain levels `log.level` takes when it is not a list of directives.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `[log]`.
fn log(mut t: Table, p: &mut Problems) -> LogSettings {
    let d = LogSettings::default();
    let level = match t.take("level") {
        None => d.level,
        Some(value) => match log_level(&value) {
            Ok(level) => level,
            Err(message) => {
                p.push(t.problem("level", &value, message));
                d.level
            }
        },
    };
    let format = t
        .choice(
            "format",
            &[("human", LogFormat::Human), ("json", LogFormat::Json)],
            p,
        )
        .unwrap_or(d.format);
    t.finish(p);
    LogSettings { level, format }
}

/// A level (`info`) or tracing directives (`info,cronbyte=debug`). A lone word must be a
/// level: the filter syntax would read a misspelt level as a target name and log nothing.
fn log_level(value: &Value) -> Result<String, String> {
    let config::ValueKind::String(s) = &value.kind else {
        return Err("expected a string such as \"info\" or \"info,cronbyte=debug\"".into());
    };
    let s = s.trim();
    if !s.contains(['=', ',']) {
        return if LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s)) {
            Ok(s.to_lowercase())
        } else {
            Err(format!(
                "expected a level (off, error, warn, info, debug, trace) or directives such as \
                 \"info,cronbyte=debug\", found {s:?}{}",
                super::reader::did_you_mean(s, LEVELS, |l| format!("\"{l}\""))
            ))
        };
    }
    s.parse::<tracing_subscriber::filter::Targets>()
        .map(|_| s.to_string())
        .map_err(|e| format!("not a valid log filter {s:?}: {e}"))
}

/// One entry of a list of tables, or `None` (and a problem) if it is not a table.
pub(super) fn entry_table(path: String, item: Value, p: &mut Problems) -> Option<Table> {
    if matches!(item.kind, config::ValueKind::Table(_)) {
        Some(Table::at(path, Some(item), p))
    } else {
        // `Table::at` records "expected a table, found ...".
        let _ = Table::at(path, Some(item), p);
        None
    }
}

/// A `[[groups]]` entry as read, kept even when incomplete so its name still counts.
pub(super) struct GroupDraft {
    /// The name, if it was given and valid.
    pub(super) name: Option<String>,
    /// The settings, if every key was valid.
    pub(super) settings: Option<GroupSettings>,
}

/// `[[groups]]`.
fn groups(root: &mut Table, p: &mut Problems) -> Vec<GroupDraft> {
    let Some(items) = root.list("groups", "[[groups]] tables", p) else {
        return Vec::new();
    };
    let mut out: Vec<GroupDraft> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let Some(mut t) = entry_table(format!("groups[{i}]"), item, p) else {
            continue;
        };
        let name = t.required("name", "a group needs a name", p, Table::non_empty_string);
        let max_concurrent = t.required(
            "max_concurrent",
            "a group needs max_concurrent (at least 1)",
            p,
            Table::positive_uint::<usize>,
        );
        if let Some(n) = &name
            && let Some(j) = out.iter().position(|g| g.name.as_ref() == Some(n))
        {
            p.push(Problem::new(
                t.key_path("name"),
                format!("duplicate group name {n:?} (also groups[{j}])"),
            ));
        }
        t.finish(p);
        let settings = match (&name, max_concurrent) {
            (Some(name), Some(max_concurrent)) => Some(GroupSettings {
                name: name.clone(),
                max_concurrent,
            }),
            _ => None,
        };
        out.push(GroupDraft { name, settings });
    }
    out
}

/// A `[[connections]]` entry as read, kept even when incomplete so the cross-connection
/// checks (unique names, `after`, groups) still see what was valid.
pub(super) struct ConnectionDraft {
    /// The key path of the entry, `connections[i]`.
    pub(super) path: String,
    /// The name, if it was given and valid.
    pub(super) name: Option<String>,
    /// The `instance` it names, if given and a string.
    pub(super) instance: Option<String>,
    /// The connection id in canonical form, if it was given and valid.
    pub(super) connection_id: Option<String>,
    /// The `after` names that were valid strings.
    pub(super) after: Vec<String>,
    /// The group, if given and valid.
    pub(super) group: Option<String>,
    /// Whether it declares its connection (`source` and `destination`, no id).
    pub(super) declares: bool,
    /// The `source` name of a declared connection, if given and valid.
    pub(super) source: Option<String>,
    /// The `destination` name of a declared connection, if given and valid.
    pub(super) destination: Option<String>,
    /// The settings, if every key was valid.
    pub(super) settings: Option<ConnectionSettings>,
}

/// `[[connections]]`.
fn connections(root: &mut Table, defaults: &Defaults, p: &mut Problems) -> Vec<ConnectionDraft> {
    let Some(items) = root.list("connections", "[[connections]] tables", p) else {
        return Vec::new();
    };
    let mut drafts = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("connections[{i}]");
        // Something that isn't a table is one problem, not one per missing key.
        if let Some(t) = entry_table(path, item, p) {
            drafts.push(connection(t, defaults, p));
        }
    }
    drafts
}

/// The settings of every draft, if each is complete.
fn settled(drafts: Vec<ConnectionDraft>) -> Option<Vec<ConnectionSettings>> {
    let mut settings: Vec<ConnectionSettings> = drafts
        .into_iter()
        .map(|d| d.settings)
        .collect::<Option<_>>()?;
    // Collected in place, the list would keep the drafts' allocation, some three times
    // the size of the settings: 9 MB instead of 3.6 at 10,000 connections.
    settings.shrink_to_fit();
    Some(settings)
}

/// One `[[connections]]` entry, with `[defaults]` filled in.
fn connection(mut t: Table, defaults: &Defaults, p: &mut Problems) -> ConnectionDraft {
    let before = p.len();
    let path = t.location().to_string();
    let name = t.required(
        "name",
        "a connection needs a name",
        p,
        Table::non_empty_string,
    );
    // `source`, `destination` and `streams` may stand in for `connection_id`: the
    // declaration checks that exactly one of the two ways is given.
    let id_given = t.has("connection_id");
    let connection_id = t.uuid("connection_id", p);
    let declaration = declared::declaration(&mut t, id_given, p);
    let timezone = t.timezone("timezone", p);
    let cron_given = t.has("cron");
    // A rule is still checked when its time zone is wrong, in UTC, so both get reported.
    let cron = t.string("cron", p).and_then(|expr| {
        match CronRule::parse(&expr, timezone.unwrap_or(defaults.timezone)) {
            Ok(rule) => Some(rule),
            Err(err) => {
                p.push(Problem::new(t.key_path("cron"), err.to_string()));
                None
            }
        }
    });
    let timeout = t.optional_duration("timeout", p);
    let enabled = t.bool("enabled", p);
    let on_overlap = t.choice("on_overlap", &ON_OVERLAP, p);
    let misfire = t.choice("misfire", &MISFIRE, p);
    let jitter = t.duration("jitter", p);
    let retries = t.uint("retries", p);
    let backoff_given = t.has("retry_backoff") || t.has("retry_backoff_max");
    let retry_backoff = t
        .duration("retry_backoff", p)
        .unwrap_or(defaults.retry_backoff);
    let retry_backoff_max = t
        .duration("retry_backoff_max", p)
        .unwrap_or(defaults.retry_backoff_max);
    if backoff_given {
        // Only when the connection sets one: a bad pair in [defaults] is reported there.
        check_backoff(&t, retry_backoff, retry_backoff_max, p);
    }
    let group = t.non_empty_string("group", p);
    let instance = t.non_empty_string("instance", p);
    let after_given = t.has("after");
    let after_read = t.string_list("after", p);
    // A disabled connection never runs, so it may go without either: that is how
    // `cronbyte import` writes one Airbyte syncs only when asked, inventing no rule.
    if !cron_given && enabled != Some(false) {
        if !after_given {
            p.push(Problem::new(
                t.key_path("cron"),
                "missing: a connection needs `cron`, `after`, or both (or `enabled = false`)",
            ));
        } else if after_read.as_ref().is_some_and(Vec::is_empty) {
            p.push(Problem::new(
                t.key_path("after"),
                "is empty and there is no `cron`: the connection would never run",
            ));
        }
    }
    let after = after_read.unwrap_or_default();
    t.finish(p);

    let valid = p.len() == before;
    // A declared connection's id is found by name in Airbyte later; until then it is empty.
    let id = match (&connection_id, &declaration.settings) {
        (Some(id), None) => Some(id.clone()),
        (None, Some(_)) => Some(String::new()),
        _ => None,
    };
    let settings = match (&name, id) {
        (Some(name), Some(connection_id)) if valid => Some(ConnectionSettings {
            name: name.clone(),
            // Chosen once every instance is known (`checks::instances`).
            instance: String::new(),
            connection_id,
            cron,
            timezone: timezone.unwrap_or(defaults.timezone),
            timeout: timeout.unwrap_or(defaults.timeout),
            enabled: enabled.unwrap_or(true),
            on_overlap: on_overlap.unwrap_or(defaults.on_overlap),
            misfire: misfire.unwrap_or(defaults.misfire),
            jitter: jitter.unwrap_or(defaults.jitter),
            retries: retries.unwrap_or(defaults.retries),
            retry_backoff,
            retry_backoff_max,
            group: group.clone(),
            after: after.clone(),
            declared: declaration.settings.clone().map(Box::new),
        }),
        _ => None,
    };
    ConnectionDraft {
        path,
        name,
        instance,
        connection_id,
        after,
        group,
        declares: declaration.declares,
        source: declaration.source,
        destination: declaration.destination,
        settings,
    }
}
