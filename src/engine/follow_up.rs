//! The end of a run, and what it sets off: the outcome lands in the history and
//! the metrics, the run's slot frees up, and then, as the connection's policies
//! say, a queued run starts, a failed run is retried after its backoff, and the
//! connections that run `after` this one start once all they wait for succeeded.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Shared;
use super::owed::Owed;
use crate::config::ConnectionSettings;
use crate::notify::NotifyEvent;
use crate::run::{NewRun, Outcome, Run, RunStatus, Trigger};
use crate::store::{Closed, Closing, StoreError};

/// A run that ended, with its outcome and what it sets off, on its way to the
/// store.
#[derive(Debug)]
pub(super) struct Ending {
    pub run: Run,
    pub closing: Closing,
}

impl Shared {
    /// Closes a run with its outcome: history, metrics, log, slot; then its
    /// follow-ups. Every run ends through here (or [`Shared::finish_runs`]), once.
    pub(super) async fn finish_run(self: &Arc<Self>, run: Run, outcome: Outcome) {
        self.finish_runs(vec![(run, outcome)]).await;
    }

    /// Closes runs in one store transaction (a poll round's worth), with what
    /// their outcomes set off claimed in that same transaction, then does for
    /// each what [`Shared::finish_run`] does. The slots go back at once; should
    /// the store refuse, the outcomes wait in memory (see `owed`).
    pub(super) async fn finish_runs(self: &Arc<Self>, ended: Vec<(Run, Outcome)>) {
        if ended.is_empty() {
            return;
        }
        for (run, _) in &ended {
            self.free(run);
        }
        if let Err(e) = self.write_endings(&ended).await {
            self.owe(Owed::Finished(ended), &e);
        }
    }

    /// Decides what the outcomes set off and writes both in one transaction,
    /// then does what follows a recorded outcome. Decided at each try: outcomes
    /// owed through a store outage are followed up as the engine knows things
    /// when they land.
    pub(super) async fn write_endings(
        self: &Arc<Self>,
        ended: &[(Run, Outcome)],
    ) -> Result<(), StoreError> {
        let endings = self.follow_ups(ended).await?;
        let closings: Vec<Closing> = endings.iter().map(|e| e.closing.clone()).collect();
        let closed = self.store.finish(&closings).await?;
        self.landed(endings, closed);
        Ok(())
    }

    /// What each outcome sets off, decided before it is written so the store
    /// claims it with the outcome: a retry of a failed run, and the runs of the
    /// connections that wait on a succeeded one. A success counts for `after`
    /// from the moment Airbyte reports it, written or not, so upstreams that
    /// succeed in different rounds start their dependent once even through a
    /// store outage; a dependent is chosen once per batch.
    async fn follow_ups(&self, ended: &[(Run, Outcome)]) -> Result<Vec<Ending>, StoreError> {
        let mut chosen = HashSet::new();
        let mut endings = Vec::with_capacity(ended.len());
        for (run, outcome) in ended {
            let then = match outcome.status {
                RunStatus::Failed => self.retry(run).await?.into_iter().collect(),
                RunStatus::Succeeded => {
                    self.state(|s| s.succeeded(&run.connection, outcome.finished_at));
                    self.dependents(&run.connection, &mut chosen)
                }
                _ => Vec::new(),
            };
            endings.push(Ending {
                closing: Closing {
                    run_id: run.id,
                    outcome: outcome.clone(),
                    then,
                },
                run: run.clone(),
            });
        }
        Ok(endings)
    }

    /// Once outcomes are in the history: for each run the store closed, the
    /// log line, the metrics, the notice, and the runs its outcome set off,
    /// queued. A run closed before (cancelled by an operator meanwhile, say)
    /// was counted then.
    pub(super) fn landed(self: &Arc<Self>, endings: Vec<Ending>, closed: Vec<Closed>) {
        let mut closed: HashMap<i64, Vec<Run>> =
            closed.into_iter().map(|c| (c.run_id, c.then)).collect();
        for Ending { mut run, closing } in endings {
            let Some(then) = closed.remove(&run.id) else {
                continue;
            };
            apply(&mut run, closing.outcome);
            log_outcome(&run);
            self.metrics.run_ended(&run);
            let was_failing = self.state(|s| s.outcome_recorded(&run));
            if let Some(event) = NotifyEvent::of(run.status, was_failing) {
                self.notifier.notify(event, &run);
            }
            for next in then {
                self.claimed(&next);
                if next.trigger == Trigger::Retry {
                    tracing::info!(connection = %next.connection, instance = %next.instance,
                        run_id = next.id,
                        retry_of = next.retry_of.unwrap_or(run.id), due = %next.scheduled_for,
                        "retrying the failed sync");
                    let due = next.scheduled_for;
                    self.enqueue_at(next, due);
                } else {
                    tracing::info!(connection = %next.connection, instance = %next.instance,
                        run_id = next.id, after = %run.connection,
                        "every connection it runs after succeeded; starting it");
                    self.enqueue(next);
                }
            }
        }
    }

    /// Frees the run's slot and its connection, starting the run queued behind it.
    pub(super) fn free(self: &Arc<Self>, run: &Run) {
        match self.state(|s| s.free(run)) {
            Some(next) => self.enqueue(next),
            None => self.pump(),
        }
    }

    /// The retry of a failed run, due after its backoff, while the connection's
    /// `retries` allow. It is claimed with the failure (pending, due at the end
    /// of the backoff), so a restart does not lose it.
    ///
    /// A store that cannot count the earlier retries fails the whole write, which
    /// is then owed like any refused one.
    async fn retry(&self, run: &Run) -> Result<Option<NewRun>, StoreError> {
        let Some(connection) = self.connection(&run.connection) else {
            return Ok(None);
        };
        if connection.retries == 0 {
            return Ok(None);
        }
        let first = run.retry_of.unwrap_or(run.id);
        let done = self.store.retries_of(first).await?;
        if done >= connection.retries {
            tracing::warn!(connection = %run.connection, instance = %run.instance,
                run_id = run.id, retries = done,
                "sync failed and its retries are spent");
            return Ok(None);
        }
        let now = self.clock.now();
        let backoff = retry_backoff(&connection, done);
        Ok(Some(NewRun {
            connection: run.connection.clone(),
            connection_id: run.connection_id.clone(),
            instance: run.instance.clone(),
            trigger: Trigger::Retry,
            scheduled_for: now + chrono::Duration::from_std(backoff).unwrap_or_default(),
            retry_of: Some(first),
            claimed_at: now,
        }))
    }

    /// The runs of each connection that runs `after` `upstream` and whose every
    /// upstream has now succeeded since its own last run.
    fn dependents(&self, upstream: &str, chosen: &mut HashSet<String>) -> Vec<NewRun> {
        let Some(dependents) = self.catalog().dependents.get(upstream).cloned() else {
            return Vec::new();
        };
        let now = self.clock.now();
        let mut runs = Vec::new();
        for dependent in dependents {
            if !dependent.enabled
                || chosen.contains(&dependent.name)
                || !self.state(|s| !s.is_paused(&dependent.name) && s.upstream_ready(&dependent))
            {
                continue;
            }
            chosen.insert(dependent.name.clone());
            runs.push(NewRun {
                connection: dependent.name.clone(),
                connection_id: dependent.connection_id.clone(),
                instance: dependent.instance.clone(),
                trigger: Trigger::Dependency,
                scheduled_for: now,
                retry_of: None,
                claimed_at: now,
            });
        }
        runs
    }
}

/// The run as its outcome leaves it.
pub(super) fn apply(run: &mut Run, outcome: Outcome) {
    run.status = outcome.status;
    run.finished_at = Some(outcome.finished_at);
    run.attempts = run.attempts.max(outcome.progress.attempts);
    run.records_synced = outcome.progress.records_synced.or(run.records_synced);
    run.bytes_synced = outcome.progress.bytes_synced.or(run.bytes_synced);
    run.error = outcome.error;
}

/// Exponential from `retry_backoff`, capped at `retry_backoff_max`.
fn retry_backoff(connection: &ConnectionSettings, done: u32) -> std::time::Duration {
    connection
        .retry_backoff
        .saturating_mul(2u32.saturating_pow(done.min(30)))
        .min(connection.retry_backoff_max)
}

fn log_outcome(run: &Run) {
    let job_id = run.job_id.unwrap_or_default();
    match run.status {
        RunStatus::Succeeded => tracing::info!(
            connection = %run.connection, instance = %run.instance, run_id = run.id, job_id,
            records = run.records_synced.unwrap_or(0), bytes = run.bytes_synced.unwrap_or(0),
            attempts = run.attempts, "sync succeeded"),
        RunStatus::Skipped => tracing::info!(
            connection = %run.connection, instance = %run.instance, run_id = run.id,
            reason = run.error.as_deref().unwrap_or(""), "run skipped"),
        status => tracing::warn!(
            connection = %run.connection, instance = %run.instance, run_id = run.id, job_id,
            status = %status, error = run.error.as_deref().unwrap_or(""), "sync did not succeed"),
    }
}
