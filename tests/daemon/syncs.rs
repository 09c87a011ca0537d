//! From a cron tick to the history and the metrics, for each way a sync can end.

use std::time::Duration;

use cronbyte::airbyte::{ApiKind, Client, ClientSettings};
use cronbyte::emulator::{Faults, JobPlan};
use cronbyte::run::{RunStatus, Trigger};

use crate::helpers::*;

/// The emulator's records and bytes reach the history row and the counters.
#[tokio::test]
async fn a_cron_fired_sync_lands_in_the_history_and_on_metrics() {
    let harness = Harness::new().await;
    let id = harness.connection(
        "ecommerce",
        JobPlan::succeeding(Duration::from_millis(600), 1_234, 56_789),
    );
    let at = soon(START_LEAD);
    let daemon = harness
        .start(harness.config(&connection_toml("ecommerce", id, &cron_at(at))))
        .await;

    let runs = harness
        .wait_for(Duration::from_secs(15), "a succeeded run", |runs| {
            runs.iter().any(|r| r.status == RunStatus::Succeeded)
        })
        .await;
    assert_eq!(runs.len(), 1, "one tick, one run");
    let run = &runs[0];
    assert_eq!(run.connection, "ecommerce");
    assert_eq!(run.connection_id, id.to_string());
    assert_eq!(run.trigger, Trigger::Schedule);
    assert_eq!(run.scheduled_for, at);
    assert_eq!(run.records_synced, Some(1_234));
    assert_eq!(run.bytes_synced, Some(56_789));
    assert_eq!(run.attempts, 1);
    let jobs = harness.control().jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(run.job_id, Some(jobs[0].id));
    assert!(run.started_at.is_some() && run.finished_at >= run.started_at);

    let metrics = daemon.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"cronbyte_syncs_total{connection="ecommerce",airbyte_instance="default",status="succeeded"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"cronbyte_records_synced_total{connection="ecommerce",airbyte_instance="default"}"#
        ),
        Some(1_234.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"cronbyte_bytes_synced_total{connection="ecommerce",airbyte_instance="default"}"#
        ),
        Some(56_789.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"cronbyte_sync_success_ratio{connection="ecommerce",airbyte_instance="default"}"#
        ),
        Some(1.0)
    );
    assert_eq!(sample(&metrics, "cronbyte_syncs_in_flight"), Some(0.0));
    daemon.stop().await;
}

/// A job Airbyte fails is `failed`, with the connector's message as the reason.
#[tokio::test]
async fn a_failed_job_is_recorded_with_its_reason() {
    let harness = Harness::new().await;
    let id = harness.connection(
        "crm",
        JobPlan::failing(
            Duration::from_millis(300),
            "Could not connect to crm.internal:5432",
        ),
    );
    let daemon = harness.start_firing_once("crm", id).await;
    let runs = harness.wait_until_ended().await;
    assert_eq!(runs[0].status, RunStatus::Failed);
    let error = runs[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("crm.internal:5432"), "{error}");
    let metrics = daemon.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"cronbyte_syncs_total{connection="crm",airbyte_instance="default",status="failed"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"cronbyte_sync_success_ratio{connection="crm",airbyte_instance="default"}"#
        ),
        Some(0.0)
    );
    daemon.stop().await;
}

/// A job whose first attempt fails is `incomplete`, not failed: the run follows
/// it to the second attempt's success.
#[tokio::test]
async fn an_incomplete_job_is_followed_to_its_next_attempt() {
    let harness = Harness::new().await;
    let plan = JobPlan::failing(Duration::from_millis(400), "transient").then(
        cronbyte::emulator::AttemptPlan::succeeding(Duration::from_millis(400), 10, 100),
    );
    let id = harness.connection("retrying", plan);
    let daemon = harness.start_firing_once("retrying", id).await;
    let runs = harness.wait_until_ended().await;
    assert_eq!(runs[0].status, RunStatus::Succeeded);
    assert_eq!(runs[0].attempts, 2);
    assert_eq!(runs[0].records_synced, Some(10));
    daemon.stop().await;
}

/// Under `on_overlap = "skip"`, a tick meeting Airbyte's 409 "a sync is
/// already running" is `skipped` with that reason, never `failed`.
#[tokio::test]
async fn a_409_under_on_overlap_skip_is_recorded_as_skipped() {
    let harness = Harness::new().await;
    let id = harness.connection("busy", JobPlan::hanging());
    let running = outside_client(&harness)
        .trigger_sync(&id.to_string())
        .await
        .unwrap();

    let block = connection_toml("busy", id, &cron_at(soon(START_LEAD))) + "on_overlap = \"skip\"\n";
    let daemon = harness.start(harness.config(&block)).await;
    let runs = harness.wait_until_ended().await;
    assert_eq!(runs[0].status, RunStatus::Skipped);
    assert_eq!(runs[0].job_id, None);
    let reason = runs[0].error.as_deref().unwrap_or_default();
    assert!(
        reason.contains("already running") && reason.contains("409"),
        "{reason}"
    );
    assert_eq!(
        harness.control().jobs().len(),
        1,
        "only the outside job exists"
    );
    assert_eq!(harness.control().jobs()[0].id, running.id);
    let metrics = daemon.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"cronbyte_syncs_total{connection="busy",airbyte_instance="default",status="skipped"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"cronbyte_syncs_total{connection="busy",airbyte_instance="default",status="failed"}"#
        ),
        None
    );
    daemon.stop().await;
}

/// Under the default `on_overlap = "attach"`, a 409 makes the run follow the
/// job that is running (started outside cronbyte) and record its outcome.
#[tokio::test]
async fn a_409_under_attach_follows_the_running_job_to_its_end() {
    let harness = Harness::new().await;
    let id = harness.connection(
        "shared",
        JobPlan::succeeding(Duration::from_secs(3), 321, 4_321),
    );
    let outside = outside_client(&harness)
        .trigger_sync(&id.to_string())
        .await
        .unwrap();
    let daemon = harness.start_firing_once("shared", id).await;
    let runs = harness.wait_until_ended().await;
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{runs:#?}");
    assert_eq!(runs[0].job_id, Some(outside.id));
    assert_eq!(runs[0].records_synced, Some(321));
    assert_eq!(
        harness.control().jobs().len(),
        1,
        "no second job was started"
    );
    daemon.stop().await;
}

fn outside_client(harness: &Harness) -> Client {
    Client::new(ClientSettings::new(
        harness.emulator.config_api_base(),
        ApiKind::Config,
    ))
    .unwrap()
}

/// While Airbyte answers nothing but errors, a running sync stays `running`;
/// once Airbyte is back, its real outcome is recorded.
#[tokio::test]
async fn an_airbyte_outage_mid_job_leaves_the_run_running_until_airbyte_answers() {
    let harness = Harness::new().await;
    let id = harness.connection(
        "orders",
        JobPlan::succeeding(Duration::from_secs(1), 77, 7_700),
    );
    let daemon = harness.start_firing_once("orders", id).await;
    harness.wait_until_running().await;

    let control = harness.control();
    control.set_faults(Faults {
        error_rate: 1.0,
        html_share: 0.5,
        ..Faults::default()
    });
    // Long enough for the job to end inside the outage and for many polls to fail.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let during = harness.runs().await;
    assert_eq!(
        during[0].status,
        RunStatus::Running,
        "an outage is not a failure"
    );
    control.refuse_connections_for(Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(harness.runs().await[0].status, RunStatus::Running);
    control.set_faults(Faults::default());

    let runs = harness.wait_until_ended().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Succeeded);
    assert_eq!(runs[0].records_synced, Some(77));
    let metrics = daemon.metrics().await;
    assert!(
        sample(&metrics, r#"cronbyte_airbyte_requests_total{airbyte_instance="default",operation="jobs/get_without_logs",outcome="unavailable"}"#)
            .is_some_and(|n| n >= 1.0),
        "failed polls are counted: {metrics}"
    );
    daemon.stop().await;
}

/// With many jobs in flight, a poll round lists the jobs that changed in one
/// request instead of reading each job: far fewer requests than jobs × rounds.
#[tokio::test]
async fn many_jobs_in_flight_are_followed_through_one_listing_per_round() {
    let harness = Harness::new().await;
    let at = cron_at(soon(START_LEAD));
    let mut toml = String::new();
    for i in 0..20 {
        let name = format!("table-{i:02}");
        let id = harness.connection(&name, JobPlan::succeeding(Duration::from_secs(1), 10, 100));
        toml.push_str(&connection_toml(&name, id, &at));
    }
    let daemon = harness.start(harness.config(&toml)).await;
    let runs = harness
        .wait_for(Duration::from_secs(20), "20 succeeded runs", |runs| {
            runs.len() == 20 && runs.iter().all(|r| r.status == RunStatus::Succeeded)
        })
        .await;
    assert!(runs.iter().all(|r| r.records_synced == Some(10)));
    daemon.stop().await;

    let requests = harness.control().requests();
    assert_eq!(requests.get("connections/sync"), 20);
    let listings = requests.get("jobs/list_for_workspaces");
    let reads = requests.get("jobs/get_without_logs");
    assert!(listings >= 1, "{requests:?}");
    // Reading each job every 50 ms for 1+ s would take over 400 requests.
    assert!(listings + reads < 60, "{requests:?}");
}

/// A sync request acted on by Airbyte whose answer was lost: the retry meets a
/// 409 and follows the job the lost request started, instead of giving up or
/// starting another.
#[tokio::test]
async fn a_sync_request_whose_answer_was_lost_follows_the_job_it_started() {
    let (runs, jobs) = lost_answer(
        JobPlan::succeeding(Duration::from_millis(1_500), 42, 420),
        Duration::ZERO,
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(jobs.len(), 1, "no second job");
    assert_eq!(runs.len(), 1);
    // Even under on_overlap = skip: the job is the run's own, not an overlap.
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{runs:#?}");
    assert_eq!(runs[0].job_id, Some(jobs[0].id));
    assert_eq!(runs[0].records_synced, Some(42));
}

/// Starts a sync (under `on_overlap = "skip"`) whose request Airbyte acts on but
/// whose answer is lost, on an Airbyte whose clock is `behind` ours; the answers
/// come back once the job has run for `lost_for`. Returns the history once a run
/// has ended, and the jobs.
async fn lost_answer(
    plan: JobPlan,
    behind: Duration,
    lost_for: Duration,
) -> (
    Vec<cronbyte::run::Run>,
    Vec<cronbyte::emulator::JobSnapshot>,
) {
    let harness = Harness::new().await;
    let id = harness.connection("lossy", plan);
    let mut config = harness.config(
        &(connection_toml("lossy", id, &cron_at(soon(START_LEAD))) + "on_overlap = \"skip\"\n"),
    );
    airbyte_of(&mut config).request_timeout = Duration::from_millis(400);
    let control = harness.control();
    control.set_clock_behind(behind);
    control.set_faults(Faults {
        lost_answer_rate: 1.0,
        ..Faults::default()
    });
    let daemon = harness.start(config).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while control.jobs().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sync request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(lost_for).await;
    control.set_faults(Faults::default());
    let runs = harness.wait_until_ended().await;
    daemon.stop().await;
    (runs, control.jobs())
}

/// Airbyte's clock a few seconds behind ours: the job a lost answer started is
/// still found and followed, even under `skip`, instead of being taken for
/// somebody else's sync and followed by nobody.
#[tokio::test]
async fn a_lost_answer_finds_its_job_though_airbyte_s_clock_is_behind_ours() {
    let (runs, jobs) = lost_answer(
        JobPlan::succeeding(Duration::from_millis(1_500), 42, 420),
        Duration::from_secs(5),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(jobs.len(), 1, "no second job");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{runs:#?}");
    assert_eq!(runs[0].job_id, Some(jobs[0].id));
}

/// The same, when the job has already ended by the time Airbyte answers again:
/// it is recorded as the run's, and no second sync is started.
#[tokio::test]
async fn a_lost_answer_whose_job_already_ended_starts_no_second_sync_on_a_late_clock() {
    let (runs, jobs) = lost_answer(
        JobPlan::succeeding(Duration::from_millis(200), 42, 420),
        Duration::from_secs(5),
        Duration::from_millis(900),
    )
    .await;
    assert_eq!(jobs.len(), 1, "no second job: {jobs:#?}");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{runs:#?}");
    assert_eq!(runs[0].job_id, Some(jobs[0].id));
    assert_eq!(runs[0].records_synced, Some(42));
}

/// The one request a poll round spends on running jobs' counts answers, on
/// both APIs, with every running sync job of the workspace and none that ended:
/// emitted counts from the Config API, committed ones from the public API.
#[tokio::test]
async fn the_running_jobs_listing_answers_running_jobs_with_their_counts_on_both_apis() {
    use cronbyte::airbyte::JobStatus;
    let harness = Harness::new().await;
    let control = harness.control();
    let long = harness.connection(
        "long",
        JobPlan::succeeding(Duration::from_secs(30), 30_000, 3_000_000),
    );
    let short = harness.connection(
        "short",
        JobPlan::succeeding(Duration::from_millis(100), 10, 100),
    );
    let config = Client::new(ClientSettings::new(
        harness.emulator.config_api_base(),
        ApiKind::Config,
    ))
    .expect("a client");
    let public = Client::new(ClientSettings::new(
        harness.emulator.public_api_base(),
        ApiKind::Public,
    ))
    .expect("a client");
    let running = config.trigger_sync(&long.to_string()).await.expect("a job");
    let ended = config
        .trigger_sync(&short.to_string())
        .await
        .expect("a job");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let workspace = vec![control.workspace_id().to_string()];

    let listed = config
        .running_jobs(&workspace, 200)
        .await
        .expect("a listing");
    assert_eq!(
        listed.iter().map(|j| j.id).collect::<Vec<_>>(),
        [running.id]
    );
    assert_eq!(listed[0].status, JobStatus::Running);
    assert!(
        listed[0].records_emitted.is_some_and(|r| r > 0),
        "{listed:?}"
    );
    assert!(listed.iter().all(|j| j.id != ended.id));

    let listed = public.running_jobs(&[], 200).await.expect("a listing");
    assert_eq!(
        listed.iter().map(|j| j.id).collect::<Vec<_>>(),
        [running.id]
    );
    assert_eq!(
        listed[0].records_emitted, None,
        "the public API gives no emitted counts"
    );
    assert!(listed[0].records_synced.is_some(), "{listed:?}");
}
