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
use switchboard_channel::{Attachment, Channel, Content, InboundMessage, MediaKind};
use switchboard_web::{
    request::{ChatRequest, Limits, RequestError, upload_id},
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
        media,
        messages::{self, Message},
    },
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SendParams {
    /// Wait for the reply (default) or answer as soon as the message is stored.
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

/// A message to send and, optionally, the agent to answer it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SendRequest {
    #[serde(flatten)]
    message: ChatRequest,
    /// A selectable agent (an `id` of `GET /v1/agents`) to answer this message instead of the
    /// conversation's own; the conversation keeps its agent for the next messages.
    #[serde(default)]
    agent: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SendResponse {
    conversation_id: String,
    message: Message,
    reply: Option<Message>,
}

/// What the visitor's message became.
pub(super) enum Accepted {
    /// A new message, and how to follow its answer.
    New {
        /// The stored message.
        message: Message,
        /// Who answers the conversation.
        mode: Mode,
        /// The reply being produced, when an agent answers.
        watch: Option<ReplyWatch>,
    },
    /// A retry of a message already stored, and its answer so far.
    Repeat {
        /// The message as first stored.
        message: Message,
        /// Its answer, when there is one already.
        reply: Option<Box<Message>>,
        /// Who answers the conversation.
        mode: Mode,
    },
}

impl Accepted {
    /// The visitor's stored message.
    pub(super) fn message(&self) -> &Message {
        match self {
            Accepted::New { message, .. } | Accepted::Repeat { message, .. } => message,
        }
    }
}

/// The `Idempotency-Key` header, when the request has one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    Ok(headers
        .get("idempotency-key")
        .map(|v| v.to_str().map_err(|_| RequestError::InvalidIdempotencyKey))
        .transpose()?)
}

/// Sends a visitor's message, whatever carries it (`POST /v1/chat/messages`, `/v1/chat/stream`,
/// a WebSocket frame): validates it, counts it against their quota and rates, and ingests it
/// (the pipeline's locks and order). `key` makes a resend safe (an `Idempotency-Key` header, a
/// frame's `client_id`): a message already stored under it is returned as it was, and counted
/// against nothing. A refusal stores nothing.
pub(super) async fn send(
    state: &AppState,
    visitor: &Visitor,
    address: IpAddr,
    key: Option<&str>,
    body: ChatRequest,
    agent: Option<&str>,
) -> Result<Accepted, ApiError> {
    let chosen = agent
        .map(|name| super::agents::chosen(state, name))
        .transpose()?;
    let limits = Limits {
        max_content_chars: state.config.web.max_content_chars,
        max_attachments: state.config.web.max_attachments,
    };
    let mut inbound: InboundMessage = body.into_inbound(&visitor.0, key, limits)?;
    let uploads = attach_uploads(state, visitor, &mut inbound).await?;
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
        .ingest_and_watch(Channel::WEB, inbound, Some(admit), chosen)
        .await?;
    match outcome {
        Outcome::Stored { message, mode, .. } => {
            link_uploads(state, visitor, &message, &uploads).await;
            Ok(Accepted::New {
                message,
                mode,
                watch,
            })
        }
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

/// Points the attachments that name uploads (`{"upload_id": …}`) at the stored files; returns
/// each upload's id with its position in the message. Another visitor's upload answers as a
/// missing one does.
async fn attach_uploads(
    state: &AppState,
    visitor: &Visitor,
    inbound: &mut InboundMessage,
) -> Result<Vec<(String, usize)>, ApiError> {
    let Content::Media { attachments, .. } = &mut inbound.content else {
        return Ok(Vec::new());
    };
    let owner = visitor.external_id();
    let mut reader = state.store.reader();
    let mut uploads = Vec::new();
    for (index, attachment) in attachments.iter_mut().enumerate() {
        let Some(id) = upload_id(attachment) else {
            continue;
        };
        let stored = media::upload_of(&mut reader, id, &owner)
            .await?
            .ok_or_else(|| {
                ApiError::from(RequestError::InvalidAttachment {
                    index,
                    reason: "no upload of yours has this upload_id",
                })
            })?;
        *attachment = Attachment {
            kind: MediaKind::of_mime_type(&stored.mime_type),
            source: format!("sha256:{}", stored.sha256),
            mime_type: Some(stored.mime_type),
            filename: stored.filename,
            size: u64::try_from(stored.size).ok(),
            sha256: Some(stored.sha256),
            media_id: Some(stored.id.to_string()),
        };
        uploads.push((stored.id.into_string(), index));
    }
    Ok(uploads)
}

/// Links the uploads a stored message attaches to it. The message is stored already: a failure
/// here is logged, and the upload is still known to be in use by its id in the message.
async fn link_uploads(
    state: &AppState,
    visitor: &Visitor,
    message: &Message,
    uploads: &[(String, usize)],
) {
    if uploads.is_empty() {
        return;
    }
    let owner = visitor.external_id();
    let link = async {
        let mut tx = state.store.begin().await?;
        for (id, index) in uploads {
            let index = i64::try_from(*index).unwrap_or(i64::MAX);
            media::link_upload(&mut tx, id, &owner, &message.id, index).await?;
        }
        tx.commit().await
    };
    if let Err(e) = link.await {
        tracing::warn!(message = %message.id, error = %e, "could not link uploads to their message");
    }
}

/// `POST /v1/chat/messages`
#[utoipa::path(
    post,
    path = "/v1/chat/messages",
    tag = "chat",
    summary = "Send a message, get the reply",
    description = "Stores the visitor's message (a new conversation without `conversation_id`) and answers once the reply is stored, or after `web.reply_timeout` with `reply: null` (it then arrives on the event stream). `?wait=false` answers 202 once the message is stored. A retry with the same `Idempotency-Key` gets the original message and its reply.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    params(SendParams, ("Idempotency-Key" = Option<String>, Header, description = "1 to 128 visible ASCII characters; a retry with the same key is stored once")),
    request_body = SendRequest,
    responses(
        (status = 200, description = "The message and its reply (`null` when none came in time or an expert answers)", body = SendResponse),
        (status = 202, description = "`?wait=false`: the message is stored; the reply comes on the event stream", body = SendResponse),
        (status = 400, description = "`invalid_device_id`; `invalid_json`: the body is not JSON; `invalid_idempotency_key`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: neither `X-Device-ID` nor a bearer token; `invalid_token`: a bearer token that is not valid", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, deleted, or someone else's", body = crate::http::error::ErrorBody),
        (status = 409, description = "`conversation_closed`: start a new conversation", body = crate::http::error::ErrorBody),
        (status = 413, description = "`body_too_large`", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_request`: wrong types or unknown fields; `empty_content`, `content_too_long`, `too_many_attachments`, `invalid_attachment`, `invalid_conversation_id`, `invalid_query`; `agent_not_selectable`: `agent` is not the id of a selectable agent", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`: over a visitor's or an address's rate", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn post_message(
    State(state): State<AppState>,
    visitor: Visitor,
    ClientAddress(address): ClientAddress,
    ApiQuery(params): ApiQuery<SendParams>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SendRequest>,
) -> Result<Response, ApiError> {
    let SendRequest { message, agent } = body;
    let key = idempotency_key(&headers)?;
    match send(&state, &visitor, address, key, message, agent.as_deref()).await? {
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
#[utoipa::path(
    post,
    path = "/v1/chat/stream",
    tag = "chat",
    summary = "Send a message, stream the reply",
    description = "Like `POST /v1/chat/messages`, answered with server-sent events: one `data:` event per piece of the reply (schema `Chunk`), then a final one (`is_final: true`) with the stored ids, the whole reply (a `Message`) and the conversation's mode.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 128 visible ASCII characters; a retry with the same key is stored once")),
    request_body = SendRequest,
    responses(
        (status = 200, description = "`data:` events, each a JSON `Chunk`; the last also carries `conversation_id`, `message_id`, `reply_id`, `reply` and `mode`", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_device_id`; `invalid_json`: the body is not JSON; `invalid_idempotency_key`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: neither `X-Device-ID` nor a bearer token; `invalid_token`: a bearer token that is not valid", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, deleted, or someone else's", body = crate::http::error::ErrorBody),
        (status = 409, description = "`conversation_closed`", body = crate::http::error::ErrorBody),
        (status = 413, description = "`body_too_large`", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_request`: wrong types or unknown fields; `empty_content`, `content_too_long`, `too_many_attachments`, `invalid_attachment`, `invalid_conversation_id`; `agent_not_selectable`: `agent` is not the id of a selectable agent", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`: over a visitor's or an address's rate", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn stream_message(
    State(state): State<AppState>,
    visitor: Visitor,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SendRequest>,
) -> Result<Response, ApiError> {
    let SendRequest { message, agent } = body;
    let key = idempotency_key(&headers)?;
    let accepted = send(&state, &visitor, address, key, message, agent.as_deref()).await?;
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
