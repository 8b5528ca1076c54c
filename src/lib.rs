//! Switchboard: a multi-channel messaging bot gateway.
//!
//! Messaging channels and the website chat reach one conversation pipeline: channel adapters
//! (the `switchboard-*` crates under `channels/`) normalize inbound messages, the [`pipeline`]
//! stores them durably and answers them in order per conversation with an [`agents`] agent or
//! hands them to a human, and replies go back through the channel they came from.
//!
//! [`app::Gateway`] assembles everything; `main.rs` only parses the command line.

pub mod agents;
pub mod app;
pub mod channels;
pub mod config;
pub mod evaluations;
pub mod experts;
pub mod http;
pub mod ids;
pub mod inbox;
pub mod jobs;
pub mod limits;
pub mod live;
pub mod media;
pub mod pipeline;
pub mod private_files;
pub mod replay;
pub mod shared;
pub mod staff;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod time;
