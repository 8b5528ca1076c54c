//! Signing in and out of the dashboard, its cookies, and who a dashboard request comes from.
//!
//! The session cookie is the only credential the dashboard reads (never a bearer token): pages
//! without it redirect to the sign-in form, fragments answer 401. See the module above for the
//! CSRF defences of the two forms here.

use askama::Template;
use axum::{
    Form,
    extract::{FromRequestParts, State, rejection::FormRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::{HtmlError, LOGIN_PATH, render};
use crate::http::{
    AppState,
    auth::secrets_match,
    extract::{Origin, RequestOrigin, SESSION_COOKIE, StaffUser, cookie},
};
use crate::{
    live::NoticeKind,
    staff::{SignIn, SignInFrom},
};

/// The cookie holding the sign-in form's CSRF token (double submit).
pub(super) const LOGIN_CSRF_COOKIE: &str = "sb_login_csrf";

/// The sign-in page.
#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginPage<'a> {
    /// The form's CSRF token, also in the `sb_login_csrf` cookie.
    csrf: &'a str,
    /// The e-mail address typed before, to type it only once.
    email: &'a str,
    /// Why the last attempt failed.
    error: Option<&'a str>,
}

/// What the sign-in form sends. Every field may be missing: a missing `_csrf` is a refusal (403),
/// not a malformed request.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(super) struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

/// What the sign-out form sends.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(super) struct LogoutForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

/// `; Secure` when cookies must only travel over HTTPS: as configured, or else whenever the
/// gateway is reached over HTTPS.
fn secure(state: &AppState) -> &'static str {
    let secure = state.config.staff.secure_cookies.unwrap_or_else(|| {
        state
            .public_url
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
    });
    if secure { "; Secure" } else { "" }
}

/// A `Set-Cookie` value. Every value set here is hex, so it needs no quoting.
fn set_cookie(value: String) -> Result<HeaderValue, HtmlError> {
    HeaderValue::try_from(value).map_err(|e| HtmlError::internal(&e))
}

/// The session cookie: the whole site (the JSON API and its event streams need it too), for as
/// long as the session lasts.
fn session_cookie(state: &AppState, token: &str) -> Result<HeaderValue, HtmlError> {
    set_cookie(format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        state.staff.session_ttl().as_secs(),
        secure(state)
    ))
}

/// Removes the session cookie.
fn clear_session_cookie(state: &AppState) -> Result<HeaderValue, HtmlError> {
    set_cookie(format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        secure(state)
    ))
}

/// The sign-in form's CSRF cookie: only for the dashboard's paths, until the browser closes.
fn login_csrf_cookie(state: &AppState, token: &str) -> Result<HeaderValue, HtmlError> {
    set_cookie(format!(
        "{LOGIN_CSRF_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/dashboard{}",
        secure(state)
    ))
}

/// Removes the sign-in form's CSRF cookie (after signing in it has served its purpose).
fn clear_login_csrf_cookie(state: &AppState) -> Result<HeaderValue, HtmlError> {
    set_cookie(format!(
        "{LOGIN_CSRF_COOKIE}=; HttpOnly; SameSite=Strict; Path=/dashboard; Max-Age=0{}",
        secure(state)
    ))
}

/// Whether a value can be one of our tokens (64 hex digits); anything else in a cookie is
/// ignored.
fn well_formed(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The staff member a request's session cookie belongs to, if it is valid.
async fn signed_in(parts: &Parts, state: &AppState) -> Result<Option<StaffUser>, HtmlError> {
    let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some((user, session)) = state.staff.from_session(token).await? else {
        return Ok(None);
    };
    Ok(Some(StaffUser {
        user,
        csrf: Some(session.csrf_token),
        credential: crate::staff::Credential::Session(token.to_owned()),
        origin: Origin::of(parts, state),
    }))
}

/// A staff member signed in to the dashboard, for a page: without a valid session the answer is
/// a redirect (303) to the sign-in form.
pub(super) struct PageUser {
    /// Who, as the staff API knows them (for its audit helper).
    pub staff: StaffUser,
    /// The session's CSRF token, for the page's forms and script.
    pub csrf: String,
}

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match signed_in(parts, state).await {
            Ok(Some(staff)) => Ok(PageUser {
                csrf: staff.csrf.clone().unwrap_or_default(),
                staff,
            }),
            Ok(None) => Err(Redirect::to(LOGIN_PATH).into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// A staff member signed in to the dashboard, for a fragment: without a valid session the answer
/// is 401 (the script then goes to the sign-in form).
pub(super) struct FragmentUser(pub StaffUser);

impl FromRequestParts<AppState> for FragmentUser {
    type Rejection = HtmlError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HtmlError> {
        signed_in(parts, state)
            .await?
            .map(FragmentUser)
            .ok_or_else(|| {
                HtmlError::new(
                    StatusCode::UNAUTHORIZED,
                    "Signed out",
                    "Your session has ended. Sign in again.",
                )
            })
    }
}

/// Renders the sign-in form with its CSRF token (set as a cookie too).
fn login_page(
    state: &AppState,
    status: StatusCode,
    csrf: &str,
    email: &str,
    error: Option<&str>,
) -> Result<Response, HtmlError> {
    let mut response = render(status, &LoginPage { csrf, email, error })?;
    response
        .headers_mut()
        .append(header::SET_COOKIE, login_csrf_cookie(state, csrf)?);
    Ok(response)
}

/// `GET /dashboard/login`. A browser that already has a form token keeps it, so that sign-in
/// forms open in several tabs all stay valid; somebody already signed in goes to the dashboard.
#[utoipa::path(
    get,
    path = "/dashboard/login",
    tag = "dashboard",
    summary = "The sign-in form",
    description = "Sets the form's CSRF cookie; somebody already signed in is sent to the dashboard.",
    responses(
        (status = 200, description = "The form", content_type = "text/html", body = String),
        (status = 303, description = "Already signed in: redirect to `/dashboard`"),
        (status = 500, description = "Something went wrong (an HTML page)", content_type = "text/html", body = String),
    ),
)]
pub(super) async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, HtmlError> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE)
        && state.staff.from_session(token).await?.is_some()
    {
        return Ok(Redirect::to("/dashboard").into_response());
    }
    let csrf = cookie(&headers, LOGIN_CSRF_COOKIE)
        .filter(|t| well_formed(t))
        .map_or_else(crate::staff::random_token, str::to_owned);
    login_page(&state, StatusCode::OK, &csrf, "", None)
}

/// `POST /dashboard/login`: the form's `_csrf` must equal the `sb_login_csrf` cookie; then the
/// e-mail address and password must match an enabled account. Signed in: a session cookie and a
/// redirect (303) to the dashboard.
#[utoipa::path(
    post,
    path = "/dashboard/login",
    tag = "dashboard",
    summary = "Sign in",
    description = "The form's `_csrf` must equal the `sb_login_csrf` cookie. Signed in: the session cookie and a redirect to the dashboard.",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: the session cookie is set; redirect to `/dashboard`", headers(("Set-Cookie" = String, description = "`sb_session`"))),
        (status = 401, description = "The form again: wrong e-mail address or password (an HTML page)", content_type = "text/html", body = String),
        (status = 403, description = "The form's CSRF token does not match its cookie (an HTML page)", content_type = "text/html", body = String),
        (status = 429, description = "Too many failed sign-ins (an HTML page)", content_type = "text/html", body = String),
        (status = 500, description = "Something went wrong (an HTML page)", content_type = "text/html", body = String),
    ),
)]
pub(super) async fn login(
    State(state): State<AppState>,
    RequestOrigin(origin): RequestOrigin,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, HtmlError> {
    let Form(form) =
        form.map_err(|_| HtmlError::bad_request("Send the sign-in form as a web form."))?;
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !secrets_match(form.csrf.as_bytes(), expected.as_bytes()) {
        return Err(HtmlError::new(
            StatusCode::FORBIDDEN,
            "Sign-in form expired",
            "This sign-in form is not valid any more (it expired, or it was not sent from this \
             site). Reload the sign-in page and try again.",
        ));
    }
    let email = form.email.trim();
    let from = SignInFrom {
        address: origin.address,
        remote_addr: origin.remote_addr.as_deref(),
        user_agent: origin.user_agent.as_deref(),
        via: "dashboard",
    };
    let user = match state.staff.sign_in(email, &form.password, &from).await? {
        SignIn::Welcome(user) => user,
        SignIn::Refused => {
            return login_page(
                &state,
                StatusCode::UNAUTHORIZED,
                expected,
                email,
                Some("The e-mail address or the password is wrong."),
            );
        }
        SignIn::Throttled(refused) => {
            let wait = refused.retry_after.as_secs().max(1);
            let mut page = login_page(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                expected,
                email,
                Some(&format!(
                    "Too many sign-in attempts. Please wait {wait} seconds and try again."
                )),
            )?;
            page.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            return Ok(page);
        }
    };
    // A session this browser had before ends: one browser, one session.
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        state.staff.close_session(old).await?;
    }
    let (token, _csrf) = state.staff.open_session(&user).await?;
    let mut response = Redirect::to("/dashboard").into_response();
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, session_cookie(&state, &token)?);
    headers.append(header::SET_COOKIE, clear_login_csrf_cookie(&state)?);
    Ok(response)
}

/// `POST /dashboard/logout`: the form's `_csrf` must be the session's CSRF token. The session
/// ends in the database (the cookie stops working everywhere) and the cookie is removed.
#[utoipa::path(
    post,
    path = "/dashboard/logout",
    tag = "dashboard",
    summary = "Sign out",
    description = "The form's `_csrf` must be the session's CSRF token; the session ends everywhere.",
    security(("dashboard_session" = [])),
    request_body(content = LogoutForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed out: the cookie is removed; redirect to the sign-in form"),
        (status = 403, description = "The CSRF token does not match the session (an HTML page)", content_type = "text/html", body = String),
        (status = 500, description = "Something went wrong (an HTML page)", content_type = "text/html", body = String),
    ),
)]
pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Result<Response, HtmlError> {
    let Form(form) =
        form.map_err(|_| HtmlError::bad_request("Send the sign-out form as a web form."))?;
    let token = cookie(&headers, SESSION_COOKIE).unwrap_or_default();
    let session = if token.is_empty() {
        None
    } else {
        state.staff.from_session(token).await?
    };
    if let Some((user, session)) = session {
        if !secrets_match(form.csrf.as_bytes(), session.csrf_token.as_bytes()) {
            return Err(HtmlError::new(
                StatusCode::FORBIDDEN,
                "Not signed out",
                "This sign-out request was not sent from the dashboard. Reload the dashboard and \
                 sign out there.",
            ));
        }
        state.staff.close_session(token).await?;
        state.hub.account_notice(NoticeKind::SignedOut, &user.id);
        tracing::info!(user = %user.id, "signed out of the dashboard");
    }
    let mut response = Redirect::to(LOGIN_PATH).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear_session_cookie(&state)?);
    Ok(response)
}
