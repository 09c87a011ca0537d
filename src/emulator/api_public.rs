//! The public API (`/api/public/v1/...`) as self-hosted Airbyte serves it: REST verbs over
//! the same jobs and connections, `JobResponse` and `ConnectionResponse` bodies, and problem
//! JSON errors mapped the way `ConfigClientErrorHandler` maps the Config API's failures.

use axum::http::Method;
use chrono::DateTime;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::api_config::{JobQuery, select_jobs};
use super::errors::Problem;
use super::plan::JobStatus;
use super::render;
use super::schedule::{self, Schedule};
use super::server::Call;
use super::state::{CancelRefusal, JobKind, NewConnection, StartRefusal, State};

/// What the public API says whenever the job behind an id cannot be acted on.
const JOB_NOT_RUNNING: &str = "Job is not currently running";

/// What `IllegalStateException`s become, whatever their own message said.
const DEFAULT_CONFLICT: &str = "Could not fulfill request";

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

/// Whether a path below `/api/public/v1/` is one the emulator serves; others get
/// Micronaut's own 404.
pub(crate) fn serves(rest: &str) -> bool {
    matches!(rest, "health" | "jobs" | "connections")
        || rest.starts_with("jobs/")
        || rest.starts_with("connections/")
}

pub(crate) fn handle(state: &mut State, rest: &str, call: &Call<'_>) -> Result<Value, Problem> {
    let method = call.method;
    match (method, rest) {
        (&Method::GET, "health") => Ok(Value::Null),
        (&Method::POST, "jobs") => create_job(state, call),
        (&Method::GET, "jobs") => list_jobs(state, call),
        (&Method::POST, "connections") => create_connection(state, call),
        (&Method::GET, "connections") => list_connections(state, call),
        (_, path) if path.starts_with("connections/") => {
            let raw = &path["connections/".len()..];
            let id = Uuid::parse_str(raw)
                .map_err(|_| Problem::bad_request(format!("Invalid UUID string: {raw}")))?;
            match *method {
                Method::GET => get_connection(state, id),
                Method::PATCH => patch_connection(state, id, call),
                _ => Err(method_not_allowed(method)),
            }
        }
        (_, path) if path.starts_with("jobs/") => {
            let raw = &path["jobs/".len()..];
            let id: i64 = raw.parse().map_err(|_| {
                Problem::bad_request(format!(
                    "Failed to convert argument [jobId] for value [{raw}]"
                ))
            })?;
            match *method {
                Method::GET => get_job(state, id, call),
                Method::DELETE => cancel_job(state, id, call),
                _ => Err(method_not_allowed(method)),
            }
        }
        (_, "health" | "jobs" | "connections") => Err(method_not_allowed(method)),
        _ => Err(Problem::not_found("path", call.path)),
    }
}

fn method_not_allowed(method: &Method) -> Problem {
    Problem::bad_request(format!("Method [{method}] not allowed"))
        .with_status(axum::http::StatusCode::METHOD_NOT_ALLOWED)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobCreateRequest {
    connection_id: Option<String>,
    job_type: Option<String>,
}

fn create_job(state: &mut State, call: &Call<'_>) -> Result<Value, Problem> {
    let request: JobCreateRequest = serde_json::from_slice(call.body)
        .map_err(|error| Problem::bad_request(format!("Invalid json. {error}")))?;
    let (Some(connection), Some(job_type)) = (request.connection_id, request.job_type) else {
        return Err(Problem::bad_request(
            "connectionId and jobType are required",
        ));
    };
    let kind = match job_type.as_str() {
        "sync" => JobKind::Sync,
        "reset" => JobKind::Reset,
        "clear" => JobKind::Clear,
        "refresh" => {
            return Err(Problem::unprocessable(
                "Refreshes are not supported in the public API",
            ));
        }
        other => {
            return Err(Problem::bad_request(format!(
                "Submitted value could not be found: {other}"
            )));
        }
    };
    let connection_id = Uuid::parse_str(&connection)
        .map_err(|_| Problem::bad_request(format!("Invalid UUID string: {connection}")))?;
    let id = match state.start_job(connection_id, kind, call.now) {
        Ok(id) => id,
        Err(StartRefusal::NoSuchConnection) => {
            return Err(Problem::not_found("connection", connection_id));
        }
        Err(StartRefusal::Inactive) => return Err(Problem::state_conflict(DEFAULT_CONFLICT)),
        Err(StartRefusal::AlreadyRunning) => {
            return Err(Problem::try_again_later(format!(
                "A sync is already running for: {connection_id}"
            )));
        }
    };
    respond_with_job(state, id, call, false)
}

fn respond_with_job(
    state: &State,
    id: i64,
    call: &Call<'_>,
    synced: bool,
) -> Result<Value, Problem> {
    let job = state
        .job(id)
        .ok_or_else(|| Problem::state_conflict(JOB_NOT_RUNNING))?;
    Ok(render::public_job(job, &job.view(call.now), synced))
}

fn get_job(state: &State, id: i64, call: &Call<'_>) -> Result<Value, Problem> {
    respond_with_job(state, id, call, true)
}

fn cancel_job(state: &mut State, id: i64, call: &Call<'_>) -> Result<Value, Problem> {
    match state.cancel_job(id, call.now) {
        Ok(()) => respond_with_job(state, id, call, false),
        Err(CancelRefusal::NoSuchJob | CancelRefusal::AlreadyEnded(_)) => {
            Err(Problem::state_conflict(JOB_NOT_RUNNING))
        }
    }
}

fn query_values<'q>(call: &'q Call<'_>, key: &str) -> impl Iterator<Item = &'q str> {
    let key = key.to_string();
    call.query
        .iter()
        .filter(move |(k, _)| *k == key)
        .map(|(_, v)| v.as_str())
}

fn query_value<'q>(call: &'q Call<'_>, key: &str) -> Option<&'q str> {
    query_values(call, key).next()
}

fn integer(call: &Call<'_>, key: &str, default: i64, min: i64, max: i64) -> Result<i64, Problem> {
    let Some(text) = query_value(call, key) else {
        return Ok(default);
    };
    text.parse::<i64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "{key}: must be between {min} and {max}, was {text}"
            ))
        })
}

fn date(call: &Call<'_>, key: &str) -> Result<Option<i64>, Problem> {
    query_value(call, key)
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|at| at.timestamp())
                .map_err(|_| {
                    Problem::bad_request(format!(
                        "Failed to convert argument [{key}] for value [{text}]"
                    ))
                })
        })
        .transpose()
}

/// `GET /jobs`: oldest first unless `orderBy` says otherwise, with `next`/`previous` links
/// built like `PaginationMapper` does (filters other than job type, connection and
/// workspaces are not carried into them).
fn list_jobs(state: &State, call: &Call<'_>) -> Result<Value, Problem> {
    let limit = integer(call, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)?;
    let offset = integer(call, "offset", 0, 0, i64::from(i32::MAX))?;
    let job_type = query_value(call, "jobType");
    let kinds: Vec<&'static str> = match job_type {
        None => vec!["sync", "reset_connection"],
        Some("sync") => vec!["sync"],
        Some("reset") => vec!["reset_connection"],
        Some("clear") => vec!["clear"],
        Some("refresh") => vec!["refresh"],
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "Submitted value could not be found: {other}"
            )));
        }
    };
    let connection = query_value(call, "connectionId")
        .map(|text| {
            Uuid::parse_str(text)
                .map_err(|_| Problem::bad_request(format!("Invalid UUID string: {text}")))
        })
        .transpose()?;
    let mut workspaces = Vec::new();
    for text in query_values(call, "workspaceIds").flat_map(|v| v.split(',')) {
        let id = Uuid::parse_str(text.trim())
            .map_err(|_| Problem::bad_request(format!("Invalid UUID string: {text}")))?;
        workspaces.push(id);
    }
    let statuses = query_value(call, "status")
        .map(|text| {
            JobStatus::parse(text)
                .map(|status| vec![status])
                .ok_or_else(|| {
                    Problem::bad_request(format!("Submitted value could not be found: {text}"))
                })
        })
        .transpose()?;
    let (by_updated, descending) = order_by(query_value(call, "orderBy"))?;
    let query = JobQuery {
        kinds,
        connection: connection.map(Some),
        workspaces: if connection.is_some() {
            Vec::new()
        } else {
            workspaces.clone()
        },
        statuses,
        created: (date(call, "createdAtStart")?, date(call, "createdAtEnd")?),
        updated: (date(call, "updatedAtStart")?, date(call, "updatedAtEnd")?),
        by_updated,
        descending,
    };
    let selected = select_jobs(state, &query, call.now);
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(limit).unwrap_or(1);
    let data: Vec<Value> = selected
        .iter()
        .skip(start)
        .take(take)
        .map(|(job, view)| render::public_job(job, view, true))
        .collect();

    let mut base_query = Vec::new();
    if let Some(job_type) = job_type {
        base_query.push(format!("jobType={job_type}"));
    }
    match connection {
        Some(connection) => base_query.push(format!("connectionId={connection}")),
        None if !workspaces.is_empty() => {
            let ids: Vec<String> = workspaces.iter().map(Uuid::to_string).collect();
            base_query.push(format!("workspaceIds={}", ids.join(",")));
        }
        None => {}
    }
    Ok(page(call, "jobs", &base_query, limit, offset, data))
}

/// A page of a list answer with `next` and `previous` links built like `PaginationMapper`
/// builds them: the filters in `base_query`, then `limit` and `offset`.
fn page(
    call: &Call<'_>,
    collection: &str,
    base_query: &[String],
    limit: i64,
    offset: i64,
    data: Vec<Value>,
) -> Value {
    let host = if call.host.is_empty() {
        "localhost:8000"
    } else {
        call.host.as_str()
    };
    let link = |at: i64| {
        let mut parts = base_query.to_vec();
        parts.push(format!("limit={limit}"));
        parts.push(format!("offset={at}"));
        format!(
            "http://{host}/api/public/v1/{collection}?{}",
            parts.join("&")
        )
    };
    // Only an empty page has no next link, so a last partial page still points past itself.
    let next = if data.is_empty() {
        String::new()
    } else {
        link(offset + limit)
    };
    let previous = if offset == 0 {
        String::new()
    } else {
        link((offset - limit).max(0))
    };
    json!({"previous": previous, "next": next, "data": data})
}

/// The body of a connection create or patch as a JSON object.
fn json_object(call: &Call<'_>) -> Result<Map<String, Value>, Problem> {
    match serde_json::from_slice::<Value>(call.body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Problem::bad_request(format!(
            "Invalid json. Expected an object, got {other}"
        ))),
        Err(error) => Err(Problem::bad_request(format!("Invalid json. {error}"))),
    }
}

fn text_field(body: &Map<String, Value>, key: &str) -> Result<Option<String>, Problem> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(Problem::bad_request(format!(
            "Invalid json. {key}: {other}"
        ))),
    }
}

/// A public enum value, as the Config API spells it (`None` when absent).
fn enum_field(
    body: &Map<String, Value>,
    key: &str,
    public_to_config: &[(&str, &str)],
) -> Result<Option<String>, Problem> {
    let Some(text) = text_field(body, key)? else {
        return Ok(None);
    };
    public_to_config
        .iter()
        .find(|(public, _)| *public == text)
        .map(|(_, config)| Some((*config).to_string()))
        .ok_or_else(|| Problem::bad_request(format!("Submitted value could not be found: {text}")))
}

const STATUSES: [(&str, &str); 4] = [
    ("active", "active"),
    ("inactive", "inactive"),
    ("deprecated", "deprecated"),
    ("locked", "locked"),
];

const NAMESPACE_DEFINITIONS: [(&str, &str); 3] = [
    ("source", "source"),
    ("destination", "destination"),
    ("custom_format", "customformat"),
];

const NON_BREAKING_BEHAVIOURS: [(&str, &str); 4] = [
    ("ignore", "ignore"),
    ("disable_connection", "disable"),
    ("propagate_columns", "propagate_columns"),
    ("propagate_fully", "propagate_fully"),
];

/// The `ConnectionRead` settings a public create or patch sets: what the mappers copy over.
fn public_settings(body: &Map<String, Value>) -> Result<Map<String, Value>, Problem> {
    let mut settings = Map::new();
    for key in ["prefix", "namespaceFormat"] {
        if let Some(text) = text_field(body, key)? {
            settings.insert(key.into(), json!(text));
        }
    }
    if let Some(definition) = enum_field(body, "namespaceDefinition", &NAMESPACE_DEFINITIONS)? {
        settings.insert("namespaceDefinition".into(), json!(definition));
    }
    if let Some(preference) = enum_field(
        body,
        "nonBreakingSchemaUpdatesBehavior",
        &NON_BREAKING_BEHAVIOURS,
    )? {
        settings.insert("nonBreakingChangesPreference".into(), json!(preference));
    }
    Ok(settings)
}

fn connection_response(state: &State, id: Uuid) -> Result<Value, Problem> {
    state
        .connections
        .get(&id)
        .map(render::public_connection)
        .ok_or_else(|| Problem::not_found("connection", id))
}

fn get_connection(state: &State, id: Uuid) -> Result<Value, Problem> {
    connection_response(state, id)
}

/// `POST /connections`. The streams are the source's discovered catalog with its default
/// configuration; `configurations` in the request is not applied.
fn create_connection(state: &mut State, call: &Call<'_>) -> Result<Value, Problem> {
    let body = json_object(call)?;
    let (Some(source), Some(destination)) = (
        text_field(&body, "sourceId")?,
        text_field(&body, "destinationId")?,
    ) else {
        return Err(Problem::bad_request(
            "sourceId and destinationId are required",
        ));
    };
    let uuid = |text: &str| {
        Uuid::parse_str(text)
            .map_err(|_| Problem::bad_request(format!("Invalid UUID string: {text}")))
    };
    let (source_id, destination_id) = (uuid(&source)?, uuid(&destination)?);
    let name = text_field(&body, "name")?;
    let status = enum_field(&body, "status", &STATUSES)?.unwrap_or_else(|| "active".into());
    let schedule = schedule::from_public(body.get("schedule"))?.unwrap_or(Schedule::Manual);
    let settings = public_settings(&body)?;
    // The controller reads the destination, then discovers the source, before creating.
    if state.destination(destination_id).is_err() {
        return Err(Problem::not_found("destination", destination_id));
    }
    if state.source(source_id).is_err() {
        return Err(Problem::not_found("source", source_id));
    }
    let id = state
        .create_connection(NewConnection {
            name,
            source_id,
            destination_id,
            status,
            sync_catalog: None,
            settings,
            schedule,
        })
        // Both actors were just found, so only a broken invariant lands here.
        .map_err(|error| Problem::unexpected(format!("{error:?}")))?;
    connection_response(state, id)
}

/// `PATCH /connections/{connectionId}`: fields left out stay as they are, the schedule too.
fn patch_connection(state: &mut State, id: Uuid, call: &Call<'_>) -> Result<Value, Problem> {
    let body = json_object(call)?;
    let name = text_field(&body, "name")?;
    let status = enum_field(&body, "status", &STATUSES)?;
    let schedule = schedule::from_public(body.get("schedule"))?;
    let settings = public_settings(&body)?;
    let connection = state
        .connections
        .get_mut(&id)
        .ok_or_else(|| Problem::not_found("connection", id))?;
    if let Some(name) = name {
        connection.name = name;
    }
    if let Some(status) = status {
        connection.status = status;
    }
    if let Some(schedule) = schedule {
        connection.schedule = schedule;
    }
    connection.settings.extend(settings);
    connection_response(state, id)
}

/// `GET /connections`: in creation order, deleted (`deprecated`) ones only when asked for.
fn list_connections(state: &State, call: &Call<'_>) -> Result<Value, Problem> {
    let limit = integer(call, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)?;
    let offset = integer(call, "offset", 0, 0, i64::from(i32::MAX))?;
    let include_deleted = match query_value(call, "includeDeleted") {
        None => false,
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "Failed to convert argument [includeDeleted] for value [{other}]"
            )));
        }
    };
    let ids = |key: &str| -> Result<Vec<Uuid>, Problem> {
        query_values(call, key)
            .flat_map(|v| v.split(','))
            .map(|text| {
                Uuid::parse_str(text.trim())
                    .map_err(|_| Problem::bad_request(format!("Invalid UUID string: {text}")))
            })
            .collect()
    };
    let workspaces = ids("workspaceIds")?;
    let tags = ids("tagIds")?;
    let has_tag = |tags_of: Option<&Value>| {
        tags_of.and_then(Value::as_array).is_some_and(|list| {
            list.iter().any(|tag| {
                tag.get("tagId")
                    .and_then(Value::as_str)
                    .and_then(|id| Uuid::parse_str(id).ok())
                    .is_some_and(|id| tags.contains(&id))
            })
        })
    };
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(limit).unwrap_or(1);
    let data: Vec<Value> = state
        .connection_order
        .iter()
        .filter_map(|id| state.connections.get(id))
        .filter(|c| workspaces.is_empty() || workspaces.contains(&c.workspace_id))
        .filter(|c| include_deleted || c.status != "deprecated")
        .filter(|c| tags.is_empty() || has_tag(c.settings.get("tags")))
        .skip(start)
        .take(take)
        .map(render::public_connection)
        .collect();
    let mut base_query = vec![format!("includeDeleted={include_deleted}")];
    if !workspaces.is_empty() {
        let ids: Vec<String> = workspaces.iter().map(Uuid::to_string).collect();
        base_query.push(format!("workspaceIds={}", ids.join(",")));
    }
    Ok(page(call, "connections", &base_query, limit, offset, data))
}

/// `orderBy=field|METHOD`; oldest first by creation when absent.
fn order_by(text: Option<&str>) -> Result<(bool, bool), Problem> {
    let Some(text) = text else {
        return Ok((false, false));
    };
    let invalid = || Problem::bad_request(format!("Invalid order by clause provided: {text}"));
    let (field, method) = text.split_once('|').ok_or_else(invalid)?;
    let by_updated = match field {
        "createdAt" => false,
        "updatedAt" => true,
        _ => return Err(invalid()),
    };
    let descending = match method {
        "ASC" => false,
        "DESC" => true,
        _ => return Err(invalid()),
    };
    Ok((by_updated, descending))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_defaults_to_oldest_first_and_rejects_nonsense() {
        assert_eq!(order_by(None).ok(), Some((false, false)));
        assert_eq!(order_by(Some("updatedAt|DESC")).ok(), Some((true, true)));
        assert!(order_by(Some("createdAt")).is_err());
        assert!(order_by(Some("size|ASC")).is_err());
    }
}
