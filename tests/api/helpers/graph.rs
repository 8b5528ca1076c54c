//! The fake Meta Graph API of the end-to-end tests: the WhatsApp crate's own fake
//! (`switchboard_whatsapp::testing`), so the gateway is tested against the same Graph API as the
//! channel's sender and media fetcher.

pub use switchboard_whatsapp::testing::{Failure, FakeGraph, FakeMedia};
