//! The validated configuration types the engine consumes, with their documented defaults.
//!
//! Every value here has passed validation: URLs parse, durations are in range, cron rules
//! parse, names are unique, `after` references exist and form no cycle. The defaults live
//! in the `Default` impls (and in `config/cronbyte.example.toml`, which a test keeps in
//! step with them).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use secrecy::SecretString;

use crate::airbyte::{ApiKind, Auth};
use crate::cron::CronRule;

/// The whole configuration, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Airbyte instances, by name: the `[instances.<name>]` tables, or `[airbyte]`
    /// as the one instance named [`DEFAULT_INSTANCE`]. Never empty.
    pub instances: BTreeMap<String, AirbyteSettings>,
    /// `[store]`: where the SQLite history lives.
    pub store: StoreSettings,
    /// `[server]`: the HTTP listener for metrics, health and the control API.
    pub server: ServerSettings,
    /// `[workers]`: how many syncs run and how they are followed.
    pub workers: WorkerSettings,
    /// `[defaults]`: per-connection settings used when a connection does not give its own.
    pub defaults: Defaults,
    /// `[metrics]`: Prometheus metric settings.
    pub metrics: MetricsSettings,
    /// `[log]`: log level and format.
    pub log: LogSettings,
    /// `[[groups]]`: named concurrency limits that connections can join.
    pub groups: Vec<GroupSettings>,
    /// `[[notify]]`: webhook receivers of failure and recovery notices.
    pub notify: Vec<crate::notify::NotifySettings>,
    /// `[[connections]]`: the connections cronbyte triggers, in file order.
    pub connections: Vec<ConnectionSettings>,
    /// `[[sources]]`: the sources `cronbyte apply` creates or updates in Airbyte, by name.
    pub sources: Vec<ActorSettings>,
    /// `[[destinations]]`: the destinations `cronbyte apply` creates or updates, by name.
    pub destinations: Vec<ActorSettings>,
}

/// The connections as the daemon holds them: one copy of each connection's settings,
/// shared by the engine, the replica's role and the double-schedule watcher.
pub type SharedConnections = Vec<Arc<ConnectionSettings>>;

/// `connections`, each behind an `Arc`.
pub fn share(connections: Vec<ConnectionSettings>) -> SharedConnections {
    let mut shared: SharedConnections = connections.into_iter().map(Arc::new).collect();
    // Collected in place, the list would keep the settings' allocation, 45 times its need.
    shared.shrink_to_fit();
    shared
}

/// The name `[airbyte]` stands for: the instance of a config with `[airbyte]`, and the
/// one an entry without `instance` uses when several are configured.
pub const DEFAULT_INSTANCE: &str = "default";

impl Config {
    /// The part of the config that concerns instance `name`: its settings alone, and the
    /// connections, sources and destinations that live on it. `plan`, `apply` and the
    /// lookup of declared connections work one instance at a time through it.
    pub fn on_instance(&self, name: &str) -> Config {
        let mut part = self.clone();
        part.instances.retain(|n, _| n == name);
        part.connections.retain(|c| c.instance == name);
        part.sources.retain(|a| a.instance == name);
        part.destinations.retain(|a| a.instance == name);
        part
    }

    /// `[airbyte]`: the instance named [`DEFAULT_INSTANCE`], if the config has one.
    pub fn airbyte(&self) -> Option<&AirbyteSettings> {
        self.instances.get(DEFAULT_INSTANCE)
    }
}

/// `[airbyte]` or one `[instances.<name>]`: where an Airbyte instance is and how to
/// talk to it.
#[derive(Clone, Debug)]
pub struct AirbyteSettings {
    /// Where these settings are in the config, for messages: `airbyte` or
    /// `instances.<name>`.
    pub section: String,
    /// The API base URL, `http` or `https`, without a trailing `/`
    /// (e.g. `http://localhost:8000/api/v1` or `https://api.airbyte.com/v1`). Required.
    pub base_url: String,
    /// Which API `base_url` points at: `config` (default) or `public`.
    pub api: ApiKind,
    /// `[airbyte.auth]`: the credentials sent with every request.
    pub auth: Auth,
    /// How long one HTTP request may take, end to end (default 30s; must be > 0).
    pub request_timeout: Duration,
    /// How long establishing a connection may take (default 10s; must be > 0).
    pub connect_timeout: Duration,
    /// `[airbyte.retry]`: how failed idempotent requests are retried.
    pub retry: RetrySettings,
    /// The workspace to work in, by name or id; `None` (default) when the instance has one.
    pub workspace: Option<String>,
}

/// The default of `airbyte.request_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The default of `airbyte.connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `[airbyte.retry]`: how failed idempotent requests to Airbyte are retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySettings {
    /// Retries after the first try (default 5; 0 disables retrying).
    pub max_retries: u32,
    /// The first backoff; each later one doubles (default 500ms).
    pub initial_backoff: Duration,
    /// The longest single backoff (default 30s; at least `initial_backoff`).
    pub max_backoff: Duration,
    /// Give up once this much time has passed since the first try (default 2m).
    pub max_elapsed: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_retries: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

/// `[store]`: where the history lives: a SQLite file, or a PostgreSQL database
/// several cronbyte processes can share.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// The SQLite database file (default `cronbyte.db`; relative to the working
    /// directory). Not used when `url` is set.
    pub path: PathBuf,
    /// A `postgres://` URL (`url`, or read from `url_file`), with the password of
    /// `password`/`password_file` put in: the history in that database. A secret.
    pub url: Option<SecretString>,
    /// How long finished runs are kept (`retention`, default 90 days); `None`
    /// (`"forever"`) keeps every run. Marks and totals outlive pruned runs.
    pub retention: Option<Duration>,
    /// With replicas on one PostgreSQL store: how long the active replica's lease
    /// lasts unrenewed (`lease`, default 15 s), hence how soon a standby takes over
    /// from a replica that died.
    pub lease: Duration,
    /// How often the active replica renews its lease and every replica says it is
    /// alive (`lease_renewal`, default 5 s; less than half of `lease`).
    pub lease_renewal: Duration,
}

/// How long finished runs are kept unless `[store] retention` says otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            path: PathBuf::from("cronbyte.db"),
            url: None,
            retention: Some(DEFAULT_RETENTION),
            lease: Duration::from_secs(15),
            lease_renewal: Duration::from_secs(5),
        }
    }
}

/// `[server]`: the HTTP listener for `/metrics`, health and the control API.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// The address to listen on (default `127.0.0.1:9464`).
    pub listen: SocketAddr,
    /// The bearer token the control API requires (`token`, or `token_file` read at load);
    /// `None` (default) leaves the control API open to whoever can reach `listen`.
    pub token: Option<SecretString>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            token: None,
        }
    }
}

/// `[workers]`: how many syncs run at once and how their jobs are followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSettings {
    /// How often a running job's status is polled (default 10s; must be > 0).
    pub poll_interval: Duration,
    /// The most syncs running at once across all connections (default 100; at least 1).
    pub max_concurrent_syncs: usize,
    /// How many poll requests may be in flight at once (default 4; at least 1).
    pub poll_concurrency: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            poll_interval: Duration::from_secs(10),
            max_concurrent_syncs: 100,
            poll_concurrency: 4,
        }
    }
}

/// `[defaults]`: what a connection gets for each setting it does not give itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    /// The IANA time zone cron rules are read in (default `UTC`).
    pub timezone: Tz,
    /// How long a sync may run before cronbyte cancels it (default 24h). Written `"none"` or
    /// a zero duration (`"0s"`), it is `None`: no timeout.
    pub timeout: Option<Duration>,
    /// What to do when a sync is due while the previous one still runs (default `attach`).
    pub on_overlap: OnOverlap,
    /// What to do about fire times missed while cronbyte was down (default `run_once`).
    pub misfire: Misfire,
    /// A random delay in `[0, jitter]` added to each fire time (default 0s: none).
    pub jitter: Duration,
    /// How many times a failed sync is retried (default 0).
    pub retries: u32,
    /// The wait before the first retry; each later one doubles (default 5m).
    pub retry_backoff: Duration,
    /// The longest wait between retries (default 1h; at least `retry_backoff`).
    pub retry_backoff_max: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            timezone: Tz::UTC,
            timeout: Some(Duration::from_secs(24 * 3600)),
            on_overlap: OnOverlap::Attach,
            misfire: Misfire::RunOnce,
            jitter: Duration::ZERO,
            retries: 0,
            retry_backoff: Duration::from_secs(5 * 60),
            retry_backoff_max: Duration::from_secs(3600),
        }
    }
}

/// What to do when a sync is due while the connection's previous sync still runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnOverlap {
    /// Drop this run.
    Skip,
    /// Record this run as attached to the job already running (Airbyte would refuse a
    /// second sync of the same connection anyway).
    #[default]
    Attach,
    /// Start this run when the running one ends (at most one waits).
    Queue,
}

/// What to do about fire times that passed while cronbyte was not running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Forget them; wait for the next fire time.
    Skip,
    /// Run once at startup for the latest missed fire time, however many were missed.
    #[default]
    RunOnce,
}

/// `[metrics]`: Prometheus metric settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSettings {
    /// The window of the per-connection success ratio gauge (default 24h; must be > 0).
    pub success_ratio_window: Duration,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            success_ratio_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// `[log]`: log level and format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// A tracing filter: a level (`info`, default) or directives such as
    /// `info,cronbyte=debug`. `RUST_LOG`, when set, wins.
    pub level: String,
    /// `human` (default) or `json` (one JSON object per line).
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".to_string(),
            format: LogFormat::Human,
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable text lines.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `[[groups]]`: a named limit on how many of its connections sync at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSettings {
    /// The name connections give as `group` (unique, non-empty). Required.
    pub name: String,
    /// The most syncs of this group's connections running at once (at least 1). Required.
    pub max_concurrent: usize,
}

/// `[[connections]]`: one Airbyte connection and when to sync it.
#[derive(Clone, Debug)]
pub struct ConnectionSettings {
    /// A unique, non-empty name used in logs, metrics, the API and `after`. Required.
    pub name: String,
    /// The Airbyte instance the connection lives on: `instance`, or the only one
    /// configured, or [`DEFAULT_INSTANCE`].
    pub instance: String,
    /// The Airbyte connection id, a UUID, in lowercase hyphenated form. Required, unless the
    /// connection is `declared`: then it is empty until resolved by name in Airbyte
    /// ([`crate::pipeline::resolve_connection_ids`]).
    pub connection_id: String,
    /// When to sync, read in `timezone`. `None` when the connection only runs `after` others.
    pub cron: Option<CronRule>,
    /// The IANA time zone of `cron` (default: `defaults.timezone`).
    pub timezone: Tz,
    /// How long a sync may run before it is cancelled; `None` for no limit
    /// (default: `defaults.timeout`).
    pub timeout: Option<Duration>,
    /// Whether cronbyte schedules this connection at all (default true).
    pub enabled: bool,
    /// What to do when a sync is due while the last still runs (default: `defaults.on_overlap`).
    pub on_overlap: OnOverlap,
    /// What to do about fire times missed while down (default: `defaults.misfire`).
    pub misfire: Misfire,
    /// A random delay in `[0, jitter]` added to each fire time (default: `defaults.jitter`).
    pub jitter: Duration,
    /// How many times a failed sync is retried (default: `defaults.retries`).
    pub retries: u32,
    /// The wait before the first retry (default: `defaults.retry_backoff`).
    pub retry_backoff: Duration,
    /// The longest wait between retries (default: `defaults.retry_backoff_max`).
    pub retry_backoff_max: Duration,
    /// The `[[groups]]` entry whose limit this connection counts against, if any.
    pub group: Option<String>,
    /// Names of connections whose successful sync triggers this one.
    pub after: Vec<String>,
    /// What cronbyte creates or updates in Airbyte for this connection, when it is declared
    /// (`source` and `destination` instead of `connection_id`); `None` for a connection
    /// managed elsewhere.
    pub declared: Option<Box<DeclaredConnection>>,
}

/// `[[sources]]` and `[[destinations]]`: a connector instance cronbyte finds by name in the
/// workspace, creating or updating it to match.
#[derive(Clone, Debug)]
pub struct ActorSettings {
    /// Unique among its kind on its instance; the name the object has in Airbyte. Required.
    pub name: String,
    /// The Airbyte instance it lives on, chosen as a connection's is.
    pub instance: String,
    /// The connector: a definition name as Airbyte lists it (`"Postgres"`, `"S3"`) or a
    /// definition id (a UUID, lowercase hyphenated). Required.
    pub definition: String,
    /// The connector's `connectionConfiguration`, with `${ENV_VAR}` and `{ file = "..." }`
    /// secrets already read in. Required (a table).
    pub configuration: ConnectorConfiguration,
}

/// A connector configuration as JSON, secrets included, that never shows itself in `Debug`
/// output. It remembers which values came from the environment or a file, so whatever
/// displays a configuration can mask them.
#[derive(Clone, PartialEq)]
pub struct ConnectorConfiguration {
    value: serde_json::Value,
    /// JSON pointers (`/password`, `/tunnel_method/ssh_key`) of the values read from
    /// `${ENV_VAR}` references or `{ file = "..." }` tables.
    secrets: Vec<String>,
}

impl ConnectorConfiguration {
    /// A configuration whose values at the JSON pointers `secrets` are secret.
    pub fn new(value: serde_json::Value, secrets: Vec<String>) -> Self {
        Self { value, secrets }
    }

    /// The configuration itself, secrets in clear: for the request to Airbyte only.
    pub fn expose(&self) -> &serde_json::Value {
        &self.value
    }

    /// Whether the value at `pointer` came from the environment or a file.
    pub fn is_secret(&self, pointer: &str) -> bool {
        self.secrets.iter().any(|s| s == pointer)
    }

    /// The secret values themselves, so an output can be scrubbed of them.
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        self.secrets
            .iter()
            .filter_map(|pointer| self.value.pointer(pointer))
            .filter_map(serde_json::Value::as_str)
    }
}

impl std::fmt::Debug for ConnectorConfiguration {
    /// Only the top-level keys: any value might be a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self
            .value
            .as_object()
            .map(|map| map.keys().map(String::as_str).collect())
            .unwrap_or_default();
        f.debug_struct("ConnectorConfiguration")
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

/// What a declared `[[connections]]` entry asks of Airbyte: which source feeds which
/// destination, and how each stream is synced. Its schedule stays in cronbyte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredConnection {
    /// A `[[sources]]` name.
    pub source: String,
    /// A `[[destinations]]` name.
    pub destination: String,
    /// The streams to sync (at least one); every other stream is left unselected.
    pub streams: Vec<StreamSettings>,
    /// Where the data lands (`namespaceDefinition`); `None` keeps Airbyte's value.
    pub namespace_definition: Option<NamespaceDefinition>,
    /// The namespace when `namespace_definition` is `customformat` (`namespaceFormat`).
    pub namespace_format: Option<String>,
    /// Prepended to each stream's name in the destination; `None` keeps Airbyte's value.
    pub prefix: Option<String>,
    /// `active` (default) or `inactive`.
    pub status: ConnectionStatus,
}

/// One `[[connections.streams]]` entry: a stream to select and how to sync it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    /// The stream's name as the source discovers it. Required.
    pub name: String,
    /// The stream's namespace (a schema, for databases); needed only when two streams share
    /// a name.
    pub namespace: Option<String>,
    /// `full_refresh` (default) or `incremental`.
    pub sync_mode: SyncMode,
    /// How records land (default `overwrite` for full refresh, `append` for incremental).
    pub destination_sync_mode: DestinationSyncMode,
    /// The path of the cursor field (`["updated_at"]`); `None` takes the source's default.
    pub cursor_field: Option<Vec<String>>,
    /// The primary key, as paths (`[["id"]]`); `None` takes the source's.
    pub primary_key: Option<Vec<Vec<String>>>,
}

/// Airbyte's `SyncMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    FullRefresh,
    Incremental,
}

/// Airbyte's `DestinationSyncMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestinationSyncMode {
    Append,
    Overwrite,
    AppendDedup,
    OverwriteDedup,
    Update,
    SoftDelete,
}

/// Airbyte's `NamespaceDefinitionType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceDefinition {
    Source,
    Destination,
    CustomFormat,
}

/// The `ConnectionStatus` values a declaration may ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConnectionStatus {
    #[default]
    Active,
    Inactive,
}

impl SyncMode {
    /// Every value with its spelling in the config and in Airbyte's API.
    pub const ALL: [(&'static str, SyncMode); 2] = [
        ("full_refresh", SyncMode::FullRefresh),
        ("incremental", SyncMode::Incremental),
    ];

    /// As Airbyte spells it.
    pub fn as_str(self) -> &'static str {
        spelling(&Self::ALL, self)
    }
}

impl DestinationSyncMode {
    /// Every value with its spelling in the config and in Airbyte's API.
    pub const ALL: [(&'static str, DestinationSyncMode); 6] = [
        ("append", DestinationSyncMode::Append),
        ("overwrite", DestinationSyncMode::Overwrite),
        ("append_dedup", DestinationSyncMode::AppendDedup),
        ("overwrite_dedup", DestinationSyncMode::OverwriteDedup),
        ("update", DestinationSyncMode::Update),
        ("soft_delete", DestinationSyncMode::SoftDelete),
    ];

    /// As Airbyte spells it.
    pub fn as_str(self) -> &'static str {
        spelling(&Self::ALL, self)
    }

    /// Whether records are deduplicated on the primary key.
    pub fn dedups(self) -> bool {
        matches!(self, Self::AppendDedup | Self::OverwriteDedup)
    }
}

impl NamespaceDefinition {
    /// Every value with its spelling in the config and in Airbyte's API.
    pub const ALL: [(&'static str, NamespaceDefinition); 3] = [
        ("source", NamespaceDefinition::Source),
        ("destination", NamespaceDefinition::Destination),
        ("customformat", NamespaceDefinition::CustomFormat),
    ];

    /// As Airbyte spells it.
    pub fn as_str(self) -> &'static str {
        spelling(&Self::ALL, self)
    }
}

impl ConnectionStatus {
    /// Every value with its spelling in the config and in Airbyte's API.
    pub const ALL: [(&'static str, ConnectionStatus); 2] = [
        ("active", ConnectionStatus::Active),
        ("inactive", ConnectionStatus::Inactive),
    ];

    /// As Airbyte spells it.
    pub fn as_str(self) -> &'static str {
        spelling(&Self::ALL, self)
    }
}

/// The word for `value` in a table of spellings (every value is in its table).
fn spelling<T: PartialEq + Copy>(table: &[(&'static str, T)], value: T) -> &'static str {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map_or("", |(word, _)| *word)
}
