//! The channel-neutral message model of Switchboard.
//!
//! Every channel adapter (WhatsApp, Telegram, e-mail, web chat) turns the provider's bytes into the
//! [`InboundEvent`]s defined here, and turns an [`OutboundMessage`] into a provider API call through a
//! [`Sender`]. The gateway's pipeline only ever sees these types, which is what lets a new channel be
//! added without touching the pipeline.
//!
//! This crate deliberately knows nothing about HTTP servers or storage: an adapter verifies and parses,
//! the gateway decides what to store and when to answer.

mod channel;
mod inbound;
mod media;
mod outbound;
mod secret;
pub mod signature;
pub mod text;

pub use channel::{Channel, UnknownChannel};
pub use inbound::{
    Attachment, ContactRef, Content, ConversationRef, DeliveryStatus, InboundEdit, InboundEvent,
    InboundMessage, Intent, InteractiveReply, Location, MediaKind, ProviderError, Reachability,
    Reaction, SharedContact, StatusUpdate, UnknownStatus,
};
pub use media::{MediaDownload, MediaFetcher};
pub use outbound::{
    Choice, OutboundContent, OutboundMessage, SendError, Sender, Sent, Thread, ThreadLine,
    TypingTarget,
};
pub use secret::Secret;
