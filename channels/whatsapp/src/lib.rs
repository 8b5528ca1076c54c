//! The WhatsApp Business Cloud API channel, as a plug-in of the Switchboard gateway.
//!
//! The gateway registers [`KIND`] and hands it the `[whatsapp]` section of its configuration
//! ([`Config`], with the environment variables of [`ChannelKind::env`]). Once `app_secret` is set,
//! the running channel offers:
//!
//! - a webhook ([`WhatsappWebhook`]), mounted at `/webhooks/whatsapp`: `GET` answers Meta's
//!   set-up handshake ([`verify_subscription`]); `POST` is refused unread without a well-formed
//!   `X-Hub-Signature-256`, then checked over the raw body ([`verify_signature`]) and turned by
//!   [`parse`] — every entry, change, message and status of it — into normalized
//!   [`InboundEvent`](switchboard_channel::InboundEvent)s for the gateway's
//!   [`Inbox`](switchboard_channel::Inbox);
//! - a sender ([`WhatsappSender`]) that answers through the Graph API
//!   (`/{version}/{phone_number_id}/messages`) and classifies the provider's errors into transient
//!   (retried by the gateway) and permanent ones;
//! - a media fetcher ([`WhatsappMedia`]) that downloads the files users send before their links
//!   expire;
//! - the signer of `switchboard replay` ([`refresh_whatsapp`], [`sign`]).
//!
//! The crate knows nothing about the gateway's server or storage: deduplication of Meta's retries,
//! limits and the conversations themselves are the gateway's.
//!
//! With the `testing` feature, `testing::FakeGraph` is a fake Graph API on 127.0.0.1: the one
//! this crate's tests and the gateway's end-to-end tests run against.

mod config;
mod graph;
mod inbound;
mod media;
mod outbound;
mod plugin;
mod replay;
mod settings;
#[cfg(feature = "testing")]
pub mod testing;
mod verify;
mod webhook;

use switchboard_channel::Channel;
#[cfg(doc)]
use switchboard_channel::ChannelKind;

/// The WhatsApp channel: the name of its configuration section, its webhook path and its
/// conversations.
pub const CHANNEL: Channel = Channel::named("whatsapp");

/// The largest webhook body accepted: Meta's documented maximum for a webhook payload is 3 MB
/// (a batch of messages and statuses).
pub const MAX_WEBHOOK_BYTES: usize = 3 * 1024 * 1024;

pub use config::{Config, ENV, NumberConfig};
pub use inbound::parse;
pub use media::WhatsappMedia;
pub use outbound::WhatsappSender;
pub use plugin::{KIND, WhatsappKind};
pub use replay::refresh_whatsapp;
pub use settings::{NumberSettings, Settings, Template};
pub use switchboard_channel::ParseError;
pub use verify::{SIGNATURE_HEADER, SignatureError, sign, verify_signature, verify_subscription};
pub use webhook::WhatsappWebhook;
