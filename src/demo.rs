//! `cronbyte demo`: the emulator and the daemon together, on a config written
//! for the occasion, so cronbyte can be seen working without an Airbyte.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::commands::cancel_on_signals;
use crate::config;
use crate::daemon::Daemon;
use crate::emulator::{AttemptPlan, Emulator, EmulatorOptions, JobPlan};

/// The demo's pipelines, named after the ones the Airbyte API reference sets up
/// by hand: a rule firing every few seconds and how its jobs behave.
struct DemoPipeline {
    name: &'static str,
    cron: &'static str,
    plan: JobPlan,
}

fn pipelines() -> Vec<DemoPipeline> {
    let secs = Duration::from_secs;
    vec![
        DemoPipeline {
            name: "ecommerce-postgres-to-minio-bronze",
            cron: "*/10 * * * * *",
            plan: JobPlan::succeeding(secs(4), 12_480, 3_276_800),
        },
        DemoPipeline {
            // The first attempt fails and Airbyte retries it: the job goes
            // `incomplete`, then succeeds with the second attempt's counts.
            name: "orders-api-to-postgres-raw",
            cron: "*/15 * * * * *",
            plan: JobPlan::failing(secs(2), "HTTP 503 from the orders API")
                .then(AttemptPlan::succeeding(secs(3), 2_050, 512_000)),
        },
        DemoPipeline {
            name: "bronze-to-silver-customers",
            cron: "*/20 * * * * *",
            plan: JobPlan::succeeding(secs(6), 48_000, 9_600_000),
        },
        DemoPipeline {
            name: "legacy-crm-export",
            cron: "*/30 * * * * *",
            plan: JobPlan::failing(
                secs(3),
                "Could not connect to crm.internal:5432: connection refused",
            ),
        },
    ]
}

pub async fn run(listen: SocketAddr, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("cronbyte-demo"));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("could not create the demo directory {}", dir.display()))?;
    let emulator = Emulator::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        EmulatorOptions::default(),
    )
    .await
    .context("could not start the Airbyte emulator")?;
    let control = emulator.control();

    let mut text = format!(
        "# Written by `cronbyte demo`: an emulated Airbyte and four pipelines.\n\
         [airbyte]\nbase_url = \"{}\"\n\n[store]\npath = \"{}\"\n\n[server]\nlisten = \"{listen}\"\n\n\
         [workers]\npoll_interval = \"1s\"\n\n[defaults]\ntimeout = \"5m\"\n",
        emulator.config_api_base(),
        dir.join("history.db").display(),
    );
    for pipeline in pipelines() {
        let id = control.add_connection(pipeline.name);
        control.set_plan(id, pipeline.plan);
        text.push_str(&format!(
            "\n[[connections]]\nname = \"{}\"\nconnection_id = \"{id}\"\ncron = \"{}\"\n",
            pipeline.name, pipeline.cron
        ));
    }
    let config_path = dir.join("cronbyte-demo.toml");
    std::fs::write(&config_path, text)
        .with_context(|| format!("could not write {}", config_path.display()))?;
    let config = config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::telemetry::init(&config.log.level, config.log.format);

    let daemon = Daemon::build(config)
        .await?
        .with_config_path(config_path.clone());
    let addr = daemon.local_addr();
    println!("cronbyte demo: four pipelines against an emulated Airbyte; Ctrl-C stops it.");
    println!("  Airbyte (emulated):  {}", emulator.config_api_base());
    println!("  metrics:             http://{addr}/metrics");
    println!("  config:              {}", config_path.display());
    println!(
        "  history:             cronbyte history --config {}",
        config_path.display()
    );
    println!();

    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    daemon.run(shutdown).await?;
    emulator.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
