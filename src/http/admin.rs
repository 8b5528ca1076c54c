//! What admins do: manage staff accounts and read the audit log. Anyone else gets 403.
//!
//! - `POST /v1/admin/users` `{email, name?, role, password, capacity?}` → 201
//! - `GET /v1/admin/users`, `DELETE /v1/admin/users/{id}` (disables; sessions end)
//! - `GET /v1/admin/audit?actor=&conversation=&page=&limit=`, newest first

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{
    AppState,
    error::ApiError,
    extract::{ApiJson, ApiPath, ApiQuery, StaffUser},
    paging,
    staff::audit,
};
use crate::{
    ids::UserId,
    staff::AddUserError,
    store::audit::Action as AuditAction,
    store::{
        audit as audit_log,
        users::{self, StaffRole},
    },
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    email: String,
    name: Option<String>,
    role: StaffRole,
    password: String,
    capacity: Option<i64>,
}

/// `POST /v1/admin/users`
#[utoipa::path(
    post,
    path = "/v1/admin/users",
    tag = "admin",
    summary = "Add a staff account",
    security(("staff_token" = []), ("dashboard_session" = [])),
    request_body = NewUser,
    responses(
        (status = 201, description = "The new account", body = crate::http::openapi::schemas::UserEnvelope),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: the route needs the admin role; `csrf`: a session request that changes something without `X-CSRF-Token`", body = crate::http::error::ErrorBody),
        (status = 400, description = "`invalid_json`", body = crate::http::error::ErrorBody),
        (status = 409, description = "`user_exists`: the e-mail address is taken", body = crate::http::error::ErrorBody),
        (status = 413, description = "`body_too_large`", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_request`: wrong types or unknown fields; a bad e-mail address, a short password, a capacity outside 1–100", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn add_user(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<Response, ApiError> {
    staff.require(StaffRole::Admin)?;
    let capacity = body
        .capacity
        .unwrap_or(state.config.experts.default_capacity);
    if !(1..=100).contains(&capacity) {
        return Err(ApiError::invalid(
            "invalid_request",
            "capacity must be between 1 and 100",
        ));
    }
    let user = state
        .staff
        .add_user(
            &body.email,
            body.name.as_deref().unwrap_or_default(),
            body.role,
            &body.password,
            capacity,
            Some(&staff.actor()),
        )
        .await
        .map_err(|e| match e {
            AddUserError::Taken => {
                ApiError::new(StatusCode::CONFLICT, "user_exists", e.to_string())
            }
            AddUserError::BadEmail | AddUserError::Password(_) => {
                ApiError::invalid("invalid_request", e.to_string())
            }
            AddUserError::Store(e) => ApiError::internal(&e),
        })?;
    Ok((StatusCode::CREATED, Json(json!({"user": user}))).into_response())
}

/// `GET /v1/admin/users`
#[utoipa::path(
    get,
    path = "/v1/admin/users",
    tag = "admin",
    summary = "Every staff account",
    description = "Audited.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    responses(
        (status = 200, description = "The accounts", body = crate::http::openapi::schemas::Users),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: the route needs the admin role", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn list_users(
    State(state): State<AppState>,
    staff: StaffUser,
) -> Result<Response, ApiError> {
    staff.require(StaffRole::Admin)?;
    let all = users::list(&mut state.store.reader()).await?;
    audit(
        &state,
        &staff,
        AuditAction::ListUsers,
        None,
        json!({"users": all.len()}),
    )
    .await?;
    Ok(Json(json!({"users": all})).into_response())
}

/// `DELETE /v1/admin/users/{id}`
#[utoipa::path(
    delete,
    path = "/v1/admin/users/{id}",
    tag = "admin",
    summary = "Disable a staff account",
    description = "Their sessions and tokens stop working; their conversations go back to the queue.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)")),
    responses(
        (status = 204, description = "Disabled"),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: the route needs the admin role; `csrf`: a session request that changes something without `X-CSRF-Token`", body = crate::http::error::ErrorBody),
        (status = 400, description = "`invalid_path`", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such account", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_request`: the caller's own account", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn disable_user(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<UserId>,
) -> Result<Response, ApiError> {
    staff.require(StaffRole::Admin)?;
    if staff.user.id == id.as_str() {
        return Err(ApiError::invalid(
            "invalid_request",
            "you cannot disable yourself",
        ));
    }
    // Their conversations must not wait for someone who will not come back.
    if !state.experts.disable_account(&staff.actor(), &id).await? {
        return Err(ApiError::not_found("user"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    actor: Option<String>,
    conversation: Option<String>,
    page: Option<i64>,
    limit: Option<i64>,
}

/// `GET /v1/admin/audit`
#[utoipa::path(
    get,
    path = "/v1/admin/audit",
    tag = "admin",
    summary = "The audit log",
    description = "Newest first, filtered by actor or conversation.",
    security(("staff_token" = []), ("dashboard_session" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "A page", body = crate::http::openapi::schemas::AuditPage),
        (status = 401, description = "`unauthenticated`: no bearer token or session; `invalid_token`: an expired, revoked or disabled one", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: the route needs the admin role", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_query`", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn audit_log(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiQuery(params): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    staff.require(StaffRole::Admin)?;
    let page = params.page.unwrap_or(1);
    let limit = params.limit.unwrap_or(50);
    let Some(offset) = paging::offset(page, limit).filter(|_| (1..=500).contains(&limit)) else {
        return Err(ApiError::invalid(
            "invalid_query",
            format!(
                "page must be between 1 and {} and limit between 1 and 500",
                paging::MAX_PAGE
            ),
        ));
    };
    let (entries, total) = audit_log::page(
        &mut state.store.reader(),
        params.actor.as_deref(),
        params.conversation.as_deref(),
        offset,
        limit,
    )
    .await?;
    // Recorded after the page is read, so the reader does not see their own reading of it.
    audit(
        &state,
        &staff,
        AuditAction::ReadAuditLog,
        None,
        json!({"actor": params.actor, "conversation": params.conversation, "page": page}),
    )
    .await?;
    Ok(
        Json(json!({"entries": entries, "total": total, "page": page, "limit": limit}))
            .into_response(),
    )
}
