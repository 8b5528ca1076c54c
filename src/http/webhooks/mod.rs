//! Provider webhooks: one module per channel, mounted under `/webhooks/<channel>`.
//!
//! A webhook handler checks the request's authenticity and hands the raw body to its channel
//! crate's parser; the pipeline stores what came in, in one transaction, before the handler answers
//! 200. A provider that gets an error retries, and retries are recognised by their provider ids, so
//! answering an error is always safe and answering 200 always means "stored".
//!
//! Nobody's body is read before it has to be: a route of a channel that is off answers 404 at
//! once, a route whose proof of origin is in the headers (Basic auth, Telegram's secret) checks it
//! first, and a signed body without a well-formed signature header is refused unread. Each route
//! takes bodies up to its provider's real maximum, within `server.body_timeout`; bodies read
//! before they can be authenticated share a memory budget ([`unverified_body`]).

pub mod email;
pub mod telegram;
pub mod whatsapp;

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequest, Request},
    http::StatusCode,
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{ApiError, AppState, extract::ApiBytes};
use crate::{config::Config, pipeline::Outcome};

/// The webhook routes, each with the body limit of its provider.
pub(super) fn routes(config: &Config) -> Router<AppState> {
    let whatsapp = Router::new()
        .route(
            "/webhooks/whatsapp",
            get(whatsapp::verify).post(whatsapp::receive),
        )
        .layer(DefaultBodyLimit::max(
            switchboard_whatsapp::MAX_WEBHOOK_BYTES,
        ));
    let telegram = Router::new()
        .route("/webhooks/telegram/{bot}", post(telegram::receive))
        .layer(DefaultBodyLimit::max(
            switchboard_telegram::MAX_UPDATE_BYTES,
        ));
    let email = Router::new()
        .route("/webhooks/email/mailgun", post(email::mailgun))
        .route("/webhooks/email/postmark", post(email::postmark))
        .route("/webhooks/email/sendgrid", post(email::sendgrid))
        .route("/webhooks/email/raw", post(email::raw))
        .layer(DefaultBodyLimit::max(config.email.max_bytes));
    whatsapp.merge(telegram).merge(email)
}

/// Reads a request's body once the request has passed the checks its headers allow. A body
/// announced larger than `limit` is refused at once (413) instead of being read up to the limit.
async fn body(request: Request, limit: usize) -> Result<Bytes, ApiError> {
    refuse_announced_over(&request, limit)?;
    ApiBytes::from_request(request, &()).await.map(|b| b.0)
}

/// Reads a body whose proof of origin is inside it (a signature over the bytes, a signed form),
/// within the gateway's budget for such bodies: the memory a body may take is reserved first
/// (what its `Content-Length` announces, else `limit`), and kept until the returned permit is
/// dropped — after the body was checked. Bodies that would not fit wait, up to
/// `server.body_timeout`, then are refused (503).
async fn unverified_body(
    state: &AppState,
    request: Request,
    limit: usize,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), ApiError> {
    refuse_announced_over(&request, limit)?;
    let reserved = reserve_unverified(state, announced_length(&request), limit).await?;
    Ok((body(request, limit).await?, reserved))
}

/// Reserves room for an unauthenticated body of the `announced` length (see
/// [`unverified_body`]); the caller has refused bodies announced over `limit`.
async fn reserve_unverified(
    state: &AppState,
    announced: Option<u64>,
    limit: usize,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let announced = announced.map_or(limit as u64, |n| n.min(limit as u64));
    let kib = u32::try_from(announced.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    tokio::time::timeout(
        state.config.server.body_timeout,
        state.unverified_bodies.clone().acquire_many_owned(kib),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many large deliveries are being received at once; try again",
        )
        .with_header(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("10"),
        )
    })
}

/// The body length a request announces.
fn announced_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// 413 for a request whose `Content-Length` is over `limit`.
fn refuse_announced_over(request: &Request, limit: usize) -> Result<(), ApiError> {
    match announced_length(request) {
        Some(length) if length > limit as u64 => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than this route takes ({limit} bytes)"),
        )),
        _ => Ok(()),
    }
}

/// The answer to a provider: what its delivery changed (providers ignore it; people replaying
/// payloads read it).
fn summary(received: usize, outcomes: &[Outcome]) -> Value {
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    json!({
        "status": "ok",
        "events": received,
        "stored": count(|o| matches!(o, Outcome::Stored { .. })),
        "duplicates": count(|o| matches!(o, Outcome::Duplicate { .. })),
        "statuses": count(|o| matches!(o, Outcome::StatusUpdated { .. })),
    })
}

/// 404 for a channel this gateway does not run (its settings are missing).
fn channel_off(channel: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "channel_not_configured",
        format!("the {channel} channel is not configured on this gateway"),
    )
}
