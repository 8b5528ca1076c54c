//! The dashboard's pages (the index and a conversation) and the fragments the script swaps into
//! them (the lists, a transcript).

use askama::Template;
use axum::{
    extract::{Path, Query, State, rejection::QueryRejection},
    http::StatusCode,
    response::Response,
};
use serde::Deserialize;
use serde_json::json;

use super::{
    HtmlError,
    auth::{FragmentUser, PageUser},
    render,
    views::{ConversationView, Lists, Me, TRANSCRIPT_LIMIT},
};
use crate::{
    http::{AppState, extract::StaffUser},
    ids::ConversationId,
    store::audit as audit_log,
    store::audit::Action as AuditAction,
};

/// A conversation viewed again within this time by the same person is not logged again: the
/// transcript fragment is fetched anew on every event of the conversation, and one `view` entry
/// per sitting says what the audit log needs to say.
const VIEW_LOGGED_FOR: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// `GET /dashboard`
#[derive(Template)]
#[template(path = "dashboard/index.html")]
struct IndexPage {
    me: Me,
    csrf: String,
    lists: Lists,
}

/// `GET /dashboard/conversations/{id}`
#[derive(Template)]
#[template(path = "dashboard/conversation.html")]
struct ConversationPage {
    me: Me,
    csrf: String,
    convo: ConversationView,
}

/// `GET /dashboard/fragments/lists`: the same template the index page includes.
#[derive(Template)]
#[template(path = "dashboard/lists.html")]
struct ListsFragment {
    lists: Lists,
}

/// `GET /dashboard/fragments/conversations/{id}`: the same template the conversation page
/// includes.
#[derive(Template)]
#[template(path = "dashboard/transcript.html")]
struct TranscriptFragment {
    convo: ConversationView,
}

/// The query of the lists.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListsQuery {
    /// Supervisors: the page of live conversations.
    live_page: Option<i64>,
}

/// A page number from a query: at least 1.
pub(super) fn page_number(page: Option<i64>) -> Result<i64, HtmlError> {
    match page {
        None => Ok(1),
        Some(page) if crate::http::paging::valid(page) => Ok(page),
        Some(_) => Err(HtmlError::bad_request(format!(
            "Pages are numbered from 1 to {}.",
            crate::http::paging::MAX_PAGE
        ))),
    }
}

/// A query, or a 400 page.
pub(super) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, HtmlError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| HtmlError::bad_request(e.body_text()))
}

/// `GET /dashboard`
#[utoipa::path(
    get,
    path = "/dashboard",
    tag = "dashboard",
    summary = "The dashboard",
    description = "Availability, the queue, the caller's conversations; for supervisors also the live conversations and contact search.",
    security(("dashboard_session" = [])),
    params(ListsQuery),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: redirect to `/dashboard/login`", headers(("Location" = String, description = "`/dashboard/login`"))),
        (status = 400, description = "A bad query (an HTML page)", content_type = "text/html", body = String),
        (status = 500, description = "Something went wrong (an HTML page)", content_type = "text/html", body = String),
    ),
)]
pub(super) async fn index(
    State(state): State<AppState>,
    user: PageUser,
) -> Result<Response, HtmlError> {
    let me = &user.staff.user;
    let page = IndexPage {
        me: Me::load(&state, me).await?,
        lists: Lists::load(&state, me, 1).await?,
        csrf: user.csrf,
    };
    render(StatusCode::OK, &page)
}

/// `GET /dashboard/fragments/lists`
#[utoipa::path(
    get,
    path = "/dashboard/fragments/lists",
    tag = "dashboard",
    summary = "Fragment: the index page's lists",
    security(("dashboard_session" = [])),
    params(ListsQuery),
    responses(
        (status = 200, description = "The fragment", content_type = "text/html", body = String),
        (status = 401, description = "No valid session: the script goes to the sign-in form (an HTML page)", content_type = "text/html", body = String),
        (status = 400, description = "A bad query (an HTML page)", content_type = "text/html", body = String),
        (status = 500, description = "Something went wrong (an HTML page)", content_type = "text/html", body = String),
    ),
)]
pub(super) async fn lists(
    State(state): State<AppState>,
    FragmentUser(staff): FragmentUser,
    params: Result<Query<ListsQuery>, QueryRejection>,
) -> Result<Response, HtmlError> {
    let live_page = page_number(query(params)?.live_page)?;
    let lists = Lists::load(&state, &staff.user, live_page).await?;
    render(StatusCode::OK, &ListsFragment { lists })
}

/// A conversation the user may see, with its newest messages (marked read for its owner), and
/// the access logged (once per [`VIEW_LOGGED_FOR`]).
async fn open(
    state: &AppState,
    staff: &StaffUser,
    id: &ConversationId,
) -> Result<ConversationView, HtmlError> {
    let since = state.clock.now().minus(VIEW_LOGGED_FOR);
    let logged = audit_log::latest(&mut state.store.reader(), &staff.user.id, id)
        .await?
        .is_some_and(|(action, at)| {
            [AuditAction::View, AuditAction::Observe]
                .iter()
                .any(|a| a.as_str() == action)
                && at > since
        });
    let record = (!logged).then(|| json!({}));
    let (conversation, messages) = state
        .experts
        .open(&staff.actor(), id, TRANSCRIPT_LIMIT, record)
        .await?;
    ConversationView::load(state, &staff.user, conversation, messages).await
}

/// `GET /dashboard/conversations/{id}`
#[utoipa::path(
    get,
    path = "/dashboard/conversations/{id}",
    tag = "dashboard",
    summary = "A conversation",
    description = "Transcript, reply form and actions; supervisors observe others' conversations. Audited.",
    security(("dashboard_session" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: redirect to `/dashboard/login`", headers(("Location" = String, description = "`/dashboard/login`"))),
        (status = 404, description = "No such conversation, or not one the caller may see (an HTML page)", content_type = "text/html", body = String),
        (status = 500, description = "Something went wrong (an HTML page)", content_type = "text/html", body = String),
    ),
)]
pub(super) async fn conversation(
    State(state): State<AppState>,
    user: PageUser,
    id: Result<Path<ConversationId>, axum::extract::rejection::PathRejection>,
) -> Result<Response, HtmlError> {
    let Path(id) = id.map_err(|_| HtmlError::not_found("conversation"))?;
    let convo = open(&state, &user.staff, &id).await?;
    let page = ConversationPage {
        me: Me::load(&state, &user.staff.user).await?,
        csrf: user.csrf,
        convo,
    };
    render(StatusCode::OK, &page)
}

/// `GET /dashboard/fragments/conversations/{id}`
#[utoipa::path(
    get,
    path = "/dashboard/fragments/conversations/{id}",
    tag = "dashboard",
    summary = "Fragment: a transcript and its actions",
    security(("dashboard_session" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)")),
    responses(
        (status = 200, description = "The fragment", content_type = "text/html", body = String),
        (status = 401, description = "No valid session: the script goes to the sign-in form (an HTML page)", content_type = "text/html", body = String),
        (status = 404, description = "No such conversation, or not one the caller may see (an HTML page)", content_type = "text/html", body = String),
        (status = 500, description = "Something went wrong (an HTML page)", content_type = "text/html", body = String),
    ),
)]
pub(super) async fn transcript(
    State(state): State<AppState>,
    FragmentUser(staff): FragmentUser,
    id: Result<Path<ConversationId>, axum::extract::rejection::PathRejection>,
) -> Result<Response, HtmlError> {
    let Path(id) = id.map_err(|_| HtmlError::not_found("conversation"))?;
    let convo = open(&state, &staff, &id).await?;
    render(StatusCode::OK, &TranscriptFragment { convo })
}
