//! The measured scenarios. Each starts what it needs (the emulator in this
//! process, the daemon as a child), measures, and returns rows for the table.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Timelike, Utc};
use cronbyte::emulator::{Emulator, EmulatorHandle, EmulatorOptions, JobPlan};
use cronbyte::run::{Outcome, Progress, RunStatus};
use std::sync::Arc;

use cronbyte::store::{Closing, HistoryFilter, PgStore, SqliteStore, Store};
use uuid::Uuid;

use crate::backend::Backend;
use crate::daemon::Daemon;

/// One measured figure, with its target.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub scenario: &'static str,
    pub measure: String,
    pub value: String,
    pub target: &'static str,
    pub met: Option<bool>,
    /// The raw number, for scripts and the smoke tests.
    pub number: f64,
}

fn row(
    scenario: &'static str,
    measure: &str,
    value: String,
    number: f64,
    target: &'static str,
    met: Option<bool>,
) -> Row {
    Row {
        scenario,
        measure: measure.to_owned(),
        value,
        target,
        met,
        number,
    }
}

/// The control API token of every daemon the bench starts.
const BENCH_TOKEN: &str = "bench-token";

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn emulator() -> anyhow::Result<EmulatorHandle> {
    Ok(Emulator::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        EmulatorOptions::default(),
    )
    .await?)
}

/// A config with `connections` (name, id, and the lines of its entry after those two:
/// `cron = ...` and any other key) and the given worker settings.
fn write_config(
    dir: &Path,
    store: &str,
    base_url: &str,
    port: u16,
    poll: &str,
    cap: usize,
    connections: &[(String, Uuid, String)],
) -> anyhow::Result<std::path::PathBuf> {
    let mut text = format!(
        "[airbyte]\nbase_url = \"{base_url}\"\n[store]\n{store}\n[server]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{BENCH_TOKEN}\"\n\
         [workers]\npoll_interval = \"{poll}\"\nmax_concurrent_syncs = {cap}\npoll_concurrency = 16\n[log]\nlevel = \"warn\"\n"
    );
    for (name, id, body) in connections {
        let _ = write!(
            text,
            "\n[[connections]]\nname = \"{name}\"\nconnection_id = \"{id}\"\n{body}\n"
        );
    }
    let path = dir.join("cronbyte.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Rules spread over the day that do not fire within the next `quiet` window.
fn assorted_quiet_rules(n: usize, quiet: Duration) -> Vec<String> {
    let now = Utc::now();
    let quiet_hours = (quiet.as_secs() / 3600 + 2) as u32;
    (0..n)
        .map(|i| {
            let minute = (i * 7) % 60;
            // Hours at least `quiet_hours` from now, in UTC.
            let hour = (now.hour() + quiet_hours + (i as u32 % (24 - quiet_hours).max(1))) % 24;
            match i % 4 {
                0 => format!("{minute} {hour} * * *"),
                1 => format!("0 {minute} {hour} * * ?"),
                2 => format!("{minute} {hour} * * 1-5"),
                _ => format!("{minute} {hour} 1,15 * *"),
            }
        })
        .collect()
}

fn add_connections(emulator: &EmulatorHandle, n: usize, plan: &JobPlan) -> Vec<(String, Uuid)> {
    let control = emulator.control();
    (0..n)
        .map(|i| {
            let name = format!("conn-{i:05}");
            let id = control.add_connection(&name);
            control.set_plan(id, plan.clone());
            (name, id)
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A six-field rule firing once a day at `at`'s second (UTC).
fn at_second(at: DateTime<Utc>) -> String {
    format!("{} {} {} * * *", at.second(), at.minute(), at.hour())
}

/// Idle: many connections configured, nothing due: resident memory and CPU.
pub async fn idle(
    dir: &Path,
    connections: usize,
    seconds: u64,
    shape: Shape,
) -> anyhow::Result<Vec<Row>> {
    let emulator = emulator().await?;
    let ids = add_connections(&emulator, connections, &JobPlan::default());
    let (entries, distinct) = match shape {
        Shape::Assorted => {
            let rules = assorted_quiet_rules(connections, Duration::from_secs(seconds));
            let distinct = rules.iter().collect::<std::collections::HashSet<_>>().len();
            let entries = ids
                .into_iter()
                .zip(rules)
                .map(|((n, i), r)| (n, i, format!("cron = \"{r}\"")))
                .collect::<Vec<_>>();
            (entries, distinct)
        }
        Shape::Real => {
            let rules = distinct_zoned_quiet_rules(connections);
            let distinct = rules.iter().collect::<std::collections::HashSet<_>>().len();
            let entries = ids
                .into_iter()
                .zip(rules)
                .enumerate()
                .map(|(k, ((_, i), (rule, zone)))| {
                    // Names as teams write them: source, destination and purpose.
                    let name = format!("warehouse-{zone}-orders-and-customers-to-bronze-{k:05}")
                        .to_lowercase()
                        .replace('/', "-");
                    (name, i, format!("cron = \"{rule}\"\ntimezone = \"{zone}\""))
                })
                .collect::<Vec<_>>();
            (entries, distinct)
        }
    };
    let port = free_port()?;
    let store = Backend::Sqlite(dir.join("history.db")).config_line();
    let base_url = emulator.config_api_base();
    // The same file each time, but for its connections.
    let write = |entries: &[(String, Uuid, String)]| {
        write_config(dir, &store, &base_url, port, "10s", 100, entries)
    };
    let config = write(&entries)?;
    let daemon = Daemon::start(&config, dir)?;
    // Let start-up work settle before measuring the idle state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let startup_peak = mib(daemon.peak_rss()?);
    let cpu_before = daemon.cpu_seconds()?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = (daemon.cpu_seconds()? - cpu_before) / started.elapsed().as_secs_f64() * 100.0;
    let rss = mib(daemon.rss()?);
    // A reload of the whole file (unchanged): it is read, checked and compared again.
    daemon.reload()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reload_peak = mib(daemon.peak_rss()?);
    // What stays once the reload is done: the old config must be gone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_reload = mib(daemon.rss()?);
    // Reloads that change every connection (each gets another jitter): all their
    // settings are replaced, so none of the ones in force can be kept. Five in a
    // row show whether what they leave behind adds up.
    let mut after_changes = Vec::new();
    for jitter in 1..=CHANGING_RELOADS {
        let changed: Vec<(String, Uuid, String)> = entries
            .iter()
            .map(|(name, id, body)| (name.clone(), *id, format!("{body}\njitter = \"{jitter}s\"")))
            .collect();
        write(&changed)?;
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/api/v1/reload"))
            .bearer_auth(BENCH_TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let replaced = answer["summary"]["changed"].as_array().map_or(0, Vec::len);
        if replaced != connections {
            bail!("the reload changed {replaced} connections of {connections}: {answer}");
        }
        tokio::time::sleep(Duration::from_secs(8)).await;
        after_changes.push(mib(daemon.rss()?));
    }
    let changing_peak = mib(daemon.peak_rss()?);
    let triggered = emulator.control().requests().get("connections/sync");
    daemon.stop()?;
    if triggered > 0 {
        bail!("{triggered} syncs were triggered in an idle window");
    }
    let what = match shape {
        Shape::Assorted => format!("{connections} connections, {distinct} distinct rules"),
        Shape::Real => format!(
            "{connections} connections, {distinct} distinct rule and zone pairs, zones and long names"
        ),
    };
    let (target, limit) = match shape {
        Shape::Assorted => ("< 50 MiB", 50.0),
        Shape::Real => ("< 30 MiB", 30.0),
    };
    let per_connection = rss * 1024.0 * 1024.0 / connections as f64;
    Ok(vec![
        row(
            "idle",
            &format!("RSS, {what}"),
            format!("{rss:.1} MiB ({per_connection:.0} B per connection)"),
            rss,
            target,
            Some(rss < limit),
        ),
        row(
            "idle",
            &format!("peak RSS at start-up, {what}"),
            format!("{startup_peak:.1} MiB"),
            startup_peak,
            "(for the record)",
            None,
        ),
        row(
            "idle",
            &format!("peak RSS through a reload of the whole file, {what}"),
            format!("{reload_peak:.1} MiB"),
            reload_peak,
            "(for the record)",
            None,
        ),
        row(
            "idle",
            &format!("RSS 8 s after that reload, {what}"),
            format!("{after_reload:.1} MiB"),
            after_reload,
            "(for the record)",
            None,
        ),
        row(
            "idle",
            &format!("RSS 8 s after a reload changing every connection, {what}"),
            format!("{:.1} MiB", after_changes[0]),
            after_changes[0],
            "(for the record)",
            None,
        ),
        row(
            "idle",
            &format!("RSS after {CHANGING_RELOADS} such reloads, {what}"),
            format!(
                "{:.1} MiB (each: {})",
                after_changes[after_changes.len() - 1],
                after_changes
                    .iter()
                    .map(|m| format!("{m:.1}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            after_changes[after_changes.len() - 1],
            "(for the record)",
            None,
        ),
        row(
            "idle",
            &format!("peak RSS through all reloads, {what}"),
            format!("{changing_peak:.1} MiB"),
            changing_peak,
            "(for the record)",
            None,
        ),
        row(
            "idle",
            &format!("CPU over {seconds} s, {what}"),
            format!("{cpu:.2} % of a core"),
            cpu,
            "< 0.5 %",
            Some(cpu < 0.5),
        ),
    ])
}

/// How many reloads changing every connection the idle scenario makes.
const CHANGING_RELOADS: usize = 5;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Which connections the idle scenario configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Rules that repeat every few hundred connections, no zone set: the first bench.
    Assorted,
    /// As real configs write them: mostly distinct rules, a `timezone` on every entry,
    /// long names.
    Real,
}

/// Rules that differ from one connection to the next (minute, hour, weekday and a day
/// of the month, in one of a dozen zones) and fire only on days of the month at least
/// two days from today in every zone, so that none fires during the bench.
fn distinct_zoned_quiet_rules(n: usize) -> Vec<(String, &'static str)> {
    const ZONES: [&str; 12] = [
        "UTC",
        "Europe/Berlin",
        "Europe/London",
        "America/New_York",
        "America/Chicago",
        "America/Los_Angeles",
        "America/Sao_Paulo",
        "Asia/Tokyo",
        "Asia/Kolkata",
        "Asia/Singapore",
        "Australia/Sydney",
        "Africa/Johannesburg",
    ];
    let today = chrono::Datelike::day(&Utc::now());
    // Days 1-28 that are at least two days from today, whatever the month's length.
    let quiet_days: Vec<u32> = (1..=28u32)
        .filter(|d| (2..=26).contains(&d.abs_diff(today)))
        .collect();
    (0..n)
        .map(|i| {
            let minute = i % 60;
            let hour = (i / 60) % 24;
            let day = quiet_days[(i / 7) % quiet_days.len()];
            let zone = ZONES[(i / 13) % ZONES.len()];
            let rule = match i % 3 {
                0 => format!("{minute} {hour} {day} * *"),
                1 => format!("0 {minute} {hour} {day} * ?"),
                _ => format!(
                    "{minute} {hour} {day},{} * *",
                    quiet_days[(i / 11) % quiet_days.len()]
                ),
            };
            (rule, zone)
        })
        .collect()
}

/// Starts the daemon with `connections` all due on one second, jobs of `job`,
/// and waits until every run ended; returns the emulator and the history.
async fn all_due_at_once(
    dir: &Path,
    backend: &Backend,
    connections: usize,
    job: Duration,
    poll: Duration,
    patience: Duration,
) -> anyhow::Result<(EmulatorHandle, Arc<dyn Store>, f64)> {
    let emulator = emulator().await?;
    let plan = JobPlan::succeeding(job, 100, 10_000).pending_for(Duration::ZERO);
    let ids = add_connections(&emulator, connections, &plan);
    // Time to load and start before the instant: more connections, more time.
    let lead = Duration::from_secs(3 + connections as u64 / 500);
    let at = (Utc::now() + chrono::Duration::from_std(lead)?)
        .with_nanosecond(0)
        .context("time")?;
    let rule = at_second(at);
    let list: Vec<_> = ids
        .iter()
        .map(|(n, i)| (n.clone(), *i, format!("cron = \"{rule}\"")))
        .collect();
    let poll_text = format!("{}ms", poll.as_millis());
    let config = write_config(
        dir,
        &backend.config_line(),
        &emulator.config_api_base(),
        free_port()?,
        &poll_text,
        connections,
        &list,
    )?;
    let daemon = Daemon::start(&config, dir)?;
    let store = wait_for_terminal(backend, connections, patience + Duration::from_secs(60)).await?;
    let peak = mib(daemon.peak_rss()?);
    daemon.stop()?;
    Ok((emulator, store, peak))
}

/// Burst: every connection due on the same second.
pub async fn burst(
    dir: &Path,
    backend: &Backend,
    connections: usize,
    job: Duration,
    poll: Duration,
) -> anyhow::Result<Vec<Row>> {
    let (emulator, store, peak) =
        all_due_at_once(dir, backend, connections, job, poll, job * 4).await?;

    let runs = store
        .history(&HistoryFilter {
            connection: None,
            limit: u32::MAX,
        })
        .await?;
    let jobs: std::collections::HashMap<i64, _> = emulator
        .control()
        .jobs()
        .into_iter()
        .map(|j| (j.id, j))
        .collect();
    let mut lag: Vec<f64> = Vec::new();
    let mut detection: Vec<f64> = Vec::new();
    for run in &runs {
        let job = run
            .job_id
            .and_then(|id| jobs.get(&id))
            .context("a run without its job")?;
        // The emulator saw the request when it created the job.
        lag.push((job.created_at_ms - run.scheduled_for.timestamp_millis()) as f64);
        let ended = job.ended_at_ms.context("a job that did not end")?;
        let finished = run.finished_at.context("a run without an end")?;
        detection.push((finished.timestamp_millis() - ended) as f64);
    }
    lag.sort_by(f64::total_cmp);
    detection.sort_by(f64::total_cmp);
    let p99_lag = percentile(&lag, 99.0);
    let last = lag.last().copied().unwrap_or(f64::NAN);
    let p99_detect = percentile(&detection, 99.0);
    let detect_target = poll.as_secs_f64() * 1000.0 + 200.0;
    Ok(vec![
        row(
            "burst",
            &format!("lag p50 / p99, {connections} due at once"),
            format!("{:.0} / {p99_lag:.0} ms", percentile(&lag, 50.0)),
            p99_lag,
            "p99 < 250 ms",
            Some(p99_lag < 250.0),
        ),
        row(
            "burst",
            "last sync request after the instant",
            format!("{last:.0} ms"),
            last,
            "< 1 s",
            Some(last < 1000.0),
        ),
        row(
            "burst",
            &format!("detection p50 / p99, poll {poll:?}"),
            format!("{:.0} / {p99_detect:.0} ms", percentile(&detection, 50.0)),
            p99_detect,
            "p99 < poll + 200 ms",
            Some(p99_detect < detect_target),
        ),
        row(
            "burst",
            "runs recorded",
            runs.len().to_string(),
            runs.len() as f64,
            "all",
            Some(runs.len() == connections),
        ),
        row(
            "burst",
            &format!("peak RSS through the burst, {connections} due at once"),
            format!("{peak:.1} MiB"),
            peak,
            "(for the record)",
            None,
        ),
    ])
}

/// Polling: many long jobs in flight; Airbyte requests per completed sync.
pub async fn polling(
    dir: &Path,
    connections: usize,
    job: Duration,
    poll: Duration,
) -> anyhow::Result<Vec<Row>> {
    let backend = Backend::Sqlite(dir.join("history.db"));
    let (emulator, store, _) =
        all_due_at_once(dir, &backend, connections, job, poll, job * 3).await?;
    let succeeded = store
        .history(&HistoryFilter {
            connection: None,
            limit: u32::MAX,
        })
        .await?
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .count();
    let requests = emulator.control().requests();
    // Health checks are not about syncs; everything else counts.
    let counted = requests.total - requests.get("health");
    let per_sync = counted as f64 / succeeded.max(1) as f64;
    let polls = counted.saturating_sub(requests.get("connections/sync"));
    Ok(vec![row(
        "polling",
        &format!("requests per completed sync, {connections} jobs of {job:?}, poll {poll:?}"),
        format!("{per_sync:.3} ({counted} requests, {polls} of them polls, {succeeded} syncs)"),
        per_sync,
        "<= 1.1",
        Some(per_sync <= 1.1),
    )])
}

/// Waits until the store holds `n` runs, all ended.
async fn wait_for_terminal(
    backend: &Backend,
    n: usize,
    within: Duration,
) -> anyhow::Result<Arc<dyn Store>> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(store) = backend.open_for_reading().await {
            let runs = store
                .history(&HistoryFilter {
                    connection: None,
                    limit: u32::MAX,
                })
                .await?;
            if runs.len() >= n && runs.iter().all(|r| !r.status.is_open()) {
                return Ok(store);
            }
            store.close().await;
        }
        if Instant::now() > deadline {
            bail!("the runs did not all end within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Fills a store with `runs` ended runs over `connections` connections, as if
/// the daemon had run for a while (hourly runs going back in time).
async fn fill_store(path: &Path, runs: usize, connections: usize) -> anyhow::Result<()> {
    let store = SqliteStore::open(path).await?;
    store.close().await;
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(path))
        .await?;
    let now = Utc::now().timestamp_millis();
    let mut tx = pool.begin().await?;
    for i in 0..runs {
        let connection = i % connections.max(1);
        let age = (i / connections.max(1)) as i64 * 3_600_000;
        let scheduled = now - age - 60_000;
        sqlx::query(
            "INSERT INTO runs (connection, connection_id, trigger, scheduled_for, claimed_at, started_at, finished_at, \
                 status, job_id, attempts, records_synced, bytes_synced) \
             VALUES (?, ?, 'schedule', ?, ?, ?, ?, ?, ?, 1, ?, ?)",
        )
        .bind(format!("conn-{connection:05}"))
        .bind("1f0e2d3c-4b5a-4678-9abc-def012345678")
        .bind(scheduled)
        .bind(scheduled + 5)
        .bind(scheduled + 40)
        .bind(scheduled + 30_000)
        .bind(if i % 10 == 0 { "failed" } else { "succeeded" })
        .bind(i as i64 + 1)
        .bind(1_000 + (i % 5_000) as i64)
        .bind(250_000 + (i % 100_000) as i64)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

/// History: a large store; write rate, the queries operators and the daemon run, size.
pub async fn history(dir: &Path, backend: &Backend, runs: usize) -> anyhow::Result<Vec<Row>> {
    let path = dir.join("history.db");
    let connections = 1_000;
    fill_store(&path, runs, connections).await?;
    // PostgreSQL is filled the way a team moves there: a copy of the SQLite file.
    let mut copy_row = None;
    if let Backend::Postgres { url, .. } = backend {
        let sqlite = SqliteStore::open(&path).await?;
        let postgres = PgStore::open(&secrecy::SecretString::from(url.clone())).await?;
        let started = Instant::now();
        let copied = postgres.copy_from_sqlite(&sqlite).await?;
        let took = started.elapsed().as_secs_f64();
        sqlite.close().await;
        postgres.close().await;
        copy_row = Some(row(
            "history",
            &format!("migrate --from-sqlite, {} runs", copied.runs),
            format!("{took:.1} s"),
            took,
            "(for the record)",
            None,
        ));
    }
    let bytes = backend.bytes().await?;
    let per_run = bytes / runs as f64;

    let store = backend.open().await?;
    // Terminal updates as the tracker writes them: claimed runs closed with counts.
    let updates = 20_000.min(runs);
    let mut ids = Vec::with_capacity(updates);
    for i in 0..updates {
        let run = store
            .claim(cronbyte::run::NewRun {
                connection: format!("conn-{:05}", i % connections),
                connection_id: "1f0e2d3c-4b5a-4678-9abc-def012345678".into(),
                instance: "default".into(),
                trigger: cronbyte::run::Trigger::Manual,
                scheduled_for: Utc::now(),
                retry_of: None,
                claimed_at: chrono::Utc::now(),
            })
            .await?
            .context("claimed")?;
        ids.push(run.id);
    }
    let outcome = |_| Outcome {
        status: RunStatus::Succeeded,
        finished_at: Utc::now(),
        progress: Progress {
            attempts: 1,
            records_synced: Some(10),
            bytes_synced: Some(100),
        },
        error: None,
    };
    let started = Instant::now();
    for chunk in ids[..updates / 2].chunks(1) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|id| Closing::only(*id, outcome(id)))
            .collect();
        store.finish(&batch).await?;
    }
    let single_rate = (updates / 2) as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for chunk in ids[updates / 2..].chunks(200) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|id| Closing::only(*id, outcome(id)))
            .collect();
        store.finish(&batch).await?;
    }
    let batched_rate = (updates - updates / 2) as f64 / started.elapsed().as_secs_f64();

    let mut history_ms = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let rows = store
            .history(&HistoryFilter {
                connection: Some(format!("conn-{:05}", i * 37 % connections)),
                limit: 100,
            })
            .await?;
        history_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        // Each connection has runs / connections rows, plus the claimed ones.
        let expected = (runs / connections + updates / connections).min(100);
        if rows.len() < expected {
            bail!("history returned {} rows, expected {expected}", rows.len());
        }
    }
    history_ms.sort_by(f64::total_cmp);
    let mut ratio_ms = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        store
            .ended_since(Utc::now() - chrono::Duration::hours(24))
            .await?;
        store.totals().await?;
        ratio_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ratio_ms.sort_by(f64::total_cmp);
    store.close().await;
    let rate = batched_rate;
    let median = |v: &[f64]| percentile(v, 50.0);
    let mut rows = vec![
        row(
            "history",
            "terminal updates, batches of 200 (a poll round)",
            format!("{batched_rate:.0}/s"),
            rate,
            ">= 10,000/s",
            Some(rate >= 10_000.0),
        ),
        row(
            "history",
            "terminal updates, one per transaction",
            format!("{single_rate:.0}/s"),
            single_rate,
            "(for comparison)",
            None,
        ),
        row(
            "history",
            &format!("history --connection X --limit 100, {runs} runs"),
            format!("{:.2} ms (median of 20)", median(&history_ms)),
            median(&history_ms),
            "< 10 ms",
            Some(median(&history_ms) < 10.0),
        ),
        row(
            "history",
            "success ratio and totals for all connections (start-up queries)",
            format!("{:.0} ms (median of 5)", median(&ratio_ms)),
            median(&ratio_ms),
            "< 200 ms",
            Some(median(&ratio_ms) < 200.0),
        ),
        row(
            "history",
            "bytes on disk per run",
            format!("{per_run:.0} B"),
            per_run,
            "< 300 B",
            Some(per_run < 300.0),
        ),
    ];
    rows.extend(copy_row);
    Ok(rows)
}

/// A daemon's config with `connections` connections on the emulator, each with
/// three ended runs in the history and quiet rules: the emulator (keep it alive),
/// the config file and the daemon's port.
async fn many_connections_with_history(
    dir: &Path,
    connections: usize,
) -> anyhow::Result<(EmulatorHandle, std::path::PathBuf, u16)> {
    let sqlite = Backend::Sqlite(dir.join("history.db"));
    many_connections_on(dir, &sqlite, connections).await
}

/// [`many_connections_with_history`], with the history in `backend`: a PostgreSQL
/// store gets it the way a team moves there, copied from the SQLite file.
async fn many_connections_on(
    dir: &Path,
    backend: &Backend,
    connections: usize,
) -> anyhow::Result<(EmulatorHandle, std::path::PathBuf, u16)> {
    let emulator = emulator().await?;
    let plan =
        JobPlan::succeeding(Duration::from_millis(500), 100, 10_000).pending_for(Duration::ZERO);
    let ids = add_connections(&emulator, connections, &plan);
    let rules = assorted_quiet_rules(connections, Duration::from_secs(300));
    let list: Vec<_> = ids
        .into_iter()
        .zip(rules)
        .map(|((n, i), r)| (n, i, format!("cron = \"{r}\"")))
        .collect();
    let port = free_port()?;
    let config = write_config(
        dir,
        &backend.config_line(),
        &emulator.config_api_base(),
        port,
        "1s",
        connections,
        &list,
    )?;
    let sqlite = dir.join("history.db");
    fill_store(&sqlite, connections * 3, connections).await?;
    if let Backend::Postgres { url, .. } = backend {
        let from = SqliteStore::open(&sqlite).await?;
        let to = PgStore::open(&secrecy::SecretString::from(url.clone())).await?;
        to.copy_from_sqlite(&from).await?;
        from.close().await;
        to.close().await;
    }
    Ok((emulator, config, port))
}

/// Start-up on the scenario's store: spawn to READY=1, and to `/readyz` saying the
/// daemon is the active replica (on PostgreSQL it takes the lease first, then seeds
/// its metrics and takes up open runs), with many connections and a history.
pub async fn startup(
    dir: &Path,
    backend: &Backend,
    connections: usize,
) -> anyhow::Result<Vec<Row>> {
    let (_emulator, config, port) = many_connections_on(dir, backend, connections).await?;
    let daemon = Daemon::start(&config, dir)?;
    let ready = daemon.ready_after.as_secs_f64() * 1000.0;
    let client = reqwest::Client::new();
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(60);
    let active = loop {
        let answer = client.get(&readyz).send().await?;
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        if body["role"] == "active" {
            break daemon.since_spawn().as_secs_f64() * 1000.0;
        }
        if Instant::now() > deadline {
            bail!("the daemon did not become active within 60 s: {body}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    daemon.stop()?;
    let store = match backend {
        Backend::Sqlite(_) => "SQLite",
        Backend::Postgres { .. } => "PostgreSQL",
    };
    Ok(vec![
        row(
            "startup",
            &format!("spawn to READY=1, {connections} connections, {store}"),
            format!("{ready:.0} ms"),
            ready,
            "< 1 s",
            Some(ready < 1000.0),
        ),
        row(
            "startup",
            &format!(
                "spawn to active (first /readyz saying so), {connections} connections, {store}"
            ),
            format!("{active:.0} ms"),
            active,
            "< 1 s",
            Some(active < 1000.0),
        ),
    ])
}

/// Status: `GET /api/v1/connections` (what `cronbyte status` reads) with many
/// connections, each with a last run in the history.
pub async fn status(dir: &Path, connections: usize) -> anyhow::Result<Vec<Row>> {
    let (_emulator, config, port) = many_connections_with_history(dir, connections).await?;
    let daemon = Daemon::start(&config, dir)?;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/connections");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..10 {
        let started = Instant::now();
        let response = client.get(&url).bearer_auth(BENCH_TOKEN).send().await?;
        if !response.status().is_success() {
            bail!("GET /api/v1/connections was answered {}", response.status());
        }
        let body = response.bytes().await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        size = body.len();
        let listed: serde_json::Value = serde_json::from_slice(&body)?;
        let with_last_run = listed["connections"]
            .as_array()
            .map(|all| all.iter().filter(|c| c["last_run"].is_object()).count())
            .unwrap_or(0);
        if with_last_run != connections {
            bail!("{with_last_run} of {connections} connections listed with their last run");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.stop()?;
    times.sort_by(f64::total_cmp);
    let median = percentile(&times, 50.0);
    let slowest = times.last().copied().unwrap_or(f64::NAN);
    Ok(vec![row(
        "status",
        &format!("GET /api/v1/connections, {connections} connections"),
        format!(
            "{median:.1} ms (median of 10; slowest {slowest:.1}), {:.1} MiB body",
            size as f64 / 1048576.0
        ),
        median,
        "-",
        None,
    )])
}

/// The status page: its first page (`GET /`, 50 connections with their last 20
/// runs each, the running syncs, recent failures) and the same sorted by next run,
/// with many connections, each with runs in the history. Timed from the request
/// to the last byte, as the status scenario is.
pub async fn page(dir: &Path, connections: usize) -> anyhow::Result<Vec<Row>> {
    let (_emulator, config, port) = many_connections_with_history(dir, connections).await?;
    let daemon = Daemon::start(&config, dir)?;
    let client = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut rows = Vec::new();
    for (path, what, target) in [
        ("/", "first page", Some(100.0)),
        (
            "/?sort=next_run",
            "first page sorted by next run",
            Some(100.0),
        ),
        // Judging every connection's freshness parses every rule.
        (
            "/?status=stale",
            "stale ones, judged over every connection",
            None,
        ),
    ] {
        let url = format!("http://127.0.0.1:{port}{path}");
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..10 {
            let started = Instant::now();
            let response = client.get(&url).send().await?;
            if !response.status().is_success() {
                bail!("GET {path} was answered {}", response.status());
            }
            let body = response.text().await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            size = body.len();
            let shown = body.matches("<tr class=\"connection").count();
            if target.is_some() && shown != connections.min(50) {
                bail!("GET {path} showed {shown} connections");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        times.sort_by(f64::total_cmp);
        let median = percentile(&times, 50.0);
        let slowest = times.last().copied().unwrap_or(f64::NAN);
        rows.push(row(
            "page",
            &format!("GET {path} ({what}), {connections} connections"),
            format!(
                "{median:.1} ms (median of 10; slowest {slowest:.1}), {:.0} KiB body",
                size as f64 / 1024.0
            ),
            median,
            if target.is_some() { "< 100 ms" } else { "-" },
            target.map(|t| median < t),
        ));
    }
    daemon.stop()?;
    Ok(rows)
}

/// Scrape and start-up with many connections, each with some history. `/metrics`
/// is measured twice: as started (counters seeded from the history), and once every
/// connection has synced since, which adds its duration gauge and sets the ones
/// seeded empty: what a long-running daemon serves.
pub async fn scrape_and_startup(dir: &Path, connections: usize) -> anyhow::Result<Vec<Row>> {
    let (_emulator, config, port) = many_connections_with_history(dir, connections).await?;

    let started = Instant::now();
    let check = std::process::Command::new(crate::daemon::binary()?)
        .args(["check", "--config"])
        .arg(&config)
        .output()?;
    let check_time = started.elapsed().as_secs_f64() * 1000.0;
    if !check.status.success() {
        bail!("check failed: {}", String::from_utf8_lossy(&check.stderr));
    }
    let daemon = Daemon::start(&config, dir)?;
    let ready = daemon.ready_after.as_secs_f64() * 1000.0;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let (as_started, started_size) = time_scrapes(&client, &base).await?;
    sync_every_connection_once(&client, &base, &dir.join("history.db"), connections).await?;
    let (synced, synced_size) = time_scrapes(&client, &base).await?;
    daemon.stop()?;
    let scrape_row = |measure: String, times: Vec<f64>, size: usize| {
        let scrape = percentile(&times, 50.0);
        let slowest = times.last().copied().unwrap_or(f64::NAN);
        row(
            "scrape",
            &measure,
            format!(
                "{scrape:.1} ms (median of 10; slowest {slowest:.1}), {:.1} MiB body",
                size as f64 / 1048576.0
            ),
            scrape,
            "< 50 ms",
            Some(scrape < 50.0),
        )
    };
    Ok(vec![
        scrape_row(
            format!("/metrics, {connections} connections, as started"),
            as_started,
            started_size,
        ),
        scrape_row(
            format!("/metrics, {connections} connections, each synced since start"),
            synced,
            synced_size,
        ),
        row(
            "startup",
            &format!("cronbyte check, {connections} connections"),
            format!("{check_time:.0} ms"),
            check_time,
            "< 1 s",
            Some(check_time < 1000.0),
        ),
        row(
            "startup",
            &format!("spawn to READY=1, {connections} connections"),
            format!("{ready:.0} ms"),
            ready,
            "< 1 s",
            Some(ready < 1000.0),
        ),
    ])
}

/// Ten scrapes of `/metrics`, one after the other: their times, sorted, and the
/// body's size.
async fn time_scrapes(client: &reqwest::Client, base: &str) -> anyhow::Result<(Vec<f64>, usize)> {
    // Let the work of what came before (start-up, a burst of syncs) settle, and
    // space the scrapes a little, as a Prometheus scraping every few seconds would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut times = Vec::new();
    let mut size = 0;
    let needle: &[u8] = b"cronbyte_syncs_total{connection=\"conn-00000\"";
    for _ in 0..10 {
        let started = Instant::now();
        // Bytes, as Prometheus reads them: decoding text would be the client's cost.
        let body = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .bytes()
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        size = body.len();
        if !body.windows(needle.len()).any(|w| w == needle) {
            bail!("the scrape lacks the seeded counters");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    times.sort_by(f64::total_cmp);
    Ok((times, size))
}

/// Triggers every connection through the control API and waits until each
/// manual run has ended.
async fn sync_every_connection_once(
    client: &reqwest::Client,
    base: &str,
    history: &Path,
    connections: usize,
) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    let mut answers = futures::stream::iter(0..connections)
        .map(|i| {
            client
                .post(format!("{base}/api/v1/connections/conn-{i:05}/trigger"))
                .bearer_auth(BENCH_TOKEN)
                .send()
        })
        .buffer_unordered(32);
    while let Some(answer) = answers.next().await {
        let status = answer?.status();
        if !status.is_success() {
            bail!("a manual trigger was answered {status}");
        }
    }
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(history))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120 + connections as u64 / 50);
    loop {
        let (ended,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM runs WHERE trigger = 'manual' AND finished_at IS NOT NULL",
        )
        .fetch_one(&pool)
        .await?;
        if ended as usize >= connections {
            break;
        }
        if Instant::now() > deadline {
            bail!("{ended} of {connections} manual runs ended in time");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    pool.close().await;
    Ok(())
}
