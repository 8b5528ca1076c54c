//! The experts' and supervisors' dashboard: server-rendered pages under `/dashboard`.
//!
//! Why it is built this way:
//!
//! - **The server renders all HTML** (askama templates in `templates/dashboard/`, which escape
//!   every value they print; nothing user-provided is ever marked safe). Pages are whole
//!   documents; *fragments* are the parts that change (the lists, a transcript, search results),
//!   rendered by the same templates. The page includes its fragments at first render, so it is
//!   readable before any script runs, and the script only fetches fragments again and swaps them
//!   in: there is one rendering of everything, in Rust, and no client-side templating.
//! - **Actions go through the JSON staff API** (`/v1/expert/…`, see [`super::staff`]), which
//!   already checks roles, writes the audit log and tells other dashboards. The dashboard adds no
//!   second way of changing a conversation.
//! - **Live updates come from the existing event streams**: `GET /v1/expert/events` (staff
//!   notices) makes the script re-fetch the lists, a conversation's stream (or a supervisor's
//!   observe stream) makes it re-fetch the transcript.
//! - **One small script, no build step, no external resource**: `dashboard.js` is compiled into
//!   the binary and served from `/dashboard/dashboard.js`; styles are inline. The dashboard works
//!   offline and under a strict Content-Security-Policy (`script-src 'self'`).
//!
//! Authentication is the session cookie `sb_session` only (bearer tokens are for API clients): a
//! page without a valid session redirects (303) to the sign-in form, a fragment answers 401 (the
//! script then goes to the sign-in form). Which conversations and views a user gets follows the
//! API's rules: [`crate::experts::Experts::visible`] for conversations (404 otherwise), the
//! supervisor role for supervisors' fragments (403 otherwise).
//!
//! CSRF, for every request that changes something:
//!
//! - **Sign-in** (`POST /dashboard/login`) uses the double-submit pattern against login CSRF (a
//!   foreign page signing the victim in to the attacker's account): the form page sets a random
//!   `sb_login_csrf` cookie and puts the same value in a hidden `_csrf` field; the two must match.
//!   A foreign site can make the browser send the cookie, but can neither read nor set it.
//! - **Sign-out** (`POST /dashboard/logout`) is a form whose `_csrf` field must be the session's
//!   CSRF token.
//! - **Actions** (the JSON API) must echo the session's CSRF token in `X-CSRF-Token`, which the
//!   page carries in `<meta name="csrf-token">`; [`super::extract::StaffUser`] enforces that for
//!   every cookie-authenticated request other than GET/HEAD/OPTIONS.
//!
//! All cookies are `HttpOnly` and `SameSite=Strict` (and `Secure` when `server.public_url` is an `https://` address, or as `staff.secure_cookies` says),
//! and dashboard responses are `Cache-Control: no-store` and may not be framed.
//!
//! Routes:
//!
//! | route                                                   | what                                   |
//! |---------------------------------------------------------|----------------------------------------|
//! | `GET /dashboard/login`, `POST /dashboard/login`         | the sign-in form, signing in           |
//! | `POST /dashboard/logout`                                | signing out                            |
//! | `GET /dashboard`                                        | availability, queue, own conversations; supervisors: live conversations, contact search |
//! | `GET /dashboard/conversations/{id}`                     | a conversation: transcript, reply, actions; supervisors observe others' |
//! | `GET /dashboard/fragments/lists?live_page=`             | fragment: the lists of the index page  |
//! | `GET /dashboard/fragments/conversations/{id}`           | fragment: a transcript and its actions |
//! | `GET /dashboard/fragments/contacts?q=&page=`            | fragment (supervisors): contact search |
//! | `GET /dashboard/fragments/contacts/{id}/conversations?page=` | fragment (supervisors): a contact's conversations |
//! | `GET /dashboard/dashboard.js`                           | the script                             |

mod auth;
mod pages;
mod supervision;
mod views;

use askama::Template;
use axum::{
    Router,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};

use super::AppState;
use crate::{experts::ExpertError, store::StoreError};

/// Where the sign-in form is.
const LOGIN_PATH: &str = "/dashboard/login";

/// The dashboard's script, compiled in.
const SCRIPT: &str = include_str!("../../templates/dashboard/dashboard.js");

/// What dashboard pages may load and do: only their own script and the gateway's API; inline
/// styles; never framed (clickjacking).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The dashboard's part of the OpenAPI document (its handlers are private to its modules).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    pages::index,
    auth::login_form,
    auth::login,
    auth::logout,
    script,
    pages::conversation,
    pages::lists,
    pages::transcript,
    supervision::contacts,
    supervision::contact_conversations,
))]
pub(super) struct Api;

/// The dashboard's routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(pages::index))
        .route(LOGIN_PATH, get(auth::login_form).post(auth::login))
        .route("/dashboard/logout", post(auth::logout))
        .route("/dashboard/dashboard.js", get(script))
        .route("/dashboard/conversations/{id}", get(pages::conversation))
        .route("/dashboard/fragments/lists", get(pages::lists))
        .route(
            "/dashboard/fragments/conversations/{id}",
            get(pages::transcript),
        )
        .route("/dashboard/fragments/contacts", get(supervision::contacts))
        .route(
            "/dashboard/fragments/contacts/{id}/conversations",
            get(supervision::contact_conversations),
        )
}

/// `GET /dashboard/dashboard.js`
#[utoipa::path(
    get,
    path = "/dashboard/dashboard.js",
    tag = "dashboard",
    summary = "The dashboard's script",
    responses(
        (status = 200, description = "The script", content_type = "application/javascript", body = String),
    ),
)]
async fn script() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            // Revalidated on every load, so that a new gateway version never runs an old script.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
}

/// An HTML answer with the dashboard's headers: never cached (pages carry personal data and the
/// CSRF token), never framed, nothing loaded from elsewhere.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Renders a template into an HTML answer.
fn render(status: StatusCode, template: &impl Template) -> Result<Response, HtmlError> {
    template
        .render()
        .map(|body| html(status, body))
        .map_err(|e| HtmlError::internal(&e))
}

/// The error page.
#[derive(Template)]
#[template(path = "dashboard/error.html")]
struct ErrorPage<'a> {
    /// The HTTP status, shown small.
    status: u16,
    /// A short heading.
    title: &'a str,
    /// What happened and what to do, for people.
    message: &'a str,
}

/// A failure answered as an HTML page (the dashboard's counterpart of [`super::ApiError`]). The
/// script shows the text of its `#error-message` when a fragment fails.
#[derive(Debug)]
pub(super) struct HtmlError {
    status: StatusCode,
    title: &'static str,
    message: String,
}

impl HtmlError {
    /// An error with a status, a heading and a message.
    fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            title,
            message: message.into(),
        }
    }

    /// 404 for a conversation or contact that does not exist or that the user may not see; the
    /// two are indistinguishable on purpose, as in the API.
    fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("This {what} does not exist, or you may not see it."),
        )
    }

    /// 403 for a view of supervisors requested by an expert.
    fn supervisors_only() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "This view is for supervisors.",
        )
    }

    /// 400 for a malformed query or path.
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request", message)
    }

    /// 500; the cause goes to the log, not to the page.
    fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error in the dashboard");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Something went wrong on our side; please try again.",
        )
    }
}

impl IntoResponse for HtmlError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            status: self.status.as_u16(),
            title: self.title,
            message: &self.message,
        };
        match page.render() {
            Ok(body) => html(self.status, body),
            Err(e) => {
                tracing::error!(error = %e, "cannot render the dashboard's error page");
                (self.status, self.message).into_response()
            }
        }
    }
}

impl From<StoreError> for HtmlError {
    fn from(e: StoreError) -> Self {
        HtmlError::internal(&e)
    }
}

impl From<ExpertError> for HtmlError {
    fn from(e: ExpertError) -> Self {
        match e {
            ExpertError::NotFound => HtmlError::not_found("conversation"),
            ExpertError::Conflict(why) => HtmlError::new(StatusCode::CONFLICT, "Conflict", why),
            ExpertError::Invalid(why) => {
                HtmlError::new(StatusCode::UNPROCESSABLE_ENTITY, "Not possible", why)
            }
            ExpertError::Store(e) => HtmlError::internal(&e),
        }
    }
}
