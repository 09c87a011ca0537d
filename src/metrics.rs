//! The Prometheus metrics: what ran, how it ended, how much it moved, and how the
//! engine and Airbyte are doing. Counters are seeded from the history at start so
//! `increase()` stays honest across restarts.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::airbyte::RequestObserver;
use crate::store::{ConnectionMarks, ConnectionTotals, Ended, Run, RunStatus};

/// Buckets for syncs that take seconds to hours.
const SYNC_DURATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
];
/// Buckets for the delay between a scheduled instant and the sync request.
const LAG_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric cronbyte exports, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    syncs: IntCounterVec,
    records: IntCounterVec,
    bytes: IntCounterVec,
    success_ratio: prometheus::GaugeVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    waiting: IntGauge,
    lag: Histogram,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    airbyte_up: IntGauge,
    last_success: IntGaugeVec,
    last_run: IntGaugeVec,
    next_run: IntGaugeVec,
    expected_interval: IntGaugeVec,
    consecutive_failures: IntGaugeVec,
    zero_record_syncs: IntCounterVec,
    attempts: Histogram,
    running_age: IntGaugeVec,
    store_errors: prometheus::IntCounter,
    reloads: IntCounterVec,
    window: Mutex<SuccessWindow>,
}

/// Recent final outcomes per connection, for the success ratio over a window.
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

/// Whether a final status counts in the success ratio, and as what. Skipped runs
/// and operator cancellations say nothing about the pipeline's health.
fn counts_toward_ratio(status: RunStatus) -> Option<bool> {
    match status {
        RunStatus::Succeeded => Some(true),
        RunStatus::Failed | RunStatus::TimedOut | RunStatus::TriggerFailed => Some(false),
        _ => None,
    }
}

fn build<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    // Names are fixed in this file and registered once per registry, so a
    // collision is a programming error caught by every test that builds Metrics.
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    pub fn new(success_ratio_window: Duration) -> Self {
        let registry = Registry::new();
        let r = &registry;
        let metrics = Self {
            syncs: build(r, IntCounterVec::new(
                Opts::new("cronbyte_syncs_total", "Runs that reached a final status, by connection and status."),
                &["connection", "status"],
            ).expect("valid metric")),
            records: build(r, IntCounterVec::new(
                Opts::new("cronbyte_records_synced_total", "Records committed to the destination by finished runs."),
                &["connection"],
            ).expect("valid metric")),
            bytes: build(r, IntCounterVec::new(
                Opts::new("cronbyte_bytes_synced_total", "Bytes committed to the destination by finished runs."),
                &["connection"],
            ).expect("valid metric")),
            success_ratio: build(r, prometheus::GaugeVec::new(
                Opts::new("cronbyte_sync_success_ratio", "Share of succeeded runs among the runs that succeeded, failed, timed out or could not be triggered within the window ([metrics].success_ratio_window)."),
                &["connection"],
            ).expect("valid metric")),
            duration: build(r, HistogramVec::new(
                HistogramOpts::new("cronbyte_sync_duration_seconds", "Time from the sync request to the job's end.")
                    .buckets(SYNC_DURATION_BUCKETS.to_vec()),
                &["connection"],
            ).expect("valid metric")),
            in_flight: build(r, IntGauge::new("cronbyte_syncs_in_flight", "Syncs started and not yet ended.").expect("valid metric")),
            waiting: build(r, IntGauge::new("cronbyte_syncs_waiting", "Runs claimed and waiting for a concurrency slot.").expect("valid metric")),
            lag: build(r, Histogram::with_opts(
                HistogramOpts::new("cronbyte_schedule_lag_seconds", "Time from a run's scheduled instant to its sync request.")
                    .buckets(LAG_BUCKETS.to_vec()),
            ).expect("valid metric")),
            requests: build(r, IntCounterVec::new(
                Opts::new("cronbyte_airbyte_requests_total", "HTTP requests to Airbyte, by operation and outcome."),
                &["operation", "outcome"],
            ).expect("valid metric")),
            request_duration: build(r, HistogramVec::new(
                HistogramOpts::new("cronbyte_airbyte_request_duration_seconds", "Duration of HTTP requests to Airbyte.")
                    .buckets(REQUEST_BUCKETS.to_vec()),
                &["operation"],
            ).expect("valid metric")),
            airbyte_up: build(r, IntGauge::new("cronbyte_airbyte_up", "1 when Airbyte's last health check passed.").expect("valid metric")),
            last_success: build(r, IntGaugeVec::new(
                Opts::new("cronbyte_last_success_timestamp_seconds", "When the connection's newest succeeded run ended."),
                &["connection"],
            ).expect("valid metric")),
            last_run: build(r, IntGaugeVec::new(
                Opts::new("cronbyte_last_run_timestamp_seconds", "When the connection's newest run ended, whatever its status."),
                &["connection"],
            ).expect("valid metric")),
            next_run: build(r, IntGaugeVec::new(
                Opts::new("cronbyte_next_run_timestamp_seconds", "When the connection's rule fires next."),
                &["connection"],
            ).expect("valid metric")),
            expected_interval: build(r, IntGaugeVec::new(
                Opts::new("cronbyte_expected_interval_seconds", "The gap between the rule's next two fire instants, for staleness alerts."),
                &["connection"],
            ).expect("valid metric")),
            consecutive_failures: build(r, IntGaugeVec::new(
                Opts::new("cronbyte_consecutive_failures", "Runs in a row that failed, timed out or could not be triggered; 0 after a success."),
                &["connection"],
            ).expect("valid metric")),
            zero_record_syncs: build(r, IntCounterVec::new(
                Opts::new("cronbyte_zero_record_syncs_total", "Succeeded runs that committed no record: a known silent failure."),
                &["connection"],
            ).expect("valid metric")),
            attempts: build(r, Histogram::with_opts(
                HistogramOpts::new("cronbyte_sync_attempts", "Airbyte attempts per finished job.")
                    .buckets(vec![1.0, 2.0, 3.0, 4.0, 5.0, 10.0]),
            ).expect("valid metric")),
            running_age: build(r, IntGaugeVec::new(
                Opts::new("cronbyte_running_sync_age_seconds", "How long the connection's oldest running sync has run."),
                &["connection"],
            ).expect("valid metric")),
            store_errors: build(r, prometheus::IntCounter::new(
                "cronbyte_store_errors_total", "Operations on the history store that failed.",
            ).expect("valid metric")),
            reloads: build(r, IntCounterVec::new(
                Opts::new("cronbyte_config_reloads_total", "Config reloads, by outcome (applied or rejected)."),
                &["outcome"],
            ).expect("valid metric")),
            window: Mutex::new(SuccessWindow {
                span: chrono::Duration::from_std(success_ratio_window)
                    .unwrap_or(chrono::Duration::days(1)),
                outcomes: HashMap::new(),
            }),
            registry,
        };
        let info = IntGaugeVec::new(
            Opts::new(
                "cronbyte_build_info",
                "Always 1; the labels say which build runs.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build(&metrics.registry, info.clone())
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            // Process metrics are a convenience; a registry that refuses them still works.
            let _ = metrics.registry.register(Box::new(process));
        }
        metrics
    }

    /// Seeds the counters and the success window from the history.
    pub fn seed(&self, totals: &[ConnectionTotals], recent: &[Ended]) {
        for total in totals {
            for (status, runs) in &total.by_status {
                if !status.is_open() {
                    self.syncs
                        .with_label_values(&[total.connection.as_str(), status.as_str()])
                        .inc_by(*runs);
                }
            }
            self.records
                .with_label_values(&[total.connection.as_str()])
                .inc_by(total.records_synced);
            self.bytes
                .with_label_values(&[total.connection.as_str()])
                .inc_by(total.bytes_synced);
            self.zero_record_syncs
                .with_label_values(&[total.connection.as_str()])
                .inc_by(total.zero_record_successes);
        }
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        for ended in recent {
            let at = ended.finished_at.timestamp();
            self.last_run
                .with_label_values(&[ended.connection.as_str()])
                .set(at);
            if ended.status == RunStatus::Succeeded {
                self.last_success
                    .with_label_values(&[ended.connection.as_str()])
                    .set(at);
            }
            if let Some(ok) = counts_toward_ratio(ended.status) {
                window.push(&ended.connection, ended.finished_at, ok);
                self.count_failure_streak(&ended.connection, ok);
            }
        }
    }

    /// Seeds the freshness gauges from the whole history, beyond the window.
    pub fn seed_marks(&self, marks: &[ConnectionMarks]) {
        for mark in marks {
            if let Some(at) = mark.last_success {
                self.last_success
                    .with_label_values(&[mark.connection.as_str()])
                    .set(at.timestamp());
            }
        }
    }

    fn count_failure_streak(&self, connection: &str, succeeded: bool) {
        let gauge = self.consecutive_failures.with_label_values(&[connection]);
        if succeeded {
            gauge.set(0);
        } else {
            gauge.inc();
        }
    }

    /// Counts a run that reached its final status.
    pub fn run_ended(&self, run: &Run) {
        let connection = run.connection.as_str();
        self.syncs
            .with_label_values(&[connection, run.status.as_str()])
            .inc();
        if let Some(records) = run.records_synced {
            self.records
                .with_label_values(&[connection])
                .inc_by(records);
        }
        if let Some(bytes) = run.bytes_synced {
            self.bytes.with_label_values(&[connection]).inc_by(bytes);
        }
        let finished = run.finished_at.unwrap_or_else(Utc::now);
        if let Some(started) = run.started_at {
            let took = (finished - started).num_milliseconds().max(0) as f64 / 1000.0;
            self.duration.with_label_values(&[connection]).observe(took);
        }
        self.last_run
            .with_label_values(&[connection])
            .set(finished.timestamp());
        if run.status == RunStatus::Succeeded {
            self.last_success
                .with_label_values(&[connection])
                .set(finished.timestamp());
        }
        if let Some(ok) = counts_toward_ratio(run.status) {
            self.window
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(connection, finished, ok);
            self.count_failure_streak(connection, ok);
        }
        if run.status == RunStatus::Succeeded && run.records_synced.unwrap_or(0) == 0 {
            self.zero_record_syncs
                .with_label_values(&[connection])
                .inc();
        }
        if run.job_id.is_some() && run.attempts > 0 {
            self.attempts.observe(f64::from(run.attempts));
        }
    }

    pub fn set_next_run(&self, connection: &str, at: Option<DateTime<Utc>>) {
        match at {
            Some(at) => self
                .next_run
                .with_label_values(&[connection])
                .set(at.timestamp()),
            None => {
                let _ = self.next_run.remove_label_values(&[connection]);
            }
        }
    }

    /// Sets the rule's gap between fires; `None` (no rule, or paused) removes it,
    /// so staleness alerts leave the connection alone.
    pub fn set_expected_interval(&self, connection: &str, gap: Option<chrono::Duration>) {
        match gap {
            Some(gap) => self
                .expected_interval
                .with_label_values(&[connection])
                .set(gap.num_seconds()),
            None => {
                let _ = self.expected_interval.remove_label_values(&[connection]);
            }
        }
    }

    /// Drops a connection removed from the config from the per-connection
    /// gauges, so alerts about it stop; its counters stay (they are history).
    pub fn forget(&self, connection: &str) {
        for gauge in [
            &self.last_success,
            &self.last_run,
            &self.next_run,
            &self.expected_interval,
            &self.consecutive_failures,
            &self.running_age,
        ] {
            let _ = gauge.remove_label_values(&[connection]);
        }
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .outcomes
            .remove(connection);
    }

    /// Sets the age of the oldest running sync per connection; connections not
    /// listed have none running.
    pub fn set_running_ages(&self, ages: &[(String, i64)]) {
        self.running_age.reset();
        for (connection, age) in ages {
            let gauge = self.running_age.with_label_values(&[connection.as_str()]);
            gauge.set(gauge.get().max(*age));
        }
    }

    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// Counts a config reload, `applied` or `rejected`.
    pub fn reloaded(&self, outcome: &'static str) {
        self.reloads.with_label_values(&[outcome]).inc();
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

    pub fn set_airbyte_up(&self, up: bool) {
        self.airbyte_up.set(i64::from(up));
    }

    /// The text exposition of every metric, with the success ratios brought up to now.
    pub fn render(&self) -> String {
        let ratios = self
            .window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ratios(Utc::now());
        self.success_ratio.reset();
        for (connection, ratio) in ratios {
            self.success_ratio
                .with_label_values(&[connection.as_str()])
                .set(ratio);
        }
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl RequestObserver for Metrics {
    fn observe(&self, operation: &'static str, outcome: &'static str, elapsed: Duration) {
        self.requests.with_label_values(&[operation, outcome]).inc();
        self.request_duration
            .with_label_values(&[operation])
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn seeding_from_the_history_restores_the_counters() {
        let metrics = Metrics::new(Duration::from_secs(86_400));
        metrics.seed(
            &[ConnectionTotals {
                connection: "orders".into(),
                by_status: vec![(RunStatus::Succeeded, 3), (RunStatus::Running, 1)],
                records_synced: 30,
                bytes_synced: 300,
                zero_record_successes: 1,
            }],
            &[],
        );
        let text = metrics.render();
        assert!(text.contains(r#"cronbyte_syncs_total{connection="orders",status="succeeded"} 3"#));
        assert!(!text.contains(r#"status="running""#));
        assert!(text.contains(r#"cronbyte_records_synced_total{connection="orders"} 30"#));
        assert!(text.contains(r#"cronbyte_build_info{version=""#));
    }
}
