//! The engine: cron ticks become claimed runs, runs become Airbyte syncs, and
//! syncs are followed until they end. It knows neither SQL nor URLs: it speaks to
//! the history through [`Store`] and to Airbyte through [`Airbyte`].
//!
//! A run's path is a straight line through the submodules: [`schedule`] decides
//! when and claims the run, [`dispatch`] waits for a slot and triggers the sync,
//! [`tracker`] polls the job to its end, and [`follow_up`] records the outcome and
//! starts what it calls for (a retry, a queued run, dependent connections).
//!
//! Those files do the I/O. What the engine holds in memory about connections and
//! runs (active and queued runs, slots, followed jobs, pauses, cancels on their
//! way) has one owner, [`state`], and changes only through its methods: a reader
//! finds there everything that can change a connection's state in memory. The
//! rest (configuration, the writes the store owes, the watchdog's heartbeats) is
//! each kept by the one file that changes it.

mod airbyte;
mod clock;
mod control;
mod dispatch;
#[cfg(test)]
mod fake;
mod follow_up;
mod instance;
mod live;
mod owed;
mod schedule;
mod state;
#[cfg(test)]
mod tests;
mod tracker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ConnectionSettings, GroupSettings, SharedConnections, WorkerSettings};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::replica::Lease;
use crate::run::{NewRun, Outcome, Progress, Run, RunStatus, Trigger};
use crate::store::{Store, StoreError};
use instance::Instance;
use state::State;

pub use airbyte::Airbyte;
pub use clock::Clock;
pub use control::{CancelOutcome, ConnectionStatus};
pub use instance::only_instance;
pub use live::{LiveSync, RunDetail, usual_duration};

/// How long in-flight work may go on after shutdown is asked for. Airbyte jobs
/// themselves run on; the next start takes them up again from the history.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How far behind ours Airbyte's clock may be, for its times (a job's
/// `createdAt`, `updatedAt`) to be compared with ours: listings and the search for
/// a job a lost answer started reach this far back. It also covers Airbyte's
/// one-second timestamps.
const CLOCK_ALLOWANCE: chrono::Duration = chrono::Duration::seconds(60);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no connection is named `{0}`")]
    UnknownConnection(String),
    #[error("no run {0}")]
    UnknownRun(i64),
    #[error("run {0} already ended ({1})")]
    RunEnded(i64, RunStatus),
    #[error("run {0} is followed by another cronbyte process")]
    NotFollowedHere(i64),
    #[error("run {0}'s job already ended in Airbyte ({1}); the run records it at the next poll")]
    JobEnded(i64, &'static str),
    #[error("run {0}'s job is being cancelled for its timeout already")]
    CancellingForTimeout(i64),
    #[error(transparent)]
    Airbyte(#[from] crate::airbyte::Error),
    /// Asked of a standby replica: only the active one acts on runs.
    #[error("{}", match .0 {
        Some(active) => format!("this replica is a standby; ask the active replica, {active}"),
        None => "this replica is a standby and no replica is active right now; try again shortly".into(),
    })]
    Standby(Option<String>),
}

/// What the engine is given to work with.
#[derive(Clone)]
pub struct EngineParts {
    pub store: Arc<dyn Store>,
    /// Every Airbyte instance the config names, by name.
    pub instances: BTreeMap<String, Arc<dyn Airbyte>>,
    pub metrics: Arc<Metrics>,
    pub workers: WorkerSettings,
    pub groups: Vec<GroupSettings>,
    pub connections: SharedConnections,
    pub clock: Clock,
    pub notifier: Notifier,
    /// Whether this replica may act on Airbyte: asked before every sync and cancel.
    /// An engine started without it held is a standby's: it answers reads only.
    pub lease: Lease,
    /// For a connection with no tick in the history, the instant from which its
    /// ticks count as missed at start (the misfire policy applies to them): the
    /// gap before a replica took over. `None`: only ticks after the start count.
    pub missed_since: Option<DateTime<Utc>>,
}

/// The running engine. Cheap to clone; every clone drives the same engine.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

/// A connection's settings keyed, hashed and ordered by its name: the catalog's index
/// and the schedule's heap hold the settings themselves, not copies of 10,000 names.
#[derive(Clone)]
pub(crate) struct ByName(Arc<ConnectionSettings>);

impl ByName {
    pub(crate) fn name(&self) -> &str {
        &self.0.name
    }
}

impl std::borrow::Borrow<str> for ByName {
    fn borrow(&self) -> &str {
        self.name()
    }
}

impl std::hash::Hash for ByName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for ByName {}

impl PartialOrd for ByName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

/// The connections the engine schedules, as the config last (re)loaded says.
pub(crate) struct Catalog {
    by_name: HashSet<ByName>,
    /// Ordered as configured.
    ordered: Vec<Arc<ConnectionSettings>>,
    /// `[[groups]]` limits by name.
    group_limits: HashMap<String, usize>,
    /// For each connection, the connections that run `after` it.
    dependents: HashMap<String, Vec<Arc<ConnectionSettings>>>,
}

impl Catalog {
    /// The connection named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<ConnectionSettings>> {
        self.by_name.get(name).map(|c| &c.0)
    }

    // `ByName` hashes and compares the name alone; the interior mutability clippy sees
    // is the rule's remembered next fire, which neither touches.
    #[allow(clippy::mutable_key_type)]
    fn new(ordered: SharedConnections, groups: Vec<GroupSettings>) -> Self {
        let by_name = ordered.iter().map(|c| ByName(Arc::clone(c))).collect();
        let mut dependents: HashMap<String, Vec<Arc<ConnectionSettings>>> = HashMap::new();
        for connection in &ordered {
            for upstream in &connection.after {
                dependents
                    .entry(upstream.clone())
                    .or_default()
                    .push(Arc::clone(connection));
            }
        }
        Self {
            by_name,
            ordered,
            group_limits: groups
                .into_iter()
                .map(|g| (g.name, g.max_concurrent))
                .collect(),
            dependents,
        }
    }
}

pub(crate) struct Shared {
    store: Arc<dyn Store>,
    /// The Airbyte instances by name: those of the config, and any that open runs of
    /// an earlier config are on. Fixed at start.
    instances: BTreeMap<String, Arc<Instance>>,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    workers: WorkerSettings,
    clock: Clock,
    catalog: std::sync::RwLock<Arc<Catalog>>,
    /// Told when the catalog changes, so the schedule is rebuilt.
    reloaded: tokio::sync::Notify,
    /// What the engine holds in memory about connections and runs, behind one
    /// lock taken for one method of [`State`] at a time.
    state: Mutex<State>,
    /// Writes the store refused, waiting for it to work again.
    owed: owed::OwedQueue,
    /// When the schedule loop last turned, for the watchdog.
    heartbeat: Mutex<tokio::time::Instant>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Runs claimed before this instant were claimed by an earlier process (or
    /// an earlier term of this one).
    started_at: DateTime<Utc>,
    lease: Lease,
    /// Whether this engine schedules and follows runs; a standby's only reads.
    active: bool,
    missed_since: Option<DateTime<Utc>>,
}

impl Engine {
    /// Takes up the runs the history says are open, then starts the schedule and
    /// the tracker. Returns once both run; `shutdown` stops them. Without the lease
    /// held, it is a standby's engine: it starts nothing and answers reads only.
    pub async fn start(
        parts: EngineParts,
        shutdown: CancellationToken,
    ) -> Result<Self, EngineError> {
        let active = parts.lease.is_held();
        let state = State::new(parts.store.marks().await?, parts.store.paused().await?);
        let mut instances: BTreeMap<String, Arc<Instance>> = parts
            .instances
            .into_iter()
            .map(|(name, airbyte)| (name.clone(), Arc::new(Instance::new(name, airbyte))))
            .collect();
        let open = if active {
            parts.store.open_runs().await?
        } else {
            Vec::new()
        };
        for run in &open {
            if !instances.contains_key(&run.instance) {
                tracing::error!(instance = %run.instance, connection = %run.connection, run_id = run.id,
                    "an open run is on an Airbyte instance the config does not name; it stays open until a config names the instance again");
                let unconfigured = Instance::unconfigured(run.instance.clone());
                instances.insert(run.instance.clone(), Arc::new(unconfigured));
            }
        }
        let shared = Arc::new(Shared {
            store: parts.store,
            instances,
            metrics: parts.metrics,
            notifier: parts.notifier,
            workers: parts.workers,
            // At the store's precision (milliseconds), as the claims it is
            // compared with are read back.
            started_at: {
                let now = parts.clock.now();
                DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
            },
            clock: parts.clock,
            catalog: std::sync::RwLock::new(Arc::new(Catalog::new(
                parts.connections,
                parts.groups,
            ))),
            reloaded: tokio::sync::Notify::new(),
            state: Mutex::new(state),
            heartbeat: Mutex::new(tokio::time::Instant::now()),
            owed: Default::default(),
            tasks: TaskTracker::new(),
            shutdown,
            lease: parts.lease,
            active,
            missed_since: parts.missed_since,
        });
        if !active {
            return Ok(Self { shared });
        }
        shared.take_up_open_runs(open);
        shared.tasks.spawn(schedule::run(Arc::clone(&shared)));
        for instance in shared.instances.values() {
            let poll = tracker::run(Arc::clone(&shared), Arc::clone(instance));
            shared.tasks.spawn(poll);
        }
        Ok(Self { shared })
    }

    /// Waits until every engine task has stopped after shutdown, at most the
    /// grace period plus a margin.
    pub async fn stopped(&self) {
        self.shared.tasks.close();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE * 2, self.shared.tasks.wait()).await;
    }

    /// Swaps in a new set of connections and groups: added connections start
    /// firing, removed ones stop (their runs in flight are followed to the end),
    /// changed rules and policies apply from the next tick.
    pub fn reload(&self, connections: SharedConnections, groups: Vec<GroupSettings>) {
        // The metrics label each connection's series with its instance; a connection
        // moved to another one takes its series along, with the same swap.
        self.shared.metrics.set_connections(&connections);
        let catalog = Arc::new(Catalog::new(connections, groups));
        let old = std::mem::replace(
            &mut *self
                .shared
                .catalog
                .write()
                .unwrap_or_else(|p| p.into_inner()),
            catalog.clone(),
        );
        for removed in old
            .by_name
            .iter()
            .map(ByName::name)
            .filter(|n| !catalog.by_name.contains(*n))
        {
            self.shared.metrics.forget(removed);
        }
        self.shared.reloaded.notify_one();
        // Group limits may have grown: waiting runs may start now.
        self.shared.pump();
    }

    /// Which of the engine's loops, if any, made no progress within `within`.
    /// Progress is, for the schedule loop, a turn (it turns at least once a
    /// second, firing what is due); for an instance's poll loop, the start of a
    /// round or the end of one of its steps (a listing, a job's poll, a write).
    /// Rounds are a poll interval apart and no step of one waits on more than
    /// one request, so a poll loop gets a poll interval and its instance's
    /// request timeout more before it counts as stuck.
    pub fn stuck_loop(&self, within: Duration) -> Option<&'static str> {
        if !self.shared.active {
            return None;
        }
        let quiet = self
            .shared
            .heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if quiet > within {
            return Some("schedule");
        }
        let poll_stuck = self.shared.instances.values().any(|instance| {
            instance.poll_quiet()
                > within + self.shared.workers.poll_interval + instance.airbyte.request_timeout()
        });
        poll_stuck.then_some("poll")
    }

    /// Whether this engine schedules and follows runs (the active replica's), or
    /// only answers reads (a standby's).
    pub fn is_active(&self) -> bool {
        self.shared.active
    }

    /// Writes the store refused and the engine keeps until it works again;
    /// not ready while any wait.
    pub fn store_backlog(&self) -> usize {
        self.shared.owed_count()
    }

    /// Runs holding a slot right now (triggering or followed).
    pub fn in_flight(&self) -> usize {
        self.shared.state(|s| s.in_flight())
    }

    /// Claims a manual run of `name` now; it goes through the same queue and
    /// overlap policy as a tick.
    pub async fn trigger_now(&self, name: &str) -> Result<Run, EngineError> {
        self.shared.acting()?;
        let connection = self
            .shared
            .connection(name)
            .ok_or_else(|| EngineError::UnknownConnection(name.to_owned()))?;
        let new_run = NewRun {
            connection: connection.name.clone(),
            connection_id: connection.connection_id.clone(),
            instance: connection.instance.clone(),
            trigger: Trigger::Manual,
            scheduled_for: self.shared.clock.now(),
            retry_of: None,
            claimed_at: self.shared.clock.now(),
        };
        let run = self
            .shared
            .store
            .claim(new_run)
            .await?
            .ok_or_else(|| StoreError::Query("a manual run was not claimed".into()))?;
        self.shared.claimed(&run);
        self.shared.enqueue(run.clone());
        Ok(run)
    }
}

impl Shared {
    /// Runs `change` on the engine's in-memory state, under its one lock. Never
    /// awaits: the lock is held for that one call only.
    fn state<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        change(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Refuses what only the active replica may do, naming the active one.
    fn acting(&self) -> Result<(), EngineError> {
        if self.active && self.lease.is_held() {
            Ok(())
        } else {
            Err(EngineError::Standby(self.lease.active_elsewhere()))
        }
    }

    fn is_paused(&self, name: &str) -> bool {
        self.state(|s| s.is_paused(name))
    }

    fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn connection(&self, name: &str) -> Option<Arc<ConnectionSettings>> {
        self.catalog().get(name).cloned()
    }

    /// Remembers that `run` was claimed.
    fn claimed(&self, run: &Run) {
        let now = self.clock.now();
        self.state(|s| s.claimed(run, now));
    }

    /// At start, every run the history holds open is followed again: a running
    /// one by its job id; a pending one goes back in the queue, where it first
    /// looks for the job its request may have started before the daemon stopped.
    fn take_up_open_runs(self: &Arc<Self>, open: Vec<Run>) {
        if !open.is_empty() {
            tracing::info!(
                runs = open.len(),
                "taking up runs left open by the last stop"
            );
        }
        for run in open {
            match run.job_id {
                Some(job_id) => {
                    // An operator's cancel recorded before the stop may not have
                    // reached Airbyte: it is sent (again; a second one is harmless).
                    let cancel = run.cancel_requested_at.is_some();
                    let run_id = run.id;
                    self.follow(run, job_id, None);
                    if cancel {
                        self.cancel_for_operator(run_id);
                    }
                }
                None => {
                    let due = run.scheduled_for;
                    self.enqueue_at(run, due);
                }
            }
        }
    }

    /// The instance `name`: one the config names, or a stand-in for one it does
    /// not (which every call fails on).
    fn instance(&self, name: &str) -> Arc<Instance> {
        self.instances.get(name).cloned().unwrap_or_else(|| {
            tracing::error!(instance = name, "no such Airbyte instance");
            Arc::new(Instance::unconfigured(name.to_owned()))
        })
    }
}

/// An outcome stamped now.
fn outcome(clock: &Clock, status: RunStatus, progress: Progress, error: Option<String>) -> Outcome {
    Outcome {
        status,
        finished_at: clock.now(),
        progress,
        error,
    }
}
