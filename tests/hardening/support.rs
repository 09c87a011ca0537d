//! The hardening harness: the emulator in this test process, the `cronbyte` binary as a
//! child process (so it can be `kill -9`ed and its every output captured), the history read
//! straight from the SQLite file, and the ledger check that compares the two.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use cronbyte::emulator::{
    AttemptPlan, Emulator, EmulatorHandle, EmulatorOptions, JobPlan, JobSnapshot,
};
use cronbyte::run::{Run, RunStatus};
use cronbyte::store::{HistoryFilter, SqliteStore, Store};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use uuid::Uuid;

/// The `cronbyte` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_cronbyte");

/// A number from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A temporary directory for one test, kept (and its path printed) when the test fails or
/// `CRONBYTE_KEEP_TEST_DIRS` is set, so the daemon's logs and history can be read afterwards.
pub struct WorkDir(Option<tempfile::TempDir>);

impl WorkDir {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("cronbyte-{name}-"))
            .tempdir()
            .expect("temp dir");
        Self(Some(dir))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take()
            && (std::thread::panicking() || std::env::var_os("CRONBYTE_KEEP_TEST_DIRS").is_some())
        {
            eprintln!("test files kept in {}", dir.keep().display());
        }
    }
}

/// An emulator on a free loopback port.
pub async fn emulator() -> EmulatorHandle {
    Emulator::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        EmulatorOptions::default(),
    )
    .await
    .expect("the emulator starts")
}

/// Polls `probe` every 100 ms until it gives a value; fails the test after `within`,
/// saying what it waited for and what `probe` last said (its `Err`).
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {within:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One `cronbyte run` child whose stdout and stderr go to files.
pub struct DaemonProcess {
    child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl DaemonProcess {
    /// Starts `cronbyte run --config config`, its output in `logs/{tag}.out` and `.err`.
    pub fn spawn(config: &Path, logs: &Path, tag: &str, env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(logs).expect("log dir");
        let stdout = logs.join(format!("{tag}.out"));
        let stderr = logs.join(format!("{tag}.err"));
        let mut command = Command::new(BIN);
        command
            .args(["run", "--config"])
            .arg(config)
            .env_remove("CRONBYTE_CONFIG")
            .env_remove("CRONBYTE_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("cronbyte run starts");
        Self {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the child has not been reaped")
    }

    /// Whether it still runs (it has not exited by itself).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `kill -9`, and waits for it to be gone.
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("SIGKILL sent");
        self.child.wait().await.expect("the child is reaped");
    }

    /// SIGTERM, and waits at most `within` for it to exit.
    pub async fn terminate(mut self, within: Duration) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM could not be sent");
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("the child is reaped"),
            Err(_) => panic!(
                "cronbyte run did not exit within {within:?} of SIGTERM; stderr ends:\n{}",
                tail(&read(&self.stderr), 40)
            ),
        }
    }

    /// Its JSON log lines so far (lines that are not JSON are skipped).
    pub fn log_lines(&self) -> Vec<Value> {
        read(&self.stderr)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Where its HTTP endpoint listens, from its "cronbyte is running" log line.
    pub async fn listen_addr(&self, within: Duration) -> SocketAddr {
        eventually(within, "the daemon to log where it listens", || async {
            self.listen_addr_now()
                .ok_or_else(|| tail(&read(&self.stderr), 10))
        })
        .await
    }

    /// Where its HTTP endpoint listens, once it has logged it.
    pub fn listen_addr_now(&self) -> Option<SocketAddr> {
        self.log_lines()
            .iter()
            .find(|l| {
                l["message"] == "cronbyte is running"
                    || l["fields"]["message"] == "cronbyte is running"
            })
            .and_then(|l| {
                l["listen"]
                    .as_str()
                    .or(l["fields"]["listen"].as_str())
                    .map(str::to_owned)
            })
            .and_then(|a| a.parse().ok())
    }
}

/// A file's text, empty if it does not exist.
pub fn read(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Every run in the history, oldest first; empty while the file does not exist yet.
/// A daemon just spawned makes the file before its tables and its WAL, so a read in
/// that moment can fail: a failed read is tried again for a few seconds before it
/// fails the test, with SQLite's message.
pub async fn history(store: &Path) -> Vec<Run> {
    if !store.exists() {
        return Vec::new();
    }
    let filter = HistoryFilter {
        connection: None,
        limit: u32::MAX,
    };
    let mut tries = 0;
    loop {
        let read = match SqliteStore::open_read_only(store).await {
            Ok(db) => {
                let read = db.history(&filter).await;
                db.close().await;
                read
            }
            Err(e) => Err(e),
        };
        match read {
            Ok(mut runs) => {
                runs.reverse();
                return runs;
            }
            Err(e) if tries >= 30 => panic!("the history does not read: {e}"),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Pauses connections in the store, as an operator does; the daemon reads pauses from
/// there every couple of seconds.
pub async fn pause(store: &Path, names: &[&str]) {
    let db = SqliteStore::open(store).await.expect("the store opens");
    for name in names {
        db.set_paused(name, true).await.expect("pause recorded");
    }
    db.close().await;
}

/// `PRAGMA integrity_check` on the file, which must say `ok`.
pub async fn integrity_check(store: &Path) -> Vec<String> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(store))
        .await
        .expect("the store opens for the integrity check");
    let verdict: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&pool)
        .await
        .expect("integrity_check runs");
    pool.close().await;
    verdict
}

/// Ticks (connection, scheduled instant) with more than one `schedule` run, read with SQL
/// so that the unique index is not what is being trusted.
pub async fn ticks_claimed_twice(store: &Path) -> Vec<(String, i64, i64)> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(store).read_only(true))
        .await
        .expect("the store opens");
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT connection, scheduled_for, COUNT(*) FROM runs WHERE trigger = 'schedule' \
         GROUP BY connection, scheduled_for HAVING COUNT(*) > 1",
    )
    .fetch_all(&pool)
    .await
    .expect("the query runs");
    pool.close().await;
    rows
}

/// The run status an Airbyte job's final status must be recorded as.
fn expected_statuses(job_status: &str) -> &'static [RunStatus] {
    match job_status {
        "succeeded" => &[RunStatus::Succeeded],
        "failed" => &[RunStatus::Failed, RunStatus::TimedOut],
        "cancelled" => &[RunStatus::Cancelled, RunStatus::TimedOut],
        _ => &[],
    }
}

/// What a comparison of the emulator's jobs with the history found.
#[derive(Debug, Default)]
pub struct Ledger {
    pub violations: Vec<String>,
    pub jobs: usize,
    pub runs: usize,
    pub by_status: BTreeMap<&'static str, usize>,
}

impl Ledger {
    pub fn assert_clean(&self, context: &str) {
        assert!(
            self.violations.is_empty(),
            "{context}: {} violation(s) of the history's promise:\n{}",
            self.violations.len(),
            self.violations.join("\n")
        );
    }
}

/// Compares every job the emulator ran with the history, after everything settled:
/// - each job is in the history exactly once, on a run of its connection, with the job's
///   final status, attempts, records and bytes;
/// - no run follows a job the emulator never ran;
/// - no run is left open; a run without a job was skipped on purpose and says why.
pub fn ledger(jobs: &[JobSnapshot], runs: &[Run], names: &HashMap<Uuid, String>) -> Ledger {
    let mut out = Ledger {
        jobs: jobs.len(),
        runs: runs.len(),
        ..Ledger::default()
    };
    let mut by_job: HashMap<i64, Vec<&Run>> = HashMap::new();
    for run in runs {
        *out.by_status.entry(run.status.as_str()).or_default() += 1;
        if let Some(job) = run.job_id {
            by_job.entry(job).or_default().push(run);
        }
        if run.status.is_open() {
            out.violations.push(format!(
                "run {} ({}) is left {}",
                run.id, run.connection, run.status
            ));
        }
        if run.job_id.is_none() && !run.status.is_open() {
            let reason = run.error.as_deref().unwrap_or("");
            if run.status != RunStatus::Skipped || reason.is_empty() {
                out.violations.push(format!(
                    "run {} ({}) has no job but ended `{}` ({reason:?}): only a skip, with its reason, may",
                    run.id, run.connection, run.status
                ));
            }
        }
    }
    for job in jobs {
        let name = names.get(&job.connection_id).cloned().unwrap_or_default();
        let recorded = by_job.remove(&job.id).unwrap_or_default();
        let [run] = recorded.as_slice() else {
            let ids: Vec<i64> = recorded.iter().map(|r| r.id).collect();
            out.violations.push(format!(
                "job {} ({name}, {}) is in the history {} times (runs {ids:?})",
                job.id,
                job.status,
                recorded.len()
            ));
            continue;
        };
        let mut wrong = String::new();
        if run.connection != name || run.connection_id != job.connection_id.to_string() {
            let _ = write!(wrong, " connection {} != {name};", run.connection);
        }
        if !expected_statuses(&job.status).contains(&run.status) {
            let _ = write!(
                wrong,
                " status {} for a job that ended {};",
                run.status, job.status
            );
        }
        if run.records_synced.unwrap_or(0) != job.records_committed {
            let _ = write!(
                wrong,
                " records {:?} != {};",
                run.records_synced, job.records_committed
            );
        }
        if run.bytes_synced.unwrap_or(0) != job.bytes_committed {
            let _ = write!(
                wrong,
                " bytes {:?} != {};",
                run.bytes_synced, job.bytes_committed
            );
        }
        if usize::try_from(run.attempts).ok() != Some(job.attempts) {
            let _ = write!(wrong, " attempts {} != {};", run.attempts, job.attempts);
        }
        if !wrong.is_empty() {
            out.violations.push(format!(
                "job {} recorded by run {} wrongly:{wrong}",
                job.id, run.id
            ));
        }
    }
    for (job, runs) in by_job {
        let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
        out.violations.push(format!(
            "runs {ids:?} follow job {job}, which the emulator never ran"
        ));
    }
    out
}

/// Finishes every job in the emulator, over and over, until the history has no open run,
/// every job has ended, and both stayed so for a second. Returns the settled history.
pub async fn settle(emulator: &EmulatorHandle, store: &Path, within: Duration) -> Vec<Run> {
    settle_with(emulator, within, || history(store)).await
}

/// [`settle`], with the history read by `history` (from any store).
pub async fn settle_with<F, Fut>(
    emulator: &EmulatorHandle,
    within: Duration,
    mut history: F,
) -> Vec<Run>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<Run>>,
{
    let control = emulator.control();
    let deadline = Instant::now() + within;
    let mut quiet_since: Option<Instant> = None;
    loop {
        control.finish_all_jobs();
        let runs = history().await;
        let open: Vec<String> = runs
            .iter()
            .filter(|r| r.status.is_open())
            .map(|r| format!("run {} ({}) {}", r.id, r.connection, r.status))
            .collect();
        let unfinished = control
            .jobs()
            .iter()
            .filter(|j| !matches!(j.status.as_str(), "succeeded" | "failed" | "cancelled"))
            .count();
        if open.is_empty() && unfinished == 0 {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(1) {
                return runs;
            }
        } else {
            quiet_since = None;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not settle within {within:?}: {unfinished} job(s) not ended; open: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The connection names of the emulator's connection ids.
pub fn names(pairs: &[(&str, Uuid)]) -> HashMap<Uuid, String> {
    pairs.iter().map(|(n, id)| (*id, (*n).to_owned())).collect()
}

/// Three connections whose jobs cover the documented outcomes: one that succeeds
/// (attaching to a job already running), one that fails and is retried once (skipping
/// overlaps), one whose first attempt fails and second succeeds. Name, job plan and the
/// lines the connection's config entry adds.
pub fn documented_mix() -> Vec<(&'static str, JobPlan, &'static str)> {
    vec![
        (
            "steady",
            JobPlan::succeeding(Duration::from_millis(800), 120, 12_000),
            "on_overlap = \"attach\"",
        ),
        (
            "flaky",
            JobPlan::failing(
                Duration::from_secs(1),
                "planned failure: source unreachable",
            ),
            "on_overlap = \"skip\"\nretries = 1\nretry_backoff = \"1s\"",
        ),
        (
            "twice",
            JobPlan::failing(Duration::from_millis(400), "planned failure: first attempt").then(
                AttemptPlan::succeeding(Duration::from_millis(600), 77, 7_700),
            ),
            "",
        ),
    ]
}

/// `[airbyte]`, `[store]`, `[server]`, `[workers]` and `[log]` for a test daemon; `extra`
/// goes at the end of `[airbyte]` (e.g. `request_timeout = "1s"`).
pub fn base_config(airbyte: &str, store: &Path, extra: &str) -> String {
    format!(
        "[airbyte]\nbase_url = \"{airbyte}\"\n{extra}\n\
         [store]\npath = \"{}\"\n\
         [server]\nlisten = \"127.0.0.1:0\"\n\
         [workers]\npoll_interval = \"200ms\"\n\
         [log]\nformat = \"json\"\n",
        store.display()
    )
}

/// One `[[connections]]` block firing on `cron`, with `extra` lines.
pub fn connection_block(name: &str, id: Uuid, cron: &str, extra: &str) -> String {
    format!(
        "\n[[connections]]\nname = \"{name}\"\nconnection_id = \"{id}\"\ncron = \"{cron}\"\n{extra}\n"
    )
}

/// Checks that a config text loads, so a test never runs on a config the daemon refuses.
pub fn valid(text: &str) -> String {
    if let Err(e) = cronbyte::config::from_str(text, cronbyte::config::Format::Toml) {
        panic!("test config does not load: {e}\n{text}");
    }
    text.to_owned()
}

/// Lines of all the files given that say something panicked.
pub fn panics(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| {
            read(f)
                .lines()
                .filter(|l| l.contains("panicked"))
                .map(|l| format!("{}: {l}", f.display()))
                .collect::<Vec<_>>()
        })
        .collect()
}
