//! What operators see: `/metrics` read with a Prometheus parser after a known
//! sequence of syncs, and failure and recovery notices at a webhook receiver.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use cronbyte::emulator::JobPlan;
use cronbyte::run::RunStatus;
use serde_json::Value;

use crate::helpers::*;

/// Two succeeded syncs (one of zero records) and one failed: the exposition
/// parses, and names, types, help texts and values say exactly that.
#[tokio::test]
async fn metrics_parse_and_tell_a_known_sequence_of_syncs() {
    let harness = Harness::new().await;
    let id = harness.connection(
        "orders",
        JobPlan::succeeding(Duration::from_millis(200), 100, 1_000),
    );
    let control = harness.control();
    control.push_plan(id, JobPlan::succeeding(Duration::from_millis(200), 0, 0));
    control.push_plan(id, JobPlan::failing(Duration::from_millis(200), "boom"));
    let daemon = harness
        .start(harness.config(&connection_toml("orders", id, "* * * * * *")))
        .await;
    harness
        .wait_for(Duration::from_secs(15), "three ended runs", |runs| {
            runs.iter().filter(|r| !r.status.is_open()).count() >= 3
        })
        .await;
    let text = daemon.metrics().await;
    daemon.stop().await;

    let runs = harness.runs().await;
    let ended: Vec<_> = runs.iter().filter(|r| !r.status.is_open()).collect();
    let succeeded = ended
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .count() as f64;
    let records: u64 = ended.iter().filter_map(|r| r.records_synced).sum();

    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .and_then(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => Some(v),
                prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
    };
    assert_eq!(
        value(
            "cronbyte_syncs_total",
            &[("connection", "orders"), ("status", "succeeded")]
        ),
        Some(succeeded)
    );
    assert!(
        value(
            "cronbyte_syncs_total",
            &[("connection", "orders"), ("status", "failed")]
        )
        .is_some_and(|v| v >= 1.0)
    );
    assert_eq!(
        value("cronbyte_records_synced_total", &[("connection", "orders")]),
        Some(records as f64)
    );
    assert_eq!(
        value(
            "cronbyte_zero_record_syncs_total",
            &[("connection", "orders")]
        ),
        Some(1.0)
    );
    assert!(
        value(
            "cronbyte_last_success_timestamp_seconds",
            &[("connection", "orders")]
        )
        .is_some_and(|v| v > 1.7e9)
    );
    assert!(
        value(
            "cronbyte_next_run_timestamp_seconds",
            &[("connection", "orders")]
        )
        .is_some()
    );
    // Jobs of 200 ms, polled: the newest success took a moment, not minutes.
    assert!(
        value(
            "cronbyte_last_success_duration_seconds",
            &[("connection", "orders")]
        )
        .is_some_and(|v| v > 0.0 && v < 60.0)
    );
    assert_eq!(
        value(
            "cronbyte_expected_interval_seconds",
            &[("connection", "orders")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "cronbyte_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(
        value("cronbyte_syncs_in_flight", &[]).map(|v| v >= 0.0),
        Some(true)
    );
    let consecutive = value("cronbyte_consecutive_failures", &[("connection", "orders")]).unwrap();
    let last_counted = ended
        .iter()
        .rev()
        .find(|r| r.status != RunStatus::Skipped)
        .unwrap();
    assert_eq!(
        consecutive == 0.0,
        last_counted.status == RunStatus::Succeeded
    );

    // OpenMetrics names a counter's family without `_total`; its samples keep it.
    for (name, help) in [
        ("cronbyte_syncs", "Runs that reached a final status"),
        (
            "cronbyte_sync_duration_seconds",
            "Time from the sync request",
        ),
        ("cronbyte_schedule_lag_seconds", "scheduled instant"),
    ] {
        let doc = scrape
            .docs
            .get(name)
            .unwrap_or_else(|| panic!("no HELP for {name}"));
        assert!(doc.contains(help), "{name}: {doc}");
    }
    for (name, kind) in [
        ("cronbyte_syncs", "counter"),
        ("cronbyte_sync_success_ratio", "gauge"),
        ("cronbyte_sync_duration_seconds", "histogram"),
        ("cronbyte_sync_attempts", "histogram"),
        ("cronbyte_schedule_lag_seconds", "histogram"),
        ("cronbyte_airbyte_requests", "counter"),
        ("cronbyte_airbyte_up", "gauge"),
        ("cronbyte_store_errors", "counter"),
        ("cronbyte_build", "info"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}")),
            "{name} is a {kind}"
        );
    }
    // The dashboards chart the process's own memory and CPU.
    assert!(value("process_resident_memory_bytes", &[]).is_some_and(|v| v > 0.0));
    assert!(value("process_cpu_seconds_total", &[]).is_some());
    assert!(
        text.ends_with("# EOF\n"),
        "an OpenMetrics exposition ends with # EOF"
    );
    // Bounded labels only: no job ids, no error texts.
    assert!(!text.contains("boom"));
    assert!(!text.contains("job_id"));
}

type Inbox = Arc<Mutex<Vec<(String, Value)>>>;

/// A local webhook receiver that keeps what it is sent, by path.
async fn receiver() -> (SocketAddr, Inbox) {
    let inbox: Inbox = Arc::default();
    let kept = inbox.clone();
    let app = axum::Router::new().route(
        "/{*path}",
        post(
            move |axum::extract::Path(path): axum::extract::Path<String>,
                  Json(body): Json<Value>| {
                let kept = kept.clone();
                async move {
                    kept.lock().unwrap().push((path, body));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, inbox)
}

/// Waits until `inbox` holds a notice, or fails the test with `missing` after 10 s.
async fn first_notice(inbox: &Inbox, missing: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while inbox.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "{missing}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A failure and the recovery after it reach a generic and a Slack receiver,
/// with the run's facts and without the receivers' URLs.
#[tokio::test]
async fn a_failure_and_its_recovery_are_noticed_at_webhooks() {
    let harness = Harness::new().await;
    let (addr, inbox) = receiver().await;
    let id = harness.connection(
        "billing",
        JobPlan::succeeding(Duration::from_millis(200), 5, 50),
    );
    harness.control().push_plan(
        id,
        JobPlan::failing(
            Duration::from_millis(200),
            "relation \"invoices\" does not exist",
        ),
    );
    let toml = connection_toml("billing", id, "* * * * * *")
        + &format!("\n[[notify]]\nurl = \"http://{addr}/generic\"\n")
        + &format!(
            "\n[[notify]]\nurl = \"http://{addr}/services/T0/B0/secret-part\"\nkind = \"slack\"\non = [\"failed\", \"recovered\"]\n"
        );
    let daemon = harness.start(harness.config(&toml)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = inbox.lock().unwrap().len();
        if got >= 4 || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.stop().await;
    let inbox = inbox.lock().unwrap().clone();
    let generic: Vec<&Value> = inbox
        .iter()
        .filter(|(p, _)| p == "generic")
        .map(|(_, b)| b)
        .collect();
    let slack: Vec<&Value> = inbox
        .iter()
        .filter(|(p, _)| p != "generic")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(generic[0]["event"], "failed", "{inbox:#?}");
    assert_eq!(generic[0]["connection"], "billing");
    assert!(generic[0]["error"].as_str().unwrap().contains("invoices"));
    assert!(generic[0]["run_id"].is_i64() && generic[0]["job_id"].is_i64());
    assert_eq!(generic[1]["event"], "recovered");
    assert_eq!(generic[1]["records_synced"], 5);
    assert!(
        slack[0]["text"].as_str().unwrap().contains("billing"),
        "{inbox:#?}"
    );
    assert!(slack[1]["text"].as_str().unwrap().contains("recovered"));
    for (_, body) in &inbox {
        assert!(!body.to_string().contains("secret-part"));
    }
}

/// `[[notify]]` receivers added by a reload get the next failure at once, and
/// the reload says it applied them.
#[tokio::test]
async fn receivers_added_by_a_reload_get_the_next_failure() {
    let harness = Harness::new().await;
    let (addr, inbox) = receiver().await;
    let id = harness.connection(
        "billing",
        JobPlan::failing(Duration::from_millis(100), "disk quota exceeded"),
    );
    let first = harness
        .config_text(&connection_toml("billing", id, "* * * * * *"))
        .replacen("[server]\n", "[server]\ntoken = \"reload-token\"\n", 1);
    let (daemon, path) = harness.start_from_file(&first).await;
    harness
        .wait_for(Duration::from_secs(10), "a failed run", |runs| {
            runs.iter().any(|r| r.status == RunStatus::Failed)
        })
        .await;
    assert!(inbox.lock().unwrap().is_empty(), "no receiver yet");

    std::fs::write(
        &path,
        first + &format!("\n[[notify]]\nurl = \"http://{addr}/added\"\n"),
    )
    .unwrap();
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/reload", daemon.url()))
        .bearer_auth("reload-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["summary"]["changed"],
        serde_json::json!(["[[notify]]"]),
        "{answer}"
    );
    assert_eq!(answer["summary"]["needs_restart"], serde_json::json!([]));

    first_notice(&inbox, "no notice reached the receiver the reload added").await;
    daemon.stop().await;
    let (path, body) = inbox.lock().unwrap()[0].clone();
    assert_eq!(path, "added");
    assert_eq!(body["event"], "failed");
    assert_eq!(body["connection"], "billing");
}

/// A connection that failed before a restart and succeeds after it is noticed
/// as recovered: the failure streak is kept in the store, not in the process.
#[tokio::test]
async fn a_recovery_after_a_restart_is_still_noticed() {
    let harness = Harness::new().await;
    let (addr, inbox) = receiver().await;
    let id = harness.connection(
        "billing",
        JobPlan::failing(Duration::from_millis(100), "disk quota exceeded"),
    );
    let config = || {
        harness.config(
            &(connection_toml("billing", id, &cron_at(soon(START_LEAD)))
                + &format!("\n[[notify]]\nurl = \"http://{addr}/hook\"\non = [\"recovered\"]\n")),
        )
    };
    let daemon = harness.start(config()).await;
    harness
        .wait_for(Duration::from_secs(10), "a failed run", |runs| {
            runs.iter().any(|r| r.status == RunStatus::Failed)
        })
        .await;
    daemon.stop().await;

    harness
        .control()
        .set_plan(id, JobPlan::succeeding(Duration::from_millis(100), 3, 30));
    let daemon = harness.start(config()).await;
    harness
        .wait_for(Duration::from_secs(10), "a succeeded run", |runs| {
            runs.iter().any(|r| r.status == RunStatus::Succeeded)
        })
        .await;
    first_notice(&inbox, "the recovery after the restart was not noticed").await;
    daemon.stop().await;
    let inbox = inbox.lock().unwrap().clone();
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    assert_eq!(inbox[0].1["event"], "recovered");
    assert_eq!(inbox[0].1["records_synced"], 3);
}
