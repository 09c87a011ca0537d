//! The engine on tokio's paused clock, with its history and its Airbyte in
//! memory: time moves only when a test says so, so a day of ticks takes
//! milliseconds and races (a reload in the instant a tick falls due) can be set
//! up instant by instant.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{self, Config, Format};
use crate::store::{HistoryFilter, MemoryStore};
use fake::{FakeAirbyte, Fault, Lasting, Op, Plan};

mod instances;
mod live;
mod policies;
mod replicas;

/// A config of these connections; the engine's Airbyte is a [`FakeAirbyte`].
fn config(connections: &str) -> Config {
    config_with_workers("poll_interval = \"1s\"", connections)
}

/// A config with these `[workers]` keys and these connections (and groups).
fn config_with_workers(workers: &str, connections: &str) -> Config {
    let text = format!(
        "[airbyte]\nbase_url = \"http://127.0.0.1:1/api/v1\"\n\
         [workers]\n{workers}\n\n{connections}"
    );
    config::from_str(&text, Format::Toml).expect("a valid test config")
}

/// A connection block with this rule and extra settings.
fn connection(name: &str, id: &str, cron: &str, extra: &str) -> String {
    format!(
        "[[connections]]\nname = \"{name}\"\nconnection_id = \"{id}\"\ncron = \"{cron}\"\n{extra}\n"
    )
}

const ID_A: &str = "4b5c6d7e-0000-4000-8000-000000000001";

/// An engine on a clock that reads `origin` now and moves with tokio's, with
/// its history and its Airbyte in memory.
struct Harness {
    engine: Engine,
    store: Arc<MemoryStore>,
    airbyte: Arc<FakeAirbyte>,
    /// The engine's shutdown token, kept so a test can stop the engine (and
    /// start another on the same store, as a restart does).
    shutdown: CancellationToken,
}

impl Harness {
    /// The fake Airbyte, made before the engine starts so a test can plan it.
    fn airbyte(origin: DateTime<Utc>) -> Arc<FakeAirbyte> {
        Arc::new(FakeAirbyte::new(Clock::accelerated(origin, 1)))
    }

    async fn start(config: &Config, origin: DateTime<Utc>, airbyte: Arc<FakeAirbyte>) -> Self {
        Self::start_with(config, origin, airbyte, Arc::new(MemoryStore::new())).await
    }

    async fn start_with(
        config: &Config,
        origin: DateTime<Utc>,
        airbyte: Arc<FakeAirbyte>,
        store: Arc<MemoryStore>,
    ) -> Self {
        let instances = only_instance(airbyte.clone());
        Self::start_on(config, origin, instances, airbyte, store).await
    }

    /// An engine on these Airbyte instances; `airbyte` is the one the harness
    /// keeps at hand.
    async fn start_on(
        config: &Config,
        origin: DateTime<Utc>,
        instances: std::collections::BTreeMap<String, Arc<dyn Airbyte>>,
        airbyte: Arc<FakeAirbyte>,
        store: Arc<MemoryStore>,
    ) -> Self {
        Self::start_leased(config, origin, instances, airbyte, store, Lease::sole()).await
    }

    /// An engine of a replica that holds `lease` (or, not holding it, a standby's).
    async fn start_leased(
        config: &Config,
        origin: DateTime<Utc>,
        instances: std::collections::BTreeMap<String, Arc<dyn Airbyte>>,
        airbyte: Arc<FakeAirbyte>,
        store: Arc<MemoryStore>,
        lease: Lease,
    ) -> Self {
        Self::start_term(config, origin, instances, airbyte, store, lease, None).await
    }

    /// The engine of a term that counts a never-run connection's ticks as missed
    /// from `missed_since`.
    async fn start_term(
        config: &Config,
        origin: DateTime<Utc>,
        instances: std::collections::BTreeMap<String, Arc<dyn Airbyte>>,
        airbyte: Arc<FakeAirbyte>,
        store: Arc<MemoryStore>,
        lease: Lease,
        missed_since: Option<DateTime<Utc>>,
    ) -> Self {
        let shutdown = CancellationToken::new();
        let engine = Engine::start(
            EngineParts {
                store: store.clone(),
                instances,
                metrics: Arc::new(Metrics::new(Duration::from_secs(3_600))),
                workers: config.workers.clone(),
                groups: config.groups.clone(),
                connections: crate::config::share(config.connections.clone()),
                clock: Clock::accelerated(origin, 1),
                notifier: Notifier::default(),
                lease,
                missed_since,
            },
            shutdown.clone(),
        )
        .await
        .expect("the engine starts");
        Self {
            engine,
            store,
            airbyte,
            shutdown,
        }
    }

    /// Stops the engine as SIGTERM does, and waits until its tasks have ended.
    async fn stop(&self) {
        self.shutdown.cancel();
        self.engine.stopped().await;
    }

    /// Every run in the history, oldest first.
    async fn runs(&self) -> Vec<Run> {
        let mut runs = self
            .store
            .history(&HistoryFilter {
                connection: None,
                limit: 100_000,
            })
            .await
            .expect("history");
        runs.reverse();
        runs
    }
}

/// The instants of every run claimed, newest first.
async fn claimed_ticks(store: &MemoryStore) -> Vec<DateTime<Utc>> {
    store
        .history(&HistoryFilter {
            connection: None,
            limit: 1_000,
        })
        .await
        .expect("history")
        .into_iter()
        .map(|run| run.scheduled_for)
        .collect()
}

/// Lets every task that can run, run, without moving the clock.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// A reload that arrives in the very instant a tick falls due, before the
/// schedule has looked at the clock again, keeps that tick: the schedule is
/// rebuilt from the last instant it fired, not from the reload's now.
#[tokio::test(start_paused = true)]
async fn a_reload_in_the_instant_a_tick_falls_due_keeps_the_tick() {
    let config = config(&connection("every-second", ID_A, "* * * * * *", ""));
    let origin: DateTime<Utc> = "2026-06-01T00:00:00.250Z".parse().expect("a time");
    let Harness { engine, store, .. } =
        Harness::start(&config, origin, Harness::airbyte(origin)).await;
    let mut due = Vec::new();
    for second in 1..=20 {
        // The schedule sleeps until the next second...
        settle().await;
        let at = origin.with_nanosecond(0).expect("a time") + chrono::Duration::seconds(second);
        let now = engine.shared.clock.now();
        tokio::time::advance((at - now).to_std().expect("ahead")).await;
        // ...which has come, and so has a reload, before the schedule runs again.
        engine.reload(
            crate::config::share(config.connections.clone()),
            config.groups.clone(),
        );
        due.push(at);
        settle().await;
    }
    let claimed = claimed_ticks(&store).await;
    let missing: Vec<_> = due.iter().filter(|at| !claimed.contains(at)).collect();
    assert!(missing.is_empty(), "ticks dropped: {missing:?}");
}

/// A reload that disables a connection in the very instant its tick falls due
/// claims that tick no more than a later one: a disabled connection is not
/// scheduled, whichever the schedule sees first.
#[tokio::test(start_paused = true)]
async fn a_reload_that_disables_a_connection_as_its_tick_falls_due_claims_no_tick() {
    let enabled = config(&connection("every-second", ID_A, "* * * * * *", ""));
    let disabled = config(&connection(
        "every-second",
        ID_A,
        "* * * * * *",
        "enabled = false",
    ));
    let origin: DateTime<Utc> = "2026-06-01T00:00:00.250Z".parse().expect("a time");
    let Harness { engine, store, .. } =
        Harness::start(&enabled, origin, Harness::airbyte(origin)).await;
    settle().await;
    let at = origin.with_nanosecond(0).expect("a time") + chrono::Duration::seconds(1);
    let now = engine.shared.clock.now();
    tokio::time::advance((at - now).to_std().expect("ahead")).await;
    engine.reload(
        crate::config::share(disabled.connections.clone()),
        disabled.groups.clone(),
    );
    settle().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let claimed = claimed_ticks(&store).await;
    assert!(
        claimed.is_empty(),
        "ticks claimed after the reload disabled it: {claimed:?}"
    );
}

/// An engine with nothing to do still makes progress in both loops, however
/// long it idles: the watchdog never restarts a healthy daemon.
#[tokio::test(start_paused = true)]
async fn an_idle_engine_is_never_taken_for_a_stuck_one() {
    let config = config(&connection("nightly", ID_A, "0 0 3 * * *", ""));
    let origin: DateTime<Utc> = "2026-06-01T12:00:00Z".parse().expect("a time");
    let Harness { engine, .. } = Harness::start(&config, origin, Harness::airbyte(origin)).await;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(engine.stuck_loop(Duration::from_secs(5)), None);
    }
}

/// A store that stops answering stalls the schedule loop, and the watchdog's
/// check names that loop once a watchdog interval has passed without progress.
#[tokio::test(start_paused = true)]
async fn a_schedule_loop_stalled_on_the_store_is_reported_stuck() {
    let config = config(&connection("every-second", ID_A, "* * * * * *", ""));
    let origin: DateTime<Utc> = "2026-06-01T12:00:00Z".parse().expect("a time");
    let Harness { engine, store, .. } =
        Harness::start(&config, origin, Harness::airbyte(origin)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(engine.stuck_loop(Duration::from_secs(5)), None);
    store.stop_answering();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(engine.stuck_loop(Duration::from_secs(5)), None, "not yet");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(engine.stuck_loop(Duration::from_secs(5)), Some("schedule"));
}

/// A sync request whose answer is lost started a job; while the search for that
/// job fails, the run must not ask Airbyte for another sync: once the first job
/// ends, a new request would start a second job that no run records, and the
/// first would be lost to the history.
#[tokio::test(start_paused = true)]
async fn a_run_never_asks_again_while_the_search_for_its_lost_answers_job_fails() {
    let config = config(&connection("broken", ID_A, "0 0 3 * * *", ""));
    let origin: DateTime<Utc> = "2026-06-01T12:00:00Z".parse().expect("a time");
    let airbyte = Harness::airbyte(origin);
    airbyte.plan(
        ID_A,
        Plan {
            lasts: Duration::from_secs(2),
            ends: crate::airbyte::JobStatus::Failed,
            records: 0,
        },
    );
    airbyte.fail(Op::Sync, Fault::LostAnswer, Lasting::Calls(1));
    let search_back = origin + chrono::Duration::seconds(20);
    airbyte.fail(
        Op::ConnectionJobs,
        Fault::Unavailable,
        Lasting::Until(search_back),
    );
    let harness = Harness::start(&config, origin, airbyte.clone()).await;
    harness
        .engine
        .trigger_now("broken")
        .await
        .expect("triggered");
    tokio::time::sleep(Duration::from_secs(40)).await;

    let jobs = airbyte.jobs();
    let runs = harness.runs().await;
    assert_eq!(
        jobs.len(),
        1,
        "one run, one job in Airbyte: {jobs:?}\nruns: {runs:?}"
    );
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].job_id, Some(jobs[0].id), "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Failed, "{runs:?}");
    assert_eq!(
        harness.airbyte.calls(Op::Sync),
        1,
        "the sync was asked for once"
    );
}

/// A retry and the run of a connection that runs `after` another are written in
/// the very transaction that records the outcome setting them off: when nothing
/// can be written after that outcome (here, claims on their own fail, as after a
/// crash right behind the outcome's write), neither is lost.
#[tokio::test(start_paused = true)]
async fn a_retry_and_a_dependent_run_are_written_with_the_outcome_that_sets_them_off() {
    const ID_B: &str = "4b5c6d7e-0000-4000-8000-000000000002";
    const ID_C: &str = "4b5c6d7e-0000-4000-8000-000000000003";
    let config = config(&format!(
        "{}{}[[connections]]\nname = \"report\"\nconnection_id = \"{ID_C}\"\nafter = [\"orders\"]\n",
        connection(
            "flaky",
            ID_A,
            "0 0 3 * * *",
            "retries = 1\nretry_backoff = \"5s\""
        ),
        connection("orders", ID_B, "0 0 3 * * *", ""),
    ));
    let origin: DateTime<Utc> = "2026-06-01T12:00:00Z".parse().expect("a time");
    let airbyte = Harness::airbyte(origin);
    airbyte.plan(
        ID_A,
        Plan {
            ends: crate::airbyte::JobStatus::Failed,
            ..Plan::default()
        },
    );
    let harness = Harness::start(&config, origin, airbyte.clone()).await;
    harness
        .engine
        .trigger_now("flaky")
        .await
        .expect("triggered");
    harness
        .engine
        .trigger_now("orders")
        .await
        .expect("triggered");
    harness.store.refuse_claims();
    tokio::time::sleep(Duration::from_secs(30)).await;

    let runs: Vec<(String, Trigger, RunStatus)> = harness
        .runs()
        .await
        .into_iter()
        .map(|r| (r.connection, r.trigger, r.status))
        .collect();
    let has = |name: &str, trigger: Trigger| {
        runs.iter()
            .any(|(c, t, s)| c == name && *t == trigger && !s.is_open())
    };
    assert!(has("flaky", Trigger::Retry), "the retry ran: {runs:?}");
    assert!(
        has("report", Trigger::Dependency),
        "the dependent ran: {runs:?}"
    );
    assert_eq!(airbyte.jobs().len(), 4, "{runs:?}");
}

/// A connection that runs `after` two others starts once both succeeded, even
/// when they succeed in different poll rounds while the store refuses to record
/// outcomes: each success counts from the moment Airbyte reports it.
#[tokio::test(start_paused = true)]
async fn a_dependent_starts_after_upstreams_that_succeeded_in_different_rounds_of_a_store_outage() {
    const ID_B: &str = "4b5c6d7e-0000-4000-8000-000000000002";
    const ID_C: &str = "4b5c6d7e-0000-4000-8000-000000000003";
    let config = config(&format!(
        "{}{}[[connections]]\nname = \"report\"\nconnection_id = \"{ID_C}\"\nafter = [\"orders\", \"customers\"]\n",
        connection("orders", ID_A, "0 0 3 * * *", ""),
        connection("customers", ID_B, "0 0 3 * * *", ""),
    ));
    let origin: DateTime<Utc> = "2026-06-01T12:00:00Z".parse().expect("a time");
    let airbyte = Harness::airbyte(origin);
    airbyte.plan(
        ID_B,
        Plan {
            lasts: Duration::from_secs(5),
            ..Plan::default()
        },
    );
    let harness = Harness::start(&config, origin, airbyte.clone()).await;
    harness.store.refuse_outcomes(true);
    harness
        .engine
        .trigger_now("orders")
        .await
        .expect("triggered");
    harness
        .engine
        .trigger_now("customers")
        .await
        .expect("triggered");
    tokio::time::sleep(Duration::from_secs(10)).await;
    harness.store.refuse_outcomes(false);
    tokio::time::sleep(Duration::from_secs(10)).await;

    let runs: Vec<(String, Trigger, RunStatus)> = harness
        .runs()
        .await
        .into_iter()
        .map(|r| (r.connection, r.trigger, r.status))
        .collect();
    let report: Vec<_> = runs.iter().filter(|(c, ..)| c == "report").collect();
    assert!(
        matches!(
            report.as_slice(),
            [(_, Trigger::Dependency, RunStatus::Succeeded)]
        ),
        "one dependent run, once both upstreams' outcomes landed: {runs:?}"
    );
}

/// A 409 for a job no listing of sync jobs shows (a reset runs, say) makes the
/// run ask again a poll interval later, not at once: it must not hammer Airbyte
/// with two requests a turn until its trigger deadline.
#[tokio::test(start_paused = true)]
async fn a_409_for_a_job_no_listing_shows_is_asked_again_a_poll_interval_later() {
    let config = config(&connection("orders", ID_A, "0 0 3 * * *", ""));
    let origin: DateTime<Utc> = "2026-06-01T12:00:00Z".parse().expect("a time");
    let airbyte = Harness::airbyte(origin);
    airbyte.fail(
        Op::Sync,
        Fault::Conflict,
        Lasting::Until(origin + chrono::Duration::seconds(10)),
    );
    let harness = Harness::start(&config, origin, airbyte.clone()).await;
    harness
        .engine
        .trigger_now("orders")
        .await
        .expect("triggered");
    tokio::time::sleep(Duration::from_secs(20)).await;

    let syncs = harness.airbyte.calls(Op::Sync);
    assert!(
        (10..=13).contains(&syncs),
        "{syncs} sync requests in 10 s of 409s at a 1 s poll interval"
    );
    let runs = harness.runs().await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{runs:?}");
}
