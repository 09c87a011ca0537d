//! What Airbyte sends and receives, as the real server spells it, and the one
//! normalized [`Job`] the rest of cronbyte reads.
//!
//! The wire types are lenient on purpose: every field the server may leave out
//! (it serializes with `NON_ABSENT`) is optional, and fields cronbyte does not
//! read are kept in `extra` so an update can send them back unchanged.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A job's status, as both APIs spell it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    /// Added after Airbyte 2.0: waiting for capacity.
    Queued,
    Running,
    /// An attempt failed and Airbyte will start another: not terminal.
    Incomplete,
    Failed,
    Succeeded,
    Cancelled,
    /// A status a newer server added that this build does not know; treated as
    /// still in progress so a job is never closed on a guess.
    #[serde(other)]
    Unknown,
}

impl JobStatus {
    /// Whether Airbyte will change this job no more.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Failed | Self::Succeeded | Self::Cancelled)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Incomplete => "incomplete",
            Self::Failed => "failed",
            Self::Succeeded => "succeeded",
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
        }
    }
}

/// One Airbyte job, normalized from whichever API and endpoint answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: i64,
    pub connection_id: String,
    pub status: JobStatus,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// When the first attempt began (`JobRead.startedAt` is never written by the server).
    pub started_at: Option<DateTime<Utc>>,
    /// Attempts so far; the public API does not report them, so it is 0 there.
    pub attempts: u32,
    /// Records committed to the destination, when the answer carried counts.
    pub records_synced: Option<u64>,
    /// Bytes committed to the destination, when the answer carried counts.
    pub bytes_synced: Option<u64>,
    /// Records the source emitted so far. Only the Config API reports them; they
    /// move while a job runs, where committed counts move at checkpoints only.
    pub records_emitted: Option<u64>,
    /// Bytes the source emitted so far (Config API only).
    pub bytes_emitted: Option<u64>,
    /// The newest failure Airbyte gave, for a failed or incomplete job.
    pub failure: Option<String>,
}

// ---------------------------------------------------------------------------
// Config API: jobs

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRead {
    pub id: i64,
    #[serde(default)]
    pub config_type: Option<String>,
    pub config_id: String,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default)]
    pub started_at: Option<i64>,
    pub status: JobStatus,
    #[serde(default)]
    pub aggregated_stats: Option<JobAggregatedStats>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobAggregatedStats {
    #[serde(default)]
    pub records_emitted: Option<u64>,
    #[serde(default)]
    pub bytes_emitted: Option<u64>,
    #[serde(default)]
    pub records_committed: Option<u64>,
    #[serde(default)]
    pub bytes_committed: Option<u64>,
    #[serde(default)]
    pub records_rejected: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptStats {
    #[serde(default)]
    pub records_emitted: Option<u64>,
    #[serde(default)]
    pub bytes_emitted: Option<u64>,
    #[serde(default)]
    pub records_committed: Option<u64>,
    #[serde(default)]
    pub bytes_committed: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRead {
    pub id: i64,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default)]
    pub ended_at: Option<i64>,
    /// Legacy count, filled from the attempt output once the attempt ended.
    #[serde(default)]
    pub bytes_synced: Option<u64>,
    /// Legacy count, filled from the attempt output once the attempt ended.
    #[serde(default)]
    pub records_synced: Option<u64>,
    #[serde(default)]
    pub total_stats: Option<AttemptStats>,
    #[serde(default)]
    pub failure_summary: Option<AttemptFailureSummary>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AttemptFailureSummary {
    #[serde(default)]
    pub failures: Vec<FailureReason>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureReason {
    #[serde(default)]
    pub failure_origin: Option<String>,
    #[serde(default)]
    pub failure_type: Option<String>,
    #[serde(default)]
    pub external_message: Option<String>,
    #[serde(default)]
    pub internal_message: Option<String>,
    /// Epoch milliseconds (unlike every other timestamp of the Config API).
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// One entry of `jobs/list`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct JobWithAttemptsRead {
    pub job: JobRead,
    #[serde(default)]
    pub attempts: Vec<AttemptRead>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReadList {
    pub jobs: Vec<JobWithAttemptsRead>,
    #[serde(default)]
    pub total_job_count: Option<i64>,
}

/// The answer of `jobs/get`, `jobs/get_without_logs` and `jobs/cancel`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct JobInfoRead {
    pub job: JobRead,
    #[serde(default)]
    pub attempts: Vec<AttemptInfoRead>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct AttemptInfoRead {
    pub attempt: AttemptRead,
}

fn epoch(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}

impl JobWithAttemptsRead {
    /// Normalizes one job; counts come from wherever this server put them.
    pub fn into_job(self) -> Job {
        normalize(self.job, self.attempts)
    }
}

impl JobInfoRead {
    pub fn into_job(self) -> Job {
        normalize(
            self.job,
            self.attempts.into_iter().map(|a| a.attempt).collect(),
        )
    }
}

/// Reads the committed and emitted counts from `aggregatedStats` when the
/// endpoint filled it, else sums them over the attempts (`totalStats`, then the
/// legacy `recordsSynced`/`bytesSynced` for committed ones), since no `summary`
/// object exists in any version.
fn normalize(job: JobRead, attempts: Vec<AttemptRead>) -> Job {
    let counts = match &job.aggregated_stats {
        Some(stats) => [
            stats.records_committed,
            stats.bytes_committed,
            stats.records_emitted,
            stats.bytes_emitted,
        ],
        None => {
            let mut sums = [None; 4];
            for attempt in &attempts {
                let stats = attempt.total_stats.as_ref();
                let each = [
                    stats
                        .and_then(|s| s.records_committed)
                        .or(attempt.records_synced),
                    stats
                        .and_then(|s| s.bytes_committed)
                        .or(attempt.bytes_synced),
                    stats.and_then(|s| s.records_emitted),
                    stats.and_then(|s| s.bytes_emitted),
                ];
                for (sum, count) in sums.iter_mut().zip(each) {
                    if let Some(count) = count {
                        *sum = Some(sum.unwrap_or(0u64).saturating_add(count));
                    }
                }
            }
            sums
        }
    };
    let [records, bytes, records_emitted, bytes_emitted] = counts;
    let failure = attempts
        .iter()
        .rev()
        .filter_map(|a| a.failure_summary.as_ref())
        .flat_map(|s| s.failures.first())
        .find_map(|f| {
            f.external_message
                .clone()
                .or_else(|| f.internal_message.clone())
        });
    let started_at = attempts
        .iter()
        .map(|a| a.created_at)
        .min()
        .or(job.started_at)
        .and_then(epoch);
    Job {
        id: job.id,
        connection_id: job.config_id,
        status: job.status,
        created_at: epoch(job.created_at),
        updated_at: epoch(job.updated_at),
        started_at,
        attempts: u32::try_from(attempts.len()).unwrap_or(u32::MAX),
        records_synced: records,
        bytes_synced: bytes,
        records_emitted,
        bytes_emitted,
        failure,
    }
}

// ---------------------------------------------------------------------------
// Public API: jobs

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResponse {
    pub job_id: i64,
    pub status: JobStatus,
    #[serde(default)]
    pub job_type: Option<String>,
    #[serde(default)]
    pub start_time: Option<String>,
    pub connection_id: String,
    #[serde(default)]
    pub last_updated_at: Option<String>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub bytes_synced: Option<u64>,
    #[serde(default)]
    pub rows_synced: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct JobsResponse {
    #[serde(default)]
    pub previous: Option<String>,
    #[serde(default)]
    pub next: Option<String>,
    pub data: Vec<JobResponse>,
}

/// Reads the public API's times. They come from Java's `OffsetDateTime.toString()`,
/// which leaves out seconds that are zero (`2023-08-01T11:47Z`), so both forms occur.
fn rfc3339(text: &Option<String>) -> Option<DateTime<Utc>> {
    let text = text.as_deref()?;
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M%#z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_times_are_read_with_or_without_zero_seconds() {
        let with = rfc3339(&Some("2023-08-01T11:47:05Z".into())).unwrap();
        let without = rfc3339(&Some("2023-08-01T11:47Z".into())).unwrap();
        let offset = rfc3339(&Some("2023-08-01T13:47+02:00".into())).unwrap();
        assert_eq!(with.timestamp() - 5, without.timestamp());
        assert_eq!(without, offset);
    }

    #[test]
    fn a_running_job_s_emitted_counts_are_read_beside_its_committed_ones() {
        let listed: JobWithAttemptsRead = serde_json::from_value(serde_json::json!({
            "job": {
                "id": 7, "configType": "sync", "configId": "c", "createdAt": 100,
                "updatedAt": 100, "status": "running",
                "aggregatedStats": {
                    "recordsEmitted": 5000, "bytesEmitted": 640000,
                    "recordsCommitted": 4000, "bytesCommitted": 512000
                }
            },
            "attempts": [{ "id": 0, "status": "running", "createdAt": 100, "updatedAt": 100 }]
        }))
        .unwrap();
        let job = listed.into_job();
        assert_eq!(
            (job.records_emitted, job.bytes_emitted),
            (Some(5000), Some(640000))
        );
        assert_eq!(
            (job.records_synced, job.bytes_synced),
            (Some(4000), Some(512000))
        );

        // Without aggregatedStats (plain `jobs/get`), the attempts' totalStats are summed.
        let got: JobInfoRead = serde_json::from_value(serde_json::json!({
            "job": { "id": 8, "configId": "c", "createdAt": 1, "updatedAt": 2, "status": "incomplete" },
            "attempts": [
                { "attempt": { "id": 0, "status": "failed", "createdAt": 1, "updatedAt": 2,
                    "totalStats": { "recordsEmitted": 30, "bytesEmitted": 300, "recordsCommitted": 0 } } },
                { "attempt": { "id": 1, "status": "running", "createdAt": 2, "updatedAt": 2,
                    "totalStats": { "recordsEmitted": 12, "bytesEmitted": 120 } } }
            ]
        }))
        .unwrap();
        let job = got.into_job();
        assert_eq!(
            (job.records_emitted, job.bytes_emitted),
            (Some(42), Some(420))
        );
        assert_eq!(job.records_synced, Some(0));
    }

    #[test]
    fn the_public_api_gives_committed_counts_only() {
        let job: JobResponse = serde_json::from_value(serde_json::json!({
            "jobId": 3, "status": "running", "connectionId": "c",
            "rowsSynced": 70, "bytesSynced": 700
        }))
        .unwrap();
        let job = job.into_job();
        assert_eq!(
            (job.records_synced, job.bytes_synced),
            (Some(70), Some(700))
        );
        assert_eq!((job.records_emitted, job.bytes_emitted), (None, None));
    }
}

impl JobResponse {
    /// The public API reports committed counts as `bytesSynced`/`rowsSynced` and
    /// neither emitted counts, attempts nor failure reasons.
    pub fn into_job(self) -> Job {
        let started = rfc3339(&self.start_time);
        Job {
            id: self.job_id,
            connection_id: self.connection_id,
            status: self.status,
            created_at: started,
            updated_at: rfc3339(&self.last_updated_at),
            started_at: started,
            attempts: 0,
            records_synced: self.rows_synced,
            bytes_synced: self.bytes_synced,
            records_emitted: None,
            bytes_emitted: None,
            failure: None,
        }
    }
}

// ---------------------------------------------------------------------------
// Config API: workspaces, definitions, sources, destinations, connections

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceRead {
    pub workspace_id: String,
    pub name: String,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceDefinitionRead {
    pub source_definition_id: String,
    pub name: String,
    #[serde(default)]
    pub docker_repository: Option<String>,
    #[serde(default)]
    pub docker_image_tag: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationDefinitionRead {
    pub destination_definition_id: String,
    pub name: String,
    #[serde(default)]
    pub docker_repository: Option<String>,
    #[serde(default)]
    pub docker_image_tag: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRead {
    pub source_id: String,
    pub source_definition_id: String,
    pub workspace_id: String,
    pub name: String,
    #[serde(default)]
    pub source_name: Option<String>,
    /// Secrets come back masked as `**********`; sending the mask back keeps them.
    pub connection_configuration: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRead {
    pub destination_id: String,
    pub destination_definition_id: String,
    pub workspace_id: String,
    pub name: String,
    #[serde(default)]
    pub destination_name: Option<String>,
    /// Secrets come back masked as `**********`; sending the mask back keeps them.
    pub connection_configuration: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceCreate {
    pub workspace_id: String,
    pub name: String,
    pub source_definition_id: String,
    pub connection_configuration: Value,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceUpdate {
    pub source_id: String,
    pub name: String,
    pub connection_configuration: Value,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationCreate {
    pub workspace_id: String,
    pub name: String,
    pub destination_definition_id: String,
    pub connection_configuration: Value,
}

/// The outcome of `sources/check_connection` or `destinations/check_connection`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CheckConnectionRead {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

impl CheckConnectionRead {
    pub fn succeeded(&self) -> bool {
        self.status.as_deref() == Some("succeeded")
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceDiscoverSchemaRead {
    /// An `AirbyteCatalog`: `{streams: [{stream, config}]}`.
    #[serde(default)]
    pub catalog: Option<Value>,
    #[serde(default)]
    pub catalog_id: Option<String>,
    /// The discover job: when the connector failed, there is no catalog and this says why.
    #[serde(default)]
    pub job_info: Option<SynchronousJobRead>,
}

/// A job Airbyte ran to answer the request (`SynchronousJobRead`): check, discover, spec.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SynchronousJobRead {
    #[serde(default)]
    pub succeeded: Option<bool>,
    #[serde(default)]
    pub failure_reason: Option<FailureReason>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationUpdate {
    pub destination_id: String,
    pub name: String,
    pub connection_configuration: Value,
}

/// The body of an answer that has none (204): whatever the server sends is not read.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoContent;

impl<'de> Deserialize<'de> for NoContent {
    /// Reads nothing, so an empty body (which no JSON value is) decodes.
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(NoContent)
    }
}

/// A connection as `connections/get|list|create|update` return it. The catalog and
/// schedule stay JSON: cronbyte passes them through rather than model every
/// connector's shape.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRead {
    pub connection_id: String,
    pub name: String,
    pub source_id: String,
    pub destination_id: String,
    pub status: String,
    #[serde(default)]
    pub sync_catalog: Option<Value>,
    #[serde(default)]
    pub schedule_type: Option<String>,
    #[serde(default)]
    pub schedule_data: Option<Value>,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A connection as the public API shows it (`ConnectionResponse`): only what the schedule
/// readers need is typed; the schedule stays JSON for [`super::schedule`] to read.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionResponse {
    pub connection_id: String,
    pub name: String,
    #[serde(default)]
    pub workspace_id: Option<String>,
    pub status: String,
    /// `ConnectionScheduleResponse`: `scheduleType`, and `cronExpression` or `basicTiming`.
    #[serde(default)]
    pub schedule: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One page of the public `GET /connections`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ConnectionsResponse {
    #[serde(default)]
    pub previous: Option<String>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub data: Vec<ConnectionResponse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WorkspaceReadList {
    pub workspaces: Vec<WorkspaceRead>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SourceDefinitionReadList {
    pub source_definitions: Vec<SourceDefinitionRead>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DestinationDefinitionReadList {
    pub destination_definitions: Vec<DestinationDefinitionRead>,
}

#[derive(Deserialize)]
pub(crate) struct SourceReadList {
    pub sources: Vec<SourceRead>,
}

#[derive(Deserialize)]
pub(crate) struct DestinationReadList {
    pub destinations: Vec<DestinationRead>,
}

#[derive(Deserialize)]
pub(crate) struct ConnectionReadList {
    pub connections: Vec<ConnectionRead>,
}

/// A connection of the Config API's `connections/list` as the schedule readers need
/// it. Every other field (the catalog above all, kilobytes per connection) is skipped
/// while the answer is read rather than kept: the daemon lists every connection now
/// and then, and ten thousand catalogs read into JSON values took some 300 MB.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConnectionScheduleRead {
    pub connection_id: String,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub schedule_type: Option<String>,
    #[serde(default)]
    pub schedule_data: Option<Value>,
    /// The legacy basic schedule of servers that predate `scheduleType`.
    #[serde(default)]
    pub schedule: Option<Value>,
    #[serde(default)]
    pub workspace_id: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ConnectionScheduleList {
    pub connections: Vec<ConnectionScheduleRead>,
}

#[derive(Deserialize)]
pub(crate) struct HealthCheckRead {
    pub available: bool,
}

#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}
