//! A visitor's conversations: create, list, read, rename, delete, hand to a human.
//!
//! Every route looks conversations up together with their owner, so another visitor's
//! conversation answers 404 exactly like a missing one.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use switchboard_channel::Channel;
use switchboard_web::conversation::{self as request, NewConversationRequest, RenameRequest};

use crate::ids::ConversationId;

use super::{
    AppState,
    error::ApiError,
    extract::{ApiBytes, ApiJson, ApiPath, ApiQuery, ClientAddress, Visitor},
};
use crate::store::{
    contacts,
    conversations::{self, Conversation, EmptyConversation, Mode},
    messages::{self, Message},
};

/// The largest page size.
const MAX_LIMIT: i64 = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageParams {
    #[serde(default = "first_page")]
    page: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn first_page() -> i64 {
    1
}

fn default_limit() -> i64 {
    20
}

fn check_limit(limit: i64) -> Result<i64, ApiError> {
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid(
            "invalid_query",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ))
    }
}

/// A conversation as its end user sees it: who answers (the AI's agent, or an expert — never
/// which staff account), not the staff's bookkeeping.
#[derive(Debug)]
pub(super) struct VisitorView(pub Conversation);

impl Serialize for VisitorView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let c = &self.0;
        let mut st = s.serialize_struct("Conversation", 12)?;
        st.serialize_field("id", &c.id)?;
        st.serialize_field("channel", &c.channel)?;
        st.serialize_field("title", &c.title)?;
        st.serialize_field("source", &c.source)?;
        st.serialize_field("metadata", &c.metadata.0)?;
        st.serialize_field("mode", &c.mode)?;
        st.serialize_field("agent", &c.active_agent)?;
        st.serialize_field("lock_expires_at", &c.lock_expires_at())?;
        st.serialize_field("queued_at", &c.queued_at)?;
        st.serialize_field("last_seq", &c.last_seq)?;
        st.serialize_field("created_at", &c.created_at)?;
        st.serialize_field("updated_at", &c.updated_at)?;
        st.end()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ConversationPage {
    #[schema(value_type = Vec<super::openapi::schemas::VisitorConversation>)]
    conversations: Vec<VisitorView>,
    page: i64,
    limit: i64,
    total: i64,
}

/// `GET /v1/conversations?page=&limit=`: the visitor's conversations, most recently active first.
#[utoipa::path(
    get,
    path = "/v1/conversations",
    tag = "conversations",
    summary = "The visitor's conversations",
    description = "Most recently active first, with the total.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of conversations", body = ConversationPage),
        (status = 400, description = "`invalid_device_id`, `invalid_path`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: neither `X-Device-ID` nor a bearer token; `invalid_token`: a bearer token that is not valid", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_query`: page below 1 or limit outside 1–100", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    visitor: Visitor,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<ConversationPage>, ApiError> {
    let limit = check_limit(params.limit)?;
    if params.page < 1 {
        return Err(ApiError::invalid("invalid_query", "page starts at 1"));
    }
    let mut reader = state.store.reader();
    let contact = contacts::find_id(&mut reader, Channel::WEB, &visitor.external_id()).await?;
    let (conversations, total) = match contact {
        Some(contact) => {
            let offset = (params.page - 1).saturating_mul(limit);
            conversations::page_for_contact(&mut reader, &contact, offset, limit).await?
        }
        None => (Vec::new(), 0),
    };
    Ok(Json(ConversationPage {
        conversations: conversations.into_iter().map(VisitorView).collect(),
        page: params.page,
        limit,
        total,
    }))
}

/// Finds one of the visitor's live conversations.
pub(super) async fn owned(
    state: &AppState,
    visitor: &Visitor,
    id: &ConversationId,
) -> Result<Conversation, ApiError> {
    conversations::get_for_owner(
        &mut state.store.reader(),
        id,
        Channel::WEB,
        &visitor.external_id(),
    )
    .await?
    .ok_or_else(|| ApiError::not_found("conversation"))
}

/// A conversation with what a client shows in its list of conversations.
#[derive(Debug, Serialize)]
pub(super) struct ConversationDetails {
    #[serde(flatten)]
    conversation: VisitorView,
    /// How many messages it holds.
    message_count: i64,
    /// Its newest message.
    last_message: Option<Message>,
}

/// `GET /v1/conversations/{id}`
#[utoipa::path(
    get,
    path = "/v1/conversations/{id}",
    tag = "conversations",
    summary = "One conversation",
    description = "Who answers it now (mode, agent and lock), its title and its last seq.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)")),
    responses(
        (status = 200, description = "The conversation, its message count and newest message", body = crate::http::openapi::schemas::ConversationDetails),
        (status = 400, description = "`invalid_device_id`, `invalid_path`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: neither `X-Device-ID` nor a bearer token; `invalid_token`: a bearer token that is not valid", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, deleted, or someone else's", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn get_one(
    State(state): State<AppState>,
    visitor: Visitor,
    ApiPath(id): ApiPath<ConversationId>,
) -> Result<Json<ConversationDetails>, ApiError> {
    let conversation = owned(&state, &visitor, &id).await?;
    let mut reader = state.store.reader();
    let message_count = conversations::message_count(&mut reader, &conversation.id).await?;
    let last_message = messages::page(&mut reader, &conversation.id, None, 1)
        .await?
        .pop()
        .map(Message::for_visitor);
    Ok(Json(ConversationDetails {
        conversation: VisitorView(conversation),
        message_count,
        last_message,
    }))
}

/// `POST /v1/conversations`: a conversation to write in later (201). Counts against the
/// visitor's new-conversation rate like a first message does.
#[utoipa::path(
    post,
    path = "/v1/conversations",
    tag = "conversations",
    summary = "Create a conversation",
    description = "An empty conversation to write in later (send messages with its `conversation_id`). With `agent` (an `id` of `GET /v1/agents`), that agent answers it — for as long as the conversation stays with it (`routing.lock_ttl` or the agent's own after its last answer), as with an agent routing picked. Counts against the visitor's new-conversation rate.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    request_body(content = NewConversationRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = crate::http::openapi::schemas::ConversationDetails, headers(("Location" = String, description = "The conversation's URL"))),
        (status = 400, description = "`invalid_device_id`, `invalid_json`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`, `invalid_token`, `token_required`", body = crate::http::error::ErrorBody),
        (status = 413, description = "`body_too_large`", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_title`, `invalid_source`, `invalid_metadata` (over 32 keys or 4 KiB), `agent_not_selectable` (`agent` is not the id of a selectable agent), `invalid_request`", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`: too many new conversations", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn create(
    State(state): State<AppState>,
    visitor: Visitor,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<NewConversationRequest>,
) -> Result<Response, ApiError> {
    let title = body.title.as_deref().map(request::title).transpose()?;
    let source = body.source.as_deref().map(request::source).transpose()?;
    let metadata = body
        .metadata
        .map(request::metadata)
        .transpose()?
        .unwrap_or_default();
    let chosen = body
        .agent
        .as_deref()
        .map(|name| super::agents::chosen(&state, name))
        .transpose()?;
    state
        .limits
        .visitors
        .conversation(&visitor.external_id(), address)?;
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    let contact_id = contacts::upsert(&mut tx, Channel::WEB, &visitor.0.contact(), now).await?;
    let conversation = conversations::create_empty(
        &mut tx,
        EmptyConversation {
            channel: Channel::WEB,
            contact_id: &contact_id,
            title,
            source,
            metadata,
            agent: chosen.as_ref().map(|c| (c.name(), c.lock_ttl())),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    let location = format!("/v1/conversations/{}", conversation.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(ConversationDetails {
            conversation: VisitorView(conversation),
            message_count: 0,
            last_message: None,
        }),
    )
        .into_response())
}

/// `PATCH /v1/conversations/{id}`: renames the conversation.
#[utoipa::path(
    patch,
    path = "/v1/conversations/{id}",
    tag = "conversations",
    summary = "Rename a conversation",
    security(("device_id" = []), ("visitor_jwt" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)")),
    request_body(content = RenameRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The conversation as it is now", body = crate::http::openapi::schemas::VisitorConversation),
        (status = 400, description = "`invalid_device_id`, `invalid_path`, `invalid_json`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`, `invalid_token`, `token_required`", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, deleted, or someone else's", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_title`: empty, over 200 characters or with control characters; `invalid_request`", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn rename(
    State(state): State<AppState>,
    visitor: Visitor,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(body): ApiJson<RenameRequest>,
) -> Result<Json<VisitorView>, ApiError> {
    let title = request::title(&body.title)?;
    let conversation = owned(&state, &visitor, &id).await?;
    let mut tx = state.store.begin().await?;
    let renamed = conversations::rename(
        &mut tx,
        &conversation.id,
        &conversation.contact_id,
        &title,
        state.clock.now(),
    )
    .await?
    .ok_or_else(|| ApiError::not_found("conversation"))?;
    tx.commit().await?;
    Ok(Json(VisitorView(renamed)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct MessageParams {
    #[serde(default = "default_message_limit")]
    limit: i64,
    /// Only messages with a smaller seq (for paging backwards).
    before: Option<i64>,
}

fn default_message_limit() -> i64 {
    50
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct MessagePage {
    messages: Vec<Message>,
    /// Whether older messages exist; page with `before` = the first message's seq.
    has_more: bool,
}

/// `GET /v1/conversations/{id}/messages?limit=&before=`: oldest first within the page.
#[utoipa::path(
    get,
    path = "/v1/conversations/{id}/messages",
    tag = "conversations",
    summary = "A conversation's messages",
    description = "Oldest first within the page; page backwards with `before` = the first message's seq.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)"), MessageParams),
    responses(
        (status = 200, description = "A page of messages", body = MessagePage),
        (status = 400, description = "`invalid_device_id`, `invalid_path`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: neither `X-Device-ID` nor a bearer token; `invalid_token`: a bearer token that is not valid", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, deleted, or someone else's", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_query`: limit outside 1–100", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn messages(
    State(state): State<AppState>,
    visitor: Visitor,
    ApiPath(id): ApiPath<ConversationId>,
    ApiQuery(params): ApiQuery<MessageParams>,
) -> Result<Json<MessagePage>, ApiError> {
    let limit = check_limit(params.limit)?;
    let conversation = owned(&state, &visitor, &id).await?;
    let messages = messages::page(
        &mut state.store.reader(),
        &conversation.id,
        params.before,
        limit,
    )
    .await?;
    let has_more = messages.first().is_some_and(|m| m.seq > 1);
    let messages = messages.into_iter().map(Message::for_visitor).collect();
    Ok(Json(MessagePage { messages, has_more }))
}

/// `DELETE /v1/conversations/{id}`: soft delete; afterwards the conversation is gone for the
/// visitor (404 everywhere) but kept in the database.
#[utoipa::path(
    delete,
    path = "/v1/conversations/{id}",
    tag = "conversations",
    summary = "Delete a conversation",
    description = "A soft delete: afterwards the conversation answers 404 everywhere, but is kept in the database.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`invalid_device_id`, `invalid_path`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: neither `X-Device-ID` nor a bearer token; `invalid_token`: a bearer token that is not valid", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, deleted, or someone else's", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    visitor: Visitor,
    ApiPath(id): ApiPath<ConversationId>,
) -> Result<StatusCode, ApiError> {
    let conversation = owned(&state, &visitor, &id).await?;
    let mut tx = state.store.begin().await?;
    let deleted = conversations::soft_delete(
        &mut tx,
        &conversation.id,
        &conversation.contact_id,
        state.clock.now(),
    )
    .await?;
    tx.commit().await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("conversation"))
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HandoffRequest {
    /// Why the visitor wants a person.
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct HandoffResponse {
    #[schema(value_type = super::openapi::schemas::VisitorConversation)]
    pub(super) conversation: VisitorView,
    /// The notice shown to the visitor; `null` when an expert already had the conversation.
    pub(super) message: Option<Message>,
}

/// `POST /v1/conversations/{id}/handoff`: ask for a person. The AI stops answering.
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/handoff",
    tag = "conversations",
    summary = "Ask for a person",
    description = "Switches the conversation to expert mode; the AI stops answering. The body is optional. Asking again while experts have the conversation changes nothing.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)")),
    request_body(content = Option<HandoffRequest>, content_type = "application/json", description = "Optional: why the visitor wants a person (at most 500 characters are kept)"),
    responses(
        (status = 200, description = "The conversation in expert mode, and the notice shown to the visitor", body = HandoffResponse),
        (status = 400, description = "`invalid_device_id`, `invalid_path`, `invalid_json`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: neither `X-Device-ID` nor a bearer token; `invalid_token`: a bearer token that is not valid", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, deleted, or someone else's", body = crate::http::error::ErrorBody),
        (status = 409, description = "`conversation_closed`", body = crate::http::error::ErrorBody),
        (status = 413, description = "`body_too_large`", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_request`: wrong types or unknown fields", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests for a person", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn handoff(
    State(state): State<AppState>,
    visitor: Visitor,
    ClientAddress(address): ClientAddress,
    ApiPath(id): ApiPath<ConversationId>,
    ApiBytes(body): ApiBytes,
) -> Result<Response, ApiError> {
    // The body is optional.
    let request: HandoffRequest = if body.iter().all(u8::is_ascii_whitespace) {
        HandoffRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                ApiError::invalid("invalid_request", e.to_string())
            }
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {e}"),
            ),
        })?
    };
    let handoff = hand_off(&state, &visitor, address, &id, request.reason).await?;
    Ok(Json(handoff).into_response())
}

/// Hands one of the visitor's conversations to a person, whatever carries the request (HTTP, a
/// WebSocket frame); `reason` is cut to 500 characters.
pub(super) async fn hand_off(
    state: &AppState,
    visitor: &Visitor,
    address: std::net::IpAddr,
    id: &ConversationId,
    reason: Option<String>,
) -> Result<HandoffResponse, ApiError> {
    let conversation = owned(state, visitor, id).await?;
    // Asking again while experts already have the conversation changes nothing; only a real
    // handoff counts against the visitor's rate.
    if conversation.mode == Mode::Ai {
        state
            .limits
            .visitors
            .handoff(&visitor.external_id(), address)?;
    }
    let reason = reason
        .map(|r| r.chars().take(500).collect::<String>())
        .unwrap_or_else(|| "the visitor asked for a person".into());
    let handoff = state.pipeline.handoff(&conversation.id, &reason).await?;
    Ok(HandoffResponse {
        conversation: VisitorView(handoff.conversation),
        message: handoff.notice.map(Message::for_visitor),
    })
}
