//! What a running sync looks like while it runs: records and bytes so far, the
//! rate over the last minutes, how long it has run, how long its connection's
//! syncs usually take, and from those how long it has left. Kept in memory beside
//! each followed job and shown by the control API, the status page, `watch` and
//! `/metrics`; none of it is written to the history, which keeps the final counts.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::Engine;
use crate::airbyte::Job;
use crate::run::{Run, RunStatus};
use crate::store::HistoryFilter;

/// The rate is measured over this span of the newest counts.
pub const RATE_WINDOW: Duration = Duration::minutes(5);

/// The usual duration is the median of the succeeded runs among this many of a
/// connection's newest runs.
pub const USUAL_OF: u32 = 20;

/// The counts Airbyte reported for one job over the last minutes.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// (when read, records, bytes), oldest first: records and bytes emitted,
    /// or committed where the API reports no emitted counts (the public API).
    samples: VecDeque<(DateTime<Utc>, u64, u64)>,
    records_committed: Option<u64>,
    bytes_committed: Option<u64>,
    /// When Airbyte last gave counts for the job.
    read_at: Option<DateTime<Utc>>,
}

impl Counts {
    /// Takes the counts of an answer about the job, read at `at`.
    pub fn observe(&mut self, at: DateTime<Utc>, job: &Job) {
        self.records_committed = job.records_synced.or(self.records_committed);
        self.bytes_committed = job.bytes_synced.or(self.bytes_committed);
        let records = job.records_emitted.or(job.records_synced);
        let bytes = job.bytes_emitted.or(job.bytes_synced);
        if records.is_none() && bytes.is_none() {
            return;
        }
        self.read_at = Some(at);
        self.samples
            .push_back((at, records.unwrap_or(0), bytes.unwrap_or(0)));
        // Keep one sample at or before the window's start, so the rate spans the
        // whole window rather than the part of it after the oldest sample kept.
        while self.samples.len() > 2 && self.samples[1].0 <= at - RATE_WINDOW {
            self.samples.pop_front();
        }
    }

    /// Records and bytes per second between the oldest and the newest sample
    /// kept; none before two samples apart in time.
    fn rates(&self) -> Option<(f64, f64)> {
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        let seconds = (last.0 - first.0).num_milliseconds() as f64 / 1000.0;
        if seconds <= 0.0 {
            return None;
        }
        // A new attempt may start the counts over: no negative rate.
        Some((
            last.1.saturating_sub(first.1) as f64 / seconds,
            last.2.saturating_sub(first.2) as f64 / seconds,
        ))
    }
}

/// One running sync as operators see it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveSync {
    pub run_id: i64,
    pub connection: String,
    /// The Airbyte instance its job is on.
    pub instance: String,
    pub job_id: i64,
    /// When the sync request was answered with a job.
    pub started_at: Option<DateTime<Utc>>,
    /// Seconds since it started (since it was claimed, when its start is not known).
    pub elapsed_seconds: i64,
    pub attempts: u32,
    /// Records so far: emitted by the source where Airbyte reports it (Config
    /// API), else committed (public API).
    pub records: Option<u64>,
    /// Bytes so far, as `records`.
    pub bytes: Option<u64>,
    pub records_committed: Option<u64>,
    pub bytes_committed: Option<u64>,
    /// Over the last five minutes of counts; none before two readings.
    pub records_per_second: Option<f64>,
    pub bytes_per_second: Option<f64>,
    /// When Airbyte last gave counts.
    pub counts_at: Option<DateTime<Utc>>,
    /// The median duration of the connection's recent succeeded runs; none
    /// without one, or before the history was read.
    pub usual_seconds: Option<i64>,
    /// The usual duration less the time elapsed, never below 0; none without a
    /// usual duration.
    pub estimated_seconds_left: Option<i64>,
    /// It has run longer than usual.
    pub overdue: bool,
}

impl LiveSync {
    /// The live view of `run`, following `job_id`, at `now`.
    pub(super) fn of(
        run: &Run,
        job_id: i64,
        attempts: u32,
        counts: &Counts,
        usual: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Self {
        let since = run.started_at.unwrap_or(run.claimed_at);
        let elapsed = (now - since).max(Duration::zero());
        let newest = counts.samples.back();
        let rates = counts.rates();
        Self {
            run_id: run.id,
            connection: run.connection.clone(),
            instance: run.instance.clone(),
            job_id,
            started_at: run.started_at,
            elapsed_seconds: elapsed.num_seconds(),
            attempts,
            records: newest.map(|s| s.1),
            bytes: newest.map(|s| s.2),
            records_committed: counts.records_committed,
            bytes_committed: counts.bytes_committed,
            records_per_second: rates.map(|r| r.0),
            bytes_per_second: rates.map(|r| r.1),
            counts_at: counts.read_at,
            usual_seconds: usual.map(|u| u.num_seconds()),
            estimated_seconds_left: usual.map(|u| (u - elapsed).num_seconds().max(0)),
            overdue: usual.is_some_and(|u| elapsed > u),
        }
    }
}

/// The median of how long the succeeded runs among `runs` took, from the sync
/// request to the job's end.
pub fn usual_duration(runs: &[Run]) -> Option<Duration> {
    let mut took: Vec<Duration> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .filter_map(|r| Some(r.finished_at? - r.started_at?))
        .filter(|d| *d >= Duration::zero())
        .collect();
    if took.is_empty() {
        return None;
    }
    took.sort();
    let middle = took.len() / 2;
    Some(if took.len() % 2 == 1 {
        took[middle]
    } else {
        (took[middle - 1] + took[middle]) / 2
    })
}

/// A run as `GET /api/v1/runs/{id}` shows it: the history's row, its retry
/// chain, and its live numbers while it runs here.
#[derive(Clone, Debug, Serialize)]
pub struct RunDetail {
    pub run: Run,
    /// The first run of its chain and each retry, oldest first (the run alone
    /// when it neither was retried nor is a retry).
    pub chain: Vec<Run>,
    pub live: Option<LiveSync>,
}

impl Engine {
    /// Every sync followed here, with its live numbers, oldest run first.
    pub fn running_syncs(&self) -> Vec<LiveSync> {
        let now = self.shared.clock.now();
        let mut live = self.shared.state(|s| s.live(now));
        live.sort_by_key(|l| l.run_id);
        live
    }

    /// What the history holds of run `id`, with its retry chain and live numbers.
    pub async fn run_detail(&self, id: i64) -> Result<Option<RunDetail>, super::EngineError> {
        let store = &self.shared.store;
        let Some(run) = store.run(id).await? else {
            return Ok(None);
        };
        let first = run.retry_of.unwrap_or(run.id);
        // A chain is a few runs among the connection's newest; the history is
        // read by connection, newest first, so the chain's oldest runs may be
        // past the limit only for a connection with hundreds of runs since.
        let recent = store
            .history(&HistoryFilter {
                connection: Some(run.connection.clone()),
                limit: 500,
            })
            .await?;
        let mut chain: Vec<Run> = recent
            .into_iter()
            .filter(|r| r.id == first || r.retry_of == Some(first))
            .collect();
        if !chain.iter().any(|r| r.id == run.id) {
            chain.push(run.clone());
        }
        chain.sort_by_key(|r| r.id);
        let now = self.shared.clock.now();
        let live = self.shared.state(|s| s.live_run(id, now));
        Ok(Some(RunDetail { run, chain, live }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::airbyte::JobStatus;
    use crate::run::Trigger;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn job(emitted: Option<u64>, committed: Option<u64>) -> Job {
        Job {
            id: 1,
            connection_id: "c".into(),
            status: JobStatus::Running,
            created_at: None,
            updated_at: None,
            started_at: None,
            attempts: 1,
            records_synced: committed,
            bytes_synced: committed.map(|c| c * 10),
            records_emitted: emitted,
            bytes_emitted: emitted.map(|e| e * 10),
            failure: None,
        }
    }

    fn run(id: i64, status: RunStatus, started: i64, finished: Option<i64>) -> Run {
        Run {
            id,
            connection: "orders".into(),
            connection_id: "c".into(),
            instance: "default".into(),
            trigger: Trigger::Schedule,
            scheduled_for: at(started),
            claimed_at: at(started),
            started_at: Some(at(started)),
            finished_at: finished.map(at),
            status,
            job_id: Some(id),
            attempts: 1,
            records_synced: None,
            bytes_synced: None,
            error: None,
            retry_of: None,
            cancel_requested_at: None,
        }
    }

    #[test]
    fn the_rate_covers_the_last_five_minutes_of_counts() {
        let mut counts = Counts::default();
        // 100 records a second for ten minutes, then 10 a second for five.
        for minute in 0..=10 {
            counts.observe(at(minute * 60), &job(Some(minute as u64 * 6_000), None));
        }
        assert_eq!(counts.rates().map(|r| r.0), Some(100.0));
        for minute in 11..=15 {
            counts.observe(
                at(minute * 60),
                &job(Some(60_000 + (minute as u64 - 10) * 600), None),
            );
        }
        let (records, bytes) = counts.rates().unwrap();
        assert_eq!(records, 10.0);
        assert_eq!(bytes, 100.0);
    }

    #[test]
    fn one_reading_gives_counts_and_no_rate() {
        let mut counts = Counts::default();
        counts.observe(at(0), &job(Some(500), Some(400)));
        let live = LiveSync::of(
            &run(1, RunStatus::Running, -30, None),
            1,
            1,
            &counts,
            None,
            at(0),
        );
        assert_eq!(
            (live.records, live.records_committed),
            (Some(500), Some(400))
        );
        assert_eq!(live.records_per_second, None);
        assert_eq!(live.elapsed_seconds, 30);
        assert_eq!(live.estimated_seconds_left, None);
        assert!(!live.overdue);
    }

    #[test]
    fn committed_counts_stand_in_where_airbyte_reports_no_emitted_ones() {
        let mut counts = Counts::default();
        counts.observe(at(0), &job(None, Some(70)));
        counts.observe(at(10), &job(None, Some(170)));
        assert_eq!(counts.rates().map(|r| r.0), Some(10.0));
    }

    #[test]
    fn the_time_left_is_the_usual_duration_less_the_time_run_and_never_negative() {
        let counts = Counts::default();
        let running = run(9, RunStatus::Running, 0, None);
        let usual = Some(Duration::seconds(600));
        let early = LiveSync::of(&running, 9, 1, &counts, usual, at(240));
        assert_eq!(early.estimated_seconds_left, Some(360));
        assert!(!early.overdue);
        let late = LiveSync::of(&running, 9, 1, &counts, usual, at(900));
        assert_eq!(late.estimated_seconds_left, Some(0));
        assert!(late.overdue);
    }

    #[test]
    fn the_usual_duration_is_the_median_of_recent_successes_only() {
        let runs = [
            run(1, RunStatus::Succeeded, 0, Some(100)),
            run(2, RunStatus::Failed, 0, Some(5)),
            run(3, RunStatus::Succeeded, 0, Some(300)),
            run(4, RunStatus::Succeeded, 0, Some(200)),
            run(5, RunStatus::Running, 0, None),
        ];
        assert_eq!(usual_duration(&runs), Some(Duration::seconds(200)));
        assert_eq!(usual_duration(&runs[..3]), Some(Duration::seconds(200)));
        assert_eq!(usual_duration(&runs[1..2]), None);
    }
}
