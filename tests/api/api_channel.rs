//! The generic HTTP API channel end to end: an integration posts signed JSON messages to
//! `/webhooks/api/{name}` of the real gateway and receives the answers as signed callbacks on a
//! fake integration server; failed callbacks are retried, retried deliveries stored once.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};
use switchboard::config::Config;

use crate::{
    both_backends,
    helpers::{
        Backend, TestApp, eventually,
        fake::{FakeServer, serve},
        json_response,
    },
};

both_backends!(
    messages_are_answered_through_signed_callbacks,
    a_failing_callback_is_retried_with_the_same_delivery,
);

const NAME: &str = "crm";
const SECRET: &str = "integration-secret";

/// A callback the fake integration received.
#[derive(Debug, Clone)]
struct Callback {
    headers: HeaderMap,
    body: Bytes,
    json: Value,
}

#[derive(Clone, Default)]
struct IntegrationState {
    received: Arc<Mutex<Vec<Callback>>>,
    /// Statuses to answer message callbacks with, first to last; then 200.
    failures: Arc<Mutex<Vec<StatusCode>>>,
}

/// A fake integration: records every callback, answers message callbacks as told.
struct FakeIntegration {
    server: FakeServer,
    state: IntegrationState,
}

impl FakeIntegration {
    async fn start(failures: Vec<StatusCode>) -> FakeIntegration {
        let state = IntegrationState {
            failures: Arc::new(Mutex::new(failures)),
            ..IntegrationState::default()
        };
        let router = Router::new()
            .route("/callback", post(callback))
            .with_state(state.clone());
        FakeIntegration {
            server: serve(router).await,
            state,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/callback", self.server.address)
    }

    fn of_type(&self, kind: &str) -> Vec<Callback> {
        self.state
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.json["type"] == kind)
            .cloned()
            .collect()
    }

    async fn wait_for(&self, kind: &str, n: usize) -> Vec<Callback> {
        eventually(
            Duration::from_secs(20),
            &format!("{n} {kind} callbacks"),
            &mut || {
                let found = self.of_type(kind);
                async move { (found.len() >= n).then_some(found) }
            },
        )
        .await
    }
}

async fn callback(
    State(state): State<IntegrationState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let is_message = json["type"] == "message";
    let delivery = json["delivery"].as_str().unwrap_or_default().to_owned();
    state.received.lock().unwrap().push(Callback {
        headers,
        body,
        json,
    });
    if is_message {
        let mut failures = state.failures.lock().unwrap();
        if !failures.is_empty() {
            return failures.remove(0).into_response();
        }
    }
    Json(json!({"id": format!("crm-{delivery}")})).into_response()
}

fn on_api(integration: &FakeIntegration) -> impl FnOnce(&mut Config) + '_ {
    move |config: &mut Config| {
        let table: toml::Table = format!(
            "name = \"{NAME}\"\nsecret = \"{SECRET}\"\ncallback_url = \"{}\"\ntimeout = \"5s\"",
            integration.url()
        )
        .parse()
        .unwrap();
        config.set("api.integrations", toml::Value::Array(vec![table.into()]));
        config.routing.default_agent = "echo".into();
    }
}

/// Posts a body to the integration's webhook, signed with `secret` now.
async fn post_signed(app: &TestApp, body: &Value, secret: &str) -> (u16, Value) {
    let body = serde_json::to_vec(body).unwrap();
    let timestamp = chrono::Utc::now().timestamp();
    let response = app
        .client
        .post(app.url(&format!("/webhooks/api/{NAME}")))
        .header("content-type", "application/json")
        .header(switchboard_api::TIMESTAMP_HEADER, timestamp.to_string())
        .header(
            switchboard_api::SIGNATURE_HEADER,
            switchboard_api::sign(secret, timestamp, &body),
        )
        .body(body)
        .send()
        .await
        .expect("webhook request");
    json_response(response).await
}

fn message(id: &str, text: &str) -> Value {
    json!({"messages": [{"id": id, "from": {"id": "42", "name": "Ada"}, "text": text}]})
}

/// Checks a callback's signature the way the integration would.
fn assert_signed(callback: &Callback) {
    let header = |name: &str| {
        callback
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("callback without {name}"))
            .to_owned()
    };
    let timestamp: i64 = header(switchboard_api::TIMESTAMP_HEADER).parse().unwrap();
    let signature = header(switchboard_api::SIGNATURE_HEADER);
    switchboard_api::verify(SECRET, timestamp, &callback.body, &signature)
        .expect("a callback signed with the integration's secret");
    assert!(
        switchboard_api::verify("another-secret", timestamp, &callback.body, &signature).is_err()
    );
}

async fn messages_are_answered_through_signed_callbacks(backend: Backend) {
    let integration = FakeIntegration::start(Vec::new()).await;
    let app = TestApp::spawn_with(&backend, on_api(&integration)).await;

    let (status, body) = post_signed(&app, &message("m-1", "Hello from the CRM"), SECRET).await;
    assert_eq!((status, &body["stored"]), (200, &json!(1)), "{body}");

    let replies = integration.wait_for("message", 1).await;
    let reply = &replies[0];
    assert_signed(reply);
    assert_eq!(reply.json["to"], "42", "{}", reply.json);
    assert!(
        reply.json["text"]
            .as_str()
            .is_some_and(|t| t.contains("Hello from the CRM")),
        "{}",
        reply.json
    );
    let typing = integration.wait_for("typing", 1).await;
    assert_signed(&typing[0]);

    // The integration was unsure and sent the same message again: stored once, answered once.
    let (status, body) = post_signed(&app, &message("m-1", "Hello from the CRM"), SECRET).await;
    assert_eq!((status, &body["duplicates"]), (200, &json!(1)), "{body}");
    app.all_answered().await;
    app.all_delivered().await;
    assert_eq!(integration.of_type("message").len(), 1);

    // Forged: refused, nothing stored.
    let before = app.count("messages").await;
    let (status, body) = post_signed(&app, &message("m-2", "forged"), "not-the-secret").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_signature"))
    );
    assert_eq!(app.count("messages").await, before);

    // The integration reports its user read the answer: the reply's status moves.
    let id = reply.json["delivery"].as_str().unwrap();
    let (status, body) = post_signed(
        &app,
        &json!({"statuses": [{"id": format!("crm-{id}"), "status": "read"}]}),
        SECRET,
    )
    .await;
    assert_eq!((status, &body["statuses"]), (200, &json!(1)), "{body}");

    // The conversation goes on with the value the callback gave.
    let conversation = reply.json["conversation"].as_str().unwrap().to_owned();
    let mut next = message("m-3", "And another thing");
    next["messages"][0]["conversation"] = json!(conversation);
    let (status, _) = post_signed(&app, &next, SECRET).await;
    assert_eq!(status, 200);
    let replies = integration.wait_for("message", 2).await;
    assert_eq!(replies[1].json["conversation"], conversation);
}

async fn a_failing_callback_is_retried_with_the_same_delivery(backend: Backend) {
    let integration = FakeIntegration::start(vec![
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::SERVICE_UNAVAILABLE,
    ])
    .await;
    let app = TestApp::spawn_with(&backend, on_api(&integration)).await;

    let (status, body) = post_signed(&app, &message("m-1", "Are you there?"), SECRET).await;
    assert_eq!((status, &body["stored"]), (200, &json!(1)), "{body}");

    let attempts = integration.wait_for("message", 3).await;
    let deliveries: Vec<&Value> = attempts.iter().map(|c| &c.json["delivery"]).collect();
    assert!(
        deliveries.iter().all(|d| *d == deliveries[0]),
        "every attempt names the same delivery: {deliveries:?}"
    );
    attempts.iter().for_each(assert_signed);
    app.all_delivered().await;
    let (sent,): (String,) = sqlx_status(&app).await;
    assert_eq!(sent, "sent");
    assert_eq!(
        integration.of_type("message").len(),
        3,
        "no attempt after success"
    );
}

/// The delivery status of the one outbound message.
async fn sqlx_status(app: &TestApp) -> (String,) {
    use switchboard::store::{Db, query};
    app.store
        .reader()
        .fetch_one(query(
            "SELECT status FROM messages WHERE direction = 'outbound' ORDER BY created_at LIMIT 1",
        ))
        .await
        .expect("the reply's status")
}
