//! The agents catalogue of the visitor API: `GET /v1/agents` lists the agents a visitor may
//! choose (for a message: `agent` in `POST /v1/chat/messages`), `POST /v1/agents/recommend`
//! picks one for a task. The catalogue itself lives in `agents::catalogue`; this module only
//! identifies the visitor, counts the request against their rate, and shapes the answer.

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};

use super::{
    AppState,
    error::ApiError,
    extract::{ApiJson, ClientAddress, Visitor},
};
use crate::agents::{
    Chosen,
    catalogue::{CatalogueAgent, RecommendError, Recommendation},
};

/// The agent `name`, if visitors may choose it: the one check of every route that takes an
/// `agent`. An agent that exists but is not selectable is refused exactly like one that does not
/// exist, so that the answer reveals nothing the catalogue does not list.
pub(super) fn chosen(state: &AppState, name: &str) -> Result<Chosen, ApiError> {
    state.agents.choose(name).ok_or_else(|| {
        ApiError::invalid(
            "agent_not_selectable",
            "agent must be the id of a selectable agent (see GET /v1/agents)",
        )
    })
}

/// The selectable agents.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct AgentList {
    /// By id.
    agents: Vec<CatalogueAgent>,
}

/// What a recommendation is for.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RecommendRequest {
    /// What the visitor wants done: `general`, or a tag of the selectable agents (`code`,
    /// `creative`…).
    #[schema(example = "code")]
    task: String,
    /// What matters most: `speed`, `quality` or `cost`.
    #[schema(example = "quality")]
    priority: String,
}

/// `GET /v1/agents`
#[utoipa::path(
    get,
    path = "/v1/agents",
    tag = "agents",
    summary = "List the agents a visitor may choose",
    description = "The agents the operator marked `selectable`, by id: what they are, what they can do, what they cost, and whether their calls work right now (`availability`: `healthy`, or `failing` with the last error and since when, as this gateway's own calls to them showed). Send an `id` as `agent` with a message to have that agent answer it. Counts against the visitor's message rate.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    responses(
        (status = 200, description = "The selectable agents (none: an empty list)", body = AgentList),
        (status = 400, description = "`invalid_device_id`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`, `invalid_token`, `token_required`", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    visitor: Visitor,
    ClientAddress(address): ClientAddress,
) -> Result<Json<AgentList>, ApiError> {
    state
        .limits
        .visitors
        .message(&visitor.external_id(), address, false)?;
    Ok(Json(AgentList {
        agents: state.agents.agents(),
    }))
}

/// `POST /v1/agents/recommend`
#[utoipa::path(
    post,
    path = "/v1/agents/recommend",
    tag = "agents",
    summary = "Recommend an agent for a task",
    description = "Picks one selectable agent for `task` when `priority` matters most: among the agents tagged for the task (for `general` with no agent tagged for it: all of them), healthy ones first, then those tagged with the priority, then the cheapest (`cost`), the one reading the most context (`quality`) or a streaming one (`speed`). `reason` says why, in a sentence. Counts against the visitor's message rate.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    request_body(content = RecommendRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The agent and why", body = Recommendation),
        (status = 400, description = "`invalid_device_id`, `invalid_json`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`, `invalid_token`, `token_required`", body = crate::http::error::ErrorBody),
        (status = 404, description = "`no_selectable_agent`: the operator made no agent selectable", body = crate::http::error::ErrorBody),
        (status = 413, description = "`body_too_large`", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_task`: not `general` nor a task of the selectable agents (the message lists them); `invalid_priority`: not `speed`, `quality` or `cost`; `invalid_request`: a field missing, of the wrong type, or unknown", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
    ),
)]
pub(super) async fn recommend(
    State(state): State<AppState>,
    visitor: Visitor,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<RecommendRequest>,
) -> Result<Json<Recommendation>, ApiError> {
    state
        .limits
        .visitors
        .message(&visitor.external_id(), address, false)?;
    let recommendation =
        state
            .agents
            .recommend(&body.task, &body.priority)
            .map_err(|e| match e {
                RecommendError::InvalidTask { .. } => {
                    ApiError::invalid("invalid_task", e.to_string())
                }
                RecommendError::InvalidPriority => {
                    ApiError::invalid("invalid_priority", e.to_string())
                }
                RecommendError::NoSelectableAgent => ApiError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "no_selectable_agent",
                    e.to_string(),
                ),
            })?;
    Ok(Json(recommendation))
}
