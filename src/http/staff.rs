//! The staff API: signing in, and what experts do with conversations.
//!
//! - `POST /v1/auth/token` `{email, password}` → a bearer token carrying the role.
//! - `GET /v1/expert/me`, `PUT /v1/expert/me/availability` `{available, capacity?}`
//! - `GET /v1/expert/queue`: conversations waiting for an expert, longest waiting first.
//! - `GET /v1/expert/conversations`: the caller's, with unread counts.
//! - `GET /v1/expert/conversations/{id}`: a conversation and its transcript (marks it read).
//! - `POST /v1/expert/conversations/{id}/messages` `{content}`: write to the end user, on their
//!   channel.
//! - `POST /v1/expert/conversations/{id}/{claim,release,close}`, `…/transfer` `{to}`.
//! - `GET /v1/expert/conversations/{id}/events`: the conversation live (SSE).
//! - `GET /v1/expert/conversations/{id}/export`: the whole transcript as JSON.
//! - `GET /v1/expert/events`: staff notices (queue and ownership changes, new messages) the
//!   caller may see, live (SSE).
//!
//! An expert sees their own conversations and waiting ones; anybody else's answers 404.
//! Every access to a conversation is written to the audit log.

use std::convert::Infallible;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response, sse::Event},
};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::wrappers::BroadcastStream;

use super::{
    AppState,
    chat::sse_response,
    error::ApiError,
    events::{conversation_stream, resume_from},
    extract::{ApiJson, ApiPath, ApiQuery, RequestOrigin, StaffUser},
    follow::Audience,
    staff_streams::{access_ends, stream_place},
};
use crate::{
    ids::{ContactId, ConversationId},
    live::NoticeKind,
    staff::{SignIn, SignInFrom},
    store::{StoreError, audit, contacts, conversations, messages, users::StaffRole},
};

/// Records a staff member's access before they get what they asked for: an access that cannot be
/// recorded is refused (500), so nothing is seen unaudited. Actions that change a conversation
/// are recorded in their own transaction instead (`Experts`).
pub(super) async fn audit(
    state: &AppState,
    staff: &StaffUser,
    action: audit::Action,
    conversation_id: Option<&str>,
    detail: Value,
) -> Result<(), StoreError> {
    audit::record(
        &mut state.store.reader(),
        &staff.actor(),
        action,
        conversation_id,
        detail,
        state.clock.now(),
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Credentials {
    email: String,
    password: String,
}

/// `POST /v1/auth/token`
#[utoipa::path(
    post,
    path = "/v1/auth/token",
    tag = "auth",
    summary = "Sign in (API clients)",
    description = "A staff member's e-mail address and password for a bearer token. Failed sign-ins are throttled per account and address.",
    request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = crate::http::openapi::schemas::TokenResponse),
        (status = 400, description = "`invalid_json`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`invalid_credentials`: wrong e-mail address or password, or a disabled account", body = crate::http::error::ErrorBody),
        (status = 413, description = "`body_too_large`", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_request`: wrong types or unknown fields", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`: too many failed sign-ins", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn token(
    State(state): State<AppState>,
    origin: RequestOrigin,
    ApiJson(credentials): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let origin = origin.0;
    let from = SignInFrom {
        address: origin.address,
        remote_addr: origin.remote_addr.as_deref(),
        user_agent: origin.user_agent.as_deref(),
        via: "api",
    };
    let user = match state
        .staff
        .sign_in(&credentials.email, &credentials.password, &from)
        .await?
    {
        SignIn::Welcome(user) => user,
        SignIn::Throttled(refused) => return Err(ApiError::rate_limited(refused)),
        SignIn::Refused => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "the e-mail address or the password is wrong",
            ));
        }
    };
    let (token, expires_at) = state.staff.issue_token(&user);
    Ok(Json(json!({"token": token, "expires_at": expires_at, "user": user})).into_response())
}

/// `GET /v1/expert/me`
#[utoipa::path(
    get,
    path = "/v1/expert/me",
    tag = "expert",
    summary = "The caller's account",
    description = "With the number of conversations they have open.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    responses(
        (status = 200, description = "The account", body = crate::http::openapi::schemas::Me),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn me(
    State(state): State<AppState>,
    staff: StaffUser,
) -> Result<Response, ApiError> {
    let open = conversations::open_count(&mut state.store.reader(), &staff.user.id).await?;
    Ok(Json(json!({"user": staff.user, "open": open})).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Availability {
    available: bool,
    capacity: Option<i64>,
}

/// `PUT /v1/expert/me/availability`
#[utoipa::path(
    put,
    path = "/v1/expert/me/availability",
    tag = "expert",
    summary = "Set availability",
    description = "Whether the caller takes conversations now, and optionally how many at once.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    request_body = Availability,
    responses(
        (status = 200, description = "The account as changed", body = crate::http::openapi::schemas::UserEnvelope),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`csrf`: a session request that changes something without `X-CSRF-Token`", body = crate::http::error::ErrorBody),
        (status = 400, description = "`invalid_json`", body = crate::http::error::ErrorBody),
        (status = 413, description = "`body_too_large`", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_request`: wrong types or unknown fields; a capacity out of range", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn availability(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiJson(body): ApiJson<Availability>,
) -> Result<Response, ApiError> {
    let user = state
        .experts
        .set_availability(&staff.user, body.available, body.capacity)
        .await?;
    Ok(Json(json!({"user": user})).into_response())
}

/// `GET /v1/expert/queue`
#[utoipa::path(
    get,
    path = "/v1/expert/queue",
    tag = "expert",
    summary = "The queue",
    description = "Conversations waiting for an expert, longest waiting first.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    responses(
        (status = 200, description = "The queue", body = crate::http::openapi::schemas::Queue),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn queue(
    State(state): State<AppState>,
    _staff: StaffUser,
) -> Result<Response, ApiError> {
    let waiting = state.experts.queue().await?;
    Ok(Json(json!({"conversations": waiting})).into_response())
}

/// `GET /v1/expert/conversations`
#[utoipa::path(
    get,
    path = "/v1/expert/conversations",
    tag = "expert",
    summary = "The caller's conversations",
    description = "Their open conversations with unread counts.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    responses(
        (status = 200, description = "The conversations", body = crate::http::openapi::schemas::OwnedList),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn mine(
    State(state): State<AppState>,
    staff: StaffUser,
) -> Result<Response, ApiError> {
    let owned = state.experts.owned(&staff.user).await?;
    let items: Vec<Value> = owned
        .into_iter()
        .map(|o| json!({"conversation": o.conversation, "unread": o.unread, "contact_name": o.contact_name}))
        .collect();
    Ok(Json(json!({"conversations": items})).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TranscriptParams {
    limit: Option<i64>,
}

/// `GET /v1/expert/conversations/{id}`
#[utoipa::path(
    get,
    path = "/v1/expert/conversations/{id}",
    tag = "expert",
    summary = "Open a conversation",
    description = "Its newest messages (oldest first) and its end user; the access is audited.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)"), TranscriptParams),
    responses(
        (status = 200, description = "The transcript", body = crate::http::openapi::schemas::Transcript),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 400, description = "`invalid_path`", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, or not one the caller may see", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_query`", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn open(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<ConversationId>,
    ApiQuery(params): ApiQuery<TranscriptParams>,
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(200).clamp(1, 1000);
    let (conversation, messages) = state
        .experts
        .open(&staff.actor(), &id, limit, Some(json!({})))
        .await?;
    let contact = contact_of(&state, &conversation.contact_id).await?;
    Ok(Json(json!({
        "conversation": conversation,
        "contact": contact,
        "messages": messages,
    }))
    .into_response())
}

/// The end user of a conversation, as staff see them.
pub(super) async fn contact_of(
    state: &AppState,
    contact_id: &ContactId,
) -> Result<Value, ApiError> {
    let mut reader = state.store.reader();
    let external_id = contacts::external_id(&mut reader, contact_id).await?;
    let name = contacts::display_name(&mut reader, contact_id).await?;
    Ok(json!({"id": contact_id, "external_id": external_id, "name": name}))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Reply {
    content: String,
}

/// `POST /v1/expert/conversations/{id}/messages`
#[utoipa::path(
    post,
    path = "/v1/expert/conversations/{id}/messages",
    tag = "expert",
    summary = "Answer the end user",
    description = "The reply goes out through the conversation's channel.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)")),
    request_body = Reply,
    responses(
        (status = 201, description = "The stored reply", body = crate::http::openapi::schemas::MessageEnvelope),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`csrf`: a session request that changes something without `X-CSRF-Token`", body = crate::http::error::ErrorBody),
        (status = 400, description = "`invalid_json`, `invalid_path`", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, or not one the caller may see", body = crate::http::error::ErrorBody),
        (status = 409, description = "`conflict`: not the caller's conversation", body = crate::http::error::ErrorBody),
        (status = 413, description = "`body_too_large`", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_request`: wrong types or unknown fields; `content_too_long`", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn reply(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(body): ApiJson<Reply>,
) -> Result<Response, ApiError> {
    if body.content.chars().count() > state.config.web.max_content_chars {
        return Err(ApiError::invalid(
            "content_too_long",
            format!("at most {} characters", state.config.web.max_content_chars),
        ));
    }
    let message = state
        .experts
        .reply(&staff.actor(), &id, &body.content, Vec::new(), None)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"message": message}))).into_response())
}

/// `POST /v1/expert/conversations/{id}/claim`
#[utoipa::path(
    post,
    path = "/v1/expert/conversations/{id}/claim",
    tag = "expert",
    summary = "Claim a conversation",
    description = "Take a waiting conversation from the queue.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)")),
    responses(
        (status = 200, description = "The conversation as changed", body = crate::http::openapi::schemas::ConversationEnvelope),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`csrf`: a session request that changes something without `X-CSRF-Token`", body = crate::http::error::ErrorBody),
        (status = 400, description = "`invalid_path`", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, or not one the caller may see", body = crate::http::error::ErrorBody),
        (status = 409, description = "`conflict`: claimed by someone else, not the caller's, or already closed", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn claim(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<ConversationId>,
) -> Result<Response, ApiError> {
    let conversation = state.experts.claim(&staff.actor(), &id).await?;
    Ok(Json(json!({"conversation": conversation})).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Transfer {
    to: String,
}

/// `POST /v1/expert/conversations/{id}/transfer`
#[utoipa::path(
    post,
    path = "/v1/expert/conversations/{id}/transfer",
    tag = "expert",
    summary = "Transfer a conversation",
    description = "To another expert, by id or e-mail address.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)")),
    request_body = Transfer,
    responses(
        (status = 200, description = "The conversation as changed", body = crate::http::openapi::schemas::ConversationEnvelope),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`csrf`: a session request that changes something without `X-CSRF-Token`", body = crate::http::error::ErrorBody),
        (status = 400, description = "`invalid_json`, `invalid_path`", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, or not one the caller may see", body = crate::http::error::ErrorBody),
        (status = 409, description = "`conflict`: not the caller's, or the colleague is away or full", body = crate::http::error::ErrorBody),
        (status = 413, description = "`body_too_large`", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_request`: wrong types or unknown fields", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn transfer(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(body): ApiJson<Transfer>,
) -> Result<Response, ApiError> {
    let conversation = state
        .experts
        .transfer(&staff.actor(), &id, &body.to)
        .await?;
    Ok(Json(json!({"conversation": conversation})).into_response())
}

/// `POST /v1/expert/conversations/{id}/release`
#[utoipa::path(
    post,
    path = "/v1/expert/conversations/{id}/release",
    tag = "expert",
    summary = "Release a conversation",
    description = "Back to the queue for another expert.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)")),
    responses(
        (status = 200, description = "The conversation as changed", body = crate::http::openapi::schemas::ConversationEnvelope),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`csrf`: a session request that changes something without `X-CSRF-Token`", body = crate::http::error::ErrorBody),
        (status = 400, description = "`invalid_path`", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, or not one the caller may see", body = crate::http::error::ErrorBody),
        (status = 409, description = "`conflict`: claimed by someone else, not the caller's, or already closed", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn release(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<ConversationId>,
) -> Result<Response, ApiError> {
    let conversation = state.experts.release(&staff.actor(), &id).await?;
    Ok(Json(json!({"conversation": conversation})).into_response())
}

/// `POST /v1/expert/conversations/{id}/close`
#[utoipa::path(
    post,
    path = "/v1/expert/conversations/{id}/close",
    tag = "expert",
    summary = "Close a conversation",
    description = "Nobody answers it any more; new messages are refused.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)")),
    responses(
        (status = 200, description = "The conversation as changed", body = crate::http::openapi::schemas::ConversationEnvelope),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`csrf`: a session request that changes something without `X-CSRF-Token`", body = crate::http::error::ErrorBody),
        (status = 400, description = "`invalid_path`", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, or not one the caller may see", body = crate::http::error::ErrorBody),
        (status = 409, description = "`conflict`: claimed by someone else, not the caller's, or already closed", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn close(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<ConversationId>,
) -> Result<Response, ApiError> {
    let conversation = state.experts.close(&staff.actor(), &id).await?;
    Ok(Json(json!({"conversation": conversation})).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct StreamParams {
    last_event_id: Option<String>,
}

/// `GET /v1/expert/conversations/{id}/events`
#[utoipa::path(
    get,
    path = "/v1/expert/conversations/{id}/events",
    tag = "expert",
    summary = "Follow a conversation (staff)",
    description = "Server-sent events as for visitors, with staff's view of messages; the stream ends when the caller's access does. Audited.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)"), StreamParams, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (`<seq>` or `<seq>.<n>`): what was missed is replayed")),
    responses(
        (status = 200, description = "The conversation's events", content_type = "text/event-stream", body = String),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 400, description = "`invalid_path`", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, or not one the caller may see", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_query`", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`: too many event streams open", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn conversation_events(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<ConversationId>,
    ApiQuery(params): ApiQuery<StreamParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let conversation = state.experts.visible(&staff.user, &id).await?;
    let permit = stream_place(&state, &staff)?;
    // A supervisor watching somebody else's conversation observes it.
    let mine = conversation.expert_id.as_deref() == Some(staff.user.id.as_str());
    let action = if !mine && staff.user.role.includes(StaffRole::Supervisor) {
        audit::Action::Observe
    } else {
        audit::Action::View
    };
    audit(&state, &staff, action, Some(&id), json!({"live": true})).await?;
    let from = resume_from(&headers, params.last_event_id.as_deref());
    let until = access_ends(state.clone(), staff, Some(conversation.id.clone()));
    conversation_stream(
        &state,
        conversation.id,
        from,
        None,
        until,
        permit,
        Audience::Staff,
    )
    .await
}

/// `GET /v1/expert/conversations/{id}/export`
#[utoipa::path(
    get,
    path = "/v1/expert/conversations/{id}/export",
    tag = "expert",
    summary = "Export a conversation",
    description = "Every message, as a JSON file download. Audited.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)")),
    responses(
        (status = 200, description = "The conversation", body = crate::http::openapi::schemas::Export, headers(("Content-Disposition" = String, description = "`attachment; filename=\"conversation-<id>.json\"`"))),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 400, description = "`invalid_path`", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, or not one the caller may see", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn export(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<ConversationId>,
) -> Result<Response, ApiError> {
    let conversation = state.experts.visible(&staff.user, &id).await?;
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let batch = messages::after(&mut state.store.reader(), &id, after, 500).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        all.extend(batch);
    }
    audit(
        &state,
        &staff,
        audit::Action::Export,
        Some(&id),
        json!({"messages": all.len()}),
    )
    .await?;
    let contact = contact_of(&state, &conversation.contact_id).await?;
    let mut response = Json(json!({
        "conversation": conversation,
        "contact": contact,
        "messages": all,
        "exported_at": state.clock.now(),
    }))
    .into_response();
    if let Ok(value) = format!("attachment; filename=\"conversation-{id}.json\"").parse() {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `GET /v1/expert/events`: staff notices the caller may see. A notice about a conversation the
/// caller does not own and that is not waiting is not sent to experts.
#[utoipa::path(
    get,
    path = "/v1/expert/events",
    tag = "expert",
    summary = "Staff notices",
    description = "Server-sent events about conversations the caller may see (queued, assigned, transferred, closed…); the stream ends when the caller's access does.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    responses(
        (status = 200, description = "Staff notices", content_type = "text/event-stream", body = String),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`: too many event streams open", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn events(
    State(state): State<AppState>,
    staff: StaffUser,
) -> Result<Response, ApiError> {
    let permit = stream_place(&state, &staff)?;
    let receiver = state.hub.subscribe_staff();
    let user = staff.user.clone();
    let notices = BroadcastStream::new(receiver)
        .take_until(access_ends(state.clone(), staff, None))
        .filter_map(move |notice| {
            let user = user.clone();
            async move {
                let event = match notice {
                    // Missed notices (another instance's): the dashboard reloads its lists.
                    Ok(notice) if notice.kind == NoticeKind::Reload => {
                        Event::default().event("reload").data("{}")
                    }
                    Ok(notice) => {
                        let mine = notice.expert_id.as_ref() == Some(&user.id);
                        let queue = matches!(
                            notice.kind,
                            NoticeKind::Queued
                                | NoticeKind::Assigned
                                | NoticeKind::Released
                                | NoticeKind::Closed
                                | NoticeKind::TimedOut
                                | NoticeKind::Transferred
                        );
                        if !(mine || queue || user.role.includes(StaffRole::Supervisor)) {
                            return None;
                        }
                        Event::default()
                            .event("notice")
                            .json_data(&*notice)
                            .unwrap_or_default()
                    }
                    // Fell behind: the dashboard reloads its lists.
                    Err(_) => Event::default().event("reload").data("{}"),
                };
                Some(Ok::<_, Infallible>(event))
            }
        });
    let hello = futures::stream::once(async { Ok(Event::default().event("hello").data("{}")) });
    Ok(sse_response(hello.chain(notices), &state, Some(permit)))
}
