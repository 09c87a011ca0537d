//! What every [`Store`] promises, written once and run against each backend, so
//! the in-memory store that engine tests use behaves as the SQLite one does (and
//! so will any backend added later).

use std::future::Future;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::*;
use crate::run::*;

fn tick(connection: &str, at: i64) -> NewRun {
    NewRun {
        connection: connection.into(),
        connection_id: "8c7f0c34-0000-4000-8000-000000000001".into(),
        instance: "default".into(),
        trigger: Trigger::Schedule,
        scheduled_for: DateTime::from_timestamp(at, 0).expect("a time"),
        retry_of: None,
        claimed_at: chrono::Utc::now(),
    }
}

fn time(at: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(at, 0).expect("a time")
}

fn ended_as(status: RunStatus, at: i64, records: Option<u64>) -> Outcome {
    Outcome {
        status,
        finished_at: time(at),
        progress: Progress {
            attempts: 1,
            records_synced: records,
            bytes_synced: records.map(|r| r * 10),
        },
        error: (status != RunStatus::Succeeded).then(|| format!("{status}")),
    }
}

async fn claimed(store: &dyn Store, run: NewRun) -> Run {
    store
        .claim(run)
        .await
        .expect("the claim is written")
        .expect("the run is new")
}

/// Claims `connection`'s tick at `at` and ends it with `status` a minute later.
async fn ended(store: &dyn Store, connection: &str, at: i64, status: RunStatus) -> Run {
    let run = claimed(store, tick(connection, at)).await;
    store
        .finish(&[Closing::only(run.id, ended_as(status, at + 60, Some(5)))])
        .await
        .expect("the outcome is written");
    run
}

pub async fn a_tick_is_claimed_once_and_manual_runs_may_share_an_instant(store: &dyn Store) {
    assert!(store.claim(tick("orders", 100)).await.unwrap().is_some());
    assert!(store.claim(tick("orders", 100)).await.unwrap().is_none());
    let mut dependency = tick("orders", 100);
    dependency.trigger = Trigger::Dependency;
    assert!(
        store.claim(dependency).await.unwrap().is_none(),
        "a dependency run and a tick share one instant"
    );
    let mut manual = tick("orders", 100);
    manual.trigger = Trigger::Manual;
    assert!(store.claim(manual.clone()).await.unwrap().is_some());
    assert!(store.claim(manual).await.unwrap().is_some());
    assert!(store.claim(tick("customers", 100)).await.unwrap().is_some());
}

pub async fn claiming_many_keeps_the_order_and_skips_ticks_claimed_before(store: &dyn Store) {
    claimed(store, tick("orders", 101)).await;
    let claimed = store
        .claim_many(vec![
            tick("orders", 100),
            tick("orders", 101),
            tick("customers", 101),
        ])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    assert_eq!(claimed[0].as_ref().unwrap().scheduled_for, time(100));
    assert!(claimed[1].is_none());
    let customers = claimed[2].as_ref().unwrap();
    assert_eq!(customers.connection, "customers");
    assert_eq!(customers.status, RunStatus::Pending);
    assert_eq!(
        store.run(customers.id).await.unwrap().as_ref(),
        Some(customers)
    );
}

pub async fn a_run_moves_from_pending_to_running_to_one_outcome(store: &dyn Store) {
    let run = claimed(store, tick("orders", 100)).await;
    // Progress is for running runs only.
    let early = Progress {
        attempts: 3,
        records_synced: Some(1),
        bytes_synced: Some(1),
    };
    store.record_progress(&[(run.id, early)]).await.unwrap();
    assert_eq!(store.run(run.id).await.unwrap().unwrap().attempts, 0);
    store.mark_started(run.id, 42, time(110)).await.unwrap();
    let progress = Progress {
        attempts: 1,
        records_synced: Some(10),
        bytes_synced: None,
    };
    store.record_progress(&[(run.id, progress)]).await.unwrap();
    let running = store.run(run.id).await.unwrap().unwrap();
    assert_eq!(running.status, RunStatus::Running);
    assert_eq!(running.job_id, Some(42));
    assert_eq!(running.started_at, Some(time(110)));
    assert_eq!(running.records_synced, Some(10));
    assert_eq!(
        store.run_with_job("default", 42).await.unwrap(),
        Some(run.id)
    );
    // Job ids are unique only within an instance: job 42 of another is not this run's.
    assert_eq!(store.run_with_job("eu", 42).await.unwrap(), None);
    assert_eq!(store.open_runs().await.unwrap(), vec![running]);

    let closed = store
        .finish(&[Closing::only(
            run.id,
            ended_as(RunStatus::Succeeded, 200, Some(1_000)),
        )])
        .await
        .unwrap();
    assert_eq!(
        closed,
        vec![Closed {
            run_id: run.id,
            then: Vec::new()
        }]
    );
    let again = store
        .finish(&[Closing::only(
            run.id,
            ended_as(RunStatus::Failed, 300, None),
        )])
        .await
        .unwrap();
    assert!(again.is_empty(), "an outcome is recorded once");
    // Nothing moves a run that ended.
    store.mark_started(run.id, 43, time(310)).await.unwrap();
    let done = store.run(run.id).await.unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.job_id, Some(42));
    assert_eq!(done.finished_at, Some(time(200)));
    assert_eq!(done.records_synced, Some(1_000));
    assert_eq!(done.bytes_synced, Some(10_000));
    assert_eq!(done.attempts, 1);
    assert!(store.open_runs().await.unwrap().is_empty());
}

pub async fn only_a_pending_run_starts_and_a_cancel_asked_meanwhile_is_told(store: &dyn Store) {
    let quiet = claimed(store, tick("orders", 100)).await;
    assert_eq!(
        store.mark_started(quiet.id, 1, time(101)).await.unwrap(),
        Started::Running {
            cancel_requested: false
        }
    );
    assert_eq!(
        store.mark_started(quiet.id, 2, time(102)).await.unwrap(),
        Started::NotPending,
        "a running run does not start again"
    );
    assert_eq!(store.run(quiet.id).await.unwrap().unwrap().job_id, Some(1));

    let cancelled = claimed(store, tick("orders", 200)).await;
    assert!(store.request_cancel(cancelled.id, time(201)).await.unwrap());
    assert!(store.request_cancel(cancelled.id, time(202)).await.unwrap());
    assert_eq!(
        store
            .mark_started(cancelled.id, 3, time(203))
            .await
            .unwrap(),
        Started::Running {
            cancel_requested: true
        }
    );
    let run = store.run(cancelled.id).await.unwrap().unwrap();
    assert_eq!(
        run.cancel_requested_at,
        Some(time(201)),
        "the first request counts"
    );

    store
        .finish(&[Closing::only(
            cancelled.id,
            ended_as(RunStatus::Cancelled, 300, None),
        )])
        .await
        .unwrap();
    assert!(
        !store.request_cancel(cancelled.id, time(301)).await.unwrap(),
        "a run that ended is not cancelled"
    );
    assert_eq!(
        store
            .mark_started(cancelled.id, 4, time(302))
            .await
            .unwrap(),
        Started::NotPending
    );
}

pub async fn history_is_newest_first_filtered_and_limited(store: &dyn Store) {
    for at in 0..5 {
        claimed(store, tick("orders", 100 + at)).await;
        claimed(store, tick("customers", 100 + at)).await;
    }
    let orders = store
        .history(&HistoryFilter {
            connection: Some("orders".into()),
            limit: 3,
        })
        .await
        .unwrap();
    let instants: Vec<_> = orders.iter().map(|r| r.scheduled_for).collect();
    assert_eq!(instants, vec![time(104), time(103), time(102)]);
    let all = store
        .history(&HistoryFilter {
            connection: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    let mut latest = store.latest_runs().await.unwrap();
    latest.sort_by(|a, b| a.connection.cmp(&b.connection));
    let latest: Vec<_> = latest
        .iter()
        .map(|r| (r.connection.as_str(), r.scheduled_for))
        .collect();
    assert_eq!(
        latest,
        vec![("customers", time(104)), ("orders", time(104))]
    );
}

pub async fn marks_keep_the_newest_tick_claim_success_and_the_failure_streak(store: &dyn Store) {
    ended(store, "orders", 100, RunStatus::Succeeded).await;
    ended(store, "orders", 200, RunStatus::Failed).await;
    ended(store, "orders", 300, RunStatus::Skipped).await;
    ended(store, "orders", 400, RunStatus::TimedOut).await;
    let mut manual = tick("billing", 500);
    manual.trigger = Trigger::Manual;
    claimed(store, manual).await;
    let marks = store.marks().await.unwrap();
    let orders = marks.iter().find(|m| m.connection == "orders").unwrap();
    assert_eq!(orders.last_tick, Some(time(400)));
    assert_eq!(orders.last_success, Some(time(160)));
    assert_eq!(orders.failures, 2);
    assert!(orders.last_claimed.is_some());
    let billing = marks.iter().find(|m| m.connection == "billing").unwrap();
    assert_eq!((billing.last_tick, billing.failures), (None, 0));
    ended(store, "orders", 500, RunStatus::Succeeded).await;
    let marks = store.marks().await.unwrap();
    let orders = marks.iter().find(|m| m.connection == "orders").unwrap();
    assert_eq!((orders.failures, orders.last_success), (0, Some(time(560))));
}

pub async fn retries_are_counted_per_first_run(store: &dyn Store) {
    let first = ended(store, "orders", 100, RunStatus::Failed).await;
    for at in [200, 300] {
        let mut retry = tick("orders", at);
        retry.trigger = Trigger::Retry;
        retry.retry_of = Some(first.id);
        claimed(store, retry).await;
    }
    assert_eq!(store.retries_of(first.id).await.unwrap(), 2);
    assert_eq!(store.retries_of(first.id + 100).await.unwrap(), 0);
}

pub async fn pauses_are_remembered_and_reported_once(store: &dyn Store) {
    assert!(store.set_paused("orders", true).await.unwrap());
    assert!(!store.set_paused("orders", true).await.unwrap());
    assert!(store.set_paused("billing", true).await.unwrap());
    assert_eq!(store.paused().await.unwrap(), vec!["billing", "orders"]);
    assert!(store.set_paused("orders", false).await.unwrap());
    assert!(!store.set_paused("orders", false).await.unwrap());
    assert_eq!(store.paused().await.unwrap(), vec!["billing"]);
}

pub async fn totals_and_recent_endings_count_each_ended_run_once(store: &dyn Store) {
    ended(store, "orders", 100, RunStatus::Succeeded).await;
    let empty = claimed(store, tick("orders", 200)).await;
    store
        .finish(&[Closing::only(
            empty.id,
            ended_as(RunStatus::Succeeded, 260, Some(0)),
        )])
        .await
        .unwrap();
    ended(store, "orders", 300, RunStatus::Failed).await;
    ended(store, "billing", 100, RunStatus::Cancelled).await;
    claimed(store, tick("billing", 400)).await;
    let totals = store.totals().await.unwrap();
    let names: Vec<_> = totals.iter().map(|t| t.connection.as_str()).collect();
    assert_eq!(names, vec!["billing", "orders"]);
    let orders = &totals[1];
    let mut by_status = orders.by_status.clone();
    by_status.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(
        by_status,
        vec![(RunStatus::Failed, 1), (RunStatus::Succeeded, 2)]
    );
    assert_eq!(orders.records_synced, 10);
    assert_eq!(orders.bytes_synced, 100);
    assert_eq!(orders.zero_record_successes, 1);
    assert_eq!(totals[0].by_status, vec![(RunStatus::Cancelled, 1)]);

    let recent = store.ended_since(time(260)).await.unwrap();
    let recent: Vec<_> = recent
        .iter()
        .map(|e| (e.connection.as_str(), e.status, e.finished_at))
        .collect();
    assert_eq!(
        recent,
        vec![
            ("orders", RunStatus::Succeeded, time(260)),
            ("orders", RunStatus::Failed, time(360)),
        ]
    );
}

pub async fn airbyte_objects_are_recorded_updated_and_forgotten(store: &dyn Store) {
    let object = |kind: &str, name: &str, id: &str| AirbyteObject {
        instance: "default".into(),
        kind: kind.into(),
        name: name.into(),
        airbyte_id: id.into(),
        updated_at: time(1_700_000_000),
    };
    store
        .record_airbyte_objects(
            &[
                object("source", "pg", "id-1"),
                object("connection", "pg-to-lake", "id-2"),
                // The same name on another instance is another object.
                AirbyteObject {
                    instance: "eu".into(),
                    ..object("source", "pg", "id-eu")
                },
            ],
            &[],
        )
        .await
        .unwrap();
    store
        .record_airbyte_objects(
            &[object("source", "pg", "id-3")],
            &[("default".into(), "connection".into(), "pg-to-lake".into())],
        )
        .await
        .unwrap();
    assert_eq!(
        store.airbyte_objects().await.unwrap(),
        vec![
            object("source", "pg", "id-3"),
            AirbyteObject {
                instance: "eu".into(),
                ..object("source", "pg", "id-eu")
            },
        ]
    );
    store.ping().await.unwrap();
}

pub async fn what_an_outcome_sets_off_is_claimed_with_it_once(store: &dyn Store) {
    let failed = claimed(store, tick("orders", 100)).await;
    let upstream = claimed(store, tick("customers", 100)).await;
    // An instant of `invoices` already claimed: its dependency run there is left out.
    claimed(store, tick("invoices", 200)).await;
    let retry = NewRun {
        trigger: Trigger::Retry,
        scheduled_for: time(260),
        retry_of: Some(failed.id),
        ..tick("orders", 260)
    };
    let dependency = |connection: &str| NewRun {
        trigger: Trigger::Dependency,
        ..tick(connection, 200)
    };
    let closed = store
        .finish(&[
            Closing {
                run_id: failed.id,
                outcome: ended_as(RunStatus::Failed, 200, None),
                then: vec![retry.clone()],
            },
            Closing {
                run_id: upstream.id,
                outcome: ended_as(RunStatus::Succeeded, 200, Some(3)),
                then: vec![dependency("invoices"), dependency("payments")],
            },
        ])
        .await
        .unwrap();
    assert_eq!(closed.len(), 2, "{closed:?}");
    assert_eq!(closed[0].run_id, failed.id);
    let [retried] = closed[0].then.as_slice() else {
        panic!("one retry: {closed:?}");
    };
    assert_eq!(
        (retried.trigger, retried.retry_of, retried.scheduled_for),
        (Trigger::Retry, Some(failed.id), time(260))
    );
    assert_eq!(closed[1].run_id, upstream.id);
    let started: Vec<&str> = closed[1]
        .then
        .iter()
        .map(|r| r.connection.as_str())
        .collect();
    assert_eq!(started, ["payments"], "invoices' instant was taken");
    assert_eq!(store.retries_of(failed.id).await.unwrap(), 1);

    // An outcome that does not land (the run had ended) sets nothing off.
    let again = store
        .finish(&[Closing {
            run_id: failed.id,
            outcome: ended_as(RunStatus::Failed, 300, None),
            then: vec![NewRun {
                scheduled_for: time(360),
                ..retry
            }],
        }])
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(store.retries_of(failed.id).await.unwrap(), 1);
    let open: Vec<i64> = store
        .open_runs()
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        open.len(),
        3,
        "the invoices tick, the retry, the payments run: {open:?}"
    );
}

/// Runs every promise above, each against a store of its own from `fresh`.
/// Ids of every run in the history, oldest first.
async fn ids(store: &dyn Store) -> Vec<i64> {
    let mut ids: Vec<i64> = store
        .history(&HistoryFilter {
            connection: None,
            limit: 1000,
        })
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    ids.sort_unstable();
    ids
}

pub async fn pruning_deletes_old_finished_runs_in_batches_and_keeps_open_and_recent_ones(
    store: &dyn Store,
) {
    let mut old = Vec::new();
    for i in 0..5 {
        old.push(
            ended(store, "orders", 1_000 + i * 100, RunStatus::Succeeded)
                .await
                .id,
        );
    }
    // Claimed long ago and still open: never pruned, however old.
    let open = claimed(store, tick("orders", 500)).await;
    let running = claimed(store, tick("customers", 600)).await;
    store.mark_started(running.id, 7, time(610)).await.unwrap();
    let recent = ended(store, "orders", 10_000, RunStatus::Failed).await;
    assert_eq!(store.pruned().await.unwrap(), None, "nothing pruned yet");

    let cut = time(5_000);
    assert_eq!(store.prune(cut, 2).await.unwrap(), 2, "a batch at a time");
    assert_eq!(store.prune(cut, 2).await.unwrap(), 2);
    assert_eq!(store.prune(cut, 2).await.unwrap(), 1);
    assert_eq!(store.prune(cut, 2).await.unwrap(), 0, "nothing left");
    for id in &old {
        assert_eq!(store.run(*id).await.unwrap(), None);
    }
    assert_eq!(ids(store).await, vec![open.id, running.id, recent.id]);
    assert_eq!(store.open_runs().await.unwrap().len(), 2);
    let pruned = store
        .pruned()
        .await
        .unwrap()
        .expect("the prune is recorded");
    assert_eq!(pruned.before, cut);

    // An earlier cut deletes nothing and does not move the recorded one back.
    assert_eq!(store.prune(time(100), 10).await.unwrap(), 0);
    assert_eq!(store.pruned().await.unwrap().unwrap().before, cut);
    // The newest run of the history is kept however old, so that its id is never
    // handed out again; once a newer one is claimed, it goes.
    assert_eq!(store.prune(time(20_000), 10).await.unwrap(), 0);
    let next = claimed(store, tick("orders", 30_000)).await;
    assert!(next.id > recent.id);
    assert_eq!(store.prune(time(20_000), 10).await.unwrap(), 1);
    assert_eq!(store.pruned().await.unwrap().unwrap().before, time(20_000));
    assert_eq!(ids(store).await, vec![open.id, running.id, next.id]);
}

pub async fn pruning_leaves_marks_and_totals_as_they_were(store: &dyn Store) {
    ended(store, "orders", 1_000, RunStatus::Succeeded).await;
    ended(store, "orders", 2_000, RunStatus::Failed).await;
    ended(store, "orders", 3_000, RunStatus::TimedOut).await;
    ended(store, "customers", 1_500, RunStatus::Succeeded).await;
    let mut manual = tick("customers", 2_500);
    manual.trigger = Trigger::Manual;
    let manual = claimed(store, manual).await;
    store
        .finish(&[Closing::only(
            manual.id,
            ended_as(RunStatus::Succeeded, 2_600, Some(0)),
        )])
        .await
        .unwrap();
    // Open, and the newest: kept.
    let newest = claimed(store, tick("payments", 5_000)).await;
    let marks = store.marks().await.unwrap();
    let totals = store.totals().await.unwrap();

    assert_eq!(store.prune(time(1_000_000), 100).await.unwrap(), 5);
    assert_eq!(ids(store).await, vec![newest.id]);
    assert_eq!(
        store.marks().await.unwrap(),
        marks,
        "marks outlive the runs"
    );
    assert_eq!(
        store.totals().await.unwrap(),
        totals,
        "totals outlive the runs"
    );

    // What the engine derives goes on from there: the streak grows, then ends.
    ended(store, "orders", 4_000, RunStatus::Failed).await;
    let orders = |marks: Vec<ConnectionMarks>| {
        marks
            .into_iter()
            .find(|m| m.connection == "orders")
            .expect("orders has marks")
    };
    let after = orders(store.marks().await.unwrap());
    assert_eq!(after.failures, 3);
    assert_eq!(after.last_tick, Some(time(4_000)));
    assert_eq!(after.last_success, Some(time(1_060)));
}

pub async fn a_retry_chain_is_pruned_whole_once_its_newest_run_is_past_the_cut(store: &dyn Store) {
    // A chain whose first run is old but whose retries go on past the cut.
    let first = ended(store, "orders", 1_000, RunStatus::Failed).await;
    let mut retry = tick("orders", 1_200);
    retry.trigger = Trigger::Retry;
    retry.retry_of = Some(first.id);
    let retry1 = claimed(store, retry.clone()).await;
    store
        .finish(&[Closing::only(
            retry1.id,
            ended_as(RunStatus::Failed, 1_300, None),
        )])
        .await
        .unwrap();
    retry.scheduled_for = time(9_000);
    let retry2 = claimed(store, retry).await;
    // A chain wholly before the cut, and a lone old run.
    let other = ended(store, "customers", 1_000, RunStatus::Failed).await;
    let mut other_retry = tick("customers", 1_100);
    other_retry.trigger = Trigger::Retry;
    other_retry.retry_of = Some(other.id);
    let other_retry = claimed(store, other_retry).await;
    store
        .finish(&[Closing::only(
            other_retry.id,
            ended_as(RunStatus::Succeeded, 1_200, Some(1)),
        )])
        .await
        .unwrap();

    let newest = claimed(store, tick("payments", 20_000)).await;

    // The open chain stays whole, so its retries are still all counted.
    assert_eq!(store.prune(time(5_000), 100).await.unwrap(), 2);
    assert_eq!(
        ids(store).await,
        vec![first.id, retry1.id, retry2.id, newest.id]
    );
    assert_eq!(store.retries_of(first.id).await.unwrap(), 2);

    // Ended, but after the cut: still kept.
    store
        .finish(&[Closing::only(
            retry2.id,
            ended_as(RunStatus::Succeeded, 9_100, Some(1)),
        )])
        .await
        .unwrap();
    assert_eq!(store.prune(time(5_000), 100).await.unwrap(), 0);
    assert_eq!(store.retries_of(first.id).await.unwrap(), 2);
    // Once its newest run is past the cut, the chain goes whole, in one batch of one.
    assert_eq!(store.prune(time(10_000), 1).await.unwrap(), 3);
    assert_eq!(ids(store).await, vec![newest.id]);
    assert_eq!(store.retries_of(first.id).await.unwrap(), 0);
}

pub async fn holds_for<S, F, Fut>(fresh: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    a_tick_is_claimed_once_and_manual_runs_may_share_an_instant(&fresh().await).await;
    claiming_many_keeps_the_order_and_skips_ticks_claimed_before(&fresh().await).await;
    a_run_moves_from_pending_to_running_to_one_outcome(&fresh().await).await;
    what_an_outcome_sets_off_is_claimed_with_it_once(&fresh().await).await;
    only_a_pending_run_starts_and_a_cancel_asked_meanwhile_is_told(&fresh().await).await;
    history_is_newest_first_filtered_and_limited(&fresh().await).await;
    marks_keep_the_newest_tick_claim_success_and_the_failure_streak(&fresh().await).await;
    retries_are_counted_per_first_run(&fresh().await).await;
    pauses_are_remembered_and_reported_once(&fresh().await).await;
    totals_and_recent_endings_count_each_ended_run_once(&fresh().await).await;
    airbyte_objects_are_recorded_updated_and_forgotten(&fresh().await).await;
    pruning_deletes_old_finished_runs_in_batches_and_keeps_open_and_recent_ones(&fresh().await)
        .await;
    pruning_leaves_marks_and_totals_as_they_were(&fresh().await).await;
    a_retry_chain_is_pruned_whole_once_its_newest_run_is_past_the_cut(&fresh().await).await;
}

#[tokio::test]
async fn the_in_memory_store_keeps_every_promise() {
    holds_for(|| async { MemoryStore::new() }).await;
}

#[tokio::test]
async fn the_sqlite_store_keeps_every_promise() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let next = std::sync::atomic::AtomicUsize::new(0);
    holds_for(|| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("history-{n}.db"));
        async move { SqliteStore::open(&path).await.expect("the store opens") }
    })
    .await;
}

/// The PostgreSQL server the tests use, from `CRONBYTE_TEST_POSTGRES_URL`; without
/// it they say loudly that they did not run. `.ci/run` always sets it.
pub fn postgres_url() -> Option<String> {
    let url = std::env::var("CRONBYTE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        // Straight to stderr: the test harness captures `eprintln!` of passing tests,
        // and this must be seen.
        use std::io::Write;
        let _ = std::io::stderr().write_all(
            b"\n*** PostgreSQL tests did NOT run: set CRONBYTE_TEST_POSTGRES_URL \
              (e.g. postgres://postgres@127.0.0.1:5432/test) to run them ***\n",
        );
    }
    url
}

/// A store in a schema of its own on `url`'s database, migrated, and the schema's
/// name (to drop once the test is over).
pub async fn postgres_store(url: &str) -> (PgStore, String) {
    let schema = format!("cronbyte_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(url)
        .await
        .expect("the test PostgreSQL answers at CRONBYTE_TEST_POSTGRES_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("a schema is created");
    admin.close().await;
    let store = in_schema(url, &schema).await;
    store.migrate().await.expect("the migrations apply");
    (store, schema)
}

/// A store on `url`'s database that reads and writes in `schema`.
async fn in_schema(url: &str, schema: &str) -> PgStore {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(url)
        .expect("a PostgreSQL URL")
        .options([("search_path", schema)]);
    PgStore::with_options(options, redacted(url))
        .await
        .expect("the store connects")
}

/// Drops the schemas the tests made.
pub async fn drop_schemas(url: &str, schemas: &[String]) {
    let admin = sqlx::PgPool::connect(url)
        .await
        .expect("PostgreSQL answers");
    for schema in schemas {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&admin)
        .await
        .expect("the schema is dropped");
    }
    admin.close().await;
}

/// A fresh schema on the test server that tests share between stores, as replicas
/// share a database; [`SharedSchema::tear_down`] closes the stores and drops it.
struct SharedSchema {
    url: String,
    schema: String,
}

/// Two stores on one fresh, migrated schema: two replicas of one database. `None`
/// (said loudly) without a test server.
async fn two_replicas() -> Option<(PgStore, PgStore, SharedSchema)> {
    let url = postgres_url()?;
    let (a, schema) = postgres_store(&url).await;
    let b = in_schema(&url, &schema).await;
    Some((a, b, SharedSchema { url, schema }))
}

impl SharedSchema {
    /// Closes `stores` and drops the schema.
    async fn tear_down(self, stores: impl IntoIterator<Item = PgStore>) {
        for store in stores {
            store.close().await;
        }
        drop_schemas(&self.url, &[self.schema]).await;
    }
}

#[tokio::test]
async fn the_postgres_store_keeps_every_promise() {
    let Some(url) = postgres_url() else {
        return;
    };
    let schemas = std::sync::Mutex::new(Vec::new());
    holds_for(|| async {
        let (store, schema) = postgres_store(&url).await;
        schemas.lock().unwrap().push(schema);
        store
    })
    .await;
    drop_schemas(&url, &schemas.into_inner().unwrap()).await;
}

/// Two processes on one database claim the same hundred ticks at once: each tick
/// is claimed by exactly one of them.
#[tokio::test]
async fn two_postgres_stores_on_one_database_claim_each_tick_once() {
    let Some((first, second, db)) = two_replicas().await else {
        return;
    };
    let ticks = || {
        (0..100)
            .map(|i| tick("orders", 1_000 + i))
            .collect::<Vec<_>>()
    };
    let (a, b) = tokio::join!(first.claim_many(ticks()), second.claim_many(ticks()));
    let (a, b) = (a.unwrap(), b.unwrap());
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert!(
            a.is_some() != b.is_some(),
            "tick {i} claimed by {} stores",
            usize::from(a.is_some()) + usize::from(b.is_some())
        );
    }
    assert_eq!(first.open_runs().await.unwrap().len(), 100);
    db.tear_down([first, second]).await;
}

/// Ends the lease now, as if its holder had stopped renewing it long enough ago.
async fn expire_lease(url: &str, schema: &str) {
    let admin = sqlx::PgPool::connect(url)
        .await
        .expect("PostgreSQL answers");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {schema}.lease SET expires_at = now() - interval '1 second'"
    )))
    .execute(&admin)
    .await
    .expect("the lease is expired");
    admin.close().await;
}

const LEASE: std::time::Duration = std::time::Duration::from_secs(15);

fn is_fenced(result: Result<impl std::fmt::Debug, StoreError>) -> bool {
    matches!(result, Err(StoreError::Fenced { .. }))
}

/// One replica holds the lease; the other's writes are refused until it takes the
/// lease over, after which the first one's are.
#[tokio::test]
async fn one_replica_holds_the_lease_and_only_the_holder_writes() {
    let Some((a, b, db)) = two_replicas().await else {
        return;
    };

    let first = a
        .take_lease("a", LEASE)
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert_eq!(b.take_lease("b", LEASE).await.unwrap(), None);
    assert!(a.claim(tick("orders", 1_000)).await.unwrap().is_some());
    assert!(is_fenced(b.claim(tick("orders", 2_000)).await));
    assert!(is_fenced(b.set_paused("orders", true).await));
    assert!(a.renew_lease("a", first, LEASE).await.unwrap());

    expire_lease(&db.url, &db.schema).await;
    let second = b
        .take_lease("b", LEASE)
        .await
        .unwrap()
        .expect("an expired lease is taken");
    assert!(second > first, "epochs grow: {first} then {second}");
    let refused = a.claim(tick("orders", 3_000)).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::Fenced { mine: Some(m), current } if m == first && current == second),
        "{refused:?}"
    );
    assert!(!a.renew_lease("a", first, LEASE).await.unwrap());
    assert!(b.claim(tick("orders", 3_000)).await.unwrap().is_some());
    // A command that never asks for the lease (apply, migrate) is not fenced.
    let command = in_schema(&db.url, &db.schema).await;
    assert!(command.set_paused("orders", true).await.unwrap());

    db.tear_down([a, b, command]).await;
}

/// A replica frozen in the middle of a write holds the lease row's share lock; the
/// server ends its idle transaction after the hold the daemon sets (the lease less a
/// renewal interval), so a standby's take-over waits that long at most, not until the
/// frozen replica wakes.
#[tokio::test]
async fn a_replica_frozen_mid_write_does_not_keep_a_standby_from_taking_over() {
    let Some(url) = postgres_url() else {
        return;
    };
    let (setup, schema) = postgres_store(&url).await;
    setup.close().await;
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(&url)
        .expect("a PostgreSQL URL")
        .options([
            ("search_path", schema.as_str()),
            ("idle_in_transaction_session_timeout", "300"),
        ]);
    let frozen = PgStore::with_options(options, redacted(&url))
        .await
        .expect("the store connects");
    let standby = in_schema(&url, &schema).await;
    frozen.take_lease("a", LEASE).await.unwrap().expect("taken");
    // A write begun and never finished, as SIGSTOP leaves it.
    let mut stuck = frozen.pool().begin().await.expect("a transaction");
    sqlx::query("SELECT epoch FROM lease WHERE id = 1 FOR SHARE")
        .fetch_one(&mut *stuck)
        .await
        .expect("the share lock is taken");
    expire_lease(&url, &schema).await;
    let taken = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        standby.take_lease("b", LEASE),
    )
    .await
    .expect("the take-over did not wait for the frozen replica")
    .unwrap();
    assert!(taken.is_some());
    drop(stuck);
    frozen.close().await;
    standby.close().await;
    drop_schemas(&url, &[schema]).await;
}

/// A replica that stops cleanly lets the lease go at once, and the next one takes
/// it without waiting for it to expire.
#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let Some((a, b, db)) = two_replicas().await else {
        return;
    };
    let epoch = a.take_lease("a", LEASE).await.unwrap().expect("taken");
    assert_eq!(b.take_lease("b", LEASE).await.unwrap(), None);
    a.release_lease("a", epoch).await.unwrap();
    assert!(is_fenced(a.claim(tick("orders", 1_000)).await));
    assert!(b.take_lease("b", LEASE).await.unwrap().is_some());
    // A release by a replica whose term was taken over changes nothing.
    a.release_lease("a", epoch).await.unwrap();
    assert!(b.claim(tick("orders", 1_000)).await.unwrap().is_some());
    db.tear_down([a, b]).await;
}

/// Writes racing a take-over: every write the old holder was told had landed is
/// seen by the new holder's first read, because the take-over waits for writes
/// that hold the lease row's share lock, and later writes are refused.
#[tokio::test]
async fn every_write_the_old_holder_saw_land_is_read_by_the_new_holder() {
    let Some((a, b, db)) = two_replicas().await else {
        return;
    };
    a.take_lease("a", LEASE).await.unwrap().expect("taken");
    let writer = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut landed = Vec::new();
            for i in 0..10_000 {
                match a.claim(tick("orders", 1_000 + i)).await {
                    Ok(Some(run)) => landed.push(run.id),
                    Ok(None) => panic!("tick {i} was claimed before"),
                    Err(StoreError::Fenced { .. }) => return landed,
                    Err(e) => panic!("{e}"),
                }
            }
            panic!("the writer was never fenced");
        })
    };
    // Let some writes land first.
    while a.open_runs().await.unwrap().len() < 20 {
        tokio::task::yield_now().await;
    }
    expire_lease(&db.url, &db.schema).await;
    b.take_lease("b", LEASE).await.unwrap().expect("taken over");
    let seen: std::collections::HashSet<i64> =
        b.open_runs().await.unwrap().iter().map(|r| r.id).collect();
    let landed = writer.await.unwrap();
    assert!(landed.len() >= 20, "{} writes landed", landed.len());
    let missed: Vec<_> = landed.iter().filter(|id| !seen.contains(id)).collect();
    assert!(
        missed.is_empty(),
        "landed but not seen by the new holder: {missed:?}"
    );
    db.tear_down([a, b]).await;
}

/// Replicas say they are alive; the listing names each once, marks the holder, and
/// forgets one that left.
#[tokio::test]
async fn replicas_are_listed_with_the_active_one_marked() {
    let Some((a, b, db)) = two_replicas().await else {
        return;
    };
    let record = |id: &str, hash: &str| ReplicaRecord {
        id: id.into(),
        host: "host-1".into(),
        settings_hash: hash.into(),
    };
    a.take_lease("a", LEASE).await.unwrap().expect("taken");
    a.replicas(&record("a", "h1"), LEASE).await.unwrap();
    let seen = b.replicas(&record("b", "h2"), LEASE).await.unwrap();
    let brief: Vec<(&str, &str, bool)> = seen
        .iter()
        .map(|r| (r.id.as_str(), r.settings_hash.as_str(), r.active))
        .collect();
    assert_eq!(brief, vec![("a", "h1", true), ("b", "h2", false)]);
    a.leave("a").await.unwrap();
    let seen = b.replicas(&record("b", "h2"), LEASE).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].id, "b");
    db.tear_down([a, b]).await;
}

/// A server that is not there and a wrong password: errors that name `store.url`
/// and never the password.
#[tokio::test]
async fn a_postgres_store_that_cannot_be_reached_is_named_without_its_password() {
    let Some(url) = postgres_url() else {
        return;
    };
    let unreachable = SecretString::from("postgres://cronbyte:Hunter2-pw@127.0.0.1:1/history");
    let err = PgStore::open(&unreachable).await.unwrap_err().to_string();
    assert!(err.contains("store.url"), "{err}");
    assert!(!err.contains("Hunter2-pw"), "{err}");

    // Trust authentication takes any password, so a user that does not exist stands in
    // for credentials the server refuses.
    let mut refused = reqwest::Url::parse(&url).expect("a URL");
    refused.set_username("no_such_role_x").expect("a user");
    refused
        .set_password(Some("Hunter2-pw"))
        .expect("a password");
    let err = PgStore::open(&SecretString::from(refused.to_string()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("store.url"), "{err}");
    assert!(!err.contains("Hunter2-pw"), "{err}");
}

/// `sslmode` is honoured through rustls: `require` gives an encrypted connection,
/// and `verify-full` refuses a server whose certificate it cannot verify (here the
/// self-signed certificate Debian's PostgreSQL ships), naming `store.url` and not the
/// password.
#[tokio::test]
async fn sslmode_require_encrypts_and_verify_full_refuses_an_unverifiable_server() {
    let Some(url) = postgres_url() else {
        return;
    };
    let admin = sqlx::PgPool::connect(&url)
        .await
        .expect("PostgreSQL answers");
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&admin)
        .await
        .expect("SHOW ssl");
    admin.close().await;
    if ssl != "on" {
        use std::io::Write;
        let _ = std::io::stderr()
            .write_all(b"\n*** the TLS test did NOT run: the test PostgreSQL has ssl = off ***\n");
        return;
    }
    let with_mode = |mode: &str| {
        let mut u = reqwest::Url::parse(&url).expect("a URL");
        u.set_password(Some("Hunter2-pw")).expect("a password");
        u.query_pairs_mut().append_pair("sslmode", mode);
        SecretString::from(u.to_string())
    };
    let store = PgStore::connect(&with_mode("require"))
        .await
        .expect("sslmode=require connects");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .expect("pg_stat_ssl reads");
    store.close().await;
    assert!(encrypted, "sslmode=require gave an unencrypted connection");

    let err = PgStore::connect(&with_mode("verify-full"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("store.url"), "{err}");
    assert!(!err.contains("Hunter2-pw"), "{err}");
}

/// A database migrated by a newer cronbyte (a migration this build does not know) is
/// refused at start with a message that says so, and nothing is written to it.
#[tokio::test]
async fn a_postgres_store_with_a_newer_schema_is_refused() {
    let Some(url) = postgres_url() else {
        return;
    };
    let (store, schema) = postgres_store(&url).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (29991231000001, 'from a newer cronbyte', true, '\\x00', 1)",
    )
    .execute(store.pool())
    .await
    .expect("a migration of the future is recorded");
    let runs_before = store.open_runs().await.unwrap().len();
    store.close().await;
    let again = in_schema(&url, &schema).await;
    let err = again.migrate().await.unwrap_err().to_string();
    assert!(err.contains("29991231000001"), "{err}");
    assert!(
        err.contains("store.url") && err.contains("newer cronbyte"),
        "{err}"
    );
    assert_eq!(again.open_runs().await.unwrap().len(), runs_before);
    again.close().await;
    drop_schemas(&url, &[schema]).await;
}

/// A pruned SQLite history copied into PostgreSQL keeps the marks, totals and
/// prune SQLite kept, not what its remaining runs add up to.
#[tokio::test]
async fn a_pruned_sqlite_history_copied_into_postgres_keeps_its_marks_totals_and_prune() {
    let Some(url) = postgres_url() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite = SqliteStore::open(&dir.path().join("history.db"))
        .await
        .expect("the store opens");
    ended(&sqlite, "orders", 100, RunStatus::Succeeded).await;
    ended(&sqlite, "orders", 200, RunStatus::Failed).await;
    ended(&sqlite, "customers", 100, RunStatus::Succeeded).await;
    ended(&sqlite, "orders", 10_000, RunStatus::Failed).await;
    assert_eq!(sqlite.prune(time(5_000), 10).await.unwrap(), 3);

    let (postgres, schema) = postgres_store(&url).await;
    postgres.copy_from_sqlite(&sqlite).await.expect("copied");
    assert_eq!(
        postgres.marks().await.unwrap(),
        sqlite.marks().await.unwrap()
    );
    assert_eq!(
        postgres.totals().await.unwrap(),
        sqlite.totals().await.unwrap()
    );
    assert_eq!(
        postgres.pruned().await.unwrap(),
        sqlite.pruned().await.unwrap()
    );
    assert_eq!(postgres.marks().await.unwrap().len(), 2, "customers too");
    postgres.close().await;
    sqlite.close().await;
    drop_schemas(&url, &[schema]).await;
}

/// A SQLite history copied into an empty PostgreSQL store reads back the same:
/// every run with its id and links, the marks and totals, pauses and objects; a
/// second copy is refused, and new runs continue after the copied ids.
#[tokio::test]
async fn a_sqlite_history_copied_into_postgres_reads_back_the_same() {
    let Some(url) = postgres_url() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite = SqliteStore::open(&dir.path().join("history.db"))
        .await
        .expect("the store opens");
    let failed = claimed(&sqlite, tick("orders", 100)).await;
    let retry = NewRun {
        trigger: Trigger::Retry,
        retry_of: Some(failed.id),
        ..tick("orders", 160)
    };
    sqlite
        .finish(&[Closing {
            run_id: failed.id,
            outcome: ended_as(RunStatus::Failed, 150, None),
            then: vec![retry],
        }])
        .await
        .unwrap();
    let ok = claimed(&sqlite, tick("customers", 100)).await;
    sqlite.mark_started(ok.id, 7, time(110)).await.unwrap();
    sqlite
        .finish(&[Closing::only(
            ok.id,
            ended_as(RunStatus::Succeeded, 170, Some(12)),
        )])
        .await
        .unwrap();
    claimed(&sqlite, tick("customers", 200)).await;
    sqlite.set_paused("orders", true).await.unwrap();
    sqlite
        .record_airbyte_objects(
            &[AirbyteObject {
                instance: "eu".into(),
                kind: "source".into(),
                name: "pg".into(),
                airbyte_id: "id-1".into(),
                updated_at: time(1_700_000_000),
            }],
            &[],
        )
        .await
        .unwrap();

    let (postgres, schema) = postgres_store(&url).await;
    let copied = postgres.copy_from_sqlite(&sqlite).await.expect("copied");
    assert_eq!(
        copied,
        Copied {
            runs: 4,
            pauses: 1,
            airbyte_objects: 1
        }
    );
    let all = HistoryFilter {
        connection: None,
        limit: 100,
    };
    assert_eq!(
        postgres.history(&all).await.unwrap(),
        sqlite.history(&all).await.unwrap()
    );
    assert_eq!(
        postgres.marks().await.unwrap(),
        sqlite.marks().await.unwrap()
    );
    assert_eq!(
        postgres.totals().await.unwrap(),
        sqlite.totals().await.unwrap()
    );
    assert_eq!(postgres.paused().await.unwrap(), vec!["orders".to_owned()]);
    assert_eq!(
        postgres.airbyte_objects().await.unwrap(),
        sqlite.airbyte_objects().await.unwrap()
    );
    assert_eq!(postgres.retries_of(failed.id).await.unwrap(), 1);

    let again = postgres.copy_from_sqlite(&sqlite).await.unwrap_err();
    assert!(again.to_string().contains("empty store only"), "{again}");
    let next = claimed(&postgres, tick("invoices", 300)).await;
    assert_eq!(next.id, 5, "new runs continue after the copied ids");
    // The triggers that keep the marks work again once the copy is done.
    let marks = postgres.marks().await.unwrap();
    assert!(
        marks
            .iter()
            .any(|m| m.connection == "invoices" && m.last_tick == Some(time(300))),
        "{marks:?}"
    );

    sqlite.close().await;
    postgres.close().await;
    drop_schemas(&url, &[schema]).await;
}
