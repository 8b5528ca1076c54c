//! What the pipeline hands to a channel to send, and how a channel answers.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::inbound::Attachment;

/// A message the gateway sends to an end user.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    /// The gateway's id of the message; stable across retries, so usable as an idempotency key.
    pub message_id: String,
    /// Which of our identities sends it (a WhatsApp phone number id, a Telegram bot name…).
    pub account: String,
    /// The recipient's channel id (the contact's external id).
    pub to: String,
    /// The provider id of the user's message this answers, when the channel can show a reply.
    pub reply_to: Option<String>,
    /// What to send.
    pub content: OutboundContent,
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
    /// The provider ids of what was sent, in order. A long text split into several provider
    /// messages yields several ids; status updates refer to them.
    pub provider_message_ids: Vec<String>,
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
    /// Retrying will not help: invalid recipient, blocked bot, expired token, policy violation.
    #[error("permanent failure {code}: {reason}")]
    Permanent {
        /// The provider's error code (or a short name of ours).
        code: String,
        /// What happened, stored with the message.
        reason: String,
    },
}

/// Sends outbound messages through one channel's provider API.
#[async_trait]
pub trait Sender: Send + Sync + 'static {
    /// Sends one message. Must not retry on its own: the gateway schedules retries for
    /// [`SendError::Transient`] so that they survive restarts.
    async fn send(&self, message: &OutboundMessage) -> Result<Sent, SendError>;
}
