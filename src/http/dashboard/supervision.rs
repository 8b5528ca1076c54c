//! The supervisors' fragments: contacts found by name, phone number, e-mail address or
//! username, and a contact's conversations. Experts get 403 here, whatever the page shows them.
//! Every search and list is written to the audit log, as in the JSON API.

use askama::Template;
use axum::{
    extract::{Path, Query, State, rejection::QueryRejection},
    http::StatusCode,
    response::Response,
};
use serde::Deserialize;

use super::{
    HtmlError,
    auth::FragmentUser,
    pages::{page_number, query},
    render,
    views::{ContactConversationRow, ContactRow, Pager},
};
use crate::{
    experts::supervision::{ContactConversations, Listed},
    http::{AppState, extract::StaffUser, supervisor::supervision as supervisor_lookups},
    store::users::StaffRole,
};

/// Contacts per page of results.
const CONTACTS_PER_PAGE: i64 = 20;
/// Conversations per page of a contact's list.
const CONVERSATIONS_PER_PAGE: i64 = 20;
/// The longest search accepted.
const MAX_QUERY_CHARS: usize = 200;

/// `GET /dashboard/fragments/contacts`
#[derive(Template)]
#[template(path = "dashboard/contacts.html")]
struct ContactsFragment {
    q: String,
    contacts: Vec<ContactRow>,
    pager: Pager,
}

/// `GET /dashboard/fragments/contacts/{id}/conversations`
#[derive(Template)]
#[template(path = "dashboard/contact_conversations.html")]
struct ContactConversationsFragment {
    contact: String,
    conversations: Vec<ContactConversationRow>,
    pager: Pager,
}

/// The search.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SearchQuery {
    #[serde(default)]
    q: String,
    page: Option<i64>,
}

/// A page of a list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    page: Option<i64>,
}

/// Refuses (403) anybody but supervisors and admins.
fn supervisor(staff: &StaffUser) -> Result<(), HtmlError> {
    staff
        .require(StaffRole::Supervisor)
        .map_err(|_| HtmlError::supervisors_only())
}

/// `GET /dashboard/fragments/contacts?q=&page=`
#[utoipa::path(
    get,
    path = "/dashboard/fragments/contacts",
    tag = "dashboard",
    summary = "Fragment: contact search (supervisors)",
    description = "Audited.",
    security(("dashboard_session" = [])),
    params(SearchQuery),
    responses(
        (status = 200, description = "The fragment", content_type = "text/html", body = String),
        (status = 401, description = "No valid session: the script goes to the sign-in form (an HTML page)", content_type = "text/html", body = String),
        (status = 400, description = "A bad query (an HTML page)", content_type = "text/html", body = String),
        (status = 403, description = "Not a supervisor (an HTML page)", content_type = "text/html", body = String),
        (status = 500, description = "Something went wrong (an HTML page)", content_type = "text/html", body = String),
    ),
)]
pub(super) async fn contacts(
    State(state): State<AppState>,
    FragmentUser(staff): FragmentUser,
    params: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, HtmlError> {
    supervisor(&staff)?;
    let params = query(params)?;
    let page = page_number(params.page)?;
    let q = params.q.trim();
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(HtmlError::bad_request(format!(
            "Search for at most {MAX_QUERY_CHARS} characters."
        )));
    }
    let Listed {
        items: found,
        total,
    } = supervisor_lookups(&state)
        .search_contacts(
            &staff.actor(),
            q,
            crate::http::paging::offset(page, CONTACTS_PER_PAGE).unwrap_or_default(),
            CONTACTS_PER_PAGE,
        )
        .await?;
    let pager = Pager::new(page, CONTACTS_PER_PAGE, total, |p| {
        let query =
            serde_urlencoded::to_string([("q", q), ("page", &p.to_string())]).unwrap_or_default();
        format!("/dashboard/fragments/contacts?{query}")
    });
    let fragment = ContactsFragment {
        q: q.to_owned(),
        contacts: found.into_iter().map(ContactRow::from).collect(),
        pager,
    };
    render(StatusCode::OK, &fragment)
}

/// `GET /dashboard/fragments/contacts/{id}/conversations?page=`
#[utoipa::path(
    get,
    path = "/dashboard/fragments/contacts/{id}/conversations",
    tag = "dashboard",
    summary = "Fragment: a contact's conversations (supervisors)",
    description = "Audited.",
    security(("dashboard_session" = [])),
    params(("id" = String, Path, description = "The contact's id (UUID)"), PageQuery),
    responses(
        (status = 200, description = "The fragment", content_type = "text/html", body = String),
        (status = 401, description = "No valid session: the script goes to the sign-in form (an HTML page)", content_type = "text/html", body = String),
        (status = 400, description = "A bad query (an HTML page)", content_type = "text/html", body = String),
        (status = 403, description = "Not a supervisor (an HTML page)", content_type = "text/html", body = String),
        (status = 404, description = "No such contact (an HTML page)", content_type = "text/html", body = String),
        (status = 500, description = "Something went wrong (an HTML page)", content_type = "text/html", body = String),
    ),
)]
pub(super) async fn contact_conversations(
    State(state): State<AppState>,
    FragmentUser(staff): FragmentUser,
    id: Result<Path<crate::ids::ContactId>, axum::extract::rejection::PathRejection>,
    params: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, HtmlError> {
    supervisor(&staff)?;
    let Path(contact_id) = id.map_err(|_| HtmlError::not_found("contact"))?;
    let page = page_number(query(params)?.page)?;
    let Some(ContactConversations {
        external_id: address,
        name,
        conversations: Listed {
            items: found,
            total,
        },
    }) = supervisor_lookups(&state)
        .conversations_of(
            &staff.actor(),
            &contact_id,
            crate::http::paging::offset(page, CONVERSATIONS_PER_PAGE).unwrap_or_default(),
            CONVERSATIONS_PER_PAGE,
        )
        .await?
    else {
        return Err(HtmlError::not_found("contact"));
    };
    let pager = Pager::new(page, CONVERSATIONS_PER_PAGE, total, |p| {
        format!("/dashboard/fragments/contacts/{contact_id}/conversations?page={p}")
    });
    let fragment = ContactConversationsFragment {
        contact: match name {
            Some(name) => format!("{name} ({address})"),
            None => address,
        },
        conversations: ContactConversationRow::load(&state, &staff.user, found).await?,
        pager,
    };
    render(StatusCode::OK, &fragment)
}
