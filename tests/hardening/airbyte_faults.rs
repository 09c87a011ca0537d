//! Airbyte misbehaving: the `cronbyte` binary against the emulator while it answers 5xx
//! with HTML bodies, answers too slowly, cuts JSON short, fails to issue tokens and refuses
//! connections for 30 s. Nothing may panic, no run may be recorded as failed because Airbyte
//! could not be reached, every run must be resolved once Airbyte is healthy again, and no
//! call may be tried more often than the retry budget allows.
//!
//! Short form (default): `cargo test --test hardening airbyte_faults`.
//! Long form (each phase five times longer, about six minutes), with the crash loop's:
//! `cargo test --release --test hardening long_run -- --ignored`.

use std::time::Duration;

use cronbyte::emulator::{EmulatorAuth, Faults, JobPlan};
use serde_json::Value;

use crate::support::*;

const MAX_RETRIES: u64 = 3;
const CLIENT_ID: &str = "cronbyte-faults";
const CLIENT_SECRET: &str = "faults-client-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airbyte_faults_never_fail_a_run_and_every_run_is_resolved_once_airbyte_recovers() {
    faults_run(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long form (about six minutes): cargo test --release --test hardening long_run -- --ignored"]
async fn a_long_run_of_faults_leaves_an_exact_history() {
    faults_run(env_or("CRONBYTE_FAULTS_SCALE", 5)).await;
}

/// One phase of misbehaviour.
struct Phase {
    name: &'static str,
    seconds: u64,
    faults: Faults,
    refuse: bool,
}

fn phases() -> Vec<Phase> {
    let phase = |name, seconds, faults| Phase {
        name,
        seconds,
        faults,
        refuse: false,
    };
    vec![
        phase("healthy", 3, Faults::default()),
        phase(
            "5xx, half of them HTML pages from a proxy",
            6,
            Faults {
                error_rate: 0.4,
                html_share: 0.5,
                ..Faults::default()
            },
        ),
        phase(
            "answers slower than the request timeout",
            6,
            Faults {
                latency: Duration::from_millis(1_500),
                ..Faults::default()
            },
        ),
        phase(
            "JSON cut short",
            6,
            Faults {
                malformed_rate: 0.3,
                ..Faults::default()
            },
        ),
        phase(
            "the token endpoint fails",
            6,
            Faults {
                token_endpoint_fails: true,
                ..Faults::default()
            },
        ),
        phase(
            "everything at once",
            6,
            Faults {
                error_rate: 0.2,
                html_share: 0.5,
                malformed_rate: 0.1,
                latency: Duration::from_millis(300),
                ..Faults::default()
            },
        ),
        Phase {
            name: "connections refused",
            seconds: 30,
            faults: Faults::default(),
            refuse: true,
        },
    ]
}

/// The most requests the daemon may send in `seconds` of faults: every poll round (one
/// per poll interval) may make, for each of the `connections`' runs plus a job listing and
/// a workspace listing, one call tried at most 1 + max_retries times, each needing at most
/// a token request first. A retry storm (a budget ignored, no backoff) is far above.
fn request_ceiling(seconds: f64, connections: u64) -> u64 {
    let rounds = (seconds / 0.2).ceil() as u64 + 1;
    rounds * (connections + 2) * (1 + MAX_RETRIES) * 2
}

async fn faults_run(scale: u64) {
    let _heavy = crate::HEAVY.lock().await;
    let emulator = emulator().await;
    let control = emulator.control();
    control.set_auth(EmulatorAuth::ClientCredentials {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        token_lifetime: Duration::from_secs(2),
    });
    let dir = WorkDir::new("airbyte-faults");
    let store = dir.path().join("history.db");
    let logs = dir.path().join("logs");

    // Syncs last seconds, as real ones do at least; one connection always fails, so a
    // failure Airbyte reported can be told from one cronbyte would have invented.
    let plans = [
        (
            "orders",
            JobPlan::succeeding(Duration::from_secs(3), 500, 50_000),
            "on_overlap = \"attach\"",
        ),
        (
            "customers",
            JobPlan::succeeding(Duration::from_secs(4), 40, 4_000),
            "on_overlap = \"skip\"",
        ),
        (
            "events",
            JobPlan::succeeding(Duration::from_secs(2), 9_000, 900_000),
            "",
        ),
        (
            "broken",
            JobPlan::failing(
                Duration::from_secs(2),
                "planned failure: destination rejected the schema",
            ),
            "",
        ),
    ];
    let mut text = base_config(
        &emulator.config_api_base(),
        &store,
        &format!(
            "request_timeout = \"1s\"\nconnect_timeout = \"500ms\"\n\
             [airbyte.auth]\nkind = \"client_credentials\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
             [airbyte.retry]\nmax_retries = {MAX_RETRIES}\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\nmax_elapsed = \"3s\""
        ),
    );
    let mut ids = Vec::new();
    for (name, plan, extra) in &plans {
        let id = control.add_connection(name);
        control.set_plan(id, plan.clone());
        ids.push((*name, id));
        text.push_str(&connection_block(name, id, "* * * * * *", extra));
    }
    let config = dir.path().join("cronbyte.toml");
    std::fs::write(&config, valid(&text)).expect("config written");
    let mut daemon = DaemonProcess::spawn(
        &config,
        &logs,
        "daemon",
        &[("RUST_LOG", "info,cronbyte::airbyte=debug")],
    );
    daemon.listen_addr(Duration::from_secs(20)).await;

    let mut report = Vec::new();
    for phase in phases() {
        let seconds = phase.seconds * scale;
        let before = control.requests();
        control.set_faults(phase.faults.clone());
        if phase.refuse {
            control.refuse_connections_for(Duration::from_secs(seconds));
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        control.set_faults(Faults::default());
        let after = control.requests();
        let sent = after.total - before.total - (after.get("health") - before.get("health"));
        let ceiling = request_ceiling(seconds as f64, plans.len() as u64);
        report.push(format!(
            "{}: {sent} requests in {seconds} s (ceiling {ceiling})",
            phase.name
        ));
        assert!(
            daemon.is_running(),
            "the daemon died during `{}`; stderr ends:\n{}",
            phase.name,
            tail(&read(&daemon.stderr), 30)
        );
        assert!(
            sent <= ceiling,
            "`{}`: {sent} requests in {seconds} s, more than the retry budget allows ({ceiling})",
            phase.name
        );
    }
    println!("{}", report.join("\n"));

    // Airbyte is healthy again: stop new ticks and let every run be resolved.
    let names_only: Vec<&str> = ids.iter().map(|(n, _)| *n).collect();
    pause(&store, &names_only).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = settle(&emulator, &store, Duration::from_secs(120)).await;
    let lines = daemon.log_lines();
    let stderr = daemon.stderr.clone();
    let status = daemon.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "the daemon stopped badly: {status:?}");

    let ledger = ledger(&control.jobs(), &runs, &names(&ids));
    println!(
        "faults: {} jobs, {} runs {:?}",
        ledger.jobs, ledger.runs, ledger.by_status
    );
    ledger.assert_clean("Airbyte faults");
    for run in &runs {
        if run.status == cronbyte::run::RunStatus::Failed {
            let error = run.error.as_deref().unwrap_or("");
            assert!(
                error.contains("planned failure"),
                "run {} ({}) recorded as failed for a reason Airbyte never gave: {error}",
                run.id,
                run.connection
            );
        }
    }
    assert!(
        runs.iter()
            .any(|r| r.connection == "broken" && r.status == cronbyte::run::RunStatus::Failed),
        "the failing connection never failed: the test did not run syncs to their end"
    );
    let most_retries = lines
        .iter()
        .filter(|l| l["message"] == "retrying Airbyte call")
        .filter_map(|l| l["retry"].as_u64())
        .max();
    assert!(
        most_retries.is_some(),
        "no call was ever retried: the faults did not reach the client"
    );
    assert!(
        most_retries <= Some(MAX_RETRIES),
        "a call was retried {most_retries:?} times, more than max_retries = {MAX_RETRIES}"
    );
    let panicked = panics(&[stderr]);
    assert!(
        panicked.is_empty(),
        "the daemon panicked:\n{}",
        panicked.join("\n")
    );
    emulator.shutdown().await;
}

/// Calls the control API of a daemon at `addr`.
async fn control_api(
    addr: std::net::SocketAddr,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("http://{addr}/api/v1{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the daemon answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A sync request that keeps meeting 503 (Airbyte did not take it) is sent exactly
/// 1 + max_retries times, and then not again before the next poll interval; once Airbyte
/// answers, one more request starts the sync and the run succeeds. (After a 500, 502 or a
/// timeout, which Airbyte may have acted on, the engine first looks for the job instead:
/// `a_sync_whose_answer_was_lost_is_not_started_twice`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_request_meeting_5xx_is_sent_exactly_one_plus_max_retries_times() {
    let emulator = emulator().await;
    let control = emulator.control();
    let id = control.add_connection("budget");
    control.set_plan(id, JobPlan::succeeding(Duration::from_millis(300), 5, 500));
    control.set_faults(Faults {
        error_rate: 1.0,
        error_status: Some(503),
        html_share: 0.5,
        ..Faults::default()
    });
    let dir = WorkDir::new("retry-budget");
    let store = dir.path().join("history.db");
    let token = "budget-control-token";
    let text = base_config(
        &emulator.config_api_base(),
        &store,
        &format!(
            "[airbyte.retry]\nmax_retries = {MAX_RETRIES}\ninitial_backoff = \"20ms\"\nmax_backoff = \"50ms\"\nmax_elapsed = \"10s\""
        ),
    )
    .replace("[server]\n", &format!("[server]\ntoken = \"{token}\"\n"))
    .replace("poll_interval = \"200ms\"", "poll_interval = \"4s\"")
        + &connection_block("budget", id, "0 0 1 1 *", "");
    let config = dir.path().join("cronbyte.toml");
    std::fs::write(&config, valid(&text)).expect("config written");
    let daemon = DaemonProcess::spawn(&config, &dir.path().join("logs"), "daemon", &[]);
    let addr = daemon.listen_addr(Duration::from_secs(20)).await;

    let (status, body) = control_api(
        addr,
        reqwest::Method::POST,
        "/connections/budget/trigger",
        token,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let syncs = || control.requests().get("connections/sync");
    eventually(
        Duration::from_secs(5),
        "1 + max_retries sync requests",
        || async {
            (syncs() > MAX_RETRIES)
                .then_some(())
                .ok_or(format!("{} so far", syncs()))
        },
    )
    .await;
    // The engine asks again only after a poll interval (4 s): nothing may come before.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        syncs(),
        1 + MAX_RETRIES,
        "sync requests for one try of the engine"
    );

    control.set_faults(Faults::default());
    let runs = eventually(Duration::from_secs(20), "the run to succeed", || async {
        let runs = history(&store).await;
        match runs.as_slice() {
            [run] if run.status == cronbyte::run::RunStatus::Succeeded => Ok(runs),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        syncs(),
        2 + MAX_RETRIES,
        "one more request started the sync"
    );
    assert_eq!(control.jobs().len(), 1);
    assert_eq!(runs[0].job_id, Some(control.jobs()[0].id));
    daemon.terminate(Duration::from_secs(15)).await;
    emulator.shutdown().await;
}

/// When a sync request's answer is lost (Airbyte started the job, the client timed out)
/// and that job ends before the request is tried again, the retry must not start a second
/// sync for the same tick: the job that ran must be the one in the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_whose_answer_was_lost_is_not_started_twice() {
    let emulator = emulator().await;
    let control = emulator.control();
    let id = control.add_connection("quick");
    // Pending 200 ms, then 300 ms of work: over before the 1 s request timeout.
    control.set_plan(
        id,
        JobPlan::succeeding(Duration::from_millis(300), 10, 1_000),
    );
    let dir = WorkDir::new("lost-answer");
    let store = dir.path().join("history.db");
    let text = base_config(
        &emulator.config_api_base(),
        &store,
        "request_timeout = \"1s\"\n[airbyte.retry]\ninitial_backoff = \"50ms\"\nmax_backoff = \"100ms\"",
    ) + &connection_block("quick", id, "0 0 1 1 *", "");
    let config = dir.path().join("cronbyte.toml");
    std::fs::write(
        &config,
        valid(&text.replace("[server]\n", "[server]\ntoken = \"t\"\n")),
    )
    .expect("config written");
    let daemon = DaemonProcess::spawn(&config, &dir.path().join("logs"), "daemon", &[]);
    let addr = daemon.listen_addr(Duration::from_secs(20)).await;

    control.set_faults(Faults {
        lost_answer_rate: 1.0,
        ..Faults::default()
    });
    let (status, body) = control_api(
        addr,
        reqwest::Method::POST,
        "/connections/quick/trigger",
        "t",
    )
    .await;
    assert_eq!(status, 202, "{body}");
    // Only the first sync request loses its answer.
    eventually(Duration::from_secs(5), "the first sync request", || async {
        (control.requests().get("connections/sync") >= 1)
            .then_some(())
            .ok_or_else(String::new)
    })
    .await;
    control.set_faults(Faults::default());

    let runs = settle(&emulator, &store, Duration::from_secs(20)).await;
    daemon.terminate(Duration::from_secs(15)).await;
    let jobs = control.jobs();
    ledger(&jobs, &runs, &names(&[("quick", id)])).assert_clean("one manual run, its answer lost");
    assert_eq!(jobs.len(), 1, "one trigger, one sync in Airbyte: {jobs:?}");
    emulator.shutdown().await;
}
