//! A fake Bot API for the tests: it records every request and answers with the replies a test
//! queues, or with what Telegram would answer a successful call of the method.
//!
//! teloxide posts JSON bodies for most methods but multipart forms for every method that can
//! upload a file (`sendPhoto`, `sendDocument`…), even when the file is only a URL; both are
//! recorded as one JSON object of parameters (form fields that hold JSON are parsed), so tests
//! check them alike.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::Response,
};
use serde_json::{Map, Value, json};

use crate::BotSettings;

/// The token of [`BOT`]. Shaped like a real token, so teloxide's own masking applies too.
pub(crate) const TOKEN: &str = "123456789:AAF7-g0gYncWnm5IyfZlpPRqRRv6kNAGlao";
/// The gateway's name of the main test bot.
pub(crate) const BOT: &str = "support";
/// The token of [`OTHER_BOT`]; not shaped like a real token.
pub(crate) const OTHER_TOKEN: &str = "other-token";
/// A second bot.
pub(crate) const OTHER_BOT: &str = "sales";
/// The test bot's user id.
pub(crate) const BOT_USER_ID: u64 = 123456789;

/// A request the fake received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub method: Method,
    /// The raw path, e.g. `/bot<token>/SendMessage`.
    pub path: String,
    pub content_type: Option<String>,
    /// The parameters: a JSON body as it is, form fields as an object; `Null` without a body.
    pub params: Value,
    /// When it arrived.
    pub at: Instant,
}

impl Recorded {
    /// The Bot API method (the last path segment), as teloxide spells it: `SendMessage`. The Bot
    /// API does not mind the case of method names.
    pub(crate) fn api_method(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }

    /// Whether the parameters came as a multipart form.
    pub(crate) fn is_multipart(&self) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("multipart/form-data"))
    }
}

/// How the fake answers one request.
pub(crate) struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    /// `{"ok":true,"result":…}`.
    pub(crate) fn ok(result: Value) -> Reply {
        Reply::json(200, json!({"ok": true, "result": result}))
    }

    /// A Bot API error.
    pub(crate) fn error(status: u16, description: &str) -> Reply {
        Reply::json(
            status,
            json!({"ok": false, "error_code": status, "description": description}),
        )
    }

    /// Telegram's flood control.
    pub(crate) fn flood(seconds: u64) -> Reply {
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

    /// Any JSON answer.
    pub(crate) fn json(status: u16, body: Value) -> Reply {
        Reply::raw(status, "application/json", body.to_string())
    }

    /// Any answer.
    pub(crate) fn raw(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            content_type,
            body: body.into(),
        }
    }
}

#[derive(Clone, Default)]
struct Shared {
    requests: Arc<Mutex<Vec<Recorded>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    /// Answers for one method (as teloxide spells it: `GetUpdates`), before the queue above.
    method_replies: Arc<Mutex<HashMap<String, VecDeque<Reply>>>>,
}

/// The running fake; stops when dropped.
pub(crate) struct FakeBotApi {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBotApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeBotApi {
    /// Starts the fake on a free port.
    pub(crate) async fn start() -> FakeBotApi {
        let shared = Shared::default();
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeBotApi {
            base,
            shared,
            server,
        }
    }

    /// Queues the answer to the next request that has none yet.
    pub(crate) fn reply(&self, reply: Reply) {
        self.shared.replies.lock().unwrap().push_back(reply);
    }

    /// Queues the answer to the next call of `method` (`GetUpdates`), whatever comes between.
    pub(crate) fn reply_to(&self, method: &str, reply: Reply) {
        self.shared
            .method_replies
            .lock()
            .unwrap()
            .entry(method.to_owned())
            .or_default()
            .push_back(reply);
    }

    /// The calls of one method received so far.
    pub(crate) fn calls_of(&self, method: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.api_method() == method)
            .collect()
    }

    /// The requests received so far.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The one request received so far.
    pub(crate) fn only_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "{requests:#?}");
        requests.into_iter().next().unwrap()
    }

    /// Settings of [`BOT`] and [`OTHER_BOT`] on the fake.
    pub(crate) fn settings(&self) -> Vec<BotSettings> {
        vec![
            BotSettings {
                name: BOT.into(),
                token: TOKEN.into(),
                api_url: self.base.clone(),
            },
            BotSettings {
                name: OTHER_BOT.into(),
                token: OTHER_TOKEN.into(),
                // A trailing slash, as an operator might write it.
                api_url: format!("{}/", self.base),
            },
        ]
    }
}

/// A realistic `Message` of the bot in `chat_id`, with what `method` sends.
pub(crate) fn sent_message(method: &str, message_id: i64, chat_id: i64, params: &Value) -> Value {
    let chat = if chat_id > 0 {
        json!({"id": chat_id, "type": "private", "first_name": "Ada", "username": "ada"})
    } else {
        json!({"id": chat_id, "type": "supergroup", "title": "Support group"})
    };
    let mut message = json!({
        "message_id": message_id,
        "from": {
            "id": BOT_USER_ID,
            "is_bot": true,
            "first_name": "Switchboard",
            "username": "switchboard_bot"
        },
        "chat": chat,
        "date": 1_700_000_000,
    });
    let file = |extra: Value| {
        let mut file = json!({"file_id": "BQACAgIAAxkDAAIBZ2", "file_unique_id": "AgADZ2"});
        file.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        file
    };
    let fields = match method {
        "SendMessage" => json!({"text": params["text"]}),
        "SendPhoto" => json!({"photo": [
            file(json!({"file_size": 1021, "width": 90, "height": 60})),
            file(json!({"file_size": 40583, "width": 800, "height": 533})),
        ]}),
        "SendVoice" => {
            json!({"voice": file(json!({"duration": 3, "mime_type": "audio/ogg", "file_size": 9381}))})
        }
        "SendAudio" => json!({"audio": file(
            json!({"duration": 184, "mime_type": "audio/mpeg", "file_size": 2946532, "title": "Song"})
        )}),
        "SendVideo" => json!({"video": file(
            json!({"width": 1280, "height": 720, "duration": 12, "mime_type": "video/mp4", "file_size": 1842335})
        )}),
        "SendSticker" => json!({"sticker": file(json!({
            "type": "regular", "width": 512, "height": 512,
            "is_animated": false, "is_video": false, "file_size": 22142
        }))}),
        "SendDocument" => json!({"document": file(
            json!({"file_name": "report.pdf", "mime_type": "application/pdf", "file_size": 10231})
        )}),
        other => panic!("no message for {other}"),
    };
    message
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    if let Some(caption) = params.get("caption") {
        message["caption"] = caption.clone();
    }
    if let Some(markup) = params.get("reply_markup") {
        message["reply_markup"] = markup.clone();
    }
    message
}

/// The answer Telegram gives a successful call when the test queued none.
fn default_reply(method: &str, params: &Value, number: usize) -> Reply {
    match method {
        "GetMe" => Reply::ok(json!({
            "id": BOT_USER_ID,
            "is_bot": true,
            "first_name": "Switchboard",
            "username": "switchboard_bot",
            "can_join_groups": true,
            "can_read_all_group_messages": false,
            "supports_inline_queries": false,
            "can_connect_to_business": false,
            "has_main_web_app": false
        })),
        "GetUpdates" => Reply::ok(json!([])),
        "GetFile" => Reply::ok(json!({
            "file_id": params["file_id"],
            "file_unique_id": "AgADZ2",
            "file_size": 3,
            "file_path": "documents/file_7.pdf"
        })),
        method if method.starts_with("Send") && method != "SendChatAction" => {
            let chat_id = params["chat_id"].as_i64().expect("a numeric chat_id");
            Reply::ok(sent_message(method, 100 + number as i64, chat_id, params))
        }
        _ => Reply::ok(json!(true)),
    }
}

async fn answer(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap().to_owned());
    let params = parameters(content_type.as_deref(), &body);
    let recorded = Recorded {
        method,
        path: uri.path().to_owned(),
        content_type,
        params: params.clone(),
        at: Instant::now(),
    };
    let api_method = recorded.api_method().to_owned();
    let is_file = recorded.path.starts_with("/file/");
    let number = {
        let mut requests = shared.requests.lock().unwrap();
        requests.push(recorded);
        requests.len()
    };
    let for_method = shared
        .method_replies
        .lock()
        .unwrap()
        .get_mut(&api_method)
        .and_then(VecDeque::pop_front);
    let queued = for_method.or_else(|| shared.replies.lock().unwrap().pop_front());
    if queued.is_none() && api_method == "GetUpdates" {
        // A long poll without updates takes a while; answering at once would make a poller
        // spin.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = queued.unwrap_or_else(|| {
        if is_file {
            Reply::raw(200, "application/octet-stream", "abc")
        } else {
            default_reply(&api_method, &params, number)
        }
    });
    Response::builder()
        .status(reply.status)
        .header(header::CONTENT_TYPE, reply.content_type)
        .body(Body::from(reply.body))
        .unwrap()
}

/// The parameters of a request body.
fn parameters(content_type: Option<&str>, body: &[u8]) -> Value {
    match content_type {
        _ if body.is_empty() => Value::Null,
        Some(ct) if ct.starts_with("application/json") => serde_json::from_slice(body).unwrap(),
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
        .unwrap()
        .trim_matches('"');
    let body = String::from_utf8(body.to_vec()).unwrap();
    let mut fields = Map::new();
    for part in body.split(&format!("--{boundary}")) {
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        if part.is_empty() || part.starts_with("--") {
            continue;
        }
        let (headers, value) = part.split_once("\r\n\r\n").unwrap();
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let name = headers
            .split("name=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
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
