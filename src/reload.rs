//! Live reload: the config file is read again (on SIGHUP or `POST /api/v1/reload`)
//! and, if it validates, what can change live replaces what runs: connections,
//! groups, defaults and notice receivers. Every other section that changed is
//! named in the answer as needing a restart (or, for declarations, `cronbyte
//! apply`), so a reload never leaves an operator guessing what took effect.
//! An invalid file is rejected with the same messages as `cronbyte check`, and
//! the config in force stays.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::airbyte::{Auth, Client};
use crate::config::{self, ActorSettings, Config, ConnectionSettings, SharedConnections};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::replica::{Election, Role};

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReloadSummary {
    /// Connections that start firing.
    pub added: Vec<String>,
    /// Connections that stop firing (runs in flight are still followed).
    pub removed: Vec<String>,
    /// Connections whose settings changed, then the sections applied live that
    /// changed (`[[groups]]`, `[defaults]`, `[[notify]]`).
    pub changed: Vec<String>,
    /// Sections that changed but only take effect after a restart (`[airbyte]` or
    /// `[instances]`, ...).
    pub needs_restart: Vec<&'static str>,
    /// Declarations that changed, which the daemon does not use: `cronbyte apply`
    /// carries them to Airbyte.
    pub needs_apply: Vec<&'static str>,
}

pub struct Reloader {
    /// The file to read again; `None` when the config did not come from a file.
    path: Option<PathBuf>,
    /// The engine of the moment, and the connections for engines of later terms.
    role: Arc<Role>,
    metrics: Arc<Metrics>,
    /// Where failure notices go; its receivers are replaced on reload.
    notifier: Notifier,
    /// The client of each instance the daemon started with, to find declared
    /// connections by name, as at start.
    clients: BTreeMap<String, Client>,
    /// The config in force, as much of it as a reload compares against.
    current: Mutex<Fingerprint>,
    /// Told each config applied, to look for double schedules in it at once.
    double_schedules: Option<Arc<crate::takeover::watch::Watcher>>,
    /// Told the hash of each config's connection settings, which replicas compare.
    election: Option<Arc<Election>>,
}

/// When a changed section takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// At once: the reload applies it.
    Live,
    /// At the next start of the daemon.
    Restart,
    /// When `cronbyte apply` runs: the daemon does not use it.
    Apply,
}

/// What a reload compares against, kept instead of a second copy of the config
/// (megabytes at 10,000 connections): the connections' settings that the daemon
/// shares anyway, each with its hash, and a hash of every other section.
struct Fingerprint {
    /// Each connection's settings, as the daemon shares them, and their hash.
    connections: Vec<(Arc<ConnectionSettings>, u64)>,
    /// Every other section: its key path, when a change takes effect, its hash.
    sections: Vec<(&'static str, Effect, u64)>,
}

/// A hash of `value`'s Debug form, and of the secrets it holds. Settings print
/// their rules (text and zone) and durations, so two differ exactly when their
/// Debug forms or their secrets do. Secrets print redacted, so they are hashed
/// apart: a rotated password is a change like any other. The hash never leaves
/// this process.
fn fingerprint_of(
    value: &impl std::fmt::Debug,
    secrets: impl IntoIterator<Item = impl AsRef<str>>,
) -> u64 {
    let mut hasher = DefaultHasher::new();
    format!("{value:?}").hash(&mut hasher);
    for secret in secrets {
        secret.as_ref().hash(&mut hasher);
    }
    hasher.finish()
}

fn exposed(secret: &SecretString) -> &str {
    secret.expose_secret()
}

fn auth_secrets(auth: &Auth) -> Vec<&str> {
    match auth {
        Auth::None => Vec::new(),
        Auth::Basic { password, .. } => vec![exposed(password)],
        Auth::Bearer { token } => vec![exposed(token)],
        Auth::ClientCredentials { client_secret, .. } => vec![exposed(client_secret)],
    }
}

/// A declaration's configuration whole: its Debug form shows only the top-level keys.
fn declaration_secrets(actors: &[ActorSettings]) -> impl Iterator<Item = String> {
    actors.iter().map(|a| a.configuration.expose().to_string())
}

/// A hash of one connection's settings, as [`fingerprint_of`] makes them.
fn connection_hash(connection: &ConnectionSettings) -> u64 {
    fingerprint_of(connection, std::iter::empty::<&str>())
}

impl Fingerprint {
    /// `config`'s sections, and `connections`: its connections, as shared.
    fn of(config: &Config, connections: &[Arc<ConnectionSettings>]) -> Self {
        Self {
            connections: connections
                .iter()
                .map(|c| (c.clone(), connection_hash(c)))
                .collect(),
            sections: Self::sections(config),
        }
    }

    /// The fingerprint of a new config, whose sections are `sections`: each of
    /// `connections` that did not change is replaced by the settings in force,
    /// which go on being shared, so a reload keeps only what changed. Besides
    /// sparing the work, this spares the memory: settings built while the file
    /// was parsed sit among the parse's freed values, and would hold on to all
    /// the pages they share with them; the changed ones are [`relocated`].
    fn carry_over(
        &self,
        connections: Vec<ConnectionSettings>,
        sections: Vec<(&'static str, Effect, u64)>,
    ) -> Self {
        let in_force: HashMap<&str, &(Arc<ConnectionSettings>, u64)> = self
            .connections
            .iter()
            .map(|entry| (entry.0.name.as_str(), entry))
            .collect();
        // Each connection's settings in force, or `None` for the next changed one.
        let mut order = Vec::with_capacity(connections.len());
        let mut changed = Vec::new();
        for connection in connections {
            let hash = connection_hash(&connection);
            match in_force.get(connection.name.as_str()) {
                Some((same, old_hash)) if *old_hash == hash => {
                    order.push((Some(same.clone()), hash));
                }
                _ => {
                    order.push((None, hash));
                    changed.push(connection);
                }
            }
        }
        let mut changed = relocated(changed).into_iter();
        let connections = order
            .into_iter()
            .filter_map(|(in_force, hash)| match in_force {
                Some(same) => Some((same, hash)),
                None => changed.next().map(|c| (Arc::new(c), hash)),
            })
            .collect();
        Self {
            connections,
            sections,
        }
    }

    /// The connections, shared.
    fn shared(&self) -> SharedConnections {
        self.connections.iter().map(|(c, _)| c.clone()).collect()
    }

    fn sections(config: &Config) -> Vec<(&'static str, Effect, u64)> {
        // Named field by field, so a section added to `Config` cannot be forgotten here.
        let Config {
            instances,
            store,
            server,
            workers,
            defaults,
            metrics,
            log,
            groups,
            notify,
            connections: _,
            sources,
            destinations,
        } = config;
        let none = std::iter::empty::<&str>;
        vec![
            ("[[groups]]", Effect::Live, fingerprint_of(groups, none())),
            ("[defaults]", Effect::Live, fingerprint_of(defaults, none())),
            (
                "[[notify]]",
                Effect::Live,
                fingerprint_of(notify, notify.iter().map(|n| exposed(&n.url))),
            ),
            (
                if instances.len() == 1 && instances.contains_key(config::DEFAULT_INSTANCE) {
                    "[airbyte]"
                } else {
                    "[instances]"
                },
                Effect::Restart,
                fingerprint_of(
                    instances,
                    instances.values().flat_map(|i| auth_secrets(&i.auth)),
                ),
            ),
            (
                "[store]",
                Effect::Restart,
                fingerprint_of(store, store.url.as_ref().map(exposed)),
            ),
            (
                "[server]",
                Effect::Restart,
                fingerprint_of(server, server.token.as_ref().map(exposed)),
            ),
            (
                "[workers]",
                Effect::Restart,
                fingerprint_of(workers, none()),
            ),
            (
                "[metrics]",
                Effect::Restart,
                fingerprint_of(metrics, none()),
            ),
            ("[log]", Effect::Restart, fingerprint_of(log, none())),
            (
                "[[sources]]",
                Effect::Apply,
                fingerprint_of(sources, declaration_secrets(sources)),
            ),
            (
                "[[destinations]]",
                Effect::Apply,
                fingerprint_of(destinations, declaration_secrets(destinations)),
            ),
        ]
    }
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        role: Arc<Role>,
        metrics: Arc<Metrics>,
        notifier: Notifier,
        clients: BTreeMap<String, Client>,
        current: &Config,
        connections: &[Arc<ConnectionSettings>],
    ) -> Self {
        Self {
            path,
            role,
            metrics,
            notifier,
            clients,
            current: Mutex::new(Fingerprint::of(current, connections)),
            double_schedules: None,
            election: None,
        }
    }

    /// Tells the other replicas (through `election`) the settings of each config
    /// a reload applies.
    pub fn announcing(mut self, election: Arc<Election>) -> Self {
        self.election = Some(election);
        self
    }

    /// Tells `watcher` about each config a reload applies.
    pub fn watching(mut self, watcher: Arc<crate::takeover::watch::Watcher>) -> Self {
        self.double_schedules = Some(watcher);
        self
    }

    /// Reads the file again and applies it, or explains (one problem a line)
    /// why it was rejected.
    pub async fn reload(&self) -> Result<ReloadSummary, String> {
        let Some(path) = &self.path else {
            self.metrics.reloaded("rejected");
            return Err("this daemon was not started from a config file".into());
        };
        let mut new = match config::load(path) {
            Ok(new) => new,
            Err(errors) => {
                self.metrics.reloaded("rejected");
                tracing::error!(config = %path.display(), problems = %errors,
                    "config reload rejected; the config in force stays");
                return Err(errors.to_string());
            }
        };
        if let Err(e) = self.check_instances(&new) {
            self.metrics.reloaded("rejected");
            tracing::error!(config = %path.display(), error = %e,
                "config reload rejected; the config in force stays");
            return Err(e);
        }
        // Declared connections are found by name in Airbyte, as at start; one that
        // cannot be found rejects the reload rather than leaving it without an id.
        for (name, client) in &self.clients {
            if let Err(e) = crate::pipeline::resolve_connection_ids(client, name, &mut new).await {
                self.metrics.reloaded("rejected");
                tracing::error!(config = %path.display(), error = %e,
                    "config reload rejected; the config in force stays");
                return Err(e.to_string());
            }
        }
        if let Some(election) = &self.election {
            election.set_settings_hash(settings_hash(&new));
        }
        let sections = Fingerprint::sections(&new);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let fingerprint = current.carry_over(std::mem::take(&mut new.connections), sections);
        let summary = compare(&current, &fingerprint);
        let connections = fingerprint.shared();
        if let Some(watcher) = &self.double_schedules {
            watcher.reconfigure(&connections);
        }
        self.role.reload(connections, new.groups);
        self.notifier.set_receivers(new.notify);
        self.metrics.reloaded("applied");
        tracing::info!(config = %path.display(), added = %few(&summary.added),
            removed = %few(&summary.removed), changed = %few(&summary.changed),
            needs_restart = ?summary.needs_restart, needs_apply = ?summary.needs_apply,
            "config reloaded");
        *current = fingerprint;
        drop(current);
        // The old config and everything read to check the new one are free now.
        crate::allocator::give_back();
        Ok(summary)
    }
}

/// Calls `f` on every text `connection` owns, in an order fixed by this function
/// (its `declared` details aside, which few connections have). Named field by
/// field, so a field added to the settings cannot be forgotten here.
fn for_each_text(connection: &mut ConnectionSettings, mut f: impl FnMut(&mut String)) {
    let ConnectionSettings {
        name,
        instance,
        connection_id,
        cron,
        timezone: _,
        timeout: _,
        enabled: _,
        on_overlap: _,
        misfire: _,
        jitter: _,
        retries: _,
        retry_backoff: _,
        retry_backoff_max: _,
        group,
        after,
        declared: _,
    } = connection;
    f(name);
    f(instance);
    f(connection_id);
    if let Some(rule) = cron {
        let text = rule.text_mut();
        let mut owned = std::mem::take(text).into_string();
        f(&mut owned);
        *text = owned.into_boxed_str();
    }
    if let Some(group) = group {
        f(group);
    }
    after.iter_mut().for_each(f);
}

/// `connections` with their texts moved to memory allocated after they left the
/// memory they were parsed into. Settings built while a file is parsed sit among
/// the parse's values, and once those are freed each small text pins the page it
/// shares with them: a reload that changed every one of 10,000 connections left
/// some 13 MiB resident that way. Each text is first copied into one buffer (one
/// large block, mapped apart from the heap) and freed; with the parse's values
/// gone too, the free memory merges, and the texts copied back out are laid side
/// by side in it.
fn relocated(mut connections: Vec<ConnectionSettings>) -> Vec<ConnectionSettings> {
    let (mut size, mut count) = (0, 0);
    for connection in &mut connections {
        for_each_text(connection, |text| {
            size += text.len();
            count += 1;
        });
    }
    let mut held = String::with_capacity(size);
    let mut ends = Vec::with_capacity(count);
    for connection in &mut connections {
        for_each_text(connection, |text| {
            held.push_str(&std::mem::take(text));
            ends.push(held.len());
        });
    }
    crate::allocator::give_back();
    let mut start = 0;
    let mut ends = ends.into_iter();
    for connection in &mut connections {
        for_each_text(connection, |text| {
            let end = ends.next().unwrap_or(start);
            *text = held[start..end].to_owned();
            start = end;
        });
    }
    connections
}

/// At most ten of `names`, and how many more: a reload that touches every one of
/// 10,000 connections is one readable log line, not a megabyte of names (the
/// answer to the reload request still lists them all).
fn few(names: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

impl Reloader {
    /// A connection on an instance this daemon did not start with cannot be synced
    /// until a restart gives it a client: such a reload is refused, naming them.
    fn check_instances(&self, new: &Config) -> Result<(), String> {
        let strangers: Vec<String> = new
            .connections
            .iter()
            .filter(|c| !self.clients.contains_key(&c.instance))
            .map(|c| format!("{} (instance {:?})", c.name, c.instance))
            .collect();
        if strangers.is_empty() {
            return Ok(());
        }
        Err(format!(
            "connections on Airbyte instances this daemon was not started with: {}; \
             restart cronbyte to add an instance",
            strangers.join(", ")
        ))
    }
}

/// A hash of the connection settings (each connection's, then the groups' and
/// defaults'), which replicas sharing a store compare to warn when they differ.
/// Built with the standard library's fixed-key hasher: the same settings give the
/// same hash in every process of one build, which is what replicas compare.
pub fn settings_hash(config: &Config) -> String {
    let mut hasher = DefaultHasher::new();
    for connection in &config.connections {
        (connection.name.as_str(), connection_hash(connection)).hash(&mut hasher);
    }
    for (key, effect, hash) in &Fingerprint::sections(config) {
        if *effect == Effect::Live && *key != "[[notify]]" {
            (key, hash).hash(&mut hasher);
        }
    }
    format!("{:016x}", hasher.finish())
}

/// Connections added, removed and changed, and the sections a reload cannot apply.
fn compare(old: &Fingerprint, new: &Fingerprint) -> ReloadSummary {
    let before: HashMap<&str, u64> = old
        .connections
        .iter()
        .map(|(c, hash)| (c.name.as_str(), *hash))
        .collect();
    let after: HashMap<&str, u64> = new
        .connections
        .iter()
        .map(|(c, hash)| (c.name.as_str(), *hash))
        .collect();
    let mut summary = ReloadSummary::default();
    for (c, hash) in &new.connections {
        match before.get(c.name.as_str()) {
            None => summary.added.push(c.name.clone()),
            Some(old_hash) if old_hash != hash => summary.changed.push(c.name.clone()),
            Some(_) => {}
        }
    }
    summary.removed = old
        .connections
        .iter()
        .filter(|(c, _)| !after.contains_key(c.name.as_str()))
        .map(|(c, _)| c.name.clone())
        .collect();
    for ((section, effect, before), (_, _, after)) in old.sections.iter().zip(&new.sections) {
        if before == after {
            continue;
        }
        match effect {
            Effect::Live => summary.changed.push((*section).to_owned()),
            Effect::Restart => summary.needs_restart.push(section),
            Effect::Apply => summary.needs_apply.push(section),
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, from_str};

    /// `config`'s fingerprint, its connections shared anew.
    fn fingerprint(config: &Config) -> Fingerprint {
        Fingerprint::of(config, &config::share(config.connections.clone()))
    }

    fn config(connections: &[(&str, &str)], poll: &str) -> Config {
        let mut text = format!(
            "[airbyte]\nbase_url = \"http://localhost:8000/api/v1\"\n[workers]\npoll_interval = \"{poll}\"\n"
        );
        for (name, cron) in connections {
            // One id per name, the same in both configs.
            let id = name.len() * 1000 + usize::from(name.as_bytes()[0]);
            text.push_str(&format!(
                "[[connections]]\nname = \"{name}\"\nconnection_id = \"4b5c6d7e-0000-4000-8000-{id:012}\"\ncron = \"{cron}\"\n"
            ));
        }
        from_str(&text, Format::Toml).expect("a valid config")
    }

    #[test]
    fn a_reload_tells_added_removed_and_changed_connections_and_sections_needing_a_restart() {
        let old = config(
            &[("a", "0 * * * *"), ("b", "0 * * * *"), ("c", "0 * * * *")],
            "10s",
        );
        let new = config(
            &[("b", "0 * * * *"), ("c", "30 * * * *"), ("d", "0 * * * *")],
            "20s",
        );
        let summary = compare(&fingerprint(&old), &fingerprint(&new));
        assert_eq!(
            summary,
            ReloadSummary {
                added: vec!["d".to_owned()],
                removed: vec!["a".to_owned()],
                changed: vec!["c".to_owned()],
                needs_restart: vec!["[workers]"],
                needs_apply: vec![],
            }
        );
    }

    /// A config with every section given, `edit` applied to its text first.
    fn every_section(edit: &dyn Fn(String) -> String) -> Config {
        let text = r#"
[airbyte]
base_url = "http://localhost:8000/api/v1"
[airbyte.auth]
kind = "basic"
username = "airbyte"
password = "first-password"
[store]
path = "history.db"
[server]
listen = "127.0.0.1:9464"
token = "first-token"
[workers]
poll_interval = "10s"
[defaults]
timeout = "2h"
[metrics]
success_ratio_window = "24h"
[log]
level = "info"
[[groups]]
name = "warehouse"
max_concurrent = 2
[[notify]]
url = "https://hooks.example.com/first"
[[sources]]
name = "pg"
definition = "Postgres"
configuration = { host = "db", password = "first-secret" }
[[destinations]]
name = "lake"
definition = "S3"
configuration = { bucket = "lake" }
[[connections]]
name = "orders"
connection_id = "4b5c6d7e-0000-4000-8000-000000000001"
cron = "0 * * * *"
timeout = "1h"
"#;
        from_str(&edit(text.to_owned()), Format::Toml).expect("a valid config")
    }

    #[test]
    fn every_section_of_the_config_is_reported_as_applied_or_needing_a_restart_or_apply() {
        // One change per section, and where the reload says it took effect.
        let cases: &[(&str, &str, &str, &str)] = &[
            ("first-password", "rotated", "needs_restart", "[airbyte]"),
            ("history.db", "other.db", "needs_restart", "[store]"),
            ("first-token", "rotated-token", "needs_restart", "[server]"),
            ("\"10s\"", "\"20s\"", "needs_restart", "[workers]"),
            ("\"24h\"", "\"1h\"", "needs_restart", "[metrics]"),
            ("\"info\"", "\"debug\"", "needs_restart", "[log]"),
            (
                "timeout = \"2h\"",
                "timeout = \"3h\"",
                "changed",
                "[defaults]",
            ),
            (
                "max_concurrent = 2",
                "max_concurrent = 3",
                "changed",
                "[[groups]]",
            ),
            (
                "example.com/first",
                "example.com/second",
                "changed",
                "[[notify]]",
            ),
            (
                "first-secret",
                "second-secret",
                "needs_apply",
                "[[sources]]",
            ),
            (
                "bucket = \"lake\"",
                "bucket = \"pond\"",
                "needs_apply",
                "[[destinations]]",
            ),
        ];
        let old = fingerprint(&every_section(&|t| t));
        assert_eq!(
            cases.len(),
            old.sections.len(),
            "one case for each section a reload compares"
        );
        for (from, to, list, section) in cases {
            let new = every_section(&|t: String| {
                assert!(t.contains(from), "{from} is in the test config");
                t.replacen(from, to, 1)
            });
            let summary = compare(&old, &fingerprint(&new));
            let expected = ReloadSummary {
                changed: if *list == "changed" {
                    vec![(*section).to_owned()]
                } else {
                    vec![]
                },
                needs_restart: if *list == "needs_restart" {
                    vec![*section]
                } else {
                    vec![]
                },
                needs_apply: if *list == "needs_apply" {
                    vec![*section]
                } else {
                    vec![]
                },
                ..ReloadSummary::default()
            };
            assert_eq!(summary, expected, "changing {from} to {to}");
        }
    }

    #[test]
    fn a_reload_keeps_the_settings_in_force_of_every_connection_it_does_not_change() {
        let old = config(&[("a", "0 * * * *"), ("b", "0 * * * *")], "10s");
        let in_force = fingerprint(&old);
        let new = config(
            &[("a", "0 * * * *"), ("b", "30 * * * *"), ("c", "0 * * * *")],
            "10s",
        );
        let carried = in_force.carry_over(new.connections.clone(), Fingerprint::sections(&new));
        let shared = carried.shared();
        let names: Vec<&str> = shared.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"], "in the new file's order");
        assert!(
            Arc::ptr_eq(&shared[0], &in_force.connections[0].0),
            "a is unchanged"
        );
        assert!(
            !Arc::ptr_eq(&shared[1], &in_force.connections[1].0),
            "b changed"
        );
        assert_eq!(
            format!("{:?}", shared[1].cron),
            format!("{:?}", new.connections[1].cron),
            "b as the new file has it"
        );
        assert_eq!(
            compare(&in_force, &carried),
            ReloadSummary {
                added: vec!["c".to_owned()],
                changed: vec!["b".to_owned()],
                ..ReloadSummary::default()
            }
        );
    }

    #[test]
    fn the_reload_log_names_ten_connections_at_most_and_counts_the_rest() {
        let names: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
        assert_eq!(few(&names[..2]), "c0, c1");
        assert_eq!(
            few(&names),
            "c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 and 2 more"
        );
        assert_eq!(few(&[]), "");
    }

    #[test]
    fn relocated_settings_hold_every_text_they_held_in_its_place() {
        let text = r#"
[airbyte]
base_url = "http://localhost:8000/api/v1"
[[groups]]
name = "warehouse"
max_concurrent = 2
[[connections]]
name = "orders"
connection_id = "4b5c6d7e-0000-4000-8000-000000000001"
cron = "0 * * * *"
timezone = "Europe/Paris"
group = "warehouse"
[[connections]]
name = "customers"
connection_id = "4b5c6d7e-0000-4000-8000-000000000002"
after = ["orders"]
[[connections]]
name = "invoices"
connection_id = "4b5c6d7e-0000-4000-8000-000000000003"
cron = "30 6 * * 1-5"
after = ["orders", "customers"]
"#;
        let config = from_str(text, Format::Toml).expect("a valid config");
        let before = format!("{:?}", config.connections);
        let moved = relocated(config.connections);
        assert_eq!(format!("{moved:?}"), before);
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert!(moved[0].cron.as_ref().unwrap().next_after(now).is_some());
    }

    #[test]
    fn reloading_the_same_config_changes_nothing() {
        let config = config(&[("a", "0 * * * *")], "10s");
        let summary = compare(&fingerprint(&config), &fingerprint(&config.clone()));
        assert_eq!(summary, ReloadSummary::default());
    }
}
