//! What operators can ask of the running engine: how each connection stands,
//! a sync now, a run cancelled, a connection paused or resumed.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::live::LiveSync;
use super::state::FollowedJob;
use super::{Engine, EngineError, outcome};
use crate::airbyte::JobStatus;
use crate::run::{Progress, Run, RunStatus};
use crate::store::{AirbyteObject, HistoryFilter};

/// One connection as the control API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionStatus {
    pub name: String,
    pub connection_id: String,
    pub cron: Option<String>,
    pub timezone: String,
    pub enabled: bool,
    pub paused: bool,
    pub group: Option<String>,
    pub after: Vec<String>,
    pub next_run: Option<DateTime<Utc>>,
    /// The run now triggering or following a job.
    pub active_run: Option<i64>,
    pub last_run: Option<Run>,
    /// The sync this process follows for it now, with its live numbers.
    pub running: Option<LiveSync>,
}

/// What became of a cancel request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// Airbyte was asked to cancel the job; the run ends `cancelled` once it confirms.
    Requested,
    /// The run had not started a job; it is closed as `cancelled`.
    Cancelled,
}

impl Engine {
    /// Every configured connection with its rule, next and last run, and pause state.
    ///
    /// Linear in the number of connections: the newest runs and the pauses are
    /// looked up by name, and the engine's locks are held only to copy what they
    /// hold (one lookup per connection), not while the answer is built.
    pub async fn connections(&self) -> Result<Vec<ConnectionStatus>, EngineError> {
        self.refresh_standby_pauses().await?;
        let mut latest: HashMap<String, Run> = self
            .shared
            .store
            .latest_runs()
            .await?
            .into_iter()
            .map(|r| (r.connection.clone(), r))
            .collect();
        let mut all = self.standing_connections();
        for c in &mut all {
            c.last_run = latest.remove(&c.name);
        }
        Ok(all)
    }

    /// On a standby, reads the pauses the active replica wrote: a standby's engine
    /// runs no schedule loop to keep them up. Nothing to do on the active replica.
    pub async fn refresh_standby_pauses(&self) -> Result<(), EngineError> {
        let shared = &self.shared;
        if !shared.active {
            let paused = shared.store.paused().await?.into_iter().collect();
            shared.state(|s| s.set_paused(paused));
        }
        Ok(())
    }

    /// Every configured connection as [`Engine::connections`] gives it, but for
    /// its last run (`None`): what the engine holds in memory, without asking the
    /// store, for the status page, which reads the runs of the rows it shows.
    pub fn standing_connections(&self) -> Vec<ConnectionStatus> {
        let shared = &self.shared;
        let now = shared.clock.now();
        let catalog = shared.catalog();
        let (standing, live) = shared.state(|s| {
            let standing = s.standing(catalog.ordered.iter().map(|c| c.name.as_str()));
            (standing, s.live(now))
        });
        let mut running: HashMap<String, LiveSync> = HashMap::with_capacity(live.len());
        for sync in live {
            // The oldest, should a connection have two (one taken up at start).
            match running.get(&sync.connection) {
                Some(held) if held.run_id < sync.run_id => {}
                _ => {
                    running.insert(sync.connection.clone(), sync);
                }
            }
        }
        catalog
            .ordered
            .iter()
            .zip(standing)
            .map(|(c, (active_run, paused))| ConnectionStatus {
                name: c.name.clone(),
                connection_id: c.connection_id.clone(),
                cron: c.cron.as_ref().map(|r| r.expr().to_owned()),
                timezone: c.timezone.name().to_owned(),
                enabled: c.enabled,
                paused,
                group: c.group.clone(),
                after: c.after.clone(),
                next_run: c
                    .cron
                    .as_ref()
                    .filter(|_| c.enabled)
                    .and_then(|r| r.next_after(now)),
                active_run,
                last_run: None,
                running: running.remove(&c.name),
            })
            .collect()
    }

    /// The Airbyte objects `cronbyte apply` resolved declared names to.
    pub async fn airbyte_objects(&self) -> Result<Vec<AirbyteObject>, EngineError> {
        Ok(self.shared.store.airbyte_objects().await?)
    }

    /// The connection's newest runs, newest first.
    pub async fn runs(&self, name: &str, limit: u32) -> Result<Vec<Run>, EngineError> {
        self.known(name)?;
        let filter = HistoryFilter {
            connection: Some(name.to_owned()),
            limit,
        };
        Ok(self.shared.store.history(&filter).await?)
    }

    /// Pauses a connection: its ticks are not claimed until it is resumed.
    pub async fn pause(&self, name: &str) -> Result<bool, EngineError> {
        self.shared.acting()?;
        self.known(name)?;
        let changed = self.shared.store.set_paused(name, true).await?;
        self.shared.refresh_pauses().await;
        Ok(changed)
    }

    /// Resumes a connection; the ticks it missed follow its misfire policy.
    pub async fn resume(&self, name: &str) -> Result<bool, EngineError> {
        self.shared.acting()?;
        self.known(name)?;
        let changed = self.shared.store.set_paused(name, false).await?;
        self.shared.refresh_pauses().await;
        Ok(changed)
    }

    /// Cancels an open run: its Airbyte job when it has one, else the run itself.
    pub async fn cancel(&self, run_id: i64) -> Result<CancelOutcome, EngineError> {
        self.shared.acting()?;
        let shared = &self.shared;
        if let Some(followed) = shared.state(|s| s.followed_job(run_id)) {
            return self.cancel_job(run_id, followed).await;
        }
        let run = shared
            .store
            .run(run_id)
            .await?
            .ok_or(EngineError::UnknownRun(run_id))?;
        if !run.status.is_open() {
            return Err(EngineError::RunEnded(run_id, run.status));
        }
        if run.job_id.is_some() {
            // Open with a job but not followed here: another process follows it.
            return Err(EngineError::NotFollowedHere(run_id));
        }
        if !shared.state(|s| s.cancel_waiting(run_id)) {
            // Its sync is being requested: Airbyte may be starting a job this very
            // moment. The run keeps its slot; once the request is answered, its job
            // is cancelled in Airbyte, or it ends without one.
            shared.state(|s| s.cancel_in_flight(run_id));
            return if shared
                .store
                .request_cancel(run_id, shared.clock.now())
                .await?
            {
                // Its job may have become known meanwhile.
                if shared.state(|s| s.followed_job(run_id)).is_some() {
                    shared.cancel_for_operator(run_id);
                }
                Ok(CancelOutcome::Requested)
            } else {
                shared.state(|s| s.take_cancel_in_flight(run_id));
                let status = shared.store.run(run_id).await?.map(|r| r.status);
                Err(EngineError::RunEnded(
                    run_id,
                    status.unwrap_or(RunStatus::Cancelled),
                ))
            };
        }
        let closing = outcome(
            &shared.clock,
            RunStatus::Cancelled,
            Progress::default(),
            Some("cancelled by an operator before it started".into()),
        );
        Arc::clone(shared).finish_run(run, closing).await;
        Ok(CancelOutcome::Cancelled)
    }

    /// Cancels a followed run's job. Asked twice, the answer is the first one's;
    /// a job that ended on its own before the poll saw it is a conflict, not an
    /// Airbyte failure (Airbyte refuses to cancel it with a 500).
    async fn cancel_job(
        &self,
        run_id: i64,
        followed: FollowedJob,
    ) -> Result<CancelOutcome, EngineError> {
        let shared = &self.shared;
        if followed.by_operator {
            return Ok(CancelOutcome::Requested);
        }
        if followed.for_timeout {
            return Err(EngineError::CancellingForTimeout(run_id));
        }
        let airbyte = &shared.instance(&followed.instance).airbyte;
        shared.acting()?;
        if let Err(refused) = airbyte.cancel(followed.job_id).await {
            let Ok(job) = airbyte.job(followed.job_id).await else {
                return Err(refused.into());
            };
            match job.status {
                // Cancelled: by this request (its answer lost) or another's.
                JobStatus::Cancelled => {}
                status if status.is_terminal() => {
                    return Err(EngineError::JobEnded(run_id, status.as_str()));
                }
                _ => return Err(refused.into()),
            }
        }
        shared.state(|s| s.operator_cancelled(run_id));
        Ok(CancelOutcome::Requested)
    }

    fn known(&self, name: &str) -> Result<(), EngineError> {
        self.shared
            .connection(name)
            .map(|_| ())
            .ok_or_else(|| EngineError::UnknownConnection(name.to_owned()))
    }
}
