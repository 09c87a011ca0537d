//! The control API and live reload: auth, every route, errors as JSON, and a
//! reload that adds, changes and removes connections (or is rejected).

use std::time::Duration;

use cronbyte::emulator::JobPlan;
use cronbyte::run::{RunStatus, Trigger};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// Triggers `name` through the control API and returns the new run's id.
async fn trigger_run(api: &str, name: &str) -> i64 {
    let (status, body) = call(
        reqwest::Method::POST,
        &format!("{api}/connections/{name}/trigger"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["run"]["id"].as_i64().expect("the run's id")
}

/// Asks the control API to cancel run `run_id`.
async fn cancel_run(api: &str, run_id: i64) -> (StatusCode, Value) {
    call(
        reqwest::Method::POST,
        &format!("{api}/runs/{run_id}/cancel"),
        Some(TOKEN),
    )
    .await
}

/// Waits until run `run_id` has ended, and returns it.
async fn ended_run(harness: &Harness, run_id: i64, within: Duration) -> cronbyte::run::Run {
    let runs = harness
        .wait_for(within, "the run to end", |runs| {
            runs.iter().any(|r| r.id == run_id && !r.status.is_open())
        })
        .await;
    runs.into_iter()
        .find(|r| r.id == run_id)
        .expect("the run is in the history")
}

/// Without the token, with a wrong one, and with none configured, the control
/// API refuses; `/metrics`, `/healthz` and `/readyz` stay open.
#[tokio::test]
async fn the_control_api_refuses_without_the_right_token() {
    let harness = Harness::new().await;
    let id = harness.connection("a", JobPlan::default());
    let text = with_token(&harness.config_text(&connection_toml("a", id, "0 0 1 1 *")));
    let (daemon, _) = harness.start_from_file(&text).await;
    let url = format!("{}/api/v1/connections", daemon.url());
    let (status, body) = call(reqwest::Method::GET, &url, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = call(reqwest::Method::GET, &url, Some("s3cret-control-tokem")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(reqwest::Method::GET, &url, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    for open in ["/metrics", "/healthz"] {
        let response = reqwest::get(format!("{}{open}", daemon.url()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{open}");
    }
    daemon.stop().await;

    let no_token = harness
        .start(harness.config(&connection_toml("a", id, "0 0 1 1 *")))
        .await;
    let (status, body) = call(
        reqwest::Method::GET,
        &format!("{}/api/v1/connections", no_token.url()),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[server].token")
    );
    no_token.stop().await;
}

/// Every route: list, trigger, runs, pause, resume, cancel; unknown names and
/// ended runs are JSON errors.
#[tokio::test]
async fn every_control_route_does_what_it_says() {
    let harness = Harness::new().await;
    let quick = harness.connection(
        "quick",
        JobPlan::succeeding(Duration::from_millis(300), 4, 40),
    );
    let hung = harness.connection("hung", JobPlan::hanging());
    let text = with_token(&harness.config_text(
        &(connection_toml("quick", quick, "0 0 1 1 *")
            + &connection_toml("hung", hung, "0 0 1 1 *")),
    ));
    let (daemon, _) = harness.start_from_file(&text).await;
    let api = format!("{}/api/v1", daemon.url());
    use reqwest::Method;

    let (status, body) = call(Method::GET, &format!("{api}/connections"), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["quick", "hung"]);
    assert!(body["connections"][0]["next_run"].is_string());
    assert_eq!(body["connections"][0]["paused"], false);

    let (status, body) = call(
        Method::POST,
        &format!("{api}/connections/quick/trigger"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["run"]["trigger"], "manual");
    harness
        .wait_for(
            Duration::from_secs(10),
            "the manual run to succeed",
            |runs| {
                runs.iter()
                    .any(|r| r.trigger == Trigger::Manual && r.status == RunStatus::Succeeded)
            },
        )
        .await;
    let (status, body) = call(
        Method::GET,
        &format!("{api}/connections/quick/runs?limit=5"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["runs"][0]["status"], "succeeded");
    assert_eq!(body["runs"][0]["records_synced"], 4);

    let (status, body) = call(
        Method::POST,
        &format!("{api}/connections/hung/trigger"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let run_id = body["run"]["id"].as_i64().unwrap();
    harness
        .wait_for(Duration::from_secs(10), "the hung run to start", |runs| {
            runs.iter()
                .any(|r| r.id == run_id && r.status == RunStatus::Running)
        })
        .await;
    let (status, body) = call(
        Method::POST,
        &format!("{api}/runs/{run_id}/cancel"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["outcome"], "requested");
    let runs = harness
        .wait_for(
            Duration::from_secs(10),
            "the cancelled run to end",
            |runs| runs.iter().any(|r| r.id == run_id && !r.status.is_open()),
        )
        .await;
    let cancelled = runs.iter().find(|r| r.id == run_id).unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    let (status, body) = call(
        Method::POST,
        &format!("{api}/runs/{run_id}/cancel"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "conflict");

    let (status, body) = call(
        Method::POST,
        &format!("{api}/connections/quick/pause"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (status, body["paused"].clone()),
        (StatusCode::OK, Value::Bool(true))
    );
    let (_, body) = call(Method::GET, &format!("{api}/connections"), Some(TOKEN)).await;
    assert_eq!(body["connections"][0]["paused"], true);
    let (status, body) = call(
        Method::POST,
        &format!("{api}/connections/quick/resume"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (status, body["paused"].clone()),
        (StatusCode::OK, Value::Bool(false))
    );

    let (status, body) = call(
        Method::POST,
        &format!("{api}/connections/nope/trigger"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"].as_str().unwrap().contains("nope"));
    let (status, body) = call(Method::GET, &format!("{api}/nowhere"), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    daemon.stop().await;
}

/// `/readyz` says whether the store and Airbyte answer.
#[tokio::test]
async fn readyz_fails_while_airbyte_is_unreachable() {
    let harness = Harness::new().await;
    let id = harness.connection("a", JobPlan::default());
    let daemon = harness
        .start(harness.config(&connection_toml("a", id, "0 0 1 1 *")))
        .await;
    let ready = format!("{}/readyz", daemon.url());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let response = reqwest::get(&ready).await.unwrap();
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.stop().await;
    harness
        .control()
        .refuse_connections_for(Duration::from_secs(30));
    let daemon = harness
        .start(harness.config(&connection_toml("a", id, "0 0 1 1 *")))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let response = reqwest::get(format!("{}/readyz", daemon.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["airbyte"], "unreachable");
    assert_eq!(body["store"], "ok");
    daemon.stop().await;
}

/// A reload adds a connection (it fires), removes one whose run is in flight
/// (the run is still followed to its end), and an invalid file is rejected
/// with `check`'s messages while the old config stays.
#[tokio::test]
async fn a_reload_applies_a_valid_config_and_rejects_an_invalid_one() {
    let harness = Harness::new().await;
    let leaving = harness.connection(
        "leaving",
        JobPlan::succeeding(Duration::from_secs(2), 8, 80),
    );
    let joining = harness.connection(
        "joining",
        JobPlan::succeeding(Duration::from_millis(200), 1, 1),
    );
    let first = with_token(&harness.config_text(&connection_toml(
        "leaving",
        leaving,
        &cron_at(soon(START_LEAD)),
    )));
    let (daemon, path) = harness.start_from_file(&first).await;
    harness
        .wait_for(
            Duration::from_secs(10),
            "the leaving run to start",
            |runs| runs.iter().any(|r| r.status == RunStatus::Running),
        )
        .await;

    let api = format!("{}/api/v1", daemon.url());
    std::fs::write(&path, first.replace("[[connections]]", "[[connectoins]]")).unwrap();
    let (status, body) = call(reqwest::Method::POST, &format!("{api}/reload"), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connectoins"),
        "{body}"
    );

    let second =
        with_token(&harness.config_text(&connection_toml("joining", joining, "* * * * * *")));
    std::fs::write(&path, &second).unwrap();
    let (status, body) = call(reqwest::Method::POST, &format!("{api}/reload"), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["summary"]["added"][0], "joining");
    assert_eq!(body["summary"]["removed"][0], "leaving");

    let runs = harness
        .wait_for(
            Duration::from_secs(10),
            "the removed run to end and the new one to fire",
            |runs| {
                runs.iter()
                    .any(|r| r.connection == "leaving" && r.status == RunStatus::Succeeded)
                    && runs
                        .iter()
                        .any(|r| r.connection == "joining" && r.status == RunStatus::Succeeded)
            },
        )
        .await;
    assert_eq!(runs.iter().filter(|r| r.connection == "leaving").count(), 1);
    let metrics = daemon.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"cronbyte_config_reloads_total{outcome="applied"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"cronbyte_config_reloads_total{outcome="rejected"}"#
        ),
        Some(1.0)
    );
    daemon.stop().await;
}

/// A second cancel of a run whose job Airbyte is cancelling answers at once,
/// `requested` again (or `conflict` once the run has ended), instead of retrying
/// Airbyte's refusal to cancel a job that is no longer running until it gives up
/// with a 502.
#[tokio::test]
async fn cancelling_a_run_twice_answers_at_once_and_never_as_an_airbyte_failure() {
    let harness = Harness::new().await;
    let hung = harness.connection("hung", JobPlan::hanging());
    let text = with_token(&harness.config_text(&connection_toml("hung", hung, "0 0 1 1 *")));
    let (daemon, _) = harness.start_from_file(&text).await;
    let api = format!("{}/api/v1", daemon.url());
    let run_id = trigger_run(&api, "hung").await;
    harness
        .wait_for(Duration::from_secs(10), "the hung run to start", |runs| {
            runs.iter()
                .any(|r| r.id == run_id && r.status == RunStatus::Running)
        })
        .await;
    let cancel = format!("{api}/runs/{run_id}/cancel");
    let (status, body) = call(reqwest::Method::POST, &cancel, Some(TOKEN)).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::ACCEPTED, Some("requested"))
    );
    let (status, body) = call(reqwest::Method::POST, &cancel, Some(TOKEN)).await;
    match status {
        StatusCode::ACCEPTED => assert_eq!(body["outcome"], "requested"),
        StatusCode::CONFLICT => assert_eq!(body["error"]["code"], "conflict"),
        other => panic!("a second cancel answered {other}: {body}"),
    }
    let run = ended_run(&harness, run_id, Duration::from_secs(10)).await;
    assert_eq!(run.status, RunStatus::Cancelled);
    daemon.stop().await;
}

/// Cancelling a run whose job has ended in Airbyte, before the daemon's poll has
/// seen it, is a conflict naming how the job ended; the run still records the
/// job's own outcome.
#[tokio::test]
async fn cancelling_a_run_whose_job_already_ended_is_a_conflict_not_an_airbyte_failure() {
    let harness = Harness::new().await;
    let quick = harness.connection(
        "quick",
        JobPlan::succeeding(Duration::from_millis(100), 3, 30),
    );
    let text = with_poll_interval(
        &with_token(&harness.config_text(&connection_toml("quick", quick, "0 0 1 1 *"))),
        "3s",
    );
    let (daemon, _) = harness.start_from_file(&text).await;
    let api = format!("{}/api/v1", daemon.url());
    let run_id = trigger_run(&api, "quick").await;
    harness
        .wait_for(Duration::from_secs(10), "the run to start", |runs| {
            runs.iter()
                .any(|r| r.id == run_id && r.status == RunStatus::Running)
        })
        .await;
    // The job ends 100 ms after it starts; the next poll is seconds away.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = cancel_run(&api, run_id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already ended in Airbyte (succeeded)"),
        "{body}"
    );
    let run = ended_run(&harness, run_id, Duration::from_secs(15)).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    daemon.stop().await;
}

/// A cancel that comes while the sync request is still on its way (Airbyte has
/// started the job, its answer has not arrived) is recorded as a request: the
/// answer is `requested`, and the run ends `cancelled` with the job it started,
/// cancelled in Airbyte, rather than forgetting a job that runs on.
#[tokio::test]
async fn a_cancel_while_the_sync_is_being_requested_cancels_the_job_it_started() {
    let harness = Harness::new().await;
    let id = harness.connection(
        "slow-start",
        JobPlan::succeeding(Duration::from_secs(4), 9, 90),
    );
    let text = with_token(&harness.config_text(&connection_toml("slow-start", id, "0 0 1 1 *")));
    let (daemon, _) = harness.start_from_file(&text).await;
    let control = harness.control();
    control.set_faults(cronbyte::emulator::Faults {
        answer_delay: Duration::from_secs(1),
        ..Default::default()
    });
    let api = format!("{}/api/v1", daemon.url());
    let run_id = trigger_run(&api, "slow-start").await;
    // The job exists in Airbyte; the daemon does not know its id yet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while control.jobs().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no sync request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    control.set_faults(Default::default());
    let (status, body) = cancel_run(&api, run_id).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::ACCEPTED, Some("requested")),
        "{body}"
    );
    let run = ended_run(&harness, run_id, Duration::from_secs(10)).await;
    let jobs = control.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(run.status, RunStatus::Cancelled, "{run:#?}");
    assert_eq!(run.job_id, Some(jobs[0].id), "the run names its job");
    assert_eq!(
        jobs[0].status, "cancelled",
        "no job left running in Airbyte"
    );
    daemon.stop().await;
}

/// A cancel that comes while Airbyte keeps refusing the sync request ends the
/// run `cancelled` without a job, at the next try, instead of asking on for the
/// rest of the trigger deadline.
#[tokio::test]
async fn a_cancel_while_airbyte_refuses_the_sync_ends_the_run_without_a_job() {
    let harness = Harness::new().await;
    let id = harness.connection("refused", JobPlan::succeeding(Duration::from_secs(1), 1, 1));
    let text = with_token(&harness.config_text(&connection_toml("refused", id, "0 0 1 1 *")));
    let (daemon, _) = harness.start_from_file(&text).await;
    let control = harness.control();
    control.set_faults(cronbyte::emulator::Faults {
        failing_operations: vec!["connections/sync".into()],
        ..Default::default()
    });
    let api = format!("{}/api/v1", daemon.url());
    let run_id = trigger_run(&api, "refused").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while control.requests().get("connections/sync") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no sync request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = cancel_run(&api, run_id).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::ACCEPTED, Some("requested")),
        "{body}"
    );
    let run = ended_run(&harness, run_id, Duration::from_secs(10)).await;
    assert_eq!(run.status, RunStatus::Cancelled, "{run:#?}");
    assert_eq!(run.job_id, None);
    assert!(control.jobs().is_empty());
    daemon.stop().await;
}

/// A running sync's numbers move between two looks at `GET /api/v1/runs/{id}`
/// and show in the connection listing and in `/metrics` with the connection's
/// labels; once it ended they are gone. An unknown run is a 404 naming it.
#[tokio::test]
async fn a_running_sync_s_numbers_move_in_the_control_api_and_an_unknown_run_is_named() {
    let harness = Harness::new().await;
    let slow = harness.connection(
        "slow",
        JobPlan::succeeding(Duration::from_secs(6), 600_000, 60_000_000),
    );
    let text = with_token(&harness.config_text(&connection_toml("slow", slow, "0 0 1 1 *")));
    let (daemon, _) = harness.start_from_file(&text).await;
    let api = format!("{}/api/v1", daemon.url());
    use reqwest::Method;

    let run_id = trigger_run(&api, "slow").await;
    let mut looks = Vec::new();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let (status, body) = call(Method::GET, &format!("{api}/runs/{run_id}"), Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["run"]["id"], run_id);
        assert_eq!(body["chain"].as_array().map(Vec::len), Some(1), "{body}");
        looks.push(body["live"]["records"].as_u64().expect("live records"));
    }
    assert!(
        looks[0] > 0 && looks[1] > looks[0],
        "records over two looks: {looks:?}"
    );

    let (_, listing) = call(Method::GET, &format!("{api}/connections"), Some(TOKEN)).await;
    let running = &listing["connections"][0]["running"];
    assert_eq!(running["run_id"], run_id, "{listing}");
    assert!(running["records"].as_u64().unwrap_or(0) >= looks[1]);
    let metrics = daemon.metrics().await;
    assert!(
        sample(
            &metrics,
            r#"cronbyte_running_sync_records{connection="slow",airbyte_instance="default"}"#
        )
        .is_some_and(|v| v > 0.0),
        "{metrics}"
    );

    ended_run(&harness, run_id, Duration::from_secs(15)).await;
    let (_, body) = call(Method::GET, &format!("{api}/runs/{run_id}"), Some(TOKEN)).await;
    assert_eq!(body["run"]["status"], "succeeded");
    assert!(body["live"].is_null(), "{body}");
    // The gauges go at the round after the end.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !daemon
            .metrics()
            .await
            .contains("cronbyte_running_sync_records{")
    );

    let (status, body) = call(Method::GET, &format!("{api}/runs/987654"), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("987654")),
        "{body}"
    );
    daemon.stop().await;
}
