//! `GET /v1/chat/ws`: the chat over one WebSocket. The visitor sends messages, asks for a
//! person, and hears everything that happens in their conversations (typing, the reply as it is
//! written, expert and system messages) on the same socket.
//!
//! The socket is the visitor API by other means: the same identity (`X-Device-ID` or a bearer
//! token, or `?device_id=` / `?access_token=` since browsers cannot set headers on a WebSocket),
//! the same send path with its quotas, rates, locks and order ([`super::chat::send`]), the same
//! handoff ([`super::conversations::hand_off`]), the same follower as the event stream
//! ([`super::follow`]). A browser's `Origin` must be one of `web.allowed_origins` (a WebSocket
//! is not subject to CORS, so the gateway checks it itself).
//!
//! - [`frames`]: what the client may send, and what the gateway sends;
//! - [`session`]: one open socket.

mod frames;
mod session;

use axum::{
    extract::{
        State,
        ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use serde::Deserialize;

use super::{
    AppState,
    error::ApiError,
    extract::{ApiQuery, ClientAddress, Visitor},
    server::ConnectionPlaces,
};
use crate::limits::{Refused, streams::StreamOwner};

/// The largest frame the gateway writes before giving up on a client that does not read: the
/// socket's write buffer holds at most this much.
const MAX_WRITE_BUFFER: usize = 1024 * 1024;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SocketParams {
    /// The visitor's device id, for browsers (a WebSocket cannot carry headers).
    device_id: Option<String>,
    /// The visitor's token, for browsers.
    access_token: Option<String>,
}

/// `GET /v1/chat/ws`
#[utoipa::path(
    get,
    path = "/v1/chat/ws",
    tag = "chat",
    summary = "Chat over a WebSocket",
    description = "Upgrades to a WebSocket of JSON text frames. Client: `{\"type\":\"message\",\"conversation_id\"?,\"content\",\"attachments\"?,\"metadata\"?,\"message_type\"?,\"client_id\"?}` (the body of `POST /v1/chat/messages`; `client_id` makes a resend safe), `{\"type\":\"typing\"}`, `{\"type\":\"resume\",\"conversation_id\",\"after_seq\"}` (replays what came after, then follows), `{\"type\":\"handoff\",\"conversation_id\",\"reason\"?}`, `{\"type\":\"ping\"}`. Gateway: `connected` (the conversations followed), `ack` (`client_id`, the stored `message`, `duplicate`), `typing`, `delta` (`conversation_id`, `reply_to`, `index`, `content`), `message` (`conversation_id`, `message`; an AI reply with `response_time_ms`), `update` (a changed `message`, or the `conversation` after a handoff), `error` (`code` as over HTTP, `message`, `client_id`, `retry_after`; the socket stays open), `pong`. The socket follows every conversation of its visitor. Close codes: 1001 the gateway shuts down, 1009 a frame over `web.ws_max_frame_bytes`, 4408 no answer to pings for two `web.ws_ping_interval`s.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    params(SocketParams),
    responses(
        (status = 101, description = "Switching protocols: the WebSocket is open"),
        (status = 400, description = "`invalid_device_id`; `not_a_websocket`: not a WebSocket handshake", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: no identity; `invalid_token`; `token_required`: `web.require_token` refuses device ids", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden_origin`: the page's origin is not in `web.allowed_origins`", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_query`", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`: the visitor has `web.ws_sockets_per_visitor` sockets open", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn open(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    ApiQuery(params): ApiQuery<SocketParams>,
    headers: HeaderMap,
    connection: Option<axum::Extension<ConnectionPlaces>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    check_origin(&state, &headers)?;
    let visitor = Visitor::from_headers(
        &state,
        &headers,
        params.access_token.as_deref(),
        params.device_id.as_deref(),
    )?;
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_websocket",
            format!("this route takes a WebSocket handshake: {rejection}"),
        )
    })?;
    let permit = state
        .limits
        .sockets
        .open(StreamOwner::Visitor(&visitor.external_id()), address)
        .map_err(|_| {
            ApiError::rate_limited(Refused {
                retry_after: std::time::Duration::from_secs(30),
                reason: "too many WebSockets open for this visitor; close one first",
            })
        })?;
    let web = &state.config.web;
    let session = session::Session::new(
        state.clone(),
        visitor,
        address,
        permit,
        connection.map(|c| c.0),
    );
    Ok(upgrade
        .max_message_size(web.ws_max_frame_bytes)
        .max_frame_size(web.ws_max_frame_bytes)
        // Small buffers: an idle socket is one of the gateway's budgets, and frames are small.
        .read_buffer_size(2048)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| session.run(socket)))
}

/// Refuses a browser page whose origin is not allowed to use the visitor API. Clients that are
/// not browsers send no `Origin` and are not concerned.
fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let allowed = &state.config.web.allowed_origins;
    let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
    let same = |allowed: &str| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin);
    // The gateway's own pages (the widget's demo page) are always allowed.
    if same(&state.public_url) || allowed.iter().any(|a| a == "*" || same(a)) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "this page's origin may not use the chat (web.allowed_origins)",
        ))
    }
}
