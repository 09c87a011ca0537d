//! The history of [runs](crate::run): what the engine asks of a store, whatever
//! database holds it.
//!
//! The engine sees only [`Store`]. [`SqliteStore`] is the zero-setup default;
//! [`PgStore`] keeps the same history in PostgreSQL, where several processes can
//! share it (the tick claim is a unique insert, which both databases arbitrate,
//! and every transition names the state it expects). [`MemoryStore`] holds the
//! same history in memory, for tests of the engine on a paused clock. One suite
//! (`contract`) holds all three to the same promises.

#[cfg(test)]
mod contract;
mod memory;
mod postgres;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub use memory::MemoryStore;
pub use postgres::{Copied, PgStore, redacted};
pub use sqlite::SqliteStore;

use crate::config::StoreSettings;
use crate::run::{NewRun, Outcome, Progress, Run, RunStatus, UnknownText};

/// Opens the store `[store]` names, applying pending migrations: the PostgreSQL
/// database of `url` when it is set, else the SQLite file at `path`. Nothing else
/// names a backend.
pub async fn open(settings: &StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &settings.url {
        Some(url) => Arc::new(
            PgStore::open_holding(url, settings.lease.saturating_sub(settings.lease_renewal))
                .await?,
        ),
        None => Arc::new(SqliteStore::open(&settings.path).await?),
    })
}

/// Opens the store for reading beside a running daemon, without migrating it.
pub async fn open_for_reading(settings: &StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &settings.url {
        Some(url) => Arc::new(PgStore::connect(url).await?),
        None => Arc::new(SqliteStore::open_read_only(&settings.path).await?),
    })
}

/// Applies pending migrations; says how many there were and to which store (a
/// PostgreSQL URL without its password).
pub async fn migrate(settings: &StoreSettings) -> Result<(usize, String), StoreError> {
    match &settings.url {
        Some(url) => {
            let store = PgStore::connect(url).await?;
            let applied = store.migrate_counted().await;
            store.close().await;
            Ok((applied?, store.shown().to_owned()))
        }
        None => Ok((
            SqliteStore::migrate(&settings.path).await?,
            settings.path.display().to_string(),
        )),
    }
}

/// What the history says of a connection's recent past, for the engine's start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectionMarks {
    pub connection: String,
    /// The newest scheduled instant claimed for a `Schedule` run.
    pub last_tick: Option<DateTime<Utc>>,
    /// When its newest run of any kind was claimed.
    pub last_claimed: Option<DateTime<Utc>>,
    /// When its newest succeeded run ended.
    pub last_success: Option<DateTime<Utc>>,
    /// Runs that ended `failed`, `timed_out` or `trigger_failed` since its last
    /// success: non-zero while the connection is failing.
    pub failures: u32,
}

/// What [`Store::mark_started`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    /// The run was pending and now runs its job.
    Running {
        /// An operator asked to cancel it meanwhile: its job is to be cancelled.
        cancel_requested: bool,
    },
    /// The run was no longer pending: it moved on under the caller.
    NotPending,
}

/// A run's outcome, and the runs it sets off (a retry, the runs of connections
/// that wait on it): [`Store::finish`] claims them with the outcome.
#[derive(Clone, Debug)]
pub struct Closing {
    pub run_id: i64,
    pub outcome: Outcome,
    pub then: Vec<NewRun>,
}

impl Closing {
    /// An outcome that sets nothing off.
    pub fn only(run_id: i64, outcome: Outcome) -> Self {
        Self {
            run_id,
            outcome,
            then: Vec::new(),
        }
    }
}

/// A run [`Store::finish`] closed, with the follow-ups it claimed (a follow-up
/// whose instant was claimed before is left out).
#[derive(Clone, Debug, PartialEq)]
pub struct Closed {
    pub run_id: i64,
    pub then: Vec<Run>,
}

/// Which runs `history` returns, newest first.
#[derive(Clone, Debug, Default)]
pub struct HistoryFilter {
    pub connection: Option<String>,
    pub limit: u32,
}

/// Per-connection sums over the whole history, to seed counters at start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectionTotals {
    pub connection: String,
    /// Runs per final status.
    pub by_status: Vec<(RunStatus, u64)>,
    pub records_synced: u64,
    pub bytes_synced: u64,
    /// Succeeded runs that committed no record.
    pub zero_record_successes: u64,
}

/// One row of the per-(connection, status) sums both databases keep.
pub(crate) struct TotalsRow {
    pub connection: String,
    pub status: RunStatus,
    pub runs: u64,
    pub records: u64,
    pub bytes: u64,
    pub zero_records: u64,
}

/// Folds rows ordered by connection into one [`ConnectionTotals`] per connection.
pub(crate) fn fold_totals(rows: impl IntoIterator<Item = TotalsRow>) -> Vec<ConnectionTotals> {
    let mut totals: Vec<ConnectionTotals> = Vec::new();
    for row in rows {
        if totals.last().is_none_or(|t| t.connection != row.connection) {
            totals.push(ConnectionTotals {
                connection: row.connection.clone(),
                ..Default::default()
            });
        }
        if let Some(entry) = totals.last_mut() {
            entry.by_status.push((row.status, row.runs));
            entry.records_synced += row.records;
            entry.bytes_synced += row.bytes;
            if row.status == RunStatus::Succeeded {
                entry.zero_record_successes = row.zero_records;
            }
        }
    }
    totals
}

/// The newest retention cut a prune made: runs that ended before `before` may be
/// gone from the history since `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pruned {
    pub before: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// A run that ended, in brief: enough for ratios and freshness.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    pub connection: String,
    pub status: RunStatus,
    /// When the sync was requested; `None` for a run that never reached Airbyte.
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
}

impl From<UnknownText> for StoreError {
    fn from(unknown: UnknownText) -> Self {
        StoreError::Corrupt(unknown.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not open the store at {path}: {detail}")]
    Open { path: String, detail: String },
    #[error("could not apply the store's migrations: {0}")]
    Migrate(String),
    #[error("store query failed: {0}")]
    Query(String),
    #[error("the store holds a value this build cannot read: {0}")]
    Corrupt(String),
    /// The write came from a replica that is not the active one (any more): another
    /// took the lease over, and the write was refused whole.
    #[error("{}", fenced_message(*mine, *current))]
    Fenced { mine: Option<i64>, current: i64 },
}

fn fenced_message(mine: Option<i64>, current: i64) -> String {
    match mine {
        Some(mine) => format!(
            "write refused: this replica's lease (epoch {mine}) was taken over (epoch {current} now)"
        ),
        None => "write refused: this replica is a standby, not the active one".into(),
    }
}

/// A replica saying it is alive, as [`Store::replicas`] records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaRecord {
    /// The host name and a random part, unique per process.
    pub id: String,
    pub host: String,
    /// A hash of its connection settings, to compare with the others'.
    pub settings_hash: String,
}

/// A replica the store saw alive lately.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaSeen {
    pub id: String,
    pub host: String,
    pub settings_hash: String,
    /// It holds the lease now (it is the active replica).
    pub active: bool,
}

/// What the engine needs from a history store. Every method is one short
/// transaction; a write either lands whole or not at all.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Claims a run. For a `Schedule` trigger, a second claim of the same
    /// (connection, scheduled instant) returns `None`: that tick is someone else's.
    async fn claim(&self, run: NewRun) -> Result<Option<Run>, StoreError>;

    /// Claims several runs in one transaction (ticks due together), each as
    /// [`Store::claim`] would, in order.
    async fn claim_many(&self, runs: Vec<NewRun>) -> Result<Vec<Option<Run>>, StoreError>;

    /// Records that the run's sync was started as `job_id`: pending becomes
    /// running, and only pending does.
    async fn mark_started(
        &self,
        run_id: i64,
        job_id: i64,
        started_at: DateTime<Utc>,
    ) -> Result<Started, StoreError>;

    /// Records an operator's cancel of an open run (the first one counts); false
    /// when the run is no longer open.
    async fn request_cancel(&self, run_id: i64, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Records the counts of running jobs, in one transaction.
    async fn record_progress(&self, updates: &[(i64, Progress)]) -> Result<(), StoreError>;

    /// Closes runs with their outcomes and, for each run it closes, claims what
    /// follows the outcome (as [`Store::claim_many`] would), all in one
    /// transaction: a crash at any instant leaves both or neither. A run already
    /// closed is left as it was, nothing of its follow-ups is claimed, and it is
    /// not returned, so an outcome is recorded, and followed up, once.
    async fn finish(&self, closings: &[Closing]) -> Result<Vec<Closed>, StoreError>;

    /// Every run still open (pending or running), oldest first.
    async fn open_runs(&self) -> Result<Vec<Run>, StoreError>;

    async fn run(&self, run_id: i64) -> Result<Option<Run>, StoreError>;

    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Run>, StoreError>;

    /// Each connection's newest run.
    async fn latest_runs(&self) -> Result<Vec<Run>, StoreError>;

    /// Whether the store takes a write that another connection then sees.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Per connection with any run: its newest tick, claim and success, and the
    /// failures since that success.
    async fn marks(&self) -> Result<Vec<ConnectionMarks>, StoreError>;

    /// The run that follows or recorded job `job_id` of Airbyte `instance`, if any, so
    /// no two runs (after a restart, or of two replicas) ever record one job.
    async fn run_with_job(&self, instance: &str, job_id: i64) -> Result<Option<i64>, StoreError>;

    /// How many retries the run `first` has had.
    async fn retries_of(&self, first: i64) -> Result<u32, StoreError>;

    /// Pauses or resumes a connection; returns whether that changed anything.
    async fn set_paused(&self, connection: &str, paused: bool) -> Result<bool, StoreError>;

    /// The connections paused now.
    async fn paused(&self) -> Result<Vec<String>, StoreError>;

    /// Sums over all runs per connection.
    async fn totals(&self) -> Result<Vec<ConnectionTotals>, StoreError>;

    /// Runs that ended at or after `since`, oldest first.
    async fn ended_since(&self, since: DateTime<Utc>) -> Result<Vec<Ended>, StoreError>;

    /// Records (or updates) the Airbyte ids that declared names stand for, in one
    /// transaction; `forget` drops the objects of those (instance, kind, name) triples.
    async fn record_airbyte_objects(
        &self,
        objects: &[AirbyteObject],
        forget: &[(String, String, String)],
    ) -> Result<(), StoreError>;

    /// Every recorded Airbyte object, by instance, kind, then name.
    async fn airbyte_objects(&self) -> Result<Vec<AirbyteObject>, StoreError>;

    /// Deletes up to about `batch` runs that ended before `before`, in one short
    /// transaction, and says how many it deleted (0: nothing is left to prune).
    ///
    /// An open run is never deleted. A retry chain (a first run and the retries
    /// whose `retry_of` names it) goes whole, once every run of it ended before
    /// `before`: no survivor is left pointing at a deleted run, and
    /// [`Store::retries_of`] still counts every retry of a chain that goes on. A
    /// chain counts as one toward `batch`, so a call may delete a few more runs.
    /// Marks and totals are kept apart from the runs and stay as they were. When it
    /// deleted any, the cut is recorded for [`Store::pruned`].
    async fn prune(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, StoreError>;

    /// The newest cut a prune deleted runs at, if any ever did.
    async fn pruned(&self) -> Result<Option<Pruned>, StoreError>;

    /// Closes the store's connections once every write is done (SQLite flushes
    /// its WAL). Nothing to do for a store in memory.
    async fn close(&self) {}

    /// Whether other processes may share this store. They then elect one active
    /// replica through the lease below. A store only one process opens (SQLite,
    /// memory) keeps its process active for good, which the defaults say.
    fn is_shared(&self) -> bool {
        false
    }

    /// Takes the lease for `replica` for `ttl` when nobody holds it, its holder let
    /// it expire, or `replica` itself holds it, and returns the new epoch; `None`
    /// while another replica holds it. From then on the engine's writes land only
    /// while that epoch is current (fencing), and are refused while none is held.
    async fn take_lease(&self, replica: &str, ttl: Duration) -> Result<Option<i64>, StoreError> {
        let _ = (replica, ttl);
        Ok(Some(1))
    }

    /// Extends the lease `epoch` of `replica` to `ttl` from now; false when it is
    /// no longer theirs (taken over after it expired).
    async fn renew_lease(
        &self,
        replica: &str,
        epoch: i64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let _ = (replica, epoch, ttl);
        Ok(true)
    }

    /// Ends this process's term: its engine's writes are refused from now on, and
    /// the lease, if it is still `epoch`, expires at once so that a standby takes
    /// it without waiting for it to run out.
    async fn release_lease(&self, replica: &str, epoch: i64) -> Result<(), StoreError> {
        let _ = (replica, epoch);
        Ok(())
    }

    /// Records that `me` is alive and returns every replica seen within `within`
    /// (`me` included), marking the one that holds the lease.
    async fn replicas(
        &self,
        me: &ReplicaRecord,
        within: Duration,
    ) -> Result<Vec<ReplicaSeen>, StoreError> {
        let _ = (me, within);
        Ok(Vec::new())
    }

    /// Removes `replica` from the replicas seen, at a clean stop.
    async fn leave(&self, replica: &str) -> Result<(), StoreError> {
        let _ = replica;
        Ok(())
    }
}

/// An Airbyte object a declared name was resolved to by `cronbyte apply`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AirbyteObject {
    /// The Airbyte instance it lives on.
    pub instance: String,
    /// `workspace`, `source`, `destination` or `connection`.
    pub kind: String,
    /// The name in the config (and in Airbyte).
    pub name: String,
    pub airbyte_id: String,
    /// When apply last resolved it.
    pub updated_at: DateTime<Utc>,
}
