//! Provider webhooks: one module per channel, mounted under `/webhooks/<channel>`.
//!
//! A webhook handler checks the request's authenticity and hands the raw body to its channel
//! crate's parser; the pipeline stores what came in, in one transaction, before the handler answers
//! 200. A provider that gets an error retries, and retries are recognised by their provider ids, so
//! answering an error is always safe and answering 200 always means "stored".
//!
//! Nobody's body is read before it has to be: a route of a channel that is off answers 404 at
//! once, and a route whose proof of origin is in the headers (Basic auth, Telegram's secret)
//! checks it first. Each route takes bodies up to its provider's real maximum, within
//! `server.body_timeout`.

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

/// 413 for a request whose `Content-Length` is over `limit`.
fn refuse_announced_over(request: &Request, limit: usize) -> Result<(), ApiError> {
    let announced = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match announced {
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
