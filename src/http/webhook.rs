//! Provider webhooks: `/webhooks/{channel}` and `/webhooks/{channel}/{*path}`, one generic route
//! that hands every request to its channel's plug-in (`switchboard_channel::Webhook`).
//!
//! Nobody's body is read before it has to be: a route of a channel that is off answers 404 at
//! once; the plug-in looks at the head first (a handshake is answered there, a missing signature
//! or a wrong Basic password refused there) and says how large a body may be and whether its
//! proof is inside it. Bodies read before they can be authenticated share a memory budget
//! ([`reserve_unverified`]); every body arrives within `server.body_timeout`.
//!
//! The plug-in hands what the body carries to the channel's inbox, which stores it in one
//! transaction before the handler answers 200. A provider that gets an error retries, and
//! retries are recognised by their provider ids, so answering an error is always safe and
//! answering 200 always means "stored".

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Request, State},
    http::{HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::any,
};
use switchboard_channel::{BodyCheck, WebhookAnswer, WebhookError, WebhookRequest};

use super::{ApiError, AppState, extract::ApiPath};
use crate::inbox::ChannelInbox;

/// The webhook routes' part of the OpenAPI document (the handlers are private to this module).
#[derive(utoipa::OpenApi)]
#[openapi(paths(root, below))]
pub(super) struct Api;

/// The webhook routes of every channel.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks/{channel}", any(root))
        .route("/webhooks/{channel}/{*path}", any(below))
}

#[utoipa::path(
    method(get, post),
    path = "/webhooks/{channel}",
    tag = "webhooks",
    summary = "A channel's webhook",
    description = "The body, its headers and its proof of origin (a signature header, a shared secret, Basic auth…) belong to the channel's provider: the channel's plug-in checks them, reads the body within its provider's limit, and says what to answer. A handshake is answered with the provider's challenge as text. A 200 means stored; a refused request stores nothing.",
    params(("channel" = String, Path, description = "The channel's name in the registry")),
    request_body(content = crate::http::openapi::schemas::Binary, content_type = "application/octet-stream", description = "The provider's payload (JSON, form data, a raw message…)"),
    responses(
        (status = 200, description = "Stored (JSON summary), or a handshake's challenge (text)", content((crate::http::openapi::schemas::WebhookSummary = "application/json"), (String = "text/plain"))),
        (status = 400, description = "`invalid_payload`: not the provider's format; `invalid_request`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`invalid_signature`, `stale_signature`, `unauthenticated`: the proof of origin is missing or wrong", body = crate::http::error::ErrorBody),
        (status = 403, description = "`verification_failed`: a handshake with the wrong token", body = crate::http::error::ErrorBody),
        (status = 404, description = "`channel_not_configured`: the channel is off, or no such route of it", body = crate::http::error::ErrorBody),
        (status = 406, description = "`replayed`: a one-time token seen before (tells the provider not to retry)", body = crate::http::error::ErrorBody),
        (status = 408, description = "`body_timeout`", body = crate::http::error::ErrorBody),
        (status = 413, description = "`body_too_large`: over the provider's maximum", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = crate::http::error::ErrorBody),
        (status = 503, description = "`busy`: too many large deliveries being received at once", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
async fn root(
    State(state): State<AppState>,
    ApiPath(channel): ApiPath<String>,
    request: Request,
) -> Response {
    receive(&state, &channel, String::new(), request).await
}

#[utoipa::path(
    method(get, post),
    path = "/webhooks/{channel}/{path}",
    tag = "webhooks",
    summary = "A webhook route of a channel",
    description = "The body, its headers and its proof of origin (a signature header, a shared secret, Basic auth…) belong to the channel's provider: the channel's plug-in checks them, reads the body within its provider's limit, and says what to answer. A handshake is answered with the provider's challenge as text. A 200 means stored; a refused request stores nothing. The rest of the path (which may contain `/`) is the channel's own: a bot, a provider style, an integration.",
    params(("channel" = String, Path, description = "The channel's name in the registry"), ("path" = String, Path, description = "The rest of the path, as the channel defines it")),
    request_body(content = crate::http::openapi::schemas::Binary, content_type = "application/octet-stream", description = "The provider's payload"),
    responses(
        (status = 200, description = "Stored (JSON summary), or a handshake's challenge (text)", content((crate::http::openapi::schemas::WebhookSummary = "application/json"), (String = "text/plain"))),
        (status = 400, description = "`invalid_payload`: not the provider's format; `invalid_request`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`invalid_signature`, `stale_signature`, `unauthenticated`: the proof of origin is missing or wrong", body = crate::http::error::ErrorBody),
        (status = 403, description = "`verification_failed`: a handshake with the wrong token", body = crate::http::error::ErrorBody),
        (status = 404, description = "`channel_not_configured`: the channel is off, or no such route of it", body = crate::http::error::ErrorBody),
        (status = 406, description = "`replayed`: a one-time token seen before (tells the provider not to retry)", body = crate::http::error::ErrorBody),
        (status = 408, description = "`body_timeout`", body = crate::http::error::ErrorBody),
        (status = 413, description = "`body_too_large`: over the provider's maximum", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = crate::http::error::ErrorBody),
        (status = 503, description = "`busy`: too many large deliveries being received at once", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
async fn below(
    State(state): State<AppState>,
    ApiPath((channel, path)): ApiPath<(String, String)>,
    request: Request,
) -> Response {
    receive(&state, &channel, path, request).await
}

/// One delivery: the plug-in's head check, the body within its limits, the plug-in's answer.
async fn receive(state: &AppState, name: &str, path: String, request: Request) -> Response {
    let Some(webhook) = state.channels.webhook(name) else {
        return answer_error(WebhookError::off(name));
    };
    let Some(channel) = state.channels.by_name(name).map(|p| p.channel()) else {
        return answer_error(WebhookError::off(name));
    };
    let (parts, body) = request.into_parts();
    let head = WebhookRequest {
        method: parts.method,
        path,
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
    };
    let check = match webhook.check(&head) {
        Ok(check) => check,
        Err(e) => return answer_error(e),
    };
    let announced = head
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (limit, _reserved) = match check {
        BodyCheck::Answer(answer) => return answer_ok(answer),
        BodyCheck::Trusted { max_bytes } => (max_bytes, None),
        BodyCheck::Unverified { max_bytes } => {
            if announced.is_some_and(|n| n > max_bytes as u64) {
                return answer_error(WebhookError::too_large(max_bytes));
            }
            match reserve_unverified(state, announced, max_bytes).await {
                Ok(permit) => (max_bytes, Some(permit)),
                Err(e) => return e.into_response(),
            }
        }
    };
    if announced.is_some_and(|n| n > limit as u64) {
        return answer_error(WebhookError::too_large(limit));
    }
    let body = match read_body(body, limit).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let inbox = ChannelInbox {
        channel,
        pipeline: state.pipeline.clone(),
        experts: state.experts.clone(),
        store: state.store.clone(),
        files: state.files.clone(),
        max_bytes: state.config.media.max_bytes,
        clock: state.clock.clone(),
    };
    match webhook.receive(head, body, &inbox).await {
        Ok(answer) => answer_ok(answer),
        Err(e) => answer_error(e),
    }
}

/// Reads a body of at most `limit` bytes.
async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(error) = cause {
            if error.is::<http_body_util::LengthLimitError>() {
                return ApiError::from(WebhookError::too_large(limit));
            }
            cause = error.source();
        }
        if super::server::is_body_timeout(&e) {
            return super::error::body_timeout();
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("cannot read the request body: {e}"),
        )
    })
}

/// Reserves room for an unauthenticated body of the `announced` length: the memory a body may
/// take is reserved first (what its `Content-Length` announces, else `limit`), and kept until
/// the returned permit is dropped — after the body was checked. Bodies that would not fit wait,
/// up to `server.body_timeout`, then are refused (503).
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
            HeaderValue::from_static("10"),
        )
    })
}

fn answer_ok(answer: WebhookAnswer) -> Response {
    match answer {
        WebhookAnswer::Json(value) => Json(value).into_response(),
        WebhookAnswer::Text(text) => (StatusCode::OK, text).into_response(),
    }
}

fn answer_error(error: WebhookError) -> Response {
    ApiError::from(error).into_response()
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        let header = e.header.as_ref().and_then(|(name, value)| {
            Some((
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(value).ok()?,
            ))
        });
        let error = ApiError::new(e.status, e.code, e.message);
        match header {
            Some((name, value)) => error.with_header(name, value),
            None => error,
        }
    }
}
