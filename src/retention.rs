//! Keeps the history from growing without bound: a task beside the engine deletes
//! finished runs older than `[store] retention`, a small batch at a time.
//!
//! Each batch is one short transaction ([`Store::prune`]), with a pause between
//! batches, so the SQLite writer (one connection, shared with every claim and
//! outcome) is never held for long and the engine's writes slip in between.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::Clock;
use crate::metrics::Metrics;
use crate::store::Store;

/// How the pruner paces itself.
#[derive(Clone, Debug)]
pub struct Pacing {
    /// From start to the first pass: the start (seeding, taking up open runs) goes
    /// first.
    pub first: Duration,
    /// Between passes.
    pub every: Duration,
    /// Runs per batch (a retry chain counts as one).
    pub batch: u32,
    /// Between two batches of one pass, for the engine's writes.
    pub pause: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(60),
            every: Duration::from_secs(3600),
            batch: 1_000,
            pause: Duration::from_millis(200),
        }
    }
}

/// Prunes runs that ended more than `retention` ago (by `clock`), a pass every
/// [`Pacing::every`], until `shutdown`. A store error ends the pass (counted as
/// a store error and logged); the next pass tries again.
pub async fn prune_periodically(
    store: Arc<dyn Store>,
    retention: Duration,
    clock: Clock,
    metrics: Arc<Metrics>,
    pacing: Pacing,
    shutdown: CancellationToken,
) {
    let Ok(retention) = chrono::Duration::from_std(retention) else {
        return;
    };
    let mut wait = pacing.first;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = pacing.every;
        let before = clock.now() - retention;
        let mut deleted = 0u64;
        loop {
            match store.prune(before, pacing.batch).await {
                Ok(0) => break,
                Ok(n) => {
                    deleted += n;
                    metrics.runs_pruned(n);
                }
                Err(e) => {
                    metrics.store_error();
                    tracing::warn!(error = %e, deleted, "pruning old runs failed; trying again next pass");
                    break;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pacing.pause) => {}
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, ended_before = %before, "pruned old runs");
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::run::*;
    use crate::store::{Closing, HistoryFilter, MemoryStore};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("a time")
    }

    /// Runs of ticks `ticks` of `orders` that ended at `ended`.
    async fn history(store: &MemoryStore, ticks: std::ops::Range<i64>, ended: DateTime<Utc>) {
        for i in ticks {
            let run = store
                .claim(NewRun {
                    connection: "orders".into(),
                    connection_id: "8c7f0c34-0000-4000-8000-000000000001".into(),
                    instance: "default".into(),
                    trigger: Trigger::Schedule,
                    scheduled_for: at(i),
                    retry_of: None,
                    claimed_at: at(i),
                })
                .await
                .unwrap()
                .unwrap();
            let outcome = Outcome {
                status: RunStatus::Succeeded,
                finished_at: ended,
                progress: Progress::default(),
                error: None,
            };
            store
                .finish(&[Closing::only(run.id, outcome)])
                .await
                .unwrap();
        }
    }

    async fn left(store: &MemoryStore) -> usize {
        store
            .history(&HistoryFilter {
                connection: None,
                limit: 10_000,
            })
            .await
            .unwrap()
            .len()
    }

    #[tokio::test(start_paused = true)]
    async fn the_pruner_waits_for_the_start_then_deletes_old_runs_in_paced_batches_until_shutdown()
    {
        let store = Arc::new(MemoryStore::new());
        let now = Utc::now();
        history(&store, 0..25, now - chrono::Duration::days(100)).await;
        history(&store, 25..26, now).await;
        let shutdown = CancellationToken::new();
        let metrics = Arc::new(Metrics::new(Duration::from_secs(3600)));
        let pacing = Pacing {
            first: Duration::from_secs(60),
            every: Duration::from_secs(3600),
            batch: 10,
            pause: Duration::from_secs(1),
        };
        let task = tokio::spawn(prune_periodically(
            store.clone(),
            Duration::from_secs(90 * 86_400),
            Clock::System,
            metrics.clone(),
            pacing,
            shutdown.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(left(&store).await, 26, "nothing before the first pass");
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(left(&store).await, 16, "one batch, then a pause");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(left(&store).await, 6);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(left(&store).await, 1, "only the recent run is left");
        assert!(store.pruned().await.unwrap().is_some());
        assert!(
            metrics.render().contains("cronbyte_runs_pruned_total 25"),
            "{}",
            metrics.render()
        );
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the pruner stops on shutdown")
            .unwrap();
    }
}
