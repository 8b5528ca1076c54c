//! The e-mail channel, as a plug-in of the Switchboard gateway ([`KIND`]).
//!
//! The crate owns everything about mail; the gateway hosts it and never looks inside:
//!
//! - **Configuration** ([`Config`]): the `[email]` section — the gateway's address, its SMTP
//!   server, the secrets of the inbound routes, the IMAP mailbox — with its defaults, its
//!   environment variables and its validation.
//! - **Inbound.** Mail reaches the gateway through a provider's webhook (Mailgun, Postmark,
//!   SendGrid), as a raw `message/rfc822` body from a self-hosted MTA ([`EmailWebhook`], mounted
//!   at `/webhooks/email/…`), or from a mailbox the crate polls over IMAP ([`ImapPoller`]).
//!   Every route ends in [`InboundEmail`]: sender, subject, threading headers, the new text with
//!   quoted replies and signatures stripped (the full original kept), attachments, and whether
//!   the mail is automated (an auto-reply, a bounce) and must not be answered. Automated mail is
//!   acknowledged and dropped; anything else becomes one normalized message
//!   ([`InboundEmail::into_message`]) with its attachments inside, handed to the gateway's
//!   [`Inbox`](switchboard_channel::Inbox).
//! - **Outbound.** [`SmtpSender`] sends replies — and the gateway's notifications to staff —
//!   over SMTP with lettre: multipart text and HTML rendered from `templates/email/`, a
//!   Message-ID the gateway recognises when it comes back in `In-Reply-To`, `References` that
//!   keep the thread, and a `Reply-To` plus-address carrying the conversation's token.
//! - **Replay.** `switchboard replay webhooks/email/…` posts a recorded mail or provider request
//!   to its route, signed or authenticated as the provider would.
//!
//! With the `testing` feature, `testing::FakeSmtp` is a fake SMTP server on 127.0.0.1: the one
//! this crate's tests and the gateway's end-to-end tests send to.

mod config;
mod imap;
mod inbound;
mod outbound;
mod plugin;
pub mod providers;
mod receive;
mod replay;
mod settings;
#[cfg(feature = "testing")]
pub mod testing;
mod webhook;

use switchboard_channel::Channel;

pub use config::{Config, ENV, ImapConfig};
pub use imap::{ImapPoller, MailboxUrl, MailboxUrlError};
pub use inbound::{Address, EmailAttachment, InboundEmail, ParseError, parse_mime};
pub use outbound::SmtpSender;
pub use plugin::{EmailKind, EmailPlugin, KIND};
pub use settings::{ReplyAddress, SmtpSettings};
pub use webhook::EmailWebhook;

/// The e-mail channel: `email` in the database, the configuration (`[email]`) and the webhook
/// paths (`/webhooks/email/…`).
pub const CHANNEL: Channel = Channel::named("email");
