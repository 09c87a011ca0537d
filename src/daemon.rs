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
use crate::engine::{Clock, Engine, EngineError, EngineParts};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::reload::Reloader;
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
    /// next start takes them up from the history.
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
        let window = chrono::Duration::from_std(config.metrics.success_ratio_window)
            .unwrap_or(chrono::Duration::days(1));
        // The instance label of each connection's series comes from the config, and
        // must be known before the history seeds them; reloads update it in the engine.
        metrics.set_connections(&config.connections);
        metrics.seed(
            &store.totals().await?,
            &store.ended_since(Utc::now() - window).await?,
        );
        metrics.seed_marks(&store.marks().await?);

        let notifier = Notifier::start(config.notify.clone(), shutdown.clone());
        let engine = Engine::start(
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
                connections: config.connections.clone(),
                clock: clock.clone(),
                notifier: notifier.clone(),
            },
            shutdown.clone(),
        )
        .await?;
        // Off the engine's path: batches of old runs deleted between its writes.
        let pruner = config.store.retention.map(|retention| {
            tokio::spawn(crate::retention::prune_periodically(
                store.clone(),
                retention,
                clock.clone(),
                metrics.clone(),
                crate::retention::Pacing::default(),
                shutdown.clone(),
            ))
        });
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
            &clients,
            metrics.clone(),
            double_schedule_interval,
            shutdown.clone(),
        );
        let reloader = Arc::new(
            Reloader::new(
                config_path,
                engine.clone(),
                metrics.clone(),
                notifier,
                clients,
                &config,
            )
            .watching(double_schedules),
        );
        // The engine holds the connections and the reloader their fingerprints:
        // nothing else needs this copy, which is megabytes at 10,000 connections.
        let token = config.server.token.clone();
        let connections = config.connections.len();
        drop(config);
        let hangups = tokio::spawn(reload_on_hangup(reloader.clone(), shutdown.clone()));
        let watchdog = tokio::spawn(systemd::watchdog(engine.clone(), shutdown.clone()));
        tracing::info!(listen = %listener.local_addr().map_err(DaemonError::Serve)?,
            connections, "cronbyte is running");
        systemd::ready();

        let app = server::router(AppState {
            metrics,
            engine: engine.clone(),
            store: store.clone(),
            reloader,
            token,
            airbyte_up,
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        systemd::stopping();
        engine.stopped().await;
        // The pruner ends its batch (one short transaction) on shutdown: waited
        // for, so the store is not closed under it.
        if let Some(pruner) = pruner {
            let _ = pruner.await;
        }
        for task in [health, hangups, watchdog] {
            task.abort();
        }
        store.close().await;
        tracing::info!("cronbyte stopped");
        served.map_err(DaemonError::Serve)
    }
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
