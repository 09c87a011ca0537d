//! From a claimed run to a started Airbyte job: runs wait in order for a slot
//! under `max_concurrent_syncs` and their group's limit, the overlap policy
//! decides what a run does when its connection is already syncing, and the sync
//! is requested, riding out outages and telling a 409 caused by our own lost
//! request from a real overlap.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use super::instance::Instance;
use super::owed::Owed;
use super::state::Overlap;
use super::{CLOCK_ALLOWANCE, SHUTDOWN_GRACE, Shared, outcome};
use crate::airbyte::{Error as AirbyteError, Job};
use crate::config::OnOverlap;
use crate::run::{Progress, Run, RunStatus};
use crate::store::Started;

/// How a sync request ended.
enum Triggered {
    /// A job runs for this run: started by it, or found running and attached to.
    Started(Job),
    /// Not started, on purpose, with the reason.
    Skipped(String),
    /// Airbyte would not or could not start it, with the reason.
    Failed(String),
    /// Shutdown came first; the run stays pending for the next start.
    Interrupted,
    /// An operator cancelled the run, and Airbyte has no job of it.
    Cancelled,
}

/// What the search for a job a lost answer started found.
enum Search {
    Found(Job),
    /// Airbyte listed the connection's jobs, and none is the run's.
    Nothing,
    /// Airbyte (or the store) could not say.
    Unknown,
}

/// How long a sync request keeps being retried through an outage, or waits
/// behind a running sync, before the run is given up as `trigger_failed`.
const TRIGGER_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// How many of a connection's newest jobs are searched for one to attach to.
const ATTACH_SEARCH: u32 = 5;

impl Shared {
    /// Queues a claimed run and starts what the slots allow.
    pub(super) fn enqueue(self: &Arc<Self>, run: Run) {
        self.state(|s| s.enqueue(run));
        self.pump();
    }

    /// Queues the run once `at` has come (a retry's backoff, a tick's jitter).
    pub(super) fn enqueue_at(self: &Arc<Self>, run: Run, at: DateTime<Utc>) {
        if at <= self.clock.now() {
            return self.enqueue(run);
        }
        let shared = Arc::clone(self);
        self.tasks.spawn(async move {
            tokio::select! {
                () = shared.shutdown.cancelled() => {}
                () = shared.clock.sleep_until_fully(at) => shared.enqueue(run),
            }
        });
    }

    /// Queues a tick's run after a random delay up to the connection's jitter,
    /// so many connections on one rule don't hit Airbyte in the same second.
    pub(super) fn enqueue_jittered(self: &Arc<Self>, run: Run) {
        let jitter = self
            .connection(&run.connection)
            .map_or(Duration::ZERO, |c| c.jitter);
        if jitter.is_zero() {
            return self.enqueue(run);
        }
        let delay = rand::rng().random_range(Duration::ZERO..=jitter);
        let at = self.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
        self.enqueue_at(run, at);
    }

    /// Starts waiting runs, oldest first, while slots are free. A run whose group
    /// is full lets the runs behind it go first.
    pub(super) fn pump(self: &Arc<Self>) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let cap = self.workers.max_concurrent_syncs.max(1);
        let catalog = self.catalog();
        let (starts, in_flight, waiting) = self.state(|s| {
            let starts = s.startable(cap, &catalog);
            (starts, s.in_flight(), s.waiting())
        });
        for run in starts {
            let shared = Arc::clone(self);
            self.tasks.spawn(async move { shared.start(run).await });
        }
        self.metrics.set_in_flight(in_flight);
        self.metrics.set_waiting(waiting);
    }

    /// Gives the run's slot back, if it held one, and lets the next run start.
    pub(super) fn release(self: &Arc<Self>, run_id: i64) {
        self.state(|s| s.release(run_id));
        self.pump();
    }

    /// Applies the overlap policy, requests the sync and hands the job to the
    /// tracker, or closes the run when no job came of it.
    async fn start(self: Arc<Self>, run: Run) {
        if self.state(|s| s.take_cancelled(run.id)) {
            return self.release(run.id);
        }
        let policy = self
            .connection(&run.connection)
            .map_or(OnOverlap::Attach, |c| c.on_overlap);
        match self.state(|s| s.overlap(&run, policy)) {
            Overlap::Go => {}
            Overlap::Wait => return self.release(run.id),
            Overlap::Skip(reason) => {
                let closing = outcome(
                    &self.clock,
                    RunStatus::Skipped,
                    Progress::default(),
                    Some(reason),
                );
                return self.finish_run(run, closing).await;
            }
        }
        let triggered = tokio::select! {
            t = self.trigger(&run) => t,
            () = async {
                self.shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => Triggered::Interrupted,
        };
        match triggered {
            Triggered::Started(job) => {
                let now = self.clock.now();
                self.metrics.trigger_sent(run.scheduled_for, now);
                tracing::info!(connection = %run.connection, instance = %run.instance,
                    run_id = run.id, job_id = job.id,
                    scheduled_for = %run.scheduled_for, "sync started");
                let started = self.store.mark_started(run.id, job.id, now).await;
                let mut run = run;
                run.started_at = Some(now);
                run.status = RunStatus::Running;
                run.job_id = Some(job.id);
                match started {
                    Ok(Started::Running { cancel_requested }) => {
                        let run_id = run.id;
                        self.follow(run, job.id, Some(&job));
                        let in_flight = self.state(|s| s.take_cancel_in_flight(run_id));
                        if cancel_requested || in_flight {
                            self.cancel_for_operator(run_id);
                        }
                    }
                    Ok(Started::NotPending) => self.moved_on_while_starting(run, job.id).await,
                    Err(e) => {
                        // The job runs regardless and is followed in memory; the row
                        // learns its job once the store works again.
                        let owed = Owed::Started {
                            run_id: run.id,
                            job_id: job.id,
                            at: now,
                        };
                        self.owe(owed, &e);
                        self.follow(run, job.id, Some(&job));
                    }
                }
            }
            Triggered::Skipped(reason) | Triggered::Failed(reason)
                if self.cancel_was_requested(&run).await =>
            {
                self.state(|s| s.take_cancel_in_flight(run.id));
                let closing = outcome(
                    &self.clock,
                    RunStatus::Cancelled,
                    Progress::default(),
                    Some(format!(
                        "cancelled by an operator before Airbyte started a sync ({reason})"
                    )),
                );
                self.finish_run(run, closing).await;
            }
            Triggered::Skipped(reason) => {
                let closing = outcome(
                    &self.clock,
                    RunStatus::Skipped,
                    Progress::default(),
                    Some(reason),
                );
                self.finish_run(run, closing).await;
            }
            Triggered::Failed(reason) => {
                let closing = outcome(
                    &self.clock,
                    RunStatus::TriggerFailed,
                    Progress::default(),
                    Some(reason),
                );
                self.finish_run(run, closing).await;
            }
            Triggered::Cancelled => {
                self.state(|s| s.take_cancel_in_flight(run.id));
                let closing = outcome(
                    &self.clock,
                    RunStatus::Cancelled,
                    Progress::default(),
                    Some("cancelled by an operator before Airbyte started a sync".into()),
                );
                self.finish_run(run, closing).await;
            }
            Triggered::Interrupted => {
                self.state(|s| s.set_inactive(&run));
                self.release(run.id);
            }
        }
    }

    /// Asks Airbyte for the sync. A request Airbyte may have acted on without
    /// its answer arriving (a timeout, a 502; or any request of a run left
    /// pending by an earlier stop) is never sent again before the search for the
    /// job it may have started has answered: while that search fails, the run
    /// waits, since a second request could start a second job once the first
    /// ended, and the first would then be in no run's history. Waiting ends at
    /// the trigger deadline, with the run `trigger_failed`: a job Airbyte did
    /// start and never let us find is then on no run.
    async fn trigger(&self, run: &Run) -> Triggered {
        let connection_id = run.connection_id.as_str();
        let instance = self.instance(&run.instance);
        let taken_up = run.claimed_at < self.started_at;
        let policy = self
            .connection(&run.connection)
            .map_or(OnOverlap::Attach, |c| c.on_overlap);
        let deadline = tokio::time::Instant::now() + TRIGGER_DEADLINE;
        let give_up = || {
            Triggered::Failed(format!(
                "Airbyte did not start the sync within {}",
                humantime::format_duration(TRIGGER_DEADLINE)
            ))
        };
        // Whether a request may have reached Airbyte unanswered, and the search
        // for its job has not answered yet; and whether any ever did, so a 409
        // is first checked against the job such a request may have started late.
        let mut maybe_delivered = taken_up;
        let mut lost_any = taken_up;
        let mut tries: u32 = 0;
        loop {
            if maybe_delivered {
                match self
                    .job_started_since(&instance, connection_id, run.claimed_at)
                    .await
                {
                    Search::Found(job) => {
                        if tries == 0 {
                            tracing::info!(connection = %run.connection, instance = %run.instance,
                                run_id = run.id, job_id = job.id,
                                "found the job an earlier request started");
                        } else {
                            tracing::info!(connection = %run.connection, instance = %run.instance,
                                run_id = run.id, job_id = job.id,
                                "found the job a request with a lost answer started");
                        }
                        return Triggered::Started(job);
                    }
                    Search::Nothing => maybe_delivered = false,
                    Search::Unknown if tokio::time::Instant::now() >= deadline => {
                        return give_up();
                    }
                    Search::Unknown => {
                        tokio::time::sleep(self.workers.poll_interval).await;
                        continue;
                    }
                }
            }
            // A cancel asked meanwhile stops the run from asking (again): the
            // search above found no job an earlier request started. The first try
            // of a fresh run skips the read, which every tick would pay.
            if (tries > 0 || taken_up) && self.cancel_was_requested(run).await {
                return Triggered::Cancelled;
            }
            tries += 1;
            if tokio::time::Instant::now() >= deadline {
                return give_up();
            }
            // Last look before the side effect: a replica whose lease ran out (it
            // was frozen, say) asks for nothing; the run stays pending in the store
            // for the active replica to take up.
            if !self.lease.is_held() {
                return Triggered::Interrupted;
            }
            match instance.airbyte.sync(connection_id).await {
                Ok(job) => return Triggered::Started(job),
                Err(AirbyteError::AlreadyRunning {
                    after_lost_answer,
                    message,
                    ..
                }) => {
                    // The running job may be the one a lost answer started.
                    if after_lost_answer || lost_any {
                        match self
                            .job_started_since(&instance, connection_id, run.claimed_at)
                            .await
                        {
                            Search::Found(job) => return Triggered::Started(job),
                            Search::Nothing => {}
                            Search::Unknown => {
                                maybe_delivered = true;
                                tokio::time::sleep(self.workers.poll_interval).await;
                                continue;
                            }
                        }
                    }
                    match policy {
                        OnOverlap::Skip => {
                            return Triggered::Skipped(format!(
                                "a sync was already running for this connection (Airbyte answered 409: {message})"
                            ));
                        }
                        OnOverlap::Attach => match self.running_job(&instance, connection_id).await
                        {
                            Some(Ok(job)) => {
                                if let Ok(Some(other)) =
                                    self.store.run_with_job(&instance.name, job.id).await
                                {
                                    return Triggered::Skipped(format!(
                                        "run {other} follows the sync already running (job {}); its outcome is recorded there",
                                        job.id
                                    ));
                                }
                                tracing::info!(connection = %run.connection, instance = %run.instance,
                                    run_id = run.id, job_id = job.id,
                                    "a sync was already running; following it");
                                return Triggered::Started(job);
                            }
                            // No running sync job listed (it ended meanwhile, or the
                            // 409 is for a job of another kind, a reset say), or no
                            // listing: ask again after a poll interval.
                            Some(Err(())) | None => {
                                tokio::time::sleep(self.workers.poll_interval).await
                            }
                        },
                        OnOverlap::Queue => {
                            match self.running_job(&instance, connection_id).await {
                                Some(Ok(job)) => {
                                    self.wait_for_end(&instance, job.id, deadline).await
                                }
                                Some(Err(())) | None => {
                                    tokio::time::sleep(self.workers.poll_interval).await
                                }
                            }
                        }
                    }
                }
                Err(e) if e.is_retryable() => {
                    maybe_delivered |= e.answer_was_lost();
                    lost_any |= maybe_delivered;
                    tracing::warn!(connection = %run.connection, instance = %run.instance,
                        run_id = run.id, error = %e,
                        "Airbyte did not take the sync request; trying again");
                    tokio::time::sleep(self.workers.poll_interval).await;
                }
                Err(e) => return Triggered::Failed(e.to_string()),
            }
        }
    }

    /// Whether an operator asked to cancel the run while its sync was being
    /// requested (the store says; a store that cannot say counts as no).
    async fn cancel_was_requested(&self, run: &Run) -> bool {
        if run.cancel_requested_at.is_some() {
            return true;
        }
        let run_id = run.id;
        match self.store.run(run_id).await {
            Ok(run) => run.is_some_and(|r| r.cancel_requested_at.is_some()),
            Err(e) => {
                tracing::warn!(run_id, error = %e, "could not read whether a run was cancelled");
                false
            }
        }
    }

    /// A run whose row was no longer pending when its sync started: it moved on
    /// under this process (closed by another, say). Its job would run with nobody
    /// following it, so it is cancelled in Airbyte, and the slot is given back.
    async fn moved_on_while_starting(self: &Arc<Self>, run: Run, job_id: i64) {
        tracing::warn!(connection = %run.connection, instance = %run.instance,
            run_id = run.id, job_id,
            "the run moved on while its sync was requested; cancelling the job nobody follows");
        if !self.lease.is_held() {
            // Another replica is active: it follows the run's job from the store.
            return self.free(&run);
        }
        if let Err(e) = self.instance(&run.instance).airbyte.cancel(job_id).await {
            tracing::warn!(connection = %run.connection, instance = %run.instance,
                run_id = run.id, job_id, error = %e,
                "could not cancel the job of a run that moved on");
        }
        self.free(&run);
    }

    /// The connection's job that has not ended: none when every one ended, an
    /// error when Airbyte could not say.
    async fn running_job(
        &self,
        instance: &Instance,
        connection_id: &str,
    ) -> Option<Result<Job, ()>> {
        match instance
            .airbyte
            .connection_jobs(connection_id, ATTACH_SEARCH)
            .await
        {
            Ok(jobs) => jobs.into_iter().find(|j| !j.status.is_terminal()).map(Ok),
            Err(e) => {
                tracing::warn!(instance = %instance.name, connection_id,
                    error = %e, "could not list the connection's jobs");
                Some(Err(()))
            }
        }
    }

    /// Polls `job_id` until it ends (or `deadline`), for a run queued behind it.
    async fn wait_for_end(&self, instance: &Instance, job_id: i64, deadline: tokio::time::Instant) {
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(self.workers.poll_interval).await;
            match instance.airbyte.job(job_id).await {
                Ok(job) if job.status.is_terminal() => return,
                Err(AirbyteError::NotFound { .. }) => return,
                _ => {}
            }
        }
    }

    /// The newest job of the connection that no other run owns and that Airbyte
    /// says it created at or after `since`, give or take its clock being behind
    /// ours (`CLOCK_ALLOWANCE`), if Airbyte can say.
    async fn job_started_since(
        &self,
        instance: &Instance,
        connection_id: &str,
        since: DateTime<Utc>,
    ) -> Search {
        let jobs = match instance
            .airbyte
            .connection_jobs(connection_id, ATTACH_SEARCH)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(instance = %instance.name, connection_id, error = %e,
                    "could not list the connection's jobs to look for one a lost answer started");
                return Search::Unknown;
            }
        };
        let earliest = since - CLOCK_ALLOWANCE;
        // Jobs followed here whose runs' rows do not say so yet (the store refused
        // the write and owes it).
        let followed = self.state(|s| s.followed_jobs(&instance.name));
        let mut candidates: Vec<Job> = jobs
            .into_iter()
            .filter(|j| j.created_at.is_some_and(|c| c >= earliest))
            .filter(|j| !followed.contains(&j.id))
            .collect();
        candidates.sort_by_key(|j| std::cmp::Reverse(j.id));
        // A job another run already follows is that run's, not this one's (a queued
        // run taken up after a restart must not adopt its predecessor's job): the
        // allowance may reach back to an earlier run's job, which its row claims.
        for job in candidates {
            match self.store.run_with_job(&instance.name, job.id).await {
                Ok(None) => return Search::Found(job),
                Ok(Some(_)) => continue,
                Err(e) => {
                    tracing::warn!(instance = %instance.name, connection_id,
                        error = %e, "could not tell whether a job is followed");
                    return Search::Unknown;
                }
            }
        }
        Search::Nothing
    }
}
