//! Following started jobs to their end: a poll every `poll_interval`, a bounded
//! number of requests at once, progress and outcomes written in batches, and a
//! timed-out job cancelled in Airbyte until Airbyte confirms it ended.
//!
//! A poll that fails says nothing about the sync: the run stays `running` through
//! an Airbyte outage and is resolved once Airbyte answers again.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::{SHUTDOWN_GRACE, Shared, outcome};
use crate::airbyte::{Error as AirbyteError, Job, JobStatus};
use crate::store::{Progress, Run, RunStatus};

/// After this many polls in a row that Airbyte answers "no such job", the run is
/// closed as failed rather than followed forever.
const NOT_FOUND_LIMIT: u32 = 3;

/// A run whose job is being followed.
#[derive(Debug)]
pub struct Tracked {
    pub run: Run,
    pub job_id: i64,
    /// When the run times out and its job is to be cancelled.
    deadline: Option<DateTime<Utc>>,
    /// Airbyte accepted our cancel request for the timeout.
    cancel_accepted: bool,
    progress: Progress,
    not_found: u32,
}

impl Shared {
    /// Starts following `job_id` for `run`. A run taken up from an earlier process
    /// takes a slot now; one started here already holds the slot it started with.
    pub(super) fn follow(self: &Arc<Self>, run: Run, job_id: i64, taken_up: bool) {
        if taken_up {
            let in_flight = {
                let mut queue = self.lock_queue();
                queue.in_flight += 1;
                queue.in_flight
            };
            self.metrics.set_in_flight(in_flight);
        }
        let timeout = self
            .connection(&run.connection)
            .and_then(|c| c.timeout)
            .and_then(|t| chrono::Duration::from_std(t).ok());
        let deadline = timeout.map(|t| run.started_at.unwrap_or(run.claimed_at) + t);
        let progress = Progress {
            attempts: run.attempts,
            records_synced: run.records_synced,
            bytes_synced: run.bytes_synced,
        };
        self.lock_tracked().insert(
            run.id,
            Tracked {
                run,
                job_id,
                deadline,
                cancel_accepted: false,
                progress,
                not_found: 0,
            },
        );
    }

    /// One round: every followed job is read once, outcomes and progress are
    /// written, overdue jobs are cancelled.
    async fn poll_once(self: &Arc<Self>) {
        let jobs: Vec<(i64, i64)> = self
            .lock_tracked()
            .values()
            .map(|t| (t.run.id, t.job_id))
            .collect();
        if jobs.is_empty() {
            return;
        }
        let answers: Vec<(i64, Result<Job, AirbyteError>)> = futures::stream::iter(jobs)
            .map(|(run_id, job_id)| {
                let airbyte = self.airbyte.clone();
                async move { (run_id, airbyte.poll_job(job_id).await) }
            })
            .buffer_unordered(self.workers.poll_concurrency.max(1))
            .collect()
            .await;

        let polled = answers.len();
        let mut progressed = Vec::new();
        let mut ended = Vec::new();
        let mut vanished = Vec::new();
        let mut unanswered: Option<(usize, AirbyteError)> = None;
        {
            let mut tracked = self.lock_tracked();
            for (run_id, answer) in answers {
                let Some(entry) = tracked.get_mut(&run_id) else {
                    continue;
                };
                match answer {
                    Ok(job) => {
                        entry.not_found = 0;
                        let progress = Progress {
                            attempts: job.attempts.max(entry.progress.attempts),
                            records_synced: job.records_synced.or(entry.progress.records_synced),
                            bytes_synced: job.bytes_synced.or(entry.progress.bytes_synced),
                        };
                        if job.status.is_terminal() {
                            if let Some(done) = tracked.remove(&run_id) {
                                ended.push((done, job, progress));
                            }
                        } else if progress != entry.progress {
                            entry.progress = progress.clone();
                            progressed.push((run_id, progress));
                        }
                    }
                    Err(AirbyteError::NotFound { message, .. }) => {
                        entry.not_found += 1;
                        if entry.not_found >= NOT_FOUND_LIMIT
                            && let Some(gone) = tracked.remove(&run_id)
                        {
                            vanished.push((gone, message));
                        }
                    }
                    Err(e) => {
                        let count = unanswered.as_ref().map_or(0, |(n, _)| *n);
                        let first = unanswered.map(|(_, first)| first).unwrap_or(e);
                        unanswered = Some((count + 1, first));
                    }
                }
            }
        }

        // One line per round, not per job, so an outage does not flood the log.
        if let Some((count, first)) = unanswered {
            tracing::warn!(unanswered = count, polled, error = %first,
                "Airbyte did not answer some polls; those syncs stay running");
        }
        if let Err(e) = self.store.record_progress(&progressed).await {
            tracing::warn!(error = %e, "could not record the progress of running syncs");
        }
        for (done, job, progress) in ended {
            let (status, error) = final_status(&job, done.cancel_accepted);
            let error = error.or_else(|| {
                (status == RunStatus::TimedOut).then(|| {
                    format!("cancelled by cronbyte after its timeout; Airbyte job {} ended", job.id)
                })
            });
            self.close(done.run, outcome(status, progress, error)).await;
            self.release();
        }
        for (gone, message) in vanished {
            let job_id = gone.job_id;
            self.close(
                gone.run,
                outcome(
                    RunStatus::Failed,
                    gone.progress,
                    Some(format!("Airbyte no longer knows job {job_id}: {message}")),
                ),
            )
            .await;
            self.release();
        }
        self.cancel_overdue().await;
    }

    /// Asks Airbyte to cancel every job past its run's deadline. A refused or
    /// failed cancel is asked again at the next poll; the run stays followed
    /// until Airbyte reports the job ended.
    async fn cancel_overdue(self: &Arc<Self>) {
        let now = Utc::now();
        let overdue: Vec<(i64, i64, String)> = self
            .lock_tracked()
            .values()
            .filter(|t| !t.cancel_accepted && t.deadline.is_some_and(|d| now >= d))
            .map(|t| (t.run.id, t.job_id, t.run.connection.clone()))
            .collect();
        for (run_id, job_id, connection) in overdue {
            match self.airbyte.cancel_job(job_id).await {
                Ok(_) => {
                    tracing::warn!(%connection, run_id, job_id, "sync ran past its timeout; cancelled it in Airbyte");
                    if let Some(entry) = self.lock_tracked().get_mut(&run_id) {
                        entry.cancel_accepted = true;
                    }
                }
                // The job ended on its own meanwhile; the next poll records how.
                Err(AirbyteError::NotFound { .. }) => {
                    if let Some(entry) = self.lock_tracked().get_mut(&run_id) {
                        entry.cancel_accepted = true;
                    }
                }
                Err(e) => tracing::warn!(%connection, run_id, job_id, error = %e,
                    "could not cancel a timed-out sync; will ask again"),
            }
        }
    }
}

/// The run status for a job that ended, and the failure text to keep.
fn final_status(job: &Job, cancel_accepted: bool) -> (RunStatus, Option<String>) {
    match (&job.status, cancel_accepted) {
        (JobStatus::Succeeded, _) => (RunStatus::Succeeded, None),
        (JobStatus::Failed | JobStatus::Cancelled, true) => (RunStatus::TimedOut, None),
        (JobStatus::Cancelled, false) => (
            RunStatus::Cancelled,
            Some("the job was cancelled in Airbyte".into()),
        ),
        _ => (
            RunStatus::Failed,
            Some(
                job.failure
                    .clone()
                    .unwrap_or_else(|| "Airbyte reported the job failed without a reason".into()),
            ),
        ),
    }
}

/// The tracker's loop: polls until shutdown; a poll under way when shutdown
/// comes gets the grace period to finish its requests and writes.
pub(super) async fn run(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(shared.workers.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            () = shared.poll_once() => {}
            () = async {
                shared.shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => return,
        }
    }
}
