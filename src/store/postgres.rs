//! The history on PostgreSQL, for several cronbyte processes sharing one database.
//! Every write is one transaction on a pooled connection; PostgreSQL arbitrates what
//! two processes do at once (a tick claimed twice meets the unique index and is
//! skipped, a transition names the state it expects), so no write here assumes it is
//! the only writer.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row, Transaction};

use super::*;
use crate::run::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections in the pool: a poll round's write, a claim and a few readers (the
/// control API, `history`) at once.
const POOL_SIZE: u32 = 8;

/// A history store in a PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// The URL without its password, for messages.
    shown: String,
    /// The lease epoch the engine's writes must find still current: [`UNFENCED`]
    /// until this process first asks for the lease (a command such as `apply`
    /// never does), [`NO_TERM`] while it is a standby, else the epoch it took.
    fence: Arc<AtomicI64>,
}

/// How long a transaction may sit idle unless the daemon says otherwise: the
/// default lease (15 s) less the default renewal interval (5 s).
const DEFAULT_HOLD: Duration = Duration::from_secs(10);

/// Writes are not checked against the lease: the process never asked for it.
const UNFENCED: i64 = 0;
/// The process asked for the lease and does not hold it: the engine's writes are refused.
const NO_TERM: i64 = -1;

/// The URL as it may be shown: any password replaced, so a message can name the
/// store without giving its credential away.
pub fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        // Unparsable: say nothing of it but its scheme, which holds no secret.
        Err(_) => "the store.url given (not a valid URL)".into(),
    }
}

fn query_error(e: sqlx::Error) -> StoreError {
    StoreError::Query(e.to_string())
}

/// At the SQLite store's precision, so both backends give back what they were given.
fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// A duration in whole milliseconds, for an interval computed in SQL.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn count(v: Option<u64>) -> Option<i64> {
    v.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

impl PgStore {
    /// Connects to the database at `url` and applies pending migrations.
    pub async fn open(url: &SecretString) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating (for readers beside a running daemon).
    pub async fn connect(url: &SecretString) -> Result<Self, StoreError> {
        Self::connect_holding(url, DEFAULT_HOLD).await
    }

    /// Connects and migrates, with transactions held idle at most `hold` (see
    /// [`PgStore::connect_holding`]).
    pub async fn open_holding(url: &SecretString, hold: Duration) -> Result<Self, StoreError> {
        let store = Self::connect_holding(url, hold).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating; the server ends any session of this store that
    /// sits idle inside a transaction for `hold`. An engine write holds the lease row
    /// `FOR SHARE` for its transaction, and a standby's take-over waits for that lock:
    /// a replica frozen mid-transaction (SIGSTOP, a paused VM) would otherwise keep
    /// every standby waiting until it woke. The daemon passes the lease less one
    /// renewal interval, so that the lock is gone before the lease runs out.
    pub async fn connect_holding(url: &SecretString, hold: Duration) -> Result<Self, StoreError> {
        let shown = redacted(url.expose_secret());
        let open_error = |detail: String| StoreError::Open {
            path: format!("store.url ({shown})"),
            // sqlx's messages name the host and the user, never the password.
            detail,
        };
        let options = PgConnectOptions::from_str(url.expose_secret())
            .map_err(|e| open_error(e.to_string()))?
            .options([(
                "idle_in_transaction_session_timeout",
                millis(hold.max(Duration::from_millis(100))).to_string(),
            )]);
        Self::with_options(options, shown.clone())
            .await
            .map_err(|e| open_error(e.to_string()))
    }

    /// Connects with `options` (tests set a schema of their own through them).
    pub(crate) async fn with_options(
        options: PgConnectOptions,
        shown: String,
    ) -> Result<Self, sqlx::Error> {
        // One connection first: a pool retries until its timeout and then says only
        // that it timed out, where this says why (refused, unknown role, TLS).
        let first = tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::postgres::PgConnection::connect_with(&options),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
        first.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            shown,
            fence: Arc::new(AtomicI64::new(UNFENCED)),
        })
    }

    /// Begins a transaction for one of the engine's writes. While this process takes
    /// part in the election, the transaction first reads the lease row `FOR SHARE`
    /// and goes on only if its epoch is the one this process took: a replica that
    /// takes the lease over bumps the epoch with an `UPDATE`, which waits for every
    /// write holding that share lock, so a write of the old term either commits
    /// before the new term begins (and the new active replica reads it) or is refused.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        let mine = self.fence.load(Ordering::Acquire);
        if mine == UNFENCED {
            return Ok(tx);
        }
        let current: i64 = sqlx::query_scalar("SELECT epoch FROM lease WHERE id = 1 FOR SHARE")
            .fetch_one(&mut *tx)
            .await
            .map_err(query_error)?;
        if current != mine {
            let _ = tx.rollback().await;
            return Err(StoreError::Fenced {
                mine: (mine != NO_TERM).then_some(mine),
                current,
            });
        }
        Ok(tx)
    }

    /// Applies pending migrations (after [`PgStore::connect`]).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| {
            let newer = matches!(e, sqlx::migrate::MigrateError::VersionMissing(_));
            StoreError::Migrate(format!(
                "store.url ({}): {e}{}",
                self.shown,
                if newer {
                    "; the database was migrated by a newer cronbyte: run that version, \
                     or restore a backup taken before the upgrade"
                } else {
                    ""
                }
            ))
        })
    }

    /// Applies pending migrations and says how many there were.
    pub async fn migrate_counted(&self) -> Result<usize, StoreError> {
        let before: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN to_regclass('_sqlx_migrations') IS NULL THEN 0 \
                 ELSE (SELECT count(*) FROM _sqlx_migrations) END",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(query_error)?;
        self.migrate().await?;
        let total = MIGRATOR.iter().count();
        Ok(total.saturating_sub(usize::try_from(before).unwrap_or(0)))
    }

    /// The pool, for tests that look at the connections themselves.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The database, as it may be shown (no password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Inserts the runs not claimed before, in one statement; returns each one's new
/// id, or `None` where its (connection, tick) was already claimed (by this process
/// or another: the unique index decides, and a concurrent claim waits for the
/// first to commit).
async fn claim_all(
    tx: &mut Transaction<'_, Postgres>,
    runs: &[NewRun],
) -> Result<Vec<Option<i64>>, StoreError> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&NewRun) -> String| runs.iter().map(f).collect::<Vec<_>>();
    let rows = sqlx::query(
        "INSERT INTO runs (connection, connection_id, instance, trigger, scheduled_for, \
             claimed_at, status, retry_of) \
         SELECT c, ci, i, t, s, ca, 'pending', r \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], \
             $6::timestamptz[], $7::bigint[]) AS u(c, ci, i, t, s, ca, r) \
         ON CONFLICT (connection, scheduled_for) WHERE trigger IN ('schedule', 'dependency') \
             DO NOTHING \
         RETURNING id, connection, scheduled_for, trigger",
    )
    .bind(column(|r| r.connection.clone()))
    .bind(column(|r| r.connection_id.clone()))
    .bind(column(|r| r.instance.clone()))
    .bind(column(|r| r.trigger.as_str().to_owned()))
    .bind(runs.iter().map(|r| ms(r.scheduled_for)).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| ms(r.claimed_at)).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.retry_of).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await
    .map_err(query_error)?;
    // RETURNING has no order: each row is matched to its input by its key; runs
    // sharing a key (manual runs at one instant) take the ids in order.
    let mut inserted: HashMap<(String, DateTime<Utc>, String), Vec<i64>> = HashMap::new();
    for row in &rows {
        let key = (
            row.try_get("connection").map_err(query_error)?,
            row.try_get("scheduled_for").map_err(query_error)?,
            row.try_get("trigger").map_err(query_error)?,
        );
        inserted
            .entry(key)
            .or_default()
            .push(row.try_get("id").map_err(query_error)?);
    }
    for ids in inserted.values_mut() {
        ids.sort_unstable_by(|a, b| b.cmp(a));
    }
    Ok(runs
        .iter()
        .map(|run| {
            let key = (
                run.connection.clone(),
                ms(run.scheduled_for),
                run.trigger.as_str().to_owned(),
            );
            inserted.get_mut(&key).and_then(Vec::pop)
        })
        .collect())
}

const RUN_COLUMNS: &str = "id, connection, connection_id, instance, trigger, scheduled_for, \
     claimed_at, started_at, finished_at, status, job_id, attempts, records_synced, \
     bytes_synced, error, retry_of, cancel_requested_at";

fn read_run(row: &PgRow) -> Result<Run, StoreError> {
    let get_err = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let opt_count = |v: Option<i64>| v.map(|n| u64::try_from(n).unwrap_or(0));
    Ok(Run {
        id: row.try_get("id").map_err(get_err)?,
        connection: row.try_get("connection").map_err(get_err)?,
        connection_id: row.try_get("connection_id").map_err(get_err)?,
        instance: row.try_get("instance").map_err(get_err)?,
        trigger: Trigger::from_str(row.try_get("trigger").map_err(get_err)?)?,
        scheduled_for: row.try_get("scheduled_for").map_err(get_err)?,
        claimed_at: row.try_get("claimed_at").map_err(get_err)?,
        started_at: row.try_get("started_at").map_err(get_err)?,
        finished_at: row.try_get("finished_at").map_err(get_err)?,
        status: RunStatus::from_str(row.try_get("status").map_err(get_err)?)?,
        job_id: row.try_get("job_id").map_err(get_err)?,
        attempts: u32::try_from(row.try_get::<i32, _>("attempts").map_err(get_err)?).unwrap_or(0),
        records_synced: opt_count(row.try_get("records_synced").map_err(get_err)?),
        bytes_synced: opt_count(row.try_get("bytes_synced").map_err(get_err)?),
        error: row.try_get("error").map_err(get_err)?,
        retry_of: row.try_get("retry_of").map_err(get_err)?,
        cancel_requested_at: row.try_get("cancel_requested_at").map_err(get_err)?,
    })
}

fn read_runs(rows: Vec<PgRow>) -> Result<Vec<Run>, StoreError> {
    rows.iter().map(read_run).collect()
}

/// The run a claim inserted as `id`, as later reads will see it.
fn pending_run(run: NewRun, id: i64) -> Run {
    Run {
        id,
        connection: run.connection,
        connection_id: run.connection_id,
        instance: run.instance,
        trigger: run.trigger,
        scheduled_for: ms(run.scheduled_for),
        claimed_at: ms(run.claimed_at),
        started_at: None,
        finished_at: None,
        status: RunStatus::Pending,
        job_id: None,
        attempts: 0,
        records_synced: None,
        bytes_synced: None,
        error: None,
        retry_of: run.retry_of,
        cancel_requested_at: None,
    }
}

#[async_trait]
impl Store for PgStore {
    async fn claim(&self, run: NewRun) -> Result<Option<Run>, StoreError> {
        Ok(self.claim_many(vec![run]).await?.pop().flatten())
    }

    async fn claim_many(&self, runs: Vec<NewRun>) -> Result<Vec<Option<Run>>, StoreError> {
        let mut tx = self.begin_write().await?;
        let ids = claim_all(&mut tx, &runs).await?;
        tx.commit().await.map_err(query_error)?;
        Ok(runs
            .into_iter()
            .zip(ids)
            .map(|(run, id)| id.map(|id| pending_run(run, id)))
            .collect())
    }

    async fn mark_started(
        &self,
        run_id: i64,
        job_id: i64,
        started_at: DateTime<Utc>,
    ) -> Result<Started, StoreError> {
        let mut tx = self.begin_write().await?;
        let cancel_requested: Option<bool> = sqlx::query_scalar(
            "UPDATE runs SET status = 'running', job_id = $1, started_at = $2 \
             WHERE id = $3 AND status = 'pending' \
             RETURNING cancel_requested_at IS NOT NULL",
        )
        .bind(job_id)
        .bind(ms(started_at))
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        Ok(match cancel_requested {
            Some(cancel_requested) => Started::Running { cancel_requested },
            None => Started::NotPending,
        })
    }

    async fn request_cancel(&self, run_id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE runs SET cancel_requested_at = coalesce(cancel_requested_at, $1) \
             WHERE id = $2 AND status IN ('pending', 'running')",
        )
        .bind(ms(at))
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_progress(&self, updates: &[(i64, Progress)]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        // One statement for the round: the updates as arrays, joined by run id.
        sqlx::query(
            "UPDATE runs SET attempts = u.attempts, \
                 records_synced = coalesce(u.records, runs.records_synced), \
                 bytes_synced = coalesce(u.bytes, runs.bytes_synced) \
             FROM unnest($1::bigint[], $2::integer[], $3::bigint[], $4::bigint[]) \
                 AS u(id, attempts, records, bytes) \
             WHERE runs.id = u.id AND runs.status = 'running'",
        )
        .bind(updates.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(
            updates
                .iter()
                .map(|(_, p)| i32::try_from(p.attempts).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(
            updates
                .iter()
                .map(|(_, p)| count(p.records_synced))
                .collect::<Vec<_>>(),
        )
        .bind(
            updates
                .iter()
                .map(|(_, p)| count(p.bytes_synced))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        Ok(())
    }

    async fn finish(&self, closings: &[Closing]) -> Result<Vec<Closed>, StoreError> {
        if closings.is_empty() {
            return Ok(Vec::new());
        }
        // A run closed twice in one call lands once, with its first closing, as it
        // would statement by statement: a join with two rows for one run would
        // apply either.
        let mut seen = std::collections::HashSet::new();
        let closings: Vec<&Closing> = closings.iter().filter(|c| seen.insert(c.run_id)).collect();
        let mut tx = self.begin_write().await?;
        // One statement for every outcome: the outcomes as arrays, joined by run id;
        // RETURNING says which runs were still open, and only those count.
        let landed: Vec<i64> = sqlx::query_scalar(
            "UPDATE runs SET status = u.status, finished_at = u.finished_at, \
                 attempts = greatest(runs.attempts, u.attempts), \
                 records_synced = coalesce(u.records, runs.records_synced), \
                 bytes_synced = coalesce(u.bytes, runs.bytes_synced), error = u.error \
             FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::integer[], \
                 $5::bigint[], $6::bigint[], $7::text[]) \
                 AS u(id, status, finished_at, attempts, records, bytes, error) \
             WHERE runs.id = u.id AND runs.status IN ('pending', 'running') \
             RETURNING runs.id",
        )
        .bind(closings.iter().map(|c| c.run_id).collect::<Vec<_>>())
        .bind(
            closings
                .iter()
                .map(|c| c.outcome.status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            closings
                .iter()
                .map(|c| ms(c.outcome.finished_at))
                .collect::<Vec<_>>(),
        )
        .bind(
            closings
                .iter()
                .map(|c| i32::try_from(c.outcome.progress.attempts).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(
            closings
                .iter()
                .map(|c| count(c.outcome.progress.records_synced))
                .collect::<Vec<_>>(),
        )
        .bind(
            closings
                .iter()
                .map(|c| count(c.outcome.progress.bytes_synced))
                .collect::<Vec<_>>(),
        )
        .bind(
            closings
                .iter()
                .map(|c| c.outcome.error.clone())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error)?;
        let landed: std::collections::HashSet<i64> = landed.into_iter().collect();
        let closed: Vec<&Closing> = closings
            .into_iter()
            .filter(|c| landed.contains(&c.run_id))
            .collect();
        // What follows the outcomes that landed, claimed with them.
        let then: Vec<NewRun> = closed.iter().flat_map(|c| c.then.clone()).collect();
        let ids = claim_all(&mut tx, &then).await?;
        tx.commit().await.map_err(query_error)?;
        let mut claimed = then.into_iter().zip(ids);
        Ok(closed
            .into_iter()
            .map(|closing| Closed {
                run_id: closing.run_id,
                then: claimed
                    .by_ref()
                    .take(closing.then.len())
                    .filter_map(|(run, id)| id.map(|id| pending_run(run, id)))
                    .collect(),
            })
            .collect())
    }

    async fn open_runs(&self) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('pending', 'running') ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error)?;
        read_runs(rows)
    }

    async fn run(&self, run_id: i64) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"
        )))
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error)?;
        row.as_ref().map(read_run).transpose()
    }

    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Run>, StoreError> {
        let limit = i64::from(filter.limit.max(1));
        let rows = match &filter.connection {
            Some(connection) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE connection = $1 \
                     ORDER BY id DESC LIMIT $2"
                )))
                .bind(connection)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT $1"
                )))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(query_error)?;
        read_runs(rows)
    }

    async fn latest_runs(&self) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs \
             WHERE id IN (SELECT max(id) FROM runs GROUP BY connection)"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error)?;
        read_runs(rows)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // A write, then its read: the server takes writes and keeps them.
        let token: i64 = rand::random();
        sqlx::query(
            "INSERT INTO store_checks (id, token) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET token = excluded.token",
        )
        .bind(token)
        .execute(&self.pool)
        .await
        .map_err(query_error)?;
        let seen: Option<i64> = sqlx::query_scalar("SELECT token FROM store_checks WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error)?;
        // Another process's ping may land between the two: any token proves the
        // server answers, and only a missing row is a failure.
        match seen {
            Some(_) => Ok(()),
            None => Err(StoreError::Query(
                "a write to the store is not visible afterwards".into(),
            )),
        }
    }

    async fn marks(&self) -> Result<Vec<ConnectionMarks>, StoreError> {
        // Kept by triggers as runs are claimed and end (see the migration).
        let rows = sqlx::query(
            "SELECT connection, last_tick, last_claimed, last_success, failures \
             FROM connection_marks ORDER BY connection",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error)?;
        rows.iter()
            .map(|row| {
                Ok(ConnectionMarks {
                    connection: row.try_get("connection").map_err(query_error)?,
                    last_tick: row.try_get("last_tick").map_err(query_error)?,
                    last_claimed: row.try_get("last_claimed").map_err(query_error)?,
                    last_success: row.try_get("last_success").map_err(query_error)?,
                    failures: u32::try_from(
                        row.try_get::<i32, _>("failures").map_err(query_error)?,
                    )
                    .unwrap_or(0),
                })
            })
            .collect()
    }

    async fn run_with_job(&self, instance: &str, job_id: i64) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT id FROM runs WHERE instance = $1 AND job_id = $2 LIMIT 1")
            .bind(instance)
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error)
    }

    async fn retries_of(&self, first: i64) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE retry_of = $1")
            .bind(first)
            .fetch_one(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn set_paused(&self, connection: &str, paused: bool) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = if paused {
            sqlx::query(
                "INSERT INTO pauses (connection, paused_at) VALUES ($1, $2) \
                 ON CONFLICT (connection) DO NOTHING",
            )
            .bind(connection)
            .bind(ms(Utc::now()))
            .execute(&mut *tx)
            .await
        } else {
            sqlx::query("DELETE FROM pauses WHERE connection = $1")
                .bind(connection)
                .execute(&mut *tx)
                .await
        }
        .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn paused(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT connection FROM pauses ORDER BY connection")
            .fetch_all(&self.pool)
            .await
            .map_err(query_error)
    }

    async fn totals(&self) -> Result<Vec<ConnectionTotals>, StoreError> {
        let rows = sqlx::query(
            "SELECT connection, status, runs, records, bytes, zero_records \
             FROM run_totals ORDER BY connection, status",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error)?;
        let rows = rows
            .iter()
            .map(|row| {
                let count = |column: &str| -> Result<u64, StoreError> {
                    let n: i64 = row.try_get(column).map_err(query_error)?;
                    Ok(u64::try_from(n).unwrap_or(0))
                };
                Ok(TotalsRow {
                    connection: row.try_get("connection").map_err(query_error)?,
                    status: RunStatus::from_str(row.try_get("status").map_err(query_error)?)?,
                    runs: count("runs")?,
                    records: count("records")?,
                    bytes: count("bytes")?,
                    zero_records: count("zero_records")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(fold_totals(rows))
    }

    async fn ended_since(&self, since: DateTime<Utc>) -> Result<Vec<Ended>, StoreError> {
        let rows = sqlx::query(
            "SELECT connection, status, started_at, finished_at FROM runs \
             WHERE finished_at >= $1 ORDER BY finished_at",
        )
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error)?;
        rows.iter()
            .map(|row| {
                Ok(Ended {
                    connection: row.try_get("connection").map_err(query_error)?,
                    status: RunStatus::from_str(row.try_get("status").map_err(query_error)?)?,
                    started_at: row.try_get("started_at").map_err(query_error)?,
                    finished_at: row.try_get("finished_at").map_err(query_error)?,
                })
            })
            .collect()
    }

    async fn record_airbyte_objects(
        &self,
        objects: &[AirbyteObject],
        forget: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        for object in objects {
            sqlx::query(
                "INSERT INTO airbyte_objects (instance, kind, name, airbyte_id, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (instance, kind, name) DO UPDATE SET \
                     airbyte_id = excluded.airbyte_id, updated_at = excluded.updated_at",
            )
            .bind(&object.instance)
            .bind(&object.kind)
            .bind(&object.name)
            .bind(&object.airbyte_id)
            .bind(ms(object.updated_at))
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        }
        for (instance, kind, name) in forget {
            sqlx::query(
                "DELETE FROM airbyte_objects WHERE instance = $1 AND kind = $2 AND name = $3",
            )
            .bind(instance)
            .bind(kind)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        }
        tx.commit().await.map_err(query_error)?;
        Ok(())
    }

    async fn prune(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        let cut = ms(before);
        let mut tx = self.begin_write().await?;
        // First runs of chains that ended whole before the cut, oldest end first;
        // their retries go with them. SKIP LOCKED: a second replica pruning at the
        // same time takes other chains instead of waiting on these.
        let heads: Vec<i64> = sqlx::query_scalar(
            "SELECT r.id FROM runs r \
             WHERE r.finished_at < $1 AND r.retry_of IS NULL \
               AND r.status NOT IN ('pending', 'running') \
               AND NOT EXISTS (SELECT 1 FROM runs o WHERE o.retry_of = r.id \
                   AND (o.finished_at IS NULL OR o.finished_at >= $1 \
                        OR o.status IN ('pending', 'running') \
                        OR o.id = (SELECT max(id) FROM runs))) \
               AND r.id < (SELECT max(id) FROM runs) \
             ORDER BY r.finished_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(cut)
        .bind(i64::from(batch.max(1)))
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error)?;
        if heads.is_empty() {
            tx.rollback().await.map_err(query_error)?;
            return Ok(0);
        }
        let retries = sqlx::query("DELETE FROM runs WHERE retry_of = ANY($1)")
            .bind(&heads)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?
            .rows_affected();
        let firsts = sqlx::query("DELETE FROM runs WHERE id = ANY($1)")
            .bind(&heads)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?
            .rows_affected();
        sqlx::query(
            "INSERT INTO prunes (id, before, at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET before = greatest(prunes.before, excluded.before), \
                 at = excluded.at",
        )
        .bind(cut)
        .bind(ms(Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        Ok(retries + firsts)
    }

    async fn pruned(&self) -> Result<Option<Pruned>, StoreError> {
        let row: Option<(DateTime<Utc>, DateTime<Utc>)> =
            sqlx::query_as("SELECT before, at FROM prunes WHERE id = 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(query_error)?;
        Ok(row.map(|(before, at)| Pruned { before, at }))
    }

    async fn close(&self) {
        PgStore::close(self).await;
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn take_lease(&self, replica: &str, ttl: Duration) -> Result<Option<i64>, StoreError> {
        // The database's clock decides expiry, so the hosts' clocks need not agree.
        let epoch: Option<i64> = sqlx::query_scalar(
            "UPDATE lease SET holder = $1, epoch = epoch + 1, \
                 expires_at = now() + $2 * interval '1 millisecond' \
             WHERE id = 1 AND (expires_at <= now() OR holder IS NULL OR holder = $1) \
             RETURNING epoch",
        )
        .bind(replica)
        .bind(millis(ttl))
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error)?;
        self.fence
            .store(epoch.unwrap_or(NO_TERM), Ordering::Release);
        Ok(epoch)
    }

    async fn renew_lease(
        &self,
        replica: &str,
        epoch: i64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let renewed = sqlx::query(
            "UPDATE lease SET expires_at = now() + $3 * interval '1 millisecond' \
             WHERE id = 1 AND holder = $1 AND epoch = $2",
        )
        .bind(replica)
        .bind(epoch)
        .bind(millis(ttl))
        .execute(&self.pool)
        .await
        .map_err(query_error)?
        .rows_affected()
            > 0;
        if !renewed {
            self.fence.store(NO_TERM, Ordering::Release);
        }
        Ok(renewed)
    }

    async fn release_lease(&self, replica: &str, epoch: i64) -> Result<(), StoreError> {
        // Refused first, released second: no write of this term lands after it ends.
        self.fence.store(NO_TERM, Ordering::Release);
        sqlx::query(
            "UPDATE lease SET expires_at = now() \
             WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > now()",
        )
        .bind(replica)
        .bind(epoch)
        .execute(&self.pool)
        .await
        .map_err(query_error)?;
        Ok(())
    }

    async fn replicas(
        &self,
        me: &ReplicaRecord,
        within: Duration,
    ) -> Result<Vec<ReplicaSeen>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        sqlx::query(
            "INSERT INTO replicas (id, host, started_at, seen_at, settings_hash) \
             VALUES ($1, $2, now(), now(), $3) \
             ON CONFLICT (id) DO UPDATE SET seen_at = now(), \
                 settings_hash = excluded.settings_hash",
        )
        .bind(&me.id)
        .bind(&me.host)
        .bind(&me.settings_hash)
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
        // Replicas gone for a day are forgotten, so the table stays small.
        sqlx::query("DELETE FROM replicas WHERE seen_at < now() - interval '1 day'")
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        let rows: Vec<(String, String, String, bool)> = sqlx::query_as(
            "SELECT r.id, r.host, r.settings_hash, \
                 coalesce(l.holder = r.id AND l.expires_at > now(), false) \
             FROM replicas r LEFT JOIN lease l ON l.id = 1 \
             WHERE r.seen_at >= now() - $1 * interval '1 millisecond' \
             ORDER BY r.started_at, r.id",
        )
        .bind(millis(within))
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        Ok(rows
            .into_iter()
            .map(|(id, host, settings_hash, active)| ReplicaSeen {
                id,
                host,
                settings_hash,
                active,
            })
            .collect())
    }

    async fn leave(&self, replica: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(replica)
            .execute(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(())
    }

    async fn airbyte_objects(&self) -> Result<Vec<AirbyteObject>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance, kind, name, airbyte_id, updated_at FROM airbyte_objects \
             ORDER BY instance, kind, name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error)?;
        rows.iter()
            .map(|row| {
                Ok(AirbyteObject {
                    instance: row.try_get("instance").map_err(query_error)?,
                    kind: row.try_get("kind").map_err(query_error)?,
                    name: row.try_get("name").map_err(query_error)?,
                    airbyte_id: row.try_get("airbyte_id").map_err(query_error)?,
                    updated_at: row.try_get("updated_at").map_err(query_error)?,
                })
            })
            .collect()
    }
}

/// What [`PgStore::copy_from_sqlite`] carried over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub runs: usize,
    pub pauses: usize,
    pub airbyte_objects: usize,
}

/// Runs per page read from SQLite and per statement written here.
const COPY_PAGE: u32 = 5_000;

impl PgStore {
    /// Copies a SQLite history into this store, which must hold no run yet: every
    /// run with its id (so `retry_of` links and the ids operators saw stay true),
    /// pauses and the objects `apply` recorded, in one transaction, so an
    /// interrupted copy leaves the store empty and can simply be run again. The
    /// totals and marks are then computed from the copied runs, as SQLite's own
    /// migrations computed them.
    pub async fn copy_from_sqlite(&self, sqlite: &SqliteStore) -> Result<Copied, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        // Taken before the emptiness check, so two copies cannot both find it empty.
        sqlx::query("LOCK TABLE runs IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        // The marks and totals are copied as SQLite kept them (below): the triggers
        // that keep them run by run would only redo work that is thrown away, a
        // million upserts for a million runs. Disabled for this transaction only: a
        // failed copy rolls this back with everything else.
        sqlx::query("ALTER TABLE runs DISABLE TRIGGER USER")
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        let held: i64 = sqlx::query_scalar("SELECT count(*) FROM runs")
            .fetch_one(&mut *tx)
            .await
            .map_err(query_error)?;
        if held > 0 {
            return Err(StoreError::Query(format!(
                "{} already holds {held} run(s): copy into an empty store only",
                self.shown
            )));
        }
        let mut copied = Copied::default();
        let mut after = 0;
        loop {
            let page = sqlite.runs_after(after, COPY_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            copied.runs += page.len();
            insert_runs(&mut tx, &page).await?;
        }
        for (connection, paused_at) in sqlite.pauses().await? {
            sqlx::query("INSERT INTO pauses (connection, paused_at) VALUES ($1, $2)")
                .bind(connection)
                .bind(ms(paused_at))
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
            copied.pauses += 1;
        }
        for object in sqlite.airbyte_objects().await? {
            sqlx::query(
                "INSERT INTO airbyte_objects (instance, kind, name, airbyte_id, updated_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&object.instance)
            .bind(&object.kind)
            .bind(&object.name)
            .bind(&object.airbyte_id)
            .bind(ms(object.updated_at))
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
            copied.airbyte_objects += 1;
        }
        // New runs continue after the copied ids.
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('runs', 'id'), \
                 greatest((SELECT max(id) FROM runs), 1), (SELECT count(*) > 0 FROM runs))",
        )
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
        // The triggers kept totals and marks row by row in id order, and a pruned
        // history no longer holds every run they count: both are taken as SQLite
        // kept them, and so is its newest prune.
        for statement in ["DELETE FROM run_totals", "DELETE FROM connection_marks"] {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
        }
        for (connection, status, runs, records, bytes, zero) in sqlite.kept_totals().await? {
            sqlx::query(
                "INSERT INTO run_totals (connection, status, runs, records, bytes, zero_records) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(connection)
            .bind(status)
            .bind(runs)
            .bind(records)
            .bind(bytes)
            .bind(zero)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        }
        for marks in sqlite.marks().await? {
            sqlx::query(
                "INSERT INTO connection_marks \
                     (connection, last_tick, last_claimed, last_success, failures) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&marks.connection)
            .bind(marks.last_tick.map(ms))
            .bind(marks.last_claimed.map(ms))
            .bind(marks.last_success.map(ms))
            .bind(i32::try_from(marks.failures).unwrap_or(i32::MAX))
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        }
        if let Some(pruned) = sqlite.pruned().await? {
            sqlx::query("INSERT INTO prunes (id, before, at) VALUES (1, $1, $2)")
                .bind(ms(pruned.before))
                .bind(ms(pruned.at))
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
        }
        sqlx::query("ALTER TABLE runs ENABLE TRIGGER USER")
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        Ok(copied)
    }
}

/// Inserts runs as they are, ids included.
async fn insert_runs(tx: &mut Transaction<'_, Postgres>, runs: &[Run]) -> Result<(), StoreError> {
    let texts = |f: fn(&Run) -> String| runs.iter().map(f).collect::<Vec<_>>();
    let times = |f: fn(&Run) -> Option<DateTime<Utc>>| {
        runs.iter().map(|r| f(r).map(ms)).collect::<Vec<_>>()
    };
    sqlx::query(
        "INSERT INTO runs (id, connection, connection_id, instance, trigger, scheduled_for, \
             claimed_at, started_at, finished_at, status, job_id, attempts, records_synced, \
             bytes_synced, error, retry_of, cancel_requested_at) \
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], \
             $10::text[], $11::bigint[], $12::integer[], $13::bigint[], $14::bigint[], \
             $15::text[], $16::bigint[], $17::timestamptz[])",
    )
    .bind(runs.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(texts(|r| r.connection.clone()))
    .bind(texts(|r| r.connection_id.clone()))
    .bind(texts(|r| r.instance.clone()))
    .bind(texts(|r| r.trigger.as_str().to_owned()))
    .bind(times(|r| Some(r.scheduled_for)))
    .bind(times(|r| Some(r.claimed_at)))
    .bind(times(|r| r.started_at))
    .bind(times(|r| r.finished_at))
    .bind(texts(|r| r.status.as_str().to_owned()))
    .bind(runs.iter().map(|r| r.job_id).collect::<Vec<_>>())
    .bind(
        runs.iter()
            .map(|r| i32::try_from(r.attempts).unwrap_or(i32::MAX))
            .collect::<Vec<_>>(),
    )
    .bind(
        runs.iter()
            .map(|r| count(r.records_synced))
            .collect::<Vec<_>>(),
    )
    .bind(
        runs.iter()
            .map(|r| count(r.bytes_synced))
            .collect::<Vec<_>>(),
    )
    .bind(runs.iter().map(|r| r.error.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.retry_of).collect::<Vec<_>>())
    .bind(times(|r| r.cancel_requested_at))
    .execute(&mut **tx)
    .await
    .map_err(query_error)?;
    Ok(())
}
