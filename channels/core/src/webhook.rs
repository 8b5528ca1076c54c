//! Inbound webhooks, without an HTTP server: the gateway mounts every channel's [`Webhook`] at
//! `/webhooks/{channel}` and `/webhooks/{channel}/{*path}`, and a channel crate decides what its
//! requests must prove and what they carry.
//!
//! A request is looked at in two steps, so that nobody's body is read before it has to be:
//! [`Webhook::check`] sees the head alone (method, path, query, headers) and either answers at
//! once (a handshake, a missing signature, a wrong Basic password, a route that is off) or says
//! how the body may be read ([`BodyCheck`]); [`Webhook::receive`] gets the body and hands what
//! it carries to the gateway's [`Inbox`].

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use crate::{Inbox, InboxError, Ingested};

/// The head of a webhook request.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// The method.
    pub method: Method,
    /// The path below `/webhooks/{channel}`, without its leading `/`, percent-decoded: `""`,
    /// `mailgun`, a bot's name.
    pub path: String,
    /// The query string, undecoded.
    pub query: Option<String>,
    /// The headers.
    pub headers: HeaderMap,
}

impl WebhookRequest {
    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The decoded query parameters.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .as_deref()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default()
    }

    /// The `Content-Type` without parameters, lowercase.
    pub fn content_type(&self) -> String {
        self.header("content-type")
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }
}

/// How a request's body may be read, once its head passed [`Webhook::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyCheck {
    /// The head proved who sent it (a shared secret in a header, Basic auth): read up to
    /// `max_bytes`.
    Trusted {
        /// Largest body taken.
        max_bytes: usize,
    },
    /// The proof is inside the body (a signature over it): read up to `max_bytes` within the
    /// gateway's memory budget for unproven bodies.
    Unverified {
        /// Largest body taken.
        max_bytes: usize,
    },
    /// Nothing to read: answer this now (a subscription handshake).
    Answer(WebhookAnswer),
}

/// The answer to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAnswer {
    /// A JSON body, with 200.
    Json(serde_json::Value),
    /// A plain-text body, with 200 (a handshake's challenge).
    Text(String),
}

impl From<Ingested> for WebhookAnswer {
    fn from(ingested: Ingested) -> Self {
        WebhookAnswer::Json(ingested.summary())
    }
}

/// A refused or failed webhook request: answered with its status and a JSON error body
/// `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WebhookError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// A header the answer needs (`WWW-Authenticate` with a Basic-auth 401, `Retry-After`).
    pub header: Option<(&'static str, String)>,
}

impl WebhookError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        WebhookError {
            status,
            code,
            message: message.into(),
            header: None,
        }
    }

    /// 401: the request does not prove it comes from the provider.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 400: the body is not what the provider sends.
    pub fn invalid(reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_payload",
            reason.to_string(),
        )
    }

    /// 404: a route of the channel that is not configured.
    pub fn off(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "channel_not_configured",
            format!("the {what} channel is not configured on this gateway"),
        )
    }

    /// 404: no such route of the channel.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 405: the route takes other methods.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take this method",
        )
    }

    /// 413: the body is larger than the route takes.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than this route takes ({limit} bytes)"),
        )
    }

    /// 415: the body's type is not one the route reads.
    pub fn unsupported_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// The same error, answered with a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.header = Some((name, value.into()));
        self
    }
}

impl From<InboxError> for WebhookError {
    fn from(e: InboxError) -> Self {
        match e {
            InboxError::Replayed => WebhookError::new(
                StatusCode::NOT_ACCEPTABLE,
                "replayed",
                "this request was already received; its one-time token cannot be used again",
            ),
            InboxError::TooLarge { limit } => WebhookError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("a file is larger than the gateway keeps ({limit} bytes)"),
            ),
            InboxError::ConversationNotFound => WebhookError::not_found("conversation"),
            InboxError::ConversationClosed => WebhookError::new(
                StatusCode::CONFLICT,
                "conversation_closed",
                "this conversation is closed; start a new one",
            ),
            InboxError::Limited {
                reason,
                retry_after,
            } => WebhookError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", reason)
                .with_header("retry-after", retry_after.to_string()),
            // The gateway's own failure: the provider retries, and its retry is recognised.
            InboxError::Unavailable(_) => WebhookError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "something went wrong on our side; try again",
            ),
        }
    }
}

/// A channel's inbound webhooks.
#[async_trait]
pub trait Webhook: Send + Sync + 'static {
    /// Looks at the head of a request, before its body is read.
    fn check(&self, request: &WebhookRequest) -> Result<BodyCheck, WebhookError>;

    /// Handles a request whose head passed [`Webhook::check`], with its body (the gateway never
    /// calls it otherwise; a plug-in may check again).
    async fn receive(
        &self,
        request: WebhookRequest,
        body: Bytes,
        inbox: &dyn Inbox,
    ) -> Result<WebhookAnswer, WebhookError>;
}

/// Checks `Authorization: Basic` against a user and password, in constant time. A refusal asks
/// for Basic auth.
pub fn require_basic(
    request: &WebhookRequest,
    user: &str,
    password: &str,
) -> Result<(), WebhookError> {
    use base64::Engine;
    let given = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .unwrap_or_default();
    if crate::signature::secrets_match(&given, format!("{user}:{password}").as_bytes()) {
        return Ok(());
    }
    Err(WebhookError::unauthorized(
        "unauthenticated",
        "this webhook needs the configured Basic auth user and password",
    )
    .with_header("www-authenticate", "Basic realm=\"switchboard\""))
}
