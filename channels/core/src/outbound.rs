//! What the pipeline hands to a channel to send, and how a channel answers.
//!
//! The gateway stores an outbound message first and sends it from a background job, so a
//! [`Sender`] only ever makes one attempt: it reports [`SendError::Transient`] and the gateway
//! retries later (surviving restarts), or [`SendError::Permanent`] and the message is marked failed.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{inbound::Attachment, text::Measure};

/// A message the gateway sends to an end user.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    /// The gateway's id of the message; stable across retries, so usable as an idempotency key.
    pub message_id: String,
    /// Which of our identities sends it (a WhatsApp phone number id, a Telegram bot name…).
    pub account: String,
    /// The recipient's channel id (the contact's external id).
    pub to: String,
    /// The provider id of the user's message this answers, when the channel should show it as a
    /// reply (the gateway sets it when the user has written more since, so the answer is
    /// unambiguous).
    pub reply_to: Option<String>,
    /// What to send.
    pub content: OutboundContent,
    /// Whether the channel's customer-service window ([`Sender::service_window`]) is open: the user
    /// wrote recently enough for free-form messages. Always true on channels without a window.
    pub service_window_open: bool,
    /// The thread the message belongs to, for channels that carry it in every message (e-mail's
    /// subject, threading headers and quoted history). Only filled for senders that ask
    /// ([`Sender::wants_thread`]).
    pub thread: Option<Thread>,
}

/// The conversation an outbound message continues, as threaded channels show it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Thread {
    /// The conversation's subject (its title).
    pub subject: Option<String>,
    /// The provider id of the message this one answers (e-mail: `In-Reply-To`).
    pub in_reply_to: Option<String>,
    /// Provider ids of the conversation's messages so far, oldest first (e-mail: `References`).
    pub references: Vec<String>,
    /// The gateway's token for this thread: replies that carry it come back to the conversation
    /// (e-mail: the plus-address of `Reply-To`).
    pub token: String,
    /// The most recent messages before this one, oldest first.
    pub history: Vec<ThreadLine>,
}

/// A message of a thread's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadLine {
    /// Who wrote it: `user`, `ai`, `expert` or `system`.
    pub role: String,
    /// The author's name, when known.
    pub author: Option<String>,
    /// What they wrote.
    pub text: String,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The content of an outbound message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutboundContent {
    /// Plain text.
    Text {
        /// The text.
        body: String,
    },
    /// A file by URL, optionally with a caption.
    Media {
        /// The file.
        attachment: Attachment,
        /// Caption shown with it.
        caption: Option<String>,
    },
    /// Text with buttons the user can tap.
    Choices {
        /// The text above the buttons.
        body: String,
        /// The buttons.
        choices: Vec<Choice>,
    },
    /// A pre-approved template (WhatsApp's only way to write outside the 24-hour window).
    Template {
        /// Template name.
        name: String,
        /// Language code, e.g. `en_US`.
        language: String,
        /// Template components (parameters), in the provider's shape.
        components: serde_json::Value,
    },
}

/// A button offered to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// Returned to us when tapped.
    pub id: String,
    /// Shown on the button.
    pub title: String,
}

/// The provider accepted a message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sent {
    /// The provider's id of the message; its status updates refer to it.
    pub provider_message_id: String,
    /// What was sent instead of the message, when the channel had to substitute it (a template
    /// outside WhatsApp's 24-hour window). Stored with the message; the gateway then sends no
    /// further parts of it.
    pub substituted: Option<String>,
}

/// Where a typing indicator goes: the conversation of a user whose message is being answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypingTarget {
    /// Which of our identities the conversation runs through.
    pub account: String,
    /// The user's channel id.
    pub to: String,
    /// The provider id of the message being answered, when it has one (WhatsApp marks it read).
    pub message_provider_id: Option<String>,
}

/// Why a message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later: rate limits, provider outages, network trouble.
    #[error("temporary failure: {reason}")]
    Transient {
        /// How long the provider asked us to wait, when it said.
        retry_after: Option<Duration>,
        /// What happened, for the log.
        reason: String,
    },
    /// Retrying will not help: invalid recipient, expired token, policy violation.
    #[error("permanent failure {code}: {reason}")]
    Permanent {
        /// The provider's error code (or a short name of ours).
        code: String,
        /// What happened, stored with the message.
        reason: String,
    },
    /// The recipient cannot be reached until they write again (they blocked the bot, deleted
    /// their account). The message fails, and the gateway marks the contact unreachable.
    #[error("the recipient is unreachable: {reason}")]
    Unreachable {
        /// What the provider said.
        reason: String,
    },
}

impl SendError {
    /// A transient failure without a provider hint.
    pub fn transient(reason: impl Into<String>) -> Self {
        SendError::Transient {
            retry_after: None,
            reason: reason.into(),
        }
    }

    /// A permanent failure.
    pub fn permanent(code: impl Into<String>, reason: impl Into<String>) -> Self {
        SendError::Permanent {
            code: code.into(),
            reason: reason.into(),
        }
    }
}

/// Sends outbound messages through one channel's provider API.
#[async_trait]
pub trait Sender: Send + Sync + 'static {
    /// Sends one provider message. Must not retry on its own: the gateway schedules retries for
    /// [`SendError::Transient`] so that they survive restarts. Texts are never longer than
    /// [`Sender::text_limit`]: the gateway splits longer ones and sends the parts in order,
    /// recording each, so a retry resumes where the last attempt stopped.
    async fn send(&self, message: &OutboundMessage) -> Result<Sent, SendError>;

    /// The longest text one provider message may carry, and how the provider counts it.
    fn text_limit(&self) -> Option<(usize, Measure)> {
        None
    }

    /// Shows the user that an answer is being written (and, where the channel has read receipts,
    /// that their message was read). Best effort: the gateway logs a failure and carries on.
    async fn typing(&self, _target: &TypingTarget) -> Result<(), SendError> {
        Ok(())
    }

    /// How long after the user's last message the channel accepts free-form messages, if it
    /// limits that (WhatsApp: 24 hours). The gateway tracks the window and tells the sender
    /// through [`OutboundMessage::service_window_open`].
    fn service_window(&self) -> Option<Duration> {
        None
    }

    /// Whether messages need their [`Thread`] (e-mail). Other channels are spared the queries.
    fn wants_thread(&self) -> bool {
        false
    }
}
