//! Live reload: the config file is read again (on SIGHUP or `POST /api/v1/reload`)
//! and, if it validates, its connections and groups replace the running ones.
//! An invalid file is rejected with the same messages as `cronbyte check`, and
//! the config in force stays.

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
    current: Mutex<Config>,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        engine: Engine,
        metrics: Arc<Metrics>,
        airbyte: Client,
        current: Config,
    ) -> Self {
        Self {
            path,
            engine,
            metrics,
            airbyte,
            current: Mutex::new(current),
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
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let summary = compare(&current, &new);
        self.engine
            .reload(new.connections.clone(), new.groups.clone());
        self.metrics.reloaded("applied");
        tracing::info!(config = %path.display(), added = ?summary.added, removed = ?summary.removed,
            changed = ?summary.changed, needs_restart = ?summary.needs_restart, "config reloaded");
        *current = new;
        Ok(summary)
    }
}

/// Connections added, removed and changed, and the sections a reload cannot apply.
fn compare(old: &Config, new: &Config) -> ReloadSummary {
    let mut summary = ReloadSummary::default();
    for connection in &new.connections {
        match old.connections.iter().find(|c| c.name == connection.name) {
            None => summary.added.push(connection.name.clone()),
            // Settings hold parsed rules and durations; their Debug forms are
            // equal exactly when the settings are.
            Some(before) if format!("{before:?}") != format!("{connection:?}") => {
                summary.changed.push(connection.name.clone());
            }
            Some(_) => {}
        }
    }
    summary.removed = old
        .connections
        .iter()
        .filter(|c| !new.connections.iter().any(|n| n.name == c.name))
        .map(|c| c.name.clone())
        .collect();
    let sections: [(&'static str, String, String); 5] = [
        (
            "airbyte",
            format!("{:?}", old.airbyte),
            format!("{:?}", new.airbyte),
        ),
        (
            "store",
            format!("{:?}", old.store),
            format!("{:?}", new.store),
        ),
        (
            "server",
            format!("{:?}", old.server),
            format!("{:?}", new.server),
        ),
        (
            "workers",
            format!("{:?}", old.workers),
            format!("{:?}", new.workers),
        ),
        ("log", format!("{:?}", old.log), format!("{:?}", new.log)),
    ];
    summary.needs_restart = sections
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(name, _, _)| name)
        .collect();
    summary
}
