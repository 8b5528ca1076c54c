//! What an integration posts: its users' messages and what became of the gateway's replies,
//! read strictly (unknown fields, oversized values and oversized batches are refused with a
//! reason) and turned into normalized events.
//!
//! The ids an integration uses are its own, so two integrations may well both have a user `42`
//! and a message `1`. Every id is therefore stored prefixed with the integration's name
//! (`crm:42`): a message is recognised as a repeat only among the same integration's messages,
//! a user is a contact of one integration, and a status can only touch the messages the gateway
//! sent to the integration that reports it.

use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, Visitor, value::MapAccessDeserializer},
};
use serde_json::{Map, Value};
use switchboard_channel::{
    ContactRef, Content, ConversationRef, DeliveryStatus, InboundEvent, InboundMessage, Intent,
    ParseError, ProviderError, StatusUpdate,
};

/// The most messages, and the most statuses, one request may carry.
pub const MAX_ITEMS: usize = 100;

/// The longest id (of a message, a user, a conversation) and the longest name, in characters.
pub const MAX_ID_CHARS: usize = 200;

/// The longest text of a message, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// The largest `metadata` of a message, in bytes of JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The longest error code and error message of a failed status, in characters.
const MAX_ERROR_CODE_CHARS: usize = 100;
const MAX_ERROR_MESSAGE_CHARS: usize = 1000;

/// The key of a message's metadata under which the integration's own `metadata` is kept, apart
/// from what the gateway records there.
pub const METADATA_KEY: &str = "metadata";

/// What precedes the reason of every refusal.
const WHAT: &str = "invalid API request";

/// A request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default)]
    messages: Vec<Object<Message>>,
    #[serde(default)]
    statuses: Vec<Object<Status>>,
}

/// A user's message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    id: String,
    from: Object<From>,
    text: String,
    #[serde(default)]
    conversation: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// Its author.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct From {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

/// What became of a message the gateway sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Status {
    id: String,
    status: StatusName,
    #[serde(default)]
    error: Option<Object<StatusError>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StatusName {
    Delivered,
    Read,
    Failed,
}

/// Why a message failed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusError {
    #[serde(default)]
    code: Option<String>,
    message: String,
}

/// A JSON object read into `T`. Derived structs also take the positional array form
/// (`["m-1", …]`); a public protocol should not have two spellings, so only objects are taken.
#[derive(Debug)]
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Object)
    }
}

/// Reads a request body posted by `integration` into normalized events: its messages first, in
/// order, then its statuses.
pub fn parse(body: &[u8], integration: &str) -> Result<Vec<InboundEvent>, ParseError> {
    let Object(request): Object<Request> =
        serde_json::from_slice(body).map_err(|e| refuse(e.to_string()))?;
    if request.messages.len() > MAX_ITEMS {
        return Err(refuse(format!(
            "at most {MAX_ITEMS} messages per request, got {}",
            request.messages.len()
        )));
    }
    if request.statuses.len() > MAX_ITEMS {
        return Err(refuse(format!(
            "at most {MAX_ITEMS} statuses per request, got {}",
            request.statuses.len()
        )));
    }
    let mut events = Vec::with_capacity(request.messages.len() + request.statuses.len());
    for (index, Object(message)) in request.messages.into_iter().enumerate() {
        let event = message_event(message, integration)
            .map_err(|reason| refuse(format!("messages[{index}].{reason}")))?;
        events.push(event);
    }
    for (index, Object(status)) in request.statuses.into_iter().enumerate() {
        let event = status_event(status, integration)
            .map_err(|reason| refuse(format!("statuses[{index}].{reason}")))?;
        events.push(event);
    }
    Ok(events)
}

/// An id as stored: the integration's name, `:`, its id. Names never contain `:`, so the prefix
/// can be taken off again unambiguously.
pub(crate) fn scoped(integration: &str, id: &str) -> String {
    format!("{integration}:{id}")
}

/// The integration's own id within a stored one, when it is one of this integration's.
pub(crate) fn unscoped<'a>(integration: &str, id: &'a str) -> Option<&'a str> {
    id.strip_prefix(integration)?.strip_prefix(':')
}

fn message_event(message: Message, integration: &str) -> Result<InboundEvent, String> {
    let id = required(&message.id, "id")?;
    let user = required(&message.from.0.id, "from.id")?;
    let name = optional(message.from.0.name.as_deref(), "from.name", MAX_ID_CHARS)?;
    let conversation = optional(
        message.conversation.as_deref(),
        "conversation",
        MAX_ID_CHARS,
    )?;
    if message.text.trim().is_empty() {
        return Err("text must not be empty".into());
    }
    within(&message.text, "text", MAX_TEXT_CHARS)?;
    let mut metadata = Map::new();
    if let Some(theirs) = message.metadata {
        let size = serde_json::to_vec(&theirs).map_or(usize::MAX, |json| json.len());
        if size > MAX_METADATA_BYTES {
            return Err(format!(
                "metadata is larger than {MAX_METADATA_BYTES} bytes of JSON"
            ));
        }
        metadata.insert(METADATA_KEY.into(), Value::Object(theirs));
    }
    Ok(InboundEvent::Message(InboundMessage {
        provider_message_id: Some(scoped(integration, id)),
        sender_key: None,
        account: integration.to_owned(),
        from: ContactRef {
            external_id: scoped(integration, user),
            display_name: name.map(str::to_owned),
            username: None,
        },
        // A callback's `conversation` is the gateway's token for its conversation; the gateway
        // follows it only into the same user's conversations that are still open.
        conversation: match conversation {
            Some(token) => ConversationRef::Thread {
                token: Some(token.to_owned()),
                references: Vec::new(),
            },
            None => ConversationRef::Current,
        },
        sent_at: None,
        reply_to: None,
        intent: Intent::of_command(&message.text),
        content: Content::Text { body: message.text },
        subject: None,
        metadata,
        files: Vec::new(),
    }))
}

fn status_event(status: Status, integration: &str) -> Result<InboundEvent, String> {
    let id = required(&status.id, "id")?;
    let error = match (status.status, status.error) {
        (StatusName::Failed, Some(Object(error))) => {
            let code = optional(error.code.as_deref(), "error.code", MAX_ERROR_CODE_CHARS)?;
            within(&error.message, "error.message", MAX_ERROR_MESSAGE_CHARS)?;
            Some(ProviderError {
                code: code.unwrap_or("failed").to_owned(),
                title: error.message,
                detail: None,
            })
        }
        (StatusName::Failed, None) => None,
        (_, Some(_)) => return Err("error: only a failed status carries an error".into()),
        (_, None) => None,
    };
    Ok(InboundEvent::Status(StatusUpdate {
        provider_message_id: scoped(integration, id),
        status: match status.status {
            StatusName::Delivered => DeliveryStatus::Delivered,
            StatusName::Read => DeliveryStatus::Read,
            StatusName::Failed => DeliveryStatus::Failed,
        },
        at: None,
        error,
    }))
}

fn refuse(reason: String) -> ParseError {
    ParseError::new(WHAT, reason)
}

/// A required id: not blank, not too long.
fn required<'a>(value: &'a str, field: &str) -> Result<&'a str, String> {
    if value.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    within(value, field, MAX_ID_CHARS)?;
    Ok(value)
}

/// An optional value: blank reads as absent.
fn optional<'a>(
    value: Option<&'a str>,
    field: &str,
    max: usize,
) -> Result<Option<&'a str>, String> {
    match value.filter(|v| !v.trim().is_empty()) {
        Some(value) => within(value, field, max).map(|()| Some(value)),
        None => Ok(None),
    }
}

fn within(value: &str, field: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max {
        return Err(format!("{field} is longer than {max} characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_json(body: Value) -> Result<Vec<InboundEvent>, String> {
        parse(body.to_string().as_bytes(), "crm").map_err(|e| e.to_string())
    }

    fn message(text: &str) -> Value {
        json!({"id": "m1", "from": {"id": "u1"}, "text": text})
    }

    #[test]
    fn a_message_is_scoped_to_its_integration() {
        let events = parse_json(json!({"messages": [{
            "id": "m1",
            "from": {"id": "42", "name": "Ada"},
            "text": "Hello",
            "metadata": {"plan": "pro"}
        }]}))
        .unwrap();
        let [InboundEvent::Message(message)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(message.provider_message_id.as_deref(), Some("crm:m1"));
        assert_eq!(message.account, "crm");
        assert_eq!(message.from.external_id, "crm:42");
        assert_eq!(message.from.display_name.as_deref(), Some("Ada"));
        assert_eq!(message.conversation, ConversationRef::Current);
        assert_eq!(
            message.content,
            Content::Text {
                body: "Hello".into()
            }
        );
        assert_eq!(message.metadata["metadata"], json!({"plan": "pro"}));
        assert_eq!(message.intent, None);
        assert!(message.files.is_empty());
    }

    #[test]
    fn a_named_conversation_is_followed_by_its_token() {
        let mut body = message("more");
        body["conversation"] = json!("tok-123");
        let events = parse_json(json!({ "messages": [body] })).unwrap();
        let [InboundEvent::Message(message)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(
            message.conversation,
            ConversationRef::Thread {
                token: Some("tok-123".into()),
                references: vec![]
            }
        );
    }

    #[test]
    fn slash_human_asks_for_a_person() {
        let events = parse_json(json!({ "messages": [message("/human")] })).unwrap();
        let [InboundEvent::Message(message)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(message.intent, Some(Intent::Handoff));
    }

    #[test]
    fn statuses_name_messages_of_the_integration() {
        let events = parse_json(json!({"statuses": [
            {"id": "x1", "status": "delivered"},
            {"id": "x1", "status": "read"},
            {"id": "x2", "status": "failed", "error": {"code": "blocked", "message": "user blocked us"}},
            {"id": "x3", "status": "failed"}
        ]}))
        .unwrap();
        let statuses: Vec<&StatusUpdate> = events
            .iter()
            .map(|e| match e {
                InboundEvent::Status(s) => s,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(statuses[0].provider_message_id, "crm:x1");
        assert_eq!(statuses[0].status, DeliveryStatus::Delivered);
        assert_eq!(statuses[1].status, DeliveryStatus::Read);
        assert_eq!(statuses[2].status, DeliveryStatus::Failed);
        assert_eq!(
            statuses[2].error,
            Some(ProviderError {
                code: "blocked".into(),
                title: "user blocked us".into(),
                detail: None
            })
        );
        assert_eq!(statuses[3].error, None);
    }

    #[test]
    fn an_empty_request_has_no_events() {
        assert_eq!(parse_json(json!({})).unwrap(), vec![]);
        assert_eq!(
            parse_json(json!({"messages": [], "statuses": []})).unwrap(),
            vec![]
        );
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        let long = "x".repeat(MAX_ID_CHARS + 1);
        let too_many: Vec<Value> = (0..=MAX_ITEMS).map(|_| message("hi")).collect();
        let too_many_statuses: Vec<Value> = (0..=MAX_ITEMS)
            .map(|i| json!({"id": i.to_string(), "status": "read"}))
            .collect();
        let cases = [
            (
                json!({"messages": [{"id": "", "from": {"id": "u"}, "text": "hi"}]}),
                "invalid API request: messages[0].id must not be empty",
            ),
            (
                json!({"messages": [message("ok"), {"id": long, "from": {"id": "u"}, "text": "hi"}]}),
                "invalid API request: messages[1].id is longer than 200 characters",
            ),
            (
                json!({"messages": [{"id": "m", "from": {"id": " "}, "text": "hi"}]}),
                "invalid API request: messages[0].from.id must not be empty",
            ),
            (
                json!({"messages": [{"id": "m", "from": {"id": "u", "name": long}, "text": "hi"}]}),
                "invalid API request: messages[0].from.name is longer than 200 characters",
            ),
            (
                json!({"messages": [message(" \n")]}),
                "invalid API request: messages[0].text must not be empty",
            ),
            (
                json!({"messages": [message(&"é".repeat(MAX_TEXT_CHARS + 1))]}),
                "invalid API request: messages[0].text is longer than 4096 characters",
            ),
            (
                json!({"messages": [{"id": "m", "from": {"id": "u"}, "text": "hi", "conversation": long}]}),
                "invalid API request: messages[0].conversation is longer than 200 characters",
            ),
            (
                json!({"messages": [{"id": "m", "from": {"id": "u"}, "text": "hi",
                    "metadata": {"big": "x".repeat(MAX_METADATA_BYTES)}}]}),
                "invalid API request: messages[0].metadata is larger than 16384 bytes of JSON",
            ),
            (
                json!({ "messages": too_many }),
                "invalid API request: at most 100 messages per request, got 101",
            ),
            (
                json!({ "statuses": too_many_statuses }),
                "invalid API request: at most 100 statuses per request, got 101",
            ),
            (
                json!({"statuses": [{"id": "x", "status": "read", "error": {"message": "m"}}]}),
                "invalid API request: statuses[0].error: only a failed status carries an error",
            ),
            (
                json!({"statuses": [{"id": "x", "status": "failed", "error": {"message": "m".repeat(1001)}}]}),
                "invalid API request: statuses[0].error.message is longer than 1000 characters",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse_json(body.clone()).unwrap_err(), expected, "{body}");
        }
    }

    #[test]
    fn json_errors_say_where() {
        let unknown = parse_json(
            json!({"messages": [{"id": "m", "from": {"id": "u"}, "text": "hi", "txt": 1}]}),
        )
        .unwrap_err();
        assert!(
            unknown.starts_with("invalid API request: unknown field `txt`"),
            "{unknown}"
        );
        let status = parse_json(json!({"statuses": [{"id": "x", "status": "sent"}]})).unwrap_err();
        assert!(
            status
                .contains("unknown variant `sent`, expected one of `delivered`, `read`, `failed`"),
            "{status}"
        );
        let missing =
            parse_json(json!({"messages": [{"id": "m", "from": {"id": "u"}}]})).unwrap_err();
        assert!(missing.contains("missing field `text`"), "{missing}");
        let broken = parse(b"{\"messages\": [", "crm").unwrap_err().to_string();
        assert!(
            broken.starts_with("invalid API request: EOF while parsing"),
            "{broken}"
        );
        for positional in [
            &br#"[]"#[..],
            br#"{"messages": [["m", {"id": "u"}, "hi"]]}"#,
            br#"{"messages": [{"id": "m", "from": ["u"], "text": "hi"}]}"#,
            br#"{"statuses": [{"id": "x", "status": "failed", "error": ["c", "m"]}]}"#,
        ] {
            let err = parse(positional, "crm").unwrap_err().to_string();
            assert!(
                err.contains("invalid type: sequence, expected a JSON object at line 1"),
                "{err}"
            );
        }
    }

    #[test]
    fn stored_ids_come_apart_again() {
        assert_eq!(scoped("crm", "a:b"), "crm:a:b");
        assert_eq!(unscoped("crm", "crm:a:b"), Some("a:b"));
        assert_eq!(unscoped("crm", "crm2:a"), None);
        assert_eq!(unscoped("crm", "sms:a"), None);
    }
}
