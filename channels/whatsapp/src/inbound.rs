//! Turning a WhatsApp Cloud API webhook body into normalized [`InboundEvent`]s.
//!
//! Meta batches: one POST may carry several entries (business accounts), each with several changes,
//! each with several messages and delivery statuses. Meta also retries a delivery until it gets a
//! `2xx`, for days. Two rules follow:
//!
//! - everything in a body is returned, in document order, so a batch is never half ingested;
//! - a body is refused ([`ParseError`], answered `400`) only when it is not a WhatsApp envelope at
//!   all or lacks what identifies a message (its `id`, its author). Anything merely unexpected
//!   inside a real message — a new message type, an odd field — still yields a message
//!   ([`Content::Unsupported`] at worst), because refusing it would make Meta retry a body that can
//!   never succeed and would lose everything else in the batch.
//!
//! The wire format is described by private serde structs that ignore unknown fields, so fields Meta
//! adds later do not break parsing.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use switchboard_channel::{
    Attachment, ContactRef, Content, ConversationRef, DeliveryStatus, InboundEvent, InboundMessage,
    InteractiveReply, Location, MediaKind, ParseError, ProviderError, Reaction, SharedContact,
    StatusUpdate,
};

/// The `object` of every WhatsApp Business Account webhook.
const OBJECT: &str = "whatsapp_business_account";

/// The only change `field` that carries messages and statuses; others (account updates, template
/// reviews…) are not conversations.
const MESSAGES_FIELD: &str = "messages";

/// What a body that is not a WhatsApp webhook is called in its [`ParseError`]: the gateway
/// answers it with `400` and a message such as
/// `not a WhatsApp Business Account webhook: missing entry`.
const NOT_WHATSAPP: &str = "not a WhatsApp Business Account webhook";

/// The error for a body that is not a webhook the gateway can ingest, because of `reason`.
fn invalid(reason: impl Into<String>) -> ParseError {
    ParseError::new(NOT_WHATSAPP, reason)
}

/// Parses a webhook body into every event it carries, in document order: entries in order, and
/// within each `messages` change its messages first, then its statuses.
///
/// Changes of other fields are skipped, as are statuses whose name the gateway does not know.
/// Call it only after [`verify_signature`](crate::verify_signature) accepted the body.
pub fn parse(body: &[u8]) -> Result<Vec<InboundEvent>, ParseError> {
    let envelope: Value =
        serde_json::from_slice(body).map_err(|err| invalid(format!("invalid JSON: {err}")))?;
    let Value::Object(mut envelope) = envelope else {
        return Err(invalid("the body is not a JSON object"));
    };
    match envelope.get("object") {
        Some(Value::String(object)) if object == OBJECT => {}
        Some(Value::String(object)) => {
            return Err(invalid(format!("object is {object:?}, not {OBJECT:?}")));
        }
        Some(_) => return Err(invalid("object is not a string")),
        None => return Err(invalid("missing object")),
    }
    let entries = match envelope.remove("entry") {
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(invalid("entry is not an array")),
        None => return Err(invalid("missing entry")),
    };

    let mut events = Vec::new();
    for (entry_index, entry) in entries.into_iter().enumerate() {
        let entry = Entry::deserialize(entry)
            .map_err(|err| invalid(format!("entry {entry_index}: {err}")))?;
        for (change_index, change) in entry.changes.into_iter().enumerate() {
            if change.field.as_deref() != Some(MESSAGES_FIELD) {
                continue;
            }
            let at = |what: String| {
                invalid(format!(
                    "entry {entry_index}, change {change_index}: {what}"
                ))
            };
            let value =
                ChangeValue::deserialize(change.value).map_err(|err| at(err.to_string()))?;
            value.collect_events(&mut events).map_err(at)?;
        }
    }
    Ok(events)
}

// ---------------------------------------------------------------------------------------------
// The wire format. Every field is optional or defaulted unless a real payload always has it, so
// that what is missing is reported by the normalization code in words rather than by serde.
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    field: Option<String>,
    /// Kept raw: its shape depends on `field`, and only `messages` values are read.
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize)]
struct ChangeValue {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    contacts: Vec<WireContact>,
    #[serde(default)]
    messages: Vec<WireMessage>,
    #[serde(default)]
    statuses: Vec<WireStatus>,
}

#[derive(Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    display_phone_number: Option<String>,
    #[serde(default)]
    phone_number_id: Option<String>,
}

/// A sender's profile, listed next to the messages.
#[derive(Deserialize)]
struct WireContact {
    #[serde(default)]
    wa_id: Option<String>,
    #[serde(default)]
    profile: Option<Profile>,
}

#[derive(Deserialize)]
struct Profile {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    from: Option<String>,
    /// Unix seconds; a string on the wire, a number in some hand-written payloads.
    #[serde(default)]
    timestamp: Option<Value>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    context: Option<WireContext>,
    /// Click-to-WhatsApp ad details, kept raw for whoever analyses campaigns.
    #[serde(default)]
    referral: Option<Value>,
    /// Why Meta could not render the message (type `unsupported`).
    #[serde(default)]
    errors: Vec<WireError>,
    /// Everything else, in particular the object named after `type` (`text`, `image`, …), read
    /// once the type is known.
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
struct WireContext {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    forwarded: bool,
    #[serde(default)]
    frequently_forwarded: bool,
    /// Present when the user asks about a catalog product.
    #[serde(default)]
    referred_product: Option<Value>,
}

#[derive(Deserialize)]
struct WireText {
    body: String,
}

/// The shared shape of image, audio, video, document and sticker objects.
#[derive(Deserialize)]
struct WireMedia {
    id: String,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    voice: bool,
    #[serde(default)]
    animated: Option<bool>,
}

#[derive(Deserialize)]
struct WireLocation {
    latitude: f64,
    longitude: f64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    address: Option<String>,
}

#[derive(Deserialize)]
struct WireSharedContact {
    #[serde(default)]
    name: Option<WireName>,
    #[serde(default)]
    phones: Vec<WirePhone>,
    #[serde(default)]
    emails: Vec<WireEmail>,
}

#[derive(Deserialize)]
struct WireName {
    #[serde(default)]
    formatted_name: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
}

#[derive(Deserialize)]
struct WirePhone {
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    wa_id: Option<String>,
}

#[derive(Deserialize)]
struct WireEmail {
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct WireInteractive {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    button_reply: Option<WireReply>,
    #[serde(default)]
    list_reply: Option<WireReply>,
}

#[derive(Deserialize)]
struct WireReply {
    id: String,
    title: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
struct WireButton {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    payload: Option<String>,
}

#[derive(Deserialize)]
struct WireReaction {
    message_id: String,
    #[serde(default)]
    emoji: Option<String>,
}

#[derive(Deserialize)]
struct WireSystem {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    wa_id: Option<String>,
    /// The name older API versions used for `wa_id`.
    #[serde(default)]
    new_wa_id: Option<String>,
}

#[derive(Deserialize)]
struct WireStatus {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    timestamp: Option<Value>,
    #[serde(default)]
    errors: Vec<WireError>,
}

#[derive(Deserialize)]
struct WireError {
    /// A number on the wire; kept loose so a string code does not fail the batch.
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    message: Option<String>,
    /// Where older API versions put the details.
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    error_data: Option<ErrorData>,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    details: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Normalization.
// ---------------------------------------------------------------------------------------------

impl ChangeValue {
    /// Appends this change's messages, then its statuses. Fails on the first message or status
    /// that lacks what identifies it.
    fn collect_events(self, events: &mut Vec<InboundEvent>) -> Result<(), String> {
        let Self {
            metadata,
            contacts,
            messages,
            statuses,
        } = self;
        for (index, message) in messages.into_iter().enumerate() {
            let message = message
                .normalize(&metadata, &contacts)
                .map_err(|what| format!("message {index}: {what}"))?;
            events.push(InboundEvent::Message(message));
        }
        for (index, status) in statuses.into_iter().enumerate() {
            if let Some(update) = status
                .normalize()
                .map_err(|what| format!("status {index}: {what}"))?
            {
                events.push(InboundEvent::Status(update));
            }
        }
        Ok(())
    }
}

impl WireMessage {
    fn normalize(
        mut self,
        metadata: &Metadata,
        contacts: &[WireContact],
    ) -> Result<InboundMessage, &'static str> {
        let id = non_empty(self.id.take()).ok_or("missing id")?;
        let from = non_empty(self.from.take()).ok_or("missing from")?;
        // The number the user wrote to is where the answer must come from.
        let account = non_empty(metadata.phone_number_id.clone())
            .ok_or("missing metadata.phone_number_id")?;
        let display_name = contacts
            .iter()
            .find(|contact| contact.wa_id.as_deref() == Some(from.as_str()))
            .and_then(|contact| contact.profile.as_ref())
            .and_then(|profile| non_empty(profile.name.clone()));

        let mut extra = Map::new();
        if let Some(kind) = &self.kind {
            extra.insert("whatsapp_type".into(), Value::String(kind.clone()));
        }
        if let Some(display) = &metadata.display_phone_number {
            extra.insert(
                "display_phone_number".into(),
                Value::String(display.clone()),
            );
        }
        let mut reply_to = None;
        if let Some(context) = self.context.take() {
            // A context may only flag a forward; then there is nothing replied to.
            reply_to = non_empty(context.id);
            if let Some(context_from) = context.from {
                extra.insert("context_from".into(), Value::String(context_from));
            }
            if context.forwarded {
                extra.insert("forwarded".into(), Value::Bool(true));
            }
            if context.frequently_forwarded {
                extra.insert("frequently_forwarded".into(), Value::Bool(true));
            }
            if let Some(product) = context.referred_product {
                extra.insert("referred_product".into(), product);
            }
        }
        if let Some(referral) = self.referral.take() {
            extra.insert("referral".into(), referral);
        }

        let sent_at = self.timestamp.as_ref().and_then(unix_time);
        let content = self.content(&mut extra);
        Ok(InboundMessage {
            provider_message_id: Some(id),
            sender_key: None,
            account,
            from: ContactRef {
                external_id: from,
                display_name,
                username: None,
            },
            conversation: ConversationRef::Current,
            sent_at,
            reply_to,
            subject: None,
            content,
            intent: None,
            metadata: extra,
            files: Vec::new(),
        })
    }

    /// The content of the message; never fails, so that no message is dropped.
    fn content(mut self, extra: &mut Map<String, Value>) -> Content {
        let Some(kind) = self.kind.take() else {
            return unsupported("whatsapp message without a type");
        };
        let object = self.rest.remove(&kind);
        let content = match kind.as_str() {
            "text" => decode::<WireText>(object).map(|text| Content::Text { body: text.body }),
            "image" => media(object, MediaKind::Image, extra),
            "video" => media(object, MediaKind::Video, extra),
            "document" => media(object, MediaKind::Document, extra),
            "sticker" => media(object, MediaKind::Sticker, extra),
            "audio" => media(object, MediaKind::Audio, extra),
            "location" => decode::<WireLocation>(object).map(|location| {
                Content::Location(Location {
                    latitude: location.latitude,
                    longitude: location.longitude,
                    name: non_empty(location.name),
                    address: non_empty(location.address),
                })
            }),
            "contacts" => decode::<Vec<WireSharedContact>>(object).map(|cards| Content::Contacts {
                contacts: cards.into_iter().map(shared_contact).collect(),
            }),
            "interactive" => object.and_then(|object| interactive(object, extra)),
            "button" => decode::<WireButton>(object).and_then(|button| {
                // The payload is the id we gave the quick reply; a template without payloads
                // only has the text to tell its buttons apart.
                let id = non_empty(button.payload).or_else(|| non_empty(button.text.clone()))?;
                let title = non_empty(button.text).unwrap_or_else(|| id.clone());
                Some(Content::Interactive(InteractiveReply {
                    id,
                    title,
                    description: None,
                }))
            }),
            "reaction" => decode::<WireReaction>(object).map(|reaction| {
                Content::Reaction(Reaction {
                    target_provider_message_id: reaction.message_id,
                    // An empty or absent emoji is how WhatsApp reports a removed reaction.
                    emoji: non_empty(reaction.emoji),
                })
            }),
            "system" => decode::<WireSystem>(object).map(|system| {
                if let Some(new_wa_id) = system.wa_id.or(system.new_wa_id) {
                    extra.insert("new_wa_id".into(), Value::String(new_wa_id));
                }
                Content::System {
                    event: system.kind.unwrap_or_else(|| "system".to_owned()),
                    text: system.body.unwrap_or_default(),
                }
            }),
            // "unknown" is what API versions before v12 called "unsupported".
            "unsupported" | "unknown" => Some(unsupported(
                self.errors
                    .into_iter()
                    .next()
                    .and_then(|error| {
                        error
                            .title
                            .or(error.error_data.and_then(|data| data.details))
                            .or(error.details)
                            .or(error.message)
                    })
                    .unwrap_or_else(|| "unsupported whatsapp message".to_owned()),
            )),
            other => {
                // Keep what the user sent (an order, say) so a person can still act on it.
                if let Some(object) = object {
                    extra.entry(other.to_owned()).or_insert(object);
                }
                Some(unsupported(format!("whatsapp message type {other}")))
            }
        };
        content.unwrap_or_else(|| {
            tracing::warn!(whatsapp_type = %kind, "malformed WhatsApp message kept as unsupported");
            unsupported(format!("malformed whatsapp {kind} message"))
        })
    }
}

/// A media message: one attachment, fetched later by its media id.
fn media(
    object: Option<Value>,
    kind: MediaKind,
    extra: &mut Map<String, Value>,
) -> Option<Content> {
    let media = decode::<WireMedia>(object)?;
    let kind = match kind {
        MediaKind::Audio if media.voice => MediaKind::Voice,
        kind => kind,
    };
    if let Some(animated) = media.animated {
        extra.insert("animated".into(), Value::Bool(animated));
    }
    Some(Content::Media {
        attachments: vec![Attachment {
            kind,
            source: media.id,
            mime_type: non_empty(media.mime_type),
            filename: non_empty(media.filename),
            size: None,
            sha256: non_empty(media.sha256),
            media_id: None,
        }],
        caption: non_empty(media.caption),
    })
}

/// A tap on a reply button or list entry. Other interactive replies (flows' `nfm_reply`…) carry
/// data the gateway cannot represent: they become unsupported, with the raw object kept.
fn interactive(object: Value, extra: &mut Map<String, Value>) -> Option<Content> {
    let parsed = WireInteractive::deserialize(&object).ok()?;
    let reply = match parsed.kind.as_str() {
        "button_reply" => parsed.button_reply.map(|reply| InteractiveReply {
            id: reply.id,
            title: reply.title,
            description: None,
        })?,
        "list_reply" => parsed.list_reply.map(|reply| InteractiveReply {
            id: reply.id,
            title: reply.title,
            description: non_empty(reply.description),
        })?,
        other => {
            let description = format!("interactive {other}");
            extra.insert("interactive".into(), object);
            return Some(unsupported(description));
        }
    };
    Some(Content::Interactive(reply))
}

fn shared_contact(card: WireSharedContact) -> SharedContact {
    let phones: Vec<String> = card
        .phones
        .into_iter()
        .filter_map(|phone| non_empty(phone.phone).or(non_empty(phone.wa_id)))
        .collect();
    let name = card
        .name
        .and_then(|name| {
            non_empty(name.formatted_name).or_else(|| {
                let parts: Vec<String> = [name.first_name, name.last_name]
                    .into_iter()
                    .filter_map(non_empty)
                    .collect();
                (!parts.is_empty()).then(|| parts.join(" "))
            })
        })
        // A card always has a name in the app; should one not, its number is the next best label.
        .or_else(|| phones.first().cloned())
        .unwrap_or_default();
    SharedContact {
        name,
        phones,
        emails: card
            .emails
            .into_iter()
            .filter_map(|email| non_empty(email.email))
            .collect(),
    }
}

impl WireStatus {
    /// The status update, or `None` for a status name the gateway has no use for.
    fn normalize(self) -> Result<Option<StatusUpdate>, &'static str> {
        let id = non_empty(self.id).ok_or("missing id")?;
        let name = self.status.ok_or("missing status")?;
        let status = match name.as_str() {
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            // A voice note played is a voice note read.
            "read" | "played" => DeliveryStatus::Read,
            "failed" => DeliveryStatus::Failed,
            // New or retired names ("deleted", …) must not make Meta retry the whole batch.
            other => {
                tracing::debug!(status = other, "skipping unknown WhatsApp status");
                return Ok(None);
            }
        };
        Ok(Some(StatusUpdate {
            provider_message_id: id,
            status,
            at: self.timestamp.as_ref().and_then(unix_time),
            error: self.errors.into_iter().next().map(provider_error),
        }))
    }
}

fn provider_error(error: WireError) -> ProviderError {
    let code = match error.code {
        Some(Value::Number(code)) => code.to_string(),
        Some(Value::String(code)) => code,
        _ => String::new(),
    };
    let detail = error
        .error_data
        .and_then(|data| data.details)
        .or(error.details)
        .or_else(|| error.message.clone());
    ProviderError {
        code,
        title: error.title.or(error.message).unwrap_or_default(),
        detail,
    }
}

/// Reads a type's object; `None` when it is absent or not the expected shape.
fn decode<T: DeserializeOwned>(object: Option<Value>) -> Option<T> {
    serde_json::from_value(object?).ok()
}

/// Unix seconds, as a string (what Meta sends) or a number.
fn unix_time(value: &Value) -> Option<DateTime<Utc>> {
    let seconds = match value {
        Value::String(text) => text.trim().parse::<i64>().ok()?,
        Value::Number(number) => number.as_i64()?,
        _ => return None,
    };
    DateTime::from_timestamp(seconds, 0)
}

fn unsupported(description: impl Into<String>) -> Content {
    Content::Unsupported {
        description: description.into(),
    }
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|text| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A one-change envelope around `value`'s messages or statuses.
    fn envelope(field: &str, value: Value) -> Vec<u8> {
        let mut value = value;
        if let Value::Object(map) = &mut value {
            map.insert("messaging_product".into(), json!("whatsapp"));
            map.insert(
                "metadata".into(),
                json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"}),
            );
        }
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": field, "value": value}]}]
        }))
        .unwrap()
    }

    fn one_message(message: Value) -> InboundMessage {
        let events = parse(&envelope("messages", json!({ "messages": [message] }))).unwrap();
        match events.as_slice() {
            [InboundEvent::Message(message)] => message.clone(),
            other => panic!("expected one message, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_numeric_timestamp() {
        let message = one_message(json!({
            "from": "16505551234", "id": "wamid.A", "timestamp": 1739321024,
            "type": "text", "text": {"body": "hello"}
        }));
        assert_eq!(message.sent_at, DateTime::from_timestamp(1_739_321_024, 0));
        assert_eq!(
            message.content,
            Content::Text {
                body: "hello".into()
            }
        );
    }

    #[test]
    fn an_unreadable_timestamp_leaves_sent_at_empty() {
        let message = one_message(json!({
            "from": "16505551234", "id": "wamid.A", "timestamp": "yesterday",
            "type": "text", "text": {"body": "hello"}
        }));
        assert_eq!(message.sent_at, None);
    }

    #[test]
    fn keeps_an_unknown_message_type_as_unsupported() {
        let message = one_message(json!({
            "from": "16505551234", "id": "wamid.A", "timestamp": "1739321024",
            "type": "order",
            "order": {"catalog_id": "3021", "product_items": [{"product_retailer_id": "sku-1", "quantity": 2}]}
        }));
        assert_eq!(
            message.content,
            Content::Unsupported {
                description: "whatsapp message type order".into()
            }
        );
        assert_eq!(message.metadata["whatsapp_type"], "order");
        assert_eq!(message.metadata["order"]["catalog_id"], "3021");
    }

    #[test]
    fn keeps_a_malformed_known_type_as_unsupported() {
        let message = one_message(json!({
            "from": "16505551234", "id": "wamid.A", "timestamp": "1739321024",
            "type": "location", "location": {"latitude": "north"}
        }));
        assert_eq!(
            message.content,
            Content::Unsupported {
                description: "malformed whatsapp location message".into()
            }
        );
    }

    #[test]
    fn keeps_an_unknown_interactive_type_raw() {
        let message = one_message(json!({
            "from": "16505551234", "id": "wamid.A", "timestamp": "1739321024",
            "type": "interactive",
            "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "response_json": "{}"}}
        }));
        assert_eq!(
            message.content,
            Content::Unsupported {
                description: "interactive nfm_reply".into()
            }
        );
        assert_eq!(message.metadata["interactive"]["nfm_reply"]["name"], "flow");
    }

    #[test]
    fn a_forward_only_context_is_not_a_reply() {
        let message = one_message(json!({
            "from": "16505551234", "id": "wamid.A", "timestamp": "1739321024",
            "context": {"frequently_forwarded": true},
            "type": "text", "text": {"body": "pass it on"}
        }));
        assert_eq!(message.reply_to, None);
        assert_eq!(message.metadata["frequently_forwarded"], true);
        assert!(!message.metadata.contains_key("forwarded"));
    }

    #[test]
    fn skips_an_unknown_status_but_keeps_the_rest() {
        let events = parse(&envelope(
            "messages",
            json!({"statuses": [
                {"id": "wamid.A", "status": "deleted", "timestamp": "1739321024", "recipient_id": "16505551234"},
                {"id": "wamid.A", "status": "played", "timestamp": "1739321030", "recipient_id": "16505551234"}
            ]}),
        ))
        .unwrap();
        assert_eq!(
            events,
            vec![InboundEvent::Status(StatusUpdate {
                provider_message_id: "wamid.A".into(),
                status: DeliveryStatus::Read,
                at: DateTime::from_timestamp(1_739_321_030, 0),
                error: None,
            })]
        );
    }

    #[test]
    fn skips_changes_of_other_fields() {
        let events = parse(&envelope(
            "account_update",
            json!({"phone_number": "15550783881", "event": "VERIFIED_ACCOUNT"}),
        ))
        .unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn ignores_value_level_errors() {
        let events = parse(&envelope(
            "messages",
            json!({"errors": [{"code": 131000, "title": "Something went wrong"}]}),
        ))
        .unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn refuses_invalid_json() {
        let error = parse(b"{\"object\": \"whatsapp_business_account\", \"entry\": [").unwrap_err();
        assert!(error.to_string().contains("invalid JSON"), "{error}");
        assert!(parse(b"").is_err());
        assert!(parse(b"[]").is_err());
    }

    #[test]
    fn refuses_other_envelopes() {
        let error = parse(br#"{"object": "page", "entry": []}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"not a WhatsApp Business Account webhook: object is "page", not "whatsapp_business_account""#
        );
        let error = parse(br#"{"object": "whatsapp_business_account"}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "not a WhatsApp Business Account webhook: missing entry"
        );
        let error = parse(br#"{"object": "whatsapp_business_account", "entry": {}}"#).unwrap_err();
        assert_eq!(error.reason(), "entry is not an array");
        let error = parse(br#"{"entry": []}"#).unwrap_err();
        assert_eq!(error.reason(), "missing object");
    }

    #[test]
    fn refuses_a_message_without_id() {
        let body = envelope(
            "messages",
            json!({"messages": [{"from": "16505551234", "timestamp": "1739321024", "type": "text", "text": {"body": "hi"}}]}),
        );
        let error = parse(&body).unwrap_err();
        assert_eq!(error.reason(), "entry 0, change 0: message 0: missing id");
    }

    #[test]
    fn refuses_a_message_without_author() {
        let body = envelope(
            "messages",
            json!({"messages": [{"id": "wamid.A", "timestamp": "1739321024", "type": "text", "text": {"body": "hi"}}]}),
        );
        assert_eq!(
            parse(&body).unwrap_err().reason(),
            "entry 0, change 0: message 0: missing from"
        );
    }

    #[test]
    fn refuses_a_status_without_id_or_name() {
        let body = envelope(
            "messages",
            json!({"statuses": [{"status": "read", "timestamp": "1739321024"}]}),
        );
        assert_eq!(
            parse(&body).unwrap_err().reason(),
            "entry 0, change 0: status 0: missing id"
        );
        let body = envelope(
            "messages",
            json!({"statuses": [{"id": "wamid.A", "timestamp": "1739321024"}]}),
        );
        assert_eq!(
            parse(&body).unwrap_err().reason(),
            "entry 0, change 0: status 0: missing status"
        );
    }

    #[test]
    fn puts_messages_before_statuses_and_finds_each_author_name() {
        let body = envelope(
            "messages",
            json!({
                "contacts": [
                    {"profile": {"name": "Pablo Morales"}, "wa_id": "16315551181"},
                    {"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}
                ],
                "statuses": [{"id": "wamid.OUT", "status": "delivered", "timestamp": "1739321000"}],
                "messages": [
                    {"from": "16505551234", "id": "wamid.A", "timestamp": "1739321024", "type": "text", "text": {"body": "one"}},
                    {"from": "16315551181", "id": "wamid.B", "timestamp": "1739321025", "type": "text", "text": {"body": "two"}},
                    {"from": "447700900123", "id": "wamid.C", "timestamp": "1739321026", "type": "text", "text": {"body": "three"}}
                ]
            }),
        );
        let events = parse(&body).unwrap();
        let summary: Vec<(String, Option<String>)> = events
            .iter()
            .map(|event| match event {
                InboundEvent::Message(message) => (
                    message.provider_message_id.clone().unwrap(),
                    message.from.display_name.clone(),
                ),
                InboundEvent::Status(status) => (status.provider_message_id.clone(), None),
                InboundEvent::Edit(_) | InboundEvent::Reachability(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("wamid.A".into(), Some("Sheena Nelson".into())),
                ("wamid.B".into(), Some("Pablo Morales".into())),
                ("wamid.C".into(), None),
                ("wamid.OUT".into(), None),
            ]
        );
    }

    #[test]
    fn names_a_contact_card_from_its_parts() {
        let message = one_message(json!({
            "from": "16505551234", "id": "wamid.A", "timestamp": "1739321024", "type": "contacts",
            "contacts": [
                {"name": {"first_name": "Kim", "last_name": "Lee"}, "phones": [{"wa_id": "16315551181"}]},
                {"phones": [{"phone": "+1 555 0100"}]}
            ]
        }));
        assert_eq!(
            message.content,
            Content::Contacts {
                contacts: vec![
                    SharedContact {
                        name: "Kim Lee".into(),
                        phones: vec!["16315551181".into()],
                        emails: vec![],
                    },
                    SharedContact {
                        name: "+1 555 0100".into(),
                        phones: vec!["+1 555 0100".into()],
                        emails: vec![],
                    },
                ]
            }
        );
    }

    #[test]
    fn a_quick_reply_without_payload_is_known_by_its_text() {
        let message = one_message(json!({
            "from": "16505551234", "id": "wamid.A", "timestamp": "1739321024", "type": "button",
            "button": {"text": "Talk to a person"}
        }));
        assert_eq!(
            message.content,
            Content::Interactive(InteractiveReply {
                id: "Talk to a person".into(),
                title: "Talk to a person".into(),
                description: None,
            })
        );
    }

    #[test]
    fn reads_the_older_system_and_unsupported_shapes() {
        let message = one_message(json!({
            "from": "16505551234", "id": "wamid.A", "timestamp": "1739321024", "type": "system",
            "system": {"body": "changed", "new_wa_id": "16505553333", "type": "user_changed_number"}
        }));
        assert_eq!(message.metadata["new_wa_id"], "16505553333");
        let message = one_message(json!({
            "from": "16505551234", "id": "wamid.A", "timestamp": "1739321024", "type": "unknown",
            "errors": [{"code": 131051, "details": "Message type is not currently supported"}]
        }));
        assert_eq!(
            message.content,
            Content::Unsupported {
                description: "Message type is not currently supported".into()
            }
        );
    }

    #[test]
    fn refuses_a_message_without_the_receiving_number() {
        let body = serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {"messages": [
                {"from": "16505551234", "id": "wamid.A", "timestamp": "1739321024", "type": "text", "text": {"body": "hi"}}
            ]}}]}]
        }))
        .unwrap();
        assert_eq!(
            parse(&body).unwrap_err().reason(),
            "entry 0, change 0: message 0: missing metadata.phone_number_id"
        );
    }

    #[test]
    fn an_empty_batch_is_no_events() {
        assert_eq!(
            parse(br#"{"object": "whatsapp_business_account", "entry": []}"#).unwrap(),
            Vec::new()
        );
    }
}
