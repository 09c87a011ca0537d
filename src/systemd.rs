//! The systemd notify protocol: READY=1 once the store is open and the schedule
//! loaded, WATCHDOG=1 while the engine's loops are alive, STOPPING=1 at shutdown.
//! Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;

pub fn ready() {
    notify(&[NotifyState::Ready]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// Pings systemd's watchdog at half its interval, but only while the schedule
/// loop is alive: a stuck engine stops the pings and systemd restarts it.
pub async fn watchdog(engine: Engine, shutdown: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled().filter(|i| !i.is_zero()) else {
        return;
    };
    let period = interval / 2;
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if engine.schedule_alive(period * 2) {
            notify(&[NotifyState::Watchdog]);
        } else {
            tracing::error!(
                "the schedule loop has not turned for a watchdog interval; not pinging systemd"
            );
        }
    }
}
