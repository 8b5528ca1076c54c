//! `GET /webhooks/whatsapp` (Meta's subscription handshake) and `POST /webhooks/whatsapp`
//! (signed deliveries of messages and statuses).

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Query, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use switchboard_channel::Channel;
use switchboard_whatsapp::{SIGNATURE_HEADER, parse, verify_signature, verify_subscription};

use super::{channel_off, summary, unverified_body};
use crate::http::{ApiError, AppState};

/// `GET /webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`: answers the
/// challenge when the token is ours.
pub async fn verify(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let config = &state.config.whatsapp;
    let (Some(_), Some(expected)) = (&config.app_secret, &config.verify_token) else {
        return Err(channel_off("whatsapp"));
    };
    let param = |name: &str| params.get(name).map(String::as_str);
    match verify_subscription(
        param("hub.mode"),
        param("hub.verify_token"),
        param("hub.challenge"),
        expected,
    ) {
        Some(challenge) => Ok((StatusCode::OK, challenge.to_owned()).into_response()),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "verification_failed",
            "hub.mode must be subscribe and hub.verify_token must match",
        )),
    }
}

/// `POST /webhooks/whatsapp`: checks the signature over the raw body, parses every entry, and
/// answers 200 once all of it is stored.
pub async fn receive(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let Some(secret) = &state.config.whatsapp.app_secret else {
        return Err(channel_off("whatsapp"));
    };
    let signature = request
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let signature = signature.as_deref();
    // A request that is not signed is refused before its body is read.
    if let Err(e) = switchboard_channel::signature::check_sha256_format(signature) {
        tracing::warn!(reason = %e, "refused a WhatsApp webhook without a signature");
        return Err(bad_signature());
    }
    let (body, _reserved) =
        unverified_body(&state, request, switchboard_whatsapp::MAX_WEBHOOK_BYTES).await?;
    if let Err(e) = verify_signature(signature, &body, secret) {
        tracing::warn!(reason = %e, "refused a WhatsApp webhook with a bad signature");
        return Err(bad_signature());
    }
    let events = parse(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_payload", e.to_string()))?;
    let received = events.len();
    let outcomes = if received > 0 {
        state.pipeline.ingest(Channel::Whatsapp, events).await?
    } else {
        Vec::new()
    };
    Ok(Json(summary(received, &outcomes)).into_response())
}

fn bad_signature() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "the X-Hub-Signature-256 header is missing or does not match the body",
    )
}
