//! The scheduling policies README promises, each held to its promise on tokio's
//! paused clock with the history and Airbyte in memory: overlap, misfire,
//! jitter, timeout, retries, concurrency caps and groups, `after`, pause,
//! reload, and whole DST days.

use crate::airbyte::{Job, JobStatus};

use super::*;

/// Where the engine's clock starts: on a whole minute, so a `*/10` rule ticks
/// at 10, 20, 30 ... s after it.
fn origin() -> DateTime<Utc> {
    "2026-06-01T12:00:00Z".parse().expect("a time")
}

/// `seconds` after `from`.
fn at(from: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    from + chrono::Duration::seconds(seconds)
}

/// The connection id of the `n`th connection of a test.
fn id(n: u32) -> String {
    format!("4b5c6d7e-0000-4000-8000-{n:012}")
}

/// Jobs that run `seconds` and end `ends`.
fn lasting(seconds: u64, ends: JobStatus) -> Plan {
    Plan {
        lasts: Duration::from_secs(seconds),
        ends,
        records: 10,
    }
}

/// Sleeps on the paused clock until `seconds` after `origin` by the engine's clock.
async fn until(harness: &Harness, origin: DateTime<Utc>, seconds: i64) {
    let now = harness.engine.shared.clock.now();
    let ahead = (at(origin, seconds) - now).to_std().expect("a time ahead");
    tokio::time::sleep(ahead).await;
}

/// The connection's runs, oldest first.
fn of<'a>(runs: &'a [Run], name: &str) -> Vec<&'a Run> {
    runs.iter().filter(|r| r.connection == name).collect()
}

/// The ticks of the connection that were claimed, as seconds after `origin`.
fn ticks(runs: &[Run], name: &str, origin: DateTime<Utc>) -> Vec<i64> {
    of(runs, name)
        .into_iter()
        .filter(|r| r.trigger == Trigger::Schedule)
        .map(|r| (r.scheduled_for - origin).num_seconds())
        .collect()
}

/// Each run as (its tick in seconds after `origin`, its status).
fn summary(runs: &[Run], origin: DateTime<Utc>) -> Vec<(i64, RunStatus)> {
    runs.iter()
        .map(|r| ((r.scheduled_for - origin).num_seconds(), r.status))
        .collect()
}

/// The fake's job of a run.
fn job_of<'a>(jobs: &'a [Job], run: &Run) -> &'a Job {
    let job_id = run
        .job_id
        .unwrap_or_else(|| panic!("run without a job: {run:?}"));
    jobs.iter()
        .find(|j| j.id == job_id)
        .unwrap_or_else(|| panic!("no job {job_id} in the fake"))
}

/// When a job started and ended (or now, while it runs), by the fake's clock.
fn span(job: &Job) -> (DateTime<Utc>, DateTime<Utc>) {
    let created = job.created_at.expect("the fake stamps its jobs");
    let ended = if job.status.is_terminal() {
        job.updated_at.expect("the fake stamps its jobs")
    } else {
        DateTime::<Utc>::MAX_UTC
    };
    (created, ended)
}

// ---- on_overlap ------------------------------------------------------------

/// Starts one connection on every tenth second with this overlap policy and
/// jobs of 25 s, and lets 45 s pass: ticks at 10, 20, 30 and 40 s, the first
/// job running from 10 s to 35 s.
async fn overlapping(policy: &str) -> (Harness, Vec<Run>) {
    let origin = origin();
    let config = config(&connection(
        "overlapping",
        ID_A,
        "*/10 * * * * *",
        &format!("on_overlap = \"{policy}\""),
    ));
    let airbyte = Harness::airbyte(origin);
    airbyte.plan(ID_A, lasting(25, JobStatus::Succeeded));
    let harness = Harness::start(&config, origin, airbyte).await;
    until(&harness, origin, 45).await;
    let runs = harness.runs().await;
    (harness, runs)
}

/// With `on_overlap = "skip"`, the ticks that come while the connection's sync
/// runs start nothing and are recorded `skipped`, naming the run in flight; the
/// first tick after the job ended starts a sync again.
#[tokio::test(start_paused = true)]
async fn a_connection_on_skip_records_a_skipped_run_while_its_sync_runs() {
    let (harness, runs) = overlapping("skip").await;
    assert_eq!(
        summary(&runs, origin()),
        vec![
            (10, RunStatus::Succeeded),
            (20, RunStatus::Skipped),
            (30, RunStatus::Skipped),
            (40, RunStatus::Running),
        ],
        "{runs:#?}"
    );
    let reason = format!(
        "run {} of this connection was still in flight (on_overlap = skip)",
        runs[0].id
    );
    for skipped in &runs[1..3] {
        assert_eq!(skipped.error.as_deref(), Some(reason.as_str()));
        assert_eq!(skipped.job_id, None);
    }
    // Skipped in the engine: Airbyte was not even asked (no 409 came of it).
    assert_eq!(harness.airbyte.jobs().len(), 2);
    assert_eq!(harness.airbyte.calls(Op::Sync), 2);
}

/// With `on_overlap = "attach"`, a tick covered by cronbyte's own running job
/// starts no second job and is recorded `skipped` with the reason naming the run
/// that follows the job, so the job's outcome is recorded once, on that run.
#[tokio::test(start_paused = true)]
async fn a_connection_on_attach_records_a_tick_its_running_job_covers_as_skipped() {
    let (harness, runs) = overlapping("attach").await;
    assert_eq!(
        summary(&runs, origin()),
        vec![
            (10, RunStatus::Succeeded),
            (20, RunStatus::Skipped),
            (30, RunStatus::Skipped),
            (40, RunStatus::Running),
        ],
        "{runs:#?}"
    );
    let reason = format!(
        "run {} of this connection was still in flight; its job covers this tick (on_overlap = attach)",
        runs[0].id
    );
    for covered in &runs[1..3] {
        assert_eq!(covered.error.as_deref(), Some(reason.as_str()));
        assert_eq!(covered.job_id, None, "the job is recorded on run 1 only");
    }
    let jobs = harness.airbyte.jobs();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(runs[0].job_id, Some(jobs[0].id));
    assert_eq!(runs[0].records_synced, Some(10));
    assert_eq!(harness.airbyte.calls(Op::Sync), 2);
}

/// With `on_overlap = "attach"`, a tick that meets a sync started outside
/// cronbyte (Airbyte answers 409) follows that job as its run and records its
/// outcome, instead of failing or starting a second job.
#[tokio::test(start_paused = true)]
async fn a_connection_on_attach_follows_a_sync_started_outside_cronbyte() {
    let origin = origin();
    let config = config(&connection(
        "attaching",
        ID_A,
        "*/30 * * * * *",
        "on_overlap = \"attach\"",
    ));
    let airbyte = Harness::airbyte(origin);
    airbyte.plan(ID_A, lasting(15, JobStatus::Succeeded));
    let harness = Harness::start(&config, origin, airbyte.clone()).await;
    until(&harness, origin, 25).await;
    // Someone presses "Sync now" in Airbyte's UI: a job from 25 s to 40 s.
    let outside = Airbyte::sync(&*airbyte, ID_A).await.expect("a job");
    until(&harness, origin, 45).await;

    let runs = harness.runs().await;
    assert_eq!(
        summary(&runs, origin),
        vec![(30, RunStatus::Succeeded)],
        "{runs:#?}"
    );
    assert_eq!(runs[0].job_id, Some(outside.id));
    assert_eq!(runs[0].records_synced, Some(10));
    let jobs = airbyte.jobs();
    assert_eq!(jobs.len(), 1, "no second job: {jobs:?}");
}

/// With `on_overlap = "queue"`, a tick that comes while the sync runs waits,
/// and its sync starts as soon as the running job ends (within a poll); a third
/// tick while one waits is skipped, naming the waiting run.
#[tokio::test(start_paused = true)]
async fn a_connection_on_queue_starts_one_waiting_run_when_its_job_ends_and_skips_the_rest() {
    let (harness, runs) = overlapping("queue").await;
    assert_eq!(
        summary(&runs, origin()),
        vec![
            (10, RunStatus::Succeeded),
            (20, RunStatus::Running),
            (30, RunStatus::Skipped),
            // Waits behind the run of 20 s, which now runs.
            (40, RunStatus::Pending),
        ],
        "{runs:#?}"
    );
    let jobs = harness.airbyte.jobs();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let (_, first_ended) = span(job_of(&jobs, &runs[0]));
    let (second_started, _) = span(job_of(&jobs, &runs[1]));
    assert_eq!(first_ended, at(origin(), 35));
    assert!(
        second_started >= first_ended
            && second_started - first_ended <= chrono::Duration::seconds(1),
        "the queued run's sync started at {second_started}, the job before it ended at {first_ended}"
    );
    assert_eq!(
        runs[2].error.as_deref(),
        Some(
            format!(
                "run {} already waits for run {} to end (on_overlap = queue keeps one)",
                runs[1].id, runs[0].id
            )
            .as_str()
        )
    );
    assert_eq!(runs[3].job_id, None);
}

// ---- misfire -----------------------------------------------------------------

/// Runs a connection on every tenth second with this misfire policy, paused
/// from 12 s to 65 s (missing the ticks of 20 to 60 s), until 75 s.
async fn paused_and_resumed(misfire: &str) -> Vec<Run> {
    let origin = origin();
    let config = config(&connection(
        "misfiring",
        ID_A,
        "*/10 * * * * *",
        &format!("misfire = \"{misfire}\""),
    ));
    let harness = Harness::start(&config, origin, Harness::airbyte(origin)).await;
    until(&harness, origin, 12).await;
    assert!(harness.engine.pause("misfiring").await.expect("paused"));
    until(&harness, origin, 65).await;
    assert_eq!(ticks(&harness.runs().await, "misfiring", origin), vec![10]);
    assert!(harness.engine.resume("misfiring").await.expect("resumed"));
    until(&harness, origin, 75).await;
    harness.runs().await
}

/// With `misfire = "run_once"`, resuming a paused connection claims exactly one
/// run for the ticks it missed, the newest (60 s), at the resume; then the ticks
/// go on.
#[tokio::test(start_paused = true)]
async fn run_once_claims_only_the_newest_tick_missed_while_paused() {
    let origin = origin();
    let runs = paused_and_resumed("run_once").await;
    assert_eq!(
        ticks(&runs, "misfiring", origin),
        vec![10, 60, 70],
        "{runs:#?}"
    );
    let catch_up = &runs[1];
    assert_eq!(catch_up.claimed_at, at(origin, 65), "claimed on resume");
    assert_eq!(catch_up.status, RunStatus::Succeeded);
}

/// With `misfire = "skip"`, resuming a paused connection claims none of the
/// ticks it missed; the next tick runs.
#[tokio::test(start_paused = true)]
async fn misfire_skip_claims_no_tick_missed_while_paused() {
    let runs = paused_and_resumed("skip").await;
    assert_eq!(
        ticks(&runs, "misfiring", origin()),
        vec![10, 70],
        "{runs:#?}"
    );
}

/// Runs a connection on every tenth second with this misfire policy, and
/// suspends the machine from 12 s to 65 s: the clock jumps, and the schedule
/// wakes once, at 65 s, past the ticks of 20 to 60 s. Gives the runs at 75 s.
async fn suspended(misfire: &str) -> Vec<Run> {
    let origin = origin();
    let config = config(&connection(
        "misfiring",
        ID_A,
        "*/10 * * * * *",
        &format!("misfire = \"{misfire}\""),
    ));
    let harness = Harness::start(&config, origin, Harness::airbyte(origin)).await;
    until(&harness, origin, 12).await;
    // `advance`, unlike a sleep, moves the clock past every timer at once, as a
    // resume from suspend does.
    tokio::time::advance(Duration::from_secs(53)).await;
    settle().await;
    until(&harness, origin, 75).await;
    harness.runs().await
}

/// With `misfire = "run_once"`, the ticks that fell while the machine was
/// suspended are one catch-up run for the newest of them, not a burst.
#[tokio::test(start_paused = true)]
async fn run_once_claims_only_the_newest_tick_missed_while_the_machine_was_suspended() {
    let origin = origin();
    let runs = suspended("run_once").await;
    assert_eq!(
        ticks(&runs, "misfiring", origin),
        vec![10, 60, 70],
        "{runs:#?}"
    );
    assert_eq!(runs[1].claimed_at, at(origin, 65), "claimed on waking");
}

/// With `misfire = "skip"`, the ticks that fell while the machine was
/// suspended are let go; the next tick runs.
#[tokio::test(start_paused = true)]
async fn misfire_skip_claims_no_tick_missed_while_the_machine_was_suspended() {
    let runs = suspended("skip").await;
    assert_eq!(
        ticks(&runs, "misfiring", origin()),
        vec![10, 70],
        "{runs:#?}"
    );
}

/// Runs a connection on every tenth second with this misfire policy until
/// 25 s, stops the engine, and starts another on the same history at 95 s,
/// which it runs until 105 s: the ticks of 30 s to 90 s fell while it was down.
async fn restarted(misfire: &str) -> (Vec<Run>, Arc<FakeAirbyte>) {
    let origin = origin();
    let config = config(&connection(
        "misfiring",
        ID_A,
        "*/10 * * * * *",
        &format!("misfire = \"{misfire}\""),
    ));
    let first = Harness::start(&config, origin, Harness::airbyte(origin)).await;
    until(&first, origin, 25).await;
    first.stop().await;
    assert_eq!(
        ticks(&first.runs().await, "misfiring", origin),
        vec![10, 20]
    );

    let later = at(origin, 95);
    let airbyte = Harness::airbyte(later);
    let second = Harness::start_with(&config, later, airbyte.clone(), first.store.clone()).await;
    until(&second, origin, 105).await;
    (second.runs().await, airbyte)
}

/// With `misfire = "run_once"`, an engine restarted on the same history claims
/// one run for the ticks that fell while it was down, the newest, as it starts.
#[tokio::test(start_paused = true)]
async fn run_once_claims_only_the_newest_tick_missed_while_the_daemon_was_down() {
    let origin = origin();
    let (runs, airbyte) = restarted("run_once").await;
    assert_eq!(
        ticks(&runs, "misfiring", origin),
        vec![10, 20, 90, 100],
        "{runs:#?}"
    );
    assert_eq!(runs[2].claimed_at, at(origin, 95), "claimed at the start");
    assert_eq!(
        airbyte.jobs().len(),
        2,
        "the catch-up run and the tick of 100 s"
    );
}

/// With `misfire = "skip"`, an engine restarted on the same history claims none
/// of the ticks that fell while it was down, and runs the next one.
#[tokio::test(start_paused = true)]
async fn misfire_skip_claims_no_tick_missed_while_the_daemon_was_down() {
    let (runs, airbyte) = restarted("skip").await;
    assert_eq!(
        ticks(&runs, "misfiring", origin()),
        vec![10, 20, 100],
        "{runs:#?}"
    );
    assert_eq!(airbyte.jobs().len(), 1);
}

// ---- jitter ------------------------------------------------------------------

/// Every run of a connection with `jitter = "20s"` starts its sync within 20 s
/// after its tick, never before; and connections on one rule do not all start
/// in the same instant.
#[tokio::test(start_paused = true)]
async fn jitter_delays_each_sync_within_its_bound_and_spreads_connections_on_one_rule() {
    let origin = origin();
    let names: Vec<String> = (0..5).map(|n| format!("jittered-{n}")).collect();
    let blocks: String = names
        .iter()
        .zip(1..)
        .map(|(name, n)| connection(name, &id(n), "*/30 * * * * *", "jitter = \"20s\""))
        .collect();
    let harness = Harness::start(&config(&blocks), origin, Harness::airbyte(origin)).await;
    // Ticks at 30, 60 and 90 s; the last sync starts by 110 s and ends 1 s later.
    until(&harness, origin, 115).await;

    let runs = harness.runs().await;
    let jobs = harness.airbyte.jobs();
    assert_eq!(runs.len(), 15, "{runs:#?}");
    assert_eq!(jobs.len(), 15);
    let bound = chrono::Duration::seconds(20);
    for run in &runs {
        let (started, _) = span(job_of(&jobs, run));
        let delay = started - run.scheduled_for;
        assert!(
            delay >= chrono::Duration::zero() && delay <= bound,
            "{} started {delay} after its tick {}",
            run.connection,
            run.scheduled_for
        );
    }
    for tick in [30, 60, 90] {
        let starts: std::collections::BTreeSet<DateTime<Utc>> = runs
            .iter()
            .filter(|r| r.scheduled_for == at(origin, tick))
            .map(|r| span(job_of(&jobs, r)).0)
            .collect();
        assert!(
            starts.len() > 1,
            "the five syncs of the tick at {tick} s all started at {starts:?}"
        );
    }
}

// ---- timeout -----------------------------------------------------------------

/// A job that runs past its connection's `timeout` is cancelled in Airbyte at
/// the first poll after the deadline, and its run ends `timed_out`; not before.
#[tokio::test(start_paused = true)]
async fn a_job_running_past_its_timeout_is_cancelled_in_airbyte_and_its_run_times_out() {
    let origin = origin();
    let config = config(&connection("slow", ID_A, "0 0 3 * * *", "timeout = \"5s\""));
    let airbyte = Harness::airbyte(origin);
    airbyte.plan(ID_A, lasting(60, JobStatus::Succeeded));
    let harness = Harness::start(&config, origin, airbyte.clone()).await;
    let run = harness.engine.trigger_now("slow").await.expect("triggered");

    until(&harness, origin, 4).await;
    assert_eq!(airbyte.calls(Op::Cancel), 0, "cancelled before its timeout");
    until(&harness, origin, 10).await;

    assert_eq!(airbyte.calls(Op::Cancel), 1);
    let jobs = airbyte.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, JobStatus::Cancelled, "{jobs:?}");
    let (_, cancelled_at) = span(&jobs[0]);
    assert!(
        cancelled_at >= at(origin, 5) && cancelled_at <= at(origin, 6),
        "cancelled at {cancelled_at}, the deadline was 5 s"
    );
    let runs = harness.runs().await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].id, run.id);
    assert_eq!(runs[0].status, RunStatus::TimedOut, "{runs:#?}");
    assert_eq!(runs[0].job_id, Some(jobs[0].id));
}

/// A run that timed out is not retried, however many `retries` its connection
/// has: only `failed` runs are.
#[tokio::test(start_paused = true)]
async fn a_timed_out_run_is_not_retried() {
    let origin = origin();
    let config = config(&connection(
        "slow",
        ID_A,
        "0 0 3 * * *",
        "timeout = \"5s\"\nretries = 2\nretry_backoff = \"1s\"",
    ));
    let airbyte = Harness::airbyte(origin);
    airbyte.plan(ID_A, lasting(60, JobStatus::Succeeded));
    let harness = Harness::start(&config, origin, airbyte.clone()).await;
    harness.engine.trigger_now("slow").await.expect("triggered");
    until(&harness, origin, 30).await;

    let runs = harness.runs().await;
    assert_eq!(
        summary(&runs, origin),
        vec![(0, RunStatus::TimedOut)],
        "{runs:#?}"
    );
    assert_eq!(airbyte.jobs().len(), 1);
}

// ---- retries -----------------------------------------------------------------

/// A failing connection with `retries = 3`, `retry_backoff = "10s"` and
/// `retry_backoff_max = "25s"` is retried 10 s, 20 s and 25 s (capped, not 40 s)
/// after each failure, each retry linked to the first run, and not a fourth time.
#[tokio::test(start_paused = true)]
async fn a_failing_connection_is_retried_with_capped_exponential_backoff_until_its_retries_are_spent()
 {
    let origin = origin();
    let config = config(&connection(
        "failing",
        ID_A,
        "0 0 3 * * *",
        "retries = 3\nretry_backoff = \"10s\"\nretry_backoff_max = \"25s\"",
    ));
    let airbyte = Harness::airbyte(origin);
    airbyte.plan(ID_A, lasting(2, JobStatus::Failed));
    let harness = Harness::start(&config, origin, airbyte.clone()).await;
    let first = harness
        .engine
        .trigger_now("failing")
        .await
        .expect("triggered");
    // The runs end near 2, 14, 36 and 63 s; a fourth retry would come by 90 s.
    until(&harness, origin, 150).await;

    let runs = harness.runs().await;
    assert_eq!(runs.len(), 4, "{runs:#?}");
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Failed),
        "{runs:#?}"
    );
    assert_eq!(runs[0].id, first.id);
    let jobs = airbyte.jobs();
    assert_eq!(jobs.len(), 4);
    let mut gaps = Vec::new();
    for pair in runs.windows(2) {
        let (before, retry) = (&pair[0], &pair[1]);
        assert_eq!(retry.trigger, Trigger::Retry);
        assert_eq!(retry.retry_of, Some(first.id));
        let failed_at = before.finished_at.expect("ended");
        gaps.push((retry.scheduled_for - failed_at).num_milliseconds());
        let (started, _) = span(job_of(&jobs, retry));
        assert!(started >= retry.scheduled_for, "{retry:?} started early");
    }
    assert_eq!(gaps, vec![10_000, 20_000, 25_000]);
}

// ---- caps and groups ---------------------------------------------------------

/// Five connections due together under `max_concurrent_syncs = 2`: never more
/// than two jobs run at once, the other runs wait their turn, and all five run.
#[tokio::test(start_paused = true)]
async fn max_concurrent_syncs_caps_the_jobs_running_at_once() {
    let origin = origin();
    let blocks: String = (1..=5)
        .map(|n| connection(&format!("capped-{n}"), &id(n), "0 * * * * *", ""))
        .collect();
    let config = config_with_workers("poll_interval = \"1s\"\nmax_concurrent_syncs = 2", &blocks);
    let airbyte = Harness::airbyte(origin);
    for n in 1..=5 {
        airbyte.plan(&id(n), lasting(5, JobStatus::Succeeded));
    }
    let harness = Harness::start(&config, origin, airbyte.clone()).await;
    until(&harness, origin, 90).await;

    let runs = harness.runs().await;
    assert_eq!(runs.len(), 5, "{runs:#?}");
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Succeeded),
        "{runs:#?}"
    );
    let jobs = airbyte.jobs();
    assert_eq!(jobs.len(), 5);
    assert_eq!(airbyte.max_running(), 2, "{jobs:#?}");
    let at_the_tick = jobs
        .iter()
        .filter(|j| j.created_at == Some(at(origin, 60)))
        .count();
    assert_eq!(at_the_tick, 2, "{jobs:#?}");
    // The runs over the cap waited in the order they were claimed.
    let order: Vec<String> = jobs.iter().map(|j| j.connection_id.clone()).collect();
    assert_eq!(order, (1..=5).map(id).collect::<Vec<_>>());
}

/// A group with `max_concurrent = 1` runs its members one after the other,
/// while connections outside it, due at the same tick and queued behind them,
/// start at once.
#[tokio::test(start_paused = true)]
async fn a_group_limit_runs_its_members_one_at_a_time_while_others_proceed() {
    let origin = origin();
    // The members sort first, so they are ahead of the others in the queue.
    let mut blocks = String::from("[[groups]]\nname = \"warehouse\"\nmax_concurrent = 1\n\n");
    for n in 1..=3 {
        blocks += &connection(
            &format!("a-member-{n}"),
            &id(n),
            "0 * * * * *",
            "group = \"warehouse\"",
        );
    }
    for n in 4..=5 {
        blocks += &connection(&format!("z-outsider-{n}"), &id(n), "0 * * * * *", "");
    }
    let airbyte = Harness::airbyte(origin);
    for n in 1..=5 {
        airbyte.plan(&id(n), lasting(5, JobStatus::Succeeded));
    }
    let harness = Harness::start(&config(&blocks), origin, airbyte.clone()).await;
    until(&harness, origin, 90).await;

    let runs = harness.runs().await;
    let jobs = airbyte.jobs();
    assert_eq!(runs.len(), 5, "{runs:#?}");
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Succeeded),
        "{runs:#?}"
    );
    let mut members: Vec<_> = runs
        .iter()
        .filter(|r| r.connection.starts_with("a-member"))
        .map(|r| span(job_of(&jobs, r)))
        .collect();
    members.sort();
    assert_eq!(members.len(), 3);
    for pair in members.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "group members overlapped: {members:?}"
        );
    }
    for outsider in runs
        .iter()
        .filter(|r| r.connection.starts_with("z-outsider"))
    {
        let (started, _) = span(job_of(&jobs, outsider));
        assert_eq!(started, at(origin, 60), "{} waited", outsider.connection);
    }
    // One member and both outsiders ran together.
    assert_eq!(airbyte.max_running(), 3);
}

// ---- after -------------------------------------------------------------------

/// `up-1` every 10 s (2 s jobs), `up-2` every 20 s (4 s jobs), and `down`
/// after both, with no rule of its own.
fn upstreams_and_dependent() -> (Config, Arc<FakeAirbyte>) {
    let blocks = format!(
        "{}{}[[connections]]\nname = \"down\"\nconnection_id = \"{}\"\nafter = [\"up-1\", \"up-2\"]\n",
        connection("up-1", &id(1), "*/10 * * * * *", ""),
        connection("up-2", &id(2), "*/20 * * * * *", ""),
        id(3),
    );
    let airbyte = Harness::airbyte(origin());
    airbyte.plan(&id(1), lasting(2, JobStatus::Succeeded));
    airbyte.plan(&id(2), lasting(4, JobStatus::Succeeded));
    (config(&blocks), airbyte)
}

/// A connection that runs `after` two others runs once each time both have
/// succeeded since its own last run: after `up-2`'s success at each 20 s (when
/// `up-1` succeeded too), not after each of `up-1`'s, twice as many.
#[tokio::test(start_paused = true)]
async fn a_dependent_connection_runs_once_each_time_all_its_upstreams_succeeded() {
    let origin = origin();
    let (config, airbyte) = upstreams_and_dependent();
    let harness = Harness::start(&config, origin, airbyte).await;
    until(&harness, origin, 70).await;

    let runs = harness.runs().await;
    assert_eq!(ticks(&runs, "up-1", origin), vec![10, 20, 30, 40, 50, 60]);
    let down = of(&runs, "down");
    assert_eq!(down.len(), 3, "{runs:#?}");
    let up_2 = of(&runs, "up-2");
    for (dependent, upstream) in down.iter().zip(&up_2) {
        assert_eq!(dependent.trigger, Trigger::Dependency);
        assert_eq!(dependent.status, RunStatus::Succeeded);
        // Claimed the moment the second of its upstreams' successes was recorded.
        assert_eq!(
            Some(dependent.scheduled_for),
            upstream.finished_at,
            "{runs:#?}"
        );
    }
}

/// A connection that runs `after` two others does not run when one of them
/// failed, even as the other keeps succeeding; it runs again once both have
/// succeeded since its last run.
#[tokio::test(start_paused = true)]
async fn a_dependent_connection_does_not_run_when_one_of_its_upstreams_failed() {
    let origin = origin();
    let (config, airbyte) = upstreams_and_dependent();
    let harness = Harness::start(&config, origin, airbyte.clone()).await;
    until(&harness, origin, 30).await;
    airbyte.plan(&id(2), lasting(4, JobStatus::Failed));
    until(&harness, origin, 50).await;
    airbyte.plan(&id(2), lasting(4, JobStatus::Succeeded));
    until(&harness, origin, 70).await;

    let runs = harness.runs().await;
    let up_2: Vec<RunStatus> = of(&runs, "up-2").iter().map(|r| r.status).collect();
    assert_eq!(
        up_2,
        vec![
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Succeeded
        ]
    );
    let down: Vec<i64> = of(&runs, "down")
        .iter()
        .map(|r| (r.scheduled_for - origin).num_seconds())
        .collect();
    // After the cycles of 20 s and 60 s; none after the one of 40 s.
    assert_eq!(down.len(), 2, "{runs:#?}");
    assert!(
        (20..40).contains(&down[0]) && (60..70).contains(&down[1]),
        "{down:?}"
    );
}

// ---- pause and resume ----------------------------------------------------------

/// Pauses or resumes `pausable` through the engine, or in the history as another
/// process sharing it (`cronbyte pause`) does; whether that changed anything.
async fn set_paused(harness: &Harness, through_the_store: bool, paused: bool) -> bool {
    match (through_the_store, paused) {
        (true, _) => harness
            .store
            .set_paused("pausable", paused)
            .await
            .expect("stored"),
        (false, true) => harness.engine.pause("pausable").await.expect("paused"),
        (false, false) => harness.engine.resume("pausable").await.expect("resumed"),
    }
}

/// A connection on every tenth second (`misfire = "skip"`, so resuming adds no
/// catch-up run) paused at 15 s and resumed at 55 s; the runs at 75 s, and the
/// jobs Airbyte had when it was resumed.
async fn paused_between_15_and_55_s(through_the_store: bool) -> (Vec<Run>, usize) {
    let origin = origin();
    let config = config(&connection(
        "pausable",
        ID_A,
        "*/10 * * * * *",
        "misfire = \"skip\"",
    ));
    let harness = Harness::start(&config, origin, Harness::airbyte(origin)).await;
    until(&harness, origin, 15).await;
    assert!(set_paused(&harness, through_the_store, true).await);
    until(&harness, origin, 55).await;
    let while_paused = harness.runs().await;
    assert_eq!(
        ticks(&while_paused, "pausable", origin),
        vec![10],
        "{while_paused:#?}"
    );
    let jobs_while_paused = harness.airbyte.jobs().len();
    assert!(set_paused(&harness, through_the_store, false).await);
    until(&harness, origin, 75).await;
    (harness.runs().await, jobs_while_paused)
}

/// A connection paused through the engine claims no tick while paused, and its
/// ticks fire again once it is resumed.
#[tokio::test(start_paused = true)]
async fn a_paused_connection_claims_no_ticks_until_it_is_resumed() {
    let (runs, jobs_while_paused) = paused_between_15_and_55_s(false).await;
    assert_eq!(jobs_while_paused, 1);
    assert_eq!(
        ticks(&runs, "pausable", origin()),
        vec![10, 60, 70],
        "{runs:#?}"
    );
}

/// A pause written to the history by another process (as `cronbyte pause`
/// against a shared store) stops the ticks within the refresh, and a resume
/// written there starts them again.
#[tokio::test(start_paused = true)]
async fn a_connection_paused_in_the_store_claims_no_ticks_until_it_is_resumed_there() {
    let (runs, jobs_while_paused) = paused_between_15_and_55_s(true).await;
    assert_eq!(jobs_while_paused, 1);
    assert_eq!(
        ticks(&runs, "pausable", origin()),
        vec![10, 60, 70],
        "{runs:#?}"
    );
}

// ---- reload ------------------------------------------------------------------

/// A reload that swaps one connection for another: the removed one fires no
/// more, the added one fires from its next tick.
#[tokio::test(start_paused = true)]
async fn a_reload_starts_an_added_connection_and_stops_a_removed_one() {
    let origin = origin();
    let before = config(&connection("removed", ID_A, "*/10 * * * * *", ""));
    let after = config(&connection("added", &id(2), "*/10 * * * * *", ""));
    let harness = Harness::start(&before, origin, Harness::airbyte(origin)).await;
    until(&harness, origin, 25).await;
    harness
        .engine
        .reload(crate::config::share(after.connections), after.groups);
    until(&harness, origin, 55).await;

    let runs = harness.runs().await;
    assert_eq!(ticks(&runs, "removed", origin), vec![10, 20], "{runs:#?}");
    assert_eq!(ticks(&runs, "added", origin), vec![30, 40, 50], "{runs:#?}");
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Succeeded),
        "{runs:#?}"
    );
}

// ---- DST -----------------------------------------------------------------------

/// Runs an hourly and a 02:30 rule in Europe/Berlin through the local day
/// `[start, end)` (in UTC) and ten minutes either side, stepping the clock a
/// minute at a time, and gives the ticks claimed within the day, by connection.
/// Every tick must be claimed in the instant it fell, not caught up late.
async fn berlin_day(start: &str, end: &str) -> (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    let start: DateTime<Utc> = start.parse().expect("a time");
    let end: DateTime<Utc> = end.parse().expect("a time");
    let blocks = format!(
        "{}{}",
        connection(
            "hourly",
            ID_A,
            "0 0 * * * *",
            "timezone = \"Europe/Berlin\""
        ),
        connection(
            "daily",
            &id(2),
            "0 30 2 * * *",
            "timezone = \"Europe/Berlin\""
        ),
    );
    // Polls a minute apart: the 1 s jobs end between them, and a day takes fewer turns.
    let config = config_with_workers("poll_interval = \"1m\"", &blocks);
    let origin = start - chrono::Duration::minutes(10);
    let harness = Harness::start(&config, origin, Harness::airbyte(origin)).await;
    // Steps of `advance`, not `sleep`: a sleep lets tokio wake the schedule loop
    // at each of its one-second naps, 86,400 turns a day and seconds of wall
    // time. A step wakes it once, exactly on the minute, where every tick of
    // these rules falls, so it still sees each tick on time.
    while harness.engine.shared.clock.now() < end + chrono::Duration::minutes(10) {
        tokio::time::advance(Duration::from_secs(60)).await;
        settle().await;
    }
    let runs = harness.runs().await;
    assert!(
        runs.iter().all(|r| r.trigger == Trigger::Schedule
            && r.status == RunStatus::Succeeded
            && r.claimed_at == r.scheduled_for),
        "{runs:#?}"
    );
    let within = |name: &str| -> Vec<DateTime<Utc>> {
        of(&runs, name)
            .into_iter()
            .map(|r| r.scheduled_for)
            .filter(|t| (start..end).contains(t))
            .collect()
    };
    (within("hourly"), within("daily"))
}

/// On 2026-03-29 Berlin springs forward (23 hours): an hourly rule fires 23
/// times, on each UTC hour of the day, and a 02:30 rule, whose 02:30 does not
/// exist that day, fires once, at 03:00 CEST (01:00 UTC), as `cron` promises.
#[tokio::test(start_paused = true)]
async fn on_berlin_s_spring_forward_day_an_hourly_rule_fires_23_times_and_a_0230_rule_once() {
    let (hourly, daily) = berlin_day("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z").await;
    let day_start: DateTime<Utc> = "2026-03-28T23:00:00Z".parse().expect("a time");
    let expected: Vec<DateTime<Utc>> = (0..23)
        .map(|h| day_start + chrono::Duration::hours(h))
        .collect();
    assert_eq!(hourly, expected);
    let at_three: DateTime<Utc> = "2026-03-29T01:00:00Z".parse().expect("a time");
    assert_eq!(daily, vec![at_three]);
}

/// On 2026-10-25 Berlin falls back (25 hours): an hourly rule fires 25 times,
/// in both 02:00 hours, and a 02:30 rule fires once, at the first 02:30 (CEST,
/// 00:30 UTC), as `cron` promises.
#[tokio::test(start_paused = true)]
async fn on_berlin_s_fall_back_day_an_hourly_rule_fires_25_times_and_a_0230_rule_once() {
    let (hourly, daily) = berlin_day("2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z").await;
    let day_start: DateTime<Utc> = "2026-10-24T22:00:00Z".parse().expect("a time");
    let expected: Vec<DateTime<Utc>> = (0..25)
        .map(|h| day_start + chrono::Duration::hours(h))
        .collect();
    assert_eq!(hourly, expected);
    let first_0230: DateTime<Utc> = "2026-10-25T00:30:00Z".parse().expect("a time");
    assert_eq!(daily, vec![first_0230]);
}
