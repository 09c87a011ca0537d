//! The public API (`/api/public/v1/...`) as self-hosted Airbyte serves it: REST verbs over
//! the same jobs, `JobResponse` bodies and problem JSON errors mapped the way
//! `ConfigClientErrorHandler` maps the Config API's failures.

use axum::http::Method;
use chrono::DateTime;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::api_config::{JobQuery, select_jobs};
use super::errors::Problem;
use super::plan::JobStatus;
use super::render;
use super::server::Call;
use super::state::{CancelRefusal, JobKind, StartRefusal, State};

/// What the public API says whenever the job behind an id cannot be acted on.
const JOB_NOT_RUNNING: &str = "Job is not currently running";

/// What `IllegalStateException`s become, whatever their own message said.
const DEFAULT_CONFLICT: &str = "Could not fulfill request";

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

/// Whether a path below `/api/public/v1/` is one the emulator serves; others get
/// Micronaut's own 404.
pub(crate) fn serves(rest: &str) -> bool {
    matches!(rest, "health" | "jobs") || rest.starts_with("jobs/")
}

pub(crate) fn handle(state: &mut State, rest: &str, call: &Call<'_>) -> Result<Value, Problem> {
    let method = call.method;
    match (method, rest) {
        (&Method::GET, "health") => Ok(Value::Null),
        (&Method::POST, "jobs") => create_job(state, call),
        (&Method::GET, "jobs") => list_jobs(state, call),
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
        (_, "health" | "jobs") => Err(method_not_allowed(method)),
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

    let host = if call.host.is_empty() {
        "localhost:8000"
    } else {
        call.host.as_str()
    };
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
    let link = |at: i64| {
        let mut parts = base_query.clone();
        parts.push(format!("limit={limit}"));
        parts.push(format!("offset={at}"));
        format!("http://{host}/api/public/v1/jobs?{}", parts.join("&"))
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
    Ok(json!({"previous": previous, "next": next, "data": data}))
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
