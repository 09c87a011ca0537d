//! Everything the emulator knows: its workspace, definitions, sources, destinations,
//! connections, jobs, plans, tokens and request counts, with the domain rules that change them.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use super::catalog::{self, ConnectorKind, Definition};
use super::errors::ApiError;
use super::plan::{Ending, JobPlan, JobStatus, JobView, evaluate};
use super::schedule::Schedule;
use super::{EmulatorAuth, EmulatorOptions, Faults, JobSnapshot, RequestCounts};

/// The organization every OSS workspace belongs to.
pub(crate) const DEFAULT_ORGANIZATION: Uuid = Uuid::nil();

/// Maps the tokio clock (pausable in tests) onto wall-clock epoch milliseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    base: Instant,
    base_ms: i64,
    /// How far this Airbyte's clock is behind the real one (negative: ahead).
    behind_ms: i64,
}

impl Clock {
    fn new() -> Self {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            });
        Self {
            base: Instant::now(),
            base_ms,
            behind_ms: 0,
        }
    }

    /// Sets the clock `by` behind the real one, as on a server whose clock drifted.
    pub(crate) fn set_behind(&mut self, by: Duration) {
        self.behind_ms = millis(by);
    }

    pub(crate) fn epoch_ms(&self, at: Instant) -> i64 {
        self.base_ms + millis(at.saturating_duration_since(self.base)) - self.behind_ms
    }

    pub(crate) fn epoch_secs(&self, at: Instant) -> i64 {
        self.epoch_ms(at).div_euclid(1000)
    }
}

pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The workspace of an OSS install.
#[derive(Clone, Debug)]
pub(crate) struct Workspace {
    pub(crate) id: Uuid,
    pub(crate) customer_id: Uuid,
    pub(crate) name: String,
    pub(crate) slug: String,
    pub(crate) email: String,
}

/// A configured source or destination.
#[derive(Clone, Debug)]
pub(crate) struct Actor {
    pub(crate) id: Uuid,
    pub(crate) definition_id: Uuid,
    pub(crate) definition_name: &'static str,
    pub(crate) kind: ConnectorKind,
    pub(crate) workspace_id: Uuid,
    pub(crate) name: String,
    /// Unmasked; masking happens when it is shown.
    pub(crate) configuration: Value,
    pub(crate) created_at: i64,
    pub(crate) connections: Vec<Uuid>,
}

/// Sources or destinations, by id and in creation order.
#[derive(Debug, Default)]
pub(crate) struct Actors {
    pub(crate) by_id: HashMap<Uuid, Actor>,
    pub(crate) order: Vec<Uuid>,
}

impl Actors {
    fn insert(&mut self, actor: Actor) {
        self.order.push(actor.id);
        self.by_id.insert(actor.id, actor);
    }

    pub(crate) fn in_order(&self) -> impl Iterator<Item = &Actor> {
        self.order.iter().filter_map(|id| self.by_id.get(id))
    }
}

/// A connection. Fields clients may patch freely live in `settings`, keyed as in
/// `ConnectionRead`, so `connections/update` and rendering stay in step with the spec. The
/// schedule is typed instead: the server derives its three fields from one stored value.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    pub(crate) id: Uuid,
    pub(crate) workspace_id: Uuid,
    pub(crate) name: String,
    pub(crate) source_id: Uuid,
    pub(crate) destination_id: Uuid,
    pub(crate) status: String,
    pub(crate) sync_catalog: Value,
    pub(crate) settings: Map<String, Value>,
    pub(crate) schedule: Schedule,
    pub(crate) created_at: i64,
    /// Ascending, so the last one is the connection's newest job.
    pub(crate) job_ids: Vec<i64>,
}

/// What a new connection is made from, as a create request gives it.
#[derive(Debug)]
pub(crate) struct NewConnection {
    /// `None`: named after its source and destination.
    pub(crate) name: Option<String>,
    pub(crate) source_id: Uuid,
    pub(crate) destination_id: Uuid,
    pub(crate) status: String,
    /// `None`: every stream the source discovers, in its default configuration.
    pub(crate) sync_catalog: Option<Value>,
    /// Over the defaults of [`default_connection_settings`].
    pub(crate) settings: Map<String, Value>,
    pub(crate) schedule: Schedule,
}

/// `JobConfigType` of the jobs the emulator runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobKind {
    Sync,
    Reset,
    Clear,
}

impl JobKind {
    pub(crate) fn config_type(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Reset => "reset_connection",
            Self::Clear => "clear",
        }
    }

    pub(crate) fn public_type(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Reset => "reset",
            Self::Clear => "clear",
        }
    }
}

/// A job; its state is computed from `plan`, `created` and `ending` whenever it is read.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub(crate) id: i64,
    pub(crate) kind: JobKind,
    pub(crate) connection_id: Uuid,
    pub(crate) workspace_id: Uuid,
    pub(crate) created: Instant,
    pub(crate) created_ms: i64,
    pub(crate) plan: JobPlan,
    pub(crate) ending: Option<Ending>,
    /// `(name, namespace)` of the streams the job moves.
    pub(crate) streams: Vec<(String, Option<String>)>,
}

impl Job {
    pub(crate) fn view(&self, now: Instant) -> JobView {
        evaluate(
            &self.plan,
            now.saturating_duration_since(self.created),
            self.ending,
        )
    }

    pub(crate) fn epoch_ms(&self, offset: Duration) -> i64 {
        self.created_ms.saturating_add(millis(offset))
    }

    pub(crate) fn epoch_secs(&self, offset: Duration) -> i64 {
        self.epoch_ms(offset).div_euclid(1000)
    }

    pub(crate) fn created_secs(&self) -> i64 {
        self.created_ms.div_euclid(1000)
    }
}

#[derive(Debug, Default)]
struct PlanBook {
    fixed: Option<JobPlan>,
    queued: VecDeque<JobPlan>,
}

/// Why a job could not start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StartRefusal {
    NoSuchConnection,
    Inactive,
    AlreadyRunning,
}

/// Why a job could not be cancelled.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CancelRefusal {
    NoSuchJob,
    AlreadyEnded(JobStatus),
}

/// All of the emulator's data.
pub(crate) struct State {
    pub(crate) options: EmulatorOptions,
    pub(crate) clock: Clock,
    pub(crate) workspace: Workspace,
    pub(crate) source_definitions: Vec<Definition>,
    pub(crate) destination_definitions: Vec<Definition>,
    pub(crate) sources: Actors,
    pub(crate) destinations: Actors,
    pub(crate) connections: HashMap<Uuid, Connection>,
    pub(crate) connection_order: Vec<Uuid>,
    /// Job `n` is at index `n - 1`.
    pub(crate) jobs: Vec<Job>,
    plans: HashMap<Uuid, PlanBook>,
    pub(crate) check_results: HashMap<Uuid, Result<(), String>>,
    pub(crate) catalogs: HashMap<Uuid, Vec<Value>>,
    pub(crate) faults: Faults,
    pub(crate) auth: EmulatorAuth,
    tokens: HashMap<String, Instant>,
    pub(crate) requests: RequestCounts,
    /// The source and destination `add_connection` shares between its connections.
    shared_actors: Option<(Uuid, Uuid)>,
}

impl State {
    pub(crate) fn new(options: EmulatorOptions) -> Self {
        Self {
            options,
            clock: Clock::new(),
            workspace: Workspace {
                id: Uuid::new_v4(),
                customer_id: Uuid::new_v4(),
                name: "Default Workspace".into(),
                slug: "default-workspace".into(),
                email: "admin@example.com".into(),
            },
            source_definitions: catalog::source_definitions(),
            destination_definitions: catalog::destination_definitions(),
            sources: Actors::default(),
            destinations: Actors::default(),
            connections: HashMap::new(),
            connection_order: Vec::new(),
            jobs: Vec::new(),
            plans: HashMap::new(),
            check_results: HashMap::new(),
            catalogs: HashMap::new(),
            faults: Faults::default(),
            auth: EmulatorAuth::None,
            tokens: HashMap::new(),
            requests: RequestCounts::default(),
            shared_actors: None,
        }
    }

    pub(crate) fn count_request(&mut self, operation: &str) {
        self.requests.total += 1;
        *self
            .requests
            .by_operation
            .entry(operation.to_string())
            .or_insert(0) += 1;
    }

    fn now_secs(&self) -> i64 {
        self.clock.epoch_secs(Instant::now())
    }

    fn require_workspace(&self, workspace_id: Uuid) -> Result<(), ApiError> {
        if workspace_id == self.workspace.id {
            Ok(())
        } else {
            Err(ApiError::not_found("STANDARD_WORKSPACE", workspace_id))
        }
    }

    pub(crate) fn create_actor(
        &mut self,
        is_source: bool,
        workspace_id: Uuid,
        definition_id: Uuid,
        name: String,
        configuration: Value,
    ) -> Result<Uuid, ApiError> {
        self.require_workspace(workspace_id)?;
        let (definitions, config_type) = if is_source {
            (&self.source_definitions, "STANDARD_SOURCE_DEFINITION")
        } else {
            (
                &self.destination_definitions,
                "STANDARD_DESTINATION_DEFINITION",
            )
        };
        let definition = definitions
            .iter()
            .find(|d| d.id == definition_id)
            .ok_or_else(|| ApiError::not_found(config_type, definition_id))?;
        let actor = Actor {
            id: Uuid::new_v4(),
            definition_id,
            definition_name: definition.name,
            kind: definition.kind,
            workspace_id,
            name,
            configuration,
            created_at: self.now_secs(),
            connections: Vec::new(),
        };
        let id = actor.id;
        if is_source {
            self.sources.insert(actor);
        } else {
            self.destinations.insert(actor);
        }
        Ok(id)
    }

    pub(crate) fn source(&self, id: Uuid) -> Result<&Actor, ApiError> {
        self.sources
            .by_id
            .get(&id)
            .ok_or_else(|| ApiError::not_found("SOURCE_CONNECTION", id))
    }

    pub(crate) fn destination(&self, id: Uuid) -> Result<&Actor, ApiError> {
        self.destinations
            .by_id
            .get(&id)
            .ok_or_else(|| ApiError::not_found("DESTINATION_CONNECTION", id))
    }

    pub(crate) fn connection(&self, id: Uuid) -> Result<&Connection, ApiError> {
        self.connections
            .get(&id)
            .ok_or_else(|| ApiError::not_found("STANDARD_SYNC", id))
    }

    pub(crate) fn connection_mut(&mut self, id: Uuid) -> Result<&mut Connection, ApiError> {
        self.connections
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("STANDARD_SYNC", id))
    }

    /// The streams a source reports: what a test set, or what its connector discovers.
    pub(crate) fn discover(&self, source_id: Uuid) -> Result<Vec<Value>, ApiError> {
        let source = self.source(source_id)?;
        Ok(self
            .catalogs
            .get(&source_id)
            .cloned()
            .unwrap_or_else(|| catalog::discovered_streams(source.kind, &source.configuration)))
    }

    /// Whether a source or destination counts as `active`: it feeds an active connection.
    pub(crate) fn actor_is_active(&self, actor: &Actor) -> bool {
        actor.connections.iter().any(|id| {
            self.connections
                .get(id)
                .is_some_and(|c| c.status == "active")
        })
    }

    pub(crate) fn create_connection(&mut self, new: NewConnection) -> Result<Uuid, ApiError> {
        let NewConnection {
            name,
            source_id,
            destination_id,
            status,
            sync_catalog,
            settings,
            schedule,
        } = new;
        let source = self.source(source_id)?;
        let destination = self.destination(destination_id)?;
        let name = name.unwrap_or_else(|| format!("{} → {}", source.name, destination.name));
        let workspace_id = source.workspace_id;
        let sync_catalog = match sync_catalog {
            Some(catalog) => catalog,
            None => catalog::catalog_of(&self.discover(source_id)?),
        };
        let mut all_settings = default_connection_settings();
        all_settings.extend(settings);
        let connection = Connection {
            id: Uuid::new_v4(),
            workspace_id,
            name,
            source_id,
            destination_id,
            status,
            sync_catalog,
            settings: all_settings,
            schedule,
            created_at: self.now_secs(),
            job_ids: Vec::new(),
        };
        let id = connection.id;
        if let Some(source) = self.sources.by_id.get_mut(&source_id) {
            source.connections.push(id);
        }
        if let Some(destination) = self.destinations.by_id.get_mut(&destination_id) {
            destination.connections.push(id);
        }
        self.connection_order.push(id);
        self.connections.insert(id, connection);
        Ok(id)
    }

    pub(crate) fn add_connection(&mut self, name: &str) -> Uuid {
        let (source_id, destination_id) = match self.shared_actors {
            Some(pair) => pair,
            None => {
                let workspace_id = self.workspace.id;
                let source = self.create_actor(
                    true,
                    workspace_id,
                    catalog::POSTGRES_SOURCE,
                    "ecommerce".into(),
                    json!({
                        "host": "postgres.internal",
                        "port": 5432,
                        "database": "ecommerce",
                        "schemas": ["public"],
                        "username": "airbyte",
                        "password": "emulated-password",
                        "ssl_mode": {"mode": "prefer"},
                        "replication_method": {"method": "Standard"},
                    }),
                );
                let destination = self.create_actor(
                    false,
                    workspace_id,
                    catalog::S3_DESTINATION,
                    "warehouse".into(),
                    json!({
                        "s3_bucket_name": "warehouse",
                        "s3_bucket_path": "airbyte",
                        "s3_bucket_region": "us-east-1",
                        "access_key_id": "AKIAEMULATOR",
                        "secret_access_key": "emulated-secret",
                        "format": {"format_type": "Parquet"},
                    }),
                );
                match (source, destination) {
                    (Ok(source), Ok(destination)) => {
                        self.shared_actors = Some((source, destination));
                        (source, destination)
                    }
                    // Both definitions are seeded and the workspace is ours: unreachable.
                    _ => return Uuid::nil(),
                }
            }
        };
        self.create_connection(NewConnection {
            name: Some(name.to_string()),
            source_id,
            destination_id,
            status: "active".into(),
            sync_catalog: None,
            settings: Map::new(),
            schedule: Schedule::Manual,
        })
        .unwrap_or_else(|_| Uuid::nil())
    }

    pub(crate) fn set_connection_active(&mut self, id: Uuid, active: bool) {
        if let Some(connection) = self.connections.get_mut(&id) {
            connection.status = if active { "active" } else { "inactive" }.into();
        }
    }

    pub(crate) fn set_schedule(&mut self, id: Uuid, schedule: Schedule) {
        if let Some(connection) = self.connections.get_mut(&id) {
            connection.schedule = schedule;
        }
    }

    pub(crate) fn set_plan(&mut self, connection_id: Uuid, plan: JobPlan) {
        self.plans.entry(connection_id).or_default().fixed = Some(plan);
    }

    pub(crate) fn push_plan(&mut self, connection_id: Uuid, plan: JobPlan) {
        self.plans
            .entry(connection_id)
            .or_default()
            .queued
            .push_back(plan);
    }

    fn next_plan(&mut self, connection_id: Uuid) -> JobPlan {
        if let Some(book) = self.plans.get_mut(&connection_id) {
            if let Some(plan) = book.queued.pop_front() {
                return plan;
            }
            if let Some(plan) = &book.fixed {
                return plan.clone();
            }
        }
        self.options.default_plan.clone()
    }

    pub(crate) fn job(&self, id: i64) -> Option<&Job> {
        let index = usize::try_from(id.checked_sub(1)?).ok()?;
        self.jobs.get(index)
    }

    /// The connection's newest job, if it has not ended yet.
    fn running_job(&self, connection: &Connection, now: Instant) -> Option<i64> {
        let newest = *connection.job_ids.last()?;
        let job = self.job(newest)?;
        (!job.view(now).status.is_terminal()).then_some(newest)
    }

    /// Starts a job on a connection, with Airbyte's rules: only active connections sync,
    /// one job at a time; a reset cancels the running sync first.
    pub(crate) fn start_job(
        &mut self,
        connection_id: Uuid,
        kind: JobKind,
        now: Instant,
    ) -> Result<i64, StartRefusal> {
        let connection = self
            .connections
            .get(&connection_id)
            .ok_or(StartRefusal::NoSuchConnection)?;
        if connection.status != "active" {
            return Err(StartRefusal::Inactive);
        }
        let running = self.running_job(connection, now);
        let streams = catalog::selected_streams(&connection.sync_catalog);
        let workspace_id = connection.workspace_id;
        if let Some(running) = running {
            if kind == JobKind::Sync {
                return Err(StartRefusal::AlreadyRunning);
            }
            // The running job was just seen alive, so cancelling it cannot be refused.
            let _ = self.cancel_job(running, now);
        }
        let plan = match kind {
            JobKind::Sync => self.next_plan(connection_id),
            // Clearing data is quick and moves no records.
            JobKind::Reset | JobKind::Clear => JobPlan::succeeding(Duration::from_secs(1), 0, 0),
        };
        let id = i64::try_from(self.jobs.len()).unwrap_or(i64::MAX - 1) + 1;
        self.jobs.push(Job {
            id,
            kind,
            connection_id,
            workspace_id,
            created: now,
            created_ms: self.clock.epoch_ms(now),
            plan,
            ending: None,
            streams,
        });
        if let Some(connection) = self.connections.get_mut(&connection_id) {
            connection.job_ids.push(id);
        }
        Ok(id)
    }

    pub(crate) fn cancel_job(&mut self, id: i64, now: Instant) -> Result<(), CancelRefusal> {
        let index = id
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| *i < self.jobs.len())
            .ok_or(CancelRefusal::NoSuchJob)?;
        let job = &mut self.jobs[index];
        let status = job.view(now).status;
        if status.is_terminal() {
            return Err(CancelRefusal::AlreadyEnded(status));
        }
        job.ending = Some(Ending::Cancelled(
            now.saturating_duration_since(job.created),
        ));
        Ok(())
    }

    pub(crate) fn finish_all_jobs(&mut self, now: Instant) {
        for job in &mut self.jobs {
            if job.ending.is_none() && !job.view(now).status.is_terminal() {
                job.ending = Some(Ending::Finished(now.saturating_duration_since(job.created)));
            }
        }
    }

    pub(crate) fn snapshots(&self, now: Instant) -> Vec<JobSnapshot> {
        self.jobs
            .iter()
            .map(|job| {
                let view = job.view(now);
                let totals = view.totals();
                JobSnapshot {
                    id: job.id,
                    connection_id: job.connection_id,
                    status: view.status.as_str().to_string(),
                    attempts: view.attempts.len(),
                    records_committed: totals.records_committed,
                    bytes_committed: totals.bytes_committed,
                    created_at: job.created_secs(),
                    updated_at: job.epoch_secs(view.updated),
                    created_at_ms: job.created_ms,
                    ended_at_ms: view
                        .status
                        .is_terminal()
                        .then(|| job.epoch_ms(view.updated)),
                }
            })
            .collect()
    }

    pub(crate) fn set_auth(&mut self, auth: EmulatorAuth) {
        self.auth = auth;
        self.tokens.clear();
    }

    /// Remembers a freshly issued token until it expires.
    pub(crate) fn remember_token(&mut self, token: String, expires: Instant, now: Instant) {
        self.tokens.retain(|_, expiry| *expiry > now);
        self.tokens.insert(token, expires);
    }

    pub(crate) fn token_is_valid(&self, token: &str, now: Instant) -> bool {
        self.tokens.get(token).is_some_and(|expiry| *expiry > now)
    }
}

/// What `connections/create` stores for fields the request leaves out.
fn default_connection_settings() -> Map<String, Value> {
    let defaults = json!({
        "namespaceDefinition": "destination",
        "prefix": "",
        "operationIds": [],
        "breakingChange": false,
        "notifySchemaChanges": false,
        "notifySchemaChangesByEmail": false,
        "nonBreakingChangesPreference": "ignore",
        "backfillPreference": "disabled",
        "tags": [],
    });
    match defaults {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::plan::AttemptPlan;

    // The state takes `now` from its callers, so tests move time by handing it later
    // instants; no paused runtime is needed.

    fn state() -> State {
        State::new(EmulatorOptions::default())
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_second_sync_of_a_running_connection_is_refused() {
        let mut state = state();
        let connection = state.add_connection("orders");
        let now = Instant::now();
        assert_eq!(state.start_job(connection, JobKind::Sync, now), Ok(1));
        assert_eq!(
            state.start_job(connection, JobKind::Sync, now),
            Err(StartRefusal::AlreadyRunning)
        );
    }

    #[test]
    fn a_finished_job_lets_the_connection_sync_again() {
        let mut state = state();
        let connection = state.add_connection("orders");
        let t0 = Instant::now();
        assert_eq!(state.start_job(connection, JobKind::Sync, t0), Ok(1));
        assert_eq!(
            state.start_job(connection, JobKind::Sync, t0 + secs(3)),
            Ok(2)
        );
    }

    #[test]
    fn an_inactive_connection_does_not_sync() {
        let mut state = state();
        let connection = state.add_connection("orders");
        state.set_connection_active(connection, false);
        assert_eq!(
            state.start_job(connection, JobKind::Sync, Instant::now()),
            Err(StartRefusal::Inactive)
        );
    }

    #[test]
    fn an_unknown_connection_does_not_sync() {
        let mut state = state();
        assert_eq!(
            state.start_job(Uuid::new_v4(), JobKind::Sync, Instant::now()),
            Err(StartRefusal::NoSuchConnection)
        );
    }

    #[test]
    fn pushed_plans_are_used_once_in_order_before_the_set_plan() {
        let mut state = state();
        let connection = state.add_connection("orders");
        let first = JobPlan::failing(Duration::ZERO, "first");
        let second = JobPlan::failing(Duration::ZERO, "second");
        let fixed = JobPlan::hanging();
        state.set_plan(connection, fixed.clone());
        state.push_plan(connection, first.clone());
        state.push_plan(connection, second.clone());
        assert_eq!(state.next_plan(connection), first);
        assert_eq!(state.next_plan(connection), second);
        assert_eq!(state.next_plan(connection), fixed);
        assert_eq!(state.next_plan(connection), fixed);
        assert_eq!(state.next_plan(Uuid::new_v4()), JobPlan::default());
    }

    #[test]
    fn job_states_follow_the_clock_through_a_retry() {
        let mut state = state();
        let connection = state.add_connection("orders");
        state.push_plan(
            connection,
            JobPlan::failing(secs(1), "network")
                .pending_for(secs(1))
                .then(AttemptPlan::succeeding(secs(1), 10, 100)),
        );
        let t0 = Instant::now();
        assert_eq!(state.start_job(connection, JobKind::Sync, t0), Ok(1));
        let status = |at: Instant| state.snapshots(at)[0].status.clone();
        assert_eq!(status(t0), "pending");
        assert_eq!(status(t0 + Duration::from_millis(1_500)), "running");
        assert_eq!(status(t0 + Duration::from_millis(2_500)), "incomplete");
        assert_eq!(status(t0 + Duration::from_millis(3_500)), "running");
        let snapshot = &state.snapshots(t0 + Duration::from_millis(4_500))[0];
        assert_eq!(snapshot.status, "succeeded");
        assert_eq!(snapshot.attempts, 2);
        assert_eq!(snapshot.records_committed, 10);
        assert_eq!(snapshot.updated_at - snapshot.created_at, 4);
    }

    #[test]
    fn cancelling_twice_is_refused_because_the_job_already_ended() {
        let mut state = state();
        let connection = state.add_connection("orders");
        state.set_plan(connection, JobPlan::hanging());
        let t0 = Instant::now();
        assert_eq!(state.start_job(connection, JobKind::Sync, t0), Ok(1));
        assert_eq!(state.cancel_job(1, t0 + secs(1)), Ok(()));
        assert_eq!(
            state.cancel_job(1, t0 + secs(2)),
            Err(CancelRefusal::AlreadyEnded(JobStatus::Cancelled))
        );
        assert_eq!(state.cancel_job(99, t0), Err(CancelRefusal::NoSuchJob));
        assert_eq!(state.cancel_job(0, t0), Err(CancelRefusal::NoSuchJob));
    }

    #[test]
    fn finishing_all_jobs_makes_hanging_ones_succeed() {
        let mut state = state();
        let connection = state.add_connection("orders");
        state.set_plan(connection, JobPlan::hanging());
        let t0 = Instant::now();
        assert_eq!(state.start_job(connection, JobKind::Sync, t0), Ok(1));
        state.finish_all_jobs(t0 + secs(5));
        let snapshot = &state.snapshots(t0 + secs(6))[0];
        assert_eq!(snapshot.status, "succeeded");
        assert_eq!(snapshot.records_committed, 1_000);
        assert_eq!(snapshot.updated_at - snapshot.created_at, 5);
    }

    #[test]
    fn a_reset_cancels_the_running_sync() {
        let mut state = state();
        let connection = state.add_connection("orders");
        state.set_plan(connection, JobPlan::hanging());
        let t0 = Instant::now();
        assert_eq!(state.start_job(connection, JobKind::Sync, t0), Ok(1));
        assert_eq!(
            state.start_job(connection, JobKind::Reset, t0 + secs(1)),
            Ok(2)
        );
        let snapshots = state.snapshots(t0 + secs(1));
        assert_eq!(snapshots[0].status, "cancelled");
        assert_eq!(snapshots[1].status, "pending");
    }

    #[test]
    fn add_connection_shares_one_source_and_destination() {
        let mut state = state();
        let a = state.add_connection("a");
        let b = state.add_connection("b");
        assert_ne!(a, b);
        assert_eq!(state.sources.order.len(), 1);
        assert_eq!(state.destinations.order.len(), 1);
        let source = state.connection(a).map(|c| c.source_id).ok();
        assert_eq!(source, state.sources.order.first().copied());
    }

    #[test]
    fn a_new_connection_is_manual_until_its_schedule_is_set() {
        let mut state = state();
        let connection = state.add_connection("orders");
        let schedule = |state: &State| state.connection(connection).map(|c| c.schedule.clone());
        assert_eq!(schedule(&state), Ok(Schedule::Manual));
        let cron = Schedule::Cron {
            expression: "0 0 6 * * ?".into(),
            zone: "Europe/Berlin".into(),
        };
        state.set_schedule(connection, cron.clone());
        assert_eq!(schedule(&state), Ok(cron));
        state.set_schedule(Uuid::new_v4(), Schedule::Manual);
    }

    #[test]
    fn issued_tokens_expire() {
        let mut state = state();
        let t0 = Instant::now();
        state.remember_token("t".into(), t0 + secs(1), t0);
        assert!(state.token_is_valid("t", t0));
        assert!(!state.token_is_valid("t", t0 + secs(2)));
        assert!(!state.token_is_valid("other", t0));
    }
}
