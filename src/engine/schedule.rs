//! When runs are due: every enabled connection's cron rule, in its own time zone,
//! in one timer loop over a heap of next fire instants. A due instant is claimed
//! in the history before anything is sent, so a tick is never triggered twice.
//!
//! Fire instants come from the cron rules (croner, which is right across DST);
//! the loop sleeps until the earliest, but never longer than a second, so a
//! suspend or a wall-clock jump is noticed and handled by the misfire policy,
//! and so is a connection paused or resumed from outside.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::owed::Owed;
use super::{ByName, Shared};
use crate::config::{ConnectionSettings, Misfire};
use crate::run::{NewRun, Run, Trigger};

/// The longest the loop sleeps before looking at the clock again.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// How often the set of paused connections is read from the store.
const PAUSE_REFRESH: Duration = Duration::from_secs(2);

/// A due instant found later than this is a misfire (the process was suspended,
/// the clock jumped, the machine was too busy), handled by the misfire policy.
const MISFIRE_TOLERANCE: chrono::Duration = chrono::Duration::seconds(30);

/// Fire instants waiting, earliest first, by connection name.
type Heap = BinaryHeap<Reverse<(DateTime<Utc>, ByName)>>;

/// The next fire instant after `after` of every enabled connection with a rule.
fn build_heap(shared: &Shared, after: DateTime<Utc>) -> Heap {
    let catalog = shared.catalog();
    let mut heap = Heap::with_capacity(catalog.ordered.len());
    for connection in &catalog.ordered {
        if let Some(rule) = connection.cron.as_ref().filter(|_| connection.enabled) {
            if let Some(next) = rule.next_after(after) {
                shared.metrics.set_next_run(&connection.name, Some(next));
                let gap = rule.next_after(next).map(|n| n - next);
                let paused = shared.is_paused(&connection.name);
                shared
                    .metrics
                    .set_expected_interval(&connection.name, gap.filter(|_| !paused));
                heap.push(Reverse((next, ByName(Arc::clone(connection)))));
            } else {
                shared.metrics.set_next_run(&connection.name, None);
            }
        }
    }
    heap
}

pub(super) async fn run(shared: Arc<Shared>) {
    let started = shared.clock.now();
    for connection in shared.catalog().ordered.iter().filter(|c| c.cron.is_some()) {
        if shared.is_paused(&connection.name) {
            continue;
        }
        let last = shared
            .state(|s| s.last_tick(&connection.name))
            .or(shared.missed_since);
        if let Some(last) = last {
            catch_up(&shared, connection, last, started).await;
        }
    }
    let mut heap = build_heap(&shared, started);
    tracing::info!(scheduled = heap.len(), "schedule loaded");

    let mut pauses_read = tokio::time::Instant::now();
    loop {
        *shared.heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
        if pauses_read.elapsed() >= PAUSE_REFRESH {
            refresh_pauses(&shared).await;
            pauses_read = tokio::time::Instant::now();
        }
        let now = shared.clock.now();
        let due = heap.peek().map(|Reverse((at, _))| *at);
        if due.is_none_or(|due| due > now) {
            let wait = async {
                match due {
                    Some(due) => shared.clock.sleep_until(due, MAX_SLEEP).await,
                    None => tokio::time::sleep(MAX_SLEEP).await,
                }
            };
            tokio::select! {
                () = shared.shutdown.cancelled() => return,
                () = shared.reloaded.notified() => {
                    // From `now`, when nothing was due, not from the reload's own
                    // now: a tick that fell due while the reload was on its way is
                    // still in the new heap, and fires next.
                    heap = build_heap(&shared, now);
                    tracing::info!(scheduled = heap.len(), "schedule reloaded");
                }
                () = wait => {}
            }
            continue;
        }
        let catalog = shared.catalog();
        let mut fired = Vec::new();
        while let Some(Reverse((at, _))) = heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, waiting))) = heap.pop() else {
                break;
            };
            // A connection removed or disabled by a reload (which may have come in
            // the instant this tick fell due) stops here.
            let Some(connection) = catalog.get(waiting.name()).filter(|c| c.enabled).cloned()
            else {
                continue;
            };
            if let Some(rule) = &connection.cron {
                // From now, not from `at`: after a long sleep the ticks in between
                // are one misfire, not a burst of runs.
                let next = rule.next_after(at.max(now));
                shared.metrics.set_next_run(&connection.name, next);
                if let Some(next) = next {
                    heap.push(Reverse((next, ByName(Arc::clone(&connection)))));
                }
            }
            fired.push((at, connection));
        }
        let mut on_time = Vec::new();
        for (at, connection) in fired {
            if shared.is_paused(&connection.name) {
                continue;
            }
            if now - at > MISFIRE_TOLERANCE {
                catch_up(
                    &shared,
                    &connection,
                    at - chrono::Duration::milliseconds(1),
                    now,
                )
                .await;
            } else {
                on_time.push(tick(&connection, at, now));
            }
        }
        // Ticks due together are claimed in one transaction: with a thousand
        // connections on one rule, that is what keeps the last one's lag small.
        claim_all(&shared, on_time).await;
    }
}

impl Shared {
    /// Reads which connections are paused; a connection just resumed gets the
    /// misfire policy for the ticks that fell while it was paused.
    pub(super) async fn refresh_pauses(self: &Arc<Self>) {
        refresh_pauses(self).await;
    }
}

async fn refresh_pauses(shared: &Arc<Shared>) {
    let now_paused: HashSet<String> = match shared.store.paused().await {
        Ok(names) => names.into_iter().collect(),
        Err(e) => {
            shared.metrics.store_error();
            tracing::warn!(error = %e, "could not read which connections are paused");
            return;
        }
    };
    let (resumed, paused) = shared.state(|s| s.set_paused(now_paused));
    for name in paused {
        tracing::info!(connection = %name, "connection paused");
        // A paused connection is not expected to stay fresh.
        shared.metrics.set_expected_interval(&name, None);
    }
    let now = shared.clock.now();
    for name in resumed {
        tracing::info!(connection = %name, "connection resumed");
        let Some(connection) = shared.connection(&name) else {
            continue;
        };
        if let Some(rule) = &connection.cron
            && let Some(next) = rule.next_after(now)
        {
            shared
                .metrics
                .set_expected_interval(&name, rule.next_after(next).map(|n| n - next));
        }
        let last = shared.state(|s| s.last_tick(&name));
        if let Some(last) = last {
            catch_up(shared, &connection, last, now).await;
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
    let Some(rule) = connection.cron.as_ref().filter(|_| connection.enabled) else {
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
            claim_all(shared, vec![tick(connection, missed, now)]).await;
        }
        Misfire::Skip => tracing::info!(connection = %connection.name, newest_missed = %missed,
            "missed ticks skipped, as the misfire policy says"),
    }
}

/// The run of `connection`'s tick at `at`, claimed `now`.
fn tick(connection: &ConnectionSettings, at: DateTime<Utc>, now: DateTime<Utc>) -> NewRun {
    NewRun {
        connection: connection.name.clone(),
        connection_id: connection.connection_id.clone(),
        instance: connection.instance.clone(),
        trigger: Trigger::Schedule,
        scheduled_for: at,
        retry_of: None,
        claimed_at: now,
    }
}

/// Claims ticks in one transaction and queues the runs claimed.
async fn claim_all(shared: &Arc<Shared>, ticks: Vec<NewRun>) {
    if ticks.is_empty() {
        return;
    }
    let count = ticks.len();
    let ticks_copy = ticks.clone();
    match shared.store.claim_many(ticks).await {
        Ok(claimed) => {
            let claimed: Vec<Run> = claimed.into_iter().flatten().collect();
            if claimed.len() < count {
                tracing::debug!(already = count - claimed.len(), "ticks already claimed");
            }
            for run in claimed {
                shared.claimed(&run);
                shared.enqueue_jittered(run);
            }
        }
        // Kept, and claimed once the store works again: late, but not lost.
        Err(e) => shared.owe(Owed::Claims(ticks_copy), &e),
    }
}
