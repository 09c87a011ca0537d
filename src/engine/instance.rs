//! One Airbyte instance as the engine reaches it: its calls, and what the engine has
//! learnt of it. Each instance has its own poll loop, so one that is slow or down holds
//! up no other instance's syncs.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::airbyte::Airbyte;
use crate::airbyte::{Error, Job};

pub(crate) struct Instance {
    pub(super) name: String,
    pub(super) airbyte: Arc<dyn Airbyte>,
    /// Whether polls may use one listing of changed jobs; off once this instance
    /// refuses it.
    pub(super) batch_polls: AtomicBool,
    /// The workspaces a listing of changed jobs covers, asked of it once.
    pub(super) workspaces: OnceCell<Vec<String>>,
    /// When its poll loop last made progress (see [`super::Engine::stuck_loop`]).
    pub(super) poll_heartbeat: Mutex<Instant>,
}

impl Instance {
    pub(super) fn new(name: String, airbyte: Arc<dyn Airbyte>) -> Self {
        Self {
            name,
            airbyte,
            batch_polls: AtomicBool::new(true),
            workspaces: OnceCell::new(),
            poll_heartbeat: Mutex::new(Instant::now()),
        }
    }

    /// Stands in for an instance the config does not name, which open runs of an
    /// earlier config are on: every call fails as Airbyte being unreachable would, so
    /// those runs stay open (and are said to) until a config names it again.
    pub(super) fn unconfigured(name: String) -> Self {
        let airbyte = Arc::new(Unconfigured { name: name.clone() });
        Self::new(name, airbyte)
    }

    /// Notes that its poll loop moved on, for the watchdog.
    pub(super) fn poll_progressed(&self) {
        *self
            .poll_heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// How long since its poll loop last moved on.
    pub(super) fn poll_quiet(&self) -> Duration {
        self.poll_heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }
}

/// The instances of a config with one Airbyte: `airbyte` as the instance named
/// [`crate::config::DEFAULT_INSTANCE`].
pub fn only_instance(airbyte: Arc<dyn Airbyte>) -> BTreeMap<String, Arc<dyn Airbyte>> {
    BTreeMap::from([(crate::config::DEFAULT_INSTANCE.to_string(), airbyte)])
}

struct Unconfigured {
    name: String,
}

impl Unconfigured {
    fn error(&self) -> Error {
        Error::Transport {
            endpoint: format!("Airbyte instance {:?}", self.name),
            detail: "is not in the config; its runs stay open until a config names it again".into(),
        }
    }
}

#[async_trait]
impl Airbyte for Unconfigured {
    async fn sync(&self, _: &str) -> Result<Job, Error> {
        Err(self.error())
    }

    async fn connection_jobs(&self, _: &str, _: u32) -> Result<Vec<Job>, Error> {
        Err(self.error())
    }

    async fn jobs_updated_since(
        &self,
        _: &[String],
        _: DateTime<Utc>,
        _: u32,
        _: u32,
    ) -> Result<Vec<Job>, Error> {
        Err(self.error())
    }

    async fn running_jobs(&self, _: &[String], _: u32) -> Result<Vec<Job>, Error> {
        Err(self.error())
    }

    async fn job(&self, _: i64) -> Result<Job, Error> {
        Err(self.error())
    }

    async fn cancel(&self, _: i64) -> Result<Job, Error> {
        Err(self.error())
    }

    async fn listing_workspaces(&self) -> Result<Vec<String>, Error> {
        Err(self.error())
    }

    fn request_timeout(&self) -> Duration {
        Duration::ZERO
    }
}
