//! The website chat channel.
//!
//! Visitors of a website talk to the gateway through the embeddable widget ([`WIDGET_JS`]) or any
//! client of the chat API. This crate holds what is specific to that channel and independent of the
//! HTTP server: who the visitor is ([`identity`]), what a chat request may contain and how it becomes
//! a normalized [`InboundMessage`](switchboard_channel::InboundMessage) ([`request`]), which files a
//! visitor may upload ([`upload`]), and the payloads streamed back over server-sent events
//! ([`stream`]).
//!
//! The web channel has no provider to push replies to: a reply is delivered by being stored and
//! published to the visitor's open event streams.

pub mod conversation;
pub mod identity;
pub mod request;
pub mod stream;
pub mod upload;

/// The embeddable chat widget: plain JavaScript, no build step. The gateway serves it at `/widget.js`.
pub const WIDGET_JS: &str = include_str!("../widget.js");
