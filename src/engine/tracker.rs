//! Following started jobs to their end: a poll every `poll_interval`, a bounded
//! number of requests at once, progress and outcomes written in batches, and a
//! timed-out job cancelled in Airbyte until Airbyte confirms it ended.
//!
//! A poll that fails says nothing about the sync: the run stays `running` through
//! an Airbyte outage and is resolved once Airbyte answers again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::instance::Instance;
use super::state::{Answered, DueCancel, Round, Why};
use super::{CLOCK_ALLOWANCE, SHUTDOWN_GRACE, Shared, live, outcome};
use crate::airbyte::{Error as AirbyteError, Job, JobStatus};
use crate::run::{Run, RunStatus};
use crate::store::HistoryFilter;

/// Jobs per page of a listing.
const PAGE_SIZE: u32 = 200;

/// At most this many pages per round: beyond, the rest is read job by job.
const MAX_PAGES: u32 = 50;

/// Running jobs in the one listing of them a round makes: as many as one request
/// may carry (the public API gives at most 100), so that a thousand long syncs
/// are refreshed together rather than read one by one once they go stale.
const RUNNING_PAGE_SIZE: u32 = 1_000;

impl Shared {
    /// Starts following `job_id` for `run`. A run taken up from an earlier process
    /// takes a slot now; one started here already holds the slot it started with.
    pub(super) fn follow(self: &Arc<Self>, run: Run, job_id: i64, seen: Option<&Job>) {
        let connection = self.connection(&run.connection);
        let group = connection.as_ref().and_then(|c| c.group.clone());
        let timeout = connection
            .and_then(|c| c.timeout)
            .and_then(|t| chrono::Duration::from_std(t).ok());
        let deadline = timeout.map(|t| run.started_at.unwrap_or(run.claimed_at) + t);
        let in_flight = self.state(|s| {
            s.follow(run, job_id, seen, group, deadline);
            s.in_flight()
        });
        self.metrics.set_in_flight(in_flight);
    }

    /// One round of `instance`: every job followed there is read once (changed
    /// jobs through one listing, the rest one by one), outcomes and progress are
    /// written, overdue jobs are cancelled.
    async fn poll_once(self: &Arc<Self>, instance: &Arc<Instance>) {
        instance.poll_progressed();
        let stale_after = (self.workers.poll_interval * 10).max(Duration::from_secs(60));
        let batching = instance.batch_polls.load(Ordering::Relaxed);
        let floor = self.clock.now()
            - chrono::Duration::from_std(self.workers.poll_interval).unwrap_or_default()
            - CLOCK_ALLOWANCE;
        let Round {
            batch,
            single,
            since,
        } = self.state(|s| s.plan_round(&instance.name, stale_after, batching, floor));
        if batch.is_empty() && single.is_empty() {
            return;
        }
        let mut answers: Vec<(i64, Result<Job, AirbyteError>)> = Vec::new();
        // How many jobs Airbyte gave no answer about this round, and the first error.
        let mut unanswered: Option<(usize, AirbyteError)> = None;
        let mut single = single;
        if let Some(since) = since {
            let listed = list_changed(instance, since).await;
            instance.poll_progressed();
            match listed {
                Ok(mut changed) => {
                    let mut unchanged = Vec::new();
                    for (run_id, job_id) in batch {
                        match changed.remove(&job_id) {
                            Some(job) => answers.push((run_id, Ok(job))),
                            None => unchanged.push((run_id, job_id)),
                        }
                    }
                    // A running job's `updatedAt` moves only when its status or
                    // attempt does, so the listing of changes leaves its counts
                    // as they were: one more request, for the whole instance,
                    // brings them up to date.
                    if !unchanged.is_empty() {
                        let mut running = list_running(instance).await;
                        instance.poll_progressed();
                        answers.extend(unchanged.into_iter().filter_map(|(run_id, job_id)| {
                            running.remove(&job_id).map(|j| (run_id, Ok(j)))
                        }));
                    }
                }
                Err(e) if e.is_retryable() => unanswered = Some((batch.len(), e)),
                Err(e) => {
                    tracing::warn!(instance = %instance.name, error = %e,
                        "Airbyte refused the job listing; following each job on its own from now on");
                    instance.batch_polls.store(false, Ordering::Relaxed);
                    single.extend(batch);
                }
            }
        }
        answers.extend(
            futures::stream::iter(single)
                .map(|(run_id, job_id)| async move {
                    let answer = instance.airbyte.job(job_id).await;
                    instance.poll_progressed();
                    (run_id, answer)
                })
                .buffer_unordered(self.workers.poll_concurrency.max(1))
                .collect::<Vec<_>>()
                .await,
        );

        let polled = answers.len() + unanswered.as_ref().map_or(0, |(n, _)| *n);
        let (
            Answered {
                progressed,
                ended,
                vanished,
            },
            errors,
        ) = {
            let now = self.clock.now();
            self.state(|s| s.answered(answers, now))
        };
        for e in errors {
            let count = unanswered.as_ref().map_or(0, |(n, _)| *n);
            let first = unanswered.map(|(_, first)| first).unwrap_or(e);
            unanswered = Some((count + 1, first));
        }

        // One line per round, not per job, so an outage does not flood the log.
        if let Some((count, first)) = unanswered {
            tracing::warn!(instance = %instance.name, unanswered = count, polled, error = %first,
                "Airbyte did not answer some polls; those syncs stay running");
        }
        if let Err(e) = self.store.record_progress(&progressed).await {
            self.metrics.store_error();
            tracing::warn!(error = %e, "could not record the progress of running syncs");
        }
        instance.poll_progressed();
        let mut closing = Vec::with_capacity(ended.len() + vanished.len());
        for done in ended {
            let job = done.job;
            let (status, error) = final_status(&job, done.cancel_accepted, done.by_operator);
            let error = error.or_else(|| {
                (status == RunStatus::TimedOut).then(|| {
                    format!(
                        "cancelled by cronbyte after its timeout; Airbyte job {} ended",
                        job.id
                    )
                })
            });
            closing.push((done.run, outcome(&self.clock, status, done.progress, error)));
        }
        for (run, job_id, progress, message) in vanished {
            let error = format!("Airbyte no longer knows job {job_id}: {message}");
            closing.push((
                run,
                outcome(&self.clock, RunStatus::Failed, progress, Some(error)),
            ));
        }
        self.finish_runs(closing).await;
        instance.poll_progressed();
        self.cancel_overdue();
        self.read_usual_durations(&instance.name).await;
        instance.poll_progressed();
    }

    /// Reads from the history how long the connections with a newly followed
    /// run usually take: once per run, not per round.
    async fn read_usual_durations(&self, instance: &str) {
        for connection in self.state(|s| s.usual_wanted(instance)) {
            let filter = HistoryFilter {
                connection: Some(connection.clone()),
                limit: live::USUAL_OF,
            };
            // Without the history, no estimate; the run is followed all the same.
            let usual = match self.store.history(&filter).await {
                Ok(runs) => live::usual_duration(&runs),
                Err(e) => {
                    tracing::debug!(%connection, error = %e,
                        "could not read the connection's recent runs for its usual duration");
                    None
                }
            };
            self.state(|s| s.set_usual(&connection, usual));
        }
    }

    /// How long each connection's oldest running sync has run, for the metrics.
    fn report_running_ages(&self) {
        let now = self.clock.now();
        let (ages, live) = self.state(|s| (s.running_ages(now), s.live(now)));
        self.metrics.set_running_ages(&ages);
        let progress: Vec<(String, u64, u64)> = live
            .into_iter()
            .filter_map(|l| Some((l.connection, l.records?, l.bytes.unwrap_or(0))))
            .collect();
        self.metrics.set_running_progress(&progress);
    }

    /// Asks Airbyte to cancel every job past its run's deadline, and every job
    /// an operator cancelled before it was known, in the background: a round
    /// never waits for a cancel. Each is tried once; a refused or failed cancel
    /// is asked again at a later poll, and the run stays followed until Airbyte
    /// reports the job ended.
    pub(super) fn cancel_overdue(self: &Arc<Self>) {
        let now = self.clock.now();
        let due = self.state(|s| s.due_cancels(now));
        if due.is_empty() {
            return;
        }
        let shared = Arc::clone(self);
        self.tasks.spawn(async move {
            let concurrency = shared.workers.poll_concurrency.max(1);
            futures::stream::iter(due)
                .for_each_concurrent(concurrency, |due| {
                    let shared = Arc::clone(&shared);
                    async move { shared.send_cancel(due).await }
                })
                .await;
        });
    }

    /// Notes that an operator cancelled a followed run whose job was not known
    /// when they asked, and sends the cancel now.
    pub(super) fn cancel_for_operator(self: &Arc<Self>, run_id: i64) {
        self.state(|s| s.owe_operator_cancel(run_id));
        self.cancel_overdue();
    }

    async fn send_cancel(&self, due: DueCancel) {
        let DueCancel {
            run_id,
            instance,
            job_id,
            connection,
            why,
        } = due;
        if !self.lease.is_held() {
            // Not the active replica any more: the one that is cancels what is due
            // from what the store holds (a timeout from the run's start, an
            // operator's cancel from its request).
            return;
        }
        let answer = self.instance(&instance).airbyte.cancel(job_id).await;
        // The job ended on its own meanwhile; the next poll records how.
        let accepted = matches!(answer, Ok(_) | Err(AirbyteError::NotFound { .. }));
        if !self.state(|s| s.cancel_answered(run_id, why, accepted)) {
            // No longer followed: its outcome was recorded meanwhile.
            return;
        }
        match (answer, why) {
            (Ok(_), Why::Timeout) => tracing::warn!(%connection, %instance, run_id, job_id,
                "sync ran past its timeout; cancelled it in Airbyte"),
            (Ok(_), Why::Operator) => tracing::info!(%connection, %instance, run_id, job_id,
                "cancelled the job in Airbyte, as an operator asked"),
            (Err(AirbyteError::NotFound { .. }), _) => {}
            (Err(e), _) => tracing::warn!(%connection, %instance, run_id, job_id, error = %e,
                "Airbyte did not take a cancel; will ask again at the next poll"),
        }
    }
}

/// The run status for a job that ended, and the failure text to keep.
fn final_status(
    job: &Job,
    cancel_accepted: bool,
    by_operator: bool,
) -> (RunStatus, Option<String>) {
    match (&job.status, cancel_accepted) {
        (JobStatus::Succeeded, _) => (RunStatus::Succeeded, None),
        (JobStatus::Cancelled, _) if by_operator => (
            RunStatus::Cancelled,
            Some("cancelled by an operator".into()),
        ),
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

/// Every sync job of `instance` updated at or after `since`, by id, through as
/// few listing requests as the page size allows.
async fn list_changed(
    instance: &Instance,
    since: DateTime<Utc>,
) -> Result<HashMap<i64, Job>, AirbyteError> {
    let workspaces = instance
        .workspaces
        .get_or_try_init(|| instance.airbyte.listing_workspaces())
        .await?;
    let mut changed = HashMap::new();
    for page in 0..MAX_PAGES {
        let jobs = instance
            .airbyte
            .jobs_updated_since(workspaces, since, PAGE_SIZE, page * PAGE_SIZE)
            .await?;
        let full = jobs.len() >= PAGE_SIZE as usize;
        changed.extend(jobs.into_iter().map(|j| (j.id, j)));
        if !full {
            break;
        }
    }
    Ok(changed)
}

/// The running sync jobs of `instance` by id: one page, so one request. Running
/// jobs past the page are read on their own once they go stale (see `plan_round`).
/// A failure leaves the counts as they were and is no news about the syncs.
async fn list_running(instance: &Instance) -> HashMap<i64, Job> {
    let Some(workspaces) = instance.workspaces.get() else {
        return HashMap::new();
    };
    match instance
        .airbyte
        .running_jobs(workspaces, RUNNING_PAGE_SIZE)
        .await
    {
        Ok(jobs) => jobs.into_iter().map(|j| (j.id, j)).collect(),
        Err(e) => {
            tracing::debug!(instance = %instance.name, error = %e,
                "Airbyte did not list the running jobs; their counts wait for the next round");
            HashMap::new()
        }
    }
}

/// An instance's poll loop: polls the jobs followed there until shutdown; a poll
/// under way when shutdown comes gets the grace period to finish its requests
/// and writes. Owed writes are flushed by every instance's loop in turn.
pub(super) async fn run(shared: Arc<Shared>, instance: Arc<Instance>) {
    let mut ticker = tokio::time::interval(shared.workers.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            () = async {
                shared.flush_owed().await;
                shared.poll_once(&instance).await;
                shared.report_running_ages();
            } => {}
            () = async {
                shared.shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => return,
        }
    }
}
