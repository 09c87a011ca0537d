//! When runs are due: every enabled connection's cron rule, in its own time zone,
//! in one timer loop over a heap of next fire instants. A due instant is claimed
//! in the history before anything is sent, so a tick is never triggered twice.
//!
//! Fire instants come from the cron rules (croner, which is right across DST);
//! the loop sleeps until the earliest, but never longer than a second, so a
//! suspend or a wall-clock jump is noticed and handled by the misfire policy.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Shared;
use crate::config::{ConnectionSettings, Misfire};
use crate::store::{NewRun, Trigger};

/// The longest the loop sleeps before looking at the wall clock again.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// A due instant found later than this is a misfire (the process was suspended,
/// the clock jumped, the machine was too busy), handled by the misfire policy.
const MISFIRE_TOLERANCE: chrono::Duration = chrono::Duration::seconds(30);

pub(super) async fn run(shared: Arc<Shared>, last_ticks: Vec<(String, DateTime<Utc>)>) {
    let started = Utc::now();
    let last_ticks: HashMap<String, DateTime<Utc>> = last_ticks.into_iter().collect();
    let mut heap = BinaryHeap::new();
    for (index, connection) in shared.ordered.iter().enumerate() {
        let Some(rule) = connection.cron.as_ref().filter(|_| connection.enabled) else {
            continue;
        };
        if let Some(last) = last_ticks.get(&connection.name) {
            catch_up(&shared, connection, *last, started).await;
        }
        if let Some(next) = rule.next_after(started) {
            heap.push(Reverse((next, index)));
        }
    }
    tracing::info!(scheduled = heap.len(), "schedule loaded");

    loop {
        let Some(&Reverse((due, _))) = heap.peek() else {
            shared.shutdown.cancelled().await;
            return;
        };
        let now = Utc::now();
        if due > now {
            let wait = (due - now).to_std().unwrap_or_default().min(MAX_SLEEP);
            tokio::select! {
                () = shared.shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => continue,
            }
        }
        let mut fired = Vec::new();
        while let Some(&Reverse((at, index))) = heap.peek() {
            if at > now {
                break;
            }
            heap.pop();
            let connection = &shared.ordered[index];
            if let Some(rule) = &connection.cron {
                // From now, not from `at`: after a long sleep the ticks in between
                // are one misfire, not a burst of runs.
                if let Some(next) = rule.next_after(at.max(now)) {
                    heap.push(Reverse((next, index)));
                }
            }
            fired.push((at, index));
        }
        for (at, index) in fired {
            let connection = Arc::clone(&shared.ordered[index]);
            if now - at > MISFIRE_TOLERANCE {
                catch_up(&shared, &connection, at - chrono::Duration::milliseconds(1), now).await;
            } else {
                claim(&shared, &connection, at).await;
            }
        }
    }
}

/// Applies the misfire policy to the instants that fell after `last` and up to
/// `now` without being fired: `run_once` claims the newest of them, `skip`
/// lets them go.
async fn catch_up(
    shared: &Arc<Shared>,
    connection: &ConnectionSettings,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
) {
    let Some(rule) = &connection.cron else {
        return;
    };
    let Some(missed) = rule.latest_at_or_before(now, last + chrono::Duration::milliseconds(1))
    else {
        return;
    };
    match connection.misfire {
        Misfire::RunOnce => {
            tracing::info!(connection = %connection.name, scheduled_for = %missed,
                "catching up on a missed tick");
            claim(shared, connection, missed).await;
        }
        Misfire::Skip => tracing::info!(connection = %connection.name, newest_missed = %missed,
            "missed ticks skipped, as the misfire policy says"),
    }
}

/// Claims the tick and queues its run; a tick claimed before is left alone.
async fn claim(shared: &Arc<Shared>, connection: &ConnectionSettings, at: DateTime<Utc>) {
    let new_run = NewRun {
        connection: connection.name.clone(),
        connection_id: connection.connection_id.clone(),
        trigger: Trigger::Schedule,
        scheduled_for: at,
        retry_of: None,
    };
    match shared.store.claim(new_run).await {
        Ok(Some(run)) => shared.enqueue(run),
        Ok(None) => tracing::debug!(connection = %connection.name, scheduled_for = %at,
            "tick already claimed"),
        Err(e) => tracing::error!(connection = %connection.name, scheduled_for = %at, error = %e,
            "could not claim a tick; it is not run"),
    }
}
