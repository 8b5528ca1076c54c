//! A fake Meta Graph API on 127.0.0.1: the WhatsApp `messages` endpoint (messages, read receipts
//! with typing indicators) and media (metadata, then the file). It records every request and can be
//! told to fail the next message sends the way the real API does.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::fake::{FakeServer, serve};

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request path.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The JSON body (POST) or `Null` (GET).
    pub body: Value,
}

/// How the fake answers a message send.
#[derive(Debug, Clone)]
pub enum Failure {
    /// HTTP 500 without a Graph error body.
    ServerError,
    /// HTTP 429, Graph code 130429, with a `Retry-After` header (seconds) when given.
    RateLimited(Option<u64>),
    /// HTTP 400, Graph code 131047: more than 24 hours since the user's last message.
    OutsideWindow,
    /// HTTP 401, Graph code 190: the access token expired.
    TokenExpired,
}

/// A file the fake serves as WhatsApp media.
#[derive(Debug, Clone)]
pub struct FakeMedia {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The MIME type in the metadata.
    pub mime_type: String,
    /// The checksum in the metadata (normally the file's true hex SHA-256).
    pub sha256: String,
}

#[derive(Default)]
struct GraphState {
    requests: Mutex<Vec<Recorded>>,
    /// How the next message sends are answered (`None`: accepted); afterwards, all are accepted.
    script: Mutex<VecDeque<Option<Failure>>>,
    media: Mutex<HashMap<String, FakeMedia>>,
    sent: Mutex<u64>,
    arrived: Notify,
}

/// The fake Graph API.
pub struct FakeGraph {
    server: FakeServer,
    state: Arc<GraphState>,
}

impl FakeGraph {
    /// Starts the fake.
    pub async fn start() -> FakeGraph {
        let state = Arc::new(GraphState::default());
        let router = Router::new()
            .route("/{version}/{account}/messages", post(messages))
            .route("/{version}/{media_id}", get(media_metadata))
            .route("/files/{media_id}", get(media_file))
            .with_state(state.clone());
        FakeGraph {
            server: serve(router).await,
            state,
        }
    }

    /// The base URL to configure as `whatsapp.api_base`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.address)
    }

    /// Makes the next message sends fail, in this order.
    pub fn fail_next(&self, failures: impl IntoIterator<Item = Failure>) {
        self.answer_next(failures.into_iter().map(Some));
    }

    /// Scripts how the next message sends are answered: `None` accepts, `Some` fails.
    pub fn answer_next(&self, answers: impl IntoIterator<Item = Option<Failure>>) {
        self.state.script.lock().unwrap().extend(answers);
    }

    /// Serves a file under a media id.
    pub fn add_media(&self, id: &str, bytes: &[u8], mime_type: &str) -> FakeMedia {
        let media = FakeMedia {
            bytes: bytes.to_vec(),
            mime_type: mime_type.to_owned(),
            sha256: hex::encode(Sha256::digest(bytes)),
        };
        self.add_media_as(id, media.clone());
        media
    }

    /// Serves a file under a media id with the given metadata (which may lie).
    pub fn add_media_as(&self, id: &str, media: FakeMedia) {
        self.state
            .media
            .lock()
            .unwrap()
            .insert(id.to_owned(), media);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The message sends so far (not read receipts), failed ones included.
    pub fn message_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/messages") && r.body.get("status").is_none())
            .collect()
    }

    /// The read receipts (with typing indicators) so far.
    pub fn read_receipts(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/messages") && r.body["status"] == "read")
            .collect()
    }

    /// How many messages the fake accepted.
    pub fn accepted(&self) -> u64 {
        *self.state.sent.lock().unwrap()
    }

    /// Waits until the fake accepted at least `n` messages.
    pub async fn wait_for_accepted(&self, n: u64) {
        self.wait(|| self.accepted() >= n, &format!("{n} accepted messages"))
            .await
    }

    /// Waits until at least `n` message sends arrived (accepted or not).
    pub async fn wait_for_attempts(&self, n: usize) {
        self.wait(
            || self.message_requests().len() >= n,
            &format!("{n} message sends"),
        )
        .await
    }

    /// Waits until `done` holds.
    pub async fn wait(&self, done: impl Fn() -> bool, what: &str) {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let arrived = self.state.arrived.notified();
                if done() {
                    return;
                }
                arrived.await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the fake Graph API did not see {what} in time; it saw {:#?}",
                self.requests()
            )
        });
    }
}

fn record(state: &GraphState, path: String, headers: &HeaderMap, body: Value) {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state.requests.lock().unwrap().push(Recorded {
        path,
        authorization,
        body,
    });
}

fn graph_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {
            "message": message, "type": "OAuthException", "code": code,
            "error_data": {"details": message}, "fbtrace_id": "AbCdEf123"
        }})),
    )
        .into_response()
}

async fn messages(
    State(state): State<Arc<GraphState>>,
    Path((version, account)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let is_receipt = body["status"] == "read";
    record(
        &state,
        format!("/{version}/{account}/messages"),
        &headers,
        body.clone(),
    );
    let response = if is_receipt {
        Json(json!({"success": true})).into_response()
    } else {
        let scripted = state.script.lock().unwrap().pop_front().flatten();
        match scripted {
            Some(Failure::ServerError) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "upstream trouble").into_response()
            }
            Some(Failure::RateLimited(after)) => {
                let mut response = graph_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    130429,
                    "(#130429) Rate limit hit",
                );
                if let Some(after) = after {
                    response
                        .headers_mut()
                        .insert("retry-after", HeaderValue::from(after));
                }
                response
            }
            Some(Failure::OutsideWindow) => graph_error(
                StatusCode::BAD_REQUEST,
                131047,
                "Re-engagement message: more than 24 hours have passed since the customer last replied",
            ),
            Some(Failure::TokenExpired) => graph_error(
                StatusCode::UNAUTHORIZED,
                190,
                "Error validating access token: Session has expired",
            ),
            None => {
                let mut sent = state.sent.lock().unwrap();
                *sent += 1;
                Json(json!({
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                    "messages": [{"id": format!("wamid.out.{}", *sent)}]
                }))
                .into_response()
            }
        }
    };
    state.arrived.notify_waiters();
    response
}

async fn media_metadata(
    State(state): State<Arc<GraphState>>,
    Path((version, media_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    record(
        &state,
        format!("/{version}/{media_id}"),
        &headers,
        Value::Null,
    );
    state.arrived.notify_waiters();
    let media = state.media.lock().unwrap().get(&media_id).cloned();
    match media {
        // The real API's answer to an unknown or expired media id.
        None => graph_error(
            StatusCode::BAD_REQUEST,
            100,
            "Unsupported get request. Object with ID does not exist",
        ),
        Some(media) => {
            let host = headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            Json(json!({
                "messaging_product": "whatsapp",
                "url": format!("http://{host}/files/{media_id}"),
                "mime_type": media.mime_type,
                "sha256": media.sha256,
                "file_size": media.bytes.len().to_string(),
                "id": media_id,
            }))
            .into_response()
        }
    }
}

async fn media_file(
    State(state): State<Arc<GraphState>>,
    Path(media_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(&state, format!("/files/{media_id}"), &headers, Value::Null);
    state.arrived.notify_waiters();
    let media = state.media.lock().unwrap().get(&media_id).cloned();
    match media {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(media) => (
            [("content-type", media.mime_type.clone())],
            media.bytes.clone(),
        )
            .into_response(),
    }
}
