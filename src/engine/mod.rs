//! The engine: cron ticks become claimed runs, runs become Airbyte syncs, and
//! syncs are followed until they end. It knows neither SQL nor URLs: it speaks to
//! the history through [`Store`] and to Airbyte through [`Client`].
//!
//! A run's path is a straight line through the submodules: [`schedule`] decides
//! when and claims the run, [`dispatch`] waits for a slot and triggers the sync,
//! [`tracker`] polls the job to its end and records the outcome.

mod dispatch;
mod schedule;
mod tracker;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::airbyte::Client;
use crate::config::{ConnectionSettings, WorkerSettings};
use crate::metrics::Metrics;
use crate::store::{Outcome, Progress, Run, RunStatus, Store, StoreError};

pub use dispatch::Queue;
pub use tracker::Tracked;

/// How long in-flight work may go on after shutdown is asked for. Airbyte jobs
/// themselves run on; the next start takes them up again from the history.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the engine is given to work with.
pub struct EngineParts {
    pub store: Arc<dyn Store>,
    pub airbyte: Client,
    pub metrics: Arc<Metrics>,
    pub workers: WorkerSettings,
    pub connections: Vec<ConnectionSettings>,
}

/// The running engine. Cheap to clone; every clone drives the same engine.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    store: Arc<dyn Store>,
    airbyte: Client,
    metrics: Arc<Metrics>,
    workers: WorkerSettings,
    connections: HashMap<String, Arc<ConnectionSettings>>,
    /// Ordered as configured, for the schedule.
    ordered: Vec<Arc<ConnectionSettings>>,
    queue: Mutex<Queue>,
    tracked: Mutex<HashMap<i64, Tracked>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Runs claimed before this instant were claimed by an earlier process.
    started_at: DateTime<Utc>,
    /// Whether polls may use one listing of changed jobs; off once Airbyte refuses it.
    batch_polls: AtomicBool,
    /// The workspaces a listing of changed jobs covers, asked of Airbyte once.
    workspaces: tokio::sync::OnceCell<Vec<String>>,
}

impl Engine {
    /// Takes up the runs the history says are open, then starts the schedule and
    /// the tracker. Returns once both run; `shutdown` stops them.
    pub async fn start(parts: EngineParts, shutdown: CancellationToken) -> Result<Self, EngineError> {
        let ordered: Vec<Arc<ConnectionSettings>> =
            parts.connections.into_iter().map(Arc::new).collect();
        let connections = ordered
            .iter()
            .map(|c| (c.name.clone(), Arc::clone(c)))
            .collect();
        let shared = Arc::new(Shared {
            store: parts.store,
            airbyte: parts.airbyte,
            metrics: parts.metrics,
            workers: parts.workers,
            connections,
            ordered,
            queue: Mutex::new(Queue::default()),
            tracked: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            shutdown,
            started_at: Utc::now(),
            batch_polls: AtomicBool::new(true),
            workspaces: tokio::sync::OnceCell::new(),
        });
        shared.take_up_open_runs().await?;
        let last_ticks = shared.store.last_ticks().await?;
        shared
            .tasks
            .spawn(schedule::run(Arc::clone(&shared), last_ticks));
        shared.tasks.spawn(tracker::run(Arc::clone(&shared)));
        Ok(Self { shared })
    }

    /// Waits until every engine task has stopped after shutdown, at most the
    /// grace period plus a margin.
    pub async fn stopped(&self) {
        self.shared.tasks.close();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE * 2, self.shared.tasks.wait()).await;
    }

    /// Runs open right now (claimed or running).
    pub fn in_flight(&self) -> usize {
        self.shared.lock_queue().in_flight
    }
}

impl Shared {
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_tracked(&self) -> MutexGuard<'_, HashMap<i64, Tracked>> {
        self.tracked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// At start, every run the history holds open is followed again: a running
    /// one by its job id, a pending one by looking for the job it may have
    /// started before the daemon stopped, else by triggering it now.
    async fn take_up_open_runs(self: &Arc<Self>) -> Result<(), StoreError> {
        let open = self.store.open_runs().await?;
        if !open.is_empty() {
            tracing::info!(runs = open.len(), "taking up runs left open by the last stop");
        }
        for run in open {
            match run.job_id {
                Some(job_id) => self.follow(run, job_id, None),
                None => self.enqueue(run),
            }
        }
        Ok(())
    }

    /// Closes a run with its outcome in the history and counts it.
    async fn close(self: &Arc<Self>, mut run: Run, outcome: Outcome) {
        run.status = outcome.status;
        run.finished_at = Some(outcome.finished_at);
        run.attempts = run.attempts.max(outcome.progress.attempts);
        run.records_synced = outcome.progress.records_synced.or(run.records_synced);
        run.bytes_synced = outcome.progress.bytes_synced.or(run.bytes_synced);
        run.error = outcome.error.clone();
        match self.store.finish(&[(run.id, outcome)]).await {
            Ok(()) => {
                log_outcome(&run);
                self.metrics.run_ended(&run);
            }
            Err(e) => tracing::error!(connection = %run.connection, run_id = run.id, error = %e,
                "could not record a run's outcome; it stays open and is taken up at the next start"),
        }
    }

    fn connection(&self, name: &str) -> Option<Arc<ConnectionSettings>> {
        self.connections.get(name).cloned()
    }
}

fn log_outcome(run: &Run) {
    let job_id = run.job_id.unwrap_or_default();
    match run.status {
        RunStatus::Succeeded => tracing::info!(
            connection = %run.connection, run_id = run.id, job_id,
            records = run.records_synced.unwrap_or(0), bytes = run.bytes_synced.unwrap_or(0),
            attempts = run.attempts, "sync succeeded"),
        RunStatus::Skipped => tracing::info!(
            connection = %run.connection, run_id = run.id,
            reason = run.error.as_deref().unwrap_or(""), "run skipped"),
        status => tracing::warn!(
            connection = %run.connection, run_id = run.id, job_id, status = %status,
            error = run.error.as_deref().unwrap_or(""), "sync did not succeed"),
    }
}

/// An outcome stamped now.
fn outcome(status: RunStatus, progress: Progress, error: Option<String>) -> Outcome {
    Outcome {
        status,
        finished_at: Utc::now(),
        progress,
        error,
    }
}
