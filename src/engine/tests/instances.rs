//! Several Airbyte instances: each has its own poll loop and its own calls, so one
//! that does not answer delays nothing on another.

use std::collections::BTreeMap;

use chrono::TimeZone;

use super::*;

const ID_EU: &str = "4b5c6d7e-0000-4000-8000-0000000000e1";
const ID_US: &str = "4b5c6d7e-0000-4000-8000-0000000000a1";

/// `orders` on instance `eu` and `billing` on instance `us`, each every minute.
fn two_instances() -> Config {
    let text = format!(
        "[instances.eu]\nbase_url = \"http://127.0.0.1:1/api/v1\"\n\
         [instances.us]\nbase_url = \"http://127.0.0.1:2/api/v1\"\n\
         [workers]\npoll_interval = \"1s\"\n\n{}{}",
        connection("orders", ID_EU, "0 * * * * *", "instance = \"eu\""),
        connection("billing", ID_US, "0 * * * * *", "instance = \"us\""),
    );
    config::from_str(&text, Format::Toml).expect("a valid test config")
}

/// Instance `us` stops answering while its job runs, each call waiting out a 30 s
/// timeout, for ten minutes: every sync on `eu` still starts at its tick and is
/// recorded a poll after its job ends; `us`'s run stays running and is resolved
/// once `us` answers again.
#[tokio::test(start_paused = true)]
async fn an_instance_that_does_not_answer_delays_no_sync_on_another() {
    let origin = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 30).unwrap();
    let eu = Harness::airbyte(origin);
    eu.plan(
        ID_EU,
        Plan {
            lasts: Duration::from_secs(5),
            ..Plan::default()
        },
    );
    let us = Arc::new(
        FakeAirbyte::new(Clock::accelerated(origin, 1))
            .with_request_timeout(Duration::from_secs(30)),
    );
    us.plan(
        ID_US,
        Plan {
            lasts: Duration::from_secs(15 * 60),
            ..Plan::default()
        },
    );
    let instances: BTreeMap<String, Arc<dyn Airbyte>> = BTreeMap::from([
        ("eu".to_owned(), eu.clone() as Arc<dyn Airbyte>),
        ("us".to_owned(), us.clone() as Arc<dyn Airbyte>),
    ]);
    let config = two_instances();
    let harness = Harness::start_on(
        &config,
        origin,
        instances,
        eu.clone(),
        Arc::new(MemoryStore::new()),
    )
    .await;

    // The first tick starts `billing`'s long job; then `us` goes quiet.
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(us.jobs().len(), 1);
    let outage_ends = origin + chrono::Duration::minutes(11);
    for op in [
        Op::Sync,
        Op::ConnectionJobs,
        Op::Listing,
        Op::Running,
        Op::Job,
        Op::Cancel,
        Op::Workspaces,
    ] {
        us.fail(op, Fault::Silent, Lasting::Until(outage_ends));
    }
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    let runs = harness.runs().await;
    let orders: Vec<&Run> = runs.iter().filter(|r| r.connection == "orders").collect();
    assert_eq!(orders.len(), 11, "a run per minute: {orders:#?}");
    for run in &orders {
        assert_eq!(run.instance, "eu");
        assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
        let started = run.started_at.expect("started") - run.scheduled_for;
        assert!(
            started <= chrono::Duration::seconds(1),
            "started late: {run:#?}"
        );
        // The job lasts 5 s; its end is seen at the next poll, a second later.
        let recorded = run.finished_at.expect("finished") - run.scheduled_for;
        assert!(
            recorded <= chrono::Duration::seconds(7),
            "recorded late: {run:#?}"
        );
    }
    assert_eq!(eu.jobs().len(), 11);
    let billing: Vec<&Run> = runs.iter().filter(|r| r.connection == "billing").collect();
    assert_eq!(billing[0].instance, "us");
    assert_eq!(billing[0].status, RunStatus::Running, "{billing:#?}");
    assert!(
        billing
            .iter()
            .all(|r| r.status != RunStatus::Failed && r.status != RunStatus::TriggerFailed),
        "an instance that does not answer fails no sync: {billing:#?}"
    );
    assert_eq!(us.jobs().len(), 1, "no second job while the first runs");

    // Once `us` answers again, its job's end (at 15 minutes) is recorded.
    tokio::time::sleep(Duration::from_secs(6 * 60)).await;
    let runs = harness.runs().await;
    let first = runs
        .iter()
        .find(|r| r.id == billing[0].id)
        .expect("the first billing run");
    assert_eq!(first.status, RunStatus::Succeeded, "{first:#?}");
    assert_eq!(first.job_id, Some(us.jobs()[0].id));
    harness.stop().await;
}

/// A run left running on an instance the config no longer names stays open (its
/// job cannot be asked about) and holds up nothing on the instances that remain.
#[tokio::test(start_paused = true)]
async fn a_run_on_an_instance_the_config_no_longer_names_stays_open() {
    let origin = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 30).unwrap();
    let store = Arc::new(MemoryStore::new());
    let gone = store
        .claim(NewRun {
            connection: "legacy".into(),
            connection_id: ID_US.into(),
            instance: "gone".into(),
            trigger: Trigger::Schedule,
            scheduled_for: origin - chrono::Duration::minutes(5),
            retry_of: None,
            claimed_at: origin - chrono::Duration::minutes(5),
        })
        .await
        .unwrap()
        .expect("claimed");
    store
        .mark_started(gone.id, 7, origin - chrono::Duration::minutes(5))
        .await
        .unwrap();
    let config = config(&connection("orders", ID_A, "0 * * * * *", ""));
    let airbyte = Harness::airbyte(origin);
    let harness = Harness::start_with(&config, origin, airbyte.clone(), store).await;

    tokio::time::sleep(Duration::from_secs(3 * 60)).await;
    let runs = harness.runs().await;
    let legacy = runs.iter().find(|r| r.id == gone.id).expect("the old run");
    assert_eq!(legacy.status, RunStatus::Running, "{legacy:#?}");
    let others: Vec<&Run> = runs.iter().filter(|r| r.id != gone.id).collect();
    assert_eq!(others.len(), 3, "{others:#?}");
    assert!(others.iter().all(|r| r.status == RunStatus::Succeeded));
    harness.stop().await;
}
