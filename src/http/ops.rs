//! Operations endpoints: the health report, readiness for load balancers, Prometheus metrics and
//! the version.

use std::time::{Duration, Instant};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{ApiError, AppState, auth::secrets_match};
use crate::{
    lifecycle::Phase,
    store::{jobs, messages},
    telemetry::metrics::{QueueFigures, Snapshot},
};

/// How long one dependency may take to answer the health check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /healthz`: the version, the uptime and each dependency (the database; the channels'
/// services, such as a mail relay). 200 when the database answers — the gateway then keeps every
/// message it acknowledges, whatever else is down — 503 otherwise. A channel service that fails
/// is reported as `error` without failing the check: the channel's messages still arrive and
/// their replies are retried.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Health: version, uptime and each dependency",
    description = "200 while the database answers; a channel's failing service (a mail relay) is reported as `error` in `checks` without failing the check.",
    responses(
        (status = 200, description = "The database answers", body = crate::http::openapi::schemas::Health),
        (status = 503, description = "The database does not answer", body = crate::http::openapi::schemas::Health),
    ),
)]
pub(super) async fn health(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let database = match tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => json!({"status": "ok", "latency_ms": ms(started.elapsed())}),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "health check: the database does not answer");
            json!({"status": "error", "error": "the database does not answer"})
        }
        Err(_) => json!({"status": "error", "error": "the database did not answer in time"}),
    };
    let healthy = database["status"] == "ok";
    let mut checks = serde_json::Map::new();
    checks.insert("database".into(), database);
    let dependencies = state.channels.dependencies();
    let results = futures::future::join_all(dependencies.iter().map(|(channel, dependency)| {
        let check = (dependency.check)();
        async move {
            let started = Instant::now();
            let result = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
                Ok(Ok(())) => json!({"status": "ok", "latency_ms": ms(started.elapsed())}),
                Ok(Err(error)) => json!({"status": "error", "error": error}),
                Err(_) => json!({"status": "error", "error": "no answer in time"}),
            };
            (format!("{channel}.{}", dependency.name), result)
        }
    }))
    .await;
    checks.extend(results);
    let body = json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.lifecycle.uptime().as_secs(),
        "phase": state.lifecycle.phase().as_str(),
        "pending_replies": state.pipeline.pending(),
        "checks": Value::Object(checks),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /readyz`: 200 while the process serves; 503 while it starts (workers not running yet)
/// and once a shutdown began, so a load balancer sends new work elsewhere.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness, for load balancers",
    responses(
        (status = 200, description = "Serving", body = crate::http::openapi::schemas::Ready),
        (status = 503, description = "Starting (workers not running yet) or stopping", body = crate::http::openapi::schemas::Ready),
    ),
)]
pub(super) async fn ready(State(state): State<AppState>) -> Response {
    let phase = state.lifecycle.phase();
    let status = if phase == Phase::Serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"status": phase.as_str()}))).into_response()
}

/// `GET /metrics`: every metric in Prometheus's text format. With `server.metrics_token` set, the
/// route needs it as a bearer token.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "Every metric in Prometheus's text exposition format (see README for the list). With `server.metrics_token` set, it needs that bearer token.",
    security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "`unauthenticated`: the metrics token is set and was not sent", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: the process records metrics elsewhere", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(expected) = state.config.server.metrics_token.as_deref() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !secrets_match(given.trim().as_bytes(), expected.as_bytes()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the metrics need the metrics bearer token",
            ));
        }
    }
    let Some(handle) = state.metrics else {
        return Err(ApiError::not_found("metrics exporter"));
    };
    let now = state.clock.now();
    let mut reader = state.store.reader();
    let queues = jobs::figures(&mut reader, now).await?;
    let (pending, oldest) = messages::pending_figures(&mut reader).await?;
    let age = |since: Option<crate::time::Timestamp>| {
        since.map_or(Duration::ZERO, |t| {
            Duration::from_micros(u64::try_from(now.micros() - t.micros()).unwrap_or(0))
        })
    };
    let snapshot = Snapshot {
        queues: queues
            .into_iter()
            .map(|(queue, queued, due)| QueueFigures {
                queue,
                queued,
                lag: age(due),
            })
            .collect(),
        pending_turns: (pending, age(oldest)),
        streams_open: state.limits.streams.open_count(),
        websockets_open: state.limits.sockets.open_count(),
        connections: state.store.pool_figures(),
        uptime: state.lifecycle.uptime(),
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        snapshot.render(handle),
    )
        .into_response())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
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
