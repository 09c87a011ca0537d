//! `cronbyte-bench`: runs the real daemon against the emulator and measures it,
//! scenario by scenario, printing a table of figures next to their targets.
//! BENCHMARKS.md records the results and how they were obtained.

mod backend;
mod daemon;
mod scenarios;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use scenarios::Row;

#[derive(Parser)]
#[command(
    name = "cronbyte-bench",
    about = "Measures cronbyte against the emulator"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Print the rows as JSON lines instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// A PostgreSQL server (`postgres://user@host:port/db`) to keep the history of
    /// `burst` and `history` in, in a database made for the run and dropped after;
    /// unset, they use a SQLite file like every other scenario.
    #[arg(long, global = true, value_name = "URL")]
    store_url: Option<String>,
}

#[derive(Subcommand)]
enum Scenario {
    /// Many connections configured, nothing due: resident memory and CPU.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// `assorted`: rules repeating every few hundred connections, no zones;
        /// `real`: mostly distinct rules, a zone on every entry, long names.
        #[arg(long, value_enum, default_value_t = scenarios::Shape::Assorted)]
        shape: scenarios::Shape,
    },
    /// Every connection due on the same second: lag to each sync request and
    /// from each job's end to its row in the history.
    Burst {
        #[arg(long, default_value_t = 1_000)]
        connections: usize,
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        job: Duration,
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        poll: Duration,
    },
    /// Many long jobs in flight: Airbyte requests per completed sync.
    Polling {
        #[arg(long, default_value_t = 1_000)]
        connections: usize,
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        job: Duration,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        poll: Duration,
    },
    /// A large history: write rate, queries, bytes per run.
    History {
        #[arg(long, default_value_t = 1_000_000)]
        runs: usize,
    },
    /// `/metrics` and start-up (check, READY) with many connections.
    Scrape {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
    },
    /// Start-up with many connections and a history, on SQLite or `--store-url`:
    /// spawn to READY=1 and to active.
    Startup {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
    },
    /// `GET /api/v1/connections` (what `cronbyte status` reads) with many connections.
    Status {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
    },
    /// The status page (`GET /`, its first page) with many connections.
    Page {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
    },
    /// Every scenario at its default size.
    All,
}

fn print(rows: &[Row], json: bool) {
    if json {
        for row in rows {
            println!("{}", serde_json::to_string(row).unwrap_or_default());
        }
        return;
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            vec![
                r.scenario.to_owned(),
                r.measure.clone(),
                r.value.clone(),
                r.target.to_owned(),
                met.to_owned(),
            ]
        })
        .collect();
    print!(
        "{}",
        cronbyte::commands::table(&["SCENARIO", "MEASURE", "VALUE", "TARGET", "MET"], &cells)
    );
}

#[tokio::main]
async fn main() -> ExitCode {
    cronbyte::tls::install();
    let cli = Cli::parse();
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cronbyte-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = dir.path();
    let backend = match backend::Backend::new(path, cli.store_url.as_deref()).await {
        Ok(backend) => backend,
        Err(e) => {
            eprintln!("cronbyte-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.scenario {
        Scenario::Idle {
            connections,
            seconds,
            shape,
        } => scenarios::idle(path, connections, seconds, shape).await,
        Scenario::Burst {
            connections,
            job,
            poll,
        } => scenarios::burst(path, &backend, connections, job, poll).await,
        Scenario::Polling {
            connections,
            job,
            poll,
        } => scenarios::polling(path, connections, job, poll).await,
        Scenario::History { runs } => scenarios::history(path, &backend, runs).await,
        Scenario::Scrape { connections } => scenarios::scrape_and_startup(path, connections).await,
        Scenario::Startup { connections } => scenarios::startup(path, &backend, connections).await,
        Scenario::Status { connections } => scenarios::status(path, connections).await,
        Scenario::Page { connections } => scenarios::page(path, connections).await,
        Scenario::All => all(&backend).await,
    };
    if let Err(e) = backend.remove().await {
        eprintln!("cronbyte-bench: could not drop the benchmark's database: {e:#}");
    }
    match result {
        Ok(rows) => {
            print(&rows, cli.json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cronbyte-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Each scenario in a fresh directory.
async fn all(backend: &backend::Backend) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let fresh = || tempfile::tempdir();
    for shape in [scenarios::Shape::Assorted, scenarios::Shape::Real] {
        rows.extend(scenarios::idle(fresh()?.path(), 10_000, 60, shape).await?);
    }
    rows.extend(
        scenarios::burst(
            fresh()?.path(),
            backend,
            1_000,
            Duration::from_secs(5),
            Duration::from_secs(1),
        )
        .await?,
    );
    rows.extend(
        scenarios::polling(
            fresh()?.path(),
            1_000,
            Duration::from_secs(60),
            Duration::from_secs(10),
        )
        .await?,
    );
    // The burst's runs are in a PostgreSQL backend already: the history scenario
    // fills a store of its own.
    let history_dir = fresh()?;
    let history_backend = backend::Backend::new(history_dir.path(), backend.server()).await?;
    let history = scenarios::history(history_dir.path(), &history_backend, 1_000_000).await;
    history_backend.remove().await?;
    rows.extend(history?);
    rows.extend(scenarios::scrape_and_startup(fresh()?.path(), 10_000).await?);
    rows.extend(scenarios::status(fresh()?.path(), 10_000).await?);
    rows.extend(scenarios::page(fresh()?.path(), 10_000).await?);
    Ok(rows)
}
