//! The engine on tokio's paused clock, with the history in memory: time moves
//! only when a test says so, so races between the schedule and a reload can be
//! set up instant by instant.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{self, Config, Format};
use crate::store::{HistoryFilter, MemoryStore};

/// A config whose Airbyte refuses every connection at once (nothing listens on
/// port 1), so the engine's schedule can be watched without a sync ever starting.
fn config(connections: &str) -> Config {
    let text = format!(
        "[airbyte]\nbase_url = \"http://127.0.0.1:1/api/v1\"\n\
         [airbyte.retry]\nmax_retries = 0\n\n{connections}"
    );
    config::from_str(&text, Format::Toml).expect("a valid test config")
}

/// Starts an engine on a clock that reads `origin` now and moves with tokio's.
async fn start(config: &Config, store: Arc<MemoryStore>, origin: DateTime<Utc>) -> Engine {
    let client = Client::new(crate::daemon::client_settings(config)).expect("a client");
    Engine::start(
        EngineParts {
            store,
            airbyte: client,
            metrics: Arc::new(Metrics::new(Duration::from_secs(3_600))),
            workers: config.workers.clone(),
            groups: config.groups.clone(),
            connections: config.connections.clone(),
            clock: Clock::accelerated(origin, 1),
            notifier: Notifier::default(),
        },
        CancellationToken::new(),
    )
    .await
    .expect("the engine starts")
}

/// Lets every task that can run, run, without moving the clock.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// A reload that arrives in the very instant a tick falls due, before the
/// schedule has looked at the clock again, keeps that tick: the schedule is
/// rebuilt from the last instant it fired, not from the reload's now.
#[tokio::test(start_paused = true)]
async fn a_reload_in_the_instant_a_tick_falls_due_keeps_the_tick() {
    let config = config(
        "[[connections]]\nname = \"every-second\"\n\
         connection_id = \"4b5c6d7e-0000-4000-8000-000000000001\"\ncron = \"* * * * * *\"\n",
    );
    let store = Arc::new(MemoryStore::new());
    let origin: DateTime<Utc> = "2026-06-01T00:00:00.250Z".parse().expect("a time");
    let engine = start(&config, store.clone(), origin).await;
    let mut due = Vec::new();
    for second in 1..=20 {
        // The schedule sleeps until the next second...
        settle().await;
        let at = origin.with_nanosecond(0).expect("a time") + chrono::Duration::seconds(second);
        let now = engine.shared.clock.now();
        tokio::time::advance((at - now).to_std().expect("ahead")).await;
        // ...which has come, and so has a reload, before the schedule runs again.
        engine.reload(config.connections.clone(), config.groups.clone());
        due.push(at);
        settle().await;
    }
    let claimed: Vec<DateTime<Utc>> = store
        .history(&HistoryFilter {
            connection: None,
            limit: 1_000,
        })
        .await
        .expect("history")
        .into_iter()
        .map(|run| run.scheduled_for)
        .collect();
    let missing: Vec<_> = due.iter().filter(|at| !claimed.contains(at)).collect();
    assert!(missing.is_empty(), "ticks dropped: {missing:?}");
}

/// An engine with nothing to do still makes progress in both loops, however
/// long it idles: the watchdog never restarts a healthy daemon.
#[tokio::test(start_paused = true)]
async fn an_idle_engine_is_never_taken_for_a_stuck_one() {
    let config = config(
        "[[connections]]\nname = \"nightly\"\n\
         connection_id = \"4b5c6d7e-0000-4000-8000-000000000001\"\ncron = \"0 0 3 * * *\"\n",
    );
    let origin: DateTime<Utc> = "2026-06-01T12:00:00Z".parse().expect("a time");
    let engine = start(&config, Arc::new(MemoryStore::new()), origin).await;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(engine.stuck_loop(Duration::from_secs(5)), None);
    }
}

/// A store that stops answering stalls the schedule loop, and the watchdog's
/// check names that loop once a watchdog interval has passed without progress.
#[tokio::test(start_paused = true)]
async fn a_schedule_loop_stalled_on_the_store_is_reported_stuck() {
    let config = config(
        "[[connections]]\nname = \"every-second\"\n\
         connection_id = \"4b5c6d7e-0000-4000-8000-000000000001\"\ncron = \"* * * * * *\"\n",
    );
    let store = Arc::new(MemoryStore::new());
    let origin: DateTime<Utc> = "2026-06-01T12:00:00Z".parse().expect("a time");
    let engine = start(&config, store.clone(), origin).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(engine.stuck_loop(Duration::from_secs(5)), None);
    store.stop_answering();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(engine.stuck_loop(Duration::from_secs(5)), None, "not yet");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(engine.stuck_loop(Duration::from_secs(5)), Some("schedule"));
}
