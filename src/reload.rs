//! Live reload: the config file is read again (on SIGHUP or `POST /api/v1/reload`)
//! and, if it validates, its connections and groups replace the running ones.
//! An invalid file is rejected with the same messages as `cronbyte check`, and
//! the config in force stays.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::airbyte::Client;
use crate::config::{self, Config};
use crate::engine::Engine;
use crate::metrics::Metrics;

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Sections that changed but only take effect after a restart.
    pub needs_restart: Vec<&'static str>,
}

pub struct Reloader {
    /// The file to read again; `None` when the config did not come from a file.
    path: Option<PathBuf>,
    engine: Engine,
    metrics: Arc<Metrics>,
    /// To find declared connections by name, as at start.
    airbyte: Client,
    /// The config in force, as much of it as a reload compares against.
    current: Mutex<Fingerprint>,
}

/// What a reload compares against, kept instead of a second copy of the config:
/// at 10,000 connections that copy is megabytes, these hashes a few hundred KB.
struct Fingerprint {
    /// Each connection's name and a hash of its settings, as configured.
    connections: Vec<(String, u64)>,
    /// A hash of each section a reload cannot apply.
    sections: [(&'static str, u64); 5],
}

/// A hash of `value`'s Debug form. Settings print their rules (text and zone) and
/// durations, so two differ exactly when their Debug forms do, with one exception:
/// secrets print redacted, so a changed secret alone is not reported.
fn fingerprint_of(value: &impl std::fmt::Debug) -> u64 {
    let mut hasher = DefaultHasher::new();
    format!("{value:?}").hash(&mut hasher);
    hasher.finish()
}

impl Fingerprint {
    fn of(config: &Config) -> Self {
        Self {
            connections: config
                .connections
                .iter()
                .map(|c| (c.name.clone(), fingerprint_of(c)))
                .collect(),
            sections: [
                ("airbyte", fingerprint_of(&config.airbyte)),
                ("store", fingerprint_of(&config.store)),
                ("server", fingerprint_of(&config.server)),
                ("workers", fingerprint_of(&config.workers)),
                ("log", fingerprint_of(&config.log)),
            ],
        }
    }
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        engine: Engine,
        metrics: Arc<Metrics>,
        airbyte: Client,
        current: &Config,
    ) -> Self {
        Self {
            path,
            engine,
            metrics,
            airbyte,
            current: Mutex::new(Fingerprint::of(current)),
        }
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
        // Declared connections are found by name in Airbyte, as at start; one that
        // cannot be found rejects the reload rather than leaving it without an id.
        if let Err(e) = crate::pipeline::resolve_connection_ids(&self.airbyte, &mut new).await {
            self.metrics.reloaded("rejected");
            tracing::error!(config = %path.display(), error = %e,
                "config reload rejected; the config in force stays");
            return Err(e.to_string());
        }
        let fingerprint = Fingerprint::of(&new);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let summary = compare(&current, &fingerprint);
        self.engine.reload(new.connections, new.groups);
        self.metrics.reloaded("applied");
        tracing::info!(config = %path.display(), added = ?summary.added, removed = ?summary.removed,
            changed = ?summary.changed, needs_restart = ?summary.needs_restart, "config reloaded");
        *current = fingerprint;
        Ok(summary)
    }
}

/// Connections added, removed and changed, and the sections a reload cannot apply.
fn compare(old: &Fingerprint, new: &Fingerprint) -> ReloadSummary {
    let before: HashMap<&str, u64> = old
        .connections
        .iter()
        .map(|(name, hash)| (name.as_str(), *hash))
        .collect();
    let after: HashMap<&str, u64> = new
        .connections
        .iter()
        .map(|(name, hash)| (name.as_str(), *hash))
        .collect();
    let mut summary = ReloadSummary::default();
    for (name, hash) in &new.connections {
        match before.get(name.as_str()) {
            None => summary.added.push(name.clone()),
            Some(old_hash) if old_hash != hash => summary.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    summary.removed = old
        .connections
        .iter()
        .filter(|(name, _)| !after.contains_key(name.as_str()))
        .map(|(name, _)| name.clone())
        .collect();
    summary.needs_restart = old
        .sections
        .iter()
        .zip(&new.sections)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((name, _), _)| *name)
        .collect();
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, from_str};

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
        let summary = compare(&Fingerprint::of(&old), &Fingerprint::of(&new));
        assert_eq!(
            summary,
            ReloadSummary {
                added: vec!["d".to_owned()],
                removed: vec!["a".to_owned()],
                changed: vec!["c".to_owned()],
                needs_restart: vec!["workers"],
            }
        );
    }

    #[test]
    fn reloading_the_same_config_changes_nothing() {
        let config = config(&[("a", "0 * * * *")], "10s");
        let summary = compare(&Fingerprint::of(&config), &Fingerprint::of(&config.clone()));
        assert_eq!(summary, ReloadSummary::default());
    }
}
