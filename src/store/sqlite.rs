//! The SQLite history: one file in WAL mode, one writer connection beside a pool
//! of readers, so `cronbyte history` can read while the daemon writes.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, SqliteConnection, Transaction};

use super::*;
use crate::run::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A history store in one SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Exactly one connection: SQLite has one writer at a time, and queuing
    /// writes here is cheaper than meeting `SQLITE_BUSY` under load.
    writer: SqlitePool,
    readers: SqlitePool,
    path: PathBuf,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(v)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {v} out of range")))
}

fn query_error(e: sqlx::Error) -> StoreError {
    StoreError::Query(e.to_string())
}

fn count(v: Option<u64>) -> Option<i64> {
    v.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

impl SqliteStore {
    /// Opens (creating it, mode 0600, if needed) the store at `path` and applies
    /// pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let store = Self::connect(path, true).await?;
        store.vacuum_incrementally().await?;
        MIGRATOR
            .run(&store.writer)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(store)
    }

    /// Makes the file one that gives pages freed by pruning back with
    /// `PRAGMA incremental_vacuum`. A file made before that (`auto_vacuum` NONE) is
    /// rewritten once by `VACUUM`: SQLite changes the mode of a file holding tables
    /// no other way, and `VACUUM` cannot run inside a transaction, which is where
    /// sqlx runs migrations. A new file is empty, so its `VACUUM` costs nothing; an
    /// old one takes a while once, with as much free disk as the file.
    async fn vacuum_incrementally(&self) -> Result<(), StoreError> {
        const INCREMENTAL: i64 = 2;
        let mut writer = self.writer().await?;
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&mut *writer)
            .await
            .map_err(query_error)?;
        if mode != INCREMENTAL {
            tracing::info!(path = %self.path.display(), "rewriting the store once so pruned runs give their space back");
            sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
                .execute(&mut *writer)
                .await
                .map_err(query_error)?;
            sqlx::query("VACUUM")
                .execute(&mut *writer)
                .await
                .map_err(query_error)?;
        }
        writer.done();
        Ok(())
    }

    /// Opens an existing store for reading only, without migrating it (for
    /// `cronbyte history` beside a running daemon).
    pub async fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Open {
                path: path.display().to_string(),
                detail: "no such file (has the daemon ever run with this config?)".into(),
            });
        }
        Self::connect(path, false).await
    }

    /// Applies pending migrations and reports how many there were.
    pub async fn migrate(path: &Path) -> Result<usize, StoreError> {
        let store = Self::connect(path, true).await?;
        let applied: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE name = '_sqlx_migrations'",
        )
        .fetch_one(&store.writer)
        .await
        .map_err(query_error)?;
        let before = if applied > 0 {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations")
                .fetch_one(&store.writer)
                .await
                .map_err(query_error)?
        } else {
            0
        };
        MIGRATOR
            .run(&store.writer)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        let total = MIGRATOR.iter().count();
        Ok(total.saturating_sub(usize::try_from(before).unwrap_or(0)))
    }

    async fn connect(path: &Path, create: bool) -> Result<Self, StoreError> {
        let open_error = |detail: String| StoreError::Open {
            path: path.display().to_string(),
            detail,
        };
        if create && !path.exists() {
            create_private(path).map_err(|e| open_error(e.to_string()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().read_only(!create))
            .await
            .map_err(|e| open_error(e.to_string()))?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| open_error(e.to_string()))?;
        Ok(Self {
            writer,
            readers,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Up to `limit` runs with ids above `after`, by id: the whole history a page at
    /// a time, for copying it elsewhere.
    pub async fn runs_after(&self, after: i64, limit: u32) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id > ? ORDER BY id LIMIT ?"
        )))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(query_error)?;
        read_runs(rows)
    }

    /// The `run_totals` rows as kept: (connection, status, runs, records, bytes,
    /// zero-record runs). With pruning they are more than the runs add up to.
    pub async fn kept_totals(
        &self,
    ) -> Result<Vec<(String, String, i64, i64, i64, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT connection, status, runs, records, bytes, zero_records FROM run_totals \
             ORDER BY connection, status",
        )
        .fetch_all(&self.readers)
        .await
        .map_err(query_error)
    }

    /// When each paused connection was paused.
    pub async fn pauses(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query("SELECT connection, paused_at FROM pauses ORDER BY connection")
            .fetch_all(&self.readers)
            .await
            .map_err(query_error)?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("connection").map_err(query_error)?,
                    from_ms(row.try_get("paused_at").map_err(query_error)?)?,
                ))
            })
            .collect()
    }

    /// Closes both pools, flushing the WAL.
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }

    /// Lends the writer connection for one write. The single writer makes every
    /// transaction effectively `BEGIN IMMEDIATE`: no read-then-write upgrade can
    /// meet SQLITE_BUSY_SNAPSHOT.
    async fn writer(&self) -> Result<Writer, StoreError> {
        let conn = self.writer.acquire().await.map_err(query_error)?;
        Ok(Writer { conn, done: false })
    }
}

/// The writer connection, lent for one write. Unless the write says it is
/// [`done`](Writer::done), the connection is closed when this is dropped (a
/// statement or `COMMIT` failed, or the write was abandoned half-way), and the
/// pool opens a fresh one for the next write. After SQLITE_FULL, IOERR, BUSY or
/// NOMEM, SQLite may keep the failed transaction open on its connection; every
/// later write on it would then nest inside that transaction and never be
/// committed. Closing the connection rolls that transaction back for certain.
struct Writer {
    conn: PoolConnection<Sqlite>,
    done: bool,
}

impl Writer {
    /// The write was committed: the connection goes back to the pool as it is.
    fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.done {
            tracing::debug!("a write on the store failed; replacing its connection");
            self.conn.close_on_drop();
        }
    }
}

impl std::ops::Deref for Writer {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

/// Creates the file readable by its owner only: the history names connections and
/// may hold connector error texts.
fn create_private(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs per INSERT when claiming many (7 values each, far below SQLite's limit).
const CLAIM_CHUNK: usize = 400;

/// Inserts the runs not claimed before; returns each one's new id, or `None`
/// where its (connection, tick) was already claimed.
async fn claim_chunk(
    tx: &mut Transaction<'_, Sqlite>,
    runs: &[NewRun],
) -> Result<Vec<Option<i64>>, StoreError> {
    let mut sql = String::from(
        "INSERT OR IGNORE INTO runs \
         (connection, connection_id, instance, trigger, scheduled_for, claimed_at, status, retry_of) \
         VALUES ",
    );
    for i in 0..runs.len() {
        sql.push_str(if i == 0 {
            "(?, ?, ?, ?, ?, ?, 'pending', ?)"
        } else {
            ", (?, ?, ?, ?, ?, ?, 'pending', ?)"
        });
    }
    // A rowid identifies each inserted row; which input it was for is found by
    // its (connection, scheduled_for, trigger), since RETURNING has no order.
    sql.push_str(" RETURNING id, connection, scheduled_for, trigger");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for run in runs {
        query = query
            .bind(&run.connection)
            .bind(&run.connection_id)
            .bind(&run.instance)
            .bind(run.trigger.as_str())
            .bind(ms(run.scheduled_for))
            .bind(ms(run.claimed_at))
            .bind(run.retry_of);
    }
    let rows = query.fetch_all(&mut **tx).await.map_err(query_error)?;
    let mut inserted: std::collections::HashMap<(String, i64, String), Vec<i64>> =
        std::collections::HashMap::new();
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
    // Runs that share a key (manual runs at one instant) take the ids in order.
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

const RUN_COLUMNS: &str = "id, connection, connection_id, instance, trigger, scheduled_for, claimed_at, \
     started_at, finished_at, status, job_id, attempts, records_synced, bytes_synced, error, retry_of, \
     cancel_requested_at";

fn read_run(row: &SqliteRow) -> Result<Run, StoreError> {
    let get_err = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let opt_time = |v: Option<i64>| v.map(from_ms).transpose();
    let opt_count = |v: Option<i64>| v.map(|n| u64::try_from(n).unwrap_or(0));
    Ok(Run {
        id: row.try_get("id").map_err(get_err)?,
        connection: row.try_get("connection").map_err(get_err)?,
        connection_id: row.try_get("connection_id").map_err(get_err)?,
        instance: row.try_get("instance").map_err(get_err)?,
        trigger: Trigger::from_str(row.try_get("trigger").map_err(get_err)?)?,
        scheduled_for: from_ms(row.try_get("scheduled_for").map_err(get_err)?)?,
        claimed_at: from_ms(row.try_get("claimed_at").map_err(get_err)?)?,
        started_at: opt_time(row.try_get("started_at").map_err(get_err)?)?,
        finished_at: opt_time(row.try_get("finished_at").map_err(get_err)?)?,
        status: RunStatus::from_str(row.try_get("status").map_err(get_err)?)?,
        job_id: row.try_get("job_id").map_err(get_err)?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts").map_err(get_err)?).unwrap_or(0),
        records_synced: opt_count(row.try_get("records_synced").map_err(get_err)?),
        bytes_synced: opt_count(row.try_get("bytes_synced").map_err(get_err)?),
        error: row.try_get("error").map_err(get_err)?,
        retry_of: row.try_get("retry_of").map_err(get_err)?,
        cancel_requested_at: opt_time(row.try_get("cancel_requested_at").map_err(get_err)?)?,
    })
}

/// The run a claim inserted as `id`, as later reads will see it.
fn pending_run(run: NewRun, id: i64) -> Result<Run, StoreError> {
    Ok(Run {
        id,
        connection: run.connection,
        connection_id: run.connection_id,
        instance: run.instance,
        trigger: run.trigger,
        // At the store's precision.
        scheduled_for: from_ms(ms(run.scheduled_for))?,
        claimed_at: from_ms(ms(run.claimed_at))?,
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
    })
}

fn read_runs(rows: Vec<SqliteRow>) -> Result<Vec<Run>, StoreError> {
    rows.iter().map(read_run).collect()
}

#[async_trait]
impl Store for SqliteStore {
    async fn claim(&self, run: NewRun) -> Result<Option<Run>, StoreError> {
        Ok(self.claim_many(vec![run]).await?.pop().flatten())
    }

    async fn claim_many(&self, runs: Vec<NewRun>) -> Result<Vec<Option<Run>>, StoreError> {
        let mut ids: Vec<Option<i64>> = Vec::with_capacity(runs.len());
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.map_err(query_error)?;
        // Rows per statement: a thousand ticks due together are a few statements,
        // not a thousand round trips to SQLite's thread.
        for chunk in runs.chunks(CLAIM_CHUNK) {
            ids.extend(claim_chunk(&mut tx, chunk).await?);
        }
        tx.commit().await.map_err(query_error)?;
        writer.done();
        runs.into_iter()
            .zip(ids)
            .map(|(run, id)| id.map(|id| pending_run(run, id)).transpose())
            .collect()
    }

    async fn mark_started(
        &self,
        run_id: i64,
        job_id: i64,
        started_at: DateTime<Utc>,
    ) -> Result<Started, StoreError> {
        let mut writer = self.writer().await?;
        let cancel_requested: Option<bool> = sqlx::query_scalar(
            "UPDATE runs SET status = 'running', job_id = ?, started_at = ? \
             WHERE id = ? AND status = 'pending' \
             RETURNING cancel_requested_at IS NOT NULL",
        )
        .bind(job_id)
        .bind(ms(started_at))
        .bind(run_id)
        .fetch_optional(&mut *writer)
        .await
        .map_err(query_error)?;
        writer.done();
        Ok(match cancel_requested {
            Some(cancel_requested) => Started::Running { cancel_requested },
            None => Started::NotPending,
        })
    }

    async fn request_cancel(&self, run_id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query(
            "UPDATE runs SET cancel_requested_at = coalesce(cancel_requested_at, ?) \
             WHERE id = ? AND status IN ('pending', 'running')",
        )
        .bind(ms(at))
        .bind(run_id)
        .execute(&mut *writer)
        .await
        .map_err(query_error)?;
        writer.done();
        Ok(done.rows_affected() > 0)
    }

    async fn record_progress(&self, updates: &[(i64, Progress)]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.map_err(query_error)?;
        for (run_id, progress) in updates {
            sqlx::query(
                "UPDATE runs SET attempts = ?, records_synced = coalesce(?, records_synced), \
                     bytes_synced = coalesce(?, bytes_synced) \
                 WHERE id = ? AND status = 'running'",
            )
            .bind(i64::from(progress.attempts))
            .bind(count(progress.records_synced))
            .bind(count(progress.bytes_synced))
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        }
        tx.commit().await.map_err(query_error)?;
        writer.done();
        Ok(())
    }

    async fn finish(&self, closings: &[Closing]) -> Result<Vec<Closed>, StoreError> {
        if closings.is_empty() {
            return Ok(Vec::new());
        }
        let mut closed = Vec::with_capacity(closings.len());
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.map_err(query_error)?;
        for closing in closings {
            let (run_id, outcome) = (closing.run_id, &closing.outcome);
            let done = sqlx::query(
                "UPDATE runs SET status = ?, finished_at = ?, \
                     attempts = max(attempts, ?), \
                     records_synced = coalesce(?, records_synced), \
                     bytes_synced = coalesce(?, bytes_synced), error = ? \
                 WHERE id = ? AND status IN ('pending', 'running')",
            )
            .bind(outcome.status.as_str())
            .bind(ms(outcome.finished_at))
            .bind(i64::from(outcome.progress.attempts))
            .bind(count(outcome.progress.records_synced))
            .bind(count(outcome.progress.bytes_synced))
            .bind(outcome.error.as_deref())
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
            if done.rows_affected() > 0 {
                closed.push(closing);
            }
        }
        // What follows the outcomes that landed, claimed with them.
        let then: Vec<NewRun> = closed.iter().flat_map(|c| c.then.clone()).collect();
        let mut ids = Vec::with_capacity(then.len());
        for chunk in then.chunks(CLAIM_CHUNK) {
            ids.extend(claim_chunk(&mut tx, chunk).await?);
        }
        tx.commit().await.map_err(query_error)?;
        writer.done();
        let mut claimed = then.into_iter().zip(ids);
        closed
            .into_iter()
            .map(|closing| {
                let then = claimed
                    .by_ref()
                    .take(closing.then.len())
                    .filter_map(|(run, id)| id.map(|id| pending_run(run, id)))
                    .collect::<Result<_, _>>()?;
                Ok(Closed {
                    run_id: closing.run_id,
                    then,
                })
            })
            .collect()
    }

    async fn open_runs(&self) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('pending', 'running') ORDER BY id"
        )))
        .fetch_all(&self.readers)
        .await
        .map_err(query_error)?;
        read_runs(rows)
    }

    async fn run(&self, run_id: i64) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"
        )))
        .bind(run_id)
        .fetch_optional(&self.readers)
        .await
        .map_err(query_error)?;
        row.as_ref().map(read_run).transpose()
    }

    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Run>, StoreError> {
        let limit = i64::from(filter.limit.max(1));
        let rows =
            match &filter.connection {
                Some(connection) => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE connection = ? ORDER BY id DESC LIMIT ?"
                )))
                .bind(connection)
                .bind(limit)
                .fetch_all(&self.readers)
                .await,
                None => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?"
                    )))
                    .bind(limit)
                    .fetch_all(&self.readers)
                    .await
                }
            }
            .map_err(query_error)?;
        read_runs(rows)
    }

    async fn latest_runs(&self) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id IN (SELECT max(id) FROM runs GROUP BY connection)"
        )))
        .fetch_all(&self.readers)
        .await
        .map_err(query_error)?;
        read_runs(rows)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let token: i64 = rand::random();
        let mut writer = self.writer().await?;
        sqlx::query(
            "INSERT INTO store_checks (id, token) VALUES (1, ?) \
             ON CONFLICT (id) DO UPDATE SET token = excluded.token",
        )
        .bind(token)
        .execute(&mut *writer)
        .await
        .map_err(query_error)?;
        writer.done();
        // A write the writer calls committed may still sit in a transaction SQLite
        // kept open; only another connection can tell.
        let seen: Option<i64> = sqlx::query_scalar("SELECT token FROM store_checks WHERE id = 1")
            .fetch_optional(&self.readers)
            .await
            .map_err(query_error)?;
        if seen == Some(token) {
            Ok(())
        } else {
            Err(StoreError::Query(
                "a write to the store is not visible to other connections".into(),
            ))
        }
    }

    async fn marks(&self) -> Result<Vec<ConnectionMarks>, StoreError> {
        // Kept by triggers as runs are claimed and end (migration `connection_marks`).
        let rows = sqlx::query(
            "SELECT connection, last_tick, last_claimed, last_success, failures \
             FROM connection_marks ORDER BY connection",
        )
        .fetch_all(&self.readers)
        .await
        .map_err(query_error)?;
        rows.iter()
            .map(|row| {
                let time = |column: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
                    row.try_get::<Option<i64>, _>(column)
                        .map_err(query_error)?
                        .map(from_ms)
                        .transpose()
                };
                Ok(ConnectionMarks {
                    connection: row.try_get("connection").map_err(query_error)?,
                    last_tick: time("last_tick")?,
                    last_claimed: time("last_claimed")?,
                    last_success: time("last_success")?,
                    failures: u32::try_from(
                        row.try_get::<i64, _>("failures").map_err(query_error)?,
                    )
                    .unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    async fn run_with_job(&self, instance: &str, job_id: i64) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT id FROM runs WHERE instance = ? AND job_id = ? LIMIT 1")
            .bind(instance)
            .bind(job_id)
            .fetch_optional(&self.readers)
            .await
            .map_err(query_error)
    }

    async fn retries_of(&self, first: i64) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE retry_of = ?")
            .bind(first)
            .fetch_one(&self.readers)
            .await
            .map_err(query_error)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn set_paused(&self, connection: &str, paused: bool) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let done = if paused {
            sqlx::query("INSERT OR IGNORE INTO pauses (connection, paused_at) VALUES (?, ?)")
                .bind(connection)
                .bind(ms(Utc::now()))
                .execute(&mut *writer)
                .await
        } else {
            sqlx::query("DELETE FROM pauses WHERE connection = ?")
                .bind(connection)
                .execute(&mut *writer)
                .await
        }
        .map_err(query_error)?;
        writer.done();
        Ok(done.rows_affected() > 0)
    }

    async fn paused(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT connection FROM pauses ORDER BY connection")
            .fetch_all(&self.readers)
            .await
            .map_err(query_error)
    }

    async fn totals(&self) -> Result<Vec<ConnectionTotals>, StoreError> {
        let rows = sqlx::query(
            "SELECT connection, status, runs, records, bytes, zero_records \
             FROM run_totals ORDER BY connection",
        )
        .fetch_all(&self.readers)
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
             WHERE finished_at >= ? ORDER BY finished_at",
        )
        .bind(ms(since))
        .fetch_all(&self.readers)
        .await
        .map_err(query_error)?;
        rows.iter()
            .map(|row| {
                Ok(Ended {
                    connection: row.try_get("connection").map_err(query_error)?,
                    status: RunStatus::from_str(row.try_get("status").map_err(query_error)?)?,
                    started_at: row
                        .try_get::<Option<i64>, _>("started_at")
                        .map_err(query_error)?
                        .map(from_ms)
                        .transpose()?,
                    finished_at: from_ms(row.try_get("finished_at").map_err(query_error)?)?,
                })
            })
            .collect()
    }

    async fn record_airbyte_objects(
        &self,
        objects: &[AirbyteObject],
        forget: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.map_err(query_error)?;
        for object in objects {
            sqlx::query(
                "INSERT INTO airbyte_objects (instance, kind, name, airbyte_id, updated_at) \
                 VALUES (?, ?, ?, ?, ?) \
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
            sqlx::query("DELETE FROM airbyte_objects WHERE instance = ? AND kind = ? AND name = ?")
                .bind(instance)
                .bind(kind)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
        }
        tx.commit().await.map_err(query_error)?;
        writer.done();
        Ok(())
    }

    async fn prune(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        let cut = ms(before);
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.map_err(query_error)?;
        // First runs of chains that ended whole before the cut, oldest end first
        // (the `runs_by_finish` index); their retries go with them.
        let heads: Vec<i64> = sqlx::query_scalar(
            "SELECT r.id FROM runs r \
             WHERE r.finished_at < ?1 AND r.retry_of IS NULL \
               AND r.status NOT IN ('pending', 'running') \
               AND NOT EXISTS (SELECT 1 FROM runs o WHERE o.retry_of = r.id \
                   AND (o.finished_at IS NULL OR o.finished_at >= ?1 \
                        OR o.status IN ('pending', 'running') \
                        OR o.id = (SELECT max(id) FROM runs))) \
               AND r.id < (SELECT max(id) FROM runs) \
             ORDER BY r.finished_at LIMIT ?2",
        )
        .bind(cut)
        .bind(i64::from(batch.max(1)))
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error)?;
        if heads.is_empty() {
            tx.rollback().await.map_err(query_error)?;
            writer.done();
            return Ok(0);
        }
        // Ids are integers read back from the store: safe to spell into the SQL.
        let list = heads
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let retries = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM runs WHERE retry_of IN ({list})"
        )))
        .execute(&mut *tx)
        .await
        .map_err(query_error)?
        .rows_affected();
        let firsts = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM runs WHERE id IN ({list})"
        )))
        .execute(&mut *tx)
        .await
        .map_err(query_error)?
        .rows_affected();
        sqlx::query(
            "INSERT INTO prunes (id, before, at) VALUES (1, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET before = max(before, excluded.before), \
                 at = excluded.at",
        )
        .bind(cut)
        .bind(ms(Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        // Gives the freed pages back to the file system, a bounded number at a time
        // so the writer is not held long (each batch frees only a few pages).
        sqlx::query("PRAGMA incremental_vacuum(2000)")
            .execute(&mut *writer)
            .await
            .map_err(query_error)?;
        writer.done();
        Ok(retries + firsts)
    }

    async fn pruned(&self) -> Result<Option<Pruned>, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as("SELECT before, at FROM prunes WHERE id = 1")
            .fetch_optional(&self.readers)
            .await
            .map_err(query_error)?;
        row.map(|(before, at)| {
            Ok(Pruned {
                before: from_ms(before)?,
                at: from_ms(at)?,
            })
        })
        .transpose()
    }

    async fn close(&self) {
        SqliteStore::close(self).await;
    }

    async fn airbyte_objects(&self) -> Result<Vec<AirbyteObject>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance, kind, name, airbyte_id, updated_at FROM airbyte_objects \
             ORDER BY instance, kind, name",
        )
        .fetch_all(&self.readers)
        .await
        .map_err(query_error)?;
        rows.iter()
            .map(|row| {
                Ok(AirbyteObject {
                    instance: row.try_get("instance").map_err(query_error)?,
                    kind: row.try_get("kind").map_err(query_error)?,
                    name: row.try_get("name").map_err(query_error)?,
                    airbyte_id: row.try_get("airbyte_id").map_err(query_error)?,
                    updated_at: from_ms(row.try_get("updated_at").map_err(query_error)?)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fresh() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("history.db"))
            .await
            .unwrap();
        (dir, store)
    }

    /// A store written before runs named their Airbyte instance: its open run and
    /// its recorded objects are the instance named `default` once migrated.
    #[tokio::test]
    async fn runs_and_objects_written_before_instances_are_the_default_instance_s() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let store = SqliteStore::connect(&path, true).await.unwrap();
        let old = &store.writer;
        MIGRATOR.run_to(20_261_129_000_003, old).await.unwrap();
        sqlx::query(
            "INSERT INTO runs (connection, connection_id, trigger, scheduled_for, claimed_at, \
                 started_at, status, job_id) \
             VALUES ('orders', '8c7f0c34-0000-4000-8000-000000000001', 'schedule', 1000, 1000, \
                 1000, 'running', 42)",
        )
        .execute(old)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO airbyte_objects (kind, name, airbyte_id, updated_at) \
             VALUES ('source', 'pg', 'id-1', 1000)",
        )
        .execute(old)
        .await
        .unwrap();
        store.close().await;

        let store = SqliteStore::open(&path).await.unwrap();
        let open = store.open_runs().await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].instance, "default");
        assert_eq!(open[0].job_id, Some(42));
        assert_eq!(
            store.run_with_job("default", 42).await.unwrap(),
            Some(open[0].id)
        );
        let objects = store.airbyte_objects().await.unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(
            (objects[0].instance.as_str(), objects[0].airbyte_id.as_str()),
            ("default", "id-1")
        );
        store.close().await;
    }

    fn tick(connection: &str, at: i64) -> NewRun {
        NewRun {
            connection: connection.into(),
            connection_id: "8c7f0c34-0000-4000-8000-000000000001".into(),
            instance: "default".into(),
            trigger: Trigger::Schedule,
            scheduled_for: DateTime::from_timestamp(at, 0).unwrap(),
            retry_of: None,
            claimed_at: chrono::Utc::now(),
        }
    }

    /// Whether `store` claims the tick of `connection` at 1,800,000,000.
    async fn claims(store: &SqliteStore, connection: &str) -> bool {
        store
            .claim(tick(connection, 1_800_000_000))
            .await
            .unwrap()
            .is_some()
    }

    #[tokio::test]
    async fn a_tick_is_claimed_once_even_after_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let store = SqliteStore::open(&path).await.unwrap();
        assert!(claims(&store, "orders").await);
        assert!(!claims(&store, "orders").await);
        store.close().await;
        let store = SqliteStore::open(&path).await.unwrap();
        assert!(!claims(&store, "orders").await);
        assert!(claims(&store, "customers").await);
    }

    /// Caps the file at its current size, so SQLite answers the next write that
    /// needs a page with SQLITE_FULL, as on a full disk; `None` lifts the cap.
    async fn cap_the_file(store: &SqliteStore, cap: Option<i64>) {
        let pages: i64 = match cap {
            Some(extra) => {
                let now: i64 = sqlx::query_scalar("PRAGMA page_count")
                    .fetch_one(&store.writer)
                    .await
                    .unwrap();
                now + extra
            }
            None => 1 << 30,
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA max_page_count = {pages}"
        )))
        .execute(&store.writer)
        .await
        .unwrap();
    }

    fn outcome(status: RunStatus) -> Outcome {
        Outcome {
            status,
            finished_at: Utc::now(),
            progress: Progress {
                attempts: 1,
                records_synced: Some(7),
                bytes_synced: Some(70),
            },
            error: None,
        }
    }

    #[tokio::test]
    async fn writes_made_after_the_disk_was_full_for_a_moment_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let before = store
            .claim(tick("orders", 1_700_000_000))
            .await
            .unwrap()
            .unwrap();

        // The disk fills. First a write whose COMMIT cannot reach the disk: SQLite
        // ends such a transaction itself (a trigger of the writer connection's own
        // does the same here, without filling a disk).
        sqlx::query(
            "CREATE TEMP TRIGGER full_disk BEFORE INSERT ON runs WHEN NEW.connection = 'doomed' \
             BEGIN SELECT RAISE(ROLLBACK, 'database or disk is full'); END",
        )
        .execute(&store.writer)
        .await
        .unwrap();
        let refused = store
            .claim(tick("doomed", 1_700_000_000))
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("full"), "{refused}");
        // Then a write that finds no free page: SQLite undoes the statement and
        // keeps the transaction open.
        cap_the_file(&store, Some(0)).await;
        let crowd: Vec<NewRun> = (0..2_000)
            .map(|i| tick(&format!("{}-{i}", "x".repeat(200)), 1_700_000_000))
            .collect();
        let refused = store.claim_many(crowd.clone()).await.unwrap_err();
        assert!(refused.to_string().contains("full"), "{refused}");

        // Space comes back; every later write is committed.
        cap_the_file(&store, None).await;
        let after = store
            .claim(tick("orders", 1_700_000_060))
            .await
            .unwrap()
            .unwrap();
        store.mark_started(after.id, 99, Utc::now()).await.unwrap();
        let closed = store
            .finish(&[Closing::only(after.id, outcome(RunStatus::Succeeded))])
            .await
            .unwrap();
        let closed: Vec<i64> = closed.iter().map(|c| c.run_id).collect();
        assert_eq!(closed, vec![after.id]);
        assert!(store.set_paused("orders", true).await.unwrap());
        assert_eq!(
            store.claim_many(crowd[..10].to_vec()).await.unwrap().len(),
            10
        );

        // Another connection sees them while the writer is still open...
        let reader = SqliteStore::open_read_only(&path).await.unwrap();
        let seen = |store: SqliteStore| async move {
            let run = store
                .run(after.id)
                .await
                .unwrap()
                .expect("the run after the outage");
            assert_eq!(run.status, RunStatus::Succeeded);
            assert_eq!(run.job_id, Some(99));
            assert!(store.run(before.id).await.unwrap().is_some());
            assert_eq!(store.paused().await.unwrap(), vec!["orders".to_owned()]);
            let all = store
                .history(&HistoryFilter {
                    connection: None,
                    limit: 1000,
                })
                .await
                .unwrap();
            assert_eq!(all.len(), 12);
            store.close().await;
        };
        seen(reader).await;
        // ...and so does the file after a restart.
        store.close().await;
        seen(SqliteStore::open(&path).await.unwrap()).await;
    }

    /// Claims a tick of `connection` at `at` and ends it with `status` at `at` + 60 s.
    async fn ended(store: &SqliteStore, connection: &str, at: i64, status: RunStatus) {
        let run = store.claim(tick(connection, at)).await.unwrap().unwrap();
        let mut end = outcome(status);
        end.finished_at = DateTime::from_timestamp(at + 60, 0).unwrap();
        store.finish(&[Closing::only(run.id, end)]).await.unwrap();
    }

    async fn pages(store: &SqliteStore) -> (i64, i64) {
        let count: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&store.readers)
            .await
            .unwrap();
        let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&store.readers)
            .await
            .unwrap();
        (count, free)
    }

    #[tokio::test]
    async fn pruned_runs_give_their_pages_back_to_the_file_system() {
        let (_dir, store) = fresh().await;
        let runs: Vec<NewRun> = (0..3_000).map(|i| tick("orders", 1_000 + i)).collect();
        let claimed = store.claim_many(runs).await.unwrap();
        let closings: Vec<Closing> = claimed
            .iter()
            .flatten()
            .map(|run| {
                let mut end = outcome(RunStatus::Failed);
                end.finished_at = DateTime::from_timestamp(5_000, 0).unwrap();
                // Room enough that the runs fill many pages.
                end.error = Some("x".repeat(300));
                Closing::only(run.id, end)
            })
            .collect();
        store.finish(&closings).await.unwrap();
        let (before, _) = pages(&store).await;
        let cut = DateTime::from_timestamp(10_000, 0).unwrap();
        while store.prune(cut, 1_000).await.unwrap() > 0 {}
        let (after, free) = pages(&store).await;
        assert!(
            after * 4 < before,
            "the file shrank from {before} to {after} pages"
        );
        assert_eq!(free, 0, "no freed page is left in the file");
    }

    #[tokio::test]
    async fn a_store_made_before_pruning_is_rewritten_once_to_vacuum_incrementally() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let mut old = SqliteConnection::connect_with(&options).await.unwrap();
            sqlx::query("CREATE TABLE leftover (id INTEGER PRIMARY KEY)")
                .execute(&mut old)
                .await
                .unwrap();
            let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
                .fetch_one(&mut old)
                .await
                .unwrap();
            assert_eq!(mode, 0, "a file made without it has no auto_vacuum");
            old.close().await.unwrap();
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!(mode, 2, "incremental");
        store.close().await;
    }

    fn marks_of(marks: &[ConnectionMarks], connection: &str) -> ConnectionMarks {
        marks
            .iter()
            .find(|m| m.connection == connection)
            .cloned()
            .unwrap_or_else(|| panic!("no marks for {connection}: {marks:?}"))
    }

    #[tokio::test]
    async fn a_failure_streak_outlives_the_store_being_reopened_and_ends_at_a_success() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let t = 1_800_000_000;
        ended(&store, "orders", t, RunStatus::Succeeded).await;
        ended(&store, "orders", t + 100, RunStatus::Failed).await;
        // Neither a success nor a failure: the streak goes on through them.
        ended(&store, "orders", t + 200, RunStatus::Skipped).await;
        ended(&store, "orders", t + 300, RunStatus::Cancelled).await;
        ended(&store, "orders", t + 400, RunStatus::TimedOut).await;
        ended(&store, "orders", t + 500, RunStatus::TriggerFailed).await;
        store.claim(tick("orders", t + 600)).await.unwrap();
        store.close().await;

        let store = SqliteStore::open(&path).await.unwrap();
        let orders = marks_of(&store.marks().await.unwrap(), "orders");
        assert_eq!(orders.failures, 3);
        assert_eq!(orders.last_success.map(|t| t.timestamp()), Some(t + 60));
        assert_eq!(orders.last_tick.map(|t| t.timestamp()), Some(t + 600));
        ended(&store, "orders", t + 700, RunStatus::Succeeded).await;
        let orders = marks_of(&store.marks().await.unwrap(), "orders");
        assert_eq!(orders.failures, 0);
        assert_eq!(orders.last_success.map(|t| t.timestamp()), Some(t + 760));
    }

    #[tokio::test]
    async fn a_history_from_before_the_marks_table_keeps_its_marks_and_streaks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let store = SqliteStore::connect(&path, true).await.unwrap();
        MIGRATOR
            .run_to(20261129000001, &store.writer)
            .await
            .unwrap();
        let t = 1_800_000_000;
        // Rows as that schema holds them: a claim of today's code names columns
        // added since.
        let old_run = |connection: &str, at: i64, trigger: &str, status: RunStatus| {
            let finished = (status != RunStatus::Pending).then_some((at + 60) * 1000);
            sqlx::query(
                "INSERT INTO runs (connection, connection_id, trigger, scheduled_for, \
                     claimed_at, finished_at, status) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(connection.to_owned())
            .bind("8c7f0c34-0000-4000-8000-000000000001")
            .bind(trigger.to_owned())
            .bind(at * 1000)
            .bind(at * 1000)
            .bind(finished)
            .bind(status.as_str())
            .execute(&store.writer)
        };
        old_run("orders", t, "schedule", RunStatus::Failed)
            .await
            .unwrap();
        old_run("orders", t + 100, "schedule", RunStatus::Succeeded)
            .await
            .unwrap();
        old_run("orders", t + 200, "schedule", RunStatus::Failed)
            .await
            .unwrap();
        old_run("orders", t + 300, "schedule", RunStatus::Failed)
            .await
            .unwrap();
        old_run("billing", t, "schedule", RunStatus::TimedOut)
            .await
            .unwrap();
        old_run("manual-only", t + 50, "manual", RunStatus::Pending)
            .await
            .unwrap();
        store.close().await;

        let store = SqliteStore::open(&path).await.unwrap();
        let marks = store.marks().await.unwrap();
        let orders = marks_of(&marks, "orders");
        assert_eq!(orders.failures, 2);
        assert_eq!(orders.last_success.map(|t| t.timestamp()), Some(t + 160));
        assert_eq!(orders.last_tick.map(|t| t.timestamp()), Some(t + 300));
        let billing = marks_of(&marks, "billing");
        assert_eq!((billing.failures, billing.last_success), (1, None));
        let manual_only = marks_of(&marks, "manual-only");
        assert_eq!(manual_only.last_tick, None);
        assert!(manual_only.last_claimed.is_some());
        assert_eq!(manual_only.failures, 0);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_file_is_created_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, store) = fresh().await;
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
