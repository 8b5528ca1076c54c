//! Where a channel's inbound messages go: the [`Inbox`] the gateway gives every plug-in.
//!
//! A webhook or a poller hands the inbox a batch of normalized events, optionally with a
//! [`Checkpoint`] that must be stored in the same transaction (a poller's position, a signed
//! request's one-time value). When `ingest` returns `Ok`, the batch is durable and may be
//! acknowledged to the provider; an error means nothing of it was stored.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::InboundEvent;

/// The gateway's side of inbound delivery.
#[async_trait]
pub trait Inbox: Send + Sync + 'static {
    /// The gateway's clock.
    fn now(&self) -> DateTime<Utc>;

    /// Stores a batch in one transaction with `checkpoint`, then answers what needs answering.
    /// Files that travel inside a message ([`crate::InboundMessage::files`]) are kept in the
    /// gateway's media directory; a message answering a staff notification (its thread token is
    /// bound to an expert) is the expert's reply.
    async fn ingest(
        &self,
        events: Vec<InboundEvent>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Ingested, InboxError>;

    /// The position a poller stored last under `cursor` (see [`Checkpoint::Cursor`]).
    async fn position(&self, cursor: &str) -> Result<Option<String>, InboxError>;
}

/// Something recorded in the transaction of a batch, so that the two are stored together or not
/// at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// A provider stream's position after the batch (Telegram's update offset, an IMAP UID).
    Cursor {
        /// The stream's name.
        name: String,
        /// The position after the batch.
        value: String,
    },
    /// A signed webhook's one-time value (Mailgun's token): a value seen before refuses the
    /// batch as a replay ([`InboxError::Replayed`]).
    Once {
        /// Whose values these are.
        scope: String,
        /// The value.
        token: String,
    },
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Events received (set by the inbox: the batch's length).
    pub events: usize,
    /// New messages stored.
    pub stored: usize,
    /// Messages the provider had delivered before.
    pub duplicates: usize,
    /// Delivery statuses applied.
    pub statuses: usize,
    /// What became of a reply to a staff notification, when the batch was one.
    pub staff_reply: Option<StaffReply>,
}

impl Ingested {
    /// The answer to a provider: what its delivery changed (providers ignore it; people
    /// replaying payloads read it).
    pub fn summary(&self) -> serde_json::Value {
        match &self.staff_reply {
            Some(StaffReply::Accepted { message_id }) => {
                serde_json::json!({"status": "ok", "expert_reply": message_id})
            }
            // A provider must not retry what will be refused again: still a success.
            Some(StaffReply::Refused { reason }) => {
                serde_json::json!({"status": "refused", "reason": reason})
            }
            None => serde_json::json!({
                "status": "ok",
                "events": self.events,
                "stored": self.stored,
                "duplicates": self.duplicates,
                "statuses": self.statuses,
            }),
        }
    }
}

/// What became of a reply to a staff notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaffReply {
    /// It went to the end user as the expert's message.
    Accepted {
        /// The stored message.
        message_id: String,
    },
    /// It may not do what it tries (another sender, a repeat, a conversation no longer the
    /// expert's): nothing was stored; logged and audited.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Why a batch was not stored. Nothing of it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboxError {
    /// The request's one-time value was used before: a replayed webhook (refuse it).
    #[error("this request was already received (its one-time token was used)")]
    Replayed,
    /// A file inside a message is larger than the gateway keeps.
    #[error("a file is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The message names a conversation that does not exist (or is not the sender's).
    #[error("conversation not found")]
    ConversationNotFound,
    /// The message names a conversation that no longer takes messages.
    #[error("the conversation is closed")]
    ConversationClosed,
    /// The sender is over a rate; nothing was stored.
    #[error("{reason}")]
    Limited {
        /// Why.
        reason: String,
        /// When to try again, in seconds.
        retry_after: u64,
    },
    /// The gateway failed (database, disk): the provider should try again later.
    #[error("{0}")]
    Unavailable(String),
}
