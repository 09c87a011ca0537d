//! Double schedules: a connection the config schedules that Airbyte also schedules itself
//! (basic or cron) is synced twice. They are looked for at daemon start, on each reload and
//! every few minutes while it runs (one task per instance, apart from the engine, so a slow
//! Airbyte delays no sync), and by `cronbyte check --online`. Each is a warning naming the
//! connection and both schedules, and `cronbyte_connection_scheduled_twice{connection}` is 1
//! until it is fixed (then 0), so an alert can fire.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{TakeOverError, airbyte_schedules, scheduled_by};
use crate::airbyte::{AirbyteSchedule, Client};
use crate::config::{AirbyteSettings, Config, ConnectionSettings, share};
use crate::metrics::Metrics;

/// How often the daemon looks again.
pub const INTERVAL: Duration = Duration::from_secs(5 * 60);

/// A connection the config schedules: its settings, shared with the engine rather than
/// copied, since the daemon keeps the list of every instance between looks.
#[derive(Clone, Debug)]
pub struct Scheduled(Arc<ConnectionSettings>);

impl Scheduled {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn connection_id(&self) -> &str {
        &self.0.connection_id
    }

    /// How the config schedules it, in words.
    fn by_cronbyte(&self) -> String {
        scheduled_by(&self.0).unwrap_or_default()
    }
}

/// A connection synced on two schedules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledTwice {
    pub instance: String,
    pub name: String,
    pub connection_id: String,
    pub by_cronbyte: String,
    pub by_airbyte: AirbyteSchedule,
}

impl fmt::Display for ScheduledTwice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection {:?} ({}) on Airbyte instance {:?} is scheduled twice: by cronbyte \
             ({}) and by Airbyte itself ({}); `cronbyte import --take-over` sets it to manual \
             in Airbyte",
            self.name, self.connection_id, self.instance, self.by_cronbyte, self.by_airbyte
        )
    }
}

/// The connections of `instance` that the config schedules.
pub fn scheduled_on(connections: &[Arc<ConnectionSettings>], instance: &str) -> Vec<Scheduled> {
    connections
        .iter()
        .filter(|c| c.instance == instance && scheduled_by(c).is_some())
        .map(|c| Scheduled(Arc::clone(c)))
        .collect()
}

/// The connections of `scheduled` that Airbyte also syncs on a schedule of its own. An
/// inactive connection is not synced by Airbyte, whatever its schedule.
pub async fn scheduled_twice(
    instance: &str,
    settings: &AirbyteSettings,
    client: &Client,
    scheduled: &[Scheduled],
) -> Result<Vec<ScheduledTwice>, TakeOverError> {
    if scheduled.is_empty() {
        return Ok(Vec::new());
    }
    let listed = airbyte_schedules(instance, settings, client, false).await?;
    let by_id: HashMap<&str, &crate::airbyte::ConnectionSchedule> = listed
        .iter()
        .map(|c| (c.connection_id.as_str(), c))
        .collect();
    Ok(scheduled
        .iter()
        .filter_map(|ours| {
            // A declared connection not resolved yet is found by its name, when unique.
            let theirs = if ours.connection_id().is_empty() {
                let mut named = listed.iter().filter(|c| c.name == ours.name());
                match (named.next(), named.next()) {
                    (Some(one), None) => one,
                    _ => return None,
                }
            } else {
                by_id.get(ours.connection_id())?
            };
            let schedule = theirs.schedule.as_ref().ok()?;
            (theirs.is_active() && schedule.is_scheduled()).then(|| ScheduledTwice {
                instance: instance.to_owned(),
                name: ours.name().to_owned(),
                connection_id: theirs.connection_id.clone(),
                by_cronbyte: ours.by_cronbyte(),
                by_airbyte: schedule.clone(),
            })
        })
        .collect())
}

/// Every instance of `config` looked at together: the double schedules of each, or why it
/// could not be looked at. For `cronbyte check --online`.
pub async fn check_all(
    config: &Config,
) -> Vec<(String, Result<Vec<ScheduledTwice>, TakeOverError>)> {
    let connections = share(config.connections.clone());
    let connections = &connections;
    let checks = config.instances.iter().map(|(name, settings)| async move {
        let result = match super::client_for(name, settings) {
            Ok(client) => {
                scheduled_twice(name, settings, &client, &scheduled_on(connections, name)).await
            }
            Err(e) => Err(e),
        };
        (name.clone(), result)
    });
    futures::future::join_all(checks).await
}

/// The daemon's side: a task per instance, and a way to tell them the config changed.
pub struct Watcher {
    senders: BTreeMap<String, watch::Sender<Arc<Vec<Scheduled>>>>,
}

impl Watcher {
    /// Starts a task per instance that checks at once, then every `interval` and whenever
    /// [`Watcher::reconfigure`] is called, until `shutdown`.
    pub fn start(
        config: &Config,
        connections: &[Arc<ConnectionSettings>],
        clients: &BTreeMap<String, Client>,
        metrics: Arc<Metrics>,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let mut senders = BTreeMap::new();
        for (name, client) in clients {
            let Some(settings) = config.instances.get(name) else {
                continue;
            };
            let (sender, receiver) = watch::channel(Arc::new(scheduled_on(connections, name)));
            senders.insert(name.clone(), sender);
            tokio::spawn(watch_instance(
                Instance {
                    name: name.clone(),
                    settings: settings.clone(),
                    client: client.clone(),
                },
                receiver,
                metrics.clone(),
                interval,
                shutdown.clone(),
            ));
        }
        Arc::new(Self { senders })
    }

    /// The config changed: each instance's task checks the new one now.
    pub fn reconfigure(&self, connections: &[Arc<ConnectionSettings>]) {
        for (name, sender) in &self.senders {
            sender.send_replace(Arc::new(scheduled_on(connections, name)));
        }
    }
}

struct Instance {
    name: String,
    settings: AirbyteSettings,
    client: Client,
}

async fn watch_instance(
    instance: Instance,
    mut config: watch::Receiver<Arc<Vec<Scheduled>>>,
    metrics: Arc<Metrics>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What was warned about, so a standing double schedule is warned about once per
    // config rather than every few minutes; the gauge keeps saying it.
    let mut warned: HashSet<(String, AirbyteSchedule)> = HashSet::new();
    // Connections whose gauge is 1.
    let mut flagged: HashSet<String> = HashSet::new();
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
            changed = config.changed() => {
                if changed.is_err() {
                    return;
                }
                warned.clear();
            }
        }
        let scheduled = config.borrow_and_update().clone();
        let found = tokio::select! {
            () = shutdown.cancelled() => return,
            found = scheduled_twice(&instance.name, &instance.settings, &instance.client, &scheduled) => found,
        };
        // The listing of every connection of the instance is freed by now.
        crate::allocator::give_back();
        let twice = match found {
            Ok(twice) => {
                if failing {
                    tracing::info!(airbyte_instance = %instance.name,
                        "looking for connections Airbyte schedules itself works again");
                    failing = false;
                }
                twice
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(airbyte_instance = %instance.name, %error,
                        "could not look for connections Airbyte schedules itself; trying again later");
                    failing = true;
                }
                continue;
            }
        };
        let now: HashSet<String> = twice.iter().map(|t| t.name.clone()).collect();
        for double in &twice {
            if warned.insert((double.name.clone(), double.by_airbyte.clone())) {
                tracing::warn!(airbyte_instance = %instance.name, connection = %double.name,
                    cronbyte = %double.by_cronbyte, airbyte = %double.by_airbyte, "{double}");
            }
            metrics.set_scheduled_twice(&double.name, true);
        }
        for fixed in flagged.difference(&now) {
            tracing::info!(airbyte_instance = %instance.name, connection = %fixed,
                "connection is no longer scheduled twice");
            metrics.set_scheduled_twice(fixed, false);
        }
        warned.retain(|(name, _)| now.contains(name));
        flagged = now;
    }
}
