//! PLACEHOLDER — being written.
use chrono::{DateTime, Utc};
use switchboard_channel::{Attachment, InboundMessage};

use crate::ReplyAddress;

/// A mail address with its display name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    /// Display name.
    pub name: Option<String>,
    /// The address, lowercased.
    pub address: String,
}

/// A file attached to a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAttachment {
    /// File name.
    pub filename: Option<String>,
    /// MIME type.
    pub mime_type: String,
    /// Content.
    pub bytes: Vec<u8>,
}

/// An inbound mail, read.
#[derive(Debug, Clone, Default)]
pub struct InboundEmail {
    /// Message-ID without angle brackets.
    pub message_id: String,
    /// Sender.
    pub from: Address,
    /// Recipients.
    pub to: Vec<Address>,
    /// Copies.
    pub cc: Vec<Address>,
    /// Subject.
    pub subject: String,
    /// In-Reply-To ids.
    pub in_reply_to: Vec<String>,
    /// References ids.
    pub references: Vec<String>,
    /// Date.
    pub date: Option<DateTime<Utc>>,
    /// New text.
    pub text: String,
    /// Full text.
    pub original: String,
    /// HTML body.
    pub html: Option<String>,
    /// Files.
    pub attachments: Vec<EmailAttachment>,
    /// Why it must not be answered.
    pub automated: Option<String>,
    /// Thread token from a recipient address.
    pub reply_token: Option<String>,
}

/// Not a mail.
#[derive(Debug, thiserror::Error)]
#[error("not an e-mail: {0}")]
pub struct ParseError(pub String);

/// Parses raw MIME.
pub fn parse_mime(_raw: &[u8], _ours: &ReplyAddress) -> Result<InboundEmail, ParseError> {
    Err(ParseError("not yet".into()))
}

impl InboundEmail {
    /// The normalized message.
    pub fn into_message(self, _account: &str, _attachments: Vec<Attachment>) -> InboundMessage {
        unimplemented!("being written")
    }
}
