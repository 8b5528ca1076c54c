//! What supervisors (and admins) see: every live conversation, any of them observed live, an end
//! user's conversations, and contacts found by name, phone, e-mail or username. Experts get 403.
//!
//! - `GET /v1/supervisor/conversations?page=&limit=`
//! - `GET /v1/supervisor/conversations/{id}/observe`: SSE mirror of the conversation, its history
//!   replayed first; the first event (`observer`) marks the stream as an observer's, and observing
//!   never marks anything read.
//! - `GET /v1/supervisor/users/{id}/conversations`: an end user's (a contact's) conversations.
//! - `GET /v1/supervisor/contacts?q=&page=&limit=`
//! - `GET /v1/supervisor/evaluations?result=failed|passed&conversation_id=&message_id=&page=&limit=`:
//!   the verdicts on AI replies, newest first — the review list of flagged replies.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response, sse::Event},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    AppState,
    error::ApiError,
    events::conversation_stream,
    extract::{ApiPath, ApiQuery, StaffUser},
    follow::Audience,
    paging,
    staff::audit,
    staff_streams::{access_ends, stream_place},
};
use crate::{
    experts::supervision::{Listed, Supervision},
    ids::{ContactId, ConversationId},
    live::Position,
    store::audit::Action as AuditAction,
    store::{conversations, evaluations, users::StaffRole},
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct Page {
    page: Option<i64>,
    limit: Option<i64>,
    q: Option<String>,
}

impl Page {
    fn bounds(&self) -> Result<(i64, i64, i64), ApiError> {
        let page = self.page.unwrap_or(1);
        let limit = self.limit.unwrap_or(20);
        match paging::offset(page, limit) {
            Some(offset) if (1..=100).contains(&limit) => Ok((page, limit, offset)),
            _ => Err(ApiError::invalid(
                "invalid_query",
                format!(
                    "page must be between 1 and {} and limit between 1 and 100",
                    paging::MAX_PAGE
                ),
            )),
        }
    }
}

/// `GET /v1/supervisor/conversations`
#[utoipa::path(
    get,
    path = "/v1/supervisor/conversations",
    tag = "supervisor",
    summary = "Live conversations",
    description = "Every conversation not closed, most recently active first, with its end user's name.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(Page),
    responses(
        (status = 200, description = "A page", body = crate::http::openapi::schemas::LivePage),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: the route needs the supervisor role", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_query`", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn live(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiQuery(params): ApiQuery<Page>,
) -> Result<Response, ApiError> {
    staff.require(StaffRole::Supervisor)?;
    let (page, limit, offset) = params.bounds()?;
    let (listed, total) = conversations::live(&mut state.store.reader(), offset, limit).await?;
    // Conversations as everywhere else, with their end user's name.
    let items: Vec<Value> = listed
        .into_iter()
        .map(|l| {
            let mut item = json!(l.conversation);
            if let Some(fields) = item.as_object_mut() {
                fields.insert("contact_name".into(), json!(l.contact_name));
            }
            item
        })
        .collect();
    Ok(
        Json(json!({"conversations": items, "total": total, "page": page, "limit": limit}))
            .into_response(),
    )
}

/// `GET /v1/supervisor/conversations/{id}/observe`
#[utoipa::path(
    get,
    path = "/v1/supervisor/conversations/{id}/observe",
    tag = "supervisor",
    summary = "Observe a conversation",
    description = "Its event stream from the start, after an `observer` event with the conversation. Audited.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)")),
    responses(
        (status = 200, description = "`observer`, then the conversation's events", content_type = "text/event-stream", body = String),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: the route needs the supervisor role", body = crate::http::error::ErrorBody),
        (status = 400, description = "`invalid_path`", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`: too many event streams open", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn observe(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<ConversationId>,
) -> Result<Response, ApiError> {
    staff.require(StaffRole::Supervisor)?;
    let conversation = conversations::get(&mut state.store.reader(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let permit = stream_place(&state, &staff)?;
    audit(&state, &staff, AuditAction::Observe, Some(&id), json!({})).await?;
    let hello = Event::default()
        .event("observer")
        .json_data(json!({"observer": true, "conversation": conversation}))
        .unwrap_or_default();
    let until = access_ends(state.clone(), staff, Some(conversation.id.clone()));
    conversation_stream(
        &state,
        conversation.id,
        Position::default(),
        Some(hello),
        until,
        permit,
        Audience::Staff,
    )
    .await
}

/// `GET /v1/supervisor/users/{id}/conversations`
#[utoipa::path(
    get,
    path = "/v1/supervisor/users/{id}/conversations",
    tag = "supervisor",
    summary = "A contact's conversations",
    description = "Audited.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(("id" = String, Path, description = "The contact's id (UUID)"), Page),
    responses(
        (status = 200, description = "A page", body = crate::http::openapi::schemas::ContactConversationsPage),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: the route needs the supervisor role", body = crate::http::error::ErrorBody),
        (status = 400, description = "`invalid_path`", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such contact", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_query`", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn of_contact(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(contact_id): ApiPath<ContactId>,
    ApiQuery(params): ApiQuery<Page>,
) -> Result<Response, ApiError> {
    staff.require(StaffRole::Supervisor)?;
    let (page, limit, offset) = params.bounds()?;
    let found = supervision(&state)
        .conversations_of(&staff.actor(), &contact_id, offset, limit)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let Listed { items, total } = found.conversations;
    Ok(
        Json(json!({"conversations": items, "total": total, "page": page, "limit": limit}))
            .into_response(),
    )
}

/// `GET /v1/supervisor/contacts?q=`
#[utoipa::path(
    get,
    path = "/v1/supervisor/contacts",
    tag = "supervisor",
    summary = "Search contacts",
    description = "By name or channel id (`q`). Audited.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(Page),
    responses(
        (status = 200, description = "A page", body = crate::http::openapi::schemas::ContactsPage),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: the route needs the supervisor role", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_query`", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn search(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiQuery(params): ApiQuery<Page>,
) -> Result<Response, ApiError> {
    staff.require(StaffRole::Supervisor)?;
    let (page, limit, offset) = params.bounds()?;
    let q = params.q.as_deref().unwrap_or_default().trim();
    let Listed {
        items: found,
        total,
    } = supervision(&state)
        .search_contacts(&staff.actor(), q, offset, limit)
        .await?;
    Ok(
        Json(json!({"contacts": found, "total": total, "page": page, "limit": limit}))
            .into_response(),
    )
}

/// The supervisors' lookups over the gateway's store.
pub(super) fn supervision(state: &AppState) -> Supervision<'_> {
    Supervision {
        store: &state.store,
        clock: &state.clock,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct EvaluationQuery {
    page: Option<i64>,
    limit: Option<i64>,
    /// `failed`, `passed` or `all` (the default).
    result: Option<String>,
    conversation_id: Option<String>,
    message_id: Option<String>,
}

/// `GET /v1/supervisor/evaluations`
#[utoipa::path(
    get,
    path = "/v1/supervisor/evaluations",
    tag = "supervisor",
    summary = "Evaluations of AI replies",
    description = "Newest first, filtered by result, conversation or message. Audited.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(EvaluationQuery),
    responses(
        (status = 200, description = "A page", body = crate::http::openapi::schemas::EvaluationsPage),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: the route needs the supervisor role", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_query`", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn evaluations(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiQuery(params): ApiQuery<EvaluationQuery>,
) -> Result<Response, ApiError> {
    staff.require(StaffRole::Supervisor)?;
    let (page, limit, offset) = Page {
        page: params.page,
        limit: params.limit,
        q: None,
    }
    .bounds()?;
    let passed = match params.result.as_deref() {
        None | Some("all") => None,
        Some("failed") => Some(false),
        Some("passed") => Some(true),
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_query",
                "result must be failed, passed or all",
            ));
        }
    };
    let filter = evaluations::Filter {
        passed,
        conversation_id: params.conversation_id.as_deref(),
        message_id: params.message_id.as_deref(),
    };
    let (items, total) =
        evaluations::page(&mut state.store.reader(), filter, offset, limit).await?;
    audit(
        &state,
        &staff,
        AuditAction::ListEvaluations,
        params.conversation_id.as_deref(),
        json!({"result": params.result, "message_id": params.message_id}),
    )
    .await?;
    Ok(
        Json(json!({"evaluations": items, "total": total, "page": page, "limit": limit}))
            .into_response(),
    )
}
