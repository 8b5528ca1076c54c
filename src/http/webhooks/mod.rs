//! Provider webhooks: one module per channel, mounted under `/webhooks/<channel>`.
//!
//! A webhook handler only checks the request's authenticity and hands the raw body to its channel
//! crate's parser; the pipeline stores what came in, in one transaction, before the handler answers
//! 200. A provider that gets an error retries, and retries are recognised by their provider ids, so
//! answering an error is always safe and answering 200 always means "stored".

pub mod email;
pub mod telegram;
pub mod whatsapp;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::ApiError;
use crate::pipeline::Outcome;

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
