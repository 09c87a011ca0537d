//! The systemd notify protocol: READY=1 once the store is open and the schedule
//! loaded, WATCHDOG=1 while the engine's loops make progress, STOPPING=1 at shutdown.
//! Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::replica::Role;

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

/// Pings systemd's watchdog at half its interval, but only while both of the
/// engine's loops make progress ([`crate::engine::Engine::stuck_loop`], of the engine of the moment): a stuck schedule or
/// poll loop stops the pings and systemd restarts the daemon.
pub async fn watchdog(role: Arc<Role>, shutdown: CancellationToken) {
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
        match role.engine().stuck_loop(period * 2) {
            None => notify(&[NotifyState::Watchdog]),
            Some(stuck) => tracing::error!(
                loop_name = stuck,
                "an engine loop made no progress for a watchdog interval; not pinging systemd"
            ),
        }
    }
}
