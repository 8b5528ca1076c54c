//! A fake Telegram Bot API on 127.0.0.1: `/bot<token>/<method>` for the methods the gateway calls,
//! `getUpdates` long polling over a queue of updates the test pushes (honouring offsets the way
//! Telegram does: an offset confirms every update before it), and file downloads. It records every
//! call and can be told to fail the next sends with 429 (retry_after), 500 or "blocked".

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::fake::{FakeServer, serve};

/// The bot the fake pretends to be.
const BOT_USERNAME: &str = "switchboard_test_bot";
/// Its user id.
const BOT_ID: u64 = 7_000_000_001;

/// A call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The token in the URL.
    pub token: String,
    /// The method, lowercased, e.g. `sendmessage`.
    pub method: String,
    /// The parameters (JSON body).
    pub params: Value,
}

/// How the fake answers the next send.
#[derive(Debug, Clone)]
pub enum Failure {
    /// 429 with `parameters.retry_after` seconds.
    RetryAfter(u64),
    /// 500.
    ServerError,
    /// 403 "Forbidden: bot was blocked by the user".
    Blocked,
}

#[derive(Default)]
struct BotState {
    calls: Mutex<Vec<Call>>,
    script: Mutex<VecDeque<Failure>>,
    updates: Mutex<Vec<Value>>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    next_message_id: Mutex<i64>,
    arrived: Notify,
    pushed: Notify,
}

/// The fake Bot API.
pub struct FakeBotApi {
    server: FakeServer,
    state: Arc<BotState>,
}

impl FakeBotApi {
    /// Starts the fake.
    pub async fn start() -> FakeBotApi {
        let state = Arc::new(BotState::default());
        *state.next_message_id.lock().unwrap() = 1000;
        let router = Router::new()
            .route("/{bot}/{method}", post(method))
            .route("/file/{bot}/{*path}", get(file))
            .with_state(state.clone());
        FakeBotApi {
            server: serve(router).await,
            state,
        }
    }

    /// The base URL to configure as `telegram.api_url`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.server.address)
    }

    /// Makes the next sends fail, in this order.
    pub fn fail_next(&self, failures: impl IntoIterator<Item = Failure>) {
        self.state.script.lock().unwrap().extend(failures);
    }

    /// Queues an update for getUpdates.
    pub fn push_update(&self, update: Value) {
        self.state.updates.lock().unwrap().push(update);
        self.state.pushed.notify_waiters();
    }

    /// Serves a file for getFile and the file URL.
    pub fn add_file(&self, file_id: &str, bytes: &[u8]) {
        self.state
            .files
            .lock()
            .unwrap()
            .insert(file_id.to_owned(), bytes.to_vec());
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The calls of one method so far (named in any case: `sendMessage`).
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .collect()
    }

    /// The texts of the messages sent (accepted or not), in order.
    pub fn sent_texts(&self) -> Vec<String> {
        self.calls_of("sendMessage")
            .iter()
            .map(|c| c.params["text"].as_str().unwrap_or_default().to_owned())
            .collect()
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
                "the fake Bot API did not see {what} in time; it saw {:#?}",
                self.calls()
            )
        });
    }

    /// Waits until `n` sendMessage calls arrived.
    pub async fn wait_for_sends(&self, n: usize) {
        self.wait(
            || self.calls_of("sendMessage").len() >= n,
            &format!("{n} sendMessage calls"),
        )
        .await
    }
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

fn error(status: StatusCode, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": status.as_u16(), "description": description});
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    (status, Json(body)).into_response()
}

/// The parameters of a call: a JSON body, or a multipart form (teloxide sends one for every method
/// that could upload a file) as an object of its text fields.
fn parameters(headers: &HeaderMap, body: &[u8]) -> Value {
    if let Ok(json) = serde_json::from_slice(body) {
        return json;
    }
    let boundary = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("boundary=").nth(1))
        .map(|b| b.trim_matches('"').to_owned());
    let Some(boundary) = boundary else {
        return Value::Null;
    };
    let text = String::from_utf8_lossy(body);
    let mut fields = serde_json::Map::new();
    for part in text.split(&format!("--{boundary}")) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = head
            .split("name=\"")
            .nth(1)
            .and_then(|n| n.split('"').next())
        else {
            continue;
        };
        let value = value.trim_end_matches("\r\n");
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        fields.insert(name.to_owned(), value);
    }
    Value::Object(fields)
}

async fn method(
    State(state): State<Arc<BotState>>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = bot.strip_prefix("bot").unwrap_or(&bot).to_owned();
    // Telegram's method names are case-insensitive; teloxide writes them in PascalCase.
    let method = method.to_ascii_lowercase();
    let params = parameters(&headers, &body);
    state.calls.lock().unwrap().push(Call {
        token,
        method: method.clone(),
        params: params.clone(),
    });
    let response = match method.as_str() {
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Switchboard",
            "username": BOT_USERNAME, "can_join_groups": true,
            "can_read_all_group_messages": false, "supports_inline_queries": false,
            "has_main_web_app": false
        })),
        "getupdates" => return get_updates(&state, &params).await,
        "deletewebhook" | "setwebhook" | "sendchataction" | "answercallbackquery" => {
            ok(json!(true))
        }
        "getfile" => {
            let file_id = params["file_id"].as_str().unwrap_or_default().to_owned();
            let size = state.files.lock().unwrap().get(&file_id).map(Vec::len);
            match size {
                Some(size) => ok(json!({
                    "file_id": file_id, "file_unique_id": format!("u{file_id}"),
                    "file_size": size, "file_path": format!("photos/{file_id}.jpg")
                })),
                None => error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: invalid file_id",
                    None,
                ),
            }
        }
        _ => send(&state, &params),
    };
    state.arrived.notify_waiters();
    response
}

fn send(state: &BotState, params: &Value) -> Response {
    match state.script.lock().unwrap().pop_front() {
        Some(Failure::RetryAfter(seconds)) => error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too Many Requests: retry after {seconds}"),
            Some(json!({"retry_after": seconds})),
        ),
        Some(Failure::ServerError) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            None,
        ),
        Some(Failure::Blocked) => error(
            StatusCode::FORBIDDEN,
            "Forbidden: bot was blocked by the user",
            None,
        ),
        None => {
            let mut next = state.next_message_id.lock().unwrap();
            *next += 1;
            let chat_id = params["chat_id"].as_i64().unwrap_or_default();
            ok(json!({
                "message_id": *next,
                "date": chrono::Utc::now().timestamp(),
                "chat": {"id": chat_id, "type": "private", "first_name": "Waffle"},
                "from": {"id": BOT_ID, "is_bot": true, "first_name": "Switchboard",
                         "username": BOT_USERNAME},
                "text": params["text"].as_str().unwrap_or("")
            }))
        }
    }
}

/// Long polling: drops updates before the offset, returns the rest, or waits up to the timeout.
async fn get_updates(state: &BotState, params: &Value) -> Response {
    let offset = params["offset"].as_i64().unwrap_or(0);
    let timeout = params["timeout"].as_u64().unwrap_or(0).min(5);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    state.arrived.notify_waiters();
    loop {
        let pushed = state.pushed.notified();
        let pending: Vec<Value> = {
            let mut updates = state.updates.lock().unwrap();
            updates.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            updates.clone()
        };
        if !pending.is_empty() || tokio::time::Instant::now() >= deadline {
            return ok(Value::Array(pending));
        }
        tokio::select! {
            () = pushed => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

async fn file(
    State(state): State<Arc<BotState>>,
    Path((_bot, path)): Path<(String, String)>,
) -> Response {
    let file_id = path
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".jpg")
        .to_owned();
    match state.files.lock().unwrap().get(&file_id) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
