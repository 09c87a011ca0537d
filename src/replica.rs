//! Which of several cronbyte processes sharing one store is the active replica:
//! the one that schedules, triggers, polls and cancels. The others are standbys
//! that serve reads and take over when it goes away.
//!
//! Leadership is a lease row in the store (holder, epoch, expiry on the
//! database's clock), not a protocol of our own: a standby takes it once it has
//! expired, which bumps the epoch, and from then on the store refuses every write
//! of the older epoch (fencing, see the store's `take_lease`). Airbyte cannot be
//! fenced that way, so before each side effect (a sync, a cancel) the engine asks
//! [`Lease::is_held`], which trusts the lease only until its last renewal's send
//! instant plus the lease, less a margin, on both the monotonic and the wall
//! clock: a replica frozen by SIGSTOP or a paused VM wakes up past that instant
//! and does nothing more.
//!
//! What is left is a request already on the wire when the lease ran out: it left
//! at least the margin before any standby could take over, and if Airbyte acts on
//! it late, the new active replica finds the job it started through the same
//! search that covers a request whose answer was lost (every run it takes up was
//! claimed before its term began, so it looks in Airbyte before asking for a
//! sync), and a second sync request for a connection with a running job gets 409.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{GroupSettings, SharedConnections};
use crate::engine::{Engine, EngineError, EngineParts};
use crate::metrics::Metrics;
use crate::store::{ReplicaRecord, ReplicaSeen, Store};

/// The share of the lease kept back as a margin: a replica stops acting this long
/// before the database would let another replica take over.
const MARGIN_DIVISOR: u32 = 5;

/// This process as the other replicas see it: its host name and a random part,
/// so two processes on one host (or a restarted one) never share an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub host: String,
}

impl Identity {
    pub fn new() -> Self {
        let host = hostname();
        let id = format!("{host}-{:08x}", rand::random::<u32>());
        Self { id, host }
    }
}

impl Default for Identity {
    fn default() -> Self {
        Self::new()
    }
}

/// The host name, from the kernel (no crate needed on Linux), or `$HOSTNAME`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Whether this replica may act on Airbyte now. Cheap to clone; every clone sees
/// the same lease.
#[derive(Clone, Debug)]
pub struct Lease(Arc<Mutex<Standing>>);

#[derive(Clone, Debug)]
enum Standing {
    /// The store is not shared: this process is the only one, and always active.
    Sole,
    /// This replica holds the lease until these instants (the monotonic clock and
    /// the wall clock; the first to pass ends it).
    Held {
        epoch: i64,
        until: Instant,
        until_wall: SystemTime,
    },
    /// Another replica is active (named when known), or none is.
    Standby { active: Option<String> },
}

impl Lease {
    /// The lease of a process alone on its store.
    pub fn sole() -> Self {
        Self(Arc::new(Mutex::new(Standing::Sole)))
    }

    /// A replica that does not hold the lease (yet).
    pub fn standby() -> Self {
        Self(Arc::new(Mutex::new(Standing::Standby { active: None })))
    }

    fn standing(&self) -> std::sync::MutexGuard<'_, Standing> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this replica holds the lease at this instant: asked right before
    /// every Airbyte side effect.
    pub fn is_held(&self) -> bool {
        match &*self.standing() {
            Standing::Sole => true,
            Standing::Held {
                until, until_wall, ..
            } => Instant::now() < *until && SystemTime::now() < *until_wall,
            Standing::Standby { .. } => false,
        }
    }

    /// The epoch held, if any (not for a process alone on its store).
    pub fn epoch(&self) -> Option<i64> {
        match &*self.standing() {
            Standing::Held { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }

    /// The active replica as this one last saw it, when this one is a standby.
    pub fn active_elsewhere(&self) -> Option<String> {
        match &*self.standing() {
            Standing::Standby { active } => active.clone(),
            _ => None,
        }
    }

    /// The lease was taken or renewed by a request sent at `sent` (and `sent_wall`):
    /// it is trusted until then plus the lease, less the margin.
    pub(crate) fn held(&self, epoch: i64, sent: Instant, sent_wall: SystemTime, lease: Duration) {
        let trusted = lease - lease / MARGIN_DIVISOR;
        *self.standing() = Standing::Held {
            epoch,
            until: sent + trusted,
            until_wall: sent_wall + trusted,
        };
    }

    /// This replica does not (or no longer) hold the lease.
    pub(crate) fn lost(&self, active: Option<String>) {
        *self.standing() = Standing::Standby { active };
    }
}

/// How a term as the active replica ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TermEnd {
    /// Shutdown was asked for: the lease is to be released at once.
    Shutdown,
    /// The lease was lost (taken over, or not renewed in time).
    Lost,
}

/// This replica's part in the election: it takes the lease when it can, keeps it
/// renewed while active, and says it is alive (with a hash of its connection
/// settings) at every renewal interval in either role.
pub struct Election {
    store: Arc<dyn Store>,
    me: Identity,
    lease: Lease,
    lease_for: Duration,
    renew_every: Duration,
    metrics: Arc<Metrics>,
    settings_hash: Mutex<String>,
    /// The settings hashes last warned about, so a difference is logged once.
    warned: Mutex<Vec<String>>,
    /// The replicas seen alive at the last look, for the status page.
    seen: Mutex<Vec<ReplicaSeen>>,
}

impl Election {
    pub fn new(
        store: Arc<dyn Store>,
        me: Identity,
        lease_for: Duration,
        renew_every: Duration,
        metrics: Arc<Metrics>,
        settings_hash: String,
    ) -> Self {
        let lease = if store.is_shared() {
            Lease::standby()
        } else {
            Lease::sole()
        };
        Self {
            store,
            me,
            lease,
            lease_for,
            renew_every,
            metrics,
            settings_hash: Mutex::new(settings_hash),
            warned: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
        }
    }

    /// The lease the engine asks before every Airbyte side effect.
    pub fn lease(&self) -> Lease {
        self.lease.clone()
    }

    pub fn identity(&self) -> &Identity {
        &self.me
    }

    /// Whether other replicas may share the store (else this one is always active).
    pub fn is_shared(&self) -> bool {
        self.store.is_shared()
    }

    /// The replicas sharing the store as last seen (every renewal interval), the one
    /// active marked; empty when the store is not shared.
    pub fn replicas(&self) -> Vec<ReplicaSeen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The connection settings changed (a reload): the other replicas are told at
    /// the next renewal interval.
    pub fn set_settings_hash(&self, hash: String) {
        *self.settings_hash.lock().unwrap_or_else(|p| p.into_inner()) = hash;
    }

    /// Waits as a standby until this replica takes the lease, trying once per
    /// renewal interval; `None` when shutdown comes first. A process alone on its
    /// store is active at once.
    pub async fn wait_for_lead(&self, shutdown: &CancellationToken) -> Option<i64> {
        if !self.store.is_shared() {
            self.metrics.set_leader(true);
            self.metrics.set_replicas(1, false);
            return Some(0);
        }
        loop {
            let (sent, sent_wall) = (Instant::now(), SystemTime::now());
            let taken = tokio::time::timeout(
                self.renew_every,
                self.store.take_lease(&self.me.id, self.lease_for),
            )
            .await;
            match taken {
                Ok(Ok(Some(epoch))) => {
                    self.lease.held(epoch, sent, sent_wall, self.lease_for);
                    self.metrics.set_leader(true);
                    tracing::info!(replica = %self.me.id, epoch, "this replica is now the active one");
                    self.look_around().await;
                    return Some(epoch);
                }
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "could not ask the store for the lease; trying again")
                }
                Err(_) => tracing::warn!(
                    "the store did not answer the request for the lease in time; trying again"
                ),
            }
            self.look_around().await;
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(self.renew_every) => {}
            }
        }
    }

    /// Keeps the lease renewed until shutdown or until it is lost: taken over, or
    /// not renewed before [`Lease::is_held`] stops trusting it (the store did not
    /// answer, or the process was frozen).
    pub async fn hold(&self, epoch: i64, shutdown: &CancellationToken) -> TermEnd {
        if !self.store.is_shared() {
            shutdown.cancelled().await;
            return TermEnd::Shutdown;
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return TermEnd::Shutdown,
                () = tokio::time::sleep(self.renew_every) => {}
            }
            if !self.lease.is_held() {
                tracing::error!(replica = %self.me.id, epoch,
                    "the lease ran out before it was renewed (a frozen process, or a store that did not answer); stepping down");
                return TermEnd::Lost;
            }
            let (sent, sent_wall) = (Instant::now(), SystemTime::now());
            let renewed = tokio::time::timeout(
                self.renew_every,
                self.store.renew_lease(&self.me.id, epoch, self.lease_for),
            )
            .await;
            match renewed {
                Ok(Ok(true)) => self.lease.held(epoch, sent, sent_wall, self.lease_for),
                Ok(Ok(false)) => {
                    tracing::error!(replica = %self.me.id, epoch,
                        "another replica took the lease over; stepping down");
                    return TermEnd::Lost;
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "could not renew the lease; trying again")
                }
                Err(_) => tracing::warn!("the store did not answer the lease renewal in time"),
            }
            self.look_around().await;
        }
    }

    /// Ends a term: the store refuses this process's writes from now on and, on a
    /// clean stop, the lease expires at once for a standby to take.
    pub async fn release(&self, epoch: i64) {
        self.lease.lost(None);
        self.metrics.set_leader(false);
        if !self.store.is_shared() {
            return;
        }
        match tokio::time::timeout(
            self.renew_every,
            self.store.release_lease(&self.me.id, epoch),
        )
        .await
        {
            Ok(Ok(())) => tracing::info!(replica = %self.me.id, epoch, "lease released"),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not release the lease; it expires on its own")
            }
            Err(_) => {
                tracing::warn!("the store did not answer the lease release; it expires on its own")
            }
        }
    }

    /// Leaves the replicas seen alive, at a clean stop.
    pub async fn leave(&self) {
        if self.store.is_shared() {
            let _ = tokio::time::timeout(self.renew_every, self.store.leave(&self.me.id)).await;
        }
    }

    /// Says this replica is alive, and reads who else is: counts them, notes the
    /// active one (named in a standby's answers) and warns when their connection
    /// settings differ.
    async fn look_around(&self) {
        let record = ReplicaRecord {
            id: self.me.id.clone(),
            host: self.me.host.clone(),
            settings_hash: self
                .settings_hash
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        };
        let seen = match tokio::time::timeout(
            self.renew_every,
            self.store.replicas(&record, self.lease_for),
        )
        .await
        {
            Ok(Ok(seen)) => seen,
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not tell the other replicas this one is alive");
                return;
            }
            Err(_) => return,
        };
        if !self.lease.is_held() {
            let active = seen.iter().find(|r| r.active).map(|r| r.id.clone());
            self.lease.lost(active);
        }
        let mut hashes: Vec<String> = seen.iter().map(|r| r.settings_hash.clone()).collect();
        hashes.sort();
        hashes.dedup();
        let differ = hashes.len() > 1;
        self.metrics.set_replicas(seen.len(), differ);
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if differ && *warned != hashes {
            let replicas: Vec<String> = seen
                .iter()
                .map(|r| format!("{} ({})", r.id, r.settings_hash))
                .collect();
            tracing::warn!(replicas = %replicas.join(", "),
                "the replicas do not have the same connection settings: a fail-over would change what is scheduled");
        }
        *warned = if differ { hashes } else { Vec::new() };
        drop(warned);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
    }
}

/// The engine of this replica's role of the moment: a standby's, which answers
/// reads, or the active replica's, which schedules and follows runs. It is
/// swapped at each change of role; the control API, the reloader and the
/// watchdog ask here for the engine of the moment and keep no other.
pub struct Role {
    /// What each new engine is built from, with the connections of the last reload.
    parts: Mutex<EngineParts>,
    engine: std::sync::RwLock<Engine>,
}

impl Role {
    /// Starts the first engine: the active one for a process alone on its store,
    /// else a standby's until the lease is taken.
    pub async fn start(
        parts: EngineParts,
        shutdown: CancellationToken,
    ) -> Result<Self, EngineError> {
        let engine = Engine::start(parts.clone(), shutdown).await?;
        Ok(Self {
            parts: Mutex::new(parts),
            engine: std::sync::RwLock::new(engine),
        })
    }

    /// The engine of the moment.
    pub fn engine(&self) -> Engine {
        self.engine
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn parts(&self) -> EngineParts {
        self.parts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// New connections and groups: applied to the engine of the moment, and kept
    /// for the engines of later terms.
    pub fn reload(&self, connections: SharedConnections, groups: Vec<GroupSettings>) {
        {
            let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
            parts.connections = connections.clone();
            parts.groups = groups.clone();
        }
        self.engine().reload(connections, groups);
    }

    /// Swaps in an engine for the lease as it stands now, on `until`: the active
    /// one's right after the lease was taken (it takes up every open run and
    /// applies the misfire policy to ticks that fell while no replica was active),
    /// a standby's after it was lost. For a connection without any tick in the
    /// history, ticks since `missed_since` count as missed. Returns the engine it
    /// replaced.
    pub async fn swap(
        &self,
        until: CancellationToken,
        missed_since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Engine, EngineError> {
        let parts = EngineParts {
            missed_since,
            ..self.parts()
        };
        let engine = Engine::start(parts, until).await?;
        let mut current = self.engine.write().unwrap_or_else(|p| p.into_inner());
        Ok(std::mem::replace(&mut *current, engine))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_held_lease_is_trusted_until_its_renewal_plus_the_lease_less_the_margin() {
        let lease = Lease::standby();
        assert!(!lease.is_held());
        lease.held(
            3,
            Instant::now(),
            SystemTime::now(),
            Duration::from_secs(15),
        );
        assert!(lease.is_held());
        assert_eq!(lease.epoch(), Some(3));
        tokio::time::advance(Duration::from_millis(11_900)).await;
        assert!(lease.is_held());
        // 15 s less a fifth: a replica stops acting 3 s before another may take over.
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(!lease.is_held());
    }

    #[test]
    fn a_lease_whose_wall_clock_instant_passed_is_not_held_though_the_monotonic_one_did_not() {
        // A paused VM's monotonic clock may not count the pause; its wall clock,
        // set right on waking, does.
        let lease = Lease::standby();
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        lease.held(1, Instant::now(), an_hour_ago, Duration::from_secs(15));
        assert!(!lease.is_held());
    }

    #[test]
    fn a_process_alone_on_its_store_always_holds_the_lease_and_a_lost_one_names_the_holder() {
        assert!(Lease::sole().is_held());
        let lease = Lease::standby();
        lease.held(
            1,
            Instant::now(),
            SystemTime::now(),
            Duration::from_secs(15),
        );
        lease.lost(Some("node-2-ab12cd34".into()));
        assert!(!lease.is_held());
        assert_eq!(lease.active_elsewhere().as_deref(), Some("node-2-ab12cd34"));
    }

    #[test]
    fn two_identities_on_one_host_differ() {
        let (a, b) = (Identity::new(), Identity::new());
        assert_eq!(a.host, b.host);
        assert_ne!(a.id, b.id);
        assert!(a.id.starts_with(&a.host));
    }
}
