//! Small runs of every benchmark scenario, so the harness cannot rot. They check
//! counts and that each scenario completes, never times: the figures belong in
//! BENCHMARKS.md, measured at full size on a quiet machine.

use std::process::Command;

fn bench(args: &[&str]) -> Vec<serde_json::Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_cronbyte-bench"))
        .args(args)
        .arg("--json")
        .output()
        .expect("the bench runs");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect()
}

fn number(rows: &[serde_json::Value], measure_prefix: &str) -> f64 {
    rows.iter()
        .find(|r| r["measure"].as_str().unwrap().starts_with(measure_prefix))
        .unwrap_or_else(|| panic!("no row {measure_prefix}: {rows:#?}"))["number"]
        .as_f64()
        .unwrap()
}

#[test]
fn the_burst_scenario_records_every_run() {
    let rows = bench(&[
        "burst",
        "--connections",
        "20",
        "--job",
        "1s",
        "--poll",
        "500ms",
    ]);
    assert_eq!(number(&rows, "runs recorded"), 20.0);
    assert!(number(&rows, "lag p50") >= 0.0);
}

#[test]
fn the_polling_scenario_counts_requests_per_sync() {
    let rows = bench(&[
        "polling",
        "--connections",
        "20",
        "--job",
        "2s",
        "--poll",
        "500ms",
    ]);
    let per_sync = number(&rows, "requests per completed sync");
    // One trigger each, plus polls shared by all jobs.
    assert!(per_sync >= 1.0, "{rows:#?}");
}

#[test]
fn the_history_scenario_fills_and_queries_a_store() {
    let rows = bench(&["history", "--runs", "5000"]);
    assert!(number(&rows, "bytes on disk per run") > 0.0);
    assert!(number(&rows, "terminal updates, batches") > 0.0);
}

#[test]
fn the_idle_and_scrape_scenarios_run_a_daemon_with_many_connections() {
    let rows = bench(&["idle", "--connections", "200", "--seconds", "1"]);
    assert!(number(&rows, "RSS") > 0.0);
    let rows = bench(&["scrape", "--connections", "200"]);
    assert!(number(&rows, "/metrics, 200 connections, as started") > 0.0);
    // Every connection synced through the control API before the second scrape.
    assert!(number(&rows, "/metrics, 200 connections, each synced since start") > 0.0);
    assert!(number(&rows, "spawn to READY=1") > 0.0);
}

#[test]
fn the_status_scenario_lists_every_connection_with_its_last_run() {
    // The scenario itself fails unless every connection is listed with its last run.
    let rows = bench(&["status", "--connections", "200"]);
    assert!(number(&rows, "GET /api/v1/connections, 200 connections") > 0.0);
}

#[test]
fn the_startup_scenario_sees_the_daemon_ready_and_then_active() {
    let rows = bench(&["startup", "--connections", "200"]);
    let ready = number(&rows, "spawn to READY=1, 200 connections, SQLite");
    let active = number(
        &rows,
        "spawn to active (first /readyz saying so), 200 connections",
    );
    assert!(ready > 0.0 && active >= ready, "{rows:#?}");
}

#[test]
fn the_page_scenario_renders_the_first_page_of_the_status_page() {
    // The scenario itself fails unless the page shows a full first page of rows.
    let rows = bench(&["page", "--connections", "200"]);
    assert!(number(&rows, "GET / (first page), 200 connections") > 0.0);
    assert!(
        number(
            &rows,
            "GET /?sort=next_run (first page sorted by next run), 200 connections"
        ) > 0.0
    );
}
