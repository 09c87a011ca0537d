//! Writes the store refused (a full disk, an unwritable file), kept in memory in
//! order and written once the store works again, so an outage of the store
//! delays the history but loses nothing. Failures are logged once per round,
//! not once per write.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Shared;
use crate::run::{NewRun, Outcome, Run};
use crate::store::{Started, StoreError};

/// One write the store still owes.
#[derive(Debug)]
pub(super) enum Owed {
    /// Ticks not yet claimed; their runs start once claimed.
    Claims(Vec<NewRun>),
    /// A run's sync was started as this job.
    Started {
        run_id: i64,
        job_id: i64,
        at: DateTime<Utc>,
    },
    /// Runs ended with these outcomes; what they set off is decided, and they
    /// are counted and noticed, when they are written.
    Finished(Vec<(Run, Outcome)>),
}

impl Shared {
    /// Keeps a write for later; the next flush logs the outage.
    pub(super) fn owe(&self, write: Owed, error: &StoreError) {
        if matches!(error, StoreError::Fenced { .. }) {
            // Not owed: this replica's term is over, and the active replica takes
            // the runs up from what the store holds.
            tracing::warn!(error = %error, "a write of a term that ended was refused");
            drop(write);
            return;
        }
        self.metrics.store_error();
        tracing::debug!(error = %error, "the store refused a write; keeping it");
        let mut owed = self.owed.lock().unwrap_or_else(|p| p.into_inner());
        owed.push_back(write);
        if owed.len() == 1 {
            tracing::error!(error = %error,
                "the history store refuses writes; keeping them in memory until it works again");
        }
    }

    /// How many writes wait for the store.
    pub(super) fn owed_count(&self) -> usize {
        self.owed.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Writes what is owed, oldest first, stopping at the first refusal so the
    /// order holds. Called once per poll round.
    pub(super) async fn flush_owed(self: &Arc<Self>) {
        loop {
            let Some(next) = self
                .owed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front()
            else {
                return;
            };
            let result = match &next {
                Owed::Claims(ticks) => self.store.claim_many(ticks.clone()).await.map(|claimed| {
                    for run in claimed.into_iter().flatten() {
                        self.claimed(&run);
                        self.enqueue_jittered(run);
                    }
                }),
                Owed::Started { run_id, job_id, at } => {
                    self.store.mark_started(*run_id, *job_id, *at).await.map(
                        |started| match started {
                            Started::Running {
                                cancel_requested: true,
                            } => self.cancel_for_operator(*run_id),
                            Started::Running { .. } => {}
                            // Closed while the store was down: the outcome owed after
                            // this write is the run's; its job is followed to its end.
                            Started::NotPending => tracing::warn!(
                                run_id,
                                job_id,
                                "a run was no longer pending when its job id was written"
                            ),
                        },
                    )
                }
                // The slots were given back when the runs ended.
                Owed::Finished(ended) => self.write_endings(ended).await,
            };
            if let Err(e) = result {
                if matches!(e, StoreError::Fenced { .. }) {
                    // This replica's term is over: nothing it owes is its to write.
                    self.owed.lock().unwrap_or_else(|p| p.into_inner()).clear();
                    tracing::warn!(error = %e, "writes owed by a term that ended are dropped");
                    return;
                }
                self.metrics.store_error();
                let waiting = {
                    let mut owed = self.owed.lock().unwrap_or_else(|p| p.into_inner());
                    owed.push_front(next);
                    owed.len()
                };
                tracing::error!(owed = waiting, error = %e, "the history store still refuses writes");
                return;
            }
            if self.owed_count() == 0 {
                match self.store.ping().await {
                    Ok(()) => {
                        tracing::info!("the history store works again; every owed write is written")
                    }
                    Err(e) => tracing::error!(error = %e,
                        "the owed writes were written, but the store does not show them yet"),
                }
            }
        }
    }
}

/// A queue of owed writes.
pub(super) type OwedQueue = std::sync::Mutex<VecDeque<Owed>>;
