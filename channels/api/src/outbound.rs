//! Replies go back to an integration as signed JSON callbacks to its `callback_url`.
//!
//! The gateway stores a reply first and hands it to [`ApiSender`] from a background job, one
//! part at a time (each file, then the text), retrying a part later when this module says the
//! failure is transient. So a callback may arrive more than once; every callback carries a
//! `delivery` id (also in `X-Switchboard-Delivery`) that is the same on each of its retries, for
//! the integration to recognise a repeat. Which failures are transient mirrors what a retry can
//! change: an integration that is down, overloaded or slow (5xx, 429, 408, timeouts, refused
//! connections) may answer later; one that refuses the request (any other 4xx) will refuse it
//! again.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{StatusCode, header::RETRY_AFTER};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchboard_channel::{
    OutboundContent, OutboundMessage, SendError, Sender, Sent, TypingTarget, error_chain,
};

use crate::{
    config::{Integration, Integrations},
    inbound::{MAX_ID_CHARS, scoped, unscoped},
    signature::{DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign},
};

/// How much of an answer is read: an id, or an error an integration explains itself with.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How many characters of an error answer end up in the failure's reason.
const EXCERPT_CHARS: usize = 200;

/// Sends replies and typing indicators to the integrations' callback URLs. The account of a
/// message is the integration's name.
pub(crate) struct ApiSender {
    integrations: Arc<Integrations>,
    http: reqwest::Client,
}

impl ApiSender {
    pub(crate) fn new(integrations: Arc<Integrations>, http: reqwest::Client) -> Self {
        Self { integrations, http }
    }

    fn integration(&self, account: &str) -> Result<&Integration, SendError> {
        self.integrations.get(account).ok_or_else(|| {
            SendError::permanent(
                "unknown_integration",
                format!("no API integration named {account:?} is configured"),
            )
        })
    }

    /// Signs and posts one callback; a non-2xx answer becomes the classified error.
    async fn post(
        &self,
        integration: &Integration,
        body: Vec<u8>,
        delivery: Option<&str>,
    ) -> Result<reqwest::Response, SendError> {
        let timestamp = Utc::now().timestamp();
        let signature = sign(integration.secret.expose(), timestamp, &body);
        let mut request = self
            .http
            .post(integration.callback_url.clone())
            .timeout(integration.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature);
        if let Some(delivery) = delivery {
            request = request.header(DELIVERY_HEADER, delivery);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| request_failed(&integration.name, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        let answer = read_limited(response).await.unwrap_or_default();
        let error = classify(status, retry_after, &answer);
        tracing::warn!(
            integration = %integration.name,
            status = status.as_u16(),
            %error,
            "an API integration refused a callback"
        );
        Err(error)
    }
}

#[async_trait]
impl Sender for ApiSender {
    async fn send(&self, message: &OutboundMessage) -> Result<Sent, SendError> {
        let integration = self.integration(&message.account)?;
        let to = unscoped(&integration.name, &message.to).ok_or_else(|| {
            SendError::permanent(
                "invalid_recipient",
                format!(
                    "the recipient is not a user of the API integration {:?}",
                    integration.name
                ),
            )
        })?;
        let delivery = delivery_id(message);
        let body = message_body(message, to, &delivery);
        let response = self
            .post(integration, body.to_string().into_bytes(), Some(&delivery))
            .await?;
        // The callback was taken: whatever the answer says, the message is not sent again.
        let theirs = match read_limited(response).await {
            Ok(answer) => answered_id(&answer),
            Err(e) => {
                tracing::warn!(integration = %integration.name, reason = %error_chain(&e), "could not read an API integration's answer; using the delivery id");
                None
            }
        };
        Ok(Sent {
            provider_message_id: scoped(&integration.name, theirs.as_deref().unwrap_or(&delivery)),
            substituted: None,
        })
    }

    /// Texts are never split: an integration takes any length, and one text per message keeps
    /// `delivery` equal to the message's id for it.
    fn text_limit(&self) -> Option<(usize, switchboard_channel::text::Measure)> {
        None
    }

    async fn typing(&self, target: &TypingTarget) -> Result<(), SendError> {
        let integration = self.integration(&target.account)?;
        if !integration.typing {
            return Ok(());
        }
        let Some(to) = unscoped(&integration.name, &target.to) else {
            return Ok(());
        };
        let reply_to = target
            .message_provider_id
            .as_deref()
            .and_then(|id| unscoped(&integration.name, id));
        let body = json!({"type": "typing", "to": to, "reply_to": reply_to});
        self.post(integration, body.to_string().into_bytes(), None)
            .await
            .map(drop)
    }

    /// The thread's token is the `conversation` of a callback, which the integration names to
    /// continue the conversation.
    fn wants_thread(&self) -> bool {
        true
    }
}

/// The id of one callback, the same on each of its retries: the message's id for its text (a
/// message has one text part, since texts are never split), and the message's id with a digest
/// of the file for each file sent ahead of it.
pub(crate) fn delivery_id(message: &OutboundMessage) -> String {
    match &message.content {
        OutboundContent::Media { attachment, .. } => {
            let described = serde_json::to_vec(attachment).unwrap_or_default();
            let digest = Sha256::digest(&described);
            format!("{}.file-{}", message.message_id, hex::encode(&digest[..6]))
        }
        OutboundContent::Text { .. }
        | OutboundContent::Choices { .. }
        | OutboundContent::Template { .. } => message.message_id.clone(),
    }
}

/// The callback of a message part: `text`, `attachments` and `choices` are always there (empty
/// when the part has none), `template` only for a template.
pub(crate) fn message_body(message: &OutboundMessage, to: &str, delivery: &str) -> Value {
    let conversation = message.thread.as_ref().map(|thread| thread.token.as_str());
    let reply_to = message
        .reply_to
        .as_deref()
        .and_then(|id| unscoped(&message.account, id));
    let mut body = json!({
        "type": "message",
        "id": message.message_id,
        "delivery": delivery,
        "conversation": conversation,
        "to": to,
        "reply_to": reply_to,
        "text": "",
        "attachments": [],
        "choices": [],
    });
    match &message.content {
        OutboundContent::Text { body: text } => body["text"] = json!(text),
        OutboundContent::Media {
            attachment,
            caption,
        } => {
            body["text"] = json!(caption.as_deref().unwrap_or_default());
            body["attachments"] = json!([{
                "kind": attachment.kind,
                "url": attachment.source,
                "mime_type": attachment.mime_type,
                "filename": attachment.filename,
                "size": attachment.size,
            }]);
        }
        OutboundContent::Choices {
            body: text,
            choices,
        } => {
            body["text"] = json!(text);
            body["choices"] = json!(choices);
        }
        OutboundContent::Template {
            name,
            language,
            components,
        } => {
            body["template"] = json!({
                "name": name,
                "language": language,
                "components": components,
            });
        }
    }
    body
}

/// The integration's id for the message, when its answer gives one: `{"id": "…"}` (a string or
/// a whole number), not blank, not longer than the ids it may send.
pub(crate) fn answered_id(answer: &[u8]) -> Option<String> {
    let answer: Value = serde_json::from_slice(answer).ok()?;
    let id = match answer.get("id")? {
        Value::String(id) => id.trim().to_owned(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => return None,
    };
    (!id.is_empty() && id.chars().count() <= MAX_ID_CHARS).then_some(id)
}

/// A non-2xx answer as the gateway sees it: rate limits, server errors and request timeouts
/// are retried (honouring `Retry-After`); any other answer refuses the message for good, with
/// the status as its code.
pub(crate) fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    answer: &[u8],
) -> SendError {
    let text = String::from_utf8_lossy(answer);
    let text = text.trim();
    let reason = if text.is_empty() {
        format!("HTTP {status}")
    } else {
        let excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
        format!("HTTP {status}: {excerpt}")
    };
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        SendError::Transient {
            retry_after,
            reason,
        }
    } else {
        SendError::permanent(status.as_u16().to_string(), reason)
    }
}

/// A callback that got no answer. Connection trouble and timeouts may pass; a request that
/// cannot even be built will not.
fn request_failed(integration: &str, err: reqwest::Error) -> SendError {
    // The callback URL may carry the integration's token: it stays out of logs and reasons.
    let timed_out = err.is_timeout();
    let unbuildable = err.is_builder();
    let reason = error_chain(&err.without_url());
    let error = if unbuildable {
        SendError::permanent(
            "invalid_request",
            format!("cannot build the callback: {reason}"),
        )
    } else if timed_out {
        SendError::transient(format!("the integration did not answer in time: {reason}"))
    } else {
        SendError::transient(format!("the integration could not be reached: {reason}"))
    };
    tracing::warn!(integration, %error, "an API callback failed");
    error
}

/// `Retry-After` as seconds, or as an HTTP date (the wait until then; none when it has passed).
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&Utc) - now).to_std().ok()
}

/// Reads at most [`MAX_ANSWER_BYTES`] of an answer, so a huge error page cannot exhaust memory.
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_ANSWER_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use switchboard_channel::{Attachment, Choice, MediaKind, Thread};

    use super::*;

    fn message(content: OutboundContent) -> OutboundMessage {
        OutboundMessage {
            message_id: "msg-1".into(),
            account: "crm".into(),
            to: "crm:42".into(),
            reply_to: Some("crm:their-7".into()),
            content,
            service_window_open: true,
            thread: Some(Thread {
                token: "tok-1".into(),
                ..Thread::default()
            }),
        }
    }

    fn attachment(source: &str) -> Attachment {
        Attachment {
            kind: MediaKind::Image,
            source: source.into(),
            mime_type: Some("image/png".into()),
            filename: Some("chart.png".into()),
            size: Some(1234),
            sha256: None,
            media_id: None,
        }
    }

    #[test]
    fn every_content_maps_onto_the_callback() {
        let text = message(OutboundContent::Text {
            body: "Hello".into(),
        });
        assert_eq!(
            message_body(&text, "42", "msg-1"),
            json!({
                "type": "message", "id": "msg-1", "delivery": "msg-1", "conversation": "tok-1",
                "to": "42", "reply_to": "their-7", "text": "Hello", "attachments": [], "choices": []
            })
        );
        let media = message(OutboundContent::Media {
            attachment: attachment("https://files.example.com/chart.png"),
            caption: Some("The chart".into()),
        });
        let body = message_body(&media, "42", "d");
        assert_eq!(body["text"], "The chart");
        assert_eq!(
            body["attachments"],
            json!([{"kind": "image", "url": "https://files.example.com/chart.png",
                "mime_type": "image/png", "filename": "chart.png", "size": 1234}])
        );
        let choices = message(OutboundContent::Choices {
            body: "Shall we?".into(),
            choices: vec![Choice {
                id: "yes".into(),
                title: "Yes".into(),
            }],
        });
        let body = message_body(&choices, "42", "d");
        assert_eq!(body["text"], "Shall we?");
        assert_eq!(body["choices"], json!([{"id": "yes", "title": "Yes"}]));
        let template = message(OutboundContent::Template {
            name: "follow_up".into(),
            language: "en".into(),
            components: json!([]),
        });
        let body = message_body(&template, "42", "d");
        assert_eq!(body["text"], "");
        assert_eq!(
            body["template"],
            json!({"name": "follow_up", "language": "en", "components": []})
        );

        let mut bare = text.clone();
        bare.thread = None;
        bare.reply_to = Some("sms:other".into());
        let body = message_body(&bare, "42", "msg-1");
        assert_eq!(body["conversation"], Value::Null);
        assert_eq!(body["reply_to"], Value::Null);
    }

    #[test]
    fn each_part_has_its_own_delivery_id_and_keeps_it() {
        let text = message(OutboundContent::Text { body: "Hi".into() });
        assert_eq!(delivery_id(&text), "msg-1");
        let file = |source| {
            message(OutboundContent::Media {
                attachment: attachment(source),
                caption: None,
            })
        };
        let first = delivery_id(&file("https://x/1.png"));
        assert!(first.starts_with("msg-1.file-"), "{first}");
        assert_eq!(first.len(), "msg-1.file-".len() + 12);
        assert_eq!(first, delivery_id(&file("https://x/1.png")));
        assert_ne!(first, delivery_id(&file("https://x/2.png")));
    }

    #[test]
    fn answers_may_name_the_message() {
        assert_eq!(answered_id(br#"{"id": "abc"}"#).as_deref(), Some("abc"));
        assert_eq!(answered_id(br#"{"id": 17}"#).as_deref(), Some("17"));
        assert_eq!(answered_id(br#"{"id": " "}"#), None);
        assert_eq!(answered_id(br#"{"id": 1.5}"#), None);
        assert_eq!(answered_id(br#"{"ok": true}"#), None);
        assert_eq!(answered_id(b"OK"), None);
        assert_eq!(answered_id(b""), None);
        let long = format!(r#"{{"id": "{}"}}"#, "x".repeat(MAX_ID_CHARS + 1));
        assert_eq!(answered_id(long.as_bytes()), None);
    }

    #[test]
    fn failures_are_classified_by_status() {
        let transient = |status: u16| {
            matches!(
                classify(StatusCode::from_u16(status).unwrap(), None, b""),
                SendError::Transient { .. }
            )
        };
        for status in [500, 502, 503, 504, 429, 408] {
            assert!(transient(status), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 410, 422, 301, 302] {
            assert!(!transient(status), "{status}");
        }
        assert_eq!(
            classify(
                StatusCode::BAD_REQUEST,
                None,
                br#"{"error": "unknown user"}"#
            ),
            SendError::permanent("400", r#"HTTP 400 Bad Request: {"error": "unknown user"}"#)
        );
        assert_eq!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                Some(Duration::from_secs(7)),
                b""
            ),
            SendError::Transient {
                retry_after: Some(Duration::from_secs(7)),
                reason: "HTTP 429 Too Many Requests".into()
            }
        );
        let long = "x".repeat(1000);
        let SendError::Transient { reason, .. } =
            classify(StatusCode::BAD_GATEWAY, None, long.as_bytes())
        else {
            panic!()
        };
        assert_eq!(reason.len(), "HTTP 502 Bad Gateway: ".len() + EXCERPT_CHARS);
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            None
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
