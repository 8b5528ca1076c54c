//! The experts' and supervisors' dashboard: signing in and out (cookies, login CSRF), pages and
//! fragments and who may see them, the JSON API's CSRF check for cookie sessions, HTML escaping,
//! and — in headless Chromium — an expert answering a visitor of the website widget live.
//!
//! The HTTP tests use a client that neither follows redirects nor keeps cookies, so that they see
//! every `Set-Cookie` and `Location` and decide themselves which cookie goes with a request.

use std::time::Duration;

use fantoccini::{Client, Locator};
use reqwest::{Method, RequestBuilder, Response, redirect::Policy};
use serde_json::{Value, json};
use switchboard::store::users::{StaffRole, User};

use crate::{
    browser::{Browser, texts},
    helpers::{Backend, TestApp, json_response},
};

const PASSWORD: &str = "correct-horse-battery";

/// A client that neither follows redirects nor keeps cookies.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("a client")
}

/// Creates a staff account with the test password.
async fn account(app: &TestApp, email: &str, name: &str, role: StaffRole) -> User {
    app.staff
        .add_user(email, name, role, PASSWORD, 3, None)
        .await
        .expect("a new staff account")
}

/// The `Set-Cookie` headers of a response that set `name`.
fn set_cookies(response: &Response, name: &str) -> Vec<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.split('=').next() == Some(name))
        .map(str::to_owned)
        .collect()
}

/// The one `Set-Cookie` of `name`.
fn set_cookie(response: &Response, name: &str) -> String {
    let all = set_cookies(response, name);
    assert_eq!(all.len(), 1, "one Set-Cookie for {name}: {all:?}");
    all.into_iter().next().unwrap_or_default()
}

/// A `Set-Cookie`'s value.
fn value(set_cookie: &str) -> &str {
    let pair = set_cookie.split(';').next().unwrap_or_default();
    pair.split_once('=').map(|(_, v)| v).unwrap_or_default()
}

/// A `Set-Cookie`'s attributes, as written.
fn attributes(set_cookie: &str) -> Vec<&str> {
    set_cookie.split(';').skip(1).map(str::trim).collect()
}

/// The value of the `content` or `value` attribute following `marker` in a page.
fn attribute_after(html: &str, marker: &str, attribute: &str) -> String {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {html}"));
    let rest = &html[start..];
    let at = rest
        .find(&format!("{attribute}=\""))
        .expect("the attribute")
        + attribute.len()
        + 2;
    rest[at..].split('"').next().unwrap_or_default().to_owned()
}

/// A signed-in dashboard session.
struct Session {
    /// The `sb_session` cookie's value.
    cookie: String,
    /// The CSRF token the page carries.
    csrf: String,
}

impl Session {
    /// A request with the session cookie.
    fn request(&self, app: &TestApp, method: Method, path: &str) -> RequestBuilder {
        client()
            .request(method, app.url(path))
            .header("cookie", format!("sb_session={}", self.cookie))
    }

    /// A request with the session cookie and the CSRF header.
    fn call(&self, app: &TestApp, method: Method, path: &str) -> RequestBuilder {
        self.request(app, method, path)
            .header("x-csrf-token", &self.csrf)
    }

    /// A page or fragment: status and body.
    async fn get(&self, app: &TestApp, path: &str) -> (u16, String) {
        let response = self
            .request(app, Method::GET, path)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }
}

/// The sign-in form: the login CSRF cookie as set, and the form's hidden token.
async fn login_form(app: &TestApp) -> (String, String) {
    let response = client()
        .get(app.url("/dashboard/login"))
        .send()
        .await
        .expect("login page");
    assert_eq!(response.status(), 200);
    let cookie = set_cookie(&response, "sb_login_csrf");
    let html = response.text().await.expect("body");
    (cookie, attribute_after(&html, "name=\"_csrf\"", "value"))
}

/// Posts the sign-in form with a login CSRF cookie (if any).
async fn post_login(
    app: &TestApp,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client().post(app.url("/dashboard/login")).form(fields);
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("sb_login_csrf={cookie}"));
    }
    request.send().await.expect("login request")
}

/// Signs in on the dashboard like a browser does.
async fn sign_in(app: &TestApp, email: &str) -> Session {
    let (cookie, token) = login_form(app).await;
    let response = post_login(
        app,
        Some(value(&cookie)),
        &[("email", email), ("password", PASSWORD), ("_csrf", &token)],
    )
    .await;
    assert_eq!(response.status(), 303);
    let cookie = value(&set_cookie(&response, "sb_session")).to_owned();
    let mut session = Session {
        cookie,
        csrf: String::new(),
    };
    let (status, html) = session.get(app, "/dashboard").await;
    assert_eq!(status, 200, "{html}");
    session.csrf = attribute_after(&html, "name=\"csrf-token\"", "content");
    session
}

/// Starts a web conversation and hands it to the experts; returns its id.
async fn handed_over(app: &TestApp, device: &str, content: &str) -> String {
    let (status, body) = app.send(device, json!({"content": content})).await;
    assert_eq!(status, 200, "{body}");
    let id = body["conversation_id"]
        .as_str()
        .expect("a conversation")
        .to_owned();
    let (status, body) = app.handoff(device, &id).await;
    assert_eq!(status, 200, "{body}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_needs_the_login_csrf_token_and_the_right_password() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    account(&app, "ana@example.com", "Ana", StaffRole::Expert).await;

    // The form sets the double-submit cookie, and carries the same value.
    let (cookie, token) = login_form(&app).await;
    assert_eq!(value(&cookie), token);
    assert_eq!(token.len(), 64, "256 random bits: {token}");
    let attrs = attributes(&cookie);
    for expected in ["HttpOnly", "SameSite=Strict", "Path=/dashboard"] {
        assert!(attrs.contains(&expected), "{expected} in {cookie}");
    }
    assert!(!attrs.contains(&"Secure"), "not Secure over plain HTTP");
    let (again, _) = login_form(&app).await;
    assert_ne!(value(&again), token, "every new form gets a new token");

    let right = [
        ("email", "ana@example.com"),
        ("password", PASSWORD),
        ("_csrf", token.as_str()),
    ];
    // Without the field, with a wrong field, without the cookie: refused, and no session.
    for (cookie, fields) in [
        (Some(token.as_str()), &right[..2]),
        (
            Some(token.as_str()),
            &[
                ("email", "ana@example.com"),
                ("password", PASSWORD),
                ("_csrf", &"0".repeat(64)),
            ][..],
        ),
        (None, &right[..]),
        (
            Some(""),
            &[
                ("email", "ana@example.com"),
                ("password", PASSWORD),
                ("_csrf", ""),
            ][..],
        ),
    ] {
        let response = post_login(&app, cookie, fields).await;
        assert_eq!(response.status(), 403, "{fields:?} with cookie {cookie:?}");
        assert!(set_cookies(&response, "sb_session").is_empty());
        assert!(
            response
                .headers()
                .get("content-type")
                .is_some_and(|v| v.to_str().unwrap_or_default().starts_with("text/html"))
        );
    }

    // A wrong password: the form again with an error, 401, no session.
    let response = post_login(
        &app,
        Some(&token),
        &[
            ("email", "ana@example.com"),
            ("password", "not-the-password"),
            ("_csrf", &token),
        ],
    )
    .await;
    assert_eq!(response.status(), 401);
    assert!(set_cookies(&response, "sb_session").is_empty());
    let html = response.text().await.unwrap();
    assert!(html.contains("The e-mail address or the password is wrong."));
    assert!(
        html.contains("value=\"ana@example.com\""),
        "the address is kept"
    );

    // The right one: a session cookie, exactly as specified, and off to the dashboard.
    let response = post_login(&app, Some(&token), &right).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/dashboard");
    let session = set_cookie(&response, "sb_session");
    let attrs = attributes(&session);
    for expected in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(attrs.contains(&expected), "{expected} in {session}");
    }
    assert!(!attrs.contains(&"Secure"));
    assert_eq!(value(&session).len(), 64);
    let cleared = set_cookie(&response, "sb_login_csrf");
    assert!(attributes(&cleared).contains(&"Max-Age=0"), "{cleared}");

    // Signed in, the form sends you on to the dashboard.
    let response = client()
        .get(app.url("/dashboard/login"))
        .header("cookie", format!("sb_session={}", value(&session)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/dashboard");

    // Signing in again from the same browser ends its previous session.
    let response = client()
        .post(app.url("/dashboard/login"))
        .header(
            "cookie",
            format!("sb_login_csrf={token}; sb_session={}", value(&session)),
        )
        .form(&right)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let renewed = set_cookie(&response, "sb_session");
    assert_ne!(value(&renewed), value(&session));
    for (cookie, expected) in [(value(&session), 303), (value(&renewed), 200)] {
        let response = client()
            .get(app.url("/dashboard"))
            .header("cookie", format!("sb_session={cookie}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_behind_https_or_when_configured() {
    // Reached over plain HTTP (as in development), cookies cannot be Secure.
    let plain = TestApp::spawn(&Backend::Sqlite).await;
    let (cookie, _) = login_form(&plain).await;
    assert!(!attributes(&cookie).contains(&"Secure"), "{cookie}");
    let forced =
        TestApp::spawn_with(&Backend::Sqlite, |c| c.staff.secure_cookies = Some(true)).await;
    let (cookie, _) = login_form(&forced).await;
    assert!(attributes(&cookie).contains(&"Secure"), "{cookie}");

    // Behind HTTPS they are, without being told.
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.server.public_url = Some("https://chat.example.com".into())
    })
    .await;
    account(&app, "ana@example.com", "Ana", StaffRole::Expert).await;
    let (cookie, token) = login_form(&app).await;
    assert!(attributes(&cookie).contains(&"Secure"), "{cookie}");
    let response = post_login(
        &app,
        Some(&token),
        &[
            ("email", "ana@example.com"),
            ("password", PASSWORD),
            ("_csrf", &token),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    let session = set_cookie(&response, "sb_session");
    assert!(attributes(&session).contains(&"Secure"), "{session}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_session_and_embed_its_csrf_token() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    account(&app, "ana@example.com", "Ana", StaffRole::Expert).await;

    // Pages redirect to the sign-in form; fragments answer 401; a bearer token is not a session.
    for path in ["/dashboard", "/dashboard/conversations/x"] {
        let response = client().get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(response.headers()["location"], "/dashboard/login");
        let response = client()
            .get(app.url(path))
            .header("cookie", format!("sb_session={}", "a".repeat(64)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{path} with a made-up session");
    }
    let (_, token) = app.staff_token("ben@example.com", "expert").await;
    for path in [
        "/dashboard/fragments/lists",
        "/dashboard/fragments/conversations/x",
    ] {
        let response = client().get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        let response = client()
            .get(app.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path} with a bearer token");
    }

    let session = sign_in(&app, "ana@example.com").await;
    let response = session
        .request(&app, Method::GET, "/dashboard")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let html = response.text().await.unwrap();
    assert_eq!(session.csrf.len(), 64);
    assert!(html.contains(&format!("name=\"_csrf\" value=\"{}\"", session.csrf)));
    assert!(html.contains("Ana"));
    assert!(html.contains("id=\"availability-toggle\""));
    assert!(html.contains("Nobody is waiting for an expert."));
    assert!(html.contains("src=\"/dashboard/dashboard.js\""));
    assert!(
        !html.contains("All live conversations"),
        "experts have no supervisor views"
    );

    // The script is served from the gateway itself.
    let response = client()
        .get(app.url("/dashboard/dashboard.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/javascript")
    );
    let script = response.text().await.unwrap();
    assert!(script.contains("X-CSRF-Token"));
    assert!(script.contains("/v1/expert/events"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_with_the_session_cookie_needs_the_csrf_header() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let id = handed_over(&app, "visitor-1", "hello").await;
    let ana = account(&app, "ana@example.com", "Ana", StaffRole::Expert).await;
    let session = sign_in(&app, "ana@example.com").await;
    let claim = format!("/v1/expert/conversations/{id}/claim");

    // Reading needs no token.
    let (status, body) = json_response(
        session
            .request(&app, Method::GET, "/v1/expert/me")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["email"], "ana@example.com");

    // Changing does: without it or with a wrong one, 403 and nothing changes.
    for token in [None, Some("0".repeat(64))] {
        let mut request = session.request(&app, Method::POST, &claim);
        if let Some(token) = &token {
            request = request.header("x-csrf-token", token);
        }
        let (status, body) = json_response(request.send().await.unwrap()).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "csrf");
        let (_, queue) = json_response(
            session
                .request(&app, Method::GET, "/v1/expert/queue")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(queue["conversations"][0]["conversation"]["id"], id.as_str());
    }
    let (status, body) = json_response(
        session
            .request(&app, Method::PUT, "/v1/expert/me/availability")
            .json(&json!({"available": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // With it, the claim goes through: the conversation moves from the queue to Ana's list.
    let (status, body) = json_response(
        session
            .call(&app, Method::POST, &claim)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation"]["expert_id"], ana.id.as_str());
    let (status, lists) = session.get(&app, "/dashboard/fragments/lists").await;
    assert_eq!(status, 200);
    assert!(
        lists.contains("Nobody is waiting for an expert."),
        "{lists}"
    );
    assert!(lists.contains(&format!("href=\"/dashboard/conversations/{id}\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_ends_the_session() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    account(&app, "ana@example.com", "Ana", StaffRole::Expert).await;
    let session = sign_in(&app, "ana@example.com").await;

    // A sign-out without the session's token (a foreign page's form) is refused.
    for token in ["", "0000"] {
        let response = session
            .request(&app, Method::POST, "/dashboard/logout")
            .form(&[("_csrf", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
        let (status, _) = session.get(&app, "/dashboard").await;
        assert_eq!(status, 200, "still signed in");
    }

    let response = session
        .request(&app, Method::POST, "/dashboard/logout")
        .form(&[("_csrf", session.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/dashboard/login");
    let cleared = set_cookie(&response, "sb_session");
    assert_eq!(value(&cleared), "");
    let attrs = attributes(&cleared);
    for expected in ["Max-Age=0", "Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(attrs.contains(&expected), "{expected} in {cleared}");
    }

    // The old cookie works nowhere any more.
    let response = session
        .request(&app, Method::GET, "/dashboard")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let (status, _) = session.get(&app, "/dashboard/fragments/lists").await;
    assert_eq!(status, 401);
    let (status, body) = json_response(
        session
            .call(&app, Method::GET, "/v1/expert/me")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experts_get_no_supervisor_views_and_only_their_conversations() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let id = handed_over(&app, "visitor-2", "hello").await;
    let other = handed_over(&app, "visitor-3", "hello").await;
    account(&app, "ana@example.com", "Ana", StaffRole::Expert).await;
    account(&app, "ben@example.com", "Ben", StaffRole::Expert).await;
    account(&app, "sue@example.com", "Sue", StaffRole::Supervisor).await;
    let ana = sign_in(&app, "ana@example.com").await;
    let ben = sign_in(&app, "ben@example.com").await;
    let sue = sign_in(&app, "sue@example.com").await;
    let contact = {
        let (_, token) = app.staff_token("adm@example.com", "admin").await;
        let (_, found) = app
            .staff_call(
                Method::GET,
                "/v1/supervisor/contacts?q=visitor-2",
                &token,
                None,
            )
            .await;
        found["contacts"][0]["id"]
            .as_str()
            .expect("the contact")
            .to_owned()
    };

    // Supervisors' fragments: 403 for experts, whatever they guess.
    for path in [
        "/dashboard/fragments/contacts?q=visitor".to_owned(),
        format!("/dashboard/fragments/contacts/{contact}/conversations"),
    ] {
        let (status, html) = ana.get(&app, &path).await;
        assert_eq!(status, 403, "{path}: {html}");
        assert!(html.contains("This view is for supervisors."));
    }
    let (_, lists) = ana.get(&app, "/dashboard/fragments/lists").await;
    assert!(!lists.contains("All live conversations"));
    assert!(lists.contains(&format!("data-action=\"claim\" data-id=\"{id}\"")));

    // A waiting conversation is visible to every expert (to claim it), with a Claim button and
    // no reply box.
    let (status, page) = ben
        .get(&app, &format!("/dashboard/conversations/{id}"))
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"claim\""));
    assert!(!page.contains("id=\"reply-input\""));

    // Once Ana has it, it does not exist for Ben: 404 page and fragment.
    let (status, body) = json_response(
        ana.call(
            &app,
            Method::POST,
            &format!("/v1/expert/conversations/{id}/claim"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for path in [
        format!("/dashboard/conversations/{id}"),
        format!("/dashboard/fragments/conversations/{id}"),
    ] {
        let (status, html) = ben.get(&app, &path).await;
        assert_eq!(status, 404, "{path}");
        assert!(html.contains("does not exist, or you may not see it"));
        assert!(!html.contains("hello"), "nothing of the conversation shows");
    }

    // Ana's page: the transcript with channel and delivery status, the reply box and her
    // actions, the conversation's own stream; the view is in the audit log.
    let (status, page) = ana
        .get(&app, &format!("/dashboard/conversations/{id}"))
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"reply-input\""));
    assert!(page.contains("data-action=\"transfer\""));
    assert!(page.contains("data-action=\"release\""));
    assert!(page.contains("data-action=\"close\""));
    assert!(!page.contains("id=\"claim\""));
    assert!(page.contains(&format!(
        "data-stream=\"/v1/expert/conversations/{id}/events?last_event_id="
    )));
    assert!(page.contains("<span class=\"visually-hidden\">channel </span>web"));
    assert!(page.contains("<span class=\"visually-hidden\">status </span>received"));
    assert!(page.contains("<span class=\"visually-hidden\">status </span>sent"));
    assert!(page.contains("Ana has joined the conversation."));
    assert!(page.contains("<option value=\""), "transfer targets");
    assert!(!page.contains("Observing"));

    let (_, token) = app.staff_token("audit@example.com", "admin").await;
    let (_, log) = app
        .staff_call(
            Method::GET,
            &format!("/v1/admin/audit?conversation={id}"),
            &token,
            None,
        )
        .await;
    let views: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "view")
        .collect();
    assert_eq!(
        views.len(),
        2,
        "Ben's view while it waited, and Ana's: {log}"
    );
    assert!(views.iter().all(|e| e["detail"]["via"] == "dashboard"));
    // Live refreshes of the transcript are not logged again and again.
    ana.get(&app, &format!("/dashboard/fragments/conversations/{id}"))
        .await;
    let (_, log) = app
        .staff_call(
            Method::GET,
            &format!("/v1/admin/audit?conversation={id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(log["total"], json!(3), "view, view, claim: {log}");

    // Sue observes Ana's conversation: read-only, the observe stream, nothing marked read.
    let (status, page) = sue
        .get(&app, &format!("/dashboard/conversations/{id}"))
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("class=\"observing\""));
    assert!(!page.contains("id=\"reply-input\""));
    assert!(page.contains(&format!(
        "data-stream=\"/v1/supervisor/conversations/{id}/observe\""
    )));
    // Her lists show every live conversation, with an Observe link.
    let (_, lists) = sue.get(&app, "/dashboard/fragments/lists").await;
    assert!(lists.contains("All live conversations"));
    assert!(lists.contains(&format!("href=\"/dashboard/conversations/{other}\"")));
    assert!(lists.contains("With Ana"));
    // She finds contacts and their conversations.
    let (status, found) = sue
        .get(&app, "/dashboard/fragments/contacts?q=VISITOR-2")
        .await;
    assert_eq!(status, 200, "{found}");
    assert!(found.contains("device:visitor-2"));
    assert!(!found.contains("device:visitor-3"));
    assert!(found.contains(&format!(
        "data-load=\"/dashboard/fragments/contacts/{contact}/conversations\""
    )));
    let (status, theirs) = sue
        .get(
            &app,
            &format!("/dashboard/fragments/contacts/{contact}/conversations"),
        )
        .await;
    assert_eq!(status, 200, "{theirs}");
    assert!(theirs.contains(&format!("href=\"/dashboard/conversations/{id}\"")));
    assert!(!theirs.contains(&other));
    let (status, _) = sue
        .get(&app, "/dashboard/fragments/contacts/nobody/conversations")
        .await;
    assert_eq!(status, 404);
    let (status, _) = sue.get(&app, "/dashboard/fragments/contacts?page=0").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisors_review_flagged_replies_and_the_page_follows_availability() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.routing.default_agent = "echo".into();
        c.evaluations.enabled = true;
        c.evaluations.blocked_keywords = vec!["guaranteed refund".into()];
    })
    .await;
    account(&app, "sue@example.com", "Sue", StaffRole::Supervisor).await;
    account(&app, "ana@example.com", "Ana", StaffRole::Expert).await;
    let sue = sign_in(&app, "sue@example.com").await;
    let ana = sign_in(&app, "ana@example.com").await;
    // The echo agent repeats the visitor, blocked words included.
    let (status, _) = app
        .send(
            "visitor-9",
            json!({"content": "a guaranteed refund, please"}),
        )
        .await;
    assert_eq!(status, 200);
    let html = app
        .eventually(Duration::from_secs(20), "the flagged reply", || async {
            let (status, html) = sue.get(&app, "/dashboard/fragments/lists").await;
            assert_eq!(status, 200, "{html}");
            html.contains("blocked words: guaranteed refund")
                .then_some(html)
        })
        .await;
    assert!(html.contains("Flagged replies"), "{html}");
    assert!(html.contains("a guaranteed refund, please"), "{html}");
    // Experts review nothing.
    let (_, html) = ana.get(&app, "/dashboard/fragments/lists").await;
    assert!(!html.contains("Flagged replies"), "{html}");

    // The lists carry the expert's availability, which may change without them.
    assert!(html.contains("data-available=\"false\""), "{html}");
    let (status, _) = ana
        .call(&app, Method::PUT, "/v1/expert/me/availability")
        .json(&json!({"available": true}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .expect("request");
    assert_eq!(status, 200);
    let (_, html) = ana.get(&app, "/dashboard/fragments/lists").await;
    assert!(html.contains("data-available=\"true\""), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_end_users_write_is_escaped() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let attack = "<script>alert('x')</script><img src=x onerror=alert(1)>";
    let id = handed_over(&app, "visitor-4", attack).await;
    account(&app, "sue@example.com", "Sue", StaffRole::Supervisor).await;
    let sue = sign_in(&app, "sue@example.com").await;
    for path in [
        format!("/dashboard/conversations/{id}"),
        format!("/dashboard/fragments/conversations/{id}"),
        "/dashboard/fragments/lists".to_owned(),
    ] {
        let (status, html) = sue.get(&app, &path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains("<script>alert"), "{path}: {html}");
        assert!(!html.contains("<img src=x"), "{path}");
    }
    let (_, html) = sue
        .get(&app, &format!("/dashboard/fragments/conversations/{id}"))
        .await;
    assert!(
        html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
        "{html}"
    );
}

// ---- In a real browser ---------------------------------------------------------------------------

/// Waits until an element matching `css` exists.
async fn element(client: &Client, css: &str, what: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{what} ({css}): {e}"))
}

/// Clicks the element matching `css` once it exists. An element replaced between finding and
/// clicking it (a fragment swapped in) is found again.
async fn click(client: &Client, css: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let clicked = match client.find(Locator::Css(css)).await {
            Ok(element) => element.click().await,
            Err(e) => Err(e),
        };
        match clicked {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("{what} ({css}): {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits until some element matching `css` has text containing `text`.
async fn text_appears(client: &Client, css: &str, text: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen = texts(client, css).await;
        if seen.iter().any(|t| t.contains(text)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: no {text:?} in {css}; saw {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expert_answers_a_website_visitor_live_in_a_real_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn(&Backend::Sqlite).await;
    account(&app, "ana@example.com", "Ana", StaffRole::Expert).await;
    let visitor = browser.client().clone();
    let expert = browser.session().await;

    // The expert signs in; the dashboard's live stream is open, and nobody waits yet.
    expert.goto(&app.url("/dashboard/login")).await.unwrap();
    element(&expert, "#email", "the sign-in form")
        .await
        .send_keys("ana@example.com")
        .await
        .unwrap();
    element(&expert, "#password", "the password field")
        .await
        .send_keys(PASSWORD)
        .await
        .unwrap();
    click(&expert, "#sign-in", "the sign-in button").await;
    element(&expert, "body[data-notices='live']", "the dashboard, live").await;
    assert_eq!(expert.current_url().await.unwrap().path(), "/dashboard");
    assert!(texts(&expert, "#queue li").await.is_empty());
    // Availability is a toggle (through the JSON API, with the CSRF header).
    click(&expert, "#availability-toggle", "the availability toggle").await;
    text_appears(&expert, "#availability-state", "available", "available").await;
    element(
        &expert,
        "#availability-toggle[aria-pressed='true']",
        "pressed",
    )
    .await;
    click(&expert, "#availability-toggle", "the availability toggle").await;
    text_appears(&expert, "#availability-state", "away", "away again").await;
    element(
        &expert,
        "#availability-toggle[aria-pressed='false']",
        "not pressed",
    )
    .await;
    // A mark that a reload would wipe out.
    expert
        .execute("window.sbSamePage = 'yes'; return null;", vec![])
        .await
        .unwrap();

    // The visitor chats with the assistant, then asks for a human.
    visitor.goto(&app.url("/")).await.unwrap();
    element(&visitor, "#sbw-input", "the widget")
        .await
        .send_keys("I have a question about my order")
        .await
        .unwrap();
    click(&visitor, "#sbw-send", "the widget's send button").await;
    element(&visitor, ".sbw-msg.sbw-ai", "the assistant's answer").await;
    click(&visitor, "#sbw-human:not([disabled])", "the handoff button").await;
    text_appears(&visitor, "#sbw-status", "expert", "the visitor is told").await;

    // The conversation shows up in the expert's queue by itself; they claim it.
    click(
        &expert,
        "#queue button[data-action='claim']",
        "the queued conversation, live",
    )
    .await;
    let same_page = expert
        .execute("return window.sbSamePage || null;", vec![])
        .await
        .unwrap();
    assert_eq!(same_page, json!("yes"), "the page was not reloaded");
    text_appears(&expert, "#flash", "yours", "the claim is confirmed").await;

    // They open it and answer.
    click(&expert, "#mine a", "the claimed conversation in their list").await;
    text_appears(
        &expert,
        "#messages .side-user .content",
        "I have a question about my order",
        "the transcript",
    )
    .await;
    let reply = "Hi, I'm Ana. Let me check your order.";
    element(&expert, "#reply-input", "the reply box")
        .await
        .send_keys(reply)
        .await
        .unwrap();
    click(&expert, "#reply-send", "the send button").await;
    text_appears(
        &expert,
        "#messages .side-expert .content",
        reply,
        "the reply in the transcript",
    )
    .await;

    // The visitor gets it in the widget, as an expert's message.
    text_appears(
        &visitor,
        ".sbw-msg.sbw-expert",
        reply,
        "the expert's reply in the widget",
    )
    .await;

    let _ = expert.close().await;
    let _ = visitor.close().await;
}
