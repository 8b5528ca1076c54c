//! What admins see of the AI's usage, and how they set a contact's plan or credits.
//!
//! - `GET /v1/admin/usage?from=YYYY-MM-DD&to=YYYY-MM-DD&group_by=day|agent|contact`: totals of
//!   the AI replies stored on the UTC days `from` to `to` (both included; by default the last 30
//!   days, at most 366): replies, tokens in and out, cost, mean response time.
//! - `PUT /v1/admin/contacts/{id}/plan` `{plan?, credits?}`: gives a contact a plan of
//!   `[quotas.plans]` (`null`: back to the default plan) and/or a credit balance in the
//!   configured currency (`null`: no credit limit). It applies to their next message.
//! - `GET /v1/admin/contacts/{id}/plan`: a contact's plan, credits, what they used today and this
//!   month, and whether they are over a quota now.
//!
//! All are admin-only and audited.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use chrono::{Days, NaiveDate, NaiveTime};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::{
    AppState,
    error::ApiError,
    extract::{ApiJson, ApiPath, ApiQuery, StaffUser},
};
use crate::{
    config::MAX_QUOTA,
    ids::ContactId,
    store::{
        audit::{self, Action},
        usage::{self, GroupBy, PlanChange, QuotaAccount, Total},
        users::StaffRole,
    },
    time::Timestamp,
};

/// The longest span of days one question may cover.
const MAX_DAYS: u64 = 366;
/// The days covered when the question names none.
const DEFAULT_DAYS: u64 = 30;
/// The largest credit balance an admin may set, in units of the currency.
const MAX_CREDITS: f64 = (MAX_QUOTA / 1000) as f64;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct UsageQuery {
    /// First day (UTC, `2026-12-01`); default: 29 days before `to`.
    from: Option<String>,
    /// Last day (UTC); default: today.
    to: Option<String>,
    /// `day` (default), `agent` or `contact`.
    #[param(value_type = Option<String>)]
    group_by: Option<GroupBy>,
}

fn date(name: &str, text: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        ApiError::invalid(
            "invalid_query",
            format!("{name} must be a date like 2026-12-01, not {text:?}"),
        )
    })
}

fn start_of(day: NaiveDate) -> Timestamp {
    Timestamp::from(day.and_time(NaiveTime::MIN).and_utc())
}

/// The JSON of one group's (or all) totals.
fn shown(total: &Total) -> serde_json::Map<String, Value> {
    let mean = if total.replies > 0 {
        total.response_time_ms / total.replies
    } else {
        0
    };
    let Value::Object(map) = json!({
        "replies": total.replies,
        "estimated_replies": total.estimated_replies,
        "tokens_in": total.tokens_in,
        "tokens_out": total.tokens_out,
        "cost": total.cost_micros as f64 / 1e6,
        "mean_response_time_ms": mean,
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

/// `GET /v1/admin/usage`
#[utoipa::path(
    get,
    path = "/v1/admin/usage",
    tag = "admin",
    summary = "Usage totals of AI replies",
    description = "Replies, tokens, cost and mean response time between two UTC days (at most 366), grouped by day, agent or contact. Audited as `read_usage`.",
    security(("staff_token" = [])),
    params(UsageQuery),
    responses(
        (status = 200, description = "The totals", body = crate::http::openapi::schemas::UsageTotals),
        (status = 422, description = "`invalid_query`: a bad date, a reversed or too long range, an unknown parameter", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid staff token", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn totals(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiQuery(params): ApiQuery<UsageQuery>,
) -> Result<Response, ApiError> {
    staff.require(StaffRole::Admin)?;
    let today = state.clock.now().to_datetime().date_naive();
    let to = match &params.to {
        Some(text) => date("to", text)?,
        None => today,
    };
    let from = match &params.from {
        Some(text) => date("from", text)?,
        None => to
            .checked_sub_days(Days::new(DEFAULT_DAYS - 1))
            .unwrap_or(to),
    };
    if from > to {
        return Err(ApiError::invalid(
            "invalid_query",
            "from must not be after to",
        ));
    }
    let span = u64::try_from((to - from).num_days()).unwrap_or(u64::MAX) + 1;
    if span > MAX_DAYS {
        return Err(ApiError::invalid(
            "invalid_query",
            format!("from and to may be at most {MAX_DAYS} days apart"),
        ));
    }
    let Some(end) = to.checked_add_days(Days::new(1)) else {
        return Err(ApiError::invalid("invalid_query", "to is too far away"));
    };
    let group_by = params.group_by.unwrap_or(GroupBy::Day);
    let (start, end) = (start_of(from), start_of(end));
    let (groups, all) = {
        let mut reader = state.store.reader();
        let groups = usage::totals(&mut reader, start, end, Some(group_by)).await?;
        (groups, usage::totals(&mut reader, start, end, None).await?)
    };
    let groups: Vec<Value> = groups
        .iter()
        .map(|total| {
            let mut map = shown(total);
            let key = match group_by {
                GroupBy::Day => (
                    "day",
                    total
                        .key
                        .parse::<i64>()
                        .ok()
                        .map(|day| Timestamp(day * 86_400_000_000))
                        .map_or_else(
                            || total.key.clone(),
                            |t| t.to_datetime().date_naive().to_string(),
                        ),
                ),
                GroupBy::Agent => ("agent", total.key.clone()),
                GroupBy::Contact => ("contact_id", total.key.clone()),
            };
            map.insert(key.0.into(), Value::String(key.1));
            Value::Object(map)
        })
        .collect();
    let total = all.first().map(shown).unwrap_or_else(|| {
        shown(&Total {
            key: String::new(),
            replies: 0,
            estimated_replies: 0,
            tokens_in: 0,
            tokens_out: 0,
            cost_micros: 0,
            response_time_ms: 0,
        })
    });
    audit::record(
        &mut state.store.reader(),
        &staff.actor(),
        Action::ReadUsage,
        None,
        json!({"from": from.to_string(), "to": to.to_string(), "group_by": group_by}),
        state.clock.now(),
    )
    .await?;
    Ok(Json(json!({
        "from": from.to_string(),
        "to": to.to_string(),
        "group_by": group_by,
        "currency": state.config.quotas.currency,
        "groups": groups,
        "total": total,
    }))
    .into_response())
}

/// A field that may be absent (unchanged), `null` (cleared) or a value.
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanBody {
    #[serde(default, deserialize_with = "present")]
    plan: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    credits: Option<Option<f64>>,
}

/// `PUT /v1/admin/contacts/{id}/plan`
#[utoipa::path(
    put,
    path = "/v1/admin/contacts/{id}/plan",
    tag = "admin",
    summary = "Set a contact's plan or credits",
    description = "`{plan?, credits?}`; `null` clears either. Credits are a prepaid balance in `quotas.currency` from which each reply's cost is deducted. Applies to the contact's next message; audited as `set_plan`.",
    security(("staff_token" = [])),
    params(("id" = String, Path, description = "The contact's id (UUID)")),
    request_body(content = PlanBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The contact's standing now", body = crate::http::openapi::schemas::Standing),
        (status = 404, description = "`not_found`: no such contact", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_request`: neither field, credits out of range; `unknown_plan`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid staff token", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn set_plan(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<ContactId>,
    ApiJson(body): ApiJson<PlanBody>,
) -> Result<Response, ApiError> {
    staff.require(StaffRole::Admin)?;
    let quotas = &state.limits.quotas;
    if body.plan.is_none() && body.credits.is_none() {
        return Err(ApiError::invalid(
            "invalid_request",
            "give plan, credits or both",
        ));
    }
    if let Some(Some(plan)) = &body.plan
        && !quotas.has_plan(plan)
    {
        return Err(ApiError::invalid(
            "unknown_plan",
            format!("there is no plan {plan:?} in [quotas.plans]"),
        ));
    }
    let credit_micros = match body.credits {
        Some(Some(credits)) => {
            if !credits.is_finite() || !(0.0..=MAX_CREDITS).contains(&credits) {
                return Err(ApiError::invalid(
                    "invalid_request",
                    format!("credits must be between 0 and {MAX_CREDITS}"),
                ));
            }
            Some(Some((credits * 1e6).round() as i64))
        }
        Some(None) => Some(None),
        None => None,
    };
    let change = PlanChange {
        plan: body.plan.clone(),
        credit_micros,
    };
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    if !usage::set_plan(&mut tx, &id, &change, now).await? {
        return Err(ApiError::not_found("contact"));
    }
    audit::record(
        &mut tx,
        &staff.actor(),
        Action::SetPlan,
        None,
        json!({"contact_id": id, "plan": body.plan, "credits": body.credits}),
        now,
    )
    .await?;
    tx.commit().await?;
    // The counters of this contact, from the database, with the new plan and credits.
    let account = account_of(&state, &id).await?;
    quotas.reload(account.clone());
    Ok(standing(&state, &account))
}

/// `GET /v1/admin/contacts/{id}/plan`
#[utoipa::path(
    get,
    path = "/v1/admin/contacts/{id}/plan",
    tag = "admin",
    summary = "A contact's plan, credits and use",
    security(("staff_token" = [])),
    params(("id" = String, Path, description = "The contact's id (UUID)")),
    responses(
        (status = 200, description = "The contact's standing", body = crate::http::openapi::schemas::Standing),
        (status = 404, description = "`not_found`: no such contact", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid staff token", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn get_plan(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<ContactId>,
) -> Result<Response, ApiError> {
    staff.require(StaffRole::Admin)?;
    let account = account_of(&state, &id).await?;
    audit::record(
        &mut state.store.reader(),
        &staff.actor(),
        Action::ReadUsage,
        None,
        json!({"contact_id": id}),
        state.clock.now(),
    )
    .await?;
    Ok(standing(&state, &account))
}

/// A contact's plan, credits and use, from the database.
async fn account_of(state: &AppState, id: &ContactId) -> Result<QuotaAccount, ApiError> {
    let (day, month) = state.limits.quotas.period_starts();
    usage::quota_accounts(&mut state.store.reader(), day, month, false, Some(id))
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("contact"))
}

/// What the admin routes show of a contact: their standing in the database, and whether the
/// quotas (as this instance counts them) refuse them now.
fn standing(state: &AppState, account: &QuotaAccount) -> Response {
    let exceeded = state
        .limits
        .quotas
        .check(&account.id)
        .err()
        .map(|e| e.reason);
    Json(json!({
        "contact_id": account.id,
        "plan": account.plan.as_deref().unwrap_or(&state.config.quotas.default_plan),
        "own_plan": account.plan.is_some(),
        "credits": account.credits_left.map(|c| c as f64 / 1e6),
        "currency": state.config.quotas.currency,
        "messages_today": account.messages_day,
        "messages_this_month": account.messages_month,
        "tokens_today": account.tokens_day,
        "tokens_this_month": account.tokens_month,
        "exceeded": exceeded,
    }))
    .into_response()
}
