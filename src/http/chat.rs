//! The web chat API: a visitor sends a message and gets the reply, whole or streamed.
//!
//! - `POST /v1/chat/messages` answers `{conversation_id, message, reply}` once the reply is stored
//!   (or after `web.reply_timeout` with `reply: null`; the reply then arrives on the conversation's
//!   event stream). `?wait=false` answers `202` right after the message is stored.
//! - `POST /v1/chat/stream` answers with server-sent events: one `data:` chunk per delta, then a
//!   final event with the stored ids (see [`switchboard_web::stream`]).
//!
//! An `Idempotency-Key` header makes a retried request safe: the message is stored once and the
//! retry gets the original message and its reply.

use std::{convert::Infallible, net::IpAddr};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use switchboard_channel::{Channel, InboundMessage};
use switchboard_web::{
    request::{ChatRequest, Limits, RequestError},
    stream::{Chunk, Final},
};

use super::{
    AppState,
    error::ApiError,
    extract::{ApiJson, ApiQuery, ClientAddress, Visitor},
};
use crate::{
    limits::streams::StreamPermit,
    pipeline::{IngestError, Outcome, ReplyWatch},
    store::{
        conversations::{self, Mode},
        messages::{self, Message},
    },
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendParams {
    /// Wait for the reply (default) or answer as soon as the message is stored.
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Serialize)]
pub(super) struct SendResponse {
    conversation_id: String,
    message: Message,
    reply: Option<Message>,
}

/// What the visitor's message became.
enum Accepted {
    /// A new message, and how to follow its answer.
    New {
        message: Message,
        mode: Mode,
        watch: Option<ReplyWatch>,
    },
    /// A retry of a message already stored, and its answer so far.
    Repeat {
        message: Message,
        reply: Option<Box<Message>>,
        mode: Mode,
    },
}

/// Validates the visitor's message, counts it against their rates, and ingests it. A refusal
/// stores nothing.
async fn accept(
    state: &AppState,
    visitor: &Visitor,
    address: IpAddr,
    headers: &HeaderMap,
    body: ChatRequest,
) -> Result<Accepted, ApiError> {
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().map_err(|_| RequestError::InvalidIdempotencyKey))
        .transpose()?;
    let limits = Limits {
        max_content_chars: state.config.web.max_content_chars,
        max_attachments: state.config.web.max_attachments,
    };
    let inbound: InboundMessage = body.into_inbound(&visitor.0, key, limits)?;
    // Counted once the message is known not to be a retry: a retried request with its
    // Idempotency-Key gets its original answer, whatever the rate or quota. The quota is checked
    // first: a refused message does not count against the rates.
    let limits = state.limits.clone();
    let sender = inbound.from.external_id.clone();
    let admit = Box::new(move |new_conversation| {
        limits
            .quotas
            .check_identity(Channel::WEB, &sender)
            .map_err(IngestError::OverQuota)?;
        limits
            .visitors
            .message(&sender, address, new_conversation)
            .map_err(IngestError::Limited)
    });
    let (outcome, watch) = state
        .pipeline
        .ingest_and_watch(Channel::WEB, inbound, Some(admit))
        .await?;
    match outcome {
        Outcome::Stored { message, mode, .. } => Ok(Accepted::New {
            message,
            mode,
            watch,
        }),
        Outcome::Duplicate { message } => {
            let mut reader = state.store.reader();
            let reply =
                messages::answer_to(&mut reader, &message.conversation_id, &message.id).await?;
            let mode = conversations::get(&mut reader, &message.conversation_id)
                .await?
                .map_or(Mode::Closed, |c| c.mode);
            Ok(Accepted::Repeat {
                message,
                reply: reply.map(Box::new),
                mode,
            })
        }
        other => Err(ApiError::internal(&format!(
            "unexpected ingest outcome for a chat message: {other:?}"
        ))),
    }
}

/// `POST /v1/chat/messages`
pub(super) async fn post_message(
    State(state): State<AppState>,
    visitor: Visitor,
    ClientAddress(address): ClientAddress,
    ApiQuery(params): ApiQuery<SendParams>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    match accept(&state, &visitor, address, &headers, body).await? {
        Accepted::New { message, watch, .. } => {
            let reply = match (params.wait, watch) {
                (true, Some(watch)) => {
                    tokio::time::timeout(state.config.web.reply_timeout, watch.done)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .and_then(|outcome| outcome.reply)
                }
                _ => None,
            };
            let status = if params.wait {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            let body = SendResponse {
                conversation_id: message.conversation_id.to_string(),
                message,
                reply: reply.map(Message::for_visitor),
            };
            Ok((status, Json(body)).into_response())
        }
        Accepted::Repeat { message, reply, .. } => {
            let body = SendResponse {
                conversation_id: message.conversation_id.to_string(),
                message,
                reply: reply.map(|r| r.for_visitor()),
            };
            Ok((StatusCode::OK, Json(body)).into_response())
        }
    }
}

/// `POST /v1/chat/stream`
pub(super) async fn stream_message(
    State(state): State<AppState>,
    visitor: Visitor,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let accepted = accept(&state, &visitor, address, &headers, body).await?;
    let timeout = state.config.web.reply_timeout;
    let clock = state.clock.clone();
    let now = move || clock.now().to_datetime();
    let events = async_stream::stream! {
        match accepted {
            Accepted::New { message, mode, watch } => {
                let mut outcome = None;
                if let Some(mut watch) = watch {
                    let deadline = tokio::time::sleep(timeout);
                    tokio::pin!(deadline);
                    let mut timed_out = false;
                    loop {
                        tokio::select! {
                            delta = watch.deltas.recv() => match delta {
                                Some(delta) => yield data(&Chunk::new(&delta, now())),
                                None => break,
                            },
                            _ = &mut deadline => {
                                timed_out = true;
                                break;
                            }
                        }
                    }
                    if !timed_out {
                        outcome = watch.done.await.ok();
                    }
                }
                let mode = outcome.as_ref().map_or(mode, |o| o.mode);
                let reply = outcome.and_then(|o| o.reply).map(|r| (r.id.clone(), r.for_visitor()));
                yield data(&Final::new(now(), message.conversation_id.to_string(), message.id.into_string(), reply.map(|(id, m)| (id.into_string(), m)), mode.to_string()));
            }
            Accepted::Repeat { message, reply, mode } => {
                if let Some(reply) = &reply {
                    yield data(&Chunk::new(&reply.content, now()));
                }
                let reply = reply.map(|r| (r.id.clone(), r.for_visitor()));
                yield data(&Final::new(now(), message.conversation_id.to_string(), message.id.into_string(), reply.map(|(id, m)| (id.into_string(), m)), mode.to_string()));
            }
        }
    };
    Ok(sse_response(events, &state, None))
}

fn data(payload: &impl Serialize) -> Result<Event, Infallible> {
    Ok(Event::default().data(serde_json::to_string(payload).unwrap_or_default()))
}

/// An SSE response that proxies do not buffer. A long-lived stream holds its place (`permit`,
/// see `limits::streams`) until it ends.
pub(super) fn sse_response(
    events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
    state: &AppState,
    permit: Option<StreamPermit>,
) -> Response {
    let events = events.map(move |event| {
        let _held = &permit;
        event
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.config.web.heartbeat))
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
