//! A fake Telegram Bot API on 127.0.0.1 (the `testing` feature), for this crate's tests and the
//! gateway's end-to-end tests alike.
//!
//! It serves `/bot<token>/<method>` and `/file/bot<token>/<path>`, records every call, and
//! answers each one with, in this order:
//!
//! 1. a reply the test queued for that method ([`FakeBotApi::reply_to`]), or for whatever comes
//!    next ([`FakeBotApi::reply`]);
//! 2. for a send, a failure the test scripted ([`FakeBotApi::fail_next`]: 429 with
//!    `retry_after`, 500, "blocked");
//! 3. what Telegram answers a successful call: realistic `Message`s for sends (ids from 1001 up),
//!    the bot's identity for `getMe` ([`BOT_USERNAME`], [`BOT_USER_ID`]: the bot of
//!    `webhooks/telegram/`), long polling of `getUpdates` over the updates a test pushed
//!    ([`FakeBotApi::push_update`], honouring offsets the way Telegram does: an offset confirms
//!    every update before it), and the files a test added ([`FakeBotApi::add_file`]).
//!
//! teloxide posts JSON bodies for most methods but multipart forms for every method that can
//! upload a file (`sendPhoto`, `sendDocument`…), even when the file is only a URL; both are
//! recorded as one JSON object of parameters (form fields that hold JSON are parsed), so tests
//! check them alike.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri, header},
    response::Response,
};
use serde_json::{Map, Value, json};
pub use switchboard_channel::testing::Reply;
use switchboard_channel::testing::{FakeServer, Recorder, lock};
use tokio::sync::Notify;

use crate::BotSettings;

/// The token of [`BOT`]. Shaped like a real token, so teloxide's own masking applies too.
pub const TOKEN: &str = "7000000001:AAF7-g0gYncWnm5IyfZlpPRqRRv6kNAGlao";
/// The gateway's name of the main test bot.
pub const BOT: &str = "support";
/// The token of [`OTHER_BOT`]; not shaped like a real token.
pub const OTHER_TOKEN: &str = "other-token";
/// A second bot.
pub const OTHER_BOT: &str = "sales";
/// The bot's user id (`getMe`), as in the recorded updates of `webhooks/telegram/`.
pub const BOT_USER_ID: u64 = 7_000_000_001;
/// The bot's username (`getMe`), as in the recorded updates of `webhooks/telegram/`.
pub const BOT_USERNAME: &str = "switchboard_test_bot";

/// The id of the first message the fake accepts; the next ones count up.
const FIRST_MESSAGE_ID: i64 = 1001;

/// A call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The HTTP method (`POST` for API methods, `GET` for file downloads).
    pub http_method: Method,
    /// The raw path, e.g. `/bot<token>/SendMessage`.
    pub path: String,
    /// The bot's token, from the path.
    pub token: String,
    /// The Bot API method as the client spelt it (`SendMessage`; Telegram ignores the case);
    /// empty for file downloads.
    pub method: String,
    /// The `Content-Type` of the request.
    pub content_type: Option<String>,
    /// The parameters: a JSON body as it is, form fields as an object; `Null` without a body.
    pub params: Value,
    /// When it arrived.
    pub at: Instant,
}

impl Call {
    /// Whether this is a call of `method`, in any case (`sendMessage`, `SendMessage`).
    pub fn is(&self, method: &str) -> bool {
        self.method.eq_ignore_ascii_case(method)
    }

    /// Whether the parameters came as a multipart form.
    pub fn is_multipart(&self) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("multipart/form-data"))
    }
}

/// How the fake fails the next send ([`FakeBotApi::fail_next`]).
#[derive(Debug, Clone)]
pub enum Failure {
    /// 429 with `parameters.retry_after` seconds.
    RetryAfter(u64),
    /// 500.
    ServerError,
    /// 403 "Forbidden: bot was blocked by the user".
    Blocked,
}

impl Failure {
    /// The answer.
    pub fn reply(&self) -> Reply {
        match self {
            Failure::RetryAfter(seconds) => Reply::flood(*seconds),
            Failure::ServerError => Reply::error(500, "Internal Server Error"),
            Failure::Blocked => Reply::error(403, "Forbidden: bot was blocked by the user"),
        }
    }
}

/// The Bot API's answers, as [`Reply`] constructors: `Reply::ok(…)`, `Reply::error(…)`,
/// `Reply::flood(…)` (with this trait in scope).
pub trait BotApiReply {
    /// `{"ok":true,"result":…}`.
    fn ok(result: Value) -> Reply;
    /// A Bot API error.
    fn error(status: u16, description: &str) -> Reply;
    /// Telegram's flood control: 429 with `retry_after`.
    fn flood(seconds: u64) -> Reply;
}

impl BotApiReply for Reply {
    fn ok(result: Value) -> Reply {
        Reply::json(200, json!({"ok": true, "result": result}))
    }

    fn error(status: u16, description: &str) -> Reply {
        Reply::json(
            status,
            json!({"ok": false, "error_code": status, "description": description}),
        )
    }

    fn flood(seconds: u64) -> Reply {
        Reply::json(
            429,
            json!({
                "ok": false,
                "error_code": 429,
                "description": format!("Too Many Requests: retry after {seconds}"),
                "parameters": {"retry_after": seconds}
            }),
        )
    }
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    /// Answers for one method (lowercased), before the queue above.
    method_replies: HashMap<String, VecDeque<Reply>>,
    failures: VecDeque<Failure>,
    /// Updates for `getUpdates`, until an offset confirms them.
    updates: Vec<Value>,
    /// Files by id.
    files: HashMap<String, Vec<u8>>,
}

#[derive(Default)]
struct Shared {
    script: Mutex<Script>,
    /// Messages accepted so far.
    sent: AtomicI64,
    pushed: Notify,
    /// getUpdates calls so far: a call still waiting when a newer one comes is ended with 409.
    polls: AtomicI64,
    /// getUpdates calls ended by a newer one (two pollers at once).
    conflicts: AtomicI64,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        lock(&self.script)
    }
}

/// The fake Bot API; stops when dropped.
pub struct FakeBotApi {
    server: FakeServer,
    calls: Recorder<Call>,
    shared: Arc<Shared>,
}

impl FakeBotApi {
    /// Starts the fake on a free port.
    pub async fn start() -> FakeBotApi {
        let calls = Recorder::default();
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .fallback(answer)
            .with_state((calls.clone(), shared.clone()));
        FakeBotApi {
            server: FakeServer::start(router).await,
            calls,
            shared,
        }
    }

    /// The base URL to configure as `telegram.api_url`: `http://127.0.0.1:<port>`.
    pub fn api_url(&self) -> String {
        self.server.base_url()
    }

    /// Settings of [`BOT`] and [`OTHER_BOT`] on the fake.
    pub fn settings(&self) -> Vec<BotSettings> {
        vec![
            BotSettings {
                name: BOT.into(),
                token: TOKEN.into(),
                api_url: self.api_url(),
            },
            BotSettings {
                name: OTHER_BOT.into(),
                token: OTHER_TOKEN.into(),
                // A trailing slash, as an operator might write it.
                api_url: format!("{}/", self.api_url()),
            },
        ]
    }

    /// Queues the answer to the next call that has none yet.
    pub fn reply(&self, reply: Reply) {
        self.shared.script().replies.push_back(reply);
    }

    /// Queues the answer to the next call of `method` (`GetUpdates`, in any case), whatever
    /// comes between.
    pub fn reply_to(&self, method: &str, reply: Reply) {
        self.shared
            .script()
            .method_replies
            .entry(method.to_ascii_lowercase())
            .or_default()
            .push_back(reply);
    }

    /// Makes the next sends fail, in this order.
    pub fn fail_next(&self, failures: impl IntoIterator<Item = Failure>) {
        self.shared.script().failures.extend(failures);
    }

    /// How many `getUpdates` calls were ended by a newer one: more than one poller at a time.
    pub fn conflicts(&self) -> i64 {
        self.shared.conflicts.load(Ordering::SeqCst)
    }

    /// Queues an update for `getUpdates`.
    pub fn push_update(&self, update: Value) {
        self.shared.script().updates.push(update);
        self.shared.pushed.notify_waiters();
    }

    /// Serves a file for `getFile` and its download.
    pub fn add_file(&self, file_id: &str, bytes: &[u8]) {
        self.shared
            .script()
            .files
            .insert(file_id.to_owned(), bytes.to_vec());
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.all()
    }

    /// The one call so far.
    pub fn only_call(&self) -> Call {
        let calls = self.calls();
        assert_eq!(calls.len(), 1, "{calls:#?}");
        calls.into_iter().next().expect("one call")
    }

    /// The calls of one method so far (named in any case: `sendMessage`).
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.is(method)).collect()
    }

    /// The texts of the messages sent (accepted or not), in order.
    pub fn sent_texts(&self) -> Vec<String> {
        self.calls_of("sendMessage")
            .iter()
            .map(|c| c.params["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Waits until `done` holds, or panics with the calls seen.
    pub async fn wait(&self, done: impl Fn() -> bool, what: &str) {
        self.calls.wait_for("the fake Bot API", what, done).await
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

/// A realistic `Message` of the bot in `chat_id`, with what `method` (`SendPhoto`, in any case)
/// sends.
pub fn sent_message(method: &str, message_id: i64, chat_id: i64, params: &Value) -> Value {
    let chat = if chat_id > 0 {
        json!({"id": chat_id, "type": "private", "first_name": "Waffle", "username": "WaffleLapkin"})
    } else {
        json!({"id": chat_id, "type": "supergroup", "title": "Support group"})
    };
    let mut message = json!({
        "message_id": message_id,
        "from": {
            "id": BOT_USER_ID,
            "is_bot": true,
            "first_name": "Switchboard",
            "username": BOT_USERNAME
        },
        "chat": chat,
        "date": 1_700_000_000,
    });
    let file = |extra: Value| {
        let mut file = json!({"file_id": "BQACAgIAAxkDAAIBZ2", "file_unique_id": "AgADZ2"});
        merge(&mut file, extra);
        file
    };
    let fields = match method.to_ascii_lowercase().as_str() {
        "sendphoto" => json!({"photo": [
            file(json!({"file_size": 1021, "width": 90, "height": 60})),
            file(json!({"file_size": 40583, "width": 800, "height": 533})),
        ]}),
        "sendvoice" => {
            json!({"voice": file(json!({"duration": 3, "mime_type": "audio/ogg", "file_size": 9381}))})
        }
        "sendaudio" => json!({"audio": file(
            json!({"duration": 184, "mime_type": "audio/mpeg", "file_size": 2946532, "title": "Song"})
        )}),
        "sendvideo" => json!({"video": file(
            json!({"width": 1280, "height": 720, "duration": 12, "mime_type": "video/mp4", "file_size": 1842335})
        )}),
        "sendsticker" => json!({"sticker": file(json!({
            "type": "regular", "width": 512, "height": 512,
            "is_animated": false, "is_video": false, "file_size": 22142
        }))}),
        "senddocument" => json!({"document": file(
            json!({"file_name": "report.pdf", "mime_type": "application/pdf", "file_size": 10231})
        )}),
        // A text message, and anything else sent (a location…) shows at least its text.
        _ => json!({"text": params.get("text").cloned().unwrap_or_else(|| json!(""))}),
    };
    merge(&mut message, fields);
    if let Some(caption) = params.get("caption") {
        message["caption"] = caption.clone();
    }
    if let Some(markup) = params.get("reply_markup") {
        message["reply_markup"] = markup.clone();
    }
    message
}

/// Adds the fields of the object `extra` to the object `into`.
fn merge(into: &mut Value, extra: Value) {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}

/// Whether `method` (lowercased) sends a message.
fn is_send(method: &str) -> bool {
    method.starts_with("send") && method != "sendchataction"
}

async fn answer(
    State((calls, shared)): State<(Recorder<Call>, Arc<Shared>)>,
    http_method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let params = parameters(content_type.as_deref(), &body);
    let path = uri.path().to_owned();
    let (token, method, file) = route(&path);
    let lowercase = method.to_ascii_lowercase();
    calls.record(Call {
        http_method,
        path,
        token,
        method,
        content_type,
        params: params.clone(),
        at: Instant::now(),
    });
    let queued = {
        let mut script = shared.script();
        let for_method = script
            .method_replies
            .get_mut(&lowercase)
            .and_then(VecDeque::pop_front);
        for_method
            .or_else(|| script.replies.pop_front())
            .or_else(|| {
                let failure = is_send(&lowercase)
                    .then(|| script.failures.pop_front())
                    .flatten();
                failure.map(|failure| failure.reply())
            })
    };
    let reply = match (queued, file) {
        (Some(reply), _) => reply,
        (None, Some(file)) => download(&shared, &file),
        (None, None) if lowercase == "getupdates" => get_updates(&shared, &params).await,
        (None, None) => default_reply(&shared, &lowercase, &params),
    };
    calls.changed();
    reply.into_response().await
}

/// The token, the method and, for a download, the file path of a request path.
fn route(path: &str) -> (String, String, Option<String>) {
    let path = path.trim_start_matches('/');
    let (file, rest) = match path.strip_prefix("file/") {
        Some(rest) => (true, rest),
        None => (false, path),
    };
    let (bot, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let token = bot.strip_prefix("bot").unwrap_or(bot).to_owned();
    if file {
        (token, String::new(), Some(tail.to_owned()))
    } else {
        (
            token,
            tail.rsplit('/').next().unwrap_or(tail).to_owned(),
            None,
        )
    }
}

/// The answer Telegram gives a successful call of `method` (lowercased).
fn default_reply(shared: &Shared, method: &str, params: &Value) -> Reply {
    match method {
        "getme" => Reply::ok(json!({
            "id": BOT_USER_ID,
            "is_bot": true,
            "first_name": "Switchboard",
            "username": BOT_USERNAME,
            "can_join_groups": true,
            "can_read_all_group_messages": false,
            "supports_inline_queries": false,
            "can_connect_to_business": false,
            "has_main_web_app": false
        })),
        "getfile" => {
            let file_id = params["file_id"].as_str().unwrap_or_default().to_owned();
            let size = shared.script().files.get(&file_id).map(Vec::len);
            match size {
                Some(size) => Reply::ok(json!({
                    "file_id": file_id,
                    "file_unique_id": format!("u{file_id}"),
                    "file_size": size,
                    "file_path": format!("photos/{file_id}.jpg")
                })),
                None => Reply::error(400, "Bad Request: invalid file_id"),
            }
        }
        method if is_send(method) => {
            let message_id = FIRST_MESSAGE_ID + shared.sent.fetch_add(1, Ordering::SeqCst);
            let chat_id = params["chat_id"]
                .as_i64()
                .unwrap_or_else(|| panic!("a numeric chat_id in {params}"));
            Reply::ok(sent_message(method, message_id, chat_id, params))
        }
        _ => Reply::ok(json!(true)),
    }
}

/// Long polling: drops the updates before the offset, answers the rest, or waits for some up
/// to the timeout (at most 5 s).
async fn get_updates(shared: &Shared, params: &Value) -> Reply {
    let offset = params["offset"].as_i64().unwrap_or(0);
    let timeout = params["timeout"].as_u64().unwrap_or(0).min(5);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    // Like Telegram, one caller at a time: a newer call ends the one still waiting.
    let me = shared.polls.fetch_add(1, Ordering::SeqCst) + 1;
    shared.pushed.notify_waiters();
    loop {
        let pushed = shared.pushed.notified();
        if shared.polls.load(Ordering::SeqCst) != me {
            shared.conflicts.fetch_add(1, Ordering::SeqCst);
            return Reply::error(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one bot \
                 instance is running",
            );
        }
        let pending: Vec<Value> = {
            let mut script = shared.script();
            script
                .updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            script.updates.clone()
        };
        if !pending.is_empty() {
            return Reply::ok(Value::Array(pending));
        }
        if tokio::time::Instant::now() >= deadline {
            if timeout == 0 {
                // Answering a poll without a timeout at once would make a poller spin.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            return Reply::ok(json!([]));
        }
        tokio::select! {
            () = pushed => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// A file download: `file/bot<token>/photos/<file id>.jpg` (the path after the token may come
/// percent-encoded, `photos%2F…`).
fn download(shared: &Shared, path: &str) -> Reply {
    let path = percent_decoded(path);
    let file_id = path
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".jpg");
    match shared.script().files.get(file_id) {
        Some(bytes) => Reply::raw(200, "application/octet-stream", bytes.clone()),
        None => Reply::error(404, "Not Found"),
    }
}

/// `text` with its `%XX` escapes decoded.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The parameters of a request body.
fn parameters(content_type: Option<&str>, body: &[u8]) -> Value {
    match content_type {
        _ if body.is_empty() => Value::Null,
        Some(ct) if ct.starts_with("application/json") => serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("a JSON body that is not JSON ({e})")),
        Some(ct) if ct.starts_with("multipart/form-data") => form_fields(ct, body),
        other => panic!("unexpected content type {other:?}"),
    }
}

/// The fields of a multipart form with text fields only (all teloxide sends for files by URL).
/// A field that holds JSON (a number, an object) is parsed, so it compares like a JSON body's.
fn form_fields(content_type: &str, body: &[u8]) -> Value {
    let boundary = content_type
        .split(';')
        .find_map(|part| part.trim().strip_prefix("boundary="))
        .expect("a multipart boundary")
        .trim_matches('"');
    let body = String::from_utf8_lossy(body);
    let mut fields = Map::new();
    for part in body.split(&format!("--{boundary}")) {
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        if part.is_empty() || part.starts_with("--") {
            continue;
        }
        let (headers, value) = part
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("a form part without a head: {part:?}"));
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let name = headers
            .split("name=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("a form part without a name: {headers:?}"));
        let value = match serde_json::from_str::<Value>(value) {
            Ok(
                parsed @ (Value::Number(_) | Value::Object(_) | Value::Array(_) | Value::Bool(_)),
            ) => parsed,
            _ => Value::String(value.to_owned()),
        };
        fields.insert(name.to_owned(), value);
    }
    Value::Object(fields)
}
