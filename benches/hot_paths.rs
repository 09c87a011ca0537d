//! Micro-benchmarks of the hot paths the scenarios revealed: the next fire
//! instant of 10,000 rules, decoding a `jobs/list` page of 200 jobs, and
//! rendering `/metrics` for 10,000 connections. `cargo bench --bench hot_paths`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::Utc;
use cronbyte::airbyte::model::JobReadList;
use cronbyte::cron::CronRule;
use cronbyte::metrics::Metrics;
use cronbyte::run::{Run, RunStatus, Trigger};

/// Runs `f` repeatedly for about a second and reports the median of 10 batches.
fn measure(name: &str, per: &str, mut f: impl FnMut()) {
    f();
    let mut samples = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < Duration::from_millis(100) {
            f();
            n += 1;
        }
        samples.push(started.elapsed() / n);
    }
    samples.sort();
    println!("{name:<55} {:>12.3?} per {per}", samples[5]);
}

fn main() {
    let zones = [
        chrono_tz::UTC,
        chrono_tz::Europe::Paris,
        chrono_tz::America::New_York,
    ];
    let rules: Vec<CronRule> = (0..10_000)
        .map(|i| {
            let expr = match i % 3 {
                0 => format!("{} {} * * *", i % 60, i % 24),
                1 => format!("0 {} {} * * ?", i % 60, i % 24),
                _ => format!("*/{} * * * *", 1 + i % 30),
            };
            CronRule::parse(&expr, zones[i % 3]).expect("valid rule")
        })
        .collect();
    let now = Utc::now();
    // Distinct texts each time, so the shared parsed forms never answer: what a rule
    // costs to parse when it is not shared.
    let mut fresh = 0u64;
    measure("parse a rule no other rule shares", "rule", || {
        fresh += 1;
        let expr = format!("{} {} {} * * ?", fresh % 60, (fresh / 60) % 60, fresh % 24);
        let expr = format!("{expr} {}", 2_100 + fresh % 2_000);
        black_box(CronRule::parse(&expr, zones[1]).expect("valid rule"));
    });
    measure("next fire instant of 10,000 rules", "10,000 rules", || {
        for rule in &rules {
            black_box(rule.next_after(now));
        }
    });

    let page = serde_json::json!({
        "jobs": (0..200).map(|i| serde_json::json!({
            "job": {
                "id": i, "configType": "sync", "configId": "4b5c6d7e-0000-4000-8000-000000000001",
                "createdAt": 1_790_000_000 + i, "updatedAt": 1_790_000_100 + i, "status": "running",
                "aggregatedStats": {"recordsEmitted": 10, "bytesEmitted": 100, "recordsCommitted": 10,
                    "bytesCommitted": 100, "recordsRejected": 0}
            },
            "attempts": [{"id": 0, "status": "running", "createdAt": 1_790_000_000, "updatedAt": 1_790_000_050,
                "totalStats": {"recordsEmitted": 10, "bytesEmitted": 100, "recordsCommitted": 10, "bytesCommitted": 100}}]
        })).collect::<Vec<_>>(),
        "totalJobCount": 200
    })
    .to_string();
    measure("decode a jobs/list page of 200 jobs", "page", || {
        let list: JobReadList = serde_json::from_str(black_box(&page)).expect("decodes");
        for job in list.jobs {
            black_box(job.into_job());
        }
    });

    let metrics = Metrics::new(Duration::from_secs(86_400));
    for i in 0..10_000 {
        let run = Run {
            id: i,
            connection: format!("conn-{i:05}"),
            connection_id: "4b5c6d7e-0000-4000-8000-000000000001".into(),
            instance: "default".into(),
            trigger: Trigger::Schedule,
            scheduled_for: now,
            claimed_at: now,
            started_at: Some(now - chrono::Duration::seconds(90)),
            finished_at: Some(now),
            status: RunStatus::Succeeded,
            job_id: Some(i),
            attempts: 1,
            records_synced: Some(100),
            bytes_synced: Some(1_000),
            error: None,
            retry_of: None,
            cancel_requested_at: None,
        };
        metrics.run_ended(&run);
        metrics.set_next_run(&run.connection, Some(now));
    }
    measure("render /metrics for 10,000 connections", "scrape", || {
        black_box(metrics.render().len());
    });
}
