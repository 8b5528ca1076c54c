//! The channel-neutral message model of Switchboard.
//!
//! Every channel adapter (WhatsApp, Telegram, e-mail, web chat) turns the provider's bytes into the
//! [`InboundEvent`]s defined here, and turns an [`OutboundMessage`] into a provider API call through a
//! [`Sender`]. The gateway's pipeline only ever sees these types, which is what lets a new channel be
//! added without touching the pipeline.
//!
//! It also defines the plug-in contract ([`ChannelKind`], [`ChannelPlugin`]): a channel crate owns
//! its configuration section, its webhooks ([`Webhook`]), its pollers (which feed the gateway's
//! [`Inbox`]), its sender and media fetcher, and the signer of `switchboard replay`; the gateway
//! hosts it.
//!
//! This crate deliberately knows nothing about HTTP servers or storage: an adapter verifies and parses,
//! the gateway decides what to store and when to answer. The one exception is the `testing` module
//! (behind the `testing` feature, for tests only): the fake servers and the in-memory inbox that
//! the channel crates' tests and the gateway's end-to-end tests share.

mod channel;
mod error;
pub mod exclusive;
mod fetch;
mod inbound;
mod inbox;
mod outbound;
pub mod plugin;
mod secret;
pub mod signature;
#[cfg(feature = "testing")]
pub mod testing;
pub mod text;
pub mod webhook;

pub use channel::{Channel, UnknownChannel};
pub use error::{ParseError, error_chain};
pub use exclusive::{Exclusive, Lease};
pub use fetch::{MediaDownload, MediaFetcher};
/// The HTTP types of [`WebhookRequest`] and [`WebhookError`], for channel crates.
pub use http;
pub use inbound::{
    Attachment, ContactRef, Content, ConversationRef, DeliveryStatus, InboundEdit, InboundEvent,
    InboundMessage, InlineFile, Intent, InteractiveReply, Location, MediaKind, ProviderError,
    Reachability, Reaction, SharedContact, StatusUpdate, UnknownStatus,
};
pub use inbox::{Checkpoint, Inbox, InboxError, Ingested, StaffReply};
pub use outbound::{
    Choice, OutboundContent, OutboundMessage, SendError, Sender, Sent, Thread, ThreadLine,
    TypingTarget,
};
pub use plugin::{ChannelKind, ChannelPlugin, ConfigError, Dependency, Policy, StartContext};
pub use secret::Secret;
pub use webhook::{BodyCheck, Webhook, WebhookAnswer, WebhookError, WebhookRequest};
