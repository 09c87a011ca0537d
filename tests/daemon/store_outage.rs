//! The store refusing writes (a full disk, an unwritable file): the engine keeps
//! what it owes in memory, says so, and writes it all once the store works again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cronbyte::airbyte::Client;
use cronbyte::daemon::client_settings;
use cronbyte::emulator::JobPlan;
use cronbyte::engine::{Clock, Engine, EngineParts, only_instance};
use cronbyte::metrics::Metrics;
use cronbyte::notify::Notifier;
use cronbyte::run::*;
use cronbyte::store::*;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// A store whose writes fail while `failing` is set, as a full disk makes them.
struct FlakyStore {
    inner: SqliteStore,
    failing: AtomicBool,
}

impl FlakyStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::Relaxed) {
            Err(StoreError::Query("database or disk is full".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for FlakyStore {
    async fn claim(&self, run: NewRun) -> Result<Option<Run>, StoreError> {
        self.check()?;
        self.inner.claim(run).await
    }
    async fn claim_many(&self, runs: Vec<NewRun>) -> Result<Vec<Option<Run>>, StoreError> {
        self.check()?;
        self.inner.claim_many(runs).await
    }
    async fn mark_started(
        &self,
        run_id: i64,
        job_id: i64,
        at: DateTime<Utc>,
    ) -> Result<Started, StoreError> {
        self.check()?;
        self.inner.mark_started(run_id, job_id, at).await
    }
    async fn request_cancel(&self, run_id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.request_cancel(run_id, at).await
    }
    async fn record_progress(&self, updates: &[(i64, Progress)]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.record_progress(updates).await
    }
    async fn finish(&self, closings: &[Closing]) -> Result<Vec<Closed>, StoreError> {
        self.check()?;
        self.inner.finish(closings).await
    }
    async fn open_runs(&self) -> Result<Vec<Run>, StoreError> {
        self.inner.open_runs().await
    }
    async fn run(&self, run_id: i64) -> Result<Option<Run>, StoreError> {
        self.inner.run(run_id).await
    }
    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Run>, StoreError> {
        self.inner.history(filter).await
    }
    async fn latest_runs(&self) -> Result<Vec<Run>, StoreError> {
        self.inner.latest_runs().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn marks(&self) -> Result<Vec<ConnectionMarks>, StoreError> {
        self.inner.marks().await
    }
    async fn run_with_job(&self, instance: &str, job_id: i64) -> Result<Option<i64>, StoreError> {
        self.inner.run_with_job(instance, job_id).await
    }
    async fn prune(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.prune(before, batch).await
    }
    async fn pruned(&self) -> Result<Option<Pruned>, StoreError> {
        self.inner.pruned().await
    }
    async fn retries_of(&self, first: i64) -> Result<u32, StoreError> {
        self.inner.retries_of(first).await
    }
    async fn set_paused(&self, connection: &str, paused: bool) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.set_paused(connection, paused).await
    }
    async fn paused(&self) -> Result<Vec<String>, StoreError> {
        self.inner.paused().await
    }
    async fn totals(&self) -> Result<Vec<ConnectionTotals>, StoreError> {
        self.inner.totals().await
    }
    async fn ended_since(&self, since: DateTime<Utc>) -> Result<Vec<Ended>, StoreError> {
        self.inner.ended_since(since).await
    }
    async fn record_airbyte_objects(
        &self,
        objects: &[AirbyteObject],
        forget: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.record_airbyte_objects(objects, forget).await
    }
    async fn airbyte_objects(&self) -> Result<Vec<AirbyteObject>, StoreError> {
        self.inner.airbyte_objects().await
    }
}

/// Three seconds of refused writes while syncs fire every second: every job
/// Airbyte ran lands in the history once, with its outcome, once the store works.
#[tokio::test]
async fn writes_refused_by_the_store_are_kept_and_written_once_it_works_again() {
    let harness = Harness::new().await;
    let id = harness.connection(
        "steady",
        JobPlan::succeeding(Duration::from_millis(300), 7, 70),
    );
    let config = harness.config(&connection_toml("steady", id, "* * * * * *"));
    let store = Arc::new(FlakyStore {
        inner: SqliteStore::open(&harness.store_path()).await.unwrap(),
        failing: AtomicBool::new(false),
    });
    let metrics = Arc::new(Metrics::new(Duration::from_secs(3_600)));
    let shutdown = CancellationToken::new();
    let engine = Engine::start(
        EngineParts {
            store: store.clone(),
            instances: only_instance(Arc::new(
                Client::new(client_settings(config.airbyte().unwrap())).unwrap(),
            )),
            metrics: metrics.clone(),
            workers: config.workers.clone(),
            groups: config.groups.clone(),
            connections: cronbyte::config::share(config.connections.clone()),
            clock: Clock::System,
            notifier: Notifier::default(),
            lease: cronbyte::replica::Lease::sole(),
            missed_since: None,
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    harness
        .wait_for(Duration::from_secs(10), "a first run", |runs| {
            runs.iter().any(|r| r.status == RunStatus::Succeeded)
        })
        .await;

    store.failing.store(true, Ordering::Relaxed);
    let outage_began = Utc::now();
    let mut most_owed = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        most_owed = most_owed.max(engine.store_backlog());
    }
    assert!(most_owed > 0, "refused writes are kept");
    assert!(metrics.render().contains("cronbyte_store_errors_total"));
    let errors_line = metrics
        .render()
        .lines()
        .find(|l| l.starts_with("cronbyte_store_errors_total "))
        .map(str::to_owned)
        .unwrap();
    assert_ne!(errors_line, "cronbyte_store_errors_total 0");
    store.failing.store(false, Ordering::Relaxed);
    let outage_ended = Utc::now();

    let control = harness.control();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let runs = harness.runs().await;
        let ended_jobs: Vec<_> = control
            .jobs()
            .into_iter()
            .filter(|j| j.status == "succeeded")
            .collect();
        let by_job: HashMap<i64, Vec<&Run>> = runs.iter().fold(HashMap::new(), |mut m, r| {
            if let Some(job) = r.job_id {
                m.entry(job).or_default().push(r);
            }
            m
        });
        let all_recorded = ended_jobs.iter().all(|j| {
            by_job.get(&j.id).is_some_and(|rs| {
                rs.len() == 1
                    && rs[0].status == RunStatus::Succeeded
                    && rs[0].records_synced == Some(7)
            })
        });
        if all_recorded && engine.store_backlog() == 0 && ended_jobs.len() >= 5 {
            let ticks: std::collections::HashSet<_> =
                runs.iter().map(|r| r.scheduled_for).collect();
            assert_eq!(ticks.len(), runs.len(), "no tick claimed twice");
            let during = runs
                .iter()
                .filter(|r| r.scheduled_for > outage_began && r.scheduled_for < outage_ended)
                .count();
            assert!(
                during >= 2,
                "ticks that fell in the outage were claimed afterwards: {runs:#?}"
            );
            assert!(
                by_job.values().all(|rs| rs.len() == 1),
                "no job recorded twice"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the owed writes were not all written: {runs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    engine.stopped().await;
}

/// Readers in a loop (`cronbyte history` beside the daemon) during a burst of
/// syncs: WAL lets them read while the daemon writes, and no write is lost to
/// SQLite's `busy`.
#[tokio::test]
async fn readers_in_a_loop_during_a_burst_lose_no_write() {
    let harness = Harness::new().await;
    let at = cron_at(soon(START_LEAD));
    let mut toml = String::new();
    for i in 0..30 {
        let name = format!("busy-{i:02}");
        let id = harness.connection(
            &name,
            JobPlan::succeeding(Duration::from_millis(300), 3, 30),
        );
        toml.push_str(&connection_toml(&name, id, &at));
    }
    let daemon = harness.start(harness.config(&toml)).await;
    let path = harness.store_path();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move {
                let mut reads = 0;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
                while tokio::time::Instant::now() < deadline {
                    if let Ok(store) = SqliteStore::open_read_only(&path).await {
                        let filter = HistoryFilter {
                            connection: None,
                            limit: 100,
                        };
                        store
                            .history(&filter)
                            .await
                            .expect("a read beside the writer succeeds");
                        store.close().await;
                        reads += 1;
                    }
                }
                reads
            })
        })
        .collect();
    let runs = harness
        .wait_for(Duration::from_secs(20), "30 succeeded runs", |runs| {
            runs.len() == 30 && runs.iter().all(|r| r.status == RunStatus::Succeeded)
        })
        .await;
    for reader in readers {
        assert!(reader.await.unwrap() > 5, "the readers did read");
    }
    assert!(runs.iter().all(|r| r.records_synced == Some(3)));
    let metrics = daemon.metrics().await;
    assert_eq!(sample(&metrics, "cronbyte_store_errors_total"), Some(0.0));
    daemon.stop().await;
}
