//! The WhatsApp Business Cloud API channel.
//!
//! Inbound, Meta posts webhooks to the gateway: [`verify_subscription`] answers the set-up
//! handshake, [`verify_signature`] checks `X-Hub-Signature-256` over the raw body, and [`parse`]
//! turns an envelope — every entry, change, message and status of it — into normalized
//! [`InboundEvent`](switchboard_channel::InboundEvent)s.
//!
//! Outbound, [`WhatsappSender`] sends through the Graph API (`/{version}/{phone_number_id}/messages`)
//! and classifies the provider's errors into transient (retried by the gateway) and permanent
//! ones; [`WhatsappMedia`] downloads the files users send before their links expire.
//!
//! The crate knows nothing about the gateway's server or storage; [`Settings`] is all it needs.

mod graph;
mod inbound;
mod media;
mod outbound;
mod settings;
mod verify;

pub use inbound::{ParseError, parse};

/// The largest webhook body accepted: Meta's documented maximum for a webhook payload is 3 MB
/// (a batch of messages and statuses).
pub const MAX_WEBHOOK_BYTES: usize = 3 * 1024 * 1024;
pub use media::WhatsappMedia;
pub use outbound::WhatsappSender;
pub use settings::{NumberSettings, Settings, Template};
pub use verify::{SIGNATURE_HEADER, SignatureError, sign, verify_signature, verify_subscription};
