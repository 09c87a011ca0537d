//! What each subcommand does, once `main` has parsed it: the edge where library
//! errors become messages and exit codes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigErrors};
use crate::daemon::Daemon;
use crate::emulator::{Emulator, EmulatorOptions};
use crate::run::Run;
use crate::store::HistoryFilter;

/// Exit status for a config that does not validate.
const EXIT_CONFIG: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON object per line, for scripts.
    Json,
}

pub struct HistoryArgs {
    pub connection: Option<String>,
    pub limit: u32,
    pub format: OutputFormat,
}

/// Loads what a command needs of the config with `read` (all of it with `config::load`,
/// one section with `config::load_store` or `config::load_server`), printing every problem
/// on failure.
fn load<T>(
    path: &Path,
    read: impl FnOnce(&Path) -> Result<T, ConfigErrors>,
) -> Result<T, ExitCode> {
    match read(path) {
        Ok(config) => Ok(config),
        Err(errors) => {
            eprintln!("{}: {} problem(s):", path.display(), errors.problems.len());
            eprintln!("{errors}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn print_warnings(config: &Config) {
    for warning in config.warnings() {
        eprintln!("warning: {}: {}", warning.path, warning.message);
    }
}

/// Cancels `token` on SIGTERM or SIGINT (Ctrl-C).
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut terminate) => {
                    tokio::select! {
                        _ = interrupt => {}
                        _ = terminate.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = interrupt.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = interrupt.await;
        }
        tracing::info!("shutdown requested");
        token.cancel();
    });
}

pub async fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match load(path, config::load) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    crate::telemetry::init(&config.log.level, config.log.format);
    print_warnings(&config);
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    let daemon = Daemon::build(config)
        .await?
        .with_config_path(path.to_owned());
    daemon.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `cronbyte check [--online]`: the config, and with `online` each instance's schedules
/// against it (`takeover::watch`).
pub async fn check(path: &Path, online: bool) -> anyhow::Result<ExitCode> {
    let config = match load(path, config::load) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    print_warnings(&config);
    if online && !crate::takeover::command::check_online(&config).await {
        return Ok(ExitCode::FAILURE);
    }
    let scheduled = config.connections.iter().filter(|c| c.enabled).count();
    println!(
        "{}: OK ({} connection(s), {} enabled)",
        path.display(),
        config.connections.len(),
        scheduled
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads only `[store]`: the rest of the config (and its secrets) is not needed.
/// With `from_sqlite`, copies that SQLite history into the PostgreSQL store.
pub async fn migrate(path: &Path, from_sqlite: Option<&Path>) -> anyhow::Result<ExitCode> {
    let store = match load(path, config::load_store) {
        Ok(store) => store,
        Err(code) => return Ok(code),
    };
    let (applied, shown) = crate::store::migrate(&store).await?;
    println!("{shown}: {applied} migration(s) applied");
    let Some(sqlite_path) = from_sqlite else {
        return Ok(ExitCode::SUCCESS);
    };
    let Some(url) = &store.url else {
        anyhow::bail!(
            "--from-sqlite copies into PostgreSQL: set [store] url in {} to the database to fill",
            path.display()
        );
    };
    if !sqlite_path.is_file() {
        anyhow::bail!("--from-sqlite {}: no such file", sqlite_path.display());
    }
    // Opened as the daemon opens it, so an older file is brought to the schema
    // this build reads.
    let sqlite = crate::store::SqliteStore::open(sqlite_path).await?;
    let postgres = crate::store::PgStore::connect(url).await?;
    let copied = postgres.copy_from_sqlite(&sqlite).await;
    sqlite.close().await;
    postgres.close().await;
    let copied = copied?;
    println!(
        "{} -> {shown}: {} run(s), {} pause(s), {} Airbyte object(s) copied",
        sqlite_path.display(),
        copied.runs,
        copied.pauses,
        copied.airbyte_objects
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads only `[store]`: the rest of the config (and its secrets) is not needed.
pub async fn history(path: &Path, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let settings = match load(path, config::load_store) {
        Ok(settings) => settings,
        Err(code) => return Ok(code),
    };
    let store = crate::store::open_for_reading(&settings).await?;
    let runs = store
        .history(&HistoryFilter {
            connection: args.connection.clone(),
            limit: args.limit,
        })
        .await?;
    let mut out = std::io::stdout().lock();
    match args.format {
        OutputFormat::Json => {
            for run in &runs {
                writeln!(out, "{}", run_json(run))?;
            }
        }
        OutputFormat::Table => write_table(&mut out, &runs)?,
    }
    // A store the daemon has not migrated yet has no record of prunes: nothing was
    // pruned, then.
    if let Ok(Some(pruned)) = store.pruned().await {
        let note = pruned_note(&pruned, settings.retention);
        // On stderr beside JSON, which stays one object per line on stdout.
        match args.format {
            OutputFormat::Json => eprintln!("{note}"),
            OutputFormat::Table => writeln!(out, "{note}")?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `history` says of pruned runs, so a short history is not taken for a loss.
pub fn pruned_note(
    pruned: &crate::store::Pruned,
    retention: Option<std::time::Duration>,
) -> String {
    let kept = match retention {
        Some(d) if d.as_secs() % 86_400 == 0 => format!("retention {}d", d.as_secs() / 86_400),
        Some(d) => format!("retention {}", humantime::format_duration(d)),
        None => "retention is now \"forever\"".into(),
    };
    format!(
        "runs that ended before {} were pruned ({kept}; last pruned {})",
        pruned.before.to_rfc3339_opts(SecondsFormat::Secs, true),
        pruned.at.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

fn time(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// One run as `history --format json` prints it.
pub fn run_json(run: &Run) -> serde_json::Value {
    json!({
        "run_id": run.id,
        "connection": run.connection,
        "connection_id": run.connection_id,
        "instance": run.instance,
        "job_id": run.job_id,
        "trigger": run.trigger.as_str(),
        "scheduled_for": time(Some(run.scheduled_for)),
        "started_at": time(run.started_at),
        "finished_at": time(run.finished_at),
        "status": run.status.as_str(),
        "attempts": run.attempts,
        "records_synced": run.records_synced,
        "bytes_synced": run.bytes_synced,
        "error": run.error,
        "cancel_requested_at": time(run.cancel_requested_at),
    })
}

fn write_table(out: &mut impl Write, runs: &[Run]) -> std::io::Result<()> {
    let header = [
        "RUN",
        "CONNECTION",
        "TRIGGER",
        "SCHEDULED FOR",
        "STATUS",
        "JOB",
        "ATTEMPTS",
        "RECORDS",
        "BYTES",
        "TOOK",
        "ERROR",
    ];
    let rows: Vec<[String; 11]> = runs
        .iter()
        .map(|run| {
            let took = match (run.started_at, run.finished_at) {
                (Some(s), Some(f)) => humantime::format_duration(std::time::Duration::from_secs(
                    u64::try_from((f - s).num_seconds()).unwrap_or(0),
                ))
                .to_string(),
                _ => "-".into(),
            };
            let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            let error: String = run
                .error
                .as_deref()
                .unwrap_or("")
                .chars()
                .take(60)
                .collect();
            [
                run.id.to_string(),
                run.connection.clone(),
                run.trigger.to_string(),
                dash(time(Some(run.scheduled_for))),
                run.status.to_string(),
                dash(run.job_id.map(|j| j.to_string())),
                run.attempts.to_string(),
                dash(run.records_synced.map(|n| n.to_string())),
                dash(run.bytes_synced.map(|n| n.to_string())),
                took,
                error,
            ]
        })
        .collect();
    if rows.is_empty() {
        return writeln!(out, "(no runs yet)");
    }
    write!(out, "{}", table(&header, &rows))
}

/// Aligned columns under a header, one line per row.
pub fn table<R: AsRef<[String]>>(header: &[&str], rows: &[R]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned();
        text.push('\n');
        text
    };
    let mut text = line(header.to_vec());
    for row in rows {
        text.push_str(&line(row.as_ref().iter().map(String::as_str).collect()));
    }
    text
}

/// `cronbyte next NAME`: the connection's next `count` fire instants, from the
/// config's `[defaults]` and `[[connections]]` alone.
pub fn next(
    path: &Path,
    name: &str,
    count: usize,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let connections = match load(path, config::load_schedules) {
        Ok(connections) => connections,
        Err(code) => return Ok(code),
    };
    let file = path.display().to_string();
    let connection = crate::next::find(&connections, name, &file)?;
    let fires = crate::next::fires(connection, Utc::now(), count)?;
    print!("{}", crate::next::render(connection, &fires, format));
    Ok(ExitCode::SUCCESS)
}

/// `cronbyte watch [NAME...]`: the running daemon's syncs as they happen, until
/// Ctrl-C. Reads only `[server]`, as the other commands that ask the daemon.
pub async fn watch(
    path: &Path,
    url: Option<&str>,
    names: &[String],
    every: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let server = match load(path, config::load_server) {
        Ok(server) => server,
        Err(code) => return Ok(code),
    };
    let remote = crate::remote::Remote::new(&server, url)?;
    Ok(crate::watch::run(&remote, names, every).await?)
}

/// Runs a control command against the daemon the config describes. Reads only `[server]`
/// (the address and the control token): the rest of the config is not needed.
pub async fn remote(
    path: &Path,
    url: Option<&str>,
    action: crate::remote::Action,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let server = match load(path, config::load_server) {
        Ok(server) => server,
        Err(code) => return Ok(code),
    };
    let remote = crate::remote::Remote::new(&server, url)?;
    Ok(crate::remote::run(&remote, action, format).await?)
}

/// Exits 0 when `url` answers 2xx within 5 s.
pub async fn healthcheck(url: &str) -> anyhow::Result<ExitCode> {
    crate::tls::install();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    match client.get(url).send().await {
        Ok(response) if response.status().is_success() => Ok(ExitCode::SUCCESS),
        Ok(response) => {
            eprintln!("cronbyte: {url} answered {}", response.status());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("cronbyte: {url}: {}", e.without_url());
            Ok(ExitCode::FAILURE)
        }
    }
}

pub async fn emulator(listen: SocketAddr) -> anyhow::Result<ExitCode> {
    crate::telemetry::init("info", config::LogFormat::Human);
    let handle = Emulator::bind(listen, EmulatorOptions::default())
        .await
        .with_context(|| format!("could not listen on {listen}"))?;
    let control = handle.control();
    println!("Airbyte emulator on http://{}", handle.addr());
    println!("  Config API: {}", handle.config_api_base());
    println!("  public API: {}", handle.public_api_base());
    println!("  workspace:  {}", control.workspace_id());
    for name in [
        "ecommerce-to-bronze",
        "orders-api-to-raw",
        "bronze-to-silver",
    ] {
        println!("  connection: {} = {name}", control.add_connection(name));
    }
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    shutdown.cancelled().await;
    handle.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Asks `question` on the terminal; anything but "y" or "yes" is no, and so is not
/// having a terminal to ask on (then `without_terminal` says how to go ahead).
pub fn ask_on_terminal(question: &str, without_terminal: &str) -> bool {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        eprintln!("{question} No terminal to ask on: {without_terminal}.");
        return false;
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if stdin.lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
