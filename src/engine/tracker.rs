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
use tokio::time::Instant;

use super::{CLOCK_ALLOWANCE, SHUTDOWN_GRACE, Shared, outcome};
use crate::airbyte::{Error as AirbyteError, Job, JobStatus};
use crate::run::{Progress, Run, RunStatus};

/// After this many polls in a row that Airbyte answers "no such job", the run is
/// closed as failed rather than followed forever.
const NOT_FOUND_LIMIT: u32 = 3;

/// Below this many followed jobs, reading each one is as cheap as a listing.
const BATCH_MIN: usize = 2;

/// Jobs per page of a listing.
const PAGE_SIZE: u32 = 200;

/// At most this many pages per round: beyond, the rest is read job by job.
const MAX_PAGES: u32 = 50;

/// A followed run's job, as a cancel request sees it.
#[derive(Debug)]
pub(super) struct FollowedJob {
    pub job_id: i64,
    /// An operator's cancel was accepted by Airbyte already.
    pub by_operator: bool,
    /// Airbyte accepted the cancel for the run's timeout.
    pub for_timeout: bool,
}

/// A run whose job is being followed.
#[derive(Debug)]
pub struct Tracked {
    pub run: Run,
    pub job_id: i64,
    /// When the run times out and its job is to be cancelled.
    deadline: Option<DateTime<Utc>>,
    /// Airbyte accepted our cancel request for the timeout.
    cancel_accepted: bool,
    /// A cancel request (for the timeout, or an operator's) is on its way.
    cancelling: bool,
    /// An operator cancelled the run before its job was known: the job is to be
    /// cancelled in Airbyte, asked at each poll until Airbyte accepts.
    operator_cancel_owed: bool,
    /// An operator cancelled the run's job.
    by_operator: bool,
    progress: Progress,
    not_found: u32,
    /// The job's `updatedAt` as Airbyte last reported it.
    last_update: Option<DateTime<Utc>>,
    /// When Airbyte last answered about this very job. A listing shows only jobs
    /// that changed, so a job not seen for a while is read on its own: that
    /// refreshes its counts and guards against a change the listing missed.
    confirmed: Option<Instant>,
}

impl Shared {
    /// Starts following `job_id` for `run`. A run taken up from an earlier process
    /// takes a slot now; one started here already holds the slot it started with.
    pub(super) fn follow(self: &Arc<Self>, run: Run, job_id: i64, seen: Option<&Job>) {
        if seen.is_none() {
            self.hold_slot(&run);
            self.lock_conns()
                .entry(run.connection.clone())
                .or_default()
                .active = Some(run.id);
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
                cancelling: false,
                operator_cancel_owed: false,
                by_operator: false,
                progress,
                not_found: 0,
                last_update: seen.and_then(|j| j.updated_at),
                confirmed: seen.map(|_| Instant::now()),
            },
        );
    }

    /// One round: every followed job is read once (changed jobs through one
    /// listing, the rest one by one), outcomes and progress are written, overdue
    /// jobs are cancelled.
    async fn poll_once(self: &Arc<Self>) {
        self.poll_progressed();
        let (batch, single, since) = self.plan_round();
        if batch.is_empty() && single.is_empty() {
            return;
        }
        let mut answers: Vec<(i64, Result<Job, AirbyteError>)> = Vec::new();
        // How many jobs Airbyte gave no answer about this round, and the first error.
        let mut unanswered: Option<(usize, AirbyteError)> = None;
        let mut single = single;
        if let Some(since) = since {
            let listed = self.list_changed(since).await;
            self.poll_progressed();
            match listed {
                Ok(mut changed) => {
                    answers.extend(batch.into_iter().filter_map(|(run_id, job_id)| {
                        changed.remove(&job_id).map(|j| (run_id, Ok(j)))
                    }))
                }
                Err(e) if e.is_retryable() => unanswered = Some((batch.len(), e)),
                Err(e) => {
                    tracing::warn!(error = %e,
                        "Airbyte refused the job listing; following each job on its own from now on");
                    self.batch_polls.store(false, Ordering::Relaxed);
                    single.extend(batch);
                }
            }
        }
        answers.extend(
            futures::stream::iter(single)
                .map(|(run_id, job_id)| {
                    let airbyte = Arc::clone(&self.airbyte);
                    async move {
                        let answer = airbyte.job(job_id).await;
                        self.poll_progressed();
                        (run_id, answer)
                    }
                })
                .buffer_unordered(self.workers.poll_concurrency.max(1))
                .collect::<Vec<_>>()
                .await,
        );

        let polled = answers.len() + unanswered.as_ref().map_or(0, |(n, _)| *n);
        let mut progressed = Vec::new();
        let mut ended = Vec::new();
        let mut vanished = Vec::new();
        {
            let mut tracked = self.lock_tracked();
            for (run_id, answer) in answers {
                let Some(entry) = tracked.get_mut(&run_id) else {
                    continue;
                };
                match answer {
                    Ok(job) => {
                        entry.not_found = 0;
                        entry.confirmed = Some(Instant::now());
                        entry.last_update = job.updated_at.or(entry.last_update);
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
            self.metrics.store_error();
            tracing::warn!(error = %e, "could not record the progress of running syncs");
        }
        self.poll_progressed();
        let mut closing = Vec::with_capacity(ended.len() + vanished.len());
        for (done, job, progress) in ended {
            let (status, error) = final_status(&job, done.cancel_accepted, done.by_operator);
            let error = error.or_else(|| {
                (status == RunStatus::TimedOut).then(|| {
                    format!(
                        "cancelled by cronbyte after its timeout; Airbyte job {} ended",
                        job.id
                    )
                })
            });
            closing.push((done.run, outcome(&self.clock, status, progress, error)));
        }
        for (gone, message) in vanished {
            let job_id = gone.job_id;
            let error = format!("Airbyte no longer knows job {job_id}: {message}");
            closing.push((
                gone.run,
                outcome(&self.clock, RunStatus::Failed, gone.progress, Some(error)),
            ));
        }
        self.finish_runs(closing).await;
        self.poll_progressed();
        self.cancel_overdue();
    }

    /// Notes that the poll loop moved on, for the watchdog.
    fn poll_progressed(&self) {
        *self
            .poll_heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// The job a followed run is following, and whether its cancel was asked.
    pub(super) fn followed_job(&self, run_id: i64) -> Option<FollowedJob> {
        self.lock_tracked().get(&run_id).map(|t| FollowedJob {
            job_id: t.job_id,
            by_operator: t.by_operator,
            for_timeout: t.cancel_accepted,
        })
    }

    /// Notes that an operator had the run's job cancelled.
    pub(super) fn operator_cancelled(&self, run_id: i64) {
        if let Some(entry) = self.lock_tracked().get_mut(&run_id) {
            entry.by_operator = true;
        }
    }

    /// How long each connection's oldest running sync has run, for the metrics.
    fn report_running_ages(&self) {
        let now = self.clock.now();
        let ages: Vec<(String, i64)> = self
            .lock_tracked()
            .values()
            .filter_map(|t| {
                let started = t.run.started_at?;
                Some((
                    t.run.connection.clone(),
                    (now - started).num_seconds().max(0),
                ))
            })
            .collect();
        self.metrics.set_running_ages(&ages);
    }

    /// Splits the followed jobs into those a listing of changed jobs covers and
    /// those read one by one, with the instant the listing starts from.
    #[allow(clippy::type_complexity)]
    fn plan_round(&self) -> (Vec<(i64, i64)>, Vec<(i64, i64)>, Option<DateTime<Utc>>) {
        let now = Instant::now();
        let stale_after = (self.workers.poll_interval * 10).max(Duration::from_secs(60));
        let batching = self.batch_polls.load(Ordering::Relaxed);
        let mut batch = Vec::new();
        let mut single = Vec::new();
        let mut since: Option<DateTime<Utc>> = None;
        for t in self.lock_tracked().values() {
            let fresh = t
                .confirmed
                .is_some_and(|c| now.duration_since(c) < stale_after);
            match t.last_update {
                Some(updated) if batching && fresh => {
                    since = Some(since.map_or(updated, |s| s.min(updated)));
                    batch.push((t.run.id, t.job_id));
                }
                _ => single.push((t.run.id, t.job_id)),
            }
        }
        if batch.len() < BATCH_MIN {
            single.append(&mut batch);
            return (batch, single, None);
        }
        // Never reach back further than needed: a long-running job would otherwise
        // pull every job of the last hours into each listing.
        let floor = self.clock.now()
            - chrono::Duration::from_std(self.workers.poll_interval).unwrap_or_default()
            - CLOCK_ALLOWANCE;
        (batch, single, since.map(|s| s.max(floor)))
    }

    /// Every sync job updated at or after `since`, by id, through as few
    /// listing requests as the page size allows.
    async fn list_changed(&self, since: DateTime<Utc>) -> Result<HashMap<i64, Job>, AirbyteError> {
        let workspaces = self.workspace_ids().await?;
        let mut changed = HashMap::new();
        for page in 0..MAX_PAGES {
            let jobs = self
                .airbyte
                .jobs_updated_since(&workspaces, since, PAGE_SIZE, page * PAGE_SIZE)
                .await?;
            let full = jobs.len() >= PAGE_SIZE as usize;
            changed.extend(jobs.into_iter().map(|j| (j.id, j)));
            if !full {
                break;
            }
        }
        Ok(changed)
    }

    /// The workspaces whose jobs a listing covers, asked of Airbyte once.
    async fn workspace_ids(&self) -> Result<Vec<String>, AirbyteError> {
        self.workspaces
            .get_or_try_init(|| self.airbyte.listing_workspaces())
            .await
            .cloned()
    }

    /// Asks Airbyte to cancel every job past its run's deadline, and every job
    /// an operator cancelled before it was known, in the background: a round
    /// never waits for a cancel. Each is tried once; a refused or failed cancel
    /// is asked again at a later poll, and the run stays followed until Airbyte
    /// reports the job ended.
    pub(super) fn cancel_overdue(self: &Arc<Self>) {
        let now = self.clock.now();
        let due: Vec<(i64, i64, String, Why)> = self
            .lock_tracked()
            .values_mut()
            .filter(|t| !t.cancelling)
            .filter_map(|t| {
                let why = if t.operator_cancel_owed {
                    Why::Operator
                } else if !t.cancel_accepted && t.deadline.is_some_and(|d| now >= d) {
                    Why::Timeout
                } else {
                    return None;
                };
                t.cancelling = true;
                Some((t.run.id, t.job_id, t.run.connection.clone(), why))
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let shared = Arc::clone(self);
        self.tasks.spawn(async move {
            let concurrency = shared.workers.poll_concurrency.max(1);
            futures::stream::iter(due)
                .for_each_concurrent(concurrency, |(run_id, job_id, connection, why)| {
                    let shared = Arc::clone(&shared);
                    async move { shared.send_cancel(run_id, job_id, &connection, why).await }
                })
                .await;
        });
    }

    /// Notes that an operator cancelled a followed run whose job was not known
    /// when they asked, and sends the cancel now.
    pub(super) fn cancel_for_operator(self: &Arc<Self>, run_id: i64) {
        if let Some(entry) = self.lock_tracked().get_mut(&run_id)
            && !entry.by_operator
        {
            entry.operator_cancel_owed = true;
        }
        self.cancel_overdue();
    }

    async fn send_cancel(&self, run_id: i64, job_id: i64, connection: &str, why: Why) {
        let result = self.airbyte.cancel(job_id).await;
        let mut tracked = self.lock_tracked();
        // Gone: the job ended and its outcome was recorded meanwhile.
        let Some(entry) = tracked.get_mut(&run_id) else {
            return;
        };
        entry.cancelling = false;
        let accepted = match result {
            Ok(_) => {
                match why {
                    Why::Timeout => tracing::warn!(%connection, run_id, job_id,
                        "sync ran past its timeout; cancelled it in Airbyte"),
                    Why::Operator => tracing::info!(%connection, run_id, job_id,
                        "cancelled the job in Airbyte, as an operator asked"),
                }
                true
            }
            // The job ended on its own meanwhile; the next poll records how.
            Err(AirbyteError::NotFound { .. }) => true,
            Err(e) => {
                tracing::warn!(%connection, run_id, job_id, error = %e,
                    "Airbyte did not take a cancel; will ask again at the next poll");
                false
            }
        };
        if accepted {
            match why {
                Why::Timeout => entry.cancel_accepted = true,
                Why::Operator => {
                    entry.operator_cancel_owed = false;
                    entry.by_operator = true;
                }
            }
        }
    }
}

/// Why cronbyte cancels a job.
#[derive(Clone, Copy, Debug)]
enum Why {
    /// Its run passed the connection's timeout.
    Timeout,
    /// An operator cancelled its run.
    Operator,
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
            () = async {
                shared.flush_owed().await;
                shared.poll_once().await;
                shared.report_running_ages();
            } => {}
            () = async {
                shared.shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => return,
        }
    }
}
