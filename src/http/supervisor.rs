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
    events::{Audience, conversation_stream},
    extract::{ApiPath, ApiQuery, StaffUser},
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EvaluationQuery {
    page: Option<i64>,
    limit: Option<i64>,
    /// `failed`, `passed` or `all` (the default).
    result: Option<String>,
    conversation_id: Option<String>,
    message_id: Option<String>,
}

/// `GET /v1/supervisor/evaluations`
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
