//! Limits on what the public can ask: message, conversation and handoff rates of website visitors
//! (per visitor and per address), caps on event streams and connections, the per-contact rate on
//! the messaging channels, and staff sign-in (rate, backoff, bounded password hashing).
//!
//! Every refusal is a 429 with `Retry-After` and `{"error":{"code":"rate_limited",…}}`, and stores
//! nothing.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::{
    config::Config,
    store::{Db, messages, query},
    time::Clock,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    both_backends,
    helpers::{Backend, TestApp, graph::FakeGraph, json_response},
};

both_backends!(messaging_contacts_over_their_rate_are_stored_unanswered_and_told_once);

/// Asserts a 429 in the API's shape, with a `Retry-After` of at least a second.
fn assert_rate_limited(status: u16, body: &Value, retry_after: Option<&str>) {
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let seconds: u64 = retry_after
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After in seconds");
    assert!(seconds >= 1, "Retry-After {seconds}");
}

/// A request's status, `Retry-After` and JSON body.
async fn call(request: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let response = request.send().await.expect("request");
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = json_response(response).await;
    (status, retry_after, body)
}

/// A gateway on a clock the test moves, with `configure` applied to the test configuration.
async fn spawn_on_clock(configure: impl FnOnce(&mut Config)) -> (TestApp, Clock) {
    let clock = Clock::system();
    let app = TestApp::spawn_with_clock(&Backend::Sqlite, clock.clone(), configure).await;
    (app, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_over_their_message_rate_is_refused_and_nothing_is_stored() {
    let (app, clock) = spawn_on_clock(|c| c.limits.visitor.messages_per_minute = 3).await;
    let (status, first) = app.send("dev-fast", json!({"content": "one"})).await;
    assert_eq!(status, 200, "{first}");
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    for text in ["two", "three"] {
        let (status, body) = app
            .send(
                "dev-fast",
                json!({"conversation_id": conversation, "content": text}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let stored = app.count("messages").await;

    let (status, retry_after, body) = call(
        app.request(Method::POST, "/v1/chat/messages", "dev-fast")
            .json(&json!({"conversation_id": conversation, "content": "four"})),
    )
    .await;
    assert_rate_limited(status, &body, retry_after.as_deref());
    // Streaming the message is the same message.
    let (status, retry_after, body) = call(
        app.request(Method::POST, "/v1/chat/stream", "dev-fast")
            .json(&json!({"conversation_id": conversation, "content": "four"})),
    )
    .await;
    assert_rate_limited(status, &body, retry_after.as_deref());
    assert_eq!(
        app.count("messages").await,
        stored,
        "a refusal stores nothing"
    );

    // Another visitor is not affected.
    let (status, body) = app.send("dev-calm", json!({"content": "hello"})).await;
    assert_eq!(status, 200, "{body}");

    // The rate refills with time: a third of a minute later, one more message goes through.
    clock.advance(Duration::from_secs(21));
    let (status, body) = app
        .send(
            "dev-fast",
            json!({"conversation_id": conversation, "content": "five"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = call(
        app.request(Method::POST, "/v1/chat/messages", "dev-fast")
            .json(&json!({"conversation_id": conversation, "content": "six"})),
    )
    .await;
    assert_eq!(status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_is_limited_across_visitors_and_cannot_hide_behind_forwarded_for() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.limits.address.messages_per_minute = 3;
    })
    .await;
    for device in ["a", "b", "c"] {
        let (status, body) = app.send(device, json!({"content": "hi"})).await;
        assert_eq!(status, 200, "{body}");
    }
    // A fourth device id from the same address is refused, whatever it claims to forward for.
    let (status, retry_after, body) = call(
        app.request(Method::POST, "/v1/chat/messages", "d")
            .header("X-Forwarded-For", "198.51.100.7")
            .json(&json!({"content": "hi"})),
    )
    .await;
    assert_rate_limited(status, &body, retry_after.as_deref());
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("address")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_client_address_has_its_own_rate() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.limits.address.messages_per_minute = 2;
        c.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let send = |device: &'static str, client: &'static str| {
        call(
            app.request(Method::POST, "/v1/chat/messages", device)
                .header("X-Forwarded-For", format!("203.0.113.9, {client}"))
                .json(&json!({"content": "hi"})),
        )
    };
    assert_eq!(send("a1", "198.51.100.1").await.0, 200);
    assert_eq!(send("a2", "198.51.100.1").await.0, 200);
    assert_eq!(send("a3", "198.51.100.1").await.0, 429);
    // The proxy's other client has a budget of its own; what the client claimed further left
    // (203.0.113.9) does not matter.
    assert_eq!(send("b1", "198.51.100.2").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_operators_own_machine_is_exempt_and_a_local_proxy_is_believed() {
    // The defaults: loopback clients are exempt, loopback proxies are trusted.
    let defaults = switchboard::config::Config::defaults();
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.limits.exempt_local = defaults.limits.exempt_local;
        c.server.trusted_proxies = defaults.server.trusted_proxies.clone();
        c.limits.visitor.messages_per_minute = 1;
    })
    .await;
    // A health check, a script, a load test on the gateway's machine: not limited.
    for _ in 0..3 {
        let (status, body) = app.send("local-script", json!({"content": "hi"})).await;
        assert_eq!(status, 200, "{body}");
    }
    // A visitor forwarded by a reverse proxy on the same machine is a visitor like any other.
    let forwarded = || {
        call(
            app.request(Method::POST, "/v1/chat/messages", "visitor")
                .header("X-Forwarded-For", "198.51.100.23")
                .json(&json!({"content": "hi"})),
        )
    };
    assert_eq!(forwarded().await.0, 200);
    let (status, retry_after, body) = forwarded().await;
    assert_rate_limited(status, &body, retry_after.as_deref());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_conversations_and_handoffs_have_rates_of_their_own() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.limits.visitor.conversations_per_hour = 2;
        c.limits.visitor.handoffs_per_hour = 1;
    })
    .await;
    let mut conversations = Vec::new();
    for _ in 0..2 {
        let (status, body) = app.send("dev-1", json!({"content": "hello"})).await;
        assert_eq!(status, 200, "{body}");
        conversations.push(body["conversation_id"].as_str().unwrap().to_owned());
    }
    let before = app.count("conversations").await;
    let (status, retry_after, body) = call(
        app.request(Method::POST, "/v1/chat/messages", "dev-1")
            .json(&json!({"content": "a third conversation"})),
    )
    .await;
    assert_rate_limited(status, &body, retry_after.as_deref());
    assert_eq!(app.count("conversations").await, before);
    // Writing in an existing conversation is still fine.
    let (status, body) = app
        .send(
            "dev-1",
            json!({"conversation_id": conversations[0], "content": "more"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = app.handoff("dev-1", &conversations[0]).await;
    assert_eq!(status, 200, "{body}");
    // Asking again for the same conversation changes nothing and is not counted.
    let (status, body) = app.handoff("dev-1", &conversations[0]).await;
    assert_eq!(status, 200, "{body}");
    let (status, retry_after, body) = call(app.request(
        Method::POST,
        &format!("/v1/conversations/{}/handoff", conversations[1]),
        "dev-1",
    ))
    .await;
    assert_rate_limited(status, &body, retry_after.as_deref());
    let (_, second) = app
        .get("dev-1", &format!("/v1/conversations/{}", conversations[1]))
        .await;
    assert_eq!(second["mode"], "ai", "a refused handoff changes nothing");
}

/// An event stream of a conversation, as a visitor; returns the raw response.
async fn open_stream(app: &TestApp, device: &str, conversation: &str) -> reqwest::Response {
    app.request(
        Method::GET,
        &format!("/v1/conversations/{conversation}/events"),
        device,
    )
    .send()
    .await
    .expect("events request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped_and_the_gateway_keeps_answering_everyone_else() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.limits.visitor.event_streams = 3;
        c.limits.streams.total = 5;
    })
    .await;
    let (_, body) = app.send("greedy", json!({"content": "hello"})).await;
    let conversation = body["conversation_id"].as_str().unwrap().to_owned();
    let mut held = Vec::new();
    for _ in 0..3 {
        let response = open_stream(&app, "greedy", &conversation).await;
        assert_eq!(response.status(), 200);
        held.push(response);
    }
    for _ in 0..20 {
        let response = open_stream(&app, "greedy", &conversation).await;
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let (status, body) = json_response(response).await;
        assert_rate_limited(status, &body, retry_after.as_deref());
    }
    // Meanwhile the health check and another visitor's chat answer at once.
    let started = tokio::time::Instant::now();
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let (status, other) = app.send("polite", json!({"content": "hello"})).await;
    assert_eq!(status, 200, "{other}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered promptly"
    );

    // The gateway's total: two more streams from another visitor fit, the next does not.
    let other_conversation = other["conversation_id"].as_str().unwrap().to_owned();
    let mut more = Vec::new();
    for _ in 0..2 {
        let response = open_stream(&app, "polite", &other_conversation).await;
        assert_eq!(response.status(), 200);
        more.push(response);
    }
    let refused = open_stream(&app, "polite", &other_conversation).await;
    assert_eq!(refused.status(), 429);

    // A stream that ends gives its place back.
    drop(held.pop());
    app.eventually(Duration::from_secs(10), "a freed place", || async {
        let response = open_stream(&app, "greedy", &conversation).await;
        (response.status() == 200).then_some(response)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_cap_clients_wait_until_a_connection_closes() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| c.server.max_connections = 2).await;
    // Two idle connections take every place.
    let idle_one = TcpStream::connect(app.address).await.unwrap();
    let idle_two = TcpStream::connect(app.address).await.unwrap();
    // Give the server a moment to accept both.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn({
        let url = app.url("/healthz");
        async move { reqwest::get(url).await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the third client waits");
    drop(idle_one);
    let status = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once a place is free")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    drop(idle_two);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_only_its_share_of_connections() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.server.max_connections_per_address = 2;
    })
    .await;
    let held_one = TcpStream::connect(app.address).await.unwrap();
    let held_two = TcpStream::connect(app.address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third connection from the same address is closed at once.
    let mut third = TcpStream::connect(app.address).await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), third.read(&mut byte))
        .await
        .expect("closed promptly");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    // Once one of its connections ends, the address gets a place again.
    drop(held_one);
    app.eventually(
        Duration::from_secs(10),
        "a place for the address",
        || async {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            client
                .get(app.url("/healthz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        },
    )
    .await;
    drop(held_two);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_message_gets_its_answer_whatever_the_rate() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.limits.visitor.messages_per_minute = 1;
    })
    .await;
    let send = |key: &'static str| {
        call(
            app.request(Method::POST, "/v1/chat/messages", "dev-retry")
                .header("Idempotency-Key", key)
                .json(&json!({"content": "hello"})),
        )
    };
    let (status, _, first) = send("k-1").await;
    assert_eq!(status, 200, "{first}");
    // The client did not see the answer and sends again: the same message, not a refusal.
    let (status, _, again) = send("k-1").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["message"]["id"], first["message"]["id"]);
    // A new message is over the rate.
    let (status, retry_after, body) = send("k-2").await;
    assert_rate_limited(status, &body, retry_after.as_deref());
    assert_eq!(app.count("messages").await, 2, "the message and its reply");
}

/// A text message webhook from `user`.
fn whatsapp_text(app: &TestApp, user: &str, id: &str, body: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": user}],
            "messages": [{"from": user, "id": id,
                "timestamp": app.clock.now().to_datetime().timestamp().to_string(),
                "type": "text", "text": {"body": body}}]
        }}]}]
    }))
    .unwrap()
}

async fn messaging_contacts_over_their_rate_are_stored_unanswered_and_told_once(backend: Backend) {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&backend, |c| {
        c.set("whatsapp.app_secret", "secret");
        c.set("whatsapp.verify_token", "verify");
        c.set("whatsapp.access_token", "token");
        c.set("whatsapp.api_base", graph.base_url());
        c.set("whatsapp.mark_read", false);
        c.routing.default_agent = "echo".into();
        c.limits.contact.messages_per_minute = 2;
    })
    .await;
    for i in 0..6 {
        let (status, body) = app
            .whatsapp(&whatsapp_text(
                &app,
                "16505551234",
                &format!("wamid.flood{i}"),
                &format!("message {i}"),
            ))
            .await;
        assert_eq!(status, 200, "every message is acknowledged: {body}");
        assert_eq!(body["stored"], 1, "{body}");
    }
    // Another contact is answered as usual.
    app.whatsapp(&whatsapp_text(&app, "16505559999", "wamid.other", "hello"))
        .await;
    app.all_answered().await;
    app.all_delivered().await;

    let (conversation,): (String,) = app
        .store
        .reader()
        .fetch_one(
            query("SELECT c.id FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE ct.external_id = $1")
                .bind("16505551234"),
        )
        .await
        .unwrap();
    let all = messages::page(&mut app.store.reader(), &conversation.into(), None, 100)
        .await
        .unwrap();
    let inbound: Vec<_> = all
        .iter()
        .filter(|m| m.direction == messages::Direction::Inbound)
        .collect();
    assert_eq!(inbound.len(), 6, "nothing is lost");
    let unanswered = inbound
        .iter()
        .filter(|m| m.metadata.to_map().contains_key("unanswered"))
        .count();
    assert_eq!(unanswered, 4);
    let replies = all.iter().filter(|m| m.role == messages::Role::Ai).count();
    assert_eq!(replies, 2, "two answered");
    let notices: Vec<_> = all
        .iter()
        .filter(|m| m.role == messages::Role::System)
        .collect();
    assert_eq!(notices.len(), 1, "told once: {notices:?}");
    assert_eq!(notices[0].metadata.to_map()["notice"], "rate_limited");

    // What reached the user on WhatsApp: two answers and the notice, and the other user's answer.
    let sent: Vec<String> = graph
        .message_requests()
        .iter()
        .filter(|r| r.body["to"] == "16505551234")
        .map(|r| {
            r.body["text"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(
        sent.iter().any(|t| t.contains("faster than we can answer")),
        "{sent:?}"
    );
    assert!(
        graph
            .message_requests()
            .iter()
            .any(|r| r.body["to"] == "16505559999")
    );
}

/// `POST /v1/auth/token`: status, `Retry-After` and body.
async fn sign_in(app: &TestApp, email: &str, password: &str) -> (u16, Option<String>, Value) {
    call(
        app.client
            .post(app.url("/v1/auth/token"))
            .json(&json!({"email": email, "password": password})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_back_off_per_account_and_are_audited() {
    let (app, clock) = spawn_on_clock(|c| {
        c.limits.sign_in.failures_before_backoff = 2;
        c.limits.sign_in.backoff_base = Duration::from_secs(60);
        c.limits.sign_in.backoff_max = Duration::from_secs(600);
    })
    .await;
    let (_, admin) = app.staff_token("root@example.com", "admin").await;
    app.staff
        .add_user(
            "ana@example.com",
            "Ana",
            "expert".parse().unwrap(),
            "correct-horse-battery",
            3,
            None,
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let (status, _, body) = sign_in(&app, "ana@example.com", "wrong-password").await;
        assert_eq!(status, 401, "{body}");
    }
    // Backing off: even the right password is not checked now.
    let (status, retry_after, body) =
        sign_in(&app, "Ana@Example.com", "correct-horse-battery").await;
    assert_rate_limited(status, &body, retry_after.as_deref());
    assert!(
        retry_after.unwrap().parse::<u64>().unwrap() <= 60,
        "the first wait is backoff_base"
    );
    // An unrelated account is not affected.
    let (status, _, _) = sign_in(&app, "root@example.com", "correct-horse-battery").await;
    assert_eq!(status, 200);

    clock.advance(Duration::from_secs(61));
    let (status, _, body) = sign_in(&app, "ana@example.com", "correct-horse-battery").await;
    assert_eq!(status, 200, "{body}");

    // Every checked attempt is in the audit log, failures with the login tried and the address.
    let (status, log) = app
        .staff_call(Method::GET, "/v1/admin/audit?limit=100", &admin, None)
        .await;
    assert_eq!(status, 200, "{log}");
    let entries = log["entries"].as_array().unwrap();
    let failed: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "sign_in_failed")
        .collect();
    assert_eq!(failed.len(), 2, "{log}");
    assert!(
        failed
            .iter()
            .all(|e| e["detail"]["login"] == "ana@example.com")
    );
    assert!(
        failed
            .iter()
            .all(|e| e["remote_addr"].as_str().unwrap().contains("127.0.0.1"))
    );
    let succeeded = entries.iter().filter(|e| e["action"] == "sign_in").count();
    assert_eq!(
        succeeded, 3,
        "root twice (one for the test's token), ana once: {log}"
    );
    assert!(
        !log.to_string().contains("wrong-password"),
        "passwords are never recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_guesses_on_one_account_is_checked_one_at_a_time() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.limits.sign_in.failures_before_backoff = 3;
        c.limits.sign_in.backoff_base = Duration::from_secs(600);
    })
    .await;
    let (_, admin) = app.staff_token("root@example.com", "admin").await;
    app.staff
        .add_user(
            "ana@example.com",
            "Ana",
            "expert".parse().unwrap(),
            "correct-horse-battery",
            3,
            None,
        )
        .await
        .unwrap();
    let guesses = (0..30).map(|i| {
        let client = app.client.clone();
        let url = app.url("/v1/auth/token");
        async move {
            client
                .post(url)
                .json(&json!({"email": "ana@example.com", "password": format!("guess-{i:04}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        checked <= 3,
        "at most three guesses are checked before the account backs off: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        30 - checked,
        "{statuses:?}"
    );
    let (_, log) = app
        .staff_call(Method::GET, "/v1/admin/audit?limit=100", &admin, None)
        .await;
    let failed = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "sign_in_failed")
        .count();
    assert_eq!(failed, checked, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_are_limited_per_address() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.limits.sign_in.attempts_per_minute = 3;
    })
    .await;
    for i in 0..3 {
        let (status, _, _) = sign_in(&app, &format!("guess{i}@example.com"), "whatever-long").await;
        assert_eq!(status, 401);
    }
    let (status, retry_after, body) = sign_in(&app, "guess9@example.com", "whatever-long").await;
    assert_rate_limited(status, &body, retry_after.as_deref());

    // The dashboard's form is held to the same limits, with a page that says so.
    let page = app
        .client
        .get(app.url("/dashboard/login"))
        .send()
        .await
        .unwrap();
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| {
            let v = v.to_str().unwrap();
            v.starts_with("sb_login_csrf=")
                .then(|| v.split(';').next().unwrap().to_owned())
        })
        .unwrap();
    let csrf = cookie.trim_start_matches("sb_login_csrf=").to_owned();
    let response = app
        .client
        .post(app.url("/dashboard/login"))
        .header("cookie", cookie)
        .form(&[
            ("email", "ana@example.com"),
            ("password", "whatever-long"),
            ("_csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Too many sign-in attempts")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_hashing_runs_a_few_at_a_time() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.limits.sign_in.concurrent_hashes = 1;
        c.limits.sign_in.hash_wait = Duration::from_millis(1);
        c.limits.sign_in.failures_before_backoff = 0;
    })
    .await;
    let attempts = (0..30).map(|i| {
        let client = app.client.clone();
        let url = app.url("/v1/auth/token");
        async move {
            let response = client
                .post(url)
                .json(
                    &json!({"email": format!("nobody{i}@example.com"), "password": "guess-guess"}),
                )
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let (_, body) = json_response(response).await;
            (status, body)
        }
    });
    let answers = futures::future::join_all(attempts).await;
    let busy = answers.iter().filter(|(status, _)| *status == 429).count();
    let checked = answers.iter().filter(|(status, _)| *status == 401).count();
    assert_eq!(busy + checked, 30, "{answers:?}");
    assert!(checked >= 1, "at least one was checked: {answers:?}");
    assert!(
        busy >= 1,
        "one hash at a time: the rest are refused: {answers:?}"
    );
    assert!(
        answers
            .iter()
            .filter(|(status, _)| *status == 429)
            .all(|(_, body)| body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("too many sign-ins at once"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_visitor_sees_why_in_the_rate_limited_error_shape() {
    // Guards the documented contract: code, message and Retry-After, for a browser too (the
    // header is exposed to scripts of other origins).
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.limits.visitor.messages_per_minute = 1;
    })
    .await;
    app.send("dev", json!({"content": "one"})).await;
    let response = app
        .request(Method::POST, "/v1/chat/messages", "dev")
        .header("Origin", "https://shop.example.com")
        .json(&json!({"content": "two"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let exposed = response
        .headers()
        .get("access-control-expose-headers")
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default();
    assert!(exposed.contains("retry-after"), "{exposed:?}");
    let (_, body) = json_response(response).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many messages from this visitor"),
        "{body}"
    );
}

/// Reads a raw HTTP response head from a socket, up to the end of the headers.
pub(crate) async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(0) | Err(_) => break,
            Ok(_) => head.push(byte[0]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Sends request headers announcing a body that never comes; returns the socket.
pub(crate) async fn announce_body(app: &TestApp, head: &str) -> TcpStream {
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// A visitor spreading messages over two instances of one deployment meets one limit: each
/// instance counts what the other allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_meets_one_rate_across_instances() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let one = TestApp::spawn_with(&backend, |config| {
        config.limits.visitor.messages_per_minute = 4;
    })
    .await;
    let two = TestApp::start(one.config.clone(), one.clock.clone()).await;
    for (i, app) in [&one, &two, &one, &two].into_iter().enumerate() {
        let (status, body) = app
            .send("dev-1", json!({"content": format!("message {i}")}))
            .await;
        assert_eq!(status, 200, "message {i} is within the rate: {body}");
    }
    // The instances tell each other what they counted every second; a busy machine (the whole
    // suite running on two cores) may delay a round or two.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for app in [&one, &two] {
        let (status, body) = app.send("dev-1", json!({"content": "a fifth"})).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    }
    assert_eq!(
        one.count("messages").await,
        8,
        "four messages, four replies"
    );
}
