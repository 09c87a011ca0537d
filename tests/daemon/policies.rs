//! The scheduling policies end to end, through the binary's config, the SQLite
//! store and the emulator: one test per family where the path differs from the
//! engine's own (a job recorded once under attach, a DST day on the accelerated
//! clock, a timeout cancel Airbyte refuses, retries through failed attempts,
//! fifty connections under a cap, a dependency chain). Every policy's cases,
//! catch-up after a restart and pauses read from the store included, are held on
//! the paused clock in `src/engine/tests/policies.rs`, in a fraction of the time.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use cronbyte::emulator::JobPlan;
use cronbyte::engine::Clock;
use cronbyte::run::{Run, RunStatus, Trigger};

use crate::helpers::*;

fn ended(runs: &[Run]) -> Vec<&Run> {
    runs.iter().filter(|r| !r.status.is_open()).collect()
}

/// Two runs of one connection never have jobs running at the same time.
fn assert_one_job_at_a_time(runs: &[Run]) {
    let mut started: Vec<&Run> = runs.iter().filter(|r| r.job_id.is_some()).collect();
    started.sort_by_key(|r| r.started_at);
    for pair in started.windows(2) {
        if let (Some(end), Some(next)) = (pair[0].finished_at, pair[1].started_at) {
            assert!(
                next >= end,
                "run {} started before run {} ended",
                pair[1].id,
                pair[0].id
            );
        }
    }
}

async fn overlap_under(policy: &str) -> (Harness, Vec<Run>) {
    let harness = Harness::new().await;
    let id = harness.connection(
        "long",
        JobPlan::succeeding(Duration::from_millis(1_300), 5, 50),
    );
    // Ticks every second and jobs of 1.3 s: every other tick finds a job running.
    let block =
        connection_toml("long", id, "* * * * * *") + &format!("on_overlap = \"{policy}\"\n");
    let daemon = harness.start(harness.config(&block)).await;
    tokio::time::sleep(Duration::from_millis(3_600)).await;
    daemon.stop().await;
    let runs = harness.runs().await;
    assert!(runs.len() >= 3, "{runs:#?}");
    assert_one_job_at_a_time(&runs);
    let started = runs.iter().filter(|r| r.job_id.is_some()).count();
    assert_eq!(
        harness.control().jobs().len(),
        started,
        "every job belongs to exactly one run"
    );
    assert!(
        runs.iter()
            .all(|r| r.status != RunStatus::Failed && r.status != RunStatus::TriggerFailed),
        "an overlap is never a failure: {runs:#?}"
    );
    (harness, runs)
}

/// `attach`: the tick is covered by the running job, which records its result
/// once; no tick starts a second job.
#[tokio::test]
async fn a_long_sync_under_overlap_attach_records_its_job_once() {
    let (harness, runs) = overlap_under("attach").await;
    let covered: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Skipped)
        .collect();
    assert!(!covered.is_empty(), "{runs:#?}");
    assert!(covered.iter().all(|r| {
        r.error
            .as_deref()
            .unwrap_or("")
            .contains("covers this tick")
    }));
    let mut by_job: HashMap<i64, usize> = HashMap::new();
    for run in runs.iter().filter_map(|r| r.job_id) {
        *by_job.entry(run).or_default() += 1;
    }
    assert!(
        by_job.values().all(|&n| n == 1),
        "a job was recorded twice: {runs:#?}"
    );
    assert_eq!(by_job.len(), harness.control().jobs().len());
}

/// A `30 2 * * *` rule in Europe/Paris from `from_utc`, for 2.5 hours on an
/// accelerated clock.
async fn paris_half_past_two_from(from_utc: DateTime<Utc>) -> Vec<Run> {
    let harness = Harness::new().await;
    let id = harness.connection(
        "nightly",
        JobPlan::succeeding(Duration::from_millis(100), 1, 1),
    );
    let block = connection_toml("nightly", id, "30 2 * * *") + "timezone = \"Europe/Paris\"\n";
    // One real second is one hour.
    let daemon = harness
        .start_on(harness.config(&block), Clock::accelerated(from_utc, 3_600))
        .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    daemon.stop().await;
    harness.runs().await
}

/// Spring forward: 02:30 does not exist in Paris on 2026-03-29; the rule runs
/// once (at 03:00 CEST), not zero times. From 01:20 CET to 04:50 CEST.
#[tokio::test]
async fn a_paris_rule_at_half_past_two_runs_once_on_the_spring_forward_day() {
    let before_the_gap = Utc.with_ymd_and_hms(2026, 3, 29, 0, 20, 0).unwrap();
    let runs = paris_half_past_two_from(before_the_gap).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(
        runs[0].scheduled_for,
        Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap()
    );
}

/// A hung sync is cancelled in Airbyte at its timeout, even when the first
/// cancel requests fail, and recorded `timed_out` once Airbyte confirms.
#[tokio::test]
async fn a_hung_sync_is_cancelled_at_its_timeout_and_recorded_timed_out() {
    let harness = Harness::new().await;
    let id = harness.connection("hung", JobPlan::hanging());
    let block = connection_toml("hung", id, &cron_at(soon(START_LEAD))) + "timeout = \"1s\"\n";
    let daemon = harness.start(harness.config(&block)).await;
    harness.wait_until_running().await;
    // Airbyte fails every request around the deadline: the cancel must be retried.
    let control = harness.control();
    control.set_faults(cronbyte::emulator::Faults {
        error_rate: 1.0,
        ..Default::default()
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(harness.runs().await[0].status, RunStatus::Running);
    control.set_faults(Default::default());
    let runs = harness
        .wait_for(Duration::from_secs(10), "the run to end", |runs| {
            !ended(runs).is_empty()
        })
        .await;
    assert_eq!(runs[0].status, RunStatus::TimedOut, "{runs:#?}");
    let jobs = control.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, "cancelled", "no orphaned job in Airbyte");
    assert!(control.requests().get("jobs/cancel") >= 1);
    daemon.stop().await;
}

/// A timed-out sync whose cancel Airbyte keeps refusing holds no other sync up:
/// the cancel is asked again at each poll, not retried inside a poll round, so
/// another connection's outcome is recorded a poll after its job ends.
#[tokio::test]
async fn a_cancel_airbyte_keeps_refusing_holds_up_no_other_outcome() {
    let harness = Harness::new().await;
    let hung = harness.connection("hung", JobPlan::hanging());
    let quick = harness.connection(
        "quick",
        JobPlan::succeeding(Duration::from_millis(1_500), 1, 10),
    );
    let at = cron_at(soon(START_LEAD));
    let blocks = connection_toml("hung", hung, &at)
        + "timeout = \"1s\"\n"
        + &connection_toml("quick", quick, &at);
    let mut config = harness.config(&blocks);
    // Retried calls may go on for longer than this test waits.
    airbyte_of(&mut config).retry.max_retries = 100;
    airbyte_of(&mut config).retry.max_backoff = Duration::from_secs(1);
    airbyte_of(&mut config).retry.max_elapsed = Duration::from_secs(120);
    let control = harness.control();
    control.set_faults(cronbyte::emulator::Faults {
        failing_operations: vec!["jobs/cancel".into()],
        ..Default::default()
    });
    let daemon = harness.start(config).await;
    let runs = harness
        .wait_for(Duration::from_secs(10), "the quick run to end", |runs| {
            runs.iter()
                .any(|r| r.connection == "quick" && r.status == RunStatus::Succeeded)
        })
        .await;
    let hung_run = runs.iter().find(|r| r.connection == "hung").unwrap();
    assert_eq!(hung_run.status, RunStatus::Running, "its cancel is refused");
    // Asked again at later polls, each time once.
    assert!(
        control.requests().get("jobs/cancel") >= 2,
        "{:?}",
        control.requests()
    );

    control.set_faults(Default::default());
    let runs = harness
        .wait_for(Duration::from_secs(10), "the hung run to end", |runs| {
            runs.iter()
                .any(|r| r.connection == "hung" && r.status == RunStatus::TimedOut)
        })
        .await;
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(control.jobs().len(), 2);
    daemon.stop().await;
}

/// `retries = 2`: a sync that fails twice then succeeds ends as three runs,
/// the two retries linked to the first.
#[tokio::test]
async fn a_sync_that_fails_twice_then_succeeds_is_retried_under_retries_2() {
    let harness = Harness::new().await;
    let id = harness.connection(
        "flaky",
        JobPlan::succeeding(Duration::from_millis(200), 9, 90),
    );
    let control = harness.control();
    control.push_plan(
        id,
        JobPlan::failing(Duration::from_millis(200), "first failure"),
    );
    control.push_plan(
        id,
        JobPlan::failing(Duration::from_millis(200), "second failure"),
    );
    let block = connection_toml("flaky", id, &cron_at(soon(START_LEAD)))
        + "retries = 2\nretry_backoff = \"100ms\"\nretry_backoff_max = \"200ms\"\n";
    let daemon = harness.start(harness.config(&block)).await;
    let runs = harness
        .wait_for(Duration::from_secs(20), "a success", |runs| {
            runs.iter().any(|r| r.status == RunStatus::Succeeded)
        })
        .await;
    daemon.stop().await;
    assert_eq!(runs.len(), 3, "{runs:#?}");
    let first = &runs[0];
    assert_eq!(
        (first.trigger, first.status),
        (Trigger::Schedule, RunStatus::Failed)
    );
    assert!(
        first
            .error
            .as_deref()
            .unwrap_or("")
            .contains("first failure")
    );
    for retry in &runs[1..] {
        assert_eq!(retry.trigger, Trigger::Retry);
        assert_eq!(retry.retry_of, Some(first.id));
    }
    assert_eq!(runs[1].status, RunStatus::Failed);
    assert_eq!(runs[2].status, RunStatus::Succeeded);
    assert_eq!(runs[2].records_synced, Some(9));
    assert_eq!(control.jobs().len(), 3);
}

/// Samples how many jobs run at once in the emulator until `done`.
async fn peak_concurrency(
    harness: &Harness,
    among: impl Fn(&cronbyte::emulator::JobSnapshot) -> bool,
    done: impl Fn(&[Run]) -> bool,
) -> usize {
    let mut peak = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let running = harness
            .control()
            .jobs()
            .iter()
            .filter(|j| {
                among(j) && !["succeeded", "failed", "cancelled"].contains(&j.status.as_str())
            })
            .count();
        peak = peak.max(running);
        if done(&harness.runs().await) || tokio::time::Instant::now() > deadline {
            return peak;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 50 connections due in the same second under `max_concurrent_syncs = 5`: never
/// more than 5 in flight, and all 50 run.
#[tokio::test]
async fn fifty_connections_due_at_once_never_exceed_five_in_flight() {
    let harness = Harness::new().await;
    let at = cron_at(soon(START_LEAD));
    let mut toml = String::new();
    for i in 0..50 {
        let name = format!("c{i:02}");
        let id = harness.connection(&name, JobPlan::succeeding(Duration::from_millis(100), 1, 1));
        toml.push_str(&connection_toml(&name, id, &at));
    }
    let mut config = harness.config(&toml);
    config.workers.max_concurrent_syncs = 5;
    let daemon = harness.start(config).await;
    let peak = peak_concurrency(
        &harness,
        |_| true,
        |runs| runs.len() == 50 && runs.iter().all(|r| r.status == RunStatus::Succeeded),
    )
    .await;
    daemon.stop().await;
    let runs = harness.runs().await;
    assert_eq!(
        runs.iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count(),
        50
    );
    assert!(peak <= 5, "peak {peak}");
    assert!(peak >= 2, "the cap was used: peak {peak}");
}

/// bronze → silver → gold: each runs after the one before it succeeded.
#[tokio::test]
async fn a_two_step_dependency_chain_runs_in_order() {
    let harness = Harness::new().await;
    let plan = || JobPlan::succeeding(Duration::from_millis(100), 3, 30);
    let bronze = harness.connection("bronze", plan());
    let silver = harness.connection("silver", plan());
    let gold = harness.connection("gold", plan());
    let toml = connection_toml("bronze", bronze, &cron_at(soon(START_LEAD)))
        + &format!(
            "\n[[connections]]\nname = \"silver\"\nconnection_id = \"{silver}\"\nafter = [\"bronze\"]\n"
        )
        + &format!(
            "\n[[connections]]\nname = \"gold\"\nconnection_id = \"{gold}\"\nafter = [\"silver\"]\n"
        );
    let daemon = harness.start(harness.config(&toml)).await;
    let runs = harness
        .wait_for(Duration::from_secs(20), "three succeeded runs", |runs| {
            runs.len() == 3 && runs.iter().all(|r| r.status == RunStatus::Succeeded)
        })
        .await;
    daemon.stop().await;
    let by_name: HashMap<&str, &Run> = runs.iter().map(|r| (r.connection.as_str(), r)).collect();
    assert_eq!(by_name["silver"].trigger, Trigger::Dependency);
    assert_eq!(by_name["gold"].trigger, Trigger::Dependency);
    assert!(by_name["silver"].started_at >= by_name["bronze"].finished_at);
    assert!(by_name["gold"].started_at >= by_name["silver"].finished_at);
}
