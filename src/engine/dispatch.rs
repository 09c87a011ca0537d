//! From a claimed run to a started Airbyte job: runs wait in order for a slot
//! under `max_concurrent_syncs`, then the sync is requested, riding out outages
//! and telling a 409 caused by our own lost request from a real overlap.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{SHUTDOWN_GRACE, Shared, outcome};
use crate::airbyte::{Error as AirbyteError, Job};
use crate::store::{Progress, Run, RunStatus};

/// Runs waiting for a slot, and how many slots are taken.
#[derive(Debug, Default)]
pub struct Queue {
    waiting: VecDeque<Run>,
    /// Runs being triggered or followed: each holds one slot until it ends.
    pub(super) in_flight: usize,
}

/// How a sync request ended.
enum Triggered {
    Started(Job),
    /// Not started, on purpose, with the reason.
    Skipped(String),
    /// Airbyte would not or could not start it, with the reason.
    Failed(String),
    /// Shutdown came first; the run stays pending for the next start.
    Interrupted,
}

/// How long a sync request keeps being retried through an outage before the
/// run is given up as `trigger_failed`.
const TRIGGER_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// How many of a connection's newest jobs are searched for one to attach to.
const ATTACH_SEARCH: u32 = 5;

impl Shared {
    /// Queues a claimed run and starts what the slots allow.
    pub(super) fn enqueue(self: &Arc<Self>, run: Run) {
        self.lock_queue().waiting.push_back(run);
        self.pump();
    }

    /// Starts waiting runs, oldest first, while slots are free.
    pub(super) fn pump(self: &Arc<Self>) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let cap = self.workers.max_concurrent_syncs.max(1);
        let mut queue = self.lock_queue();
        while queue.in_flight < cap {
            let Some(run) = queue.waiting.pop_front() else {
                break;
            };
            queue.in_flight += 1;
            let shared = Arc::clone(self);
            self.tasks.spawn(async move { shared.start(run).await });
        }
        self.metrics.set_in_flight(queue.in_flight);
        self.metrics.set_waiting(queue.waiting.len());
    }

    /// Gives a run's slot back and lets the next run start.
    pub(super) fn release(self: &Arc<Self>) {
        {
            let mut queue = self.lock_queue();
            queue.in_flight = queue.in_flight.saturating_sub(1);
        }
        self.pump();
    }

    /// Requests the sync for `run` and hands the job to the tracker, or closes
    /// the run when no job came of it.
    async fn start(self: Arc<Self>, run: Run) {
        let triggered = tokio::select! {
            t = self.trigger(&run) => t,
            () = async {
                self.shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => Triggered::Interrupted,
        };
        match triggered {
            Triggered::Started(job) => {
                let now = Utc::now();
                self.metrics.trigger_sent(run.scheduled_for, now);
                tracing::info!(connection = %run.connection, run_id = run.id, job_id = job.id,
                    scheduled_for = %run.scheduled_for, "sync started");
                if let Err(e) = self.store.mark_started(run.id, job.id, now).await {
                    // The job runs regardless; following it in memory still records
                    // its outcome, and the row stays pending until then.
                    tracing::error!(connection = %run.connection, run_id = run.id, job_id = job.id,
                        error = %e, "could not record the started job");
                }
                let mut run = run;
                run.started_at = Some(now);
                run.status = RunStatus::Running;
                self.follow(run, job.id, Some(&job));
            }
            Triggered::Skipped(reason) => {
                self.close(run, outcome(RunStatus::Skipped, Progress::default(), Some(reason)))
                    .await;
                self.release();
            }
            Triggered::Failed(reason) => {
                self.close(
                    run,
                    outcome(RunStatus::TriggerFailed, Progress::default(), Some(reason)),
                )
                .await;
                self.release();
            }
            Triggered::Interrupted => self.release(),
        }
    }

    /// Asks Airbyte for the sync. A run left pending by an earlier stop first
    /// looks for the job its request may have started.
    async fn trigger(&self, run: &Run) -> Triggered {
        let connection_id = run.connection_id.as_str();
        if run.claimed_at < self.started_at
            && let Some(job) = self.job_started_since(connection_id, run.claimed_at).await
        {
            tracing::info!(connection = %run.connection, run_id = run.id, job_id = job.id,
                "found the job an earlier request started");
            return Triggered::Started(job);
        }
        let deadline = tokio::time::Instant::now() + TRIGGER_DEADLINE;
        // Whether any earlier request may have reached Airbyte unanswered.
        let mut maybe_delivered = false;
        loop {
            match self.airbyte.trigger_sync(connection_id).await {
                Ok(job) => return Triggered::Started(job),
                Err(AirbyteError::AlreadyRunning {
                    after_lost_answer,
                    message,
                    ..
                }) => {
                    if (after_lost_answer || maybe_delivered)
                        && let Some(job) = self.job_started_since(connection_id, run.claimed_at).await
                    {
                        return Triggered::Started(job);
                    }
                    return Triggered::Skipped(format!(
                        "a sync was already running for this connection (Airbyte answered 409: {message})"
                    ));
                }
                Err(e) if e.is_retryable() => {
                    maybe_delivered |= e.answer_was_lost();
                    if tokio::time::Instant::now() >= deadline {
                        return Triggered::Failed(format!(
                            "Airbyte did not accept the sync request within {}: {e}",
                            humantime::format_duration(TRIGGER_DEADLINE)
                        ));
                    }
                    tracing::warn!(connection = %run.connection, run_id = run.id, error = %e,
                        "Airbyte did not take the sync request; trying again");
                    tokio::time::sleep(self.workers.poll_interval).await;
                }
                Err(e) => return Triggered::Failed(e.to_string()),
            }
        }
    }

    /// The newest job of the connection created at or after `since` (to the
    /// second, as Airbyte stores it), if Airbyte can say.
    async fn job_started_since(&self, connection_id: &str, since: DateTime<Utc>) -> Option<Job> {
        let jobs = match self.airbyte.connection_jobs(connection_id, ATTACH_SEARCH).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(connection_id, error = %e, "could not list the connection's jobs");
                return None;
            }
        };
        let since_second = since.timestamp();
        jobs.into_iter()
            .filter(|j| j.created_at.is_some_and(|c| c.timestamp() >= since_second))
            .max_by_key(|j| j.id)
    }
}
