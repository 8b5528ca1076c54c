//! A fake integration on 127.0.0.1 (the `testing` feature): the other end of the API channel's
//! callbacks, for this crate's tests and the gateway's.
//!
//! It records every callback (path with query, headers, body) and answers each one with the
//! reply a test queued ([`FakeIntegration::reply`]: any status, headers and body, late if need
//! be), or with a 2xx naming the message (`{"id": "out-1"}`, `out-2`… in order), as an
//! integration that accepted it would. [`Callback::is_signed_with`] checks a callback's
//! signature the way an integration must.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::Response,
};
use serde_json::{Value, json};
pub use switchboard_channel::testing::Reply;
use switchboard_channel::testing::{FakeServer, Recorder, lock};

use crate::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};

/// A callback the fake received.
#[derive(Debug, Clone)]
pub struct Callback {
    /// The HTTP method.
    pub method: Method,
    /// The path and query, e.g. `/crm/callback?token=t0k`.
    pub path: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as sent.
    pub body: Bytes,
}

impl Callback {
    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body as JSON (`Null` when it is none).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Its `type`: `message` or `typing`.
    pub fn kind(&self) -> Option<String> {
        self.json()["type"].as_str().map(str::to_owned)
    }

    /// Its signing time (`X-Switchboard-Timestamp`).
    pub fn timestamp(&self) -> Option<i64> {
        self.header(TIMESTAMP_HEADER)?.parse().ok()
    }

    /// Whether its signature is right for `secret` (its freshness aside).
    pub fn is_signed_with(&self, secret: &str) -> bool {
        match (self.timestamp(), self.header(SIGNATURE_HEADER)) {
            (Some(timestamp), Some(signature)) => {
                verify(secret, timestamp, &self.body, signature).is_ok()
            }
            _ => false,
        }
    }
}

#[derive(Default)]
struct Shared {
    replies: Mutex<VecDeque<Reply>>,
    /// Callbacks answered by default so far.
    answered: AtomicU64,
}

/// The fake integration; stops when dropped.
pub struct FakeIntegration {
    server: FakeServer,
    callbacks: Recorder<Callback>,
    shared: Arc<Shared>,
}

impl FakeIntegration {
    /// Starts the fake on a free port.
    pub async fn start() -> FakeIntegration {
        let callbacks = Recorder::default();
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .fallback(answer)
            .with_state((callbacks.clone(), shared.clone()));
        FakeIntegration {
            server: FakeServer::start(router).await,
            callbacks,
            shared,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The URL of `path` (with its query) on the fake: a `callback_url`.
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// Queues the answer to the next callback.
    pub fn reply(&self, reply: Reply) {
        lock(&self.shared.replies).push_back(reply);
    }

    /// Every callback so far.
    pub fn callbacks(&self) -> Vec<Callback> {
        self.callbacks.all()
    }

    /// The callbacks of one `type` so far (`message`, `typing`).
    pub fn of_type(&self, kind: &str) -> Vec<Callback> {
        self.callbacks()
            .into_iter()
            .filter(|callback| callback.kind().as_deref() == Some(kind))
            .collect()
    }

    /// Waits until `done` holds, or panics with the callbacks seen.
    pub async fn wait(&self, done: impl Fn() -> bool, what: &str) {
        self.callbacks
            .wait_for("the fake integration", what, done)
            .await
    }
}

async fn answer(
    State((callbacks, shared)): State<(Recorder<Callback>, Arc<Shared>)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    callbacks.record(Callback {
        method,
        path: uri.to_string(),
        headers,
        body,
    });
    let queued = lock(&shared.replies).pop_front();
    let reply = queued.unwrap_or_else(|| {
        let n = shared.answered.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::json(200, json!({"id": format!("out-{n}")}))
    });
    reply.into_response().await
}
