//! Fail-over: three `cronbyte run` replicas share one PostgreSQL store, with three
//! connections firing every second and a 2 s lease renewed every 500 ms. The active
//! replica is `kill -9`ed at seeded random moments (and a new replica started in its
//! place), and now and then frozen with SIGSTOP until another has taken over, then woken
//! with SIGCONT. Then: every job the emulator ran is in the history exactly once with its
//! outcome, no tick is claimed twice, every tick not claimed fell while no replica was
//! active, no run is left open, and the woken replicas stepped down. The time from each
//! kill to another replica answering `/readyz` as active is printed (run with
//! `--nocapture`), for BENCHMARKS.md.
//!
//! Runs when `CRONBYTE_TEST_POSTGRES_URL` names a server (`.ci/run` always sets it):
//! `cargo test --test hardening failover -- --nocapture`. `CRONBYTE_FAILOVER_KILLS`,
//! `CRONBYTE_FAILOVER_FREEZES` and `CRONBYTE_FAILOVER_SEED` change the run.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cronbyte::emulator::Faults;
use cronbyte::run::{Run, Trigger};
use cronbyte::store::{HistoryFilter, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use tokio::time::Instant;

use crate::pg::{drop_database, fresh_database, server_or_skip};
use crate::support::*;

const DEFAULT_SEED: u64 = 20_261_130;
const LEASE: Duration = Duration::from_secs(2);
const RENEWAL: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_lose_their_active_one_20_times_and_every_job_is_recorded_once() {
    let Some(server) = server_or_skip("the fail-over test") else {
        return;
    };
    let kills: usize = env_or("CRONBYTE_FAILOVER_KILLS", 20);
    let freezes: usize = env_or("CRONBYTE_FAILOVER_FREEZES", 3);
    let seed: u64 = env_or("CRONBYTE_FAILOVER_SEED", DEFAULT_SEED);
    println!("fail-over: {kills} kills, {freezes} freezes, seed {seed}");
    let _heavy = crate::HEAVY.lock().await;
    let (database, url) = fresh_database(&server).await;
    let emulator = emulator().await;
    let control = emulator.control();
    // Answers leave 300 ms after Airbyte acted, so kills land between a sync request
    // and its answer too.
    control.set_faults(Faults {
        answer_delay: Duration::from_millis(300),
        ..Faults::default()
    });
    let dir = WorkDir::new("failover");
    let logs = dir.path().join("logs");
    let plans = documented_mix();
    let unused = dir.path().join("unused.db");
    let mut text = base_config(
        &emulator.config_api_base(),
        &unused,
        "request_timeout = \"1s\"\n[airbyte.retry]\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\nmax_elapsed = \"2s\"",
    )
    .replacen(
        &format!("path = \"{}\"", unused.display()),
        &format!(
            "url = \"{url}\"\nlease = \"{}ms\"\nlease_renewal = \"{}ms\"\nretention = \"forever\"",
            LEASE.as_millis(),
            RENEWAL.as_millis()
        ),
        1,
    );
    let mut ids = Vec::new();
    for (name, plan, extra) in &plans {
        let id = control.add_connection(name);
        control.set_plan(id, plan.clone());
        ids.push((*name, id));
        text.push_str(&connection_block(name, id, "* * * * * *", extra));
    }
    let config = dir.path().join("cronbyte.toml");
    std::fs::write(&config, valid(&text)).expect("config written");

    let mut spawned = 0;
    let mut stderr_files = Vec::new();
    let mut spawn = || {
        spawned += 1;
        let replica = DaemonProcess::spawn(&config, &logs, &format!("replica-{spawned:02}"), &[]);
        stderr_files.push(replica.stderr.clone());
        replica
    };
    let mut replicas = vec![spawn(), spawn(), spawn()];
    let mut rng = StdRng::seed_from_u64(seed);
    // When no replica was active: from a kill or freeze to the next `/readyz` saying active.
    let mut gaps: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    let mut kill_takeovers = Vec::new();
    let mut freeze_takeovers = Vec::new();
    let freeze_rounds: Vec<usize> = (0..freezes)
        .map(|i| (i + 1) * (kills + freezes) / (freezes + 1))
        .collect();
    for round in 0..kills + freezes {
        let active = active_replica(&replicas, Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2_500))).await;
        let (gone_at, gone_wall) = (Instant::now(), Utc::now());
        if freeze_rounds.contains(&round) {
            let frozen = replicas[active].pid();
            signal("-STOP", frozen).await;
            let next = active_replica_other_than(&replicas, active, Duration::from_secs(30)).await;
            freeze_takeovers.push(gone_at.elapsed());
            gaps.push((gone_wall, Utc::now()));
            // Frozen a while longer, then woken: it must see its lease gone and stand by.
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..2_000))).await;
            signal("-CONT", frozen).await;
            eventually(
                Duration::from_secs(10),
                "the woken replica to stand by",
                || async {
                    match role(&replicas[active]).await {
                        Some(role) if role == "standby" => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await;
            assert_eq!(
                active_replica(&replicas, Duration::from_secs(5)).await,
                next
            );
        } else {
            let victim = replicas.swap_remove(active);
            victim.kill9().await;
            let _ = active_replica(&replicas, Duration::from_secs(30)).await;
            kill_takeovers.push(gone_at.elapsed());
            gaps.push((gone_wall, Utc::now()));
            replicas.push(spawn());
        }
    }

    // Stop new ticks, let the active replica finish what is open, then stop them all.
    let store = reader(&url).await;
    // The test's own store never asks for the lease, so its writes are not fenced.
    for (name, _) in &ids {
        store.set_paused(name, true).await.expect("paused");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    control.set_faults(Faults::default());
    let runs = settle_with(&emulator, Duration::from_secs(90), || history(&store)).await;
    for replica in replicas {
        let status = replica.terminate(Duration::from_secs(15)).await;
        assert!(status.success(), "a replica stopped badly: {status:?}");
    }

    let jobs = control.jobs();
    let ledger = ledger(&jobs, &runs, &names(&ids));
    let twice = ticks_claimed_twice(&url).await;
    let unexplained = ticks_missed_outside(&runs, &gaps);
    let stepped_down = stderr_files
        .iter()
        .filter(|f| {
            let log = read(f);
            log.contains("stepping down")
        })
        .count();
    let panicked = panics(&stderr_files);
    store.close().await;
    drop_database(&server, &database).await;
    emulator.shutdown().await;

    println!(
        "fail-over (lease {LEASE:?}, renewal {RENEWAL:?}): {} jobs, {} runs {:?}",
        ledger.jobs, ledger.runs, ledger.by_status
    );
    println!(
        "  kills: {}, {}",
        kill_takeovers.len(),
        spread(&kill_takeovers)
    );
    println!(
        "  freezes: {}, {}",
        freeze_takeovers.len(),
        spread(&freeze_takeovers)
    );
    ledger.assert_clean(&format!("fail-over (seed {seed})"));
    assert!(twice.is_empty(), "ticks claimed more than once: {twice:?}");
    assert!(
        unexplained.is_empty(),
        "ticks not claimed although a replica was active: {unexplained:?}"
    );
    assert!(
        stepped_down >= freezes,
        "{stepped_down} replicas logged stepping down after {freezes} freezes"
    );
    assert!(
        panicked.is_empty(),
        "a replica panicked:\n{}",
        panicked.join("\n")
    );
    assert!(
        ledger.jobs >= kills,
        "only {} jobs over {kills} kills: the replicas were not exercised",
        ledger.jobs
    );
}

/// p50 and max of fail-over times, in milliseconds.
fn spread(times: &[Duration]) -> String {
    let mut ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
    ms.sort_unstable();
    match ms.as_slice() {
        [] => "none".into(),
        _ => format!(
            "fail-over p50 {} ms, max {} ms",
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        ),
    }
}

async fn signal(which: &str, pid: u32) {
    let sent = tokio::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .await
        .expect("kill runs");
    assert!(sent.success(), "kill {which} {pid} failed");
}

/// A replica's role from its `/readyz`, once it listens and answers.
async fn role(replica: &DaemonProcess) -> Option<String> {
    let addr = replica.listen_addr_now()?;
    let answer = reqwest::Client::new()
        .get(format!("http://{addr}/readyz"))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = answer.json().await.ok()?;
    body["role"].as_str().map(str::to_owned)
}

/// The index of the replica that says it is active.
async fn active_replica(replicas: &[DaemonProcess], within: Duration) -> usize {
    active_replica_other_than(replicas, usize::MAX, within).await
}

async fn active_replica_other_than(
    replicas: &[DaemonProcess],
    not: usize,
    within: Duration,
) -> usize {
    let deadline = Instant::now() + within;
    loop {
        for (i, replica) in replicas.iter().enumerate() {
            if i != not && role(replica).await.as_deref() == Some("active") {
                return i;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no replica became active within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn reader(url: &str) -> std::sync::Arc<dyn Store> {
    let settings = cronbyte::config::StoreSettings {
        url: Some(SecretString::from(url.to_owned())),
        ..Default::default()
    };
    cronbyte::store::open_for_reading(&settings)
        .await
        .expect("the store opens")
}

async fn history(store: &std::sync::Arc<dyn Store>) -> Vec<Run> {
    let mut runs = store
        .history(&HistoryFilter {
            connection: None,
            limit: u32::MAX,
        })
        .await
        .expect("the history reads");
    runs.reverse();
    runs
}

/// Ticks with more than one `schedule` run, read with SQL so that the unique index is
/// not what is being trusted.
async fn ticks_claimed_twice(url: &str) -> Vec<(String, String, i64)> {
    let pool = sqlx::PgPool::connect(url)
        .await
        .expect("PostgreSQL answers");
    let rows = sqlx::query_as(
        "SELECT connection, scheduled_for::text, count(*) FROM runs WHERE trigger = 'schedule' \
         GROUP BY connection, scheduled_for HAVING count(*) > 1",
    )
    .fetch_all(&pool)
    .await
    .expect("the query runs");
    pool.close().await;
    rows
}

/// Seconds between each connection's first and last claimed tick that no run claims and
/// that fell outside every gap (with a second's slack each side): a tick lost while a
/// replica was active. Inside a gap, the misfire policy (`run_once`) claims only the
/// newest missed tick, so missing ones there are expected.
fn ticks_missed_outside(runs: &[Run], gaps: &[(DateTime<Utc>, DateTime<Utc>)]) -> Vec<String> {
    let mut ticks: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.trigger == Trigger::Schedule) {
        ticks
            .entry(&run.connection)
            .or_default()
            .push(run.scheduled_for.timestamp());
    }
    let slack = chrono::Duration::seconds(1);
    let mut missed = Vec::new();
    for (connection, mut seconds) in ticks {
        seconds.sort_unstable();
        for pair in seconds.windows(2) {
            for second in pair[0] + 1..pair[1] {
                let at = DateTime::from_timestamp(second, 0).expect("a time");
                if !gaps
                    .iter()
                    .any(|(from, to)| *from - slack <= at && at <= *to + slack)
                {
                    missed.push(format!("{connection} at {at}"));
                }
            }
        }
    }
    missed
}
