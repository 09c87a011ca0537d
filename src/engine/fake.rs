//! An Airbyte in memory, for the engine's tests on tokio's paused clock: a sync
//! starts a job that runs for its connection's planned time by the engine's
//! clock and ends as planned; any call can be made to fail, or to act and lose
//! its answer, for a number of calls or until an instant; every call is counted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Airbyte, Clock};
use crate::airbyte::{Error, Job, JobStatus};

/// More calls of one kind than any test makes, short of a runaway loop.
const RUNAWAY: usize = 100_000;

/// The calls of [`Airbyte`], to count them and aim faults at them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Sync,
    ConnectionJobs,
    Listing,
    Running,
    Job,
    Cancel,
    Workspaces,
}

/// How a call fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A 503: Airbyte did not take the request.
    Unavailable,
    /// Airbyte acts on the request, and its answer never arrives (a timeout).
    LostAnswer,
    /// A 409 on a sync, for a job no listing of sync jobs shows (a reset, say).
    Conflict,
    /// No answer: the call waits out the request timeout on tokio's clock, then
    /// fails as a timeout without Airbyte having acted (an instance that is down
    /// behind a proxy that never answers).
    Silent,
}

/// For how long a fault lasts.
#[derive(Clone, Copy, Debug)]
pub enum Lasting {
    /// The next this many calls.
    Calls(u32),
    /// Every call before this instant of the engine's clock.
    Until(DateTime<Utc>),
}

/// How a connection's jobs run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub lasts: Duration,
    pub ends: JobStatus,
    pub records: u64,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            lasts: Duration::from_secs(1),
            ends: JobStatus::Succeeded,
            records: 10,
        }
    }
}

#[derive(Debug)]
struct FakeJob {
    id: i64,
    connection_id: String,
    created_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    plan: Plan,
    cancelled_at: Option<DateTime<Utc>>,
}

impl FakeJob {
    fn at(&self, now: DateTime<Utc>) -> Job {
        let (status, updated_at) = match self.cancelled_at {
            Some(at) if at <= now && at < self.ends_at => (JobStatus::Cancelled, at),
            _ if now >= self.ends_at => (self.plan.ends.clone(), self.ends_at),
            _ => (JobStatus::Running, self.created_at),
        };
        let succeeded = status == JobStatus::Succeeded;
        // The source emits at an even pace while the job runs, as the emulator's
        // jobs do; commits come at the end.
        let ran = (now.min(self.ends_at) - self.created_at)
            .num_milliseconds()
            .max(0) as u128;
        let lasts = (self.ends_at - self.created_at).num_milliseconds().max(1) as u128;
        let emitted = u64::try_from(u128::from(self.plan.records) * ran.min(lasts) / lasts)
            .unwrap_or(u64::MAX);
        Job {
            id: self.id,
            connection_id: self.connection_id.clone(),
            failure: (status == JobStatus::Failed).then(|| "planned failure".to_owned()),
            status,
            created_at: Some(self.created_at),
            updated_at: Some(updated_at),
            started_at: Some(self.created_at),
            attempts: 1,
            records_synced: succeeded.then_some(self.plan.records),
            bytes_synced: succeeded.then_some(self.plan.records * 100),
            records_emitted: Some(emitted),
            bytes_emitted: Some(emitted * 100),
        }
    }
}

#[derive(Default)]
struct State {
    next_id: i64,
    plans: HashMap<String, Plan>,
    jobs: Vec<FakeJob>,
    faults: Vec<(Op, Fault, Lasting)>,
    calls: HashMap<Op, usize>,
    /// The most jobs running at once so far. Jobs only start in `sync`, so the
    /// count there, the new job included, is the high-water mark.
    max_running: usize,
}

pub struct FakeAirbyte {
    clock: Clock,
    state: Mutex<State>,
    request_timeout: Duration,
}

impl FakeAirbyte {
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            state: Mutex::new(State {
                next_id: 1,
                ..State::default()
            }),
            request_timeout: Duration::from_secs(1),
        }
    }

    /// How long a [`Fault::Silent`] call waits before it fails.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How the connection's jobs run from now on.
    pub fn plan(&self, connection_id: &str, plan: Plan) {
        self.state().plans.insert(connection_id.to_owned(), plan);
    }

    /// Makes calls of `op` fail with `fault` for as long as `lasting` says.
    pub fn fail(&self, op: Op, fault: Fault, lasting: Lasting) {
        self.state().faults.push((op, fault, lasting));
    }

    /// Every job, as Airbyte sees it now, oldest first.
    pub fn jobs(&self) -> Vec<Job> {
        let now = self.clock.now();
        self.state().jobs.iter().map(|j| j.at(now)).collect()
    }

    /// How many calls of `op` were made.
    pub fn calls(&self, op: Op) -> usize {
        self.state().calls.get(&op).copied().unwrap_or(0)
    }

    /// The most jobs that were running at once, by this fake's clock.
    pub fn max_running(&self) -> usize {
        self.state().max_running
    }

    /// Counts the call and says which fault, if any, it meets. An engine that
    /// calls without ever waiting would hold tokio's paused clock still and hang
    /// its test: past a bound, the call panics instead, and the test fails on
    /// its counts.
    fn enter(&self, op: Op) -> Option<Fault> {
        let now = self.clock.now();
        let mut state = self.state();
        let calls = state.calls.entry(op).or_default();
        *calls += 1;
        assert!(
            *calls < RUNAWAY,
            "{calls} calls of {op:?}: the engine calls Airbyte in a loop that never waits"
        );
        let mut met = None;
        state.faults.retain_mut(|(aimed, fault, lasting)| {
            if *aimed != op || met.is_some() {
                return true;
            }
            match lasting {
                Lasting::Calls(0) => false,
                Lasting::Calls(n) => {
                    met = Some(*fault);
                    *n -= 1;
                    *n > 0
                }
                Lasting::Until(at) if now < *at => {
                    met = Some(*fault);
                    true
                }
                Lasting::Until(_) => false,
            }
        });
        met
    }

    /// Runs a call: refused before acting on a 503, unanswered, answered, or acted
    /// on and its answer lost.
    async fn call<T>(
        &self,
        op: Op,
        act: impl FnOnce(&mut State, DateTime<Utc>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let endpoint = format!("{op:?}");
        let fault = self.enter(op);
        match fault {
            Some(Fault::Silent) => {
                tokio::time::sleep(self.request_timeout).await;
                return Err(Error::Timeout {
                    endpoint,
                    after: self.request_timeout,
                });
            }
            Some(Fault::Unavailable) => {
                return Err(Error::Unavailable {
                    endpoint,
                    status: 503,
                    message: "planned outage".into(),
                });
            }
            Some(Fault::Conflict) => {
                return Err(Error::AlreadyRunning {
                    endpoint,
                    connection_id: String::new(),
                    message: "A reset is running for this connection".into(),
                    after_lost_answer: false,
                });
            }
            _ => {}
        }
        let now = self.clock.now();
        let answer = act(&mut self.state(), now);
        match fault {
            Some(Fault::LostAnswer) => Err(Error::Timeout {
                endpoint,
                after: Duration::from_secs(1),
            }),
            _ => answer,
        }
    }
}

fn not_found(job_id: i64) -> Error {
    Error::NotFound {
        endpoint: "jobs/get".into(),
        message: format!("Could not find job with id: {job_id}"),
    }
}

#[async_trait]
impl Airbyte for FakeAirbyte {
    async fn sync(&self, connection_id: &str) -> Result<Job, Error> {
        self.call(Op::Sync, |state, now| {
            if state
                .jobs
                .iter()
                .any(|j| j.connection_id == connection_id && !j.at(now).status.is_terminal())
            {
                return Err(Error::AlreadyRunning {
                    endpoint: "connections/sync".into(),
                    connection_id: connection_id.to_owned(),
                    message: "A sync is already running for this connection".into(),
                    after_lost_answer: false,
                });
            }
            let plan = state.plans.get(connection_id).cloned().unwrap_or_default();
            let id = state.next_id;
            state.next_id += 1;
            let ends_at = now + chrono::Duration::from_std(plan.lasts).expect("a short plan");
            let job = FakeJob {
                id,
                connection_id: connection_id.to_owned(),
                created_at: now,
                ends_at,
                plan,
                cancelled_at: None,
            };
            let seen = job.at(now);
            state.jobs.push(job);
            let running = state
                .jobs
                .iter()
                .filter(|j| !j.at(now).status.is_terminal())
                .count();
            state.max_running = state.max_running.max(running);
            Ok(seen)
        })
        .await
    }

    async fn connection_jobs(&self, connection_id: &str, limit: u32) -> Result<Vec<Job>, Error> {
        self.call(Op::ConnectionJobs, |state, now| {
            Ok(state
                .jobs
                .iter()
                .rev()
                .filter(|j| j.connection_id == connection_id)
                .take(limit as usize)
                .map(|j| j.at(now))
                .collect())
        })
        .await
    }

    async fn jobs_updated_since(
        &self,
        _workspaces: &[String],
        since: DateTime<Utc>,
        page_size: u32,
        offset: u32,
    ) -> Result<Vec<Job>, Error> {
        self.call(Op::Listing, |state, now| {
            let mut changed: Vec<Job> = state
                .jobs
                .iter()
                .map(|j| j.at(now))
                .filter(|j| j.updated_at.is_some_and(|u| u >= since))
                .collect();
            changed.sort_by_key(|j| std::cmp::Reverse(j.updated_at));
            Ok(changed
                .into_iter()
                .skip(offset as usize)
                .take(page_size as usize)
                .collect())
        })
        .await
    }

    async fn running_jobs(
        &self,
        _workspaces: &[String],
        page_size: u32,
    ) -> Result<Vec<Job>, Error> {
        self.call(Op::Running, |state, now| {
            Ok(state
                .jobs
                .iter()
                .map(|j| j.at(now))
                .filter(|j| j.status == JobStatus::Running)
                .take(page_size as usize)
                .collect())
        })
        .await
    }

    async fn job(&self, job_id: i64) -> Result<Job, Error> {
        self.call(Op::Job, |state, now| {
            state
                .jobs
                .iter()
                .find(|j| j.id == job_id)
                .map(|j| j.at(now))
                .ok_or_else(|| not_found(job_id))
        })
        .await
    }

    async fn cancel(&self, job_id: i64) -> Result<Job, Error> {
        self.call(Op::Cancel, |state, now| {
            let job = state
                .jobs
                .iter_mut()
                .find(|j| j.id == job_id)
                .ok_or_else(|| not_found(job_id))?;
            if job.at(now).status.is_terminal() {
                // As Airbyte does: a 500 for a job that is no longer running.
                return Err(Error::Unavailable {
                    endpoint: "jobs/cancel".into(),
                    status: 500,
                    message: "Failed to cancel job: it is not running".into(),
                });
            }
            job.cancelled_at = Some(now);
            Ok(job.at(now))
        })
        .await
    }

    async fn listing_workspaces(&self) -> Result<Vec<String>, Error> {
        self.call(Op::Workspaces, |_, _| {
            Ok(vec!["5ae6b09b-fdec-41af-aaf7-7d94cfc33ef6".to_owned()])
        })
        .await
    }

    fn request_timeout(&self) -> Duration {
        self.request_timeout
    }
}
