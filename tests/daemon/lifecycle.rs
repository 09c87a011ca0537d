//! Stopping, starting again, and two daemons on one store: a tick is triggered
//! once and every job's outcome is recorded once.

use std::collections::HashSet;
use std::time::Duration;

use cronbyte::emulator::JobPlan;
use cronbyte::run::RunStatus;

use crate::helpers::*;

/// A job still running when the daemon stops is taken up by the next start
/// and recorded once, with its real outcome.
#[tokio::test]
async fn a_job_in_flight_across_a_restart_is_recorded_once() {
    let harness = Harness::new().await;
    let id = harness.connection(
        "ecommerce",
        JobPlan::succeeding(Duration::from_secs(1), 500, 5_000),
    );
    let toml = connection_toml("ecommerce", id, &cron_at(soon(START_LEAD)));
    let first = harness.start(harness.config(&toml)).await;
    harness.wait_until_running().await;
    let took = first.stop().await;
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert_eq!(harness.runs().await[0].status, RunStatus::Running);

    let second = harness.start(harness.config(&toml)).await;
    let runs = harness.wait_until_ended().await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].status, RunStatus::Succeeded);
    assert_eq!(runs[0].records_synced, Some(500));
    assert_eq!(
        harness.control().jobs().len(),
        1,
        "no second job was started"
    );
    let metrics = second.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"cronbyte_syncs_total{connection="ecommerce",airbyte_instance="default",status="succeeded"}"#
        ),
        Some(1.0)
    );
    second.stop().await;
}

/// Two daemons on one store race for every tick of a per-second rule; each tick
/// is claimed, and triggered, exactly once.
#[tokio::test]
async fn the_same_tick_is_never_triggered_twice() {
    let harness = Harness::new().await;
    let id = harness.connection(
        "fast",
        JobPlan::succeeding(Duration::from_millis(100), 1, 1),
    );
    let toml = connection_toml("fast", id, "* * * * * *");
    let a = harness.start(harness.config(&toml)).await;
    let b = harness.start(harness.config(&toml)).await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    a.stop().await;
    b.stop().await;

    let runs = harness.runs().await;
    let ticks: HashSet<_> = runs.iter().map(|r| r.scheduled_for).collect();
    assert!(runs.len() >= 3, "{runs:#?}");
    assert_eq!(
        ticks.len(),
        runs.len(),
        "a tick was claimed twice: {runs:#?}"
    );
    let started = runs.iter().filter(|r| r.job_id.is_some()).count();
    let skipped = runs
        .iter()
        .filter(|r| r.status == RunStatus::Skipped)
        .count();
    // Each run either started its own job or met Airbyte's 409 because the
    // previous tick's job was still running: never two jobs for one tick.
    assert_eq!(
        started + skipped,
        runs.len()
            - runs
                .iter()
                .filter(|r| r.status == RunStatus::Pending)
                .count()
    );
    assert_eq!(harness.control().jobs().len(), started);
}

/// SIGTERM's path: the daemon stops firing, ends in-flight calls and returns
/// within 10 s even with jobs running, and the jobs go on in Airbyte.
#[tokio::test]
async fn shutdown_leaves_airbyte_jobs_running_and_returns_quickly() {
    let harness = Harness::new().await;
    let id = harness.connection("long", JobPlan::hanging());
    let daemon = harness.start_firing_once("long", id).await;
    harness.wait_until_running().await;
    let took = daemon.stop().await;
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    let jobs = harness.control().jobs();
    assert_eq!(jobs.len(), 1);
    assert!(
        ["pending", "running"].contains(&jobs[0].status.as_str()),
        "cronbyte does not cancel jobs when it stops: {}",
        jobs[0].status
    );
}
