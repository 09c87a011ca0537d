//! The Prometheus metrics: what ran, how it ended, how much it moved, and how the
//! engine and Airbyte are doing. Counters are seeded from the history at start so
//! `increase()` stays honest across restarts.
//!
//! Exposed in the OpenMetrics text format by `prometheus-client`, which writes each
//! series straight into the body: at 10,000 connections (some 120,000 lines) that
//! is several times faster than gathering and encoding with the `prometheus` crate
//! (BENCHMARKS.md, scrape). Per connection there are gauges and counters only; the
//! one duration histogram covers every connection together (README, design notes).
//!
//! Per-connection series carry the Airbyte instance the config puts the connection
//! on (`airbyte_instance`), and the request series the instance asked; see
//! [`Placements`] for where the first comes from.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{Atomic, ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::airbyte::RequestObserver;
use crate::config::ConnectionSettings;
use crate::run::{Run, RunStatus};
use crate::store::{ConnectionMarks, ConnectionTotals, Ended};

/// The media type of the exposition `render` returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Buckets for syncs that take seconds to hours.
const SYNC_DURATION_BUCKETS: [f64; 13] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
];
/// Buckets for the delay between a scheduled instant and the sync request.
const LAG_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
const REQUEST_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const ATTEMPT_BUCKETS: [f64; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 10.0];

/// A connection's or an instance's name as a label value. Connection names are free
/// text in the config, and prometheus-client 0.23 writes label values as they are, so
/// the three characters the exposition format escapes are escaped here.
///
/// Shared rather than owned: every per-connection series carries its connection's and
/// instance's names, and 10,000 connections in a dozen families made a million bytes of
/// copies of the same few strings.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Name(Arc<str>);

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        let mut rest: &str = &self.0;
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..at])?;
            encoder.write_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[at + 1..];
        }
        encoder.write_str(rest)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByConnection {
    connection: Name,
    /// Not `instance`: Prometheus sets that on every series it scrapes (the
    /// cronbyte target), and the alert rules join on it.
    airbyte_instance: Name,
}

impl ByConnection {
    fn with_status(&self, status: RunStatus) -> ByStatus {
        ByStatus {
            connection: self.connection.clone(),
            airbyte_instance: self.airbyte_instance.clone(),
            status: status.as_str(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByStatus {
    connection: Name,
    airbyte_instance: Name,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByRequest {
    airbyte_instance: Name,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByInstance {
    airbyte_instance: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByOperation {
    airbyte_instance: Name,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByOutcome {
    outcome: &'static str,
}

type PerConnection<M> = Family<ByConnection, M>;

/// The Airbyte instance each connection's series are labelled with: the one the
/// config puts it on, set by [`Metrics::set_connections`] before the history seeds
/// the series at start and again at each reload.
///
/// From the config rather than from each run, and kept here rather than passed by
/// every caller: the history keeps its totals and marks per connection, not per
/// instance, so the config is the one source that seeding and the engine's updates
/// can both label from, and one value per connection keeps the alert rules' joins of
/// one connection's series (last success against its expected interval, say)
/// one-to-one. The engine's catalog stays the owner of the connections; this map is
/// only their labels, changed by the same swap. A connection the config no longer
/// names keeps its last instance (a run in flight ends under the label its series
/// had); one known only from the history has none (an empty value, which Prometheus
/// stores as no label).
#[derive(Debug, Default)]
struct Placements(HashMap<Name, Name>);

impl Placements {
    fn labels(&self, connection: &str) -> ByConnection {
        match self.0.get_key_value(connection) {
            Some((connection, instance)) => ByConnection {
                connection: connection.clone(),
                airbyte_instance: instance.clone(),
            },
            None => ByConnection {
                connection: Name(connection.into()),
                airbyte_instance: Name("".into()),
            },
        }
    }
}

/// Moves a counter's count to other labels: a connection moved to another instance
/// counts on under the new label from what it had, as a restart would seed it.
fn move_counter<S: Clone + Hash + Eq>(family: &Family<S, Counter>, from: &S, to: &S) {
    let Some(count) = family.get(from).map(|c| c.get()) else {
        return;
    };
    family.remove(from);
    family.get_or_create(to).inc_by(count);
}

/// Moves a gauge's value to other labels, so that no gauge stays behind under the
/// old instance for an alert to judge.
fn move_gauge<N, A: Atomic<N> + Default>(
    family: &PerConnection<Gauge<N, A>>,
    from: &ByConnection,
    to: &ByConnection,
) {
    let Some(value) = family.get(from).map(|g| g.get()) else {
        return;
    };
    family.remove(from);
    family.get_or_create(to).set(value);
}

/// Every metric cronbyte exports, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    syncs: Family<ByStatus, Counter>,
    records: PerConnection<Counter>,
    bytes: PerConnection<Counter>,
    duration: Histogram,
    last_success_duration: PerConnection<Gauge<f64, AtomicU64>>,
    in_flight: Gauge,
    waiting: Gauge,
    lag: Histogram,
    requests: Family<ByRequest, Counter>,
    request_duration: Family<ByOperation, Histogram, fn() -> Histogram>,
    airbyte_up: Family<ByInstance, Gauge>,
    last_success: PerConnection<Gauge>,
    last_run: PerConnection<Gauge>,
    next_run: PerConnection<Gauge>,
    expected_interval: PerConnection<Gauge>,
    consecutive_failures: PerConnection<Gauge>,
    zero_record_syncs: PerConnection<Counter>,
    attempts: Histogram,
    running_age: PerConnection<Gauge>,
    running_records: PerConnection<Gauge>,
    running_bytes: PerConnection<Gauge>,
    store_errors: Counter,
    runs_pruned: Counter,
    reloads: Family<ByOutcome, Counter>,
    scheduled_twice: PerConnection<Gauge>,
    leader: Gauge,
    leader_changes: Counter,
    replicas: Gauge,
    replica_settings_differ: Gauge,
    window: Arc<Mutex<SuccessWindow>>,
    /// Taken for reading around every update of a per-connection series, and for
    /// writing while a connection's series move to another instance, so no update
    /// lands under the old label after the move. Never taken while holding `window`.
    placements: Arc<RwLock<Placements>>,
    /// The size of the last exposition, so the next one is written into a buffer
    /// that need not grow (and be copied) a dozen times on the way to megabytes.
    last_size: AtomicUsize,
}

/// Recent final outcomes per connection, for the success ratio over a window.
#[derive(Debug)]
struct SuccessWindow {
    span: chrono::Duration,
    outcomes: HashMap<String, VecDeque<(DateTime<Utc>, bool)>>,
}

impl SuccessWindow {
    fn push(&mut self, connection: &str, at: DateTime<Utc>, succeeded: bool) {
        self.outcomes
            .entry(connection.to_owned())
            .or_default()
            .push_back((at, succeeded));
    }

    fn ratios(&mut self, now: DateTime<Utc>) -> Vec<(String, f64)> {
        let oldest = now - self.span;
        let mut out = Vec::with_capacity(self.outcomes.len());
        for (connection, outcomes) in &mut self.outcomes {
            while outcomes.front().is_some_and(|(at, _)| *at < oldest) {
                outcomes.pop_front();
            }
            if outcomes.is_empty() {
                continue;
            }
            let good = outcomes.iter().filter(|(_, ok)| *ok).count();
            out.push((connection.clone(), good as f64 / outcomes.len() as f64));
        }
        out
    }
}

/// Writes `cronbyte_sync_success_ratio` at each scrape from the window, so the
/// ratio is brought up to the scrape's instant without a gauge to keep in step.
#[derive(Debug)]
struct SuccessRatios {
    window: Arc<Mutex<SuccessWindow>>,
    placements: Arc<RwLock<Placements>>,
}

impl Collector for SuccessRatios {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // The window is let go before the placements are read (their order
        // elsewhere is placements, then window).
        let ratios = self
            .window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ratios(Utc::now());
        let placements = read(&self.placements);
        let mut family = encoder.encode_descriptor(
            "cronbyte_sync_success_ratio",
            "Share of succeeded runs among the runs that succeeded, failed, timed out or \
             could not be triggered within the window ([metrics].success_ratio_window).",
            None,
            MetricType::Gauge,
        )?;
        for (connection, ratio) in ratios {
            let labels = placements.labels(&connection);
            ConstGauge::new(ratio).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Seconds from `started` to `finished`, to the millisecond, never negative.
fn seconds_between(started: DateTime<Utc>, finished: DateTime<Utc>) -> f64 {
    (finished - started).num_milliseconds().max(0) as f64 / 1000.0
}

/// Whether a final status counts in the success ratio, and as what. Skipped runs
/// and operator cancellations say nothing about the pipeline's health.
fn counts_toward_ratio(status: RunStatus) -> Option<bool> {
    match status {
        RunStatus::Succeeded => Some(true),
        RunStatus::Failed | RunStatus::TimedOut | RunStatus::TriggerFailed => Some(false),
        _ => None,
    }
}

fn request_durations() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

fn read(placements: &RwLock<Placements>) -> RwLockReadGuard<'_, Placements> {
    placements.read().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    pub fn new(success_ratio_window: Duration) -> Self {
        let window = Arc::new(Mutex::new(SuccessWindow {
            span: chrono::Duration::from_std(success_ratio_window)
                .unwrap_or(chrono::Duration::days(1)),
            outcomes: HashMap::new(),
        }));
        let metrics = Self {
            registry: Registry::default(),
            syncs: Family::default(),
            records: Family::default(),
            bytes: Family::default(),
            duration: Histogram::new(SYNC_DURATION_BUCKETS),
            last_success_duration: Family::default(),
            in_flight: Gauge::default(),
            waiting: Gauge::default(),
            lag: Histogram::new(LAG_BUCKETS),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(request_durations),
            airbyte_up: Family::default(),
            last_success: Family::default(),
            last_run: Family::default(),
            next_run: Family::default(),
            expected_interval: Family::default(),
            consecutive_failures: Family::default(),
            zero_record_syncs: Family::default(),
            attempts: Histogram::new(ATTEMPT_BUCKETS),
            running_age: Family::default(),
            running_records: Family::default(),
            running_bytes: Family::default(),
            store_errors: Counter::default(),
            runs_pruned: Counter::default(),
            reloads: Family::default(),
            scheduled_twice: Family::default(),
            leader: Gauge::default(),
            leader_changes: Counter::default(),
            replicas: Gauge::default(),
            replica_settings_differ: Gauge::default(),
            window: window.clone(),
            placements: Arc::default(),
            last_size: AtomicUsize::new(0),
        };
        metrics.registered(window)
    }

    /// Registers every metric under its name. prometheus-client adds `_total` to
    /// counters and ends each help text with a full stop.
    fn registered(mut self, window: Arc<Mutex<SuccessWindow>>) -> Self {
        let r = &mut self.registry;
        r.register(
            "cronbyte_syncs",
            "Runs that reached a final status, by connection, instance and status",
            self.syncs.clone(),
        );
        r.register(
            "cronbyte_records_synced",
            "Records committed to the destination by finished runs",
            self.records.clone(),
        );
        r.register(
            "cronbyte_bytes_synced",
            "Bytes committed to the destination by finished runs",
            self.bytes.clone(),
        );
        r.register_collector(Box::new(SuccessRatios {
            window,
            placements: self.placements.clone(),
        }));
        r.register(
            "cronbyte_sync_duration_seconds",
            "Time from the sync request to the job's end, over every connection",
            self.duration.clone(),
        );
        r.register(
            "cronbyte_last_success_duration_seconds",
            "How long the connection's newest succeeded sync took, from the sync request to the job's end",
            self.last_success_duration.clone(),
        );
        r.register(
            "cronbyte_syncs_in_flight",
            "Syncs started and not yet ended",
            self.in_flight.clone(),
        );
        r.register(
            "cronbyte_syncs_waiting",
            "Runs claimed and waiting for a concurrency slot",
            self.waiting.clone(),
        );
        r.register(
            "cronbyte_schedule_lag_seconds",
            "Time from a run's scheduled instant to its sync request",
            self.lag.clone(),
        );
        r.register(
            "cronbyte_airbyte_requests",
            "HTTP requests to Airbyte, by instance, operation and outcome",
            self.requests.clone(),
        );
        r.register(
            "cronbyte_airbyte_request_duration_seconds",
            "Duration of HTTP requests to Airbyte",
            self.request_duration.clone(),
        );
        r.register(
            "cronbyte_airbyte_up",
            "1 when the Airbyte instance's last health check passed",
            self.airbyte_up.clone(),
        );
        r.register(
            "cronbyte_last_success_timestamp_seconds",
            "When the connection's newest succeeded run ended",
            self.last_success.clone(),
        );
        r.register(
            "cronbyte_last_run_timestamp_seconds",
            "When the connection's newest run ended, whatever its status",
            self.last_run.clone(),
        );
        r.register(
            "cronbyte_next_run_timestamp_seconds",
            "When the connection's rule fires next",
            self.next_run.clone(),
        );
        r.register(
            "cronbyte_expected_interval_seconds",
            "The gap between the rule's next two fire instants, for staleness alerts",
            self.expected_interval.clone(),
        );
        r.register(
            "cronbyte_consecutive_failures",
            "Runs in a row that failed, timed out or could not be triggered; 0 after a success",
            self.consecutive_failures.clone(),
        );
        r.register(
            "cronbyte_zero_record_syncs",
            "Succeeded runs that committed no record: a known silent failure",
            self.zero_record_syncs.clone(),
        );
        r.register(
            "cronbyte_sync_attempts",
            "Airbyte attempts per finished job",
            self.attempts.clone(),
        );
        r.register(
            "cronbyte_running_sync_age_seconds",
            "How long the connection's oldest running sync has run",
            self.running_age.clone(),
        );
        r.register(
            "cronbyte_running_sync_records",
            "Records the connection's running sync has emitted so far (committed, where Airbyte reports no emitted count)",
            self.running_records.clone(),
        );
        r.register(
            "cronbyte_running_sync_bytes",
            "Bytes the connection's running sync has emitted so far (committed, where Airbyte reports no emitted count)",
            self.running_bytes.clone(),
        );
        r.register(
            "cronbyte_store_errors",
            "Operations on the history store that failed",
            self.store_errors.clone(),
        );
        r.register(
            "cronbyte_runs_pruned",
            "Finished runs deleted from the history as older than [store].retention",
            self.runs_pruned.clone(),
        );
        r.register(
            "cronbyte_config_reloads",
            "Config reloads, by outcome (applied or rejected)",
            self.reloads.clone(),
        );
        r.register(
            "cronbyte_connection_scheduled_twice",
            "1 while Airbyte also schedules the connection itself (basic or cron), so it syncs twice; 0 once fixed",
            self.scheduled_twice.clone(),
        );
        r.register(
            "cronbyte_leader",
            "1 on the active replica (the one that schedules and follows syncs), 0 on a standby",
            self.leader.clone(),
        );
        r.register(
            "cronbyte_leader_changes",
            "Times this replica became the active one or stopped being it",
            self.leader_changes.clone(),
        );
        r.register(
            "cronbyte_replicas",
            "Replicas sharing the store that said they were alive within the lease (1 when the store is not shared)",
            self.replicas.clone(),
        );
        r.register(
            "cronbyte_replica_settings_differ",
            "1 while the replicas alive do not all have the same connection settings",
            self.replica_settings_differ.clone(),
        );
        r.register(
            "cronbyte_build",
            "Always 1; the labels say which build runs",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        // Process metrics are a convenience; without them the rest still works.
        if let Err(error) =
            kubert_prometheus_process::register(r.sub_registry_with_prefix("process"))
        {
            tracing::warn!(%error, "process metrics are not available");
        }
        self
    }

    /// Labels each connection's series with the instance `connections` put it on
    /// ([`Placements`]): before seeding at start, then at each reload. The series of
    /// a connection moved to another instance move with it, values and counts kept,
    /// so the exposition is what a restart would seed and no gauge stays behind under
    /// the old instance.
    pub fn set_connections(&self, connections: &[Arc<ConnectionSettings>]) {
        let mut placements = self.placements.write().unwrap_or_else(|p| p.into_inner());
        // One name for each instance, however many connections it has.
        let mut instances: HashMap<&str, Name> = HashMap::new();
        for connection in connections {
            let instance = instances
                .entry(&connection.instance)
                .or_insert_with(|| Name(connection.instance.as_str().into()))
                .clone();
            let from = placements.labels(&connection.name);
            if from.airbyte_instance == instance {
                continue;
            }
            let to = ByConnection {
                airbyte_instance: instance.clone(),
                ..from.clone()
            };
            self.relabel(&from, &to);
            placements.0.insert(from.connection, instance);
        }
    }

    /// Moves every series of one connection from `from` to `to`.
    fn relabel(&self, from: &ByConnection, to: &ByConnection) {
        for status in RunStatus::ALL {
            move_counter(
                &self.syncs,
                &from.with_status(status),
                &to.with_status(status),
            );
        }
        for counter in [&self.records, &self.bytes, &self.zero_record_syncs] {
            move_counter(counter, from, to);
        }
        for gauge in self.run_gauges().into_iter().chain([&self.scheduled_twice]) {
            move_gauge(gauge, from, to);
        }
        move_gauge(&self.last_success_duration, from, to);
    }

    /// The per-connection gauges that describe a connection's runs: what a
    /// reload moves or forgets, and what a replica stepping down stops exporting.
    /// `scheduled_twice` is not one of them: it describes Airbyte's side, which
    /// every replica watches.
    fn run_gauges(&self) -> [&PerConnection<Gauge>; 8] {
        [
            &self.last_success,
            &self.last_run,
            &self.next_run,
            &self.expected_interval,
            &self.consecutive_failures,
            &self.running_age,
            &self.running_records,
            &self.running_bytes,
        ]
    }

    /// Whether Airbyte also schedules the connection itself (`takeover::watch`).
    pub fn set_scheduled_twice(&self, connection: &str, twice: bool) {
        let labels = self.placements().labels(connection);
        self.scheduled_twice
            .get_or_create(&labels)
            .set(i64::from(twice));
    }

    fn placements(&self) -> RwLockReadGuard<'_, Placements> {
        read(&self.placements)
    }

    /// Seeds the counters and the success window from the history, under the
    /// labels [`Metrics::set_connections`] gave the connections.
    pub fn seed(&self, totals: &[ConnectionTotals], recent: &[Ended]) {
        let placements = self.placements();
        for total in totals {
            let labels = placements.labels(&total.connection);
            for (status, runs) in &total.by_status {
                if !status.is_open() {
                    self.syncs
                        .get_or_create(&labels.with_status(*status))
                        .inc_by(*runs);
                }
            }
            self.records
                .get_or_create(&labels)
                .inc_by(total.records_synced);
            self.bytes.get_or_create(&labels).inc_by(total.bytes_synced);
            self.zero_record_syncs
                .get_or_create(&labels)
                .inc_by(total.zero_record_successes);
        }
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        for ended in recent {
            let at = ended.finished_at.timestamp();
            let labels = placements.labels(&ended.connection);
            self.last_run.get_or_create(&labels).set(at);
            if ended.status == RunStatus::Succeeded {
                self.last_success.get_or_create(&labels).set(at);
                if let Some(started) = ended.started_at {
                    self.last_success_duration
                        .get_or_create(&labels)
                        .set(seconds_between(started, ended.finished_at));
                }
            }
            if let Some(ok) = counts_toward_ratio(ended.status) {
                window.push(&ended.connection, ended.finished_at, ok);
                self.count_failure_streak(&labels, ok);
            }
        }
    }

    /// Seeds the freshness gauges and failure streaks from the whole history, beyond
    /// the window.
    pub fn seed_marks(&self, marks: &[ConnectionMarks]) {
        let placements = self.placements();
        for mark in marks {
            let labels = placements.labels(&mark.connection);
            if let Some(at) = mark.last_success {
                self.last_success.get_or_create(&labels).set(at.timestamp());
            }
            // The whole streak, where the window saw only its tail.
            if mark.failures > 0 {
                self.consecutive_failures
                    .get_or_create(&labels)
                    .set(i64::from(mark.failures));
            }
        }
    }

    fn count_failure_streak(&self, labels: &ByConnection, succeeded: bool) {
        let gauge = self.consecutive_failures.get_or_create(labels);
        if succeeded {
            gauge.set(0);
        } else {
            gauge.inc();
        }
    }

    /// Counts a run that reached its final status, under its connection's labels
    /// (see [`Placements`] for why not its own `instance`).
    pub fn run_ended(&self, run: &Run) {
        let placements = self.placements();
        let labels = placements.labels(&run.connection);
        self.syncs
            .get_or_create(&labels.with_status(run.status))
            .inc();
        if let Some(records) = run.records_synced {
            self.records.get_or_create(&labels).inc_by(records);
        }
        if let Some(bytes) = run.bytes_synced {
            self.bytes.get_or_create(&labels).inc_by(bytes);
        }
        let finished = run.finished_at.unwrap_or_else(Utc::now);
        let took = run
            .started_at
            .map(|started| seconds_between(started, finished));
        if let Some(took) = took {
            self.duration.observe(took);
        }
        self.last_run
            .get_or_create(&labels)
            .set(finished.timestamp());
        if run.status == RunStatus::Succeeded {
            self.last_success
                .get_or_create(&labels)
                .set(finished.timestamp());
            if let Some(took) = took {
                self.last_success_duration.get_or_create(&labels).set(took);
            }
        }
        if let Some(ok) = counts_toward_ratio(run.status) {
            self.window.lock().unwrap_or_else(|p| p.into_inner()).push(
                &run.connection,
                finished,
                ok,
            );
            self.count_failure_streak(&labels, ok);
        }
        if run.status == RunStatus::Succeeded && run.records_synced.unwrap_or(0) == 0 {
            self.zero_record_syncs.get_or_create(&labels).inc();
        }
        if run.job_id.is_some() && run.attempts > 0 {
            self.attempts.observe(f64::from(run.attempts));
        }
    }

    pub fn set_next_run(&self, connection: &str, at: Option<DateTime<Utc>>) {
        let placements = self.placements();
        let labels = placements.labels(connection);
        match at {
            Some(at) => {
                self.next_run.get_or_create(&labels).set(at.timestamp());
            }
            None => {
                self.next_run.remove(&labels);
            }
        }
    }

    /// Sets the rule's gap between fires; `None` (no rule, or paused) removes it,
    /// so staleness alerts leave the connection alone.
    pub fn set_expected_interval(&self, connection: &str, gap: Option<chrono::Duration>) {
        let placements = self.placements();
        let labels = placements.labels(connection);
        match gap {
            Some(gap) => {
                self.expected_interval
                    .get_or_create(&labels)
                    .set(gap.num_seconds());
            }
            None => {
                self.expected_interval.remove(&labels);
            }
        }
    }

    /// Drops a connection removed from the config from the per-connection
    /// gauges, so alerts about it stop; its counters stay (they are history).
    pub fn forget(&self, connection: &str) {
        let placements = self.placements();
        let labels = placements.labels(connection);
        for gauge in self.run_gauges().into_iter().chain([&self.scheduled_twice]) {
            gauge.remove(&labels);
        }
        self.last_success_duration.remove(&labels);
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .outcomes
            .remove(connection);
    }

    /// Sets the age of the oldest running sync per connection; connections not
    /// listed have none running.
    pub fn set_running_ages(&self, ages: &[(String, i64)]) {
        let placements = self.placements();
        self.running_age.clear();
        for (connection, age) in ages {
            let gauge = self
                .running_age
                .get_or_create(&placements.labels(connection));
            gauge.set(gauge.get().max(*age));
        }
    }

    /// Sets the records and bytes of each connection's running sync so far;
    /// connections not listed have none running (or none with counts yet), and
    /// their series go.
    pub fn set_running_progress(&self, progress: &[(String, u64, u64)]) {
        let placements = self.placements();
        self.running_records.clear();
        self.running_bytes.clear();
        for (connection, records, bytes) in progress {
            let labels = placements.labels(connection);
            let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.running_records
                .get_or_create(&labels)
                .set(as_gauge(*records));
            self.running_bytes
                .get_or_create(&labels)
                .set(as_gauge(*bytes));
        }
    }

    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// This replica became the active one (`true`) or a standby (`false`).
    pub fn set_leader(&self, active: bool) {
        let was = self.leader.set(i64::from(active));
        if was != i64::from(active) {
            self.leader_changes.inc();
        }
    }

    /// The replicas seen alive, and whether their connection settings differ.
    pub fn set_replicas(&self, alive: usize, settings_differ: bool) {
        self.replicas.set(i64::try_from(alive).unwrap_or(i64::MAX));
        self.replica_settings_differ.set(i64::from(settings_differ));
    }

    /// Drops every series seeded from the history or kept by the engine, when this
    /// replica stops being the active one: only the active replica exports them
    /// (seeded from the store as it takes over), so a sum across replicas counts
    /// each run once. What this process itself observed (request counts, the lag
    /// and duration histograms) stays: no other replica counted it.
    pub fn step_down(&self) {
        self.syncs.clear();
        for counter in [&self.records, &self.bytes, &self.zero_record_syncs] {
            counter.clear();
        }
        for gauge in self.run_gauges() {
            gauge.clear();
        }
        self.last_success_duration.clear();
        self.in_flight.set(0);
        self.waiting.set(0);
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .outcomes
            .clear();
    }

    /// Counts runs the retention deleted.
    pub fn runs_pruned(&self, n: u64) {
        self.runs_pruned.inc_by(n);
    }

    /// Counts a config reload, `applied` or `rejected`.
    pub fn reloaded(&self, outcome: &'static str) {
        self.reloads.get_or_create(&ByOutcome { outcome }).inc();
    }

    pub fn trigger_sent(&self, scheduled_for: DateTime<Utc>, sent_at: DateTime<Utc>) {
        let lag = (sent_at - scheduled_for)
            .num_microseconds()
            .unwrap_or(0)
            .max(0) as f64
            / 1e6;
        self.lag.observe(lag);
    }

    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn set_waiting(&self, n: usize) {
        self.waiting.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn set_airbyte_up(&self, instance: &str, up: bool) {
        self.airbyte_up
            .get_or_create(&ByInstance {
                airbyte_instance: Name(instance.into()),
            })
            .set(i64::from(up));
    }

    /// The OpenMetrics text exposition of every metric ([`CONTENT_TYPE`]), with
    /// the success ratios brought up to now.
    pub fn render(&self) -> String {
        let expected = self.last_size.load(Ordering::Relaxed);
        let mut out = String::with_capacity(expected + expected / 8 + 4096);
        // Writing into a String cannot fail; an error could only come from a
        // label value, and ours are plain strings.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "the metrics could not be encoded");
        }
        self.last_size.store(out.len(), Ordering::Relaxed);
        out
    }
}

impl RequestObserver for Metrics {
    fn observe(
        &self,
        instance: &str,
        operation: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let airbyte_instance = Name(instance.into());
        self.request_duration
            .get_or_create(&ByOperation {
                airbyte_instance: airbyte_instance.clone(),
                operation,
            })
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&ByRequest {
                airbyte_instance,
                operation,
                outcome,
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;
    use crate::run::Trigger;

    /// Connections on the instances `eu` and `us`, as a config puts them.
    fn placed(connections: &[(&str, &str)]) -> crate::config::SharedConnections {
        let mut text = String::from(
            "[instances.eu]\nbase_url = \"http://eu:8001/api/v1\"\n\
             [instances.us]\nbase_url = \"http://us:8001/api/v1\"\n",
        );
        for (i, (name, instance)) in connections.iter().enumerate() {
            text += &format!(
                "[[connections]]\nname = \"{name}\"\ninstance = \"{instance}\"\n\
                 connection_id = \"9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d{i:02}\"\ncron = \"0 0 * * * *\"\n"
            );
        }
        crate::config::share(
            crate::config::from_str(&text, Format::Toml)
                .unwrap_or_else(|e| panic!("test config: {e}"))
                .connections,
        )
    }

    fn succeeded(connection: &str, instance: &str, records: u64) -> Run {
        let now = Utc::now();
        Run {
            id: 1,
            connection: connection.into(),
            connection_id: "9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d00".into(),
            instance: instance.into(),
            trigger: Trigger::Schedule,
            scheduled_for: now,
            claimed_at: now,
            started_at: Some(now - chrono::Duration::seconds(30)),
            finished_at: Some(now),
            status: RunStatus::Succeeded,
            job_id: Some(7),
            attempts: 1,
            records_synced: Some(records),
            bytes_synced: Some(records * 10),
            error: None,
            retry_of: None,
            cancel_requested_at: None,
        }
    }

    /// The exposition's sample lines whose labels include `label`.
    fn samples_with<'a>(text: &'a str, label: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(label))
            .collect()
    }

    #[test]
    fn the_success_ratio_forgets_outcomes_older_than_the_window() {
        let mut window = SuccessWindow {
            span: chrono::Duration::hours(1),
            outcomes: HashMap::new(),
        };
        let now = Utc::now();
        window.push("orders", now - chrono::Duration::hours(2), false);
        window.push("orders", now - chrono::Duration::minutes(30), true);
        window.push("orders", now - chrono::Duration::minutes(10), false);
        window.push("orders", now - chrono::Duration::minutes(5), true);
        window.push("orders", now - chrono::Duration::minutes(1), true);
        let ratios = window.ratios(now);
        assert_eq!(ratios, vec![("orders".to_owned(), 0.75)]);
    }

    #[test]
    fn seeding_from_the_history_restores_the_counters_under_each_connections_instance() {
        let metrics = Metrics::new(Duration::from_secs(86_400));
        metrics.set_connections(&placed(&[("orders", "eu")]));
        let totals = |connection: &str| ConnectionTotals {
            connection: connection.into(),
            by_status: vec![(RunStatus::Succeeded, 3), (RunStatus::Running, 1)],
            records_synced: 30,
            bytes_synced: 300,
            zero_record_successes: 1,
        };
        metrics.seed(&[totals("orders"), totals("retired")], &[]);
        metrics.seed_marks(&[ConnectionMarks {
            connection: "orders".into(),
            last_tick: None,
            last_claimed: None,
            last_success: DateTime::from_timestamp(1_800_000_000, 0),
            failures: 0,
        }]);
        let text = metrics.render();
        assert!(text.contains(
            r#"cronbyte_syncs_total{connection="orders",airbyte_instance="eu",status="succeeded"} 3"#
        ));
        assert!(!text.contains(r#"status="running""#));
        assert!(text.contains(
            r#"cronbyte_records_synced_total{connection="orders",airbyte_instance="eu"} 30"#
        ));
        assert!(text.contains(
            r#"cronbyte_last_success_timestamp_seconds{connection="orders",airbyte_instance="eu"} 1800000000"#
        ));
        // Known only from the history: no config says where it was.
        assert!(text.contains(
            r#"cronbyte_records_synced_total{connection="retired",airbyte_instance=""} 30"#
        ));
        assert!(text.contains(r#"cronbyte_build_info{version=""#));
    }

    #[test]
    fn a_run_ending_is_counted_under_the_same_labels_as_seeding_gives() {
        let seeded = Metrics::new(Duration::from_secs(86_400));
        seeded.set_connections(&placed(&[("orders", "us")]));
        seeded.seed(
            &[ConnectionTotals {
                connection: "orders".into(),
                by_status: vec![(RunStatus::Succeeded, 1)],
                records_synced: 5,
                bytes_synced: 50,
                zero_record_successes: 0,
            }],
            &[],
        );
        let counted = Metrics::new(Duration::from_secs(86_400));
        counted.set_connections(&placed(&[("orders", "us")]));
        counted.run_ended(&succeeded("orders", "us", 5));
        for series in [
            r#"cronbyte_syncs_total{connection="orders",airbyte_instance="us",status="succeeded"} 1"#,
            r#"cronbyte_records_synced_total{connection="orders",airbyte_instance="us"} 5"#,
            r#"cronbyte_bytes_synced_total{connection="orders",airbyte_instance="us"} 50"#,
        ] {
            assert!(seeded.render().contains(series), "seeded: {series}");
            assert!(counted.render().contains(series), "counted: {series}");
        }
        let counted = counted.render();
        assert!(counted.contains(
            r#"cronbyte_sync_success_ratio{connection="orders",airbyte_instance="us"} 1"#
        ));
        assert!(counted.contains(
            r#"cronbyte_consecutive_failures{connection="orders",airbyte_instance="us"} 0"#
        ));
    }

    #[test]
    fn a_running_sync_s_counts_are_gauges_labelled_like_its_connection_and_go_when_it_ends() {
        let metrics = Metrics::new(Duration::from_secs(86_400));
        metrics.set_connections(&placed(&[("orders", "eu"), ("customers", "eu")]));
        metrics.set_running_progress(&[("orders".into(), 1_200, 96_000)]);
        let text = metrics.render();
        assert!(text.contains(
            r#"cronbyte_running_sync_records{connection="orders",airbyte_instance="eu"} 1200"#
        ));
        assert!(text.contains(
            r#"cronbyte_running_sync_bytes{connection="orders",airbyte_instance="eu"} 96000"#
        ));
        assert!(!text.contains(r#"cronbyte_running_sync_records{connection="customers""#));

        // The next round no longer lists orders: its sync ended.
        metrics.set_running_progress(&[("customers".into(), 5, 50)]);
        let text = metrics.render();
        assert!(!text.contains(r#"cronbyte_running_sync_records{connection="orders""#));
        assert!(!text.contains(r#"cronbyte_running_sync_bytes{connection="orders""#));
        assert!(text.contains(
            r#"cronbyte_running_sync_records{connection="customers",airbyte_instance="eu"} 5"#
        ));
    }

    #[test]
    fn a_connection_moved_to_another_instance_takes_its_series_along() {
        let metrics = Metrics::new(Duration::from_secs(86_400));
        metrics.set_connections(&placed(&[("orders", "eu"), ("customers", "eu")]));
        metrics.run_ended(&succeeded("orders", "eu", 5));
        metrics.set_next_run("orders", DateTime::from_timestamp(1_800_000_000, 0));
        metrics.set_expected_interval("orders", Some(chrono::Duration::hours(1)));
        metrics.set_running_ages(&[("orders".into(), 12)]);
        let before = metrics.render();

        // A reload moves orders; customers stays.
        metrics.set_connections(&placed(&[("orders", "us"), ("customers", "eu")]));
        let after = metrics.render();
        assert_eq!(
            samples_with(&after, r#"connection="orders",airbyte_instance="eu""#),
            Vec::<&str>::new(),
            "nothing stays under the old instance"
        );
        let moved: Vec<String> = samples_with(&before, r#"connection="orders""#)
            .into_iter()
            .map(|l| l.replace(r#"airbyte_instance="eu""#, r#"airbyte_instance="us""#))
            .collect();
        assert_eq!(moved.len(), 11, "{before}");
        assert_eq!(
            samples_with(&after, r#"connection="orders""#),
            moved,
            "every series moved with its value"
        );
        // Counted on from what it had.
        metrics.run_ended(&succeeded("orders", "us", 5));
        assert!(metrics.render().contains(
            r#"cronbyte_records_synced_total{connection="orders",airbyte_instance="us"} 10"#
        ));
    }

    #[test]
    fn a_removed_connection_is_forgotten_under_its_instance_and_its_counters_stay() {
        let metrics = Metrics::new(Duration::from_secs(86_400));
        metrics.set_connections(&placed(&[("orders", "eu")]));
        metrics.run_ended(&succeeded("orders", "eu", 5));
        metrics.set_next_run("orders", DateTime::from_timestamp(1_800_000_000, 0));
        metrics.set_connections(&[]);
        metrics.forget("orders");
        let text = metrics.render();
        assert_eq!(
            samples_with(&text, r#"connection="orders""#),
            vec![
                r#"cronbyte_syncs_total{connection="orders",airbyte_instance="eu",status="succeeded"} 1"#,
                r#"cronbyte_records_synced_total{connection="orders",airbyte_instance="eu"} 5"#,
                r#"cronbyte_bytes_synced_total{connection="orders",airbyte_instance="eu"} 50"#,
            ],
        );
    }

    #[test]
    fn a_replica_stepping_down_exports_no_series_of_the_runs_it_no_longer_owns() {
        let metrics = Metrics::new(Duration::from_secs(86_400));
        metrics.set_connections(&placed(&[("orders", "eu")]));
        metrics.run_ended(&succeeded("orders", "eu", 5));
        metrics.set_next_run("orders", DateTime::from_timestamp(1_800_000_000, 0));
        metrics.set_expected_interval("orders", Some(chrono::Duration::hours(1)));
        metrics.set_running_ages(&[("orders".into(), 12)]);
        metrics.set_running_progress(&[("orders".into(), 1_200, 96_000)]);
        metrics.set_scheduled_twice("orders", true);
        assert!(samples_with(&metrics.render(), r#"connection="orders""#).len() > 10);

        metrics.step_down();
        // Every replica watches Airbyte's own schedules, so that one series
        // stays; the runs are now another replica's to count.
        assert_eq!(
            samples_with(&metrics.render(), r#"connection="orders""#),
            vec![
                r#"cronbyte_connection_scheduled_twice{connection="orders",airbyte_instance="eu"} 1"#
            ],
        );
    }

    #[test]
    fn requests_are_counted_and_timed_by_instance() {
        let metrics = Metrics::new(Duration::from_secs(86_400));
        metrics.observe("eu", "jobs/get", "ok", Duration::from_millis(20));
        metrics.observe("us", "jobs/get", "unavailable", Duration::from_millis(20));
        let text = metrics.render();
        assert!(text.contains(
            r#"cronbyte_airbyte_requests_total{airbyte_instance="eu",operation="jobs/get",outcome="ok"} 1"#
        ));
        assert!(text.contains(
            r#"cronbyte_airbyte_requests_total{airbyte_instance="us",operation="jobs/get",outcome="unavailable"} 1"#
        ));
        assert!(text.contains(
            r#"cronbyte_airbyte_request_duration_seconds_count{airbyte_instance="us",operation="jobs/get"} 1"#
        ));
    }

    #[test]
    fn connection_names_with_quotes_backslashes_and_newlines_are_escaped() {
        let metrics = Metrics::new(Duration::from_secs(86_400));
        let at = DateTime::from_timestamp(1_800_000_000, 0);
        metrics.set_next_run("orders \"eu\" C:\\tmp\nnext", at);
        let text = metrics.render();
        // The newline stays inside the label value: the sample is one whole line.
        let line = text
            .lines()
            .find(|l| l.starts_with("cronbyte_next_run_timestamp_seconds{"))
            .expect("the gauge is there");
        assert_eq!(
            line,
            r#"cronbyte_next_run_timestamp_seconds{connection="orders \"eu\" C:\\tmp\nnext",airbyte_instance=""} 1800000000"#
        );
    }
}
