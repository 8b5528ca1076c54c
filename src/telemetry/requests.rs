//! One log line per HTTP request, its metrics, and the request id that ties a request to the work
//! it causes.
//!
//! A request keeps the `X-Request-Id` its client (or the proxy in front) sent when that is a sane
//! token, and gets a new one otherwise. The id is echoed in the response and is a field of the
//! `request` span, the parent of everything the request does — including the turn that answers a
//! message it stored (the pipeline hands the span to the turn), so a reply's log lines carry the
//! id of the request that caused it.
//!
//! The route label is the matched template (`/v1/conversations/{id}`), never the raw path, so a
//! client cannot grow the metrics by inventing paths; requests no route matched are `unmatched`.

use std::{
    sync::{Arc, OnceLock},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use tracing::{Instrument, field};

use super::metrics;

/// The header that carries a request's id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id kept from a client; a longer one is replaced.
const MAX_ID_LEN: usize = 128;

/// The route a request matched, noted by [`note_route`] inside the router for [`observe`]
/// outside it (the outer layer runs before routing, so it cannot see the match itself).
#[derive(Clone, Default)]
struct MatchedRoute(Arc<OnceLock<MatchedPath>>);

/// The outer layer: request id, span, log line and metrics of every request.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(new_id, str::to_owned);
    let method = request.method().clone();
    let matched = MatchedRoute::default();
    request.extensions_mut().insert(matched.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = field::Empty,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let took = started.elapsed();
    let route = matched.0.get().map_or("unmatched", MatchedPath::as_str);
    let status = response.status();
    span.record("route", route);
    tracing::info!(
        parent: &span,
        method = %method,
        route,
        status = status.as_u16(),
        latency_ms = took.as_secs_f64() * 1000.0,
        request_id = %id,
        "request"
    );
    metrics::http_request(method.as_str(), route, status, took);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The inner layer (a route layer, so it runs once the route is known): notes the route.
pub async fn note_route(request: Request, next: Next) -> Response {
    if let (Some(matched), Some(path)) = (
        request.extensions().get::<MatchedRoute>(),
        request.extensions().get::<MatchedPath>(),
    ) {
        let _ = matched.0.set(path.clone());
    }
    next.run(request).await
}

/// Whether a client's request id can be kept: short, and only characters that are safe in a
/// header and a log line.
fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::acceptable;

    #[test]
    fn only_sane_request_ids_are_kept() {
        assert!(acceptable("abc-123"));
        assert!(acceptable("Root=1-67891233-abcdef012345678912345678"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable("line\nbreak"));
        assert!(!acceptable(&"x".repeat(129)));
    }
}
