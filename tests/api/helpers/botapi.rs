//! The fake Telegram Bot API of the end-to-end tests: the Telegram crate's own fake
//! (`switchboard_telegram::testing`), so the gateway is tested against the same Bot API as the
//! channel's sender and pollers.

pub use switchboard_telegram::testing::{Failure, FakeBotApi};
