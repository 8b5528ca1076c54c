//! A stored message's metadata: the facts the gateway itself writes and reads (what the user
//! asked for, when they wrote, the buttons offered, who answered, why a message went unanswered…)
//! as typed fields, and whatever a channel adds (a referral, a forwarded flag, the content's
//! details) as `extra`.
//!
//! It is stored as one JSON object, the shape it always had, so rows written by any version load:
//! a known key whose value does not fit its field is kept, unchanged, in `extra`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use switchboard_channel::Choice;

use super::conversations::Mode;

/// A message's metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageMeta {
    /// What the user explicitly asked for (a command: `start`, `handoff`).
    pub intent: Option<String>,
    /// When the provider says the user wrote it (a retried delivery arrives late).
    pub sent_at: Option<DateTime<Utc>>,
    /// The buttons offered with a reply.
    pub choices: Vec<Choice>,
    /// The name an expert wrote under (never their account's id).
    pub expert_name: Option<String>,
    /// Why the agent failed, when the fallback went instead (staff only).
    pub agent_error: Option<String>,
    /// Why an inbound message was stored but not answered (a flood, a mail loop).
    pub unanswered: Option<String>,
    /// The provider id of the message this one quotes.
    pub reply_to_provider_id: Option<String>,
    /// Which notice of the gateway this is (`rate_limited`).
    pub notice: Option<String>,
    /// For a change of owner: who answers from now on.
    pub mode: Option<Mode>,
    /// For a handoff: why.
    pub reason: Option<String>,
    /// What was sent instead of the text (a template outside the customer-service window).
    pub substituted: Option<String>,
    /// Attachments that could not be downloaded, by index, with the reason.
    pub media_errors: Map<String, Value>,
    /// Earlier versions of an edited message.
    pub edits: Vec<Value>,
    /// What kind of message the client says this is (web API's `message_type`).
    pub message_type: Option<String>,
    /// The client's own data about the message (web API's `metadata`), returned as given.
    pub client: Map<String, Value>,
    /// The agent the visitor chose to answer this message (web API's `agent`, a selectable
    /// one). Only the gateway sets it, from a checked choice: what a channel sends under this
    /// key is dropped (see `pipeline::ingest`).
    pub agent: Option<String>,
    /// What an AI reply used (tokens, cost, time). Staff see it; visitors do not.
    pub usage: Option<ReplyUsage>,
    /// The provider's raw stream events of an AI reply, when its agent keeps them
    /// (`keep_raw_events`). Staff only.
    pub raw_events: Vec<Value>,
    /// How many raw events were not kept (over the count or size bound).
    pub raw_events_dropped: Option<u64>,
    /// What channels add, and anything else.
    pub extra: Map<String, Value>,
}

/// What one AI reply used: who wrote it with which model, the tokens (as the provider reported
/// them, or estimated), what that cost by the agent's prices, and how long the reply took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyUsage {
    /// The agent (its name in the configuration).
    pub agent: String,
    /// The model, as the provider named it (built-in agents: their kind).
    pub model: String,
    /// Tokens of the prompt.
    pub tokens_in: u64,
    /// Tokens of the reply.
    pub tokens_out: u64,
    /// The provider reported no usage: the tokens are estimated from the text.
    pub estimated: bool,
    /// What the reply cost, in `currency`.
    pub cost: f64,
    /// The currency of `cost` (`quotas.currency`).
    pub currency: String,
    /// From the start of the agent call to the stored reply, in milliseconds.
    pub response_time_ms: u64,
}

/// Takes `key` out of `map` as a `T`; a value that does not fit stays in the map.
fn take<T: serde::de::DeserializeOwned>(map: &mut Map<String, Value>, key: &str) -> Option<T> {
    let value = map.remove(key)?;
    match serde_json::from_value(value.clone()) {
        Ok(typed) => Some(typed),
        Err(_) => {
            map.insert(key.to_owned(), value);
            None
        }
    }
}

impl MessageMeta {
    /// The metadata of a stored JSON object.
    pub fn from_map(mut map: Map<String, Value>) -> MessageMeta {
        MessageMeta {
            intent: take(&mut map, "intent"),
            sent_at: take(&mut map, "sent_at"),
            choices: take(&mut map, "choices").unwrap_or_default(),
            expert_name: take(&mut map, "expert_name"),
            agent_error: take(&mut map, "agent_error"),
            unanswered: take(&mut map, "unanswered"),
            reply_to_provider_id: take(&mut map, "reply_to_provider_id"),
            notice: take(&mut map, "notice"),
            mode: take(&mut map, "mode"),
            reason: take(&mut map, "reason"),
            substituted: take(&mut map, "substituted"),
            media_errors: take(&mut map, "media_errors").unwrap_or_default(),
            edits: take(&mut map, "edits").unwrap_or_default(),
            message_type: take(&mut map, "message_type"),
            client: take(&mut map, "client").unwrap_or_default(),
            agent: take(&mut map, "agent"),
            usage: take(&mut map, "usage"),
            raw_events: take(&mut map, "raw_events").unwrap_or_default(),
            raw_events_dropped: take(&mut map, "raw_events_dropped"),
            extra: map,
        }
    }

    /// The metadata as the JSON object it is stored as.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = self.extra.clone();
        let mut put = |key: &str, value: Value| {
            map.insert(key.to_owned(), value);
        };
        fn json<T: Serialize>(value: &T) -> Value {
            serde_json::to_value(value).unwrap_or(Value::Null)
        }
        if let Some(v) = &self.intent {
            put("intent", json(v));
        }
        if let Some(v) = &self.sent_at {
            put("sent_at", json(v));
        }
        if !self.choices.is_empty() {
            put("choices", json(&self.choices));
        }
        for (key, value) in [
            ("expert_name", &self.expert_name),
            ("agent_error", &self.agent_error),
            ("unanswered", &self.unanswered),
            ("reply_to_provider_id", &self.reply_to_provider_id),
            ("notice", &self.notice),
            ("reason", &self.reason),
            ("substituted", &self.substituted),
            ("message_type", &self.message_type),
            ("agent", &self.agent),
        ] {
            if let Some(value) = value {
                put(key, Value::String(value.clone()));
            }
        }
        if let Some(v) = &self.mode {
            put("mode", json(v));
        }
        if !self.media_errors.is_empty() {
            put("media_errors", Value::Object(self.media_errors.clone()));
        }
        if !self.edits.is_empty() {
            put("edits", Value::Array(self.edits.clone()));
        }
        if !self.client.is_empty() {
            put("client", Value::Object(self.client.clone()));
        }
        if let Some(v) = &self.usage {
            put("usage", json(v));
        }
        if !self.raw_events.is_empty() {
            put("raw_events", Value::Array(self.raw_events.clone()));
        }
        if let Some(v) = self.raw_events_dropped {
            put("raw_events_dropped", Value::from(v));
        }
        map
    }

    /// The metadata without what only staff may see: an AI reply's usage and raw events, and why
    /// the agent failed when the reply is the fallback (a model API's error can name the
    /// deployment's models, addresses or account).
    pub fn for_visitor(mut self) -> MessageMeta {
        self.usage = None;
        self.agent_error = None;
        self.raw_events = Vec::new();
        self.raw_events_dropped = None;
        self
    }

    /// The metadata as a JSON value, for binding.
    pub fn to_value(&self) -> Value {
        Value::Object(self.to_map())
    }
}

impl Serialize for MessageMeta {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MessageMeta {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<MessageMeta, D::Error> {
        Ok(MessageMeta::from_map(
            Option::<Map<String, Value>>::deserialize(deserializer)?.unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_objects_round_trip_and_odd_values_are_kept() {
        let stored = json!({
            "intent": "handoff",
            "sent_at": "2026-12-05T08:00:00.000001Z",
            "choices": [{"id": "a", "title": "A"}],
            "expert_name": "Ana",
            "mode": "expert",
            "referral": {"source": "ad"},
            "reason": 42
        });
        let meta: MessageMeta = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(meta.intent.as_deref(), Some("handoff"));
        assert_eq!(meta.choices.len(), 1);
        assert_eq!(meta.mode, Some(Mode::Expert));
        assert!(meta.sent_at.is_some());
        assert_eq!(meta.reason, None, "a value that does not fit is not lost…");
        assert_eq!(meta.extra["reason"], 42, "…it stays as it was");
        let back = serde_json::to_value(&meta).unwrap();
        assert_eq!(back["referral"], stored["referral"]);
        assert_eq!(back["expert_name"], "Ana");
        assert_eq!(back["choices"], stored["choices"]);
        assert!(
            serde_json::from_value::<MessageMeta>(json!(null)).unwrap() == MessageMeta::default()
        );
    }
}
