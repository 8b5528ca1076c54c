//! What a channel adapter hands to the pipeline: normalized inbound events.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One thing a provider told us about. A single webhook delivery may carry several.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundEvent {
    /// A new message written by an end user.
    Message(InboundMessage),
    /// The end user edited a message they sent earlier.
    Edit(InboundEdit),
    /// The provider reports what happened to a message we sent.
    Status(StatusUpdate),
    /// The user blocked or unblocked us (Telegram's `my_chat_member`): whether messages can reach
    /// them.
    Reachability(Reachability),
}

/// Whether the gateway can reach a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachability {
    /// The contact.
    pub contact: ContactRef,
    /// `false` after they blocked us, `true` after they unblocked us.
    pub reachable: bool,
    /// Why, as the provider says (e.g. `kicked`, `member`).
    pub reason: String,
    /// When it happened, per the provider.
    pub at: Option<DateTime<Utc>>,
}

/// What a message asks of the gateway beyond its content, when the channel says so explicitly
/// (a command, a button of the widget).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// The user opens the conversation (Telegram's `/start`): the agent greets them.
    Start,
    /// The user asks for a person (Telegram's `/human`): the conversation goes to the experts
    /// without asking the agent.
    Handoff,
}

impl Intent {
    /// The intent of a text that is a command any channel understands: a message that is just
    /// `/human` (any case) asks for a person, on WhatsApp, by e-mail (once quotes and signature
    /// are stripped) and in the widget as on Telegram.
    pub fn of_command(text: &str) -> Option<Intent> {
        text.trim()
            .eq_ignore_ascii_case("/human")
            .then_some(Intent::Handoff)
    }

    /// The name stored in a message's metadata (`intent`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Intent::Start => "start",
            Intent::Handoff => "handoff",
        }
    }
}

/// Who wrote a message, as the channel identifies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRef {
    /// The channel's stable id of the person: a phone number (WhatsApp), a user id (Telegram), an
    /// address (e-mail), a device or user id (web). Unique together with the channel.
    pub external_id: String,
    /// The name the channel shows for them, when it tells us one.
    pub display_name: Option<String>,
    /// Their public handle on the channel (Telegram's username, without `@`), when they have one.
    pub username: Option<String>,
}

/// Which conversation an inbound message belongs to, as far as the channel can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationRef {
    /// The client named one of its conversations by id (web chat).
    Existing(String),
    /// The client asked for a new conversation (web chat without a conversation id).
    New,
    /// The contact's current open conversation on this channel account, or a new one when there is
    /// none (WhatsApp, Telegram: one ongoing thread per person).
    Current,
    /// A reply within a thread (e-mail): the conversation the gateway's thread `token` names, else
    /// the conversation of the newest of `references` (provider ids, newest first) the gateway
    /// knows; a new conversation when neither leads anywhere. Only the contact's own
    /// conversations are joined.
    Thread {
        /// The gateway's thread token, when the reply carries one (a plus-address).
        token: Option<String>,
        /// Provider ids of the messages replied to, newest first (`In-Reply-To`, `References`).
        references: Vec<String>,
    },
}

/// A message written by an end user.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// The provider's id of the message. Providers retry deliveries; the pipeline stores a message
    /// once per `(channel, provider_message_id)`. `None` when the channel has no such id.
    pub provider_message_id: Option<String>,
    /// An id the sender chose for the message (the web API's `Idempotency-Key`): unique only
    /// among that sender's messages, so the pipeline stores a message once per
    /// `(channel, sender, key)` — two senders using the same key never meet.
    pub sender_key: Option<String>,
    /// Which of our identities received it: a WhatsApp phone number id, a Telegram bot name, an
    /// inbound address. Empty for channels with a single identity (web).
    pub account: String,
    /// The author.
    pub from: ContactRef,
    /// The conversation it belongs to.
    pub conversation: ConversationRef,
    /// When the provider says it was written.
    pub sent_at: Option<DateTime<Utc>>,
    /// The provider id of the message this one replies to, if any.
    pub reply_to: Option<String>,
    /// What was written.
    pub content: Content,
    /// What the message is about, when the channel says (an e-mail's subject): the title of a new
    /// conversation.
    pub subject: Option<String>,
    /// What the message explicitly asks for (a command), if anything.
    pub intent: Option<Intent>,
    /// Channel-specific facts worth keeping (referral, forwarded flag, raw type…).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Files that travel inside the message (a mail's attachments), not behind a provider link:
    /// the gateway keeps them in its media directory, and each attachment of the content whose
    /// source is [`Attachment::inline`] `n` becomes the stored copy of `files[n]`.
    pub files: Vec<InlineFile>,
}

/// A file carried inside a message.
#[derive(Clone, PartialEq, Eq)]
pub struct InlineFile {
    /// The bytes.
    pub bytes: bytes::Bytes,
    /// MIME type.
    pub mime_type: String,
    /// File name, when the sender gave one.
    pub filename: Option<String>,
}

impl std::fmt::Debug for InlineFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineFile")
            .field("bytes", &self.bytes.len())
            .field("mime_type", &self.mime_type)
            .field("filename", &self.filename)
            .finish()
    }
}

/// The user edited one of their messages.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundEdit {
    /// The provider id of the edited message.
    pub provider_message_id: String,
    /// The author, to check the edit comes from the same person.
    pub from: ContactRef,
    /// The new content.
    pub content: Content,
    /// When the provider says the edit happened.
    pub edited_at: Option<DateTime<Utc>>,
}

/// What the user sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Content {
    /// Plain text.
    Text {
        /// The text.
        body: String,
    },
    /// One or more files, optionally with a caption.
    Media {
        /// The files.
        attachments: Vec<Attachment>,
        /// The caption or accompanying text.
        caption: Option<String>,
    },
    /// A shared location.
    Location(Location),
    /// Shared contact cards.
    Contacts {
        /// The cards.
        contacts: Vec<SharedContact>,
    },
    /// A tap on a button or list entry we offered.
    Interactive(InteractiveReply),
    /// A reaction to an earlier message (or its removal).
    Reaction(Reaction),
    /// A message type the channel cannot represent; kept so nothing is dropped silently.
    Unsupported {
        /// What the provider said about it.
        description: String,
    },
    /// Something the provider reports about the user rather than a message they wrote (a changed
    /// phone number, say). Recorded in the conversation, never answered.
    System {
        /// The provider's name for the event, e.g. `user_changed_number`.
        event: String,
        /// The provider's description of it.
        text: String,
    },
}

impl Content {
    /// The short name stored with the message (`text`, `media`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Content::Text { .. } => "text",
            Content::Media { .. } => "media",
            Content::Location(_) => "location",
            Content::Contacts { .. } => "contacts",
            Content::Interactive(_) => "interactive",
            Content::Reaction(_) => "reaction",
            Content::Unsupported { .. } => "unsupported",
            Content::System { .. } => "system",
        }
    }

    /// The message as text, for people and agents reading a transcript.
    pub fn to_text(&self) -> String {
        match self {
            Content::Text { body } => body.clone(),
            Content::Media {
                attachments,
                caption,
            } => match caption {
                Some(caption) if !caption.trim().is_empty() => caption.clone(),
                _ => {
                    let kinds: Vec<&str> = attachments.iter().map(|a| a.kind.as_str()).collect();
                    format!("[{}]", kinds.join(", "))
                }
            },
            Content::Location(location) => {
                let place = [location.name.as_deref(), location.address.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ");
                if place.is_empty() {
                    format!("[location {}, {}]", location.latitude, location.longitude)
                } else {
                    format!(
                        "[location {place} ({}, {})]",
                        location.latitude, location.longitude
                    )
                }
            }
            Content::Contacts { contacts } => {
                let names: Vec<&str> = contacts.iter().map(|c| c.name.as_str()).collect();
                format!("[contact {}]", names.join(", "))
            }
            Content::Interactive(reply) => reply.title.clone(),
            Content::Reaction(reaction) => match &reaction.emoji {
                Some(emoji) => emoji.clone(),
                None => "[reaction removed]".to_owned(),
            },
            Content::Unsupported { description } => format!("[unsupported message: {description}]"),
            Content::System { text, .. } => format!("[{text}]"),
        }
    }

    /// Whether the conversation's owner (agent or expert) should answer this content. Reactions and
    /// system events are recorded but never answered.
    pub fn expects_answer(&self) -> bool {
        !matches!(self, Content::Reaction(_) | Content::System { .. })
    }
}

/// A file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attachment {
    /// What kind of file it is.
    pub kind: MediaKind,
    /// Where the file can be fetched: a URL, or a provider media id that needs an API call first.
    pub source: String,
    /// MIME type, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// File name, when the sender gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256 of the content as the provider gives it (hex or base64), when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The id of the gateway's own stored copy, once the file has been downloaded (channels whose
    /// provider URLs expire). Adapters leave it empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
}

/// The source prefix of an attachment whose file travels inside its message.
const INLINE: &str = "inline:";

impl Attachment {
    /// An attachment whose file is `files[index]` of its message.
    pub fn inline(index: usize, file: &InlineFile) -> Attachment {
        Attachment {
            kind: MediaKind::of_mime_type(&file.mime_type),
            source: format!("{INLINE}{index}"),
            mime_type: Some(file.mime_type.clone()),
            filename: file.filename.clone(),
            size: Some(file.bytes.len() as u64),
            sha256: None,
            media_id: None,
        }
    }

    /// The index of the inline file this attachment stands for.
    pub fn inline_index(&self) -> Option<usize> {
        self.source.strip_prefix(INLINE)?.parse().ok()
    }
}

/// The kind of an attached file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// A picture.
    Image,
    /// An audio file.
    Audio,
    /// A voice note recorded in the app.
    Voice,
    /// A video.
    Video,
    /// Any other file.
    Document,
    /// A sticker.
    Sticker,
}

impl MediaKind {
    /// The kind of a file by its MIME type.
    pub fn of_mime_type(mime_type: &str) -> MediaKind {
        match mime_type.split('/').next().unwrap_or_default() {
            "image" => MediaKind::Image,
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            _ => MediaKind::Document,
        }
    }

    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Audio => "audio",
            MediaKind::Voice => "voice",
            MediaKind::Video => "video",
            MediaKind::Document => "document",
            MediaKind::Sticker => "sticker",
        }
    }
}

/// A shared location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// Name of the place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Street address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// A shared contact card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedContact {
    /// Formatted name.
    pub name: String,
    /// Phone numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
    /// E-mail addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
}

/// A tap on something we offered: a reply button, a list entry, an inline keyboard button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractiveReply {
    /// The id we gave the choice.
    pub id: String,
    /// The text the user saw.
    pub title: String,
    /// A longer description, for list entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A reaction to an earlier message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    /// The provider id of the message reacted to.
    pub target_provider_message_id: String,
    /// The emoji; `None` when the user removed their reaction.
    pub emoji: Option<String>,
}

/// The provider reports the fate of a message we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The provider id we got back when sending.
    pub provider_message_id: String,
    /// The new status.
    pub status: DeliveryStatus,
    /// When it happened, per the provider.
    pub at: Option<DateTime<Utc>>,
    /// Why it failed, for [`DeliveryStatus::Failed`].
    pub error: Option<ProviderError>,
}

/// An error as the provider describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderError {
    /// The provider's error code.
    pub code: String,
    /// A short description.
    pub title: String,
    /// More detail, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The delivery state of a message, in the order a message moves through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Inbound: stored by the gateway.
    Received,
    /// Outbound: stored, not yet accepted by the provider.
    Pending,
    /// Accepted by the provider.
    Sent,
    /// Arrived on the recipient's device.
    Delivered,
    /// Seen by the recipient.
    Read,
    /// Will not be delivered.
    Failed,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [DeliveryStatus; 6] = [
        DeliveryStatus::Received,
        DeliveryStatus::Pending,
        DeliveryStatus::Sent,
        DeliveryStatus::Delivered,
        DeliveryStatus::Read,
        DeliveryStatus::Failed,
    ];

    /// The lowercase name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Received => "received",
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// Position in the life of an outbound message. A status update may only raise it, so a late
    /// "delivered" never overwrites "read". `Failed` ranks above `Delivered` (a provider may fail a
    /// message it had accepted) but below `Read` (a read message was delivered, whatever comes later).
    pub const fn rank(self) -> u8 {
        match self {
            DeliveryStatus::Received | DeliveryStatus::Pending => 0,
            DeliveryStatus::Sent => 1,
            DeliveryStatus::Delivered => 2,
            DeliveryStatus::Failed => 3,
            DeliveryStatus::Read => 4,
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of [`DeliveryStatus::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown delivery status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for DeliveryStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeliveryStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

impl TryFrom<String> for DeliveryStatus {
    type Error = UnknownStatus;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_human_asks_for_a_person_on_any_channel() {
        assert_eq!(Intent::of_command(" /Human\n"), Some(Intent::Handoff));
        assert_eq!(Intent::of_command("/human please"), None);
        assert_eq!(Intent::of_command("human"), None);
    }

    #[test]
    fn status_never_moves_backwards_from_read() {
        use DeliveryStatus::*;
        assert!(Read.rank() > Delivered.rank());
        assert!(Read.rank() > Failed.rank());
        assert!(Failed.rank() > Sent.rank());
        assert!(Sent.rank() > Pending.rank());
        for status in DeliveryStatus::ALL {
            assert_eq!(status.as_str().parse::<DeliveryStatus>(), Ok(status));
        }
    }

    #[test]
    fn content_reads_as_text() {
        let image = Content::Media {
            attachments: vec![Attachment {
                kind: MediaKind::Image,
                source: "media-1".into(),
                mime_type: Some("image/jpeg".into()),
                filename: None,
                size: None,
                sha256: None,
                media_id: None,
            }],
            caption: None,
        };
        assert_eq!(image.to_text(), "[image]");
        let place = Content::Location(Location {
            latitude: 52.5,
            longitude: 13.4,
            name: Some("Office".into()),
            address: None,
        });
        assert_eq!(place.to_text(), "[location Office (52.5, 13.4)]");
        let removed = Content::Reaction(Reaction {
            target_provider_message_id: "m1".into(),
            emoji: None,
        });
        assert!(!removed.expects_answer());
        assert_eq!(removed.to_text(), "[reaction removed]");
    }

    #[test]
    fn content_is_stored_as_tagged_json() {
        let content = Content::Interactive(InteractiveReply {
            id: "yes".into(),
            title: "Yes please".into(),
            description: None,
        });
        let json = serde_json::to_value(&content).unwrap();
        assert_eq!(json["kind"], "interactive");
        assert_eq!(serde_json::from_value::<Content>(json).unwrap(), content);
    }
}
