//! The engine of a replica: it acts on Airbyte only while its lease holds, and a
//! standby's engine answers reads and refuses writes.

use std::time::SystemTime;

use super::*;

/// A replica whose lease was last renewed now, for 15 s.
fn renewed_now() -> Lease {
    let lease = Lease::standby();
    lease.held(
        7,
        tokio::time::Instant::now(),
        SystemTime::now(),
        Duration::from_secs(15),
    );
    lease
}

/// Frozen past its lease (nothing renews it here), a replica sends no sync: its
/// runs stay pending in the store for the active replica to take up.
#[tokio::test(start_paused = true)]
async fn a_replica_whose_lease_ran_out_asks_airbyte_for_no_sync() {
    let config = config(&connection("every-second", ID_A, "* * * * * *", ""));
    let origin: DateTime<Utc> = "2026-06-01T00:00:00.500Z".parse().expect("a time");
    let airbyte = Harness::airbyte(origin);
    airbyte.plan(
        ID_A,
        Plan {
            lasts: Duration::from_millis(200),
            ..Plan::default()
        },
    );
    let harness = Harness::start_leased(
        &config,
        origin,
        only_instance(airbyte.clone()),
        airbyte,
        Arc::new(MemoryStore::new()),
        renewed_now(),
    )
    .await;
    // 15 s less the margin (a fifth) is 12 s of trust.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let while_held = harness.airbyte.calls(Op::Sync);
    assert!(while_held >= 8, "{while_held} syncs while the lease held");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = harness.airbyte.calls(Op::Sync);
    assert!(
        after <= while_held + 2,
        "{} syncs were asked for after the lease ran out",
        after - while_held
    );
    let pending = harness
        .runs()
        .await
        .iter()
        .filter(|r| r.status == RunStatus::Pending)
        .count();
    assert!(
        pending >= 5,
        "{pending} runs left pending for the next term"
    );
    harness.stop().await;
}

/// A standby's engine lists the connections and their runs but refuses to trigger,
/// pause, resume or cancel, naming the active replica when it knows it.
#[tokio::test(start_paused = true)]
async fn a_standby_engine_answers_reads_and_refuses_writes_naming_the_active_replica() {
    let config = config(&connection("every-second", ID_A, "* * * * * *", ""));
    let origin: DateTime<Utc> = "2026-06-01T00:00:00.500Z".parse().expect("a time");
    let airbyte = Harness::airbyte(origin);
    let lease = Lease::standby();
    lease.lost(Some("node-1-0000abcd".into()));
    let harness = Harness::start_leased(
        &config,
        origin,
        only_instance(airbyte.clone()),
        airbyte,
        Arc::new(MemoryStore::new()),
        lease,
    )
    .await;
    assert!(!harness.engine.is_active());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(harness.airbyte.calls(Op::Sync), 0);
    assert!(harness.runs().await.is_empty(), "a standby claimed a tick");
    let listed = harness.engine.connections().await.expect("connections");
    assert_eq!(listed.len(), 1);
    for refused in [
        harness.engine.trigger_now("every-second").await.map(drop),
        harness.engine.pause("every-second").await.map(drop),
        harness.engine.resume("every-second").await.map(drop),
        harness.engine.cancel(1).await.map(drop),
    ] {
        match refused {
            Err(EngineError::Standby(Some(active))) => assert_eq!(active, "node-1-0000abcd"),
            other => panic!("{other:?}"),
        }
    }
    assert!(harness.engine.stuck_loop(Duration::ZERO).is_none());
    harness.stop().await;
}

/// A replica that takes over counts the ticks that fell in the gap as missed even
/// for a connection that never ran (it has no tick in the history to count from):
/// `run_once` claims the newest of them. Without the gap's start, none is claimed.
#[tokio::test(start_paused = true)]
async fn a_term_catches_up_on_a_never_run_connection_s_tick_that_fell_in_the_gap() {
    let config = config(&connection("tens", ID_A, "*/10 * * * * *", ""));
    let origin: DateTime<Utc> = "2026-06-01T00:00:03.500Z".parse().expect("a time");
    let gap_began = origin - chrono::Duration::seconds(6);
    let mut claimed = Vec::new();
    for missed_since in [Some(gap_began), None] {
        let airbyte = Harness::airbyte(origin);
        let harness = Harness::start_term(
            &config,
            origin,
            only_instance(airbyte.clone()),
            airbyte,
            Arc::new(MemoryStore::new()),
            Lease::sole(),
            missed_since,
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        claimed.push(claimed_ticks(&harness.store).await);
        harness.stop().await;
    }
    let tick: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().expect("a time");
    assert_eq!(claimed, vec![vec![tick], vec![]]);
}
