//! Two replicas on one PostgreSQL store, in this process: one is active, the
//! other answers reads and refuses writes naming it, and takes over the running
//! sync when the active one stops. (Kills and freezes of whole processes are
//! `tests/failover.rs`.) Runs when `CRONBYTE_TEST_POSTGRES_URL` names a server.

use std::time::Duration;

use cronbyte::emulator::JobPlan;
use cronbyte::run::RunStatus;
use reqwest::{Method, StatusCode};

use crate::helpers::*;
use crate::pg::{drop_database, fresh_database, server_or_skip};

/// The config text of a replica on the PostgreSQL database `url`, with a short lease.
fn replica_text(harness: &Harness, connections: &str, url: &str) -> String {
    with_token(&harness.config_text(connections)).replacen(
        &format!("path = \"{}\"", harness.store_path().display()),
        &format!("url = \"{url}\"\nlease = \"2s\"\nlease_renewal = \"500ms\""),
        1,
    )
}

async fn start_replica(harness: &Harness, text: &str) -> Running {
    let mut config = cronbyte::config::from_str(text, cronbyte::config::Format::Toml)
        .unwrap_or_else(|e| panic!("{e}"));
    config.store.path = harness.dir.path().join("unused.db");
    harness.start(config).await
}

/// `/readyz` of a replica: its role and id.
async fn role(replica: &Running) -> (String, String) {
    let (_, body) = call(Method::GET, &format!("{}/readyz", replica.url()), None).await;
    (
        body["role"].as_str().unwrap_or_default().to_owned(),
        body["replica"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn wait_for_role(replica: &Running, wanted: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while role(replica).await.0 != wanted {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica did not become {wanted} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_standby_refuses_writes_naming_the_active_replica_and_takes_its_sync_over_at_a_clean_stop()
 {
    let Some(server) = server_or_skip("the daemon's replica test") else {
        return;
    };
    let (database, url) = fresh_database(&server).await;
    let harness = Harness::new().await;
    let id = harness.connection(
        "orders",
        JobPlan::succeeding(Duration::from_secs(3), 42, 4_200),
    );
    let text = replica_text(
        &harness,
        &connection_toml("orders", id, &cron_at(soon(Duration::from_secs(2)))),
        &url,
    );
    let first = start_replica(&harness, &text).await;
    wait_for_role(&first, "active", Duration::from_secs(5)).await;
    let second = start_replica(&harness, &text).await;
    let (_, first_id) = role(&first).await;
    let (second_role, second_id) = role(&second).await;
    assert_eq!(second_role, "standby");
    assert_ne!(first_id, second_id);

    // The standby answers reads from the store, and refuses writes naming the active one.
    let (status, body) = call(
        Method::GET,
        &format!("{}/api/v1/connections", second.url()),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["connections"][0]["name"], "orders");
    // The standby learns who is active at its next renewal interval.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, body) = call(
        Method::POST,
        &format!("{}/api/v1/connections/orders/pause", second.url()),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "standby", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&first_id), "{message}");
    assert_eq!(
        sample(&second.metrics().await, "cronbyte_leader"),
        Some(0.0)
    );
    assert_eq!(sample(&first.metrics().await, "cronbyte_leader"), Some(1.0));
    assert_eq!(
        sample(&second.metrics().await, "cronbyte_replicas"),
        Some(2.0)
    );

    // The active replica starts the sync, then stops while it runs.
    let store = read_store(&url).await;
    let running = wait_for_runs(&store, |r| r.status == RunStatus::Running).await;
    let stopped = tokio::time::Instant::now();
    first.stop().await;
    // Released at the stop: taken at the standby's next try, not after the lease ran out.
    wait_for_role(&second, "active", Duration::from_secs(2)).await;
    let took_over = stopped.elapsed();
    assert_eq!(
        sample(&second.metrics().await, "cronbyte_leader"),
        Some(1.0)
    );

    let ended = wait_for_runs(&store, |r| !r.status.is_open()).await;
    second.stop().await;
    store.close().await;
    drop_database(&server, &database).await;

    assert_eq!(ended.len(), 1, "{ended:#?}");
    assert_eq!(ended[0].id, running[0].id);
    assert_eq!(ended[0].status, RunStatus::Succeeded);
    assert_eq!(ended[0].records_synced, Some(42));
    let jobs = harness.control().jobs();
    assert_eq!(
        jobs.len(),
        1,
        "one job, followed across the hand-over: {jobs:#?}"
    );
    eprintln!("taken over {took_over:?} after the active replica was asked to stop");
}

async fn read_store(url: &str) -> std::sync::Arc<dyn cronbyte::store::Store> {
    let settings = cronbyte::config::StoreSettings {
        url: Some(secrecy::SecretString::from(url.to_owned())),
        ..Default::default()
    };
    cronbyte::store::open_for_reading(&settings)
        .await
        .expect("the store opens")
}

/// Every run, once one matches `ready`.
async fn wait_for_runs(
    store: &std::sync::Arc<dyn cronbyte::store::Store>,
    ready: impl Fn(&cronbyte::run::Run) -> bool,
) -> Vec<cronbyte::run::Run> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let runs = store
            .history(&cronbyte::store::HistoryFilter {
                connection: None,
                limit: 10,
            })
            .await
            .expect("history reads");
        if runs.iter().any(&ready) {
            return runs;
        }
        assert!(tokio::time::Instant::now() < deadline, "{runs:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn replicas_with_different_connection_settings_say_so() {
    let Some(server) = server_or_skip("the daemon's replica test") else {
        return;
    };
    let (database, url) = fresh_database(&server).await;
    let harness = Harness::new().await;
    let id = harness.connection("orders", JobPlan::succeeding(Duration::from_secs(1), 1, 10));
    // A rule that does not fire during the test.
    let rule = "0 0 0 1 1 *";
    let same = replica_text(&harness, &connection_toml("orders", id, rule), &url);
    let first = start_replica(&harness, &same).await;
    let second = start_replica(&harness, &same).await;
    // Each says its settings at every renewal interval (500 ms).
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let agree = sample(&second.metrics().await, "cronbyte_replica_settings_differ");
    let changed = replica_text(
        &harness,
        &connection_toml("orders", id, "0 0 0 2 1 *"),
        &url,
    );
    let third = start_replica(&harness, &changed).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let differ: Vec<Option<f64>> = futures::future::join_all(
        [&first, &second, &third]
            .map(|r| async { sample(&r.metrics().await, "cronbyte_replica_settings_differ") }),
    )
    .await;
    let alive = sample(&first.metrics().await, "cronbyte_replicas");
    for replica in [first, second, third] {
        replica.stop().await;
    }
    drop_database(&server, &database).await;

    assert_eq!(agree, Some(0.0));
    assert_eq!(differ, vec![Some(1.0); 3]);
    assert_eq!(alive, Some(3.0));
}
