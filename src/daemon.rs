//! The daemon as one buildable value: it opens the store, binds its listener
//! (port 0 in tests), and runs the engine and the HTTP endpoint until the
//! shutdown token is cancelled. `cronbyte run`, the demo and the tests all start
//! this same type.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::airbyte::{Client, ClientSettings, RetryPolicy};
use crate::config::{AirbyteSettings, Config};
use crate::engine::{Clock, EngineError, EngineParts};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::reload::Reloader;
use crate::replica::{Election, Identity, Role, TermEnd};
use crate::server::{self, AppState};
use crate::store::{Store, StoreError};
use crate::systemd;

/// How often Airbyte's health endpoint is asked, for `cronbyte_airbyte_up`.
const HEALTH_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("could not listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not set up the Airbyte client: {0}")]
    Client(#[from] crate::airbyte::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
}

/// A daemon ready to run: store open, listener bound.
pub struct Daemon {
    config: Config,
    listener: TcpListener,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// A client per Airbyte instance, by name.
    clients: BTreeMap<String, Client>,
    clock: Clock,
    config_path: Option<PathBuf>,
    /// How often Airbyte is asked which configured connections it schedules itself.
    double_schedule_interval: Duration,
}

/// The client settings of one Airbyte instance.
pub fn client_settings(a: &AirbyteSettings) -> ClientSettings {
    ClientSettings {
        base_url: a.base_url.clone(),
        api: a.api,
        auth: a.auth.clone(),
        request_timeout: a.request_timeout,
        connect_timeout: a.connect_timeout,
        retry: RetryPolicy {
            max_retries: a.retry.max_retries,
            initial_backoff: a.retry.initial_backoff,
            max_backoff: a.retry.max_backoff,
            max_elapsed: a.retry.max_elapsed,
        },
    }
}

impl Daemon {
    /// Opens the store (applying migrations) and binds `[server].listen`.
    pub async fn build(mut config: Config) -> Result<Self, DaemonError> {
        let addr = config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Listen { addr, source })?;
        let store = crate::store::open(&config.store).await?;
        let metrics = Arc::new(Metrics::new(config.metrics.success_ratio_window));
        let mut clients = BTreeMap::new();
        for (name, settings) in &config.instances {
            let client = Client::observed(client_settings(settings), name, metrics.clone())?;
            clients.insert(name.clone(), client);
        }
        // Declared connections are found by name; no request when none is declared.
        for (name, client) in &clients {
            crate::pipeline::resolve_connection_ids(client, name, &mut config).await?;
        }
        Ok(Self {
            config,
            listener,
            store,
            metrics,
            clients,
            clock: Clock::System,
            config_path: None,
            double_schedule_interval: crate::takeover::watch::INTERVAL,
        })
    }

    /// The file the config came from, read again on reload.
    pub fn with_config_path(mut self, path: PathBuf) -> Self {
        self.config_path = Some(path);
        self
    }

    /// Runs the engine on `clock` instead of the wall clock (tests of whole days).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Looks for connections Airbyte also schedules itself this often, instead of every
    /// five minutes (tests); it also looks at start and on each reload.
    pub fn with_double_schedule_interval(mut self, interval: Duration) -> Self {
        self.double_schedule_interval = interval;
        self
    }

    /// Where `/metrics` and `/healthz` answer.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.config.server.listen)
    }

    /// Runs until `shutdown` is cancelled, then stops firing, lets in-flight
    /// calls end within the grace period and returns. Airbyte jobs go on; the
    /// next start (or the next active replica) takes them up from the history.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DaemonError> {
        let Daemon {
            config,
            listener,
            store,
            metrics,
            clients,
            clock,
            config_path,
            double_schedule_interval,
        } = self;
        // The instance label of each connection's series comes from the config, and
        // must be known before the history seeds them; reloads update it in the engine.
        // One copy of the connections' settings, shared by the engine, the role and
        // the watcher; `config`'s own goes once they are started.
        let shared = crate::config::share(config.connections.clone());
        metrics.set_connections(&shared);
        let election = Arc::new(Election::new(
            store.clone(),
            Identity::new(),
            config.store.lease,
            config.store.lease_renewal,
            metrics.clone(),
            crate::reload::settings_hash(&config),
        ));
        if election.is_shared() {
            tracing::info!(replica = %election.identity().id,
                "the store may be shared: this replica is a standby until it takes the lease");
        }

        let term = Term {
            store: store.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            window: config.metrics.success_ratio_window,
            retention: config.store.retention,
            started: clock.now(),
            lease: config.store.lease,
            renewal: config.store.lease_renewal,
        };
        if !election.is_shared() {
            // Alone on its store, the process is active from the start: its series
            // are seeded before its engine counts anything.
            term.seed_metrics().await?;
        }
        let notifier = Notifier::start(config.notify.clone(), shutdown.clone());
        let role = Arc::new(
            Role::start(
                EngineParts {
                    store: store.clone(),
                    instances: clients
                        .iter()
                        .map(|(name, client)| {
                            let airbyte: Arc<dyn crate::engine::Airbyte> = Arc::new(client.clone());
                            (name.clone(), airbyte)
                        })
                        .collect(),
                    metrics: metrics.clone(),
                    workers: config.workers.clone(),
                    groups: config.groups.clone(),
                    connections: shared.clone(),
                    clock: clock.clone(),
                    notifier: notifier.clone(),
                    lease: election.lease(),
                    missed_since: None,
                },
                shutdown.child_token(),
            )
            .await?,
        );
        let airbyte_up = Arc::new(AirbyteUp::new(clients.keys()));
        let health = tokio::spawn(watch_health(
            clients.clone(),
            metrics.clone(),
            airbyte_up.clone(),
            shutdown.clone(),
        ));
        // In tasks of their own: an Airbyte slow to list its connections delays no sync.
        let double_schedules = crate::takeover::watch::Watcher::start(
            &config,
            &shared,
            &clients,
            metrics.clone(),
            double_schedule_interval,
            shutdown.clone(),
        );
        let reloader = Arc::new(
            Reloader::new(
                config_path,
                role.clone(),
                metrics.clone(),
                notifier,
                clients,
                &config,
                &shared,
            )
            .watching(double_schedules)
            .announcing(election.clone()),
        );
        let terms = tokio::spawn(serve_terms(
            election.clone(),
            role.clone(),
            term,
            shutdown.clone(),
        ));
        // The engine holds the connections and the reloader their fingerprints:
        // nothing else needs this copy, which is megabytes at 10,000 connections.
        let token = config.server.token.clone();
        let connections = config.connections.len();
        drop(config);
        drop(shared);
        // Loading and checking the file freed far more than the engine keeps.
        crate::allocator::give_back();
        let hangups = tokio::spawn(reload_on_hangup(reloader.clone(), shutdown.clone()));
        let watchdog = tokio::spawn(systemd::watchdog(role.clone(), shutdown.clone()));
        tracing::info!(listen = %listener.local_addr().map_err(DaemonError::Serve)?,
            connections, "cronbyte is running");
        systemd::ready();

        let app = server::router(AppState {
            metrics,
            role,
            store: store.clone(),
            reloader,
            token,
            airbyte_up,
            replica: election.identity().id.clone(),
            election: election.clone(),
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        systemd::stopping();
        // The active term ends first (its engine stopped, its lease released), so a
        // standby takes over while this process is still closing.
        let _ = terms.await;
        for task in [health, hangups, watchdog] {
            task.abort();
        }
        store.close().await;
        tracing::info!("cronbyte stopped");
        served.map_err(DaemonError::Serve)
    }
}

/// What a term as the active replica starts beside the engine, and from what.
struct Term {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    clock: Clock,
    /// `[metrics].success_ratio_window`, to seed the ratios from the history.
    window: Duration,
    retention: Option<Duration>,
    /// When this process started, and its lease settings: a term's engine counts a
    /// never-run connection's ticks as missed from the later of the start and the
    /// longest a fail-over takes.
    started: chrono::DateTime<Utc>,
    lease: Duration,
    renewal: Duration,
}

impl Term {
    /// Seeds the run series from the history: only the active replica exports
    /// them, so a sum over replicas counts each run once.
    async fn seed_metrics(&self) -> Result<(), StoreError> {
        let window = chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::days(1));
        let totals = self.store.totals().await?;
        let recent = self.store.ended_since(Utc::now() - window).await?;
        let marks = self.store.marks().await?;
        self.metrics.step_down();
        self.metrics.seed(&totals, &recent);
        self.metrics.seed_marks(&marks);
        Ok(())
    }
}

/// The replica's life: a standby until it takes the lease, then the active
/// replica until it loses the lease (and a standby again) or shutdown comes, when
/// the engine stops and the lease is released at once for a standby to take.
async fn serve_terms(
    election: Arc<Election>,
    role: Arc<Role>,
    term: Term,
    shutdown: CancellationToken,
) {
    while let Some(epoch) = election.wait_for_lead(&shutdown).await {
        let until = shutdown.child_token();
        // A process alone on its store started active; a replica starts its engine
        // now, taking up every open run.
        let started = if role.engine().is_active() {
            Ok(())
        } else {
            match term.seed_metrics().await {
                // Ticks of connections that never ran, fallen while no replica was
                // active (since this process started, at most a lease and a renewal
                // interval ago), follow the misfire policy like the others'.
                Ok(()) => {
                    let gap = chrono::Duration::from_std(term.lease + term.renewal)
                        .unwrap_or(chrono::Duration::zero());
                    let since = term.started.max(term.clock.now() - gap);
                    role.swap(until.clone(), Some(since)).await.map(drop)
                }
                Err(e) => Err(EngineError::from(e)),
            }
        };
        if let Err(error) = started {
            tracing::error!(%error, "could not start as the active replica; letting the lease go");
            election.release(epoch).await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        }
        // Off the engine's path: batches of old runs deleted between its writes.
        let pruner = term.retention.map(|retention| {
            tokio::spawn(crate::retention::prune_periodically(
                term.store.clone(),
                retention,
                term.clock.clone(),
                term.metrics.clone(),
                crate::retention::Pacing::default(),
                until.clone(),
            ))
        });
        let end = election.hold(epoch, &shutdown).await;
        until.cancel();
        let engine = role.engine();
        engine.stopped().await;
        // The pruner ends its batch (one short transaction): waited for, so the
        // store is not closed under it.
        if let Some(pruner) = pruner {
            let _ = pruner.await;
        }
        election.release(epoch).await;
        term.metrics.step_down();
        if end == TermEnd::Shutdown {
            break;
        }
        // A standby again: reads are answered from the store until the next term.
        if let Err(error) = role.swap(shutdown.child_token(), None).await {
            tracing::error!(%error, "could not start the standby's engine");
        }
    }
    election.leave().await;
}

/// Reloads the config on each SIGHUP until shutdown.
async fn reload_on_hangup(reloader: Arc<Reloader>, shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload through the control API");
            return;
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = hangups.recv() => {
                    if received.is_none() {
                        return;
                    }
                    // The outcome is logged and counted by the reloader itself.
                    let _ = reloader.reload().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (reloader, shutdown);
    }
}

/// Whether each Airbyte instance answered its last health check, for `/readyz`.
pub struct AirbyteUp(BTreeMap<String, AtomicBool>);

impl AirbyteUp {
    fn new<'a>(instances: impl Iterator<Item = &'a String>) -> Self {
        Self(
            instances
                .map(|name| (name.clone(), AtomicBool::new(false)))
                .collect(),
        )
    }

    /// Every instance with whether its last health check passed, by name.
    pub fn instances(&self) -> Vec<(&str, bool)> {
        self.0
            .iter()
            .map(|(name, up)| (name.as_str(), up.load(Ordering::Relaxed)))
            .collect()
    }

    /// The instances that did not answer their last health check, by name.
    pub fn down(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(_, up)| !up.load(Ordering::Relaxed))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// Asks every instance's health endpoint now and then, all at once, for
/// `cronbyte_airbyte_up{airbyte_instance}`: one slow instance delays no other's answer.
async fn watch_health(
    clients: BTreeMap<String, Client>,
    metrics: Arc<Metrics>,
    up: Arc<AirbyteUp>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(HEALTH_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let checks = clients
            .iter()
            .map(|(name, client)| async move { (name, matches!(client.health().await, Ok(true))) });
        for (name, answered) in futures::future::join_all(checks).await {
            metrics.set_airbyte_up(name, answered);
            if let Some(flag) = up.0.get(name) {
                flag.store(answered, Ordering::Relaxed);
            }
        }
    }
}
