//! The HTTP client: one place that builds every request to Airbyte, authenticates
//! it, retries what may be retried, and turns answers into types or [`Error`]s.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::error::{Error, ErrorBody, Subject, classify, excerpt};
use super::model::*;
use super::{ApiKind, Auth};

/// The organization every OSS workspace belongs to.
const DEFAULT_ORGANIZATION_ID: &str = "00000000-0000-0000-0000-000000000000";

/// How many connections one page of the Config API's connection listing asks for: a
/// page's body stays within a few hundred kilobytes.
const CONFIG_PAGE: u32 = 500;

/// How long a token without `expires_in` is trusted: Airbyte's default lifetime
/// (`AB_AIRBYTE_AUTH_TOKEN_EXPIRATION_APPLICATION`). A 401 refreshes it earlier.
const ASSUMED_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Bounds on retrying a call that failed in a way that may pass.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first try; 0 disables retrying.
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// No retry starts once this much time has passed since the first try.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `retry` (0-based): exponential, capped, with
    /// "equal jitter" so many clients retrying together spread out.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.min(30)));
        let capped = exp.min(self.max_backoff);
        let half = capped / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }
}

/// Everything the client needs to reach one Airbyte.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// `http://localhost:8001/api/v1` (Config API) or `http://HOST:8000/api/public/v1`.
    pub base_url: String,
    pub api: ApiKind,
    pub auth: Auth,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

impl ClientSettings {
    pub fn new(base_url: impl Into<String>, api: ApiKind) -> Self {
        Self {
            base_url: base_url.into(),
            api,
            auth: Auth::None,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// Told about every HTTP exchange, for metrics. `instance` is the name of the
/// Airbyte instance the client reaches (as the config names it); `outcome` is `ok`
/// or an [`Error::kind`]; `operation` is a fixed name such as `jobs/get`.
pub trait RequestObserver: Send + Sync {
    fn observe(
        &self,
        instance: &str,
        operation: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    );
}

/// Where a client reports its exchanges, and under which instance's name.
struct Observer {
    instance: String,
    report: Arc<dyn RequestObserver>,
}

/// A typed, async client of Airbyte's Config API or public API. Cheap to clone.
/// What a listing of a workspace's sync jobs asks for, in each API's words, besides
/// the job type and the workspaces ([`Client::workspace_jobs`] adds those).
struct JobsFilter {
    /// The Config API's body fields.
    config: Value,
    /// The public API's query parameters.
    public: Vec<(&'static str, String)>,
}

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    api: ApiKind,
    auth: Auth,
    request_timeout: Duration,
    retry: RetryPolicy,
    token: Mutex<Option<CachedToken>>,
    observer: Option<Observer>,
}

struct CachedToken {
    value: SecretString,
    refresh_at: Instant,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .field("api", &self.inner.api)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

/// One request, before it is sent (possibly several times).
struct Call<'a> {
    operation: &'static str,
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    subject: Subject<'a>,
    /// Whether failures that may pass are retried within the policy.
    retried: bool,
    /// Whether it is sent again after a failure that Airbyte may have acted on
    /// (a timeout, a lost answer). Not for starting a sync: that caller must
    /// first look for the job the lost request may have started.
    resend_when_lost: bool,
}

impl<'a> Call<'a> {
    fn post(operation: &'static str, body: Value) -> Self {
        Self {
            operation,
            method: Method::POST,
            path: format!("/{operation}"),
            query: Vec::new(),
            body: Some(body),
            subject: Subject::Other,
            retried: true,
            resend_when_lost: true,
        }
    }

    fn get(operation: &'static str, path: String) -> Self {
        Self {
            operation,
            method: Method::GET,
            path,
            query: Vec::new(),
            body: None,
            subject: Subject::Other,
            retried: true,
            resend_when_lost: true,
        }
    }

    fn once(mut self) -> Self {
        self.retried = false;
        self
    }

    fn about(mut self, subject: Subject<'a>) -> Self {
        self.subject = subject;
        self
    }

    fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

fn to_value(body: &impl Serialize) -> Value {
    // Serializing our own request structs cannot fail: they hold no maps with
    // non-string keys and no fallible Serialize impls.
    serde_json::to_value(body).unwrap_or(Value::Null)
}

impl Client {
    pub fn new(settings: ClientSettings) -> Result<Self, Error> {
        Self::build(settings, None)
    }

    /// A client that reports every exchange to `observer` (metrics), as one with
    /// the instance named `instance`. The name is given here rather than in
    /// [`ClientSettings`]: only what reports needs it, and the settings describe how
    /// to reach an Airbyte, whatever the config calls it.
    pub fn observed(
        settings: ClientSettings,
        instance: impl Into<String>,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<Self, Error> {
        let observer = Observer {
            instance: instance.into(),
            report: observer,
        };
        Self::build(settings, Some(observer))
    }

    fn build(settings: ClientSettings, observer: Option<Observer>) -> Result<Self, Error> {
        crate::tls::install();
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(concat!("cronbyte/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Transport {
                endpoint: "client setup".into(),
                detail: describe(&e),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: settings.base_url.trim_end_matches('/').to_owned(),
                api: settings.api,
                auth: settings.auth,
                request_timeout: settings.request_timeout,
                retry: settings.retry,
                token: Mutex::new(None),
                observer,
            }),
        })
    }

    pub fn api(&self) -> ApiKind {
        self.inner.api
    }

    /// The longest one request may take, end to end.
    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    // -----------------------------------------------------------------------
    // What the engine uses, for either API.

    /// Starts a sync of `connection_id`. Sent again only after failures that
    /// cannot have reached Airbyte (a refused connection); after one it may have
    /// acted on (a timeout, a lost answer) the error is returned, so the caller can
    /// look for the job that request started before asking again.
    pub async fn trigger_sync(&self, connection_id: &str) -> Result<Job, Error> {
        let subject = Subject::Sync { connection_id };
        match self.inner.api {
            ApiKind::Config => {
                let mut call =
                    Call::post("connections/sync", json!({ "connectionId": connection_id }))
                        .about(subject);
                call.resend_when_lost = false;
                Ok(self.send::<JobInfoRead>(call).await?.into_job())
            }
            ApiKind::Public => {
                let body = json!({ "connectionId": connection_id, "jobType": "sync" });
                let mut call = Call::post("jobs/create", body).about(subject);
                call.path = "/jobs".into();
                call.resend_when_lost = false;
                Ok(self.send::<JobResponse>(call).await?.into_job())
            }
        }
    }

    /// The job with its current status and counts. On the Config API this is
    /// `jobs/get_without_logs`, which (unlike `jobs/get`) carries live
    /// `aggregatedStats` and no log lines.
    pub async fn job(&self, job_id: i64) -> Result<Job, Error> {
        self.read_job(job_id, true).await
    }

    /// [`Client::job`] tried once: for polls, whose retry is the next poll.
    pub async fn poll_job(&self, job_id: i64) -> Result<Job, Error> {
        self.read_job(job_id, false).await
    }

    async fn read_job(&self, job_id: i64, retried: bool) -> Result<Job, Error> {
        let call = match self.inner.api {
            ApiKind::Config => Call::post("jobs/get_without_logs", json!({ "id": job_id })),
            ApiKind::Public => Call::get("jobs/get", format!("/jobs/{job_id}")),
        }
        .about(Subject::Job);
        let call = if retried { call } else { call.once() };
        match self.inner.api {
            ApiKind::Config => Ok(self.send::<JobInfoRead>(call).await?.into_job()),
            ApiKind::Public => Ok(self.send::<JobResponse>(call).await?.into_job()),
        }
    }

    /// Asks Airbyte to cancel the job; the answer is the job as Airbyte then sees it.
    pub async fn cancel_job(&self, job_id: i64) -> Result<Job, Error> {
        self.send_cancel(job_id, true).await
    }

    /// [`Client::cancel_job`] tried once: for an operator waiting on the answer.
    /// Airbyte refuses to cancel a job that is no longer running with a 500,
    /// which retrying cannot change; the caller reads the job instead.
    pub async fn cancel_job_once(&self, job_id: i64) -> Result<Job, Error> {
        self.send_cancel(job_id, false).await
    }

    async fn send_cancel(&self, job_id: i64, retried: bool) -> Result<Job, Error> {
        let call = match self.inner.api {
            ApiKind::Config => Call::post("jobs/cancel", json!({ "id": job_id })),
            ApiKind::Public => {
                let mut call = Call::get("jobs/cancel", format!("/jobs/{job_id}"));
                call.method = Method::DELETE;
                call
            }
        }
        .about(Subject::Job);
        let call = if retried { call } else { call.once() };
        match self.inner.api {
            ApiKind::Config => Ok(self.send::<JobInfoRead>(call).await?.into_job()),
            ApiKind::Public => Ok(self.send::<JobResponse>(call).await?.into_job()),
        }
    }

    /// The connection's newest sync jobs, newest first, at most `limit`.
    pub async fn connection_jobs(
        &self,
        connection_id: &str,
        limit: u32,
    ) -> Result<Vec<Job>, Error> {
        match self.inner.api {
            ApiKind::Config => {
                let body = json!({
                    "configTypes": ["sync"],
                    "configId": connection_id,
                    "pagination": { "pageSize": limit, "rowOffset": 0 },
                });
                let list: JobReadList = self.send(Call::post("jobs/list", body)).await?;
                Ok(list
                    .jobs
                    .into_iter()
                    .map(JobWithAttemptsRead::into_job)
                    .collect())
            }
            ApiKind::Public => {
                let query = vec![
                    ("connectionId", connection_id.to_owned()),
                    ("jobType", "sync".to_owned()),
                    ("limit", limit.min(100).to_string()),
                    // Oldest first is the public API's default.
                    ("orderBy", "createdAt|DESC".to_owned()),
                ];
                let mut call = Call::get("jobs/list", "/jobs".into());
                call.query = query;
                let page: JobsResponse = self.send(call).await?;
                Ok(page.data.into_iter().map(JobResponse::into_job).collect())
            }
        }
    }

    /// Sync jobs of the given workspaces (all, when empty) updated at or after
    /// `since`, newest first, one page of at most `page_size` starting at `offset`.
    /// One request covers many connections' jobs, which is how a poll stays cheap.
    /// Tried once: the retry of a poll is the next poll, and a listing retried
    /// through an outage would hold every other outcome of its round.
    pub async fn jobs_updated_since(
        &self,
        workspace_ids: &[String],
        since: DateTime<Utc>,
        page_size: u32,
        offset: u32,
    ) -> Result<Vec<Job>, Error> {
        let since_text = since.to_rfc3339_opts(SecondsFormat::Secs, true);
        let filter = JobsFilter {
            config: json!({
                "updatedAtStart": since_text,
                "pagination": { "pageSize": page_size, "rowOffset": offset },
            }),
            public: vec![
                ("updatedAtStart", since_text.clone()),
                ("limit", page_size.min(100).to_string()),
                ("offset", offset.to_string()),
                ("orderBy", "updatedAt|DESC".to_owned()),
            ],
        };
        self.workspace_jobs(workspace_ids, filter).await
    }

    /// One page of the running sync jobs of the given workspaces (all, when
    /// empty), at most `page_size`. A running job's `updatedAt` moves only when
    /// its status or attempt changes, so a listing of changed jobs misses the
    /// counts it emits meanwhile; this one request refreshes them for every
    /// running job at once. On the Config API `incomplete` jobs (between two
    /// attempts) are included; the public API filters on one status only.
    /// Tried once, as polls are.
    pub async fn running_jobs(
        &self,
        workspace_ids: &[String],
        page_size: u32,
    ) -> Result<Vec<Job>, Error> {
        let filter = JobsFilter {
            config: json!({
                "statuses": ["running", "incomplete"],
                "pagination": { "pageSize": page_size, "rowOffset": 0 },
            }),
            public: vec![
                ("status", "running".to_owned()),
                ("limit", page_size.min(100).to_string()),
                ("offset", "0".to_owned()),
            ],
        };
        self.workspace_jobs(workspace_ids, filter).await
    }

    /// The sync jobs of the given workspaces (all, when empty) that `filter`
    /// selects: `jobs/list_for_workspaces` on the Config API, `GET /jobs` on the
    /// public one. Tried once.
    async fn workspace_jobs(
        &self,
        workspace_ids: &[String],
        filter: JobsFilter,
    ) -> Result<Vec<Job>, Error> {
        match self.inner.api {
            ApiKind::Config => {
                let mut body = filter.config;
                body["configTypes"] = json!(["sync"]);
                if !workspace_ids.is_empty() {
                    body["workspaceIds"] = json!(workspace_ids);
                }
                let list: JobReadList = self
                    .send(Call::post("jobs/list_for_workspaces", body).once())
                    .await?;
                Ok(list
                    .jobs
                    .into_iter()
                    .map(JobWithAttemptsRead::into_job)
                    .collect())
            }
            ApiKind::Public => {
                let mut query = vec![("jobType", "sync".to_owned())];
                query.extend(filter.public);
                if !workspace_ids.is_empty() {
                    query.push(("workspaceIds", workspace_ids.join(",")));
                }
                let mut call = Call::get("jobs/list", "/jobs".into()).once();
                call.query = query;
                let page: JobsResponse = self.send(call).await?;
                Ok(page.data.into_iter().map(JobResponse::into_job).collect())
            }
        }
    }

    /// Whether Airbyte says it is available. Not retried: a health check should
    /// report now, not in two minutes.
    pub async fn health(&self) -> Result<bool, Error> {
        let call = Call::get("health", "/health".into());
        match self.inner.api {
            ApiKind::Config => Ok(self.send_once::<HealthCheckRead>(&call).await?.available),
            ApiKind::Public => {
                // The public health check answers 200 with no schema; any 2xx will do.
                self.send_once::<Value>(&call)
                    .await
                    .map(|_| true)
                    .or_else(|e| match e {
                        Error::Decode { .. } => Ok(true),
                        other => Err(other),
                    })
            }
        }
    }

    // -----------------------------------------------------------------------
    // Config API: the rest of the surface (setting pipelines up).

    /// Every workspace: `workspaces/list_by_organization_id` for the OSS
    /// organization, falling back to `workspaces/list` on servers older than 1.7
    /// (it was removed in 1.7).
    pub async fn list_workspaces(&self) -> Result<Vec<WorkspaceRead>, Error> {
        let body = json!({ "organizationId": DEFAULT_ORGANIZATION_ID });
        match self
            .send::<WorkspaceReadList>(Call::post("workspaces/list_by_organization_id", body))
            .await
        {
            Ok(list) => Ok(list.workspaces),
            Err(Error::NotFound { .. }) => Ok(self
                .send::<WorkspaceReadList>(Call::post("workspaces/list", json!({})))
                .await?
                .workspaces),
            Err(other) => Err(other),
        }
    }

    pub async fn list_workspaces_by_organization(
        &self,
        organization_id: &str,
    ) -> Result<Vec<WorkspaceRead>, Error> {
        let body = json!({ "organizationId": organization_id });
        let list: WorkspaceReadList = self
            .send(Call::post("workspaces/list_by_organization_id", body))
            .await?;
        Ok(list.workspaces)
    }

    pub async fn list_source_definitions(&self) -> Result<Vec<SourceDefinitionRead>, Error> {
        let list: SourceDefinitionReadList = self
            .send(Call::post("source_definitions/list", json!({})))
            .await?;
        Ok(list.source_definitions)
    }

    pub async fn list_destination_definitions(
        &self,
    ) -> Result<Vec<DestinationDefinitionRead>, Error> {
        let list: DestinationDefinitionReadList = self
            .send(Call::post("destination_definitions/list", json!({})))
            .await?;
        Ok(list.destination_definitions)
    }

    pub async fn create_source(&self, source: &SourceCreate) -> Result<SourceRead, Error> {
        self.send(Call::post("sources/create", to_value(source)))
            .await
    }

    pub async fn get_source(&self, source_id: &str) -> Result<SourceRead, Error> {
        self.send(Call::post("sources/get", json!({ "sourceId": source_id })))
            .await
    }

    /// Sources of a workspace; the body is accepted by servers before and after 2.0
    /// (2.0 made it a cursor-paginated body whose only required field is this one).
    pub async fn list_sources(&self, workspace_id: &str) -> Result<Vec<SourceRead>, Error> {
        let list: SourceReadList = self
            .send(Call::post(
                "sources/list",
                json!({ "workspaceId": workspace_id }),
            ))
            .await?;
        Ok(list.sources)
    }

    pub async fn update_source(&self, update: &SourceUpdate) -> Result<SourceRead, Error> {
        self.send(Call::post("sources/update", to_value(update)))
            .await
    }

    pub async fn check_source(&self, source_id: &str) -> Result<CheckConnectionRead, Error> {
        self.send(Call::post(
            "sources/check_connection",
            json!({ "sourceId": source_id }),
        ))
        .await
    }

    pub async fn discover_source_schema(
        &self,
        source_id: &str,
    ) -> Result<SourceDiscoverSchemaRead, Error> {
        self.send(Call::post(
            "sources/discover_schema",
            json!({ "sourceId": source_id, "disable_cache": true }),
        ))
        .await
    }

    pub async fn create_destination(
        &self,
        destination: &DestinationCreate,
    ) -> Result<DestinationRead, Error> {
        self.send(Call::post("destinations/create", to_value(destination)))
            .await
    }

    pub async fn get_destination(&self, destination_id: &str) -> Result<DestinationRead, Error> {
        self.send(Call::post(
            "destinations/get",
            json!({ "destinationId": destination_id }),
        ))
        .await
    }

    pub async fn list_destinations(
        &self,
        workspace_id: &str,
    ) -> Result<Vec<DestinationRead>, Error> {
        let list: DestinationReadList = self
            .send(Call::post(
                "destinations/list",
                json!({ "workspaceId": workspace_id }),
            ))
            .await?;
        Ok(list.destinations)
    }

    pub async fn check_destination(
        &self,
        destination_id: &str,
    ) -> Result<CheckConnectionRead, Error> {
        self.send(Call::post(
            "destinations/check_connection",
            json!({ "destinationId": destination_id }),
        ))
        .await
    }

    pub async fn update_destination(
        &self,
        update: &DestinationUpdate,
    ) -> Result<DestinationRead, Error> {
        self.send(Call::post("destinations/update", to_value(update)))
            .await
    }

    /// Deletes a source and, in Airbyte, every connection reading from it. Answers 204.
    pub async fn delete_source(&self, source_id: &str) -> Result<(), Error> {
        let call = Call::post("sources/delete", json!({ "sourceId": source_id }));
        self.send::<NoContent>(call).await.map(|_| ())
    }

    /// Deletes a destination and every connection writing to it. Answers 204.
    pub async fn delete_destination(&self, destination_id: &str) -> Result<(), Error> {
        let call = Call::post(
            "destinations/delete",
            json!({ "destinationId": destination_id }),
        );
        self.send::<NoContent>(call).await.map(|_| ())
    }

    /// Deletes a connection (Airbyte marks it `deprecated`). Answers 204.
    pub async fn delete_connection(&self, connection_id: &str) -> Result<(), Error> {
        let call = Call::post(
            "connections/delete",
            json!({ "connectionId": connection_id }),
        );
        self.send::<NoContent>(call).await.map(|_| ())
    }

    /// Creates a connection from a `ConnectionCreate` body (sourceId, destinationId,
    /// status, syncCatalog, schedule, ...).
    pub async fn create_connection(&self, create: &Value) -> Result<ConnectionRead, Error> {
        self.send(Call::post("connections/create", create.clone()))
            .await
    }

    pub async fn get_connection(&self, connection_id: &str) -> Result<ConnectionRead, Error> {
        self.send(Call::post(
            "connections/get",
            json!({ "connectionId": connection_id }),
        ))
        .await
    }

    pub async fn list_connections(&self, workspace_id: &str) -> Result<Vec<ConnectionRead>, Error> {
        let list: ConnectionReadList = self
            .send(Call::post(
                "connections/list",
                json!({ "workspaceId": workspace_id }),
            ))
            .await?;
        Ok(list.connections)
    }

    /// The connections of a workspace with only what their schedules need, from the web
    /// app's `web_backend/connections/list` in pages of [`CONFIG_PAGE`]: its items carry no
    /// catalog, where `connections/list` answers every catalog of the workspace in one
    /// body (tens of megabytes at ten thousand connections, read whole and parsed at once).
    /// Servers that predate paging answer everything at the first request.
    pub(crate) async fn list_connection_schedules(
        &self,
        workspace_id: &str,
    ) -> Result<Vec<ConnectionScheduleRead>, Error> {
        let mut out: Vec<ConnectionScheduleRead> = Vec::new();
        let mut seen = HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut body = json!({
                "workspaceId": workspace_id,
                "pageSize": CONFIG_PAGE,
                "sortKey": "connectionName_asc",
            });
            if let Some(cursor) = &cursor {
                body["cursor"] = json!(cursor);
            }
            let page: ConnectionScheduleList = self
                .send(Call::post("web_backend/connections/list", body))
                .await?;
            let answered = page.connections.len();
            cursor = page.connections.last().map(|c| c.connection_id.clone());
            let before = out.len();
            for read in page.connections {
                if seen.insert(read.connection_id.to_ascii_lowercase()) {
                    out.push(read);
                }
            }
            // A short page is the last. A server that ignores the page size answers all
            // at once (more than asked for); one that ignored the cursor would answer the
            // same page forever.
            if answered != CONFIG_PAGE as usize || out.len() == before {
                return Ok(out);
            }
        }
    }

    /// Applies a `ConnectionUpdate` body (connectionId plus the fields to change).
    pub async fn update_connection(&self, update: &Value) -> Result<ConnectionRead, Error> {
        self.send(Call::post("connections/update", update.clone()))
            .await
    }

    /// One page of the public API's `GET /connections`, of at most `limit` (1-100)
    /// connections from `offset`, in the given workspaces (every workspace the
    /// credentials reach, when empty). Deleted connections are left out.
    pub async fn list_public_connections(
        &self,
        workspace_ids: &[String],
        limit: u32,
        offset: u32,
    ) -> Result<ConnectionsResponse, Error> {
        let mut call = Call::get("connections/list", "/connections".into());
        call.query = vec![
            ("limit", limit.clamp(1, 100).to_string()),
            ("offset", offset.to_string()),
        ];
        if !workspace_ids.is_empty() {
            call.query.push(("workspaceIds", workspace_ids.join(",")));
        }
        self.send(call).await
    }

    /// The public API's `PATCH /connections/{connectionId}` with `body` (a
    /// `ConnectionPatchRequest`: the fields to change).
    pub async fn patch_public_connection(
        &self,
        connection_id: &str,
        body: &Value,
    ) -> Result<ConnectionResponse, Error> {
        let mut call = Call::post("connections/patch", body.clone());
        call.method = Method::PATCH;
        call.path = format!("/connections/{connection_id}");
        self.send(call).await
    }

    /// `jobs/get`: the job with its attempts and logs, without `aggregatedStats`.
    pub async fn get_job(&self, job_id: i64) -> Result<Job, Error> {
        let call = Call::post("jobs/get", json!({ "id": job_id })).about(Subject::Job);
        Ok(self.send::<JobInfoRead>(call).await?.into_job())
    }

    pub async fn get_job_without_logs(&self, job_id: i64) -> Result<Job, Error> {
        let call = Call::post("jobs/get_without_logs", json!({ "id": job_id })).about(Subject::Job);
        Ok(self.send::<JobInfoRead>(call).await?.into_job())
    }

    // -----------------------------------------------------------------------
    // Sending.

    /// Sends `call`, retrying what may pass within the retry budget, and once
    /// more with a fresh token after a 401 when tokens are minted here.
    async fn send<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, Error> {
        let policy = &self.inner.retry;
        let started = Instant::now();
        let mut retries = 0;
        let mut maybe_delivered = false;
        let mut refreshed_token = false;
        loop {
            match self.send_once::<T>(&call).await {
                Ok(value) => return Ok(value),
                Err(Error::Auth { .. })
                    if !refreshed_token
                        && matches!(self.inner.auth, Auth::ClientCredentials { .. }) =>
                {
                    refreshed_token = true;
                    *self.inner.token.lock().await = None;
                }
                Err(Error::AlreadyRunning {
                    endpoint,
                    connection_id,
                    message,
                    ..
                }) => {
                    return Err(Error::AlreadyRunning {
                        endpoint,
                        connection_id,
                        message,
                        after_lost_answer: maybe_delivered,
                    });
                }
                Err(err) => {
                    let pause = policy.backoff(retries);
                    let out_of_budget = !call.retried
                        || (err.answer_was_lost() && !call.resend_when_lost)
                        || retries >= policy.max_retries
                        || started.elapsed() + pause > policy.max_elapsed;
                    if !err.is_retryable() || out_of_budget {
                        return Err(err);
                    }
                    maybe_delivered |= err.answer_was_lost();
                    tracing::debug!(error = %err, retry = retries + 1, ?pause, "retrying Airbyte call");
                    tokio::time::sleep(pause).await;
                    retries += 1;
                }
            }
        }
    }

    async fn send_once<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<T, Error> {
        let started = Instant::now();
        let result = self.exchange::<T>(call).await;
        if let Some(observer) = &self.inner.observer {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.kind(),
            };
            let elapsed = started.elapsed();
            (observer.report).observe(&observer.instance, call.operation, outcome, elapsed);
        }
        result
    }

    async fn exchange<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<T, Error> {
        let endpoint = call.endpoint();
        let url = format!("{}{}", self.inner.base, call.path);
        let mut request = self.inner.http.request(call.method.clone(), &url);
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        request = self.authorize(request, &endpoint).await?;
        let response = request
            .send()
            .await
            .map_err(|e| self.transport(&endpoint, e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| self.transport(&endpoint, e))?;
        if !status.is_success() {
            return Err(classify(&endpoint, status, &text, call.subject));
        }
        serde_json::from_str(&text).map_err(|e| Error::Decode {
            endpoint,
            detail: excerpt(&e.to_string()),
            excerpt: excerpt(&text),
        })
    }

    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        endpoint: &str,
    ) -> Result<reqwest::RequestBuilder, Error> {
        Ok(match &self.inner.auth {
            Auth::None => request,
            Auth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose_secret()))
            }
            Auth::Bearer { token } => request.bearer_auth(token.expose_secret()),
            Auth::ClientCredentials {
                client_id,
                client_secret,
            } => {
                let token = self.token(client_id, client_secret, endpoint).await?;
                request.bearer_auth(token.expose_secret())
            }
        })
    }

    /// The cached access token, minted anew when it is near its end. The lock is
    /// held across the exchange so concurrent calls wait for one token rather
    /// than each minting their own.
    async fn token(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        endpoint: &str,
    ) -> Result<SecretString, Error> {
        let mut cached = self.inner.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        let token_endpoint = "POST /applications/token".to_owned();
        let mut body = json!({
            "client_id": client_id,
            "client_secret": client_secret.expose_secret(),
        });
        if self.inner.api == ApiKind::Public {
            body["grant_type"] = json!("client_credentials");
        }
        let issued = Instant::now();
        let response = self
            .inner
            .http
            .post(format!("{}/applications/token", self.inner.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport(&token_endpoint, e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| self.transport(&token_endpoint, e))?;
        if !status.is_success() {
            let err = classify(&token_endpoint, status, &text, Subject::Other);
            tracing::warn!(for_endpoint = endpoint, error = %err, "could not obtain an Airbyte access token");
            // A refused secret is an auth failure whatever 4xx the server chose;
            // a throttled or timed-out request (408, 429) is not a refusal.
            let throttled = matches!(status.as_u16(), 408 | 429);
            return Err(if status.is_client_error() && !throttled {
                Error::Auth {
                    endpoint: token_endpoint,
                    status: status.as_u16(),
                    message: ErrorBody::parse(&text).text(),
                }
            } else {
                err
            });
        }
        let answer: TokenAnswer = serde_json::from_str(&text).map_err(|e| Error::Decode {
            endpoint: token_endpoint.clone(),
            detail: excerpt(&e.to_string()),
            // Never echo a token body: it may hold a valid token.
            excerpt: "(token answer withheld)".into(),
        })?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(ASSUMED_TOKEN_LIFETIME);
        // Refresh at 80% of the lifetime, so a token never expires mid-flight.
        let refresh_at = issued + lifetime.mul_f64(0.8);
        let value = SecretString::from(answer.access_token);
        *cached = Some(CachedToken {
            value: value.clone(),
            refresh_at,
        });
        Ok(value)
    }

    fn transport(&self, endpoint: &str, err: reqwest::Error) -> Error {
        if err.is_timeout() {
            Error::Timeout {
                endpoint: endpoint.to_owned(),
                after: self.inner.request_timeout,
            }
        } else {
            Error::Transport {
                endpoint: endpoint.to_owned(),
                detail: describe(&err),
            }
        }
    }
}

/// A reqwest error with its causes, without the URL.
fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_connect() {
        "connect error".to_owned()
    } else if err.is_body() || err.is_decode() {
        "broken answer body".to_owned()
    } else {
        "request error".to_owned()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How a server answers `web_backend/connections/list`.
    #[derive(Clone, Copy)]
    enum Paging {
        /// Everything at once, whatever the page size (servers that predate paging).
        IgnoresPageSize,
        /// Pages of the size asked for, always from the first (the cursor unread).
        IgnoresCursor,
    }

    /// A server of `total` connections answering the web app's listing as `paging`
    /// says, and the number of listings it answered.
    async fn server(total: usize, paging: Paging) -> (Client, Arc<std::sync::Mutex<usize>>) {
        let asked = Arc::new(std::sync::Mutex::new(0));
        let counter = asked.clone();
        let app = axum::Router::new().route(
            "/api/v1/web_backend/connections/list",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let counter = counter.clone();
                async move {
                    *counter.lock().unwrap() += 1;
                    let size = match paging {
                        Paging::IgnoresPageSize => total,
                        Paging::IgnoresCursor => body["pageSize"].as_u64().unwrap() as usize,
                    };
                    let connections: Vec<Value> = (0..total.min(size))
                        .map(|i| {
                            json!({
                                "connectionId": format!("4b5c6d7e-0000-4000-8000-{i:012}"),
                                "name": format!("conn-{i:05}"),
                                "status": "active",
                                "scheduleType": "manual",
                            })
                        })
                        .collect();
                    axum::Json(json!({ "connections": connections }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        crate::tls::install();
        let client = Client::new(ClientSettings::new(
            format!("http://{addr}/api/v1"),
            ApiKind::Config,
        ))
        .expect("a client");
        (client, asked)
    }

    #[tokio::test]
    async fn a_server_that_ignores_the_page_size_is_listed_from_its_one_answer() {
        let (client, asked) = server(1_200, Paging::IgnoresPageSize).await;
        let listed = client
            .list_connection_schedules("ws")
            .await
            .expect("a listing");
        assert_eq!(listed.len(), 1_200);
        assert_eq!(*asked.lock().unwrap(), 1, "one answer held them all");
    }

    #[tokio::test]
    async fn a_server_that_ignores_the_cursor_is_not_asked_forever() {
        let (client, asked) = server(1_200, Paging::IgnoresCursor).await;
        let listed = tokio::time::timeout(
            Duration::from_secs(10),
            client.list_connection_schedules("ws"),
        )
        .await
        .expect("the listing ends")
        .expect("a listing");
        // The second page repeats the first: nothing new, so the listing ends there
        // with what it could see, each connection once.
        assert_eq!(listed.len(), CONFIG_PAGE as usize);
        assert_eq!(*asked.lock().unwrap(), 2);
    }
}
