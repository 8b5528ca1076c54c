//! The WebSocket chat's frames: what a client may send, read strictly (a frame that cannot be
//! used gets an error frame with the same codes as the HTTP API, and the socket stays open), and
//! what the gateway sends, written from the same views of messages and conversations as the HTTP
//! answers and the event stream (a visitor never sees what is for staff only).

use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchboard_web::request::{ChatRequest, MAX_IDEMPOTENCY_KEY_LEN};

use crate::{
    http::{
        conversations::HandoffResponse,
        error::ApiError,
        follow::{Audience, Followed, visible},
    },
    ids::ConversationId,
    live::LiveEvent,
    store::messages::{Message, Role},
};

/// A frame from the client.
#[derive(Debug)]
pub(super) enum ClientFrame {
    /// `{"type":"message", "client_id"?, …}`: the body of `POST /v1/chat/messages`, and the
    /// client's id for it (a resend with the same id is stored once).
    Message {
        /// The client's id of the message.
        client_id: Option<String>,
        /// The message, as the HTTP API takes it.
        body: ChatRequest,
    },
    /// `{"type":"typing"}`: the visitor is typing. Accepted and not passed on (yet).
    Typing,
    /// `{"type":"resume","conversation_id","after_seq"}`: replay what came after `after_seq`, then
    /// follow the conversation live.
    Resume {
        /// The conversation.
        conversation_id: ConversationId,
        /// The last message the client has.
        after_seq: i64,
    },
    /// `{"type":"handoff","conversation_id","reason"?}`: ask for a person.
    Handoff {
        /// The conversation.
        conversation_id: ConversationId,
        /// Why.
        reason: Option<String>,
    },
    /// `{"type":"ping"}`: answered with `{"type":"pong"}`.
    Ping,
}

/// A frame that cannot be used, answered with an error frame.
#[derive(Debug)]
pub(super) struct FrameError {
    /// The code, as the HTTP API would answer.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// The client's id of the message the error is about.
    pub client_id: Option<String>,
}

impl FrameError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            client_id: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeFields {
    conversation_id: String,
    after_seq: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HandoffFields {
    conversation_id: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bare {}

/// Reads a text frame.
pub(super) fn parse(text: &str) -> Result<ClientFrame, FrameError> {
    let mut fields: Map<String, Value> = serde_json::from_str(text).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            FrameError::new(
                "invalid_request",
                "a frame is a JSON object with a \"type\"",
            )
        } else {
            FrameError::new("invalid_json", format!("the frame is not valid JSON: {e}"))
        }
    })?;
    let kind = match fields.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => {
            return Err(FrameError::new(
                "invalid_request",
                "a frame needs a \"type\": message, typing, resume, handoff or ping",
            ));
        }
    };
    match kind.as_str() {
        "message" => {
            let client_id = match fields.remove("client_id") {
                None | Some(Value::Null) => None,
                Some(Value::String(id)) if valid_client_id(&id) => Some(id),
                Some(_) => {
                    return Err(FrameError::new(
                        "invalid_client_id",
                        format!(
                            "client_id must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
                        ),
                    ));
                }
            };
            let body = fields_of::<ChatRequest>(Value::Object(fields)).map_err(|mut e| {
                e.client_id.clone_from(&client_id);
                e
            })?;
            Ok(ClientFrame::Message { client_id, body })
        }
        "typing" => {
            // A conversation may be named; nothing else.
            fields.remove("conversation_id");
            fields_of::<Bare>(Value::Object(fields))?;
            Ok(ClientFrame::Typing)
        }
        "resume" => {
            let fields = fields_of::<ResumeFields>(Value::Object(fields))?;
            if fields.after_seq < 0 {
                return Err(FrameError::new(
                    "invalid_request",
                    "after_seq must be 0 or more",
                ));
            }
            Ok(ClientFrame::Resume {
                conversation_id: conversation_id(&fields.conversation_id)?,
                after_seq: fields.after_seq,
            })
        }
        "handoff" => {
            let fields = fields_of::<HandoffFields>(Value::Object(fields))?;
            Ok(ClientFrame::Handoff {
                conversation_id: conversation_id(&fields.conversation_id)?,
                reason: fields.reason,
            })
        }
        "ping" => {
            fields_of::<Bare>(Value::Object(fields))?;
            Ok(ClientFrame::Ping)
        }
        other => Err(FrameError::new(
            "unknown_type",
            format!(
                "no frame type {:?}: message, typing, resume, handoff or ping",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// The frame's other fields as `T`: wrong types, missing or unknown fields are `invalid_request`.
fn fields_of<T: serde::de::DeserializeOwned>(fields: Value) -> Result<T, FrameError> {
    serde_json::from_value(fields).map_err(|e| FrameError::new("invalid_request", e.to_string()))
}

/// A conversation id as the HTTP API takes it: a UUID, compared in lowercase.
fn conversation_id(id: &str) -> Result<ConversationId, FrameError> {
    let hyphenated = id.len() == 36 && uuid::Uuid::try_parse(id).is_ok();
    if hyphenated {
        Ok(ConversationId::from(id.to_ascii_lowercase()))
    } else {
        Err(FrameError::new(
            "invalid_conversation_id",
            "conversation_id must be a conversation id (a UUID)",
        ))
    }
}

/// A `client_id` is what an `Idempotency-Key` may be.
fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && id.bytes().all(|b| b.is_ascii_graphic())
}

/// `{"type":"connected"}`, with the conversations followed from the start and the ping interval.
pub(super) fn connected(conversations: &[ConversationId], ping_interval_ms: u128) -> String {
    json!({
        "type": "connected",
        "conversations": conversations,
        "ping_interval_ms": ping_interval_ms,
    })
    .to_string()
}

/// `{"type":"ack"}`: the client's message is stored (`duplicate`: it was already).
pub(super) fn ack(client_id: Option<&str>, message: &Message, duplicate: bool) -> String {
    json!({
        "type": "ack",
        "client_id": client_id,
        "conversation_id": message.conversation_id,
        "message": message,
        "duplicate": duplicate,
    })
    .to_string()
}

/// `{"type":"error"}`, for a frame or a request that failed.
pub(super) fn error(error: &FrameError) -> String {
    let mut frame = json!({"type": "error", "code": error.code, "message": error.message});
    if let Some(id) = &error.client_id {
        frame["client_id"] = json!(id);
    }
    frame.to_string()
}

/// An API error as an error frame: its code and message, and when to try again (`retry_after`,
/// seconds) for a refusal over a limit.
pub(super) fn api_error(error: &ApiError, client_id: Option<&str>) -> String {
    let mut frame = json!({"type": "error", "code": error.code(), "message": error.message()});
    if let Some(id) = client_id {
        frame["client_id"] = json!(id);
    }
    if let Some(seconds) = error.retry_after() {
        frame["retry_after"] = json!(seconds);
    }
    frame.to_string()
}

/// `{"type":"pong"}`.
pub(super) fn pong() -> String {
    json!({"type": "pong"}).to_string()
}

/// A handoff's answer: `{"type":"update","conversation":…}` (the notice comes as a message).
pub(super) fn handed_off(handoff: &HandoffResponse) -> String {
    json!({
        "type": "update",
        "conversation_id": handoff.conversation.0.id,
        "conversation": handoff.conversation,
    })
    .to_string()
}

/// A followed event of `conversation_id` as a frame, as a visitor may see it; `None` for what a
/// socket does not carry (the end of an observer's history).
pub(super) fn followed(conversation_id: &ConversationId, followed: &Followed) -> Option<String> {
    let Followed::Event { event, .. } = followed else {
        return None;
    };
    let frame = match event.as_ref() {
        // Never followed: the follower reads the database instead.
        LiveEvent::Resync => return None,
        LiveEvent::Message(m) => {
            let mut frame = json!({
                "type": "message",
                "conversation_id": conversation_id,
                "message": visible(event, Audience::Visitor).as_ref(),
            });
            // How long the answer took is the visitor's business; what it used is not.
            if m.role == Role::Ai
                && let Some(usage) = &m.metadata.usage
            {
                frame["response_time_ms"] = json!(usage.response_time_ms);
            }
            frame
        }
        LiveEvent::Update(_) => json!({
            "type": "update",
            "conversation_id": conversation_id,
            "message": visible(event, Audience::Visitor).as_ref(),
        }),
        LiveEvent::Typing(progress) => json!({
            "type": "typing",
            "conversation_id": conversation_id,
            "reply_to": progress.reply_to,
            "reply_to_seq": progress.reply_to_seq,
        }),
        LiveEvent::Delta(delta) => json!({
            "type": "delta",
            "conversation_id": conversation_id,
            "reply_to": delta.reply_to,
            "reply_to_seq": delta.reply_to_seq,
            "index": delta.index,
            "content": delta.content,
        }),
    };
    Some(frame.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> &'static str {
        parse(text).unwrap_err().code
    }

    #[test]
    fn frames_are_read_strictly_with_the_http_apis_codes() {
        assert_eq!(code("{"), "invalid_json");
        assert_eq!(code("[1]"), "invalid_request");
        assert_eq!(code(r#"{"content":"hi"}"#), "invalid_request");
        assert_eq!(code(r#"{"type":"shout"}"#), "unknown_type");
        assert_eq!(code(r#"{"type":"ping","extra":1}"#), "invalid_request");
        assert_eq!(
            code(r#"{"type":"resume","conversation_id":"nope","after_seq":1}"#),
            "invalid_conversation_id"
        );
        assert_eq!(
            code(
                r#"{"type":"resume","conversation_id":"0193a0a0-0000-7000-8000-000000000000","after_seq":-1}"#
            ),
            "invalid_request"
        );
        assert_eq!(
            code(r#"{"type":"message","content":"hi","client_id":""}"#),
            "invalid_client_id"
        );
        let unknown =
            parse(r#"{"type":"message","content":"hi","client_id":"a","colour":1}"#).unwrap_err();
        assert_eq!(
            (unknown.code, unknown.client_id.as_deref()),
            ("invalid_request", Some("a")),
            "an error about a message names it"
        );
    }

    #[test]
    fn a_message_frame_is_the_http_body_with_a_client_id() {
        let frame =
            parse(r#"{"type":"message","client_id":"c-1","content":"hi","conversation_id":null}"#)
                .unwrap();
        let ClientFrame::Message { client_id, body } = frame else {
            panic!("a message frame");
        };
        assert_eq!(client_id.as_deref(), Some("c-1"));
        assert_eq!(body.content, "hi");
        assert!(matches!(
            parse(r#"{"type":"resume","conversation_id":"0193A0A0-0000-7000-8000-000000000000","after_seq":3}"#),
            Ok(ClientFrame::Resume { after_seq: 3, conversation_id }) if conversation_id == "0193a0a0-0000-7000-8000-000000000000"
        ));
        assert!(matches!(parse(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping)));
        assert!(matches!(
            parse(r#"{"type":"typing","conversation_id":"x"}"#),
            Ok(ClientFrame::Typing)
        ));
    }
}
