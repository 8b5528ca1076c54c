//! Operations endpoints: liveness with a database check, and the version.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::AppState;

/// `GET /healthz`: 200 when the database answers, 503 otherwise.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness, with a database check",
    responses(
        (status = 200, description = "The database answers", body = crate::http::openapi::schemas::Health),
        (status = 503, description = "The database does not answer", body = crate::http::openapi::schemas::Health),
    ),
)]
pub(super) async fn health(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({
            "status": "ok",
            "database": "ok",
            "pending_replies": state.pipeline.pending(),
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "database": "error"})),
            )
                .into_response()
        }
    }
}

/// `GET /version`
#[utoipa::path(
    get,
    path = "/version",
    tag = "operations",
    summary = "The gateway's version",
    responses(
        (status = 200, description = "Name and version", body = crate::http::openapi::schemas::Version),
    ),
)]
pub(super) async fn version() -> Json<serde_json::Value> {
    Json(json!({"name": "switchboard", "version": env!("CARGO_PKG_VERSION")}))
}
