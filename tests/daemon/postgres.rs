//! The daemon on a PostgreSQL store: a cron tick becomes a run row there, its job is
//! followed and its outcome recorded, as on SQLite. Runs when
//! `CRONBYTE_TEST_POSTGRES_URL` names a server (`.ci/run` always sets it), in a
//! database of its own that is dropped afterwards.

use std::time::Duration;

use cronbyte::config::StoreSettings;
use cronbyte::emulator::JobPlan;
use cronbyte::run::{RunStatus, Trigger};
use cronbyte::store::HistoryFilter;
use secrecy::SecretString;
use sqlx::postgres::PgPool;

use crate::helpers::*;
use crate::pg::{drop_database, fresh_database, server_or_skip};

/// The harness's config with `connections`, its history in the PostgreSQL
/// database `url` (and a SQLite path that must stay unused).
fn on_postgres(harness: &Harness, connections: &str, url: &str) -> cronbyte::config::Config {
    let text = harness.config_text(connections).replacen(
        &format!("path = \"{}\"", harness.store_path().display()),
        &format!("url = \"{url}\""),
        1,
    );
    let mut config = cronbyte::config::from_str(&text, cronbyte::config::Format::Toml)
        .unwrap_or_else(|e| panic!("{e}"));
    config.store.path = harness.dir.path().join("unused.db");
    config
}

#[tokio::test]
async fn a_cron_fired_sync_is_recorded_in_a_postgres_store() {
    let Some(server) = server_or_skip("the daemon's PostgreSQL test") else {
        return;
    };
    let (database, url) = fresh_database(&server).await;
    let harness = Harness::new().await;
    let id = harness.connection(
        "orders",
        JobPlan::succeeding(Duration::from_millis(300), 42, 4_200),
    );
    let at = soon(START_LEAD);
    let config = on_postgres(&harness, &connection_toml("orders", id, &cron_at(at)), &url);
    assert!(config.store.url.is_some(), "the config names PostgreSQL");
    let daemon = harness.start(config).await;

    let settings = StoreSettings {
        url: Some(SecretString::from(url.clone())),
        ..StoreSettings::default()
    };
    let store = cronbyte::store::open_for_reading(&settings)
        .await
        .expect("the store opens");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let runs = loop {
        let runs = store
            .history(&HistoryFilter {
                connection: None,
                limit: 10,
            })
            .await
            .expect("history reads");
        if runs.iter().any(|r| !r.status.is_open()) {
            break runs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no run ended: {runs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    daemon.stop().await;
    store.close().await;
    assert!(
        !harness.store_path().exists() && !harness.dir.path().join("unused.db").exists(),
        "no SQLite file was made"
    );
    drop_database(&server, &database).await;

    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = &runs[0];
    assert_eq!(
        (run.trigger, run.status, run.scheduled_for),
        (Trigger::Schedule, RunStatus::Succeeded, at)
    );
    assert_eq!(run.records_synced, Some(42));
    assert_eq!(run.job_id, Some(harness.control().jobs()[0].id));
}

/// Every connection of the daemon to PostgreSQL is cut while its sync runs: the pool
/// opens new ones, nothing is lost, and the run ends recorded once with its job.
#[tokio::test]
async fn connections_to_postgres_cut_mid_run_lose_nothing() {
    let Some(server) = server_or_skip("the daemon's PostgreSQL test") else {
        return;
    };
    let (database, url) = fresh_database(&server).await;
    let harness = Harness::new().await;
    let id = harness.connection(
        "orders",
        JobPlan::succeeding(Duration::from_secs(2), 42, 4_200),
    );
    let config = on_postgres(
        &harness,
        &connection_toml("orders", id, &cron_at(soon(START_LEAD))),
        &url,
    );
    let daemon = harness.start(config).await;
    let store = cronbyte::store::open_for_reading(&StoreSettings {
        url: Some(SecretString::from(url.clone())),
        ..StoreSettings::default()
    })
    .await
    .expect("the store opens");
    let history = || async {
        store
            .history(&HistoryFilter {
                connection: None,
                limit: 10,
            })
            .await
            .expect("history reads")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !history()
        .await
        .iter()
        .any(|r| r.status == RunStatus::Running)
    {
        assert!(tokio::time::Instant::now() < deadline, "no run started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admin = PgPool::connect(&server).await.expect("PostgreSQL answers");
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&database)
    .fetch_all(&admin)
    .await
    .expect("connections terminated");
    admin.close().await;
    assert!(!cut.is_empty(), "the daemon had no connection to cut");

    let runs = loop {
        let runs = history().await;
        if runs.iter().all(|r| !r.status.is_open()) {
            break runs;
        }
        assert!(
            tokio::time::Instant::now() < deadline + Duration::from_secs(10),
            "the run did not end: {runs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, ready) = call(
        reqwest::Method::GET,
        &format!("{}/readyz", daemon.url()),
        None,
    )
    .await;
    daemon.stop().await;
    store.close().await;
    drop_database(&server, &database).await;

    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{runs:#?}");
    assert_eq!(runs[0].records_synced, Some(42));
    assert_eq!(harness.control().jobs().len(), 1);
    assert_eq!(status, reqwest::StatusCode::OK, "{ready}");
    assert_eq!(ready["role"], "active", "{ready}");
}
