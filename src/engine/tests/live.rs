//! The live view of running syncs on tokio's paused clock: counts that move
//! between two looks, the rate, the usual duration and the time left, the
//! gauges, and what it costs in requests to Airbyte.

use crate::airbyte::JobStatus;

use super::*;

const ID_B: &str = "4b5c6d7e-0000-4000-8000-000000000002";

/// Two connections that fire only when triggered, with jobs of 300 s that emit
/// 1,000 records a second; two, so that polls go through the listing.
async fn two_long_syncs() -> (Harness, DateTime<Utc>) {
    let origin: DateTime<Utc> = "2026-06-01T12:00:00Z".parse().expect("a time");
    let yearly = "0 0 0 1 1 *";
    let config = config(&format!(
        "{}{}",
        connection("orders", ID_A, yearly, ""),
        connection("customers", ID_B, yearly, "")
    ));
    let airbyte = Harness::airbyte(origin);
    for id in [ID_A, ID_B] {
        airbyte.plan(
            id,
            Plan {
                lasts: Duration::from_secs(300),
                ends: JobStatus::Succeeded,
                records: 300_000,
            },
        );
    }
    (Harness::start(&config, origin, airbyte).await, origin)
}

async fn trigger_both(harness: &Harness) -> i64 {
    let run = harness.engine.trigger_now("orders").await.expect("a run");
    harness
        .engine
        .trigger_now("customers")
        .await
        .expect("a run");
    run.id
}

fn running_of(connections: &[ConnectionStatus], name: &str) -> Option<crate::engine::LiveSync> {
    connections
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.running.clone())
}

/// A running sync shows records that grow between two looks, its rate over the
/// last minutes, how long it has run, its connection's usual duration and the
/// time it has left; long after its job's `updatedAt` stopped moving, each poll
/// round spends at most one request more on it, for all running jobs at once.
#[tokio::test(start_paused = true)]
async fn a_running_sync_shows_moving_counts_a_rate_and_the_time_left_for_one_request_a_round() {
    let (harness, _) = two_long_syncs().await;
    let engine = &harness.engine;
    // A first sync of each, to learn how long they take.
    trigger_both(&harness).await;
    tokio::time::sleep(Duration::from_secs(310)).await;
    assert!(engine.running_syncs().is_empty());

    let run_id = trigger_both(&harness).await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    let (listings, running, singles) = (
        harness.airbyte.calls(Op::Listing),
        harness.airbyte.calls(Op::Running),
        harness.airbyte.calls(Op::Job),
    );
    let first = running_of(&engine.connections().await.expect("connections"), "orders")
        .expect("orders runs");
    assert_eq!(first.run_id, run_id);
    let records = first.records.expect("counts");
    assert!(
        (117_000..=120_000).contains(&records),
        "two minutes in at 1,000 a second: {first:#?}"
    );
    assert_eq!(first.bytes, Some(records * 100));
    let rate = first.records_per_second.expect("a rate");
    assert!((rate - 1_000.0).abs() < 20.0, "{first:#?}");
    assert!((119..=121).contains(&first.elapsed_seconds), "{first:#?}");
    let usual = first.usual_seconds.expect("the first sync's duration");
    assert!((300..=302).contains(&usual), "{first:#?}");
    let left = first.estimated_seconds_left.expect("an estimate");
    assert!((178..=183).contains(&left), "{first:#?}");
    assert!(!first.overdue);

    // Ten rounds later, the counts moved, through one running-jobs request a round.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let second = engine
        .run_detail(run_id)
        .await
        .expect("the store answers")
        .expect("the run")
        .live
        .expect("live numbers while it runs");
    assert!(
        second.records.expect("counts") >= records + 9_000,
        "{first:#?} then {second:#?}"
    );
    let rounds = harness.airbyte.calls(Op::Listing) - listings;
    assert!((9..=11).contains(&rounds), "a listing each round: {rounds}");
    assert_eq!(
        harness.airbyte.calls(Op::Running) - running,
        rounds,
        "one running-jobs request a round, for both syncs"
    );
    assert_eq!(
        harness.airbyte.calls(Op::Job),
        singles,
        "no job read on its own meanwhile"
    );
    // (The harness places no connection on an instance, so the label is empty here.)
    let metrics = engine.shared.metrics.render();
    let gauge = metrics
        .lines()
        .find(|l| l.starts_with(r#"cronbyte_running_sync_records{connection="orders""#))
        .unwrap_or_else(|| panic!("no gauge for orders: {metrics}"));
    let value: u64 = gauge
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a count");
    assert!(value >= second.records.expect("counts") - 1_000, "{gauge}");

    // Once it ended, the live view and the gauges are gone; the history keeps it.
    tokio::time::sleep(Duration::from_secs(200)).await;
    let detail = engine
        .run_detail(run_id)
        .await
        .expect("store")
        .expect("run");
    assert_eq!(detail.run.status, RunStatus::Succeeded);
    assert!(detail.live.is_none());
    assert_eq!(
        detail.chain.iter().map(|r| r.id).collect::<Vec<_>>(),
        [run_id]
    );
    assert!(engine.running_syncs().is_empty());
    assert!(
        !engine
            .shared
            .metrics
            .render()
            .contains("cronbyte_running_sync_records{")
    );
}

/// A sync that runs past its connection's usual duration says so, with no time left.
#[tokio::test(start_paused = true)]
async fn a_sync_running_past_its_usual_duration_is_overdue() {
    let (harness, _) = two_long_syncs().await;
    trigger_both(&harness).await;
    tokio::time::sleep(Duration::from_secs(310)).await;
    for id in [ID_A, ID_B] {
        harness.airbyte.plan(
            id,
            Plan {
                lasts: Duration::from_secs(900),
                ends: JobStatus::Succeeded,
                records: 900,
            },
        );
    }
    trigger_both(&harness).await;
    tokio::time::sleep(Duration::from_secs(400)).await;
    let live = harness.engine.running_syncs();
    assert_eq!(live.len(), 2);
    for sync in live {
        assert!(sync.overdue, "{sync:#?}");
        assert_eq!(sync.estimated_seconds_left, Some(0));
    }
}

/// An unknown run is no run: the caller says so (the API's 404).
#[tokio::test(start_paused = true)]
async fn an_unknown_run_has_no_detail() {
    let (harness, _) = two_long_syncs().await;
    assert!(
        harness
            .engine
            .run_detail(4_242)
            .await
            .expect("store")
            .is_none()
    );
}
