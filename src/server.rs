//! The HTTP endpoint on `[server].listen`: `/metrics` for Prometheus, `/healthz`
//! and `/readyz` for probes, and the control API under `/api/v1` that the CLI
//! drives (bearer token required; documented in `docs/control-api.yaml`, which
//! describes every answer, errors included).

mod extract;
mod page;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::engine::EngineError;
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::replica::Role;
use crate::store::Store;
use extract::{ApiPath, ApiQuery, LimitQuery, NoBody};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    /// The engine of this replica's role of the moment (active or standby).
    pub role: Arc<Role>,
    pub store: Arc<dyn Store>,
    pub reloader: Arc<Reloader>,
    /// The control API's bearer token; without one the control API is refused.
    pub token: Option<SecretString>,
    /// Whether Airbyte's last health check passed.
    pub airbyte_up: Arc<crate::daemon::AirbyteUp>,
    /// This replica's id, as `/readyz` names it.
    pub replica: String,
    /// The election this replica takes part in: the replicas seen, for the page.
    pub election: Arc<crate::replica::Election>,
}

pub fn router(state: AppState) -> Router {
    let control = Router::new()
        .route("/connections", get(list_connections))
        .route("/connections/{name}/runs", get(connection_runs))
        .route("/connections/{name}/trigger", post(trigger))
        .route("/connections/{name}/pause", post(pause))
        .route("/connections/{name}/resume", post(resume))
        .route("/runs/{id}", get(run_detail))
        .route("/runs/{id}/cancel", post(cancel))
        .route("/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest("/api/v1", control)
        .merge(page::router(state.clone()))
        .fallback(no_such_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// A path the router does not know: the API's 404.
async fn no_such_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no such route: {method} {}",
            uri.path().chars().take(200).collect::<String>()
        ),
    )
}

/// A known path asked with a method it does not take: the API's 405 (axum adds
/// the `Allow` header naming the methods it takes).
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not take {method}",
            uri.path().chars().take(200).collect::<String>()
        ),
    )
}

/// A JSON error: `{"error": {"code": ..., "message": ...}}`.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": { "code": self.code, "message": self.message } }));
        (self.status, body).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let (status, code) = match &e {
            EngineError::UnknownConnection(_) | EngineError::UnknownRun(_) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            EngineError::RunEnded(..)
            | EngineError::NotFollowedHere(_)
            | EngineError::JobEnded(..)
            | EngineError::CancellingForTimeout(_) => (StatusCode::CONFLICT, "conflict"),
            EngineError::Airbyte(_) => (StatusCode::BAD_GATEWAY, "airbyte"),
            // Only the active replica acts: the answer names it, for the caller to
            // ask there (or again, while no replica is active).
            EngineError::Standby(_)
            | EngineError::Store(crate::store::StoreError::Fenced { .. }) => {
                (StatusCode::CONFLICT, "standby")
            }
            EngineError::Store(_) => {
                tracing::error!(error = %e, "control API request failed in the store");
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store",
                    "the history store failed",
                );
            }
        };
        Self::new(status, code, e.to_string())
    }
}

/// Lets a request through only with `Authorization: Bearer <token>`, compared
/// in constant time; with no token configured the control API is refused.
async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &state.token else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "disabled",
            "the control API is off: set [server].token (or token_file) to use it",
        )
        .into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let matches: bool = presented
        .as_bytes()
        .ct_eq(expected.expose_secret().as_bytes())
        .into();
    if !matches {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        )
        .into_response();
    }
    next.run(request).await
}

async fn metrics(State(state): State<AppState>) -> Response {
    // Rendering ten thousand connections takes a CPU-bound while: off the
    // runtime's workers, so ticks and polls don't wait behind a scrape.
    let metrics = state.metrics.clone();
    match tokio::task::spawn_blocking(move || metrics.render()).await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics",
            "rendering failed",
        )
        .into_response(),
    }
}

/// Alive: the process answers.
async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

/// Ready: the store answers and every Airbyte instance's last health check passed;
/// the body names the instances that did not. It means the same on a standby
/// (it could take over, and it answers reads): a Service routes reads to every
/// ready replica, and the body says which role this one has.
async fn readyz(State(state): State<AppState>) -> Response {
    let engine = state.role.engine();
    // Writes waiting for the store mean it refused some: not ready, whatever a
    // read says.
    let backlog = engine.store_backlog();
    let store = state.store.ping().await.is_ok() && backlog == 0;
    let down = state.airbyte_up.down();
    let airbyte = down.is_empty();
    let body = json!({
        "store": if store { "ok" } else { "failing" },
        "owed_writes": backlog,
        "airbyte": if airbyte { "ok" } else { "unreachable" },
        "unreachable_instances": down,
        "role": if engine.is_active() { "active" } else { "standby" },
        "replica": state.replica,
    });
    let status = if store && airbyte {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The body of `GET /api/v1/connections`, serialized as it stands: going
/// through `serde_json::Value` first would build a tree of every field of ten
/// thousand connections only to write it out.
#[derive(serde::Serialize)]
struct Listing {
    connections: Vec<crate::engine::ConnectionStatus>,
    airbyte_objects: Vec<crate::store::AirbyteObject>,
}

async fn list_connections(State(state): State<AppState>, _: NoBody) -> Result<Response, ApiError> {
    let connections = state.role.engine().connections().await?;
    let airbyte_objects = state.role.engine().airbyte_objects().await?;
    Ok(Json(Listing {
        connections,
        airbyte_objects,
    })
    .into_response())
}

async fn connection_runs(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<LimitQuery>,
    _: NoBody,
) -> Result<Response, ApiError> {
    let limit = query.limit()?;
    let runs = state.role.engine().runs(&name, limit).await?;
    Ok(Json(json!({ "runs": runs })).into_response())
}

async fn trigger(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    _: NoBody,
) -> Result<Response, ApiError> {
    let run = state.role.engine().trigger_now(&name).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "run": run }))).into_response())
}

async fn pause(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    _: NoBody,
) -> Result<Response, ApiError> {
    let changed = state.role.engine().pause(&name).await?;
    Ok(Json(json!({ "connection": name, "paused": true, "changed": changed })).into_response())
}

async fn resume(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    _: NoBody,
) -> Result<Response, ApiError> {
    let changed = state.role.engine().resume(&name).await?;
    Ok(Json(json!({ "connection": name, "paused": false, "changed": changed })).into_response())
}

async fn run_detail(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    _: NoBody,
) -> Result<Response, ApiError> {
    let id = extract::run_id(&id)?;
    match state.role.engine().run_detail(id).await? {
        Some(detail) => Ok(Json(detail).into_response()),
        None => Err(EngineError::UnknownRun(id).into()),
    }
}

async fn cancel(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    _: NoBody,
) -> Result<Response, ApiError> {
    let id = extract::run_id(&id)?;
    let outcome = state.role.engine().cancel(id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "run_id": id, "outcome": outcome })),
    )
        .into_response())
}

async fn reload(State(state): State<AppState>, _: NoBody) -> Result<Response, ApiError> {
    match state.reloader.reload().await {
        Ok(summary) => Ok(Json(json!({ "reloaded": true, "summary": summary })).into_response()),
        Err(problems) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            problems,
        )),
    }
}
