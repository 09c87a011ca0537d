//! Everything the engine holds in memory about connections and runs, and every
//! change to it, in one place: which run each connection has active and which
//! waits behind it, the slots taken under the global and group caps, the runs
//! waiting for one, the jobs being followed, pauses, and the cancels on their way.
//!
//! [`State`] is the one owner of these facts. The engine keeps it behind its only
//! lock, taken for one call of a method here at a time and never held across an
//! await; the other files of the engine do their I/O (the store, Airbyte) and
//! report what came of it through these methods. Whatever must survive a restart
//! is in the store: this is rebuilt at start from the store's open runs, marks
//! and pauses.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::Catalog;
use super::live::{Counts, LiveSync};
use crate::airbyte::Job;
use crate::config::{ConnectionSettings, OnOverlap};
use crate::run::{Progress, Run, RunStatus, Trigger};
use crate::store::ConnectionMarks;

/// What the engine remembers of one connection while it runs.
#[derive(Debug, Default)]
struct ConnState {
    /// The run now triggering or following a job; at most one per connection.
    active: Option<i64>,
    /// A run waiting for the active one to end (`on_overlap = "queue"`).
    queued: Option<Run>,
    /// The newest tick claimed, for the misfire policy after a pause.
    last_tick: Option<DateTime<Utc>>,
    /// When its newest run was claimed, for `after` dependencies.
    last_claimed: Option<DateTime<Utc>>,
    /// When its newest succeeded run ended.
    last_success: Option<DateTime<Utc>>,
    /// Its newest run that counts failed (for recovery notices).
    failing: bool,
}

/// A run whose job is being followed.
#[derive(Debug)]
struct Tracked {
    run: Run,
    job_id: i64,
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
    /// The counts of the last minutes, for the live view.
    counts: Counts,
    /// The connection's usual duration; `None` until the history was read.
    usual: Option<Option<chrono::Duration>>,
}

impl Tracked {
    fn live(&self, now: DateTime<Utc>) -> LiveSync {
        LiveSync::of(
            &self.run,
            self.job_id,
            self.progress.attempts,
            &self.counts,
            self.usual.flatten(),
            now,
        )
    }
}

/// A followed run's job, as a cancel request sees it.
#[derive(Debug)]
pub(super) struct FollowedJob {
    pub instance: String,
    pub job_id: i64,
    /// An operator's cancel was accepted by Airbyte already.
    pub by_operator: bool,
    /// Airbyte accepted the cancel for the run's timeout.
    pub for_timeout: bool,
}

/// What a run does about another run of its connection in flight.
pub(super) enum Overlap {
    /// Nothing is in flight: trigger.
    Go,
    /// Wait behind the run in flight (`on_overlap = "queue"`).
    Wait,
    /// Do not start, for this reason.
    Skip(String),
}

/// Why cronbyte cancels a job.
#[derive(Clone, Copy, Debug)]
pub(super) enum Why {
    /// Its run passed the connection's timeout.
    Timeout,
    /// An operator cancelled its run.
    Operator,
}

/// A followed job whose cancel is to be sent now.
pub(super) struct DueCancel {
    pub run_id: i64,
    pub instance: String,
    pub job_id: i64,
    pub connection: String,
    pub why: Why,
}

/// The jobs a poll round reads: through one listing of changed jobs, or one by one.
#[derive(Default)]
pub(super) struct Round {
    /// (run id, job id) of the jobs the listing covers.
    pub batch: Vec<(i64, i64)>,
    /// (run id, job id) of the jobs read on their own.
    pub single: Vec<(i64, i64)>,
    /// The instant the listing starts from, when there is one.
    pub since: Option<DateTime<Utc>>,
}

/// What Airbyte's answers of a round changed.
#[derive(Default)]
pub(super) struct Answered {
    /// Runs whose counts moved.
    pub progressed: Vec<(i64, Progress)>,
    /// Runs whose job ended, with the job, the final counts, whether Airbyte
    /// accepted a cancel for the timeout, and whether an operator cancelled it.
    pub ended: Vec<Ended>,
    /// Runs whose job Airbyte no longer knows, with its last counts and Airbyte's words.
    pub vanished: Vec<(Run, i64, Progress, String)>,
}

/// A followed run whose job ended.
pub(super) struct Ended {
    pub run: Run,
    pub job: Job,
    pub progress: Progress,
    pub cancel_accepted: bool,
    pub by_operator: bool,
}

/// After this many polls in a row that Airbyte answers "no such job", the run is
/// closed as failed rather than followed forever.
const NOT_FOUND_LIMIT: u32 = 3;

/// Below this many followed jobs, reading each one is as cheap as a listing.
const BATCH_MIN: usize = 2;

#[derive(Debug, Default)]
pub(super) struct State {
    conns: HashMap<String, ConnState>,
    /// Runs waiting for a slot, oldest first.
    waiting: VecDeque<Run>,
    /// Runs being triggered or followed, by run id, with their group: each holds
    /// one slot until it ends.
    holders: HashMap<i64, Option<String>>,
    /// Slots held per group.
    groups: HashMap<String, usize>,
    tracked: HashMap<i64, Tracked>,
    /// Connections paused now, as the store last said.
    paused: HashSet<String>,
    /// Runs an operator cancelled while they waited, which must not start.
    cancelled: HashSet<i64>,
    /// Runs an operator cancelled while their sync was being requested: the
    /// hand-over between the control API and the run's start, whichever of the
    /// two sees the run's job first sends its cancel.
    cancels_in_flight: HashSet<i64>,
}

impl State {
    /// The state a start rebuilds from the store's marks and pauses.
    pub fn new(marks: Vec<ConnectionMarks>, paused: Vec<String>) -> Self {
        let conns = marks
            .into_iter()
            .map(|marks| {
                let state = ConnState {
                    last_tick: marks.last_tick,
                    last_claimed: marks.last_claimed,
                    last_success: marks.last_success,
                    // From the store, so the first success after a restart is still
                    // noticed as a recovery.
                    failing: marks.failures > 0,
                    ..ConnState::default()
                };
                (marks.connection, state)
            })
            .collect();
        Self {
            conns,
            paused: paused.into_iter().collect(),
            ..Self::default()
        }
    }

    fn conn(&mut self, name: &str) -> &mut ConnState {
        if !self.conns.contains_key(name) {
            self.conns.insert(name.to_owned(), ConnState::default());
        }
        self.conns.get_mut(name).expect("inserted above")
    }

    // -- connections -----------------------------------------------------------

    /// Notes that `run` was claimed at `now` (by the engine's clock, like the
    /// successes it is compared with).
    pub fn claimed(&mut self, run: &Run, now: DateTime<Utc>) {
        let state = self.conn(&run.connection);
        state.last_claimed = Some(now);
        if run.trigger == Trigger::Schedule {
            state.last_tick = Some(
                state
                    .last_tick
                    .map_or(run.scheduled_for, |t| t.max(run.scheduled_for)),
            );
        }
    }

    /// The newest tick claimed for the connection.
    pub fn last_tick(&self, name: &str) -> Option<DateTime<Utc>> {
        self.conns.get(name).and_then(|s| s.last_tick)
    }

    /// Notes a recorded outcome; says whether the connection was failing before
    /// it (a success after failures is a recovery).
    pub fn outcome_recorded(&mut self, run: &Run) -> bool {
        let state = self.conn(&run.connection);
        let was_failing = state.failing;
        match run.status {
            RunStatus::Failed | RunStatus::TimedOut | RunStatus::TriggerFailed => {
                state.failing = true
            }
            RunStatus::Succeeded => state.failing = false,
            _ => {}
        }
        was_failing
    }

    /// Notes that Airbyte reported a success of the connection that ended at `at`.
    pub fn succeeded(&mut self, name: &str, at: DateTime<Utc>) {
        let state = self.conn(name);
        state.last_success = Some(state.last_success.map_or(at, |t| t.max(at)));
    }

    /// Whether every connection `dependent` runs after succeeded since its own
    /// last run.
    pub fn upstream_ready(&self, dependent: &ConnectionSettings) -> bool {
        let since = self.conns.get(&dependent.name).and_then(|s| s.last_claimed);
        dependent.after.iter().all(|upstream| {
            let success = self.conns.get(upstream).and_then(|s| s.last_success);
            match (success, since) {
                (Some(success), Some(since)) => success > since,
                (Some(_), None) => true,
                (None, _) => false,
            }
        })
    }

    pub fn is_paused(&self, name: &str) -> bool {
        self.paused.contains(name)
    }

    /// Takes the store's set of paused connections; returns the connections
    /// resumed and those newly paused.
    pub fn set_paused(&mut self, now_paused: HashSet<String>) -> (Vec<String>, Vec<String>) {
        let resumed = self.paused.difference(&now_paused).cloned().collect();
        let paused = now_paused.difference(&self.paused).cloned().collect();
        self.paused = now_paused;
        (resumed, paused)
    }

    /// For each of `names`: its active run, and whether it is paused.
    pub fn standing<'a>(&self, names: impl Iterator<Item = &'a str>) -> Vec<(Option<i64>, bool)> {
        names
            .map(|name| {
                let active = self.conns.get(name).and_then(|s| s.active);
                (active, self.paused.contains(name))
            })
            .collect()
    }

    // -- the queue and its slots ------------------------------------------------

    /// Runs holding a slot.
    pub fn in_flight(&self) -> usize {
        self.holders.len()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn enqueue(&mut self, run: Run) {
        self.waiting.push_back(run);
    }

    /// Takes the waiting runs that may start now, oldest first, while slots are
    /// free; a run whose group is full lets the runs behind it go first. Each
    /// run returned holds a slot.
    pub fn startable(&mut self, cap: usize, catalog: &Catalog) -> Vec<Run> {
        let mut starts = Vec::new();
        let mut index = 0;
        while self.in_flight() < cap && index < self.waiting.len() {
            let group = catalog
                .get(&self.waiting[index].connection)
                .and_then(|c| c.group.clone());
            let group_full = group.as_ref().is_some_and(|g| {
                let limit = catalog.group_limits.get(g).copied().unwrap_or(usize::MAX);
                self.groups.get(g).copied().unwrap_or(0) >= limit
            });
            if group_full {
                index += 1;
                continue;
            }
            let Some(run) = self.waiting.remove(index) else {
                break;
            };
            self.take_slot(run.id, group);
            starts.push(run);
        }
        starts
    }

    fn take_slot(&mut self, run_id: i64, group: Option<String>) {
        if let Some(group) = &group {
            *self.groups.entry(group.clone()).or_default() += 1;
        }
        self.holders.insert(run_id, group);
    }

    /// Gives the run's slot back, if it held one.
    pub fn release(&mut self, run_id: i64) {
        if let Some(Some(group)) = self.holders.remove(&run_id)
            && let Some(n) = self.groups.get_mut(&group)
        {
            *n = n.saturating_sub(1);
        }
    }

    /// What a run does about another run of its connection being active; a run
    /// that may go ahead becomes the active one.
    pub fn overlap(&mut self, run: &Run, policy: OnOverlap) -> Overlap {
        let state = self.conn(&run.connection);
        let Some(active) = state.active.filter(|&a| a != run.id) else {
            state.active = Some(run.id);
            return Overlap::Go;
        };
        match policy {
            OnOverlap::Skip => Overlap::Skip(format!(
                "run {active} of this connection was still in flight (on_overlap = skip)"
            )),
            // The active run follows that job and records its outcome; this tick
            // adds nothing, so the job's result is recorded once.
            OnOverlap::Attach => Overlap::Skip(format!(
                "run {active} of this connection was still in flight; its job covers this tick (on_overlap = attach)"
            )),
            OnOverlap::Queue => match &state.queued {
                None => {
                    state.queued = Some(run.clone());
                    Overlap::Wait
                }
                Some(waiting) => Overlap::Skip(format!(
                    "run {} already waits for run {active} to end (on_overlap = queue keeps one)",
                    waiting.id
                )),
            },
        }
    }

    /// Frees the run's connection and slot; hands back the run queued behind it.
    pub fn free(&mut self, run: &Run) -> Option<Run> {
        let queued = self.set_inactive(run);
        self.release(run.id);
        queued
    }

    /// Marks the connection free of `run`; hands back the run queued behind it.
    pub fn set_inactive(&mut self, run: &Run) -> Option<Run> {
        let state = self.conn(&run.connection);
        if state.active == Some(run.id) {
            state.active = None;
            state.queued.take()
        } else {
            None
        }
    }

    // -- cancels before a job is known ------------------------------------------

    /// Forgets a run cancelled before it started wherever it waits: in the
    /// queue, queued behind its connection's run, or (checked at start) delayed.
    /// False, and nothing done, when the run holds a slot: its sync is being
    /// requested.
    pub fn cancel_waiting(&mut self, run_id: i64) -> bool {
        if self.holders.contains_key(&run_id) {
            return false;
        }
        self.waiting.retain(|r| r.id != run_id);
        for state in self.conns.values_mut() {
            if state.queued.as_ref().is_some_and(|r| r.id == run_id) {
                state.queued = None;
            }
        }
        self.cancelled.insert(run_id);
        true
    }

    /// Whether a run was cancelled while it waited, and so must not start.
    pub fn take_cancelled(&mut self, run_id: i64) -> bool {
        self.cancelled.remove(&run_id)
    }

    /// Notes an operator's cancel of a run whose sync is being requested.
    pub fn cancel_in_flight(&mut self, run_id: i64) {
        self.cancels_in_flight.insert(run_id);
    }

    /// Takes the note of an operator's cancel of a run whose sync was being
    /// requested: whether there was one.
    pub fn take_cancel_in_flight(&mut self, run_id: i64) -> bool {
        self.cancels_in_flight.remove(&run_id)
    }

    // -- followed jobs ----------------------------------------------------------

    /// Starts following `job_id` for `run`. A run taken up from an earlier
    /// process (`seen` is `None`) becomes its connection's active run and takes a
    /// slot now; one started here holds both already.
    pub fn follow(
        &mut self,
        run: Run,
        job_id: i64,
        seen: Option<&Job>,
        group: Option<String>,
        deadline: Option<DateTime<Utc>>,
    ) {
        if seen.is_none() {
            self.take_slot(run.id, group);
            self.conn(&run.connection).active = Some(run.id);
        }
        let progress = Progress {
            attempts: run.attempts,
            records_synced: run.records_synced,
            bytes_synced: run.bytes_synced,
        };
        self.tracked.insert(
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
                counts: Counts::default(),
                usual: None,
            },
        );
    }

    /// The job ids of the followed runs.
    pub fn followed_jobs(&self, instance: &str) -> HashSet<i64> {
        self.tracked
            .values()
            .filter(|t| t.run.instance == instance)
            .map(|t| t.job_id)
            .collect()
    }

    /// The job a followed run is following, and whether its cancel was asked.
    pub fn followed_job(&self, run_id: i64) -> Option<FollowedJob> {
        self.tracked.get(&run_id).map(|t| FollowedJob {
            instance: t.run.instance.clone(),
            job_id: t.job_id,
            by_operator: t.by_operator,
            for_timeout: t.cancel_accepted,
        })
    }

    /// Notes that an operator had the run's job cancelled.
    pub fn operator_cancelled(&mut self, run_id: i64) {
        if let Some(entry) = self.tracked.get_mut(&run_id) {
            entry.by_operator = true;
        }
    }

    /// Notes that an operator cancelled a followed run whose job was not known
    /// when they asked: its cancel is sent with the next due ones.
    pub fn owe_operator_cancel(&mut self, run_id: i64) {
        if let Some(entry) = self.tracked.get_mut(&run_id)
            && !entry.by_operator
        {
            entry.operator_cancel_owed = true;
        }
    }

    /// How long each connection's running syncs have run, for the metrics.
    pub fn running_ages(&self, now: DateTime<Utc>) -> Vec<(String, i64)> {
        self.tracked
            .values()
            .filter_map(|t| {
                let started = t.run.started_at?;
                Some((
                    t.run.connection.clone(),
                    (now - started).num_seconds().max(0),
                ))
            })
            .collect()
    }

    /// The live view of every followed run.
    pub fn live(&self, now: DateTime<Utc>) -> Vec<LiveSync> {
        self.tracked.values().map(|t| t.live(now)).collect()
    }

    /// The live view of one followed run.
    pub fn live_run(&self, run_id: i64, now: DateTime<Utc>) -> Option<LiveSync> {
        self.tracked.get(&run_id).map(|t| t.live(now))
    }

    /// The connections on `instance` with a followed run whose usual duration
    /// was not read from the history yet.
    pub fn usual_wanted(&self, instance: &str) -> HashSet<String> {
        self.tracked
            .values()
            .filter(|t| t.run.instance == instance && t.usual.is_none())
            .map(|t| t.run.connection.clone())
            .collect()
    }

    /// Notes the connection's usual duration on its followed runs.
    pub fn set_usual(&mut self, connection: &str, usual: Option<chrono::Duration>) {
        for t in self.tracked.values_mut() {
            if t.run.connection == connection {
                t.usual = Some(usual);
            }
        }
    }

    /// Splits the jobs followed on `instance` into those a listing of changed jobs covers
    /// (confirmed within `stale_after`, when `batching`) and those read one by
    /// one; the listing starts at the oldest update it covers, but never before
    /// `floor`.
    pub fn plan_round(
        &self,
        instance: &str,
        stale_after: Duration,
        batching: bool,
        floor: DateTime<Utc>,
    ) -> Round {
        let now = Instant::now();
        let mut round = Round::default();
        for t in self.tracked.values().filter(|t| t.run.instance == instance) {
            let fresh = t
                .confirmed
                .is_some_and(|c| now.duration_since(c) < stale_after);
            match t.last_update {
                Some(updated) if batching && fresh => {
                    round.since = Some(round.since.map_or(updated, |s| s.min(updated)));
                    round.batch.push((t.run.id, t.job_id));
                }
                _ => round.single.push((t.run.id, t.job_id)),
            }
        }
        if round.batch.len() < BATCH_MIN {
            round.single.append(&mut round.batch);
            round.since = None;
        }
        // Never reach back further than needed: a long-running job would otherwise
        // pull every job of the last hours into each listing.
        round.since = round.since.map(|s| s.max(floor));
        round
    }

    /// Takes a round's answers: counts that moved, jobs that ended (no longer
    /// followed), jobs Airbyte stopped knowing. Returns, beside, the answers
    /// that were errors other than "not found".
    pub fn answered(
        &mut self,
        answers: Vec<(i64, Result<Job, crate::airbyte::Error>)>,
        now: DateTime<Utc>,
    ) -> (Answered, Vec<crate::airbyte::Error>) {
        let mut out = Answered::default();
        let mut errors = Vec::new();
        for (run_id, answer) in answers {
            let Some(entry) = self.tracked.get_mut(&run_id) else {
                continue;
            };
            match answer {
                Ok(job) => {
                    entry.not_found = 0;
                    entry.confirmed = Some(Instant::now());
                    entry.last_update = job.updated_at.or(entry.last_update);
                    entry.counts.observe(now, &job);
                    let progress = Progress {
                        attempts: job.attempts.max(entry.progress.attempts),
                        records_synced: job.records_synced.or(entry.progress.records_synced),
                        bytes_synced: job.bytes_synced.or(entry.progress.bytes_synced),
                    };
                    if job.status.is_terminal() {
                        if let Some(done) = self.tracked.remove(&run_id) {
                            out.ended.push(Ended {
                                run: done.run,
                                job,
                                progress,
                                cancel_accepted: done.cancel_accepted,
                                by_operator: done.by_operator,
                            });
                        }
                    } else if progress != entry.progress {
                        entry.progress = progress.clone();
                        out.progressed.push((run_id, progress));
                    }
                }
                Err(crate::airbyte::Error::NotFound { message, .. }) => {
                    entry.not_found += 1;
                    if entry.not_found >= NOT_FOUND_LIMIT
                        && let Some(gone) = self.tracked.remove(&run_id)
                    {
                        out.vanished
                            .push((gone.run, gone.job_id, gone.progress, message));
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        (out, errors)
    }

    /// The cancels to send now: every job past its run's deadline, and every job
    /// an operator cancelled before it was known, unless one is on its way.
    pub fn due_cancels(&mut self, now: DateTime<Utc>) -> Vec<DueCancel> {
        self.tracked
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
                Some(DueCancel {
                    run_id: t.run.id,
                    instance: t.run.instance.clone(),
                    job_id: t.job_id,
                    connection: t.run.connection.clone(),
                    why,
                })
            })
            .collect()
    }

    /// Notes how a cancel sent for `run_id` fared: accepted, or to be asked
    /// again at a later poll. False when the run is no longer followed: its
    /// job ended and its outcome was recorded meanwhile.
    pub fn cancel_answered(&mut self, run_id: i64, why: Why, accepted: bool) -> bool {
        let Some(entry) = self.tracked.get_mut(&run_id) else {
            return false;
        };
        entry.cancelling = false;
        if accepted {
            match why {
                Why::Timeout => entry.cancel_accepted = true,
                Why::Operator => {
                    entry.operator_cancel_owed = false;
                    entry.by_operator = true;
                }
            }
        }
        true
    }
}
