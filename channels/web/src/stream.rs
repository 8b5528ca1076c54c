//! The payloads of `POST /v1/chat/stream`, one per server-sent event:
//!
//! ```text
//! data: {"content":"Hel","timestamp":"2026-11-21T10:00:00.120Z","is_final":false}
//! data: {"content":"lo!","timestamp":"2026-11-21T10:00:00.135Z","is_final":false}
//! data: {"content":"","timestamp":"…","is_final":true,"conversation_id":"…","message_id":"…","reply_id":"…","reply":{…},"mode":"ai"}
//! ```
//!
//! The final event carries the stored ids and the complete reply, which is authoritative: when an
//! agent fails halfway, the streamed pieces are replaced by the polite fallback the gateway stored.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// A piece of the reply as the agent produces it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Chunk<'a> {
    /// The new text, to append to what came before.
    pub content: &'a str,
    /// When the gateway produced the piece.
    #[serde(serialize_with = "rfc3339_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: DateTime<Utc>,
    /// Always `false`.
    pub is_final: bool,
}

impl<'a> Chunk<'a> {
    /// A non-final chunk.
    pub fn new(content: &'a str, timestamp: DateTime<Utc>) -> Self {
        Self {
            content,
            timestamp,
            is_final: false,
        }
    }
}

/// The last event of a stream.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Final<M: Serialize> {
    /// Always empty: the full text is in `reply`.
    pub content: &'static str,
    /// When the stream ended.
    #[serde(serialize_with = "rfc3339_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: DateTime<Utc>,
    /// Always `true`.
    pub is_final: bool,
    /// The conversation the message went to (new or continued).
    pub conversation_id: String,
    /// The stored id of the visitor's message.
    pub message_id: String,
    /// The stored id of the reply; `null` when nobody answered automatically (an expert owns the
    /// conversation, or the reply took longer than the gateway waits).
    pub reply_id: Option<String>,
    /// The stored reply.
    pub reply: Option<M>,
    /// Who answers the conversation now: `ai`, `expert` or `closed`.
    pub mode: String,
}

impl<M: Serialize> Final<M> {
    /// The final event.
    pub fn new(
        timestamp: DateTime<Utc>,
        conversation_id: String,
        message_id: String,
        reply: Option<(String, M)>,
        mode: String,
    ) -> Self {
        let (reply_id, reply) = match reply {
            Some((id, message)) => (Some(id), Some(message)),
            None => (None, None),
        };
        Self {
            content: "",
            timestamp,
            is_final: true,
            conversation_id,
            message_id,
            reply_id,
            reply,
            mode,
        }
    }
}

/// Formats a time as RFC 3339 in UTC with milliseconds, the format of every timestamp the gateway
/// shows.
pub fn rfc3339_millis<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn chunks_have_the_documented_shape() {
        let t = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        let json = serde_json::to_value(Chunk::new("Hel", t)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"content": "Hel", "timestamp": "2026-11-21T10:00:00.000Z", "is_final": false})
        );
        let last = Final::new(
            t,
            "c1".into(),
            "m1".into(),
            Some(("m2".into(), serde_json::json!({"content": "Hello"}))),
            "ai".into(),
        );
        let json = serde_json::to_value(last).unwrap();
        assert_eq!(json["is_final"], true);
        assert_eq!(json["reply_id"], "m2");
        assert_eq!(json["reply"]["content"], "Hello");
    }
}
