//! `GET /v1/conversations/{id}/events`: everything that happens in a conversation, as server-sent
//! events.
//!
//! | event     | data                                       | id                 |
//! |-----------|--------------------------------------------|--------------------|
//! | `message` | a stored message                           | `<seq>`            |
//! | `typing`  | `{reply_to, reply_to_seq}`                 | `<seq>`            |
//! | `delta`   | `{reply_to, reply_to_seq, index, content}` | `<seq>.<index>`    |
//! | `update`  | a changed message (edit, delivery status)  | unchanged position |
//!
//! A client that reconnects with `Last-Event-ID` first gets the stored messages after that id, then
//! the deltas it missed of a reply still being written, then live events; duplicates between the
//! replay and the live feed are dropped. Comment heartbeats keep proxies from closing idle streams.
//! `EventSource` cannot send headers, so the identity may also come as `?device_id=` or
//! `?access_token=`.
//!
//! A gateway holds one of these streams per watching visitor, so the idle stream is kept small:
//! how a conversation is followed (replay, then live, each event once) is [`super::follow`]'s;
//! this module writes its events down as server-sent events.

use std::future::Future;

use axum::{
    extract::State,
    http::HeaderMap,
    response::{Response, sse::Event},
};
use futures::StreamExt;
use serde::Deserialize;

use super::{
    AppState,
    chat::sse_response,
    conversations::owned,
    error::ApiError,
    extract::{ApiPath, ApiQuery, ClientAddress, Visitor},
    follow::{Audience, Followed, follow, visible},
};
use crate::{
    ids::ConversationId,
    limits::streams::{StreamOwner, StreamPermit},
    live::Position,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct EventParams {
    device_id: Option<String>,
    access_token: Option<String>,
    /// For clients that reconnect by hand instead of with the `Last-Event-ID` header.
    last_event_id: Option<String>,
}

/// `GET /v1/conversations/{id}/events`
#[utoipa::path(
    get,
    path = "/v1/conversations/{id}/events",
    tag = "conversations",
    summary = "Follow a conversation",
    description = "Server-sent events: `message` (id `<seq>`), `typing` and `delta` (id `<seq>.<n>`) for replies being written, `update` for changed messages; comment heartbeats. Reconnecting with `Last-Event-ID` (or `?last_event_id=`) replays what was missed, including the rest of a reply in progress. `EventSource` clients may identify with `?device_id=` or `?access_token=`.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)"), EventParams, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (`<seq>` or `<seq>.<n>`): what was missed is replayed")),
    responses(
        (status = 200, description = "The conversation's events, replayed from the resume point, then live", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_device_id`, `invalid_path`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: neither `X-Device-ID` nor a bearer token; `invalid_token`: a bearer token that is not valid", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, deleted, or someone else's", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_query`", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`: too many event streams open for this visitor or address", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn stream(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    ApiPath(id): ApiPath<ConversationId>,
    ApiQuery(params): ApiQuery<EventParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let visitor = Visitor::from_headers(
        &state,
        &headers,
        params.access_token.as_deref(),
        params.device_id.as_deref(),
    )?;
    let conversation = owned(&state, &visitor, &id).await?;
    let permit = state
        .limits
        .streams
        .open(StreamOwner::Visitor(&visitor.external_id()), address)?;
    let from = resume_from(&headers, params.last_event_id.as_deref());
    // A visitor's stream lasts as long as they keep it open.
    conversation_stream(
        &state,
        conversation.id,
        from,
        None,
        std::future::pending(),
        permit,
        Audience::Visitor,
    )
    .await
}

/// Where a client resumes: `Last-Event-ID` (or the query's `last_event_id`), else the start.
pub(super) fn resume_from(headers: &HeaderMap, query: Option<&str>) -> Position {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(query)
        .map(Position::parse)
        .unwrap_or_default()
}

/// The event stream of a conversation the caller may see, from `from` (replayed from the
/// database), then live until `until` completes. An observer's stream (`observer`: its first
/// event) marks where the replayed history starts and ends (`history-start`, `history-end`), so a
/// supervisor's screen can tell what happened before it looked from what happens while it looks.
/// The stream holds `permit` (its place among the open streams) until it ends.
///
/// The first page of the replay is read before the response starts (a missing conversation or a
/// failing database is still an HTTP error); see [`follow`].
pub(super) async fn conversation_stream(
    state: &AppState,
    conversation_id: ConversationId,
    from: Position,
    first: Option<Event>,
    until: impl Future<Output = ()> + Send + 'static,
    permit: StreamPermit,
    audience: Audience,
) -> Result<Response, ApiError> {
    let observed = first.is_some();
    let mut head: Vec<Event> = first.into_iter().collect();
    if observed {
        head.push(marker(
            "history-start",
            serde_json::json!({"conversation_id": conversation_id, "after_seq": from.seq}),
        ));
    }
    let (replay, live) = follow(&state.store, &state.hub, conversation_id, from, observed).await?;
    let events = futures::stream::iter(head)
        .chain(
            futures::stream::iter(replay)
                .chain(live)
                .map(move |followed| sse(&followed, audience)),
        )
        .map(Ok)
        .take_until(until);
    Ok(sse_response(events, state, Some(permit)))
}

/// A followed event as a server-sent event: named by its kind, with its position as the id.
fn sse(followed: &Followed, audience: Audience) -> Event {
    match followed {
        Followed::Event { event, position } => {
            let data = serde_json::to_string(visible(event, audience).as_ref());
            Event::default()
                .event(event.name())
                .id(position.to_string())
                .data(data.unwrap_or_default())
        }
        Followed::HistoryEnd { last_seq } => {
            marker("history-end", serde_json::json!({"last_seq": last_seq}))
        }
    }
}

/// An event that marks the stream rather than tells of the conversation: no id, so it never moves
/// a client's `Last-Event-ID`.
fn marker(name: &'static str, data: serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}
