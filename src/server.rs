//! The HTTP endpoint on `[server].listen`: `/metrics` for Prometheus and
//! `/healthz` for probes.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}

/// Alive: the process answers. Readiness (store and Airbyte) is a separate question.
async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}
