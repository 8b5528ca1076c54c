//! The generic HTTP API channel: any system that has users to talk to — a CRM, an app's
//! backend, an SMS bridge — brings their messages to Switchboard and takes the answers, over a
//! small signed JSON protocol (the model is Chatwoot's "API inbox").
//!
//! Each such system is an *integration* of the `[api]` section, with a name, a secret and a
//! callback URL. It posts its users' messages to `POST /webhooks/api/{name}`; the gateway posts
//! the answers to the callback URL. Both directions are signed the same way with the secret.
//!
//! ```toml
//! [api]
//! max_body_bytes = 262144            # largest request an integration may post (default 256 KiB)
//!
//! [[api.integrations]]
//! name = "crm"                       # letters, digits, _ and -
//! secret = "a long random string"    # both sides sign with it
//! callback_url = "https://crm.example.com/switchboard"
//! timeout = "10s"                    # longest time for one callback (default 10s)
//! typing = true                      # post typing callbacks (default true)
//! ```
//!
//! # Signing
//!
//! Every request, in either direction, carries two headers:
//!
//! - `X-Switchboard-Timestamp`: the time of signing, in seconds since the Unix epoch;
//! - `X-Switchboard-Signature`: `sha256=` and the lowercase hex HMAC-SHA256, keyed with the
//!   integration's secret, of the timestamp, a dot, and the exact body bytes:
//!   `"{timestamp}.{body}"`.
//!
//! A request whose timestamp is more than five minutes from the receiver's clock is refused, so
//! sign each request, and each retry, when it is sent. For example, with the secret `s3cret`, the
//! timestamp `1700000000` and the body `{"messages":[]}`, the signed bytes are
//! `1700000000.{"messages":[]}` and the signature is
//! `sha256=df3617487b5519b12822d571a5901cd590258119ff464489a9d2962b30904c4e` ([`sign`] computes
//! it, [`verify`] checks it):
//!
//! ```sh
//! body='{"messages":[{"id":"m-1","from":{"id":"42","name":"Ada"},"text":"Hello"}]}'
//! ts=$(date +%s)
//! sig=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')
//! curl https://gateway.example.com/webhooks/api/crm \
//!   -H 'Content-Type: application/json' \
//!   -H "X-Switchboard-Timestamp: $ts" \
//!   -H "X-Switchboard-Signature: sha256=$sig" \
//!   --data-raw "$body"
//! ```
//!
//! # Messages and statuses in: `POST /webhooks/api/{name}`
//!
//! ```json
//! {
//!   "messages": [
//!     {
//!       "id": "m-1",
//!       "from": {"id": "42", "name": "Ada Lovelace"},
//!       "text": "Hello, what are your opening hours?",
//!       "conversation": "<the conversation of a callback, to continue it>",
//!       "metadata": {"plan": "pro"}
//!     }
//!   ],
//!   "statuses": [
//!     {"id": "<the id of a callback>", "status": "delivered"},
//!     {"id": "<…>", "status": "failed", "error": {"code": "blocked", "message": "the user blocked us"}}
//!   ]
//! }
//! ```
//!
//! - `messages` (at most [`MAX_ITEMS`]): `id` is the integration's id of the message (required,
//!   at most 200 characters); `from.id` its user's id (required, at most 200), `from.name` the
//!   name to show (optional); `text` what they wrote (required, at most 4,096 characters; a text
//!   that is just `/human` asks for a person); `conversation` (optional) is the `conversation`
//!   of a callback, to continue that conversation while it is open and the same user's (a value
//!   that leads nowhere starts a new conversation); without it, the message goes to the user's
//!   current conversation with this integration (a new one when there is none); `metadata`
//!   (optional, a JSON object of at most 16 KiB) is kept with the message (under the key
//!   `metadata` of the stored message's metadata).
//! - `statuses` (at most [`MAX_ITEMS`]): what became of a callback. `id` is the id the
//!   integration answered the callback with, or the callback's `delivery` when it answered none;
//!   `status` is `delivered`, `read` or `failed`; `error` (`code` optional, `message`) only with
//!   `failed`. A status never moves a message back (a late `delivered` does not undo `read`).
//! - Either list may be missing or empty: `{}` is a fine way to try the signature.
//! - Unknown fields are refused. Ids are the integration's own: the gateway keeps them apart
//!   from other integrations' (a user `42` of the CRM is not a user `42` of the SMS bridge).
//!
//! The answer is `200` with `{"status": "ok", "events": n, "stored": n, "duplicates": n,
//! "statuses": n}` once everything is stored. Posting the same messages again is safe: a message
//! is stored once per id, and a repeat counts under `duplicates` — so an integration that is
//! unsure whether a request went through (a timeout, a 5xx) simply sends it again, freshly signed.
//! Errors are `{"error": {"code", "message"}}`:
//!
//! | status | code | why |
//! |---|---|---|
//! | 400 | `invalid_payload` | not JSON, an unknown field, a missing or too long value, too many items |
//! | 401 | `invalid_signature` | a header is missing or malformed, or the signature does not match |
//! | 401 | `stale_signature` | the signature matches, but the timestamp is more than 5 minutes off |
//! | 404 | `not_found` | no integration has this name |
//! | 405 | `method_not_allowed` | not a `POST` |
//! | 413 | `body_too_large` | the body is larger than `max_body_bytes` |
//! | 415 | `unsupported_media_type` | a `Content-Type` that is not JSON |
//! | 429 | `rate_limited` | the gateway's limits; retry after `Retry-After` seconds |
//! | 500 | `internal` | the gateway failed; nothing was stored, retry later |
//!
//! # Replies out: callbacks to `callback_url`
//!
//! The gateway posts each reply as JSON, signed as above, with `X-Switchboard-Delivery` naming
//! the callback:
//!
//! ```json
//! {
//!   "type": "message",
//!   "id": "<the gateway's message id>",
//!   "delivery": "<this callback's id>",
//!   "conversation": "<the conversation's token>",
//!   "to": "42",
//!   "reply_to": "m-1",
//!   "text": "We are open from 9 to 5.",
//!   "attachments": [{"kind": "image", "url": "https://…", "mime_type": "image/png", "filename": "map.png", "size": 1234}],
//!   "choices": [{"id": "yes", "title": "Yes, please"}]
//! }
//! ```
//!
//! `to` is the user's id as the integration gave it; `reply_to` the integration's id of the
//! message answered, when the answer should show as a reply to it (else `null`); `conversation`
//! the value to send back in `messages[].conversation` to continue this conversation; `text`,
//! `attachments` and `choices` are always there, empty when the part has none (a template,
//! which only WhatsApp knows, comes as `template: {name, language, components}`). A reply with
//! files comes as one callback per file, then one with its text; they share `id` and each has its
//! own `delivery` (the text's `delivery` is the message's `id`).
//!
//! While an answer is being written, the gateway posts `{"type": "typing", "to": "42",
//! "reply_to": "m-1"}` (signed, without `X-Switchboard-Delivery`; turn it off with
//! `typing = false`). Typing callbacks are best effort and never retried.
//!
//! The integration answers any 2xx, optionally with `{"id": "<its id for the message>"}`: that id
//! (else the callback's `delivery`) is what its statuses name. A callback that fails with a 5xx,
//! a 429 or a 408, times out or cannot connect is retried later by the gateway (after
//! `Retry-After`, in seconds or as a date, when given) with the same `id` and `delivery`, signed
//! anew — the integration recognises a repeat by its `delivery`. Any other answer (a 4xx, a
//! redirect) fails the message for good, with the HTTP status as its error code.
//!
//! # Testing
//!
//! With the `testing` feature, `testing::FakeIntegration` is a fake integration on 127.0.0.1
//! that records the callbacks it receives and answers them as a test tells it.

mod config;
mod inbound;
mod outbound;
mod replay;
mod signature;
#[cfg(feature = "testing")]
pub mod testing;
mod webhook;

use std::sync::Arc;

use switchboard_channel::{
    Channel, ChannelKind, ChannelPlugin, ConfigError, Sender,
    plugin::{Replay, ReplayRequest, parse_section, section_of},
    webhook::Webhook,
};

pub use config::{Config, DEFAULT_MAX_BODY_BYTES, IntegrationConfig};
pub use inbound::{
    MAX_ID_CHARS, MAX_ITEMS, MAX_METADATA_BYTES, MAX_TEXT_CHARS, METADATA_KEY, parse,
};
pub use signature::{
    DELIVERY_HEADER, MAX_CLOCK_SKEW, SIGNATURE_HEADER, TIMESTAMP_HEADER, is_fresh, sign, verify,
};
pub use switchboard_channel::signature::SignatureError;

use config::Integrations;
use outbound::ApiSender;
use webhook::ApiWebhook;

/// The channel: the name of its section (`[api]`), its webhook path and its conversations.
pub const CHANNEL: Channel = Channel::named("api");

/// The generic HTTP API channel, as the gateway registers it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiKind;

/// The entry point the gateway registers: `&switchboard_api::KIND`.
pub static KIND: ApiKind = ApiKind;

impl ApiKind {
    fn checked(&self, section: serde_json::Value) -> Result<Integrations, ConfigError> {
        parse_section::<Config>(CHANNEL, section)?.check()
    }
}

impl ChannelKind for ApiKind {
    fn channel(&self) -> Channel {
        CHANNEL
    }

    fn label(&self) -> &'static str {
        "API"
    }

    fn defaults(&self) -> serde_json::Value {
        section_of(&Config::default())
    }

    fn validate(&self, section: serde_json::Value) -> Result<(), ConfigError> {
        self.checked(section).map(drop)
    }

    fn build(
        &self,
        section: serde_json::Value,
    ) -> Result<Option<Arc<dyn ChannelPlugin>>, ConfigError> {
        let integrations = self.checked(section)?;
        if integrations.all.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(ApiPlugin::new(integrations)?)))
    }

    fn replay(
        &self,
        section: serde_json::Value,
        replay: &Replay<'_>,
    ) -> Result<ReplayRequest, String> {
        let integrations = self.checked(section).map_err(|e| e.to_string())?;
        replay::request(&integrations, replay)
    }
}

/// The running channel: one webhook and one sender for every integration.
struct ApiPlugin {
    sender: Arc<ApiSender>,
    webhook: Arc<ApiWebhook>,
}

impl ApiPlugin {
    fn new(integrations: Integrations) -> Result<Self, ConfigError> {
        // Callbacks are never redirected: a signed POST that followed a redirect could land
        // somewhere the operator never configured (and turn into a GET on the way).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ConfigError::new(
                    CHANNEL,
                    format!(
                        "cannot set up the HTTP client for callbacks: {}",
                        switchboard_channel::error_chain(&e)
                    ),
                )
            })?;
        let integrations = Arc::new(integrations);
        Ok(Self {
            sender: Arc::new(ApiSender::new(integrations.clone(), http)),
            webhook: Arc::new(ApiWebhook::new(integrations)),
        })
    }
}

impl ChannelPlugin for ApiPlugin {
    fn channel(&self) -> Channel {
        CHANNEL
    }

    fn sender(&self) -> Option<Arc<dyn Sender>> {
        Some(self.sender.clone())
    }

    fn webhook(&self) -> Option<Arc<dyn Webhook>> {
        Some(self.webhook.clone())
    }
}
