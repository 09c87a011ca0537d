//! The configuration: loaded in layers (defaults, then the file, then environment
//! variables) and validated once, reporting every problem with its key path.
//!
//! # Layers
//!
//! 1. The defaults documented on each settings type and in `config/cronbyte.example.toml`.
//! 2. The file: TOML, or YAML when its name ends in `.yaml` or `.yml`.
//! 3. Environment variables, which win: `CRONBYTE__` followed by the key path with `__`
//!    between the parts, in any case. For example
//!    `CRONBYTE__AIRBYTE__BASE_URL=http://airbyte:8001/api/v1`,
//!    `CRONBYTE__WORKERS__POLL_INTERVAL=5s`,
//!    `CRONBYTE__AIRBYTE__AUTH__PASSWORD_FILE=/run/credentials/cronbyte.service/airbyte`.
//!    Values are taken as strings and read by the key's type, so `"5"` works for a
//!    number and `"true"` for a boolean. An empty variable counts as unset. Lists of tables
//!    (`[[connections]]`, `[[groups]]`) can't be given through the environment.
//!
//! # Problems
//!
//! Loading either gives a fully validated [`Config`] or [`ConfigErrors`] listing every
//! problem: unknown keys (with a did-you-mean), wrong types, bad values, and rules across
//! keys (unique names, `after` references and cycles, groups). Secrets (`password`,
//! `token`, `client_secret` and the files they come from) are never shown in a message.
//!
//! # Declarations
//!
//! `[[sources]]`, `[[destinations]]` and `[[connections]]` entries with `source`,
//! `destination` and `streams` describe what `cronbyte apply` creates in Airbyte. A
//! connector's `configuration` takes secrets as `"${ENV_VAR}"` (read from the process
//! environment at load) or `{ file = "/path" }` (read from the file); a variable that is not
//! set is a problem naming the key path and the variable, never a value. These lists (and
//! `[[groups]]`) may also come from files the config names in `include`.
//!
//! # Reading only one section
//!
//! [`load`] reads and validates everything, so it needs every secret the file names. The
//! commands that need only the history's location ([`load_store`]) or the daemon's address
//! and control token ([`load_server`]) read that one section, with the same defaults,
//! `CRONBYTE__<SECTION>__*` overrides and key-path messages, and leave the rest of the file
//! unread: a secret of `[airbyte.auth]` or of a `[[sources]]` entry that the operator's
//! shell cannot see does not stop them.

mod checks;
mod connector;
mod declared;
mod include;
mod notify;
mod problem;
mod reader;
mod secret;
mod sections;
mod settings;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;

pub use problem::{ConfigErrors, Problem};
pub use settings::{
    ActorSettings, AirbyteSettings, Config, ConnectionSettings, ConnectionStatus,
    ConnectorConfiguration, DEFAULT_CONNECT_TIMEOUT, DEFAULT_INSTANCE, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETENTION, DeclaredConnection, Defaults, DestinationSyncMode, GroupSettings, LogFormat,
    LogSettings, MetricsSettings, Misfire, NamespaceDefinition, OnOverlap, RetrySettings,
    ServerSettings, SharedConnections, StoreSettings, StreamSettings, SyncMode, WorkerSettings,
    share,
};

pub(crate) use connector::escape_pointer;
pub(crate) use reader::closest;

/// The example configuration, documenting every key with its default.
pub const EXAMPLE: &str = include_str!("../../config/cronbyte.example.toml");

/// The prefix of environment variables that override the file.
pub const ENV_PREFIX: &str = "CRONBYTE";

/// What separates the prefix from the key path, and the parts of the path.
pub const ENV_SEPARATOR: &str = "__";

/// The syntax of a configuration text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// TOML (the default for any file name not ending in `.yaml` or `.yml`).
    Toml,
    /// YAML.
    Yaml,
}

impl Format {
    /// The format a file's name implies: YAML for `.yaml` and `.yml`, TOML otherwise.
    pub fn of_path(path: &Path) -> Format {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Toml,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Toml => "TOML",
            Format::Yaml => "YAML",
        }
    }

    fn file_format(self) -> ::config::FileFormat {
        match self {
            Format::Toml => ::config::FileFormat::Toml,
            Format::Yaml => ::config::FileFormat::Yaml,
        }
    }
}

/// Loads `path` with the process environment's `CRONBYTE__*` overrides.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let (env, problems) = process_env(|_| true);
    load_layers(path, env, problems, &|name| std::env::var_os(name))
}

/// Loads only `[store]` of `path`, with its `CRONBYTE__STORE__*` overrides: for the
/// commands that read the history and nothing else. The rest of the file is not read, so
/// its secrets need not be available; it must still parse.
pub fn load_store(path: &Path) -> Result<StoreSettings, ConfigErrors> {
    let (env, problems) = process_env(|key| sets_section(key, "store"));
    load_section(path, env, problems, sections::read_store)
}

/// Loads only `[server]` of `path` (the listen address and the control token, read from
/// `token_file` if given), with its `CRONBYTE__SERVER__*` overrides: for the commands that
/// talk to a running daemon. The rest of the file is not read, as for [`load_store`].
pub fn load_server(path: &Path) -> Result<ServerSettings, ConfigErrors> {
    let (env, problems) = process_env(|key| sets_section(key, "server"));
    load_section(path, env, problems, sections::read_server)
}

/// Loads only `[defaults]` and `[[connections]]` of `path` (and of the files it
/// includes), with the `CRONBYTE__DEFAULTS__*` overrides: for `cronbyte next`, which
/// shows fire instants without a daemon and without the credentials the rest of the
/// file may name. The rest of the file must still parse.
pub fn load_schedules(path: &Path) -> Result<Vec<ConnectionSettings>, ConfigErrors> {
    let (env, mut problems) = process_env(|key| sets_section(key, "defaults"));
    let (name, text) = read_file(path)?;
    let tree = merged(
        &text,
        Format::of_path(path),
        Some(&name),
        Some(env),
        &mut problems,
    )?;
    with_problems(problems, sections::read_schedules(tree, path.parent()))
}

/// The process environment's `CRONBYTE__*` variables that `wanted` accepts, and a problem
/// for each of those that is not valid UTF-8.
fn process_env(wanted: impl Fn(&str) -> bool) -> (HashMap<String, String>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut env = HashMap::new();
    for (key, value) in std::env::vars_os() {
        // Variables that aren't ours are none of our business, whatever their encoding.
        let Some(key) = key.to_str().filter(|k| is_ours(k) && wanted(k)) else {
            continue;
        };
        match value.into_string() {
            Ok(value) => {
                env.insert(key.to_string(), value);
            }
            Err(_) => problems.push(Problem::new(key, "the value is not valid UTF-8")),
        }
    }
    (env, problems)
}

/// Whether the `CRONBYTE__...` variable `key` sets something in `section` (in any case).
fn sets_section(key: &str, section: &str) -> bool {
    key.get(ENV_PREFIX.len() + ENV_SEPARATOR.len()..)
        .and_then(|rest| rest.split(ENV_SEPARATOR).next())
        .is_some_and(|first| first.eq_ignore_ascii_case(section))
}

/// Reads the file, merges `env` over it and hands the tree to `read`, which reads one
/// section of it.
fn load_section<T>(
    path: &Path,
    env: HashMap<String, String>,
    mut problems: Vec<Problem>,
    read: fn(::config::Map<String, ::config::Value>) -> Result<T, ConfigErrors>,
) -> Result<T, ConfigErrors> {
    let (name, text) = read_file(path)?;
    let tree = merged(
        &text,
        Format::of_path(path),
        Some(&name),
        Some(env),
        &mut problems,
    )?;
    with_problems(problems, read(tree))
}

/// Loads `path` with `env` standing in for the process environment (for tests): its
/// `CRONBYTE__*` entries override the file, and `${NAME}` references read from it.
pub fn load_with_env(path: &Path, env: HashMap<String, String>) -> Result<Config, ConfigErrors> {
    let references = env.clone();
    load_layers(path, env, Vec::new(), &|name| {
        references.get(name).map(OsString::from)
    })
}

/// Reads a configuration from text, without environment overrides (for tests and demos).
/// `*_file` secrets are read relative to the working directory; `${NAME}` references are
/// read from the process environment.
pub fn from_str(text: &str, format: Format) -> Result<Config, ConfigErrors> {
    layered(
        text,
        format,
        None,
        None,
        Vec::new(),
        &|name| std::env::var_os(name),
        None,
    )
}

impl Config {
    /// Things that are valid but probably not meant, e.g. a control API listening beyond
    /// loopback without a token. Worth logging at startup; never fatal.
    pub fn warnings(&self) -> Vec<Problem> {
        checks::warnings(self)
    }
}

/// Whether an environment variable is one of ours (`CRONBYTE__...`, in any case).
fn is_ours(key: &str) -> bool {
    let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
    key.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(&prefix))
}

/// Reads the file and merges the layers.
fn load_layers(
    path: &Path,
    env: HashMap<String, String>,
    problems: Vec<Problem>,
    references: connector::EnvLookup<'_>,
) -> Result<Config, ConfigErrors> {
    let (name, text) = read_file(path)?;
    layered(
        &text,
        Format::of_path(path),
        Some(&name),
        Some(env),
        problems,
        references,
        path.parent(),
    )
}

/// The file's name as messages show it, and its text.
fn read_file(path: &Path) -> Result<(String, String), ConfigErrors> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((name, text)),
        Err(e) => Err(ConfigErrors::one(
            &name,
            format!("cannot read the configuration file: {e}"),
        )),
    }
}

/// Merges the file and environment layers, then reads and validates the result.
fn layered(
    text: &str,
    format: Format,
    source: Option<&str>,
    env: Option<HashMap<String, String>>,
    mut problems: Vec<Problem>,
    references: connector::EnvLookup<'_>,
    base: Option<&Path>,
) -> Result<Config, ConfigErrors> {
    let tree = merged(text, format, source, env, &mut problems)?;
    with_problems(problems, sections::read_config(tree, references, base))
}

/// `read`'s result, unless problems found before reading (with the environment variables)
/// make it an error; then every problem is reported.
fn with_problems<T>(
    mut problems: Vec<Problem>,
    read: Result<T, ConfigErrors>,
) -> Result<T, ConfigErrors> {
    match read {
        Ok(value) if problems.is_empty() => Ok(value),
        Ok(_) => Err(ConfigErrors { problems }),
        Err(mut errors) => {
            problems.append(&mut errors.problems);
            Err(ConfigErrors { problems })
        }
    }
}

/// The file's tree with the environment's variables merged over it. Problems with the
/// variables are added to `problems`; a file that does not parse is an error of its own.
fn merged(
    text: &str,
    format: Format,
    source: Option<&str>,
    env: Option<HashMap<String, String>>,
    problems: &mut Vec<Problem>,
) -> Result<::config::Map<String, ::config::Value>, ConfigErrors> {
    // One build of both layers, and its tree taken rather than copied: at 10,000
    // connections every copy of the tree is megabytes of small allocations, and
    // what a parse leaves scattered in the heap stays resident after it.
    let mut builder = ::config::Config::builder()
        .add_source(::config::File::from_str(text, format.file_format()));
    if let Some(env) = env {
        // Sorted, so problems with the variables come out in the same order every time.
        let mut env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| is_ours(k)).collect();
        env.sort();
        let env: ::config::Map<String, String> = env
            .into_iter()
            .filter(|(key, _)| env_key_is_valid(key, problems))
            .collect();
        // No `try_parsing`: it turns "000123" into 123 and "TRUE" into true. Every value
        // stays a string and is read by its key's type.
        builder = builder.add_source(
            ::config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator(ENV_SEPARATOR)
                .separator(ENV_SEPARATOR)
                .ignore_empty(true)
                .source(Some(env)),
        );
    }
    let merged = builder.build().map_err(|e| match e {
        // The file is the first layer: only its text can fail to parse.
        e @ ::config::ConfigError::FileParse { .. } => {
            let (path, what) = match source {
                Some(name) => (name.to_string(), format!("not valid {}", format.name())),
                None => (
                    String::new(),
                    format!("the text is not valid {}", format.name()),
                ),
            };
            ConfigErrors::one(path, format!("{what}: {}", parse_error_text(e)))
        }
        e => ConfigErrors::one("", format!("cannot apply the environment variables: {e}")),
    })?;
    merged
        .cache
        .into_table()
        .map_err(|e| ConfigErrors::one("", format!("the configuration is not a table: {e}")))
}

/// Whether `CRONBYTE__A__B_C` names a key path (non-empty parts of letters, digits and
/// `_`); records a problem if not.
fn env_key_is_valid(key: &str, problems: &mut Vec<Problem>) -> bool {
    let rest = key
        .get(ENV_PREFIX.len() + ENV_SEPARATOR.len()..)
        .unwrap_or_default();
    let valid = rest.split(ENV_SEPARATOR).all(|part| {
        !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    if !valid {
        problems.push(Problem::new(
            key,
            "not a configuration key: use CRONBYTE__SECTION__KEY, e.g. \
             CRONBYTE__WORKERS__POLL_INTERVAL",
        ));
    }
    valid
}

/// A parser's error without the quoted source lines some parsers add: a line of the file
/// may hold a secret.
fn parse_error_text(error: ::config::ConfigError) -> String {
    let text = match error {
        ::config::ConfigError::FileParse { cause, .. } => cause.to_string(),
        other => other.to_string(),
    };
    text.lines()
        .filter(|line| {
            // toml quotes source lines in a gutter: "  |", "3 | password = ...".
            let after_number = line
                .trim_start()
                .trim_start_matches(|c: char| c.is_ascii_digit());
            !after_number.trim_start().starts_with('|')
        })
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests;
