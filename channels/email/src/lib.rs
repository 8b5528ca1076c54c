//! The e-mail channel.
//!
//! Inbound, mail reaches the gateway through a provider's webhook (Mailgun, Postmark, SendGrid)
//! or as a raw `message/rfc822` body from a self-hosted MTA; every route ends in [`InboundEmail`]:
//! sender, subject, threading headers, the new text with quoted replies and signatures stripped
//! (the full original kept), attachments, and whether the mail is automated (an auto-reply, a
//! bounce) and must not be answered. [`InboundEmail::into_message`] makes the normalized message.
//!
//! Outbound, [`SmtpSender`] sends replies over SMTP with lettre: multipart text and HTML rendered
//! from `templates/email/`, a Message-ID the gateway recognises when it comes back in
//! `In-Reply-To`, `References` that keep the thread, and a `Reply-To` plus-address carrying the
//! conversation's token.

mod inbound;
mod outbound;
pub mod providers;
mod settings;

pub use inbound::{Address, EmailAttachment, InboundEmail, ParseError, parse_mime};
pub use outbound::SmtpSender;
pub use settings::{ReplyAddress, SmtpSettings};
