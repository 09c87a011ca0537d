//! Crash loop: the `cronbyte` binary, with three connections firing every second, is
//! `kill -9`ed at seeded random moments and restarted each time; then its connections are
//! paused, the emulator's jobs finished, and the daemon left to settle. Whatever moment the
//! kills hit (start-up, a claim, a sync request in flight, a poll, a write), every job the
//! emulator ran must be in the history exactly once with its final outcome.
//!
//! Short form (default, 20 kills): `cargo test --test hardening crash_loop`.
//! Long form (150 kills, about four minutes), with the Airbyte faults' long form:
//! `cargo test --release --test hardening long_run -- --ignored`.
//! `CRONBYTE_CRASH_SEED=N` replays another sequence of kill moments; the seed in use is
//! printed (run with `--nocapture`).

use std::time::Duration;

use cronbyte::emulator::{Faults, JobPlan};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::*;

/// The seed of the kill moments unless `CRONBYTE_CRASH_SEED` says otherwise.
const DEFAULT_SEED: u64 = 20_261_126;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_survives_20_kill_9s_with_every_job_recorded_exactly_once() {
    crash_loop(env_or("CRONBYTE_CRASH_KILLS", 20), Mix::Documented).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long form (about four minutes): cargo test --release --test hardening long_run -- --ignored"]
async fn the_history_survives_150_kill_9s_in_a_long_run() {
    crash_loop(env_or("CRONBYTE_CRASH_KILLS", 150), Mix::Documented).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_survives_20_kill_9s_with_queued_runs_and_lost_answers() {
    crash_loop(
        env_or("CRONBYTE_CRASH_KILLS", 20),
        Mix::WithQueueAndLostAnswers,
    )
    .await;
}

/// Which connections and faults the loop runs with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mix {
    /// A quick success (attach), a failure retried once (skip) and a job whose first
    /// attempt fails before the second succeeds (Airbyte's `incomplete` in between); every
    /// answer comes 300 ms after Airbyte acted.
    Documented,
    /// The same plus a slow connection under `on_overlap = "queue"`, and one Airbyte answer
    /// in ten lost although Airbyte acted on the request.
    WithQueueAndLostAnswers,
}

async fn crash_loop(kills: usize, mix: Mix) {
    let seed: u64 = env_or("CRONBYTE_CRASH_SEED", DEFAULT_SEED);
    println!(
        "crash loop ({mix:?}): {kills} kills, seed {seed} (CRONBYTE_CRASH_SEED={seed} replays it)"
    );
    let _heavy = crate::HEAVY.lock().await;
    let emulator = emulator().await;
    let control = emulator.control();
    // Every answer leaves 300 ms after Airbyte acted on the request. That widens the most
    // dangerous window, a sync started whose job id the history does not hold yet, from
    // microseconds to a third of a second, so kills land in it too.
    control.set_faults(Faults {
        answer_delay: Duration::from_millis(300),
        // Answers that never come although Airbyte acted widen it to the request timeout.
        lost_answer_rate: if mix == Mix::WithQueueAndLostAnswers {
            0.1
        } else {
            0.0
        },
        ..Faults::default()
    });
    let dir = WorkDir::new("crash-loop");
    let store = dir.path().join("history.db");
    let logs = dir.path().join("logs");

    let mut plans = documented_mix();
    if mix == Mix::WithQueueAndLostAnswers {
        plans.push((
            "slow",
            JobPlan::succeeding(Duration::from_secs(3), 3_000, 300_000),
            "on_overlap = \"queue\"",
        ));
    }
    let mut ids = Vec::new();
    let mut text = base_config(
        &emulator.config_api_base(),
        &store,
        "request_timeout = \"1s\"\n[airbyte.retry]\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\nmax_elapsed = \"2s\"",
    );
    for (name, plan, extra) in &plans {
        let id = control.add_connection(name);
        control.set_plan(id, plan.clone());
        ids.push((*name, id));
        text.push_str(&connection_block(name, id, "* * * * * *", extra));
    }
    // On no rule of its own: it runs once after each success of `steady`, and is
    // never paused, so each of those successes must set off exactly one run of it.
    let report = control.add_connection("report");
    control.set_plan(
        report,
        JobPlan::succeeding(Duration::from_millis(300), 5, 500),
    );
    text.push_str(&format!(
        "\n[[connections]]\nname = \"report\"\nconnection_id = \"{report}\"\nafter = [\"steady\"]\n"
    ));
    let config = dir.path().join("cronbyte.toml");
    std::fs::write(&config, valid(&text)).expect("config written");

    let mut rng = StdRng::seed_from_u64(seed);
    let mut stderr_files = Vec::new();
    for round in 0..kills {
        let mut daemon = DaemonProcess::spawn(&config, &logs, &format!("run-{round:03}"), &[]);
        stderr_files.push(daemon.stderr.clone());
        // A quarter of the kills land during start-up (taking up open runs, catching up on
        // a missed tick); the rest anywhere in the life of one to three syncs.
        let delay = if rng.random_bool(0.25) {
            rng.random_range(0..400)
        } else {
            rng.random_range(400..2_500)
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        assert!(
            daemon.is_running(),
            "round {round}: the daemon exited by itself; stderr ends:\n{}",
            tail(&read(&daemon.stderr), 30)
        );
        daemon.kill9().await;
    }

    // The last start: let it take up what the kills left, stop new ticks, finish the jobs.
    let daemon = DaemonProcess::spawn(&config, &logs, "final", &[]);
    stderr_files.push(daemon.stderr.clone());
    daemon.listen_addr(Duration::from_secs(20)).await;
    control.set_faults(Faults::default());
    let names_only: Vec<&str> = ids.iter().map(|(n, _)| *n).collect();
    pause(&store, &names_only).await;
    // Pauses are read every two seconds: ticks claimed before then are followed too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = settle(&emulator, &store, Duration::from_secs(90)).await;
    let status = daemon.terminate(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "the final daemon stopped badly: {status:?}"
    );

    let jobs = control.jobs();
    let mut every = ids.clone();
    every.push(("report", report));
    let ledger = ledger(&jobs, &runs, &names(&every));
    let taken_up = stderr_files
        .iter()
        .filter(|f| read(f).contains("taking up runs left open"))
        .count();
    let found_lost = stderr_files
        .iter()
        .map(|f| {
            read(f)
                .matches("found the job an earlier request started")
                .count()
        })
        .sum::<usize>();
    println!(
        "crash loop: {} jobs, {} runs {:?}; {taken_up} start(s) took up open runs, {found_lost} job(s) \
         whose sync answer a kill cut off found again",
        ledger.jobs, ledger.runs, ledger.by_status
    );
    ledger.assert_clean(&format!("crash loop (seed {seed})"));
    assert!(
        ledger.jobs >= kills,
        "only {} jobs over {kills} kills: the loop did not exercise the daemon",
        ledger.jobs
    );
    assert!(
        taken_up > 0,
        "no start ever took up an open run: the kills never hit a sync in flight"
    );
    assert!(
        found_lost > 0,
        "no kill landed between a sync request and its answer: the loop missed the window it is for"
    );
    follow_ups_once(&runs);
    let twice = ticks_claimed_twice(&store).await;
    assert!(twice.is_empty(), "ticks claimed more than once: {twice:?}");
    assert_eq!(
        integrity_check(&store).await,
        ["ok"],
        "PRAGMA integrity_check"
    );
    let panicked = panics(&stderr_files);
    assert!(
        panicked.is_empty(),
        "the daemon panicked:\n{}",
        panicked.join("\n")
    );
    emulator.shutdown().await;
}

/// What outcomes set off, counted: every first run of `flaky` that failed has exactly
/// one retry (`retries = 1`), and `report` has exactly one dependency run per success
/// of `steady`: a kill between an outcome and its follow-ups would lose one, and a
/// follow-up written twice would show as two.
fn follow_ups_once(runs: &[cronbyte::run::Run]) {
    use cronbyte::run::{RunStatus, Trigger};
    let mut problems = Vec::new();
    for failed in runs.iter().filter(|r| {
        r.connection == "flaky" && r.retry_of.is_none() && r.status == RunStatus::Failed
    }) {
        let retries = runs
            .iter()
            .filter(|r| r.retry_of == Some(failed.id))
            .count();
        if retries != 1 {
            problems.push(format!(
                "flaky run {} failed and has {retries} retries",
                failed.id
            ));
        }
    }
    let successes = runs
        .iter()
        .filter(|r| r.connection == "steady" && r.status == RunStatus::Succeeded)
        .count();
    let dependents = runs
        .iter()
        .filter(|r| r.connection == "report" && r.trigger == Trigger::Dependency)
        .count();
    if dependents != successes {
        problems.push(format!(
            "{successes} successes of steady set off {dependents} runs of report"
        ));
    }
    assert!(
        successes > 0 && runs.iter().any(|r| r.trigger == Trigger::Retry),
        "no success of steady or no retry of flaky: the loop did not exercise follow-ups"
    );
    assert!(
        problems.is_empty(),
        "follow-ups lost or doubled:\n{}",
        problems.join("\n")
    );
}

/// A run queued behind another (`on_overlap = "queue"`) and taken up after a `kill -9`
/// must start its own sync once the run before it ends, not record that run's job again.
///
/// The run before it could only start its job after the queued run was claimed (Airbyte
/// answered 5xx until then), so that job was created "since the queued run's claim", which
/// is all the lookup for a job "an earlier request started" checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_taken_up_after_a_kill_9_does_not_record_the_job_of_the_run_before_it() {
    let emulator = emulator().await;
    let control = emulator.control();
    let id = control.add_connection("queued");
    control.set_plan(id, JobPlan::hanging());
    control.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let dir = WorkDir::new("queued-takeover");
    let store = dir.path().join("history.db");
    let logs = dir.path().join("logs");
    let text = base_config(
        &emulator.config_api_base(),
        &store,
        "[airbyte.retry]\ninitial_backoff = \"50ms\"\nmax_backoff = \"100ms\"\nmax_elapsed = \"1s\"",
    ) + &connection_block("queued", id, "* * * * * *", "on_overlap = \"queue\"");
    let config = dir.path().join("cronbyte.toml");
    std::fs::write(&config, valid(&text)).expect("config written");

    let first = DaemonProcess::spawn(&config, &logs, "first", &[]);
    // One run trying to start through the outage, the next tick queued behind it.
    eventually(
        Duration::from_secs(20),
        "a run waiting behind another",
        || async {
            let runs = history(&store).await;
            (runs.iter().filter(|r| r.status.is_open()).count() >= 2)
                .then_some(())
                .ok_or(format!("{runs:?}"))
        },
    )
    .await;
    control.set_faults(Faults::default());
    let started = eventually(
        Duration::from_secs(20),
        "the first run to start its job",
        || async {
            let runs = history(&store).await;
            runs.iter()
                .find(|r| r.job_id.is_some())
                .map(|r| r.id)
                .ok_or(format!("{runs:?}"))
        },
    )
    .await;
    first.kill9().await;

    pause(&store, &["queued"]).await;
    let second = DaemonProcess::spawn(&config, &logs, "second", &[]);
    second.listen_addr(Duration::from_secs(20)).await;
    let runs = settle(&emulator, &store, Duration::from_secs(30)).await;
    second.terminate(Duration::from_secs(15)).await;

    let jobs = control.jobs();
    let ledger = ledger(&jobs, &runs, &names(&[("queued", id)]));
    println!("run {started} started the first job; jobs {jobs:?}");
    ledger.assert_clean("a queued run taken up after kill -9");
    emulator.shutdown().await;
}
