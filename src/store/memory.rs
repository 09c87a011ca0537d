//! A history held in memory, with the semantics of the SQLite one: for tests of
//! the engine on tokio's paused clock, where SQLite's worker thread would leave
//! the runtime idle and let virtual time run past every timeout. Nothing here
//! outlives the process.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::*;
use crate::run::*;

/// A history store in memory. Its claims are unique on (connection, instant) for
/// `schedule` and `dependency` runs, and its transitions are guarded, as SQLite's are.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Set by [`MemoryStore::stop_answering`].
    silent: AtomicBool,
    /// Set by [`MemoryStore::refuse_claims`].
    refusing_claims: AtomicBool,
    /// Set by [`MemoryStore::refuse_outcomes`].
    refusing_outcomes: AtomicBool,
}

#[derive(Debug, Default)]
struct Inner {
    /// By id, ascending (pruning leaves gaps).
    runs: Vec<Run>,
    /// The id of the newest run claimed, pruned or not.
    last_id: i64,
    /// What pruned runs added to the totals, by (connection, status as spelled),
    /// as the other stores keep totals in a table of their own.
    pruned_totals: BTreeMap<(String, String), Sums>,
    pruned: Option<Pruned>,
    pauses: BTreeSet<String>,
    objects: BTreeMap<(String, String, String), AirbyteObject>,
    marks: HashMap<String, ConnectionMarks>,
}

/// A status's (runs, records, bytes, zero-record runs) within one connection.
type Sums = (RunStatus, u64, u64, u64, u64);

/// At the store's precision, as SQLite keeps it: milliseconds.
fn stored(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

fn is_unique_trigger(trigger: Trigger) -> bool {
    matches!(trigger, Trigger::Schedule | Trigger::Dependency)
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on every call waits forever, as on a store that stopped
    /// answering (a hung disk, a lost database): for tests of what notices it.
    pub fn stop_answering(&self) {
        self.silent.store(true, Ordering::Relaxed);
    }

    /// From now on a claim on its own ([`Store::claim`], [`Store::claim_many`])
    /// fails, as if the process died right after the write before it: for tests
    /// that nothing an outcome sets off is written apart from the outcome.
    pub fn refuse_claims(&self) {
        self.refusing_claims.store(true, Ordering::Relaxed);
    }

    /// While on, writing outcomes ([`Store::finish`]) fails, as on a full disk.
    pub fn refuse_outcomes(&self, on: bool) {
        self.refusing_outcomes.store(on, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn answer(&self) {
        if self.silent.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    }
}

impl Inner {
    /// Claims a run as [`Store::claim`] does: `None` when its instant is taken.
    fn claim(&mut self, new: NewRun) -> Option<Run> {
        let scheduled_for = stored(new.scheduled_for);
        let taken = is_unique_trigger(new.trigger)
            && self.runs.iter().any(|r| {
                is_unique_trigger(r.trigger)
                    && r.connection == new.connection
                    && r.scheduled_for == scheduled_for
            });
        if taken {
            return None;
        }
        let run = Run {
            id: self.last_id + 1,
            connection: new.connection,
            connection_id: new.connection_id,
            instance: new.instance,
            trigger: new.trigger,
            scheduled_for,
            claimed_at: stored(new.claimed_at),
            started_at: None,
            finished_at: None,
            status: RunStatus::Pending,
            job_id: None,
            attempts: 0,
            records_synced: None,
            bytes_synced: None,
            error: None,
            retry_of: new.retry_of,
            cancel_requested_at: None,
        };
        let now = run.claimed_at;
        let marks = self.marks_of(&run.connection);
        marks.last_claimed = Some(marks.last_claimed.map_or(now, |t| t.max(now)));
        if run.trigger == Trigger::Schedule {
            marks.last_tick = Some(
                marks
                    .last_tick
                    .map_or(scheduled_for, |t| t.max(scheduled_for)),
            );
        }
        self.last_id = run.id;
        self.runs.push(run.clone());
        Some(run)
    }

    fn run_mut(&mut self, run_id: i64) -> Option<&mut Run> {
        let index = self.runs.binary_search_by_key(&run_id, |r| r.id).ok()?;
        self.runs.get_mut(index)
    }

    fn marks_of(&mut self, connection: &str) -> &mut ConnectionMarks {
        self.marks
            .entry(connection.to_owned())
            .or_insert_with(|| ConnectionMarks {
                connection: connection.to_owned(),
                ..ConnectionMarks::default()
            })
    }

    /// What the `connection_marks` triggers do when a run ends.
    fn mark_end(&mut self, connection: &str, status: RunStatus, finished_at: DateTime<Utc>) {
        let marks = self.marks_of(connection);
        match status {
            RunStatus::Succeeded => {
                marks.last_success = Some(
                    marks
                        .last_success
                        .map_or(finished_at, |t| t.max(finished_at)),
                );
                marks.failures = 0;
            }
            RunStatus::Failed | RunStatus::TimedOut | RunStatus::TriggerFailed => {
                marks.failures = marks.failures.saturating_add(1);
            }
            _ => {}
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn claim(&self, run: NewRun) -> Result<Option<Run>, StoreError> {
        self.answer().await;
        Ok(self.claim_many(vec![run]).await?.pop().flatten())
    }

    async fn claim_many(&self, runs: Vec<NewRun>) -> Result<Vec<Option<Run>>, StoreError> {
        self.answer().await;
        if self.refusing_claims.load(Ordering::Relaxed) {
            return Err(StoreError::Query("claims refused for a test".into()));
        }
        let mut inner = self.lock();
        Ok(runs.into_iter().map(|new| inner.claim(new)).collect())
    }

    async fn mark_started(
        &self,
        run_id: i64,
        job_id: i64,
        started_at: DateTime<Utc>,
    ) -> Result<Started, StoreError> {
        self.answer().await;
        let mut inner = self.lock();
        let Some(run) = inner
            .run_mut(run_id)
            .filter(|r| r.status == RunStatus::Pending)
        else {
            return Ok(Started::NotPending);
        };
        run.status = RunStatus::Running;
        run.job_id = Some(job_id);
        run.started_at = Some(stored(started_at));
        Ok(Started::Running {
            cancel_requested: run.cancel_requested_at.is_some(),
        })
    }

    async fn request_cancel(&self, run_id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.answer().await;
        let mut inner = self.lock();
        let Some(run) = inner.run_mut(run_id).filter(|r| r.status.is_open()) else {
            return Ok(false);
        };
        run.cancel_requested_at.get_or_insert(stored(at));
        Ok(true)
    }

    async fn record_progress(&self, updates: &[(i64, Progress)]) -> Result<(), StoreError> {
        self.answer().await;
        let mut inner = self.lock();
        for (run_id, progress) in updates {
            if let Some(run) = inner
                .run_mut(*run_id)
                .filter(|r| r.status == RunStatus::Running)
            {
                run.attempts = progress.attempts;
                run.records_synced = progress.records_synced.or(run.records_synced);
                run.bytes_synced = progress.bytes_synced.or(run.bytes_synced);
            }
        }
        Ok(())
    }

    async fn finish(&self, closings: &[Closing]) -> Result<Vec<Closed>, StoreError> {
        self.answer().await;
        if self.refusing_outcomes.load(Ordering::Relaxed) {
            return Err(StoreError::Query("outcomes refused for a test".into()));
        }
        let mut inner = self.lock();
        let mut closed = Vec::new();
        for closing in closings {
            let outcome = &closing.outcome;
            let Some(run) = inner.run_mut(closing.run_id).filter(|r| r.status.is_open()) else {
                continue;
            };
            run.status = outcome.status;
            run.finished_at = Some(stored(outcome.finished_at));
            run.attempts = run.attempts.max(outcome.progress.attempts);
            run.records_synced = outcome.progress.records_synced.or(run.records_synced);
            run.bytes_synced = outcome.progress.bytes_synced.or(run.bytes_synced);
            run.error = outcome.error.clone();
            let connection = run.connection.clone();
            inner.mark_end(&connection, outcome.status, stored(outcome.finished_at));
            closed.push(closing);
        }
        // Follow-ups after every outcome, as one transaction would order them.
        Ok(closed
            .into_iter()
            .map(|closing| Closed {
                run_id: closing.run_id,
                then: closing
                    .then
                    .iter()
                    .filter_map(|new| inner.claim(new.clone()))
                    .collect(),
            })
            .collect())
    }

    async fn open_runs(&self) -> Result<Vec<Run>, StoreError> {
        self.answer().await;
        Ok(self
            .lock()
            .runs
            .iter()
            .filter(|r| r.status.is_open())
            .cloned()
            .collect())
    }

    async fn run(&self, run_id: i64) -> Result<Option<Run>, StoreError> {
        self.answer().await;
        Ok(self.lock().run_mut(run_id).map(|r| r.clone()))
    }

    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Run>, StoreError> {
        self.answer().await;
        let limit = usize::try_from(filter.limit.max(1)).unwrap_or(usize::MAX);
        Ok(self
            .lock()
            .runs
            .iter()
            .rev()
            .filter(|r| {
                filter
                    .connection
                    .as_ref()
                    .is_none_or(|c| *c == r.connection)
            })
            .take(limit)
            .cloned()
            .collect())
    }

    async fn latest_runs(&self) -> Result<Vec<Run>, StoreError> {
        self.answer().await;
        let inner = self.lock();
        let mut newest: BTreeMap<&str, &Run> = BTreeMap::new();
        for run in &inner.runs {
            newest.insert(&run.connection, run);
        }
        Ok(newest.into_values().cloned().collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.answer().await;
        Ok(())
    }

    async fn marks(&self) -> Result<Vec<ConnectionMarks>, StoreError> {
        self.answer().await;
        let inner = self.lock();
        let mut marks: Vec<ConnectionMarks> = inner.marks.values().cloned().collect();
        marks.sort_by(|a, b| a.connection.cmp(&b.connection));
        Ok(marks)
    }

    async fn run_with_job(&self, instance: &str, job_id: i64) -> Result<Option<i64>, StoreError> {
        self.answer().await;
        Ok(self
            .lock()
            .runs
            .iter()
            .find(|r| r.instance == instance && r.job_id == Some(job_id))
            .map(|r| r.id))
    }

    async fn prune(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        self.answer().await;
        let cut = stored(before);
        let mut inner = self.lock();
        let newest_id = inner.runs.last().map_or(0, |r| r.id);
        let ended_before = |r: &Run| !r.status.is_open() && r.finished_at.is_some_and(|t| t < cut);
        // First runs of chains that ended whole before the cut, oldest end first.
        let mut heads: Vec<(DateTime<Utc>, i64)> = inner
            .runs
            .iter()
            .filter(|r| r.retry_of.is_none() && ended_before(r) && r.id < newest_id)
            .filter(|r| {
                inner
                    .runs
                    .iter()
                    .filter(|o| o.retry_of == Some(r.id))
                    .all(|o| ended_before(o) && o.id < newest_id)
            })
            .map(|r| (r.finished_at.unwrap_or(cut), r.id))
            .collect();
        heads.sort();
        heads.truncate(usize::try_from(batch.max(1)).unwrap_or(usize::MAX));
        if heads.is_empty() {
            return Ok(0);
        }
        let heads: BTreeSet<i64> = heads.into_iter().map(|(_, id)| id).collect();
        let (gone, kept): (Vec<Run>, Vec<Run>) = std::mem::take(&mut inner.runs)
            .into_iter()
            .partition(|r| heads.contains(&r.retry_of.unwrap_or(r.id)));
        inner.runs = kept;
        for run in &gone {
            let entry = inner
                .pruned_totals
                .entry((run.connection.clone(), run.status.as_str().to_owned()))
                .or_insert((run.status, 0, 0, 0, 0));
            entry.1 += 1;
            entry.2 = entry.2.saturating_add(run.records_synced.unwrap_or(0));
            entry.3 = entry.3.saturating_add(run.bytes_synced.unwrap_or(0));
            entry.4 += u64::from(run.records_synced.unwrap_or(0) == 0);
        }
        let newest = inner.pruned.map_or(cut, |p| p.before.max(cut));
        inner.pruned = Some(Pruned {
            before: newest,
            at: stored(Utc::now()),
        });
        Ok(u64::try_from(gone.len()).unwrap_or(u64::MAX))
    }

    async fn pruned(&self) -> Result<Option<Pruned>, StoreError> {
        self.answer().await;
        Ok(self.lock().pruned)
    }

    async fn retries_of(&self, first: i64) -> Result<u32, StoreError> {
        self.answer().await;
        let n = self
            .lock()
            .runs
            .iter()
            .filter(|r| r.retry_of == Some(first))
            .count();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn set_paused(&self, connection: &str, paused: bool) -> Result<bool, StoreError> {
        self.answer().await;
        let mut inner = self.lock();
        Ok(if paused {
            inner.pauses.insert(connection.to_owned())
        } else {
            inner.pauses.remove(connection)
        })
    }

    async fn paused(&self) -> Result<Vec<String>, StoreError> {
        self.answer().await;
        Ok(self.lock().pauses.iter().cloned().collect())
    }

    async fn totals(&self) -> Result<Vec<ConnectionTotals>, StoreError> {
        self.answer().await;
        let inner = self.lock();
        // (runs, records, bytes, zero-record runs) by connection, then status as spelled.
        let mut sums: BTreeMap<(&str, &str), Sums> = inner
            .pruned_totals
            .iter()
            .map(|((c, s), sum)| ((c.as_str(), s.as_str()), *sum))
            .collect();
        for run in inner.runs.iter().filter(|r| !r.status.is_open()) {
            let entry = sums
                .entry((run.connection.as_str(), run.status.as_str()))
                .or_insert((run.status, 0, 0, 0, 0));
            entry.1 += 1;
            entry.2 = entry.2.saturating_add(run.records_synced.unwrap_or(0));
            entry.3 = entry.3.saturating_add(run.bytes_synced.unwrap_or(0));
            entry.4 += u64::from(run.records_synced.unwrap_or(0) == 0);
        }
        let mut totals: Vec<ConnectionTotals> = Vec::new();
        for ((connection, _), (status, runs, records, bytes, zero)) in sums {
            if totals.last().is_none_or(|t| t.connection != connection) {
                totals.push(ConnectionTotals {
                    connection: connection.to_owned(),
                    ..ConnectionTotals::default()
                });
            }
            if let Some(entry) = totals.last_mut() {
                entry.by_status.push((status, runs));
                entry.records_synced += records;
                entry.bytes_synced += bytes;
                if status == RunStatus::Succeeded {
                    entry.zero_record_successes = zero;
                }
            }
        }
        Ok(totals)
    }

    async fn ended_since(&self, since: DateTime<Utc>) -> Result<Vec<Ended>, StoreError> {
        self.answer().await;
        let inner = self.lock();
        let mut ended: Vec<Ended> = inner
            .runs
            .iter()
            .filter_map(|r| {
                let finished_at = r.finished_at.filter(|f| *f >= since)?;
                Some(Ended {
                    connection: r.connection.clone(),
                    status: r.status,
                    started_at: r.started_at,
                    finished_at,
                })
            })
            .collect();
        ended.sort_by_key(|e| e.finished_at);
        Ok(ended)
    }

    async fn record_airbyte_objects(
        &self,
        objects: &[AirbyteObject],
        forget: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        self.answer().await;
        let mut inner = self.lock();
        for object in objects {
            inner.objects.insert(
                (
                    object.instance.clone(),
                    object.kind.clone(),
                    object.name.clone(),
                ),
                AirbyteObject {
                    updated_at: stored(object.updated_at),
                    ..object.clone()
                },
            );
        }
        for key in forget {
            inner.objects.remove(key);
        }
        Ok(())
    }

    async fn airbyte_objects(&self) -> Result<Vec<AirbyteObject>, StoreError> {
        self.answer().await;
        Ok(self.lock().objects.values().cloned().collect())
    }
}
