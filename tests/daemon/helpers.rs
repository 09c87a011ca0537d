//! The harness: an emulated Airbyte on port 0, a fresh store in a temp dir, and
//! the daemon started as a library on port 0, as `cronbyte run` starts it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use cronbyte::config::{self, Config, Format};
use cronbyte::daemon::{Daemon, DaemonError};
use cronbyte::emulator::{Emulator, EmulatorControl, EmulatorHandle, EmulatorOptions, JobPlan};
use cronbyte::engine::Clock;
use cronbyte::run::{Run, RunStatus};
use cronbyte::store::{HistoryFilter, SqliteStore, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Logs stay silent unless `TEST_LOG` is set.
fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        cronbyte::telemetry::init("debug,sqlx=warn,hyper=warn", config::LogFormat::Human);
    }
}

pub struct Harness {
    pub emulator: EmulatorHandle,
    pub dir: tempfile::TempDir,
}

/// A daemon running in this test.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), DaemonError>>,
}

/// An emulated Airbyte on a free port.
async fn emulator() -> EmulatorHandle {
    Emulator::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        EmulatorOptions::default(),
    )
    .await
    .expect("emulator starts")
}

impl Harness {
    pub async fn new() -> Self {
        init_logs();
        Self {
            emulator: emulator().await,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Another emulated Airbyte beside the harness's, for a config with several
    /// instances ([`Harness::config_text_on`]).
    pub async fn another_emulator(&self) -> EmulatorHandle {
        emulator().await
    }

    pub fn control(&self) -> EmulatorControl {
        self.emulator.control()
    }

    /// A connection in the emulator whose jobs follow `plan`.
    pub fn connection(&self, name: &str, plan: JobPlan) -> Uuid {
        let control = self.control();
        let id = control.add_connection(name);
        control.set_plan(id, plan);
        id
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("history.db")
    }

    /// A config for the emulator and this harness's store, with `connections`
    /// (TOML `[[connections]]` blocks) and a fast poll.
    pub fn config(&self, connections: &str) -> Config {
        let text = self.config_text(connections);
        config::from_str(&text, Format::Toml).unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
    }

    /// The config text `config` parses, for writing to a file.
    pub fn config_text(&self, connections: &str) -> String {
        self.config_text_with(&instance_toml("airbyte", &self.emulator), connections)
    }

    /// A config text with one `[instances.<name>]` table per emulator of
    /// `instances`, for `connections` that say `instance = "<name>"`.
    pub fn config_text_on(
        &self,
        instances: &[(&str, &EmulatorHandle)],
        connections: &str,
    ) -> String {
        let tables: String = instances
            .iter()
            .map(|(name, emulator)| instance_toml(&format!("instances.{name}"), emulator))
            .collect();
        self.config_text_with(&tables, connections)
    }

    fn config_text_with(&self, instances: &str, connections: &str) -> String {
        format!(
            "{instances}[store]\npath = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n\
             [workers]\n{POLL}\n\n{connections}",
            self.store_path().display(),
        )
    }

    /// Writes `text` as the config file and starts the daemon from it, as
    /// `cronbyte run --config` does (so it can reload it).
    pub async fn start_from_file(&self, text: &str) -> (Running, PathBuf) {
        let path = self.dir.path().join("cronbyte.toml");
        std::fs::write(&path, text).expect("config written");
        let config = config::load(&path).unwrap_or_else(|e| panic!("test config: {e}"));
        let daemon = Daemon::build(config)
            .await
            .expect("daemon builds")
            .with_config_path(path.clone());
        let addr = daemon.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(daemon.run(shutdown.clone()));
        (
            Running {
                addr,
                shutdown,
                task,
            },
            path,
        )
    }

    pub async fn start(&self, config: Config) -> Running {
        self.start_on(config, Clock::System).await
    }

    /// Starts the daemon with its engine on `clock`.
    pub async fn start_on(&self, config: Config, clock: Clock) -> Running {
        let daemon = Daemon::build(config)
            .await
            .expect("daemon builds")
            .with_clock(clock);
        let addr = daemon.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(daemon.run(shutdown.clone()));
        Running {
            addr,
            shutdown,
            task,
        }
    }

    /// Every run in the history, oldest first.
    pub async fn runs(&self) -> Vec<Run> {
        let store = SqliteStore::open_read_only(&self.store_path())
            .await
            .expect("store opens");
        let filter = HistoryFilter {
            connection: None,
            limit: 100_000,
        };
        let mut runs = store.history(&filter).await.expect("history reads");
        store.close().await;
        runs.reverse();
        runs
    }

    /// Starts the daemon with one connection whose rule fires once, a second from now.
    pub async fn start_firing_once(&self, name: &str, id: Uuid) -> Running {
        let rule = cron_at(soon(START_LEAD));
        self.start(self.config(&connection_toml(name, id, &rule)))
            .await
    }

    /// Waits until some run is following its job, and returns the history.
    pub async fn wait_until_running(&self) -> Vec<Run> {
        self.wait_for(Duration::from_secs(15), "a run to start", |runs| {
            runs.iter().any(|r| r.status == RunStatus::Running)
        })
        .await
    }

    /// Waits until some run has ended, and returns the history.
    pub async fn wait_until_ended(&self) -> Vec<Run> {
        self.wait_for(Duration::from_secs(15), "a run to end", |runs| {
            runs.iter().any(|r| !r.status.is_open())
        })
        .await
    }

    /// Waits until the history satisfies `done`, or fails the test after `within`.
    pub async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&[Run]) -> bool,
    ) -> Vec<Run> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let runs = self.runs().await;
            if done(&runs) {
                return runs;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; history: {runs:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Running {
    /// Asks the daemon to stop and waits for it; returns how long it took.
    pub async fn stop(self) -> Duration {
        let asked = tokio::time::Instant::now();
        self.shutdown.cancel();
        self.task
            .await
            .expect("daemon task does not panic")
            .expect("daemon stops cleanly");
        asked.elapsed()
    }

    /// The base URL of the daemon's HTTP endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `/metrics` body, after checking it is served as OpenMetrics text.
    pub async fn metrics(&self) -> String {
        let response = reqwest::get(format!("http://{}/metrics", self.addr))
            .await
            .expect("metrics answer");
        assert_eq!(
            response.headers()["content-type"],
            cronbyte::metrics::CONTENT_TYPE
        );
        response.text().await.expect("metrics body")
    }
}

/// The table `section` (`airbyte`, `instances.eu`) reaching `emulator`, retrying
/// briefly.
fn instance_toml(section: &str, emulator: &EmulatorHandle) -> String {
    format!(
        "[{section}]\nbase_url = \"{}\"\n[{section}.retry]\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\nmax_elapsed = \"2s\"\n",
        emulator.config_api_base()
    )
}

/// A six-field rule that fires once a day, at the second `at` (UTC).
pub fn cron_at(at: DateTime<Utc>) -> String {
    format!("{} {} {} * * *", at.second(), at.minute(), at.hour())
}

/// How long before its first tick a test's daemon is started: the daemon is up
/// in about 100 ms on an idle machine, five times that leaves room for a busy one.
pub const START_LEAD: Duration = Duration::from_millis(500);

/// A second boundary at least `lead` from now, for a rule that must not fire
/// before the daemon is up.
pub fn soon(lead: Duration) -> DateTime<Utc> {
    let at = Utc::now() + chrono::Duration::from_std(lead).expect("small duration");
    at.with_nanosecond(0).expect("valid") + chrono::Duration::seconds(1)
}

/// One `[[connections]]` block.
pub fn connection_toml(name: &str, id: Uuid, cron: &str) -> String {
    format!("[[connections]]\nname = \"{name}\"\nconnection_id = \"{id}\"\ncron = \"{cron}\"\n")
}

/// The value of one sample in a text exposition, if present.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line[series.len()..].trim().parse().ok())
}

/// The settings of the one Airbyte instance of a harness's config, to change.
pub fn airbyte_of(config: &mut Config) -> &mut cronbyte::config::AirbyteSettings {
    config
        .instances
        .get_mut(cronbyte::config::DEFAULT_INSTANCE)
        .expect("the harness configures [airbyte]")
}

/// The poll interval of the harness's configs: short, so that outcomes are
/// seen soon after the emulator's jobs end.
const POLL: &str = "poll_interval = \"50ms\"";

/// `toml` (a whole config from [`Harness::config_text`]) polling every `interval`.
pub fn with_poll_interval(toml: &str, interval: &str) -> String {
    assert!(toml.contains(POLL), "not a harness config: {toml}");
    toml.replacen(POLL, &format!("poll_interval = \"{interval}\""), 1)
}

/// The control token of daemons started with [`with_token`].
pub const TOKEN: &str = "s3cret-control-token";

/// `toml` (a whole config) with the control token set.
pub fn with_token(toml: &str) -> String {
    toml.replacen("[server]\n", &format!("[server]\ntoken = \"{TOKEN}\"\n"), 1)
}

/// One request, with the bearer `token` if given: the status and the JSON body
/// (`null` when the body is not JSON).
pub async fn call(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("daemon answers");
    let status = response.status();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}
