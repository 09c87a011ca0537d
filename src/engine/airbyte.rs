//! The calls the engine makes to Airbyte, and nothing more: the HTTP client
//! implements them, and the engine's tests give it an Airbyte in memory whose
//! jobs run on tokio's clock (`engine::fake`).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::airbyte::{ApiKind, Client, Error, Job};

/// Airbyte as the engine uses it. Every call is tried once unless its doc says
/// otherwise: the engine decides when to ask again.
#[async_trait]
pub trait Airbyte: Send + Sync + 'static {
    /// Starts a sync of the connection. Not sent again after a failure Airbyte
    /// may have acted on (see [`Error::answer_was_lost`]): the engine looks for
    /// the job that request may have started first.
    async fn sync(&self, connection_id: &str) -> Result<Job, Error>;

    /// The connection's newest sync jobs, newest first, at most `limit`: for
    /// attaching to a running sync, waiting behind one, and the search for a job
    /// a lost answer started. Retried through short failures.
    async fn connection_jobs(&self, connection_id: &str, limit: u32) -> Result<Vec<Job>, Error>;

    /// One page of the sync jobs of `workspaces` (all, when empty) updated at or
    /// after `since`: one request that answers for many followed jobs.
    async fn jobs_updated_since(
        &self,
        workspaces: &[String],
        since: DateTime<Utc>,
        page_size: u32,
        offset: u32,
    ) -> Result<Vec<Job>, Error>;

    /// One page of the running sync jobs of `workspaces` (all, when empty):
    /// the one request a round spends on the counts of running jobs, which a
    /// listing of changed jobs does not refresh.
    async fn running_jobs(&self, workspaces: &[String], page_size: u32) -> Result<Vec<Job>, Error>;

    /// One job as Airbyte sees it now.
    async fn job(&self, job_id: i64) -> Result<Job, Error>;

    /// Asks Airbyte to cancel the job. Airbyte refuses a job that already ended.
    async fn cancel(&self, job_id: i64) -> Result<Job, Error>;

    /// The workspaces a listing of changed jobs must name; empty when a listing
    /// covers everything the credentials reach. Retried through short failures.
    async fn listing_workspaces(&self) -> Result<Vec<String>, Error>;

    /// The longest one call may take, for the watchdog's idea of a stuck loop.
    fn request_timeout(&self) -> Duration;
}

#[async_trait]
impl Airbyte for Client {
    async fn sync(&self, connection_id: &str) -> Result<Job, Error> {
        self.trigger_sync(connection_id).await
    }

    async fn connection_jobs(&self, connection_id: &str, limit: u32) -> Result<Vec<Job>, Error> {
        Client::connection_jobs(self, connection_id, limit).await
    }

    async fn jobs_updated_since(
        &self,
        workspaces: &[String],
        since: DateTime<Utc>,
        page_size: u32,
        offset: u32,
    ) -> Result<Vec<Job>, Error> {
        Client::jobs_updated_since(self, workspaces, since, page_size, offset).await
    }

    async fn running_jobs(&self, workspaces: &[String], page_size: u32) -> Result<Vec<Job>, Error> {
        Client::running_jobs(self, workspaces, page_size).await
    }

    async fn job(&self, job_id: i64) -> Result<Job, Error> {
        self.poll_job(job_id).await
    }

    async fn cancel(&self, job_id: i64) -> Result<Job, Error> {
        self.cancel_job_once(job_id).await
    }

    async fn listing_workspaces(&self) -> Result<Vec<String>, Error> {
        if self.api() == ApiKind::Public {
            // The public listing covers every workspace the credentials reach.
            return Ok(Vec::new());
        }
        let workspaces = self.list_workspaces().await?;
        Ok(workspaces.into_iter().map(|w| w.workspace_id).collect())
    }

    fn request_timeout(&self) -> Duration {
        Client::request_timeout(self)
    }
}
