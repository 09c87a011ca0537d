//! The end of a run, and what it sets off: the outcome lands in the history and
//! the metrics, the run's slot frees up, and then, as the connection's policies
//! say, a queued run starts, a failed run is retried after its backoff, and the
//! connections that run `after` this one start once all they wait for succeeded.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Shared;
use super::owed::Owed;
use crate::config::ConnectionSettings;
use crate::notify::NotifyEvent;
use crate::run::{NewRun, Outcome, Run, RunStatus, Trigger};

impl Shared {
    /// Closes a run with its outcome: history, metrics, log, slot; then its
    /// follow-ups. Every run ends through here (or [`Shared::finish_runs`]), once.
    pub(super) async fn finish_run(self: &Arc<Self>, run: Run, outcome: Outcome) {
        self.finish_runs(vec![(run, outcome)]).await;
    }

    /// Closes runs in one store transaction (a poll round's worth), then does
    /// for each what [`Shared::finish_run`] does. Should the store refuse, the
    /// slots are still given back and the outcomes wait in memory (see `owed`).
    pub(super) async fn finish_runs(self: &Arc<Self>, ended: Vec<(Run, Outcome)>) {
        if ended.is_empty() {
            return;
        }
        let writes: Vec<(i64, Outcome)> =
            ended.iter().map(|(run, o)| (run.id, o.clone())).collect();
        match self.store.finish(&writes).await {
            Ok(closed) => {
                for (mut run, outcome) in ended {
                    apply(&mut run, outcome);
                    self.free(&run);
                    // A run closed before (cancelled by an operator meanwhile, say)
                    // was counted then.
                    let recorded = closed.contains(&run.id);
                    self.recorded(run, recorded).await;
                }
            }
            Err(e) => {
                for (run, _) in &ended {
                    self.free(run);
                }
                self.owe(Owed::Finished(ended), &e);
            }
        }
    }

    /// Frees the run's slot and its connection, starting the run queued behind it.
    pub(super) fn free(self: &Arc<Self>, run: &Run) {
        let queued = self.set_inactive(run);
        self.release(run.id);
        if let Some(next) = queued {
            self.enqueue(next);
        }
    }

    /// Once an outcome is in the history: the log line, the metrics, the notice,
    /// and what the outcome calls for (a retry, dependent connections).
    pub(super) async fn recorded(self: &Arc<Self>, run: Run, recorded: bool) {
        if !recorded {
            return;
        }
        log_outcome(&run);
        self.metrics.run_ended(&run);
        self.send_notice(&run);
        match run.status {
            RunStatus::Failed => self.retry(&run).await,
            RunStatus::Succeeded => {
                let finished = run.finished_at.unwrap_or_else(|| self.clock.now());
                self.lock_conns()
                    .entry(run.connection.clone())
                    .or_default()
                    .last_success = Some(finished);
                self.start_dependents(&run.connection).await;
            }
            _ => {}
        }
    }

    /// Notices a failure, or a recovery after failures.
    fn send_notice(&self, run: &Run) {
        let was_failing = {
            let mut conns = self.lock_conns();
            let state = conns.entry(run.connection.clone()).or_default();
            let was = state.failing;
            match run.status {
                RunStatus::Failed | RunStatus::TimedOut | RunStatus::TriggerFailed => {
                    state.failing = true
                }
                RunStatus::Succeeded => state.failing = false,
                _ => {}
            }
            was
        };
        if let Some(event) = NotifyEvent::of(run.status, was_failing) {
            self.notifier.notify(event, run);
        }
    }

    /// Marks the connection free of `run` and hands back the run queued behind it.
    pub(super) fn set_inactive(&self, run: &Run) -> Option<Run> {
        let mut conns = self.lock_conns();
        let state = conns.entry(run.connection.clone()).or_default();
        if state.active == Some(run.id) {
            state.active = None;
            state.queued.take()
        } else {
            None
        }
    }

    /// Claims a retry of a failed run after its backoff, while the connection's
    /// `retries` allow. The retry is in the history (pending, due at the end of
    /// the backoff) before it waits, so a restart does not lose it.
    async fn retry(self: &Arc<Self>, run: &Run) {
        let Some(connection) = self.connection(&run.connection) else {
            return;
        };
        if connection.retries == 0 {
            return;
        }
        let first = run.retry_of.unwrap_or(run.id);
        let done = match self.store.retries_of(first).await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(connection = %run.connection, run_id = run.id, error = %e,
                    "could not count earlier retries; not retrying");
                return;
            }
        };
        if done >= connection.retries {
            tracing::warn!(connection = %run.connection, run_id = run.id, retries = done,
                "sync failed and its retries are spent");
            return;
        }
        let backoff = retry_backoff(&connection, done);
        let due = self.clock.now() + chrono::Duration::from_std(backoff).unwrap_or_default();
        let new_run = NewRun {
            connection: run.connection.clone(),
            connection_id: run.connection_id.clone(),
            trigger: Trigger::Retry,
            scheduled_for: due,
            retry_of: Some(first),
            claimed_at: self.clock.now(),
        };
        match self.store.claim(new_run).await {
            Ok(Some(retry)) => {
                tracing::info!(connection = %run.connection, run_id = retry.id, retry_of = first,
                    retry = done + 1, due = %due, "retrying the failed sync");
                self.claimed(&retry);
                self.enqueue_at(retry, due);
            }
            Ok(None) => {}
            Err(e) => tracing::error!(connection = %run.connection, run_id = run.id, error = %e,
                "could not claim a retry"),
        }
    }

    /// Starts each connection that runs `after` `upstream` once every connection
    /// it waits for has succeeded since its own last run.
    async fn start_dependents(self: &Arc<Self>, upstream: &str) {
        let Some(dependents) = self.catalog().dependents.get(upstream).cloned() else {
            return;
        };
        for dependent in dependents {
            if !dependent.enabled
                || self.is_paused(&dependent.name)
                || !self.upstream_ready(&dependent)
            {
                continue;
            }
            let now = self.clock.now();
            let new_run = NewRun {
                connection: dependent.name.clone(),
                connection_id: dependent.connection_id.clone(),
                trigger: Trigger::Dependency,
                scheduled_for: now,
                retry_of: None,
                claimed_at: now,
            };
            match self.store.claim(new_run).await {
                Ok(Some(run)) => {
                    tracing::info!(connection = %dependent.name, run_id = run.id, after = %upstream,
                        "every connection it runs after succeeded; starting it");
                    self.claimed(&run);
                    self.enqueue(run);
                }
                Ok(None) => {}
                Err(e) => tracing::error!(connection = %dependent.name, error = %e,
                    "could not claim a dependency run"),
            }
        }
    }

    /// Whether every connection `dependent` runs after succeeded since its last run.
    fn upstream_ready(&self, dependent: &ConnectionSettings) -> bool {
        let conns = self.lock_conns();
        let since: Option<DateTime<Utc>> = conns.get(&dependent.name).and_then(|s| s.last_claimed);
        dependent.after.iter().all(|upstream| {
            let success = conns.get(upstream).and_then(|s| s.last_success);
            match (success, since) {
                (Some(success), Some(since)) => success > since,
                (Some(_), None) => true,
                (None, _) => false,
            }
        })
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
