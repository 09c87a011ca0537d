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
            .and_then(|s| number(&s.value))
    };
    assert_eq!(
        value(
            "cronbyte_syncs_total",
            &[
                ("connection", "orders"),
                ("airbyte_instance", "default"),
                ("status", "succeeded")
            ]
        ),
        Some(succeeded)
    );
    assert!(
        value(
            "cronbyte_syncs_total",
            &[
                ("connection", "orders"),
                ("airbyte_instance", "default"),
                ("status", "failed")
            ]
        )
        .is_some_and(|v| v >= 1.0)
    );
    assert_eq!(
        value(
            "cronbyte_records_synced_total",
            &[("connection", "orders"), ("airbyte_instance", "default")]
        ),
        Some(records as f64)
    );
    assert_eq!(
        value(
            "cronbyte_zero_record_syncs_total",
            &[("connection", "orders"), ("airbyte_instance", "default")]
        ),
        Some(1.0)
    );
    assert!(
        value(
            "cronbyte_last_success_timestamp_seconds",
            &[("connection", "orders"), ("airbyte_instance", "default")]
        )
        .is_some_and(|v| v > 1.7e9)
    );
    assert!(
        value(
            "cronbyte_next_run_timestamp_seconds",
            &[("connection", "orders"), ("airbyte_instance", "default")]
        )
        .is_some()
    );
    // Jobs of 200 ms, polled: the newest success took a moment, not minutes.
    assert!(
        value(
            "cronbyte_last_success_duration_seconds",
            &[("connection", "orders"), ("airbyte_instance", "default")]
        )
        .is_some_and(|v| v > 0.0 && v < 60.0)
    );
    assert_eq!(
        value(
            "cronbyte_expected_interval_seconds",
            &[("connection", "orders"), ("airbyte_instance", "default")]
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
    let consecutive = value(
        "cronbyte_consecutive_failures",
        &[("connection", "orders"), ("airbyte_instance", "default")],
    )
    .unwrap();
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
    // Per-connection and request series name the Airbyte instance, as the
    // health gauge does; `instance` is left to Prometheus.
    let labelled: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| {
            s.labels.get("connection").is_some() || s.metric.starts_with("cronbyte_airbyte_request")
        })
        .collect();
    assert!(labelled.len() > 10, "{text}");
    for s in labelled {
        assert_eq!(
            s.labels.get("airbyte_instance"),
            Some("default"),
            "{} {:?}",
            s.metric,
            s.labels
        );
    }
    assert!(
        scrape
            .samples
            .iter()
            .all(|s| s.labels.get("instance").is_none())
    );
    assert_eq!(
        value("cronbyte_airbyte_up", &[("airbyte_instance", "default")]),
        Some(1.0)
    );
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

/// With two instances, each on its own emulated Airbyte, every per-connection
/// series carries its connection's instance, and the requests are counted under the
/// instance that was sent them: as many per operation as that emulator received.
#[tokio::test]
async fn a_config_with_two_instances_labels_each_connections_series_and_requests_with_its_instance()
{
    let harness = Harness::new().await;
    let us = harness.another_emulator().await;
    let orders = harness.connection(
        "orders",
        JobPlan::succeeding(Duration::from_millis(200), 10, 100),
    );
    let customers = us.control().add_connection("customers");
    us.control().set_plan(
        customers,
        JobPlan::succeeding(Duration::from_millis(200), 20, 200),
    );
    let rule = cron_at(soon(START_LEAD));
    let connections = connection_toml("orders", orders, &rule)
        + "instance = \"eu\"\n"
        + &connection_toml("customers", customers, &rule)
        + "instance = \"us\"\n";
    let text = harness.config_text_on(&[("eu", &harness.emulator), ("us", &us)], &connections);
    let config = cronbyte::config::from_str(&text, cronbyte::config::Format::Toml)
        .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
    let daemon = harness.start(config).await;
    let runs = harness
        .wait_for(Duration::from_secs(15), "both runs to end", |runs| {
            runs.iter().filter(|r| !r.status.is_open()).count() >= 2
        })
        .await;
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Succeeded),
        "{runs:#?}"
    );
    let text = daemon.metrics().await;
    daemon.stop().await;

    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the exposition parses");
    let on = |connection: &str| match connection {
        "orders" => "eu",
        "customers" => "us",
        other => panic!("no connection {other} was configured"),
    };
    let mut per_connection = 0;
    for sample in &scrape.samples {
        if let Some(connection) = sample.labels.get("connection") {
            per_connection += 1;
            assert_eq!(
                sample.labels.get("airbyte_instance"),
                Some(on(connection)),
                "{} {:?}",
                sample.metric,
                sample.labels
            );
        }
    }
    assert!(per_connection >= 20, "{text}");
    for (connection, records) in [("orders", 10.0), ("customers", 20.0)] {
        let labels = [
            ("connection", connection),
            ("airbyte_instance", on(connection)),
        ];
        let records_synced = scrape.samples.iter().find(|s| {
            s.metric == "cronbyte_records_synced_total"
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        });
        assert!(
            records_synced.and_then(|s| number(&s.value)) == Some(records),
            "{connection}: {text}"
        );
    }

    // Requests: by instance and operation, summed over outcomes.
    for (instance, emulator) in [("eu", &harness.emulator), ("us", &us)] {
        let mut counted = std::collections::BTreeMap::<String, f64>::new();
        for sample in scrape.samples.iter().filter(|s| {
            s.metric == "cronbyte_airbyte_requests_total"
                && s.labels.get("airbyte_instance") == Some(instance)
        }) {
            let operation = sample
                .labels
                .get("operation")
                .expect("an operation")
                .to_owned();
            *counted.entry(operation).or_default() += number(&sample.value).expect("a count");
        }
        let received = emulator.control().requests();
        assert_eq!(
            counted.get("connections/sync"),
            Some(&1.0),
            "{instance}: {text}"
        );
        for (operation, n) in &counted {
            assert_eq!(
                received.get(operation) as f64,
                *n,
                "{instance} {operation}: {received:?}"
            );
        }
        assert!(
            scrape.samples.iter().any(|s| {
                s.metric == "cronbyte_airbyte_request_duration_seconds"
                    && s.labels.get("airbyte_instance") == Some(instance)
            }),
            "{instance}: {text}"
        );
        assert!(
            scrape.samples.iter().any(|s| {
                s.metric == "cronbyte_airbyte_up"
                    && s.labels.get("airbyte_instance") == Some(instance)
            }),
            "{instance}: {text}"
        );
    }
}

/// A reload that moves a connection to the other instance moves its series too:
/// nothing of it stays under the old instance for an alert to judge, and its
/// counts go on under the new one.
#[tokio::test]
async fn a_connection_moved_to_another_instance_by_a_reload_takes_its_series_along() {
    let harness = Harness::new().await;
    let us = harness.another_emulator().await;
    let on_eu = harness.connection(
        "orders",
        JobPlan::succeeding(Duration::from_millis(100), 10, 100),
    );
    let on_us = us.control().add_connection("orders");
    let instances = [("eu", &harness.emulator), ("us", &us)];
    let rule = cron_at(soon(START_LEAD));
    let first = with_token(&harness.config_text_on(
        &instances,
        &(connection_toml("orders", on_eu, &rule) + "instance = \"eu\"\n"),
    ));
    let (daemon, path) = harness.start_from_file(&first).await;
    harness.wait_until_ended().await;
    let before = daemon.metrics().await;
    assert_eq!(
        sample(
            &before,
            r#"cronbyte_records_synced_total{connection="orders",airbyte_instance="eu"}"#
        ),
        Some(10.0)
    );

    let moved = with_token(&harness.config_text_on(
        &instances,
        &(connection_toml("orders", on_us, &rule) + "instance = \"us\"\n"),
    ));
    std::fs::write(&path, moved).unwrap();
    let (status, answer) = call(
        reqwest::Method::POST,
        &format!("{}/api/v1/reload", daemon.url()),
        Some(TOKEN),
    )
    .await;
    assert!(status.is_success(), "{answer}");
    let after = daemon.metrics().await;
    daemon.stop().await;
    let left_behind: Vec<&str> = after
        .lines()
        .filter(|l| l.contains(r#"connection="orders",airbyte_instance="eu""#))
        .collect();
    assert_eq!(left_behind, Vec::<&str>::new(), "{after}");
    assert_eq!(
        sample(
            &after,
            r#"cronbyte_records_synced_total{connection="orders",airbyte_instance="us"}"#
        ),
        Some(10.0)
    );
    assert!(
        sample(
            &after,
            r#"cronbyte_last_success_timestamp_seconds{connection="orders",airbyte_instance="us"}"#
        )
        .is_some_and(|at| at > 1.7e9),
        "{after}"
    );
}

/// A sample's value, when it is one number. The parser takes OpenMetrics counters,
/// whose family is named without `_total`, as untyped.
fn number(value: &prometheus_parse::Value) -> Option<f64> {
    match value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => Some(*v),
        _ => None,
    }
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
