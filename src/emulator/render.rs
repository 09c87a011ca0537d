//! How the emulator's data looks on the wire: `JobRead`, `AttemptRead`, `JobInfoRead`,
//! `SourceRead`, `ConnectionRead`, the public `JobResponse` and `ConnectionResponse`, and the
//! Java-flavoured date and duration strings the public API uses. Absent values are left out,
//! never `null`, as the real server's `NON_ABSENT` serialization does.

use chrono::{DateTime, Timelike};
use serde_json::{Map, Value, json};

use super::catalog::mask_secrets;
use super::plan::{AttemptStatus, AttemptView, Counts, Failure, JobStatus, JobView};
use super::state::{Actor, Connection, Job, State};

/// Which attempt statistics an operation shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttemptStats {
    /// From the stats tables, live while the attempt runs (`jobs/list`).
    Live,
    /// From the attempt's output, so only once it ended (`jobs/get`, `jobs/get_without_logs`).
    EndedOnly,
}

/// The flavours of `JobInfoRead`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InfoFlavour {
    /// `jobs/get`, `jobs/cancel`, `connections/sync`: logs, no aggregated stats.
    WithLogs,
    /// `jobs/get_without_logs`: live aggregated stats, no logs.
    WithoutLogs,
}

fn attempt_stats(counts: &Counts) -> Value {
    json!({
        "recordsEmitted": counts.records_emitted,
        "bytesEmitted": counts.bytes_emitted,
        "recordsCommitted": counts.records_committed,
        "bytesCommitted": counts.bytes_committed,
        "recordsRejected": 0,
    })
}

/// `amount` split over `parts` as evenly as integers allow; the parts add up to `amount`.
fn split(amount: u64, parts: usize, index: usize) -> u64 {
    let parts = u64::try_from(parts.max(1)).unwrap_or(1);
    let index = u64::try_from(index).unwrap_or(0);
    amount / parts + u64::from(index < amount % parts)
}

fn stream_counts(counts: &Counts, streams: usize, index: usize) -> Counts {
    Counts {
        records_emitted: split(counts.records_emitted, streams, index),
        bytes_emitted: split(counts.bytes_emitted, streams, index),
        records_committed: split(counts.records_committed, streams, index),
        bytes_committed: split(counts.bytes_committed, streams, index),
    }
}

fn with_namespace(mut value: Value, namespace: &Option<String>, key: &str) -> Value {
    if let (Some(namespace), Some(map)) = (namespace, value.as_object_mut()) {
        map.insert(key.into(), json!(namespace));
    }
    value
}

fn failure_reason(job: &Job, attempt: &AttemptView, failure: &Failure) -> Value {
    let at = attempt.ended.unwrap_or(attempt.started);
    match failure {
        Failure::Planned(message) => json!({
            "failureOrigin": "source",
            "failureType": "system_error",
            "externalMessage": message,
            "internalMessage": format!("io.airbyte.workers.internal.exception.SourceException: {message}"),
            "stacktrace": format!("io.airbyte.workers.internal.exception.SourceException: {message}\n\tat io.airbyte.container.orchestrator.worker.ReplicationWorker.run(ReplicationWorker.kt:142)\n"),
            "retryable": true,
            "timestamp": job.epoch_ms(at),
        }),
        Failure::Cancelled => json!({
            "failureOrigin": "airbyte_platform",
            "failureType": "manual_cancellation",
            "externalMessage": "The sync was cancelled.",
            "timestamp": job.epoch_ms(at),
        }),
    }
}

/// `AttemptRead`.
pub(crate) fn attempt_read(job: &Job, attempt: &AttemptView, stats: AttemptStats) -> Value {
    let mut read = Map::new();
    read.insert("id".into(), json!(attempt.number));
    read.insert("status".into(), json!(attempt.status.as_str()));
    read.insert("createdAt".into(), json!(job.epoch_secs(attempt.started)));
    let updated = attempt.ended.unwrap_or(attempt.started);
    read.insert("updatedAt".into(), json!(job.epoch_secs(updated)));
    if let Some(ended) = attempt.ended {
        read.insert("endedAt".into(), json!(job.epoch_secs(ended)));
        // Legacy counters from the attempt output: what the source emitted.
        read.insert("bytesSynced".into(), json!(attempt.counts.bytes_emitted));
        read.insert(
            "recordsSynced".into(),
            json!(attempt.counts.records_emitted),
        );
    }
    if stats == AttemptStats::Live || attempt.ended.is_some() {
        read.insert("totalStats".into(), attempt_stats(&attempt.counts));
        let streams: Vec<Value> = job
            .streams
            .iter()
            .enumerate()
            .map(|(index, (name, namespace))| {
                let counts = stream_counts(&attempt.counts, job.streams.len(), index);
                with_namespace(
                    json!({"streamName": name, "stats": attempt_stats(&counts)}),
                    namespace,
                    "streamNamespace",
                )
            })
            .collect();
        read.insert("streamStats".into(), json!(streams));
    }
    if let (AttemptStatus::Failed, Some(failure)) = (attempt.status, &attempt.failure) {
        read.insert(
            "failureSummary".into(),
            json!({
                "failures": [failure_reason(job, attempt, failure)],
                "partialSuccess": false,
            }),
        );
    }
    Value::Object(read)
}

/// `JobRead`, with the aggregated statistics only where the real server computes them.
pub(crate) fn job_read(job: &Job, view: &JobView, aggregated: bool) -> Value {
    let streams: Vec<Value> = job
        .streams
        .iter()
        .map(|(name, namespace)| with_namespace(json!({"name": name}), namespace, "namespace"))
        .collect();
    let mut read = json!({
        "id": job.id,
        "configType": job.kind.config_type(),
        "configId": job.connection_id.to_string(),
        "enabledStreams": streams,
        "createdAt": job.created_secs(),
        "updatedAt": job.epoch_secs(view.updated),
        "status": view.status.as_str(),
    });
    let Some(map) = read.as_object_mut() else {
        return read;
    };
    if job.kind != super::state::JobKind::Sync {
        map.insert(
            "resetConfig".into(),
            json!({"streamsToReset": map.get("enabledStreams").cloned().unwrap_or_default()}),
        );
    }
    if aggregated {
        let totals = view.totals();
        map.insert(
            "aggregatedStats".into(),
            json!({
                "recordsEmitted": totals.records_emitted,
                "bytesEmitted": totals.bytes_emitted,
                "recordsCommitted": totals.records_committed,
                "bytesCommitted": totals.bytes_committed,
                "recordsRejected": 0,
            }),
        );
        let per_stream: Vec<Value> = job
            .streams
            .iter()
            .enumerate()
            .map(|(index, (name, namespace))| {
                let counts = stream_counts(&totals, job.streams.len(), index);
                with_namespace(
                    json!({
                        "streamName": name,
                        "recordsEmitted": counts.records_emitted,
                        "bytesEmitted": counts.bytes_emitted,
                        "recordsCommitted": counts.records_committed,
                        "bytesCommitted": counts.bytes_committed,
                        "recordsRejected": 0,
                        "wasBackfilled": false,
                        "wasResumed": false,
                    }),
                    namespace,
                    "streamNamespace",
                )
            })
            .collect();
        map.insert("streamAggregatedStats".into(), json!(per_stream));
    }
    read
}

/// `JobInfoRead`.
pub(crate) fn job_info_read(job: &Job, view: &JobView, flavour: InfoFlavour) -> Value {
    let attempts: Vec<Value> = view
        .attempts
        .iter()
        .map(|attempt| {
            let read = attempt_read(job, attempt, AttemptStats::EndedOnly);
            match flavour {
                InfoFlavour::WithLogs => json!({
                    "attempt": read,
                    "logType": "formatted",
                    "logs": {"logLines": []},
                }),
                InfoFlavour::WithoutLogs => json!({"attempt": read}),
            }
        })
        .collect();
    json!({
        "job": job_read(job, view, flavour == InfoFlavour::WithoutLogs),
        "attempts": attempts,
    })
}

/// `JobWithAttemptsRead`, as `jobs/list` shows it.
pub(crate) fn job_with_attempts(job: &Job, view: &JobView) -> Value {
    let attempts: Vec<Value> = view
        .attempts
        .iter()
        .map(|attempt| attempt_read(job, attempt, AttemptStats::Live))
        .collect();
    json!({"job": job_read(job, view, true), "attempts": attempts})
}

/// `OffsetDateTime.toString()` of a UTC instant: Java leaves out `:00` seconds.
pub(crate) fn java_date_time(epoch_secs: i64) -> String {
    let Some(at) = DateTime::from_timestamp(epoch_secs, 0) else {
        return String::new();
    };
    if at.second() == 0 {
        at.format("%Y-%m-%dT%H:%MZ").to_string()
    } else {
        at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

/// `java.time.Duration.toString()` of whole seconds: `PT0S`, `PT45S`, `PT1H2M`, ...
pub(crate) fn java_duration(seconds: i64) -> String {
    if seconds == 0 {
        return "PT0S".into();
    }
    let (sign, seconds) = if seconds < 0 {
        ("-", seconds.unsigned_abs())
    } else {
        ("", seconds.unsigned_abs())
    };
    let hours = seconds / 3600;
    let minutes = seconds % 3600 / 60;
    let secs = seconds % 60;
    let mut text = String::from("PT");
    if hours > 0 {
        text.push_str(&format!("{sign}{hours}H"));
    }
    if minutes > 0 {
        text.push_str(&format!("{sign}{minutes}M"));
    }
    if secs > 0 {
        text.push_str(&format!("{sign}{secs}S"));
    }
    text
}

/// The public `JobResponse`. `synced` says whether the Config API call behind the public
/// one carried aggregated stats (job get and list do; create and cancel do not).
pub(crate) fn public_job(job: &Job, view: &JobView, synced: bool) -> Value {
    let created = job.created_secs();
    let updated = job.epoch_secs(view.updated);
    let mut response = json!({
        "jobId": job.id,
        "status": view.status.as_str(),
        "jobType": job.kind.public_type(),
        "startTime": java_date_time(created),
        "connectionId": job.connection_id.to_string(),
    });
    let Some(map) = response.as_object_mut() else {
        return response;
    };
    if view.status.is_terminal() {
        map.insert("lastUpdatedAt".into(), json!(java_date_time(updated)));
    }
    if view.status != JobStatus::Pending {
        map.insert("duration".into(), json!(java_duration(updated - created)));
    }
    if synced {
        let totals = view.totals();
        map.insert("bytesSynced".into(), json!(totals.bytes_committed));
        map.insert("rowsSynced".into(), json!(totals.records_committed));
    }
    response
}

/// `WorkspaceRead`.
pub(crate) fn workspace_read(state: &State) -> Value {
    let workspace = &state.workspace;
    json!({
        "workspaceId": workspace.id,
        "customerId": workspace.customer_id,
        "email": workspace.email,
        "name": workspace.name,
        "slug": workspace.slug,
        "initialSetupComplete": true,
        "displaySetupWizard": false,
        "anonymousDataCollection": false,
        "news": false,
        "securityUpdates": false,
        "notifications": [],
        "notificationSettings": {
            "sendOnSuccess": {"notificationType": []},
            "sendOnFailure": {"notificationType": ["customerio"]},
            "sendOnSyncDisabled": {"notificationType": ["customerio"]},
            "sendOnSyncDisabledWarning": {"notificationType": ["customerio"]},
            "sendOnConnectionUpdate": {"notificationType": ["customerio"]},
            "sendOnConnectionUpdateActionRequired": {"notificationType": ["customerio"]},
            "sendOnBreakingChangeWarning": {"notificationType": ["customerio"]},
            "sendOnBreakingChangeSyncsDisabled": {"notificationType": ["customerio"]},
        },
        "firstCompletedSync": state.jobs.iter().any(|j| j.kind == super::state::JobKind::Sync),
        "feedbackDone": false,
        "webhookConfigs": [],
        "organizationId": super::state::DEFAULT_ORGANIZATION,
        "tombstone": false,
    })
}

/// `SourceRead` or `DestinationRead`.
pub(crate) fn actor_read(state: &State, actor: &Actor, is_source: bool) -> Value {
    let (definition_key, id_key, name_key) = if is_source {
        ("sourceDefinitionId", "sourceId", "sourceName")
    } else {
        (
            "destinationDefinitionId",
            "destinationId",
            "destinationName",
        )
    };
    json!({
        definition_key: actor.definition_id,
        id_key: actor.id,
        "workspaceId": actor.workspace_id,
        "connectionConfiguration": mask_secrets(&actor.configuration),
        "name": actor.name,
        name_key: actor.definition_name,
        "isVersionOverrideApplied": false,
        "isEntitled": true,
        "supportState": "supported",
        "status": if state.actor_is_active(actor) { "active" } else { "inactive" },
        "createdAt": actor.created_at,
    })
}

/// `WebBackendConnectionListItem`: what the web app's connection list shows, no catalog.
pub(crate) fn connection_list_item(
    state: &State,
    connection: &Connection,
    now: tokio::time::Instant,
) -> Value {
    let mut schedule = Map::new();
    connection.schedule.write_into(&mut schedule);
    // The legacy `schedule` is a `ConnectionRead` field only.
    schedule.remove("schedule");
    let mut item = json!({
        "connectionId": connection.id,
        "name": connection.name,
        "status": connection.status,
        "source": actor_snippet(state, connection.source_id, true),
        "destination": actor_snippet(state, connection.destination_id, false),
        "isSyncing": false,
        "schemaChange": "no_change",
        "sourceActorDefinitionVersion": definition_version(state, connection.source_id, true),
        "destinationActorDefinitionVersion":
            definition_version(state, connection.destination_id, false),
        "tags": [],
        "onDemandEnabled": false,
    });
    let Some(map) = item.as_object_mut() else {
        return item;
    };
    map.extend(schedule);
    let latest_sync = connection
        .job_ids
        .iter()
        .rev()
        .filter_map(|id| state.job(*id))
        .find(|job| job.kind == super::state::JobKind::Sync);
    if let Some(job) = latest_sync {
        let status = job.view(now).status;
        map.insert("latestSyncJobCreatedAt".into(), json!(job.created_secs()));
        map.insert("latestSyncJobStatus".into(), json!(status.as_str()));
        map.insert("isSyncing".into(), json!(!status.is_terminal()));
    }
    item
}

/// `SourceSnippetRead` or `DestinationSnippetRead`.
fn actor_snippet(state: &State, id: uuid::Uuid, is_source: bool) -> Value {
    let actor = if is_source {
        state.sources.by_id.get(&id)
    } else {
        state.destinations.by_id.get(&id)
    };
    let (name, definition_id, definition_name) = actor.map_or_else(
        || (String::new(), uuid::Uuid::nil(), ""),
        |a| (a.name.clone(), a.definition_id, a.definition_name),
    );
    if is_source {
        json!({"sourceId": id, "name": name, "sourceDefinitionId": definition_id,
            "sourceName": definition_name})
    } else {
        json!({"destinationId": id, "name": name, "destinationDefinitionId": definition_id,
            "destinationName": definition_name})
    }
}

/// `ActorDefinitionVersionRead` of the connector behind an actor.
fn definition_version(state: &State, id: uuid::Uuid, is_source: bool) -> Value {
    let (actor, definitions) = if is_source {
        (state.sources.by_id.get(&id), &state.source_definitions)
    } else {
        (
            state.destinations.by_id.get(&id),
            &state.destination_definitions,
        )
    };
    let definition = actor.and_then(|a| definitions.iter().find(|d| d.id == a.definition_id));
    let (repository, tag) = definition.map_or(("", ""), |d| (d.repository, d.tag));
    json!({
        "dockerRepository": repository,
        "dockerImageTag": tag,
        "supportsRefreshes": false,
        "supportState": "supported",
        "isVersionOverrideApplied": false,
        "supportsFileTransfer": false,
        "supportsDataActivation": false,
    })
}

/// `ConnectionRead`.
pub(crate) fn connection_read(connection: &Connection) -> Value {
    let mut read = connection.settings.clone();
    read.insert("connectionId".into(), json!(connection.id));
    read.insert("name".into(), json!(connection.name));
    read.insert("sourceId".into(), json!(connection.source_id));
    read.insert("destinationId".into(), json!(connection.destination_id));
    read.insert("syncCatalog".into(), connection.sync_catalog.clone());
    read.insert("status".into(), json!(connection.status));
    read.insert("created_at".into(), json!(connection.created_at));
    read.insert("workspaceId".into(), json!(connection.workspace_id));
    connection.schedule.write_into(&mut read);
    read.retain(|_, value| !value.is_null());
    Value::Object(read)
}

/// The public `ConnectionSyncModeEnum` of a configured stream, as `ConnectionReadMapper` pairs
/// the source and destination modes; `None` for pairs it has no name for.
fn public_sync_mode(config: &Value) -> Option<&'static str> {
    let source = config.get("syncMode").and_then(Value::as_str);
    let destination = config.get("destinationSyncMode").and_then(Value::as_str);
    match (source, destination) {
        (Some("full_refresh"), Some("overwrite")) => Some("full_refresh_overwrite"),
        (Some("full_refresh"), Some("append")) => Some("full_refresh_append"),
        (Some("full_refresh"), Some("overwrite_dedup")) => Some("full_refresh_overwrite_deduped"),
        (Some("incremental"), Some("append")) => Some("incremental_append"),
        (Some("incremental"), Some("append_dedup")) => Some("incremental_deduped_history"),
        (Some("full_refresh" | "incremental"), Some(_)) => None,
        // A mode missing, or a source mode it does not know: the mapper falls back to this.
        _ => Some("full_refresh_overwrite"),
    }
}

/// The public `StreamConfigurations` of a connection: its selected streams, since the server
/// stores only those in the configured catalog it reads them from.
fn stream_configurations(catalog: &Value) -> Value {
    let streams: Vec<Value> = catalog
        .get("streams")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|s| {
            s.pointer("/config/selected")
                .and_then(Value::as_bool)
                .unwrap_or(true)
        })
        .map(|s| {
            let config = s.get("config").cloned().unwrap_or_else(|| json!({}));
            let mut stream = Map::new();
            stream.insert(
                "name".into(),
                s.pointer("/stream/name").cloned().unwrap_or_default(),
            );
            stream.insert(
                "namespace".into(),
                s.pointer("/stream/namespace").cloned().unwrap_or_default(),
            );
            for key in ["primaryKey", "cursorField", "includeFiles", "mappers"] {
                stream.insert(key.into(), config.get(key).cloned().unwrap_or_default());
            }
            if let Some(mode) = public_sync_mode(&config) {
                stream.insert("syncMode".into(), json!(mode));
            }
            stream.retain(|_, value| !value.is_null());
            Value::Object(stream)
        })
        .collect();
    json!({"streams": streams})
}

/// The public `ConnectionResponse`, mapped from the connection's `ConnectionRead` the way
/// `ConnectionReadMapper` maps it.
pub(crate) fn public_connection(connection: &Connection) -> Value {
    let setting = |key: &str| connection.settings.get(key).filter(|v| !v.is_null());
    let mut response = Map::new();
    response.insert("connectionId".into(), json!(connection.id));
    response.insert("name".into(), json!(connection.name));
    response.insert("sourceId".into(), json!(connection.source_id));
    response.insert("destinationId".into(), json!(connection.destination_id));
    response.insert("workspaceId".into(), json!(connection.workspace_id));
    response.insert("status".into(), json!(connection.status));
    response.insert("schedule".into(), connection.schedule.public_response());
    if let Some(preference) = setting("nonBreakingChangesPreference").and_then(Value::as_str) {
        let behaviour = if preference == "disable" {
            "disable_connection"
        } else {
            preference
        };
        response.insert("nonBreakingSchemaUpdatesBehavior".into(), json!(behaviour));
    }
    if let Some(definition) = setting("namespaceDefinition").and_then(Value::as_str) {
        let definition = if definition == "customformat" {
            "custom_format"
        } else {
            definition
        };
        response.insert("namespaceDefinition".into(), json!(definition));
    }
    for key in ["namespaceFormat", "prefix", "statusReason"] {
        if let Some(value) = setting(key) {
            response.insert(key.into(), value.clone());
        }
    }
    response.insert(
        "configurations".into(),
        stream_configurations(&connection.sync_catalog),
    );
    response.insert("createdAt".into(), json!(connection.created_at));
    response.insert(
        "tags".into(),
        setting("tags").cloned().unwrap_or_else(|| json!([])),
    );
    Value::Object(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_date_times_drop_zero_seconds_like_offset_date_time_does() {
        assert_eq!(java_date_time(1_690_890_462), "2023-08-01T11:47:42Z");
        assert_eq!(java_date_time(1_690_890_420), "2023-08-01T11:47Z");
    }

    #[test]
    fn java_durations_spell_only_the_parts_they_have() {
        assert_eq!(java_duration(0), "PT0S");
        assert_eq!(java_duration(45), "PT45S");
        assert_eq!(java_duration(60), "PT1M");
        assert_eq!(java_duration(3_723), "PT1H2M3S");
        assert_eq!(java_duration(29_172), "PT8H6M12S");
        assert_eq!(java_duration(7_200), "PT2H");
    }

    #[test]
    fn a_split_adds_up_to_the_whole() {
        let parts: Vec<u64> = (0..3).map(|i| split(1_000, 3, i)).collect();
        assert_eq!(parts, vec![334, 333, 333]);
        assert_eq!(split(5, 0, 0), 5);
    }
}
