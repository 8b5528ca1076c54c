//! A fake Meta Graph API on 127.0.0.1 (the `testing` feature), for this crate's tests and the
//! gateway's end-to-end tests alike.
//!
//! It records every request and answers each one with, in this order:
//!
//! 1. a reply the test queued for whatever comes next ([`FakeGraph::reply`]: any status, headers
//!    and body, or a body that stalls);
//! 2. for a message send (`POST /{version}/{number}/messages` that is not a read receipt), how a
//!    test scripted the next sends ([`FakeGraph::fail_next`], [`FakeGraph::answer_next`]: 500,
//!    429 with `Retry-After`, 131047 outside the customer-service window, 190 for an expired
//!    token);
//! 3. what the API answers a successful call: an accepted message (`wamid.out.1`, `wamid.out.2`…
//!    in the order accepted), `{"success": true}` for a read receipt, and the media a test added
//!    ([`FakeGraph::add_media`]): its metadata at `GET /{version}/{media id}`, then its bytes at
//!    the URL the metadata names.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri, header},
    response::Response,
};
use serde_json::{Value, json};
pub use switchboard_channel::testing::Reply;
use switchboard_channel::testing::{FakeServer, Recorder, lock, sha256_hex};

use crate::{NumberSettings, Settings};

/// The default token of [`FakeGraph::settings`].
pub const DEFAULT_TOKEN: &str = "default-token";
/// A number with a token of its own in [`FakeGraph::settings`].
pub const OWN_NUMBER: &str = "222";
/// That number's token.
pub const OWN_TOKEN: &str = "own-token";
/// The API version of [`FakeGraph::settings`].
pub const API_VERSION: &str = "v21.0";

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The HTTP method.
    pub method: Method,
    /// The request path, without the query.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The JSON body; `Null` without one (a `GET`).
    pub body: Value,
}

impl Recorded {
    /// Whether this is a message send: a `POST` to `…/messages` that is not a read receipt.
    pub fn is_message(&self) -> bool {
        self.path.ends_with("/messages") && self.body.get("status").is_none()
    }

    /// Whether this is a read receipt (with a typing indicator).
    pub fn is_read_receipt(&self) -> bool {
        self.path.ends_with("/messages") && self.body["status"] == "read"
    }
}

/// How the fake answers a message send ([`FakeGraph::fail_next`]).
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

impl Failure {
    /// The answer.
    pub fn reply(&self) -> Reply {
        match self {
            Failure::ServerError => Reply::raw(500, "text/plain", "upstream trouble"),
            Failure::RateLimited(after) => {
                let reply = Reply::error(429, 130429, "(#130429) Rate limit hit");
                match after {
                    Some(after) => reply.header("retry-after", &after.to_string()),
                    None => reply,
                }
            }
            Failure::OutsideWindow => Reply::error(
                400,
                131047,
                "Re-engagement message: more than 24 hours have passed since the customer last replied",
            ),
            Failure::TokenExpired => Reply::error(
                401,
                190,
                "Error validating access token: Session has expired",
            ),
        }
    }
}

/// The Graph API's error answer, as a [`Reply`] constructor: `Reply::error(…)` (with this trait
/// in scope).
pub trait GraphReply {
    /// A Graph error: `{"error": {"message", "type", "code", "error_data": {"details"},
    /// "fbtrace_id"}}`, the details being `details of <code>`.
    fn error(status: u16, code: i64, message: &str) -> Reply;
}

impl GraphReply for Reply {
    fn error(status: u16, code: i64, message: &str) -> Reply {
        Reply::json(
            status,
            json!({"error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "error_data": {"details": format!("details of {code}")},
                "fbtrace_id": "AbCdEf"
            }}),
        )
    }
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
struct Script {
    replies: VecDeque<Reply>,
    /// How the next message sends are answered (`None`: accepted); afterwards, all are accepted.
    sends: VecDeque<Option<Failure>>,
    media: HashMap<String, FakeMedia>,
}

#[derive(Default)]
struct Shared {
    script: Mutex<Script>,
    /// Messages accepted so far.
    accepted: AtomicU64,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        lock(&self.script)
    }
}

/// The fake Graph API; stops when dropped.
pub struct FakeGraph {
    server: FakeServer,
    requests: Recorder<Recorded>,
    shared: Arc<Shared>,
}

impl FakeGraph {
    /// Starts the fake on a free port.
    pub async fn start() -> FakeGraph {
        let requests = Recorder::default();
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .fallback(answer)
            .with_state((requests.clone(), shared.clone()));
        FakeGraph {
            server: FakeServer::start(router).await,
            requests,
            shared,
        }
    }

    /// The base URL to configure as `whatsapp.api_base`: `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Settings pointing at the fake: a default token, and [`OWN_NUMBER`] with its own.
    pub fn settings(&self) -> Settings {
        settings_for(&self.base_url())
    }

    /// Queues the answer to the next request that has none yet, whatever it is.
    pub fn reply(&self, reply: Reply) {
        self.shared.script().replies.push_back(reply);
    }

    /// Makes the next message sends fail, in this order.
    pub fn fail_next(&self, failures: impl IntoIterator<Item = Failure>) {
        self.answer_next(failures.into_iter().map(Some));
    }

    /// Scripts how the next message sends are answered: `None` accepts, `Some` fails.
    pub fn answer_next(&self, answers: impl IntoIterator<Item = Option<Failure>>) {
        self.shared.script().sends.extend(answers);
    }

    /// Serves a file under a media id, with its true checksum.
    pub fn add_media(&self, id: &str, bytes: &[u8], mime_type: &str) -> FakeMedia {
        let media = FakeMedia {
            bytes: bytes.to_vec(),
            mime_type: mime_type.to_owned(),
            sha256: sha256_hex(bytes),
        };
        self.add_media_as(id, media.clone());
        media
    }

    /// Serves a file under a media id with the given metadata (which may lie).
    pub fn add_media_as(&self, id: &str, media: FakeMedia) {
        self.shared.script().media.insert(id.to_owned(), media);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.all()
    }

    /// The message sends so far (not read receipts), failed ones included.
    pub fn message_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_message)
            .collect()
    }

    /// The read receipts (with typing indicators) so far.
    pub fn read_receipts(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_read_receipt)
            .collect()
    }

    /// How many messages the fake accepted.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
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

    /// Waits until `done` holds, or panics with the requests seen.
    pub async fn wait(&self, done: impl Fn() -> bool, what: &str) {
        self.requests
            .wait_for("the fake Graph API", what, done)
            .await
    }
}

/// Settings pointing at `base`: [`API_VERSION`], [`DEFAULT_TOKEN`], and [`OWN_NUMBER`] with
/// [`OWN_TOKEN`].
pub fn settings_for(base: &str) -> Settings {
    Settings {
        api_base: base.to_owned(),
        api_version: API_VERSION.to_owned(),
        access_token: Some(DEFAULT_TOKEN.to_owned()),
        numbers: vec![NumberSettings {
            phone_number_id: OWN_NUMBER.to_owned(),
            access_token: Some(OWN_TOKEN.to_owned()),
            fallback_template: None,
        }],
        fallback_template: None,
        mark_read: true,
        timeout: Duration::from_secs(5),
    }
}

async fn answer(
    State((requests, shared)): State<(Recorder<Recorded>, Arc<Shared>)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        method,
        path: uri.path().to_owned(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    requests.record(recorded.clone());
    let queued = {
        let mut script = shared.script();
        script.replies.pop_front().or_else(|| {
            let failure = recorded
                .is_message()
                .then(|| script.sends.pop_front().flatten())
                .flatten();
            failure.map(|failure| failure.reply())
        })
    };
    let reply = match queued {
        Some(reply) => reply,
        None => default_reply(&shared, &recorded, &headers),
    };
    requests.changed();
    reply.into_response().await
}

/// What the API answers a successful request.
fn default_reply(shared: &Shared, request: &Recorded, headers: &HeaderMap) -> Reply {
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    let media = |id: &str| shared.script().media.get(id).cloned();
    match (segments.as_slice(), request.method.as_str()) {
        (_, "POST") if request.is_read_receipt() => Reply::json(200, json!({"success": true})),
        ([_, _, "messages"], "POST") => {
            let n = shared.accepted.fetch_add(1, Ordering::SeqCst) + 1;
            let to = &request.body["to"];
            Reply::json(
                200,
                json!({
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": format!("wamid.out.{n}")}]
                }),
            )
        }
        (["files", id], "GET") => match media(id) {
            Some(media) => Reply::raw(200, &media.mime_type, media.bytes),
            None => Reply::raw(404, "text/plain", "Not Found"),
        },
        ([_, id], "GET") => match media(id) {
            Some(media) => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|host| host.to_str().ok())
                    .unwrap_or("127.0.0.1");
                Reply::json(
                    200,
                    json!({
                        "messaging_product": "whatsapp",
                        "url": format!("http://{host}/files/{id}"),
                        "mime_type": media.mime_type,
                        "sha256": media.sha256,
                        "file_size": media.bytes.len().to_string(),
                        "id": id,
                    }),
                )
            }
            // The real API's answer to an unknown or expired media id.
            None => Reply::error(
                400,
                100,
                "Unsupported get request. Object with ID does not exist",
            ),
        },
        _ => Reply::raw(404, "text/plain", "Not Found"),
    }
}
