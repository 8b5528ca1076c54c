//! The Telegram channel, on teloxide.
//!
//! Inbound, updates arrive by webhook (the gateway checks [`SECRET_HEADER`] with
//! [`verify_secret`]) or by long polling ([`TelegramBot::get_updates`]); either way [`parse`] /
//! [`parse_update`] turn one update into normalized events: messages (text, media, location,
//! contact, replies), edits, inline-button presses, and users blocking or unblocking the bot. In
//! group chats only messages addressed to the bot count (a mention, a reply to the bot, a command).
//!
//! Outbound, [`TelegramBots`] sends through the Bot API with teloxide (throttled to Telegram's
//! per-chat and global limits), shows typing, answers button presses and downloads the files users
//! send. The crate knows nothing about the gateway's server or storage.

mod inbound;
mod outbound;
mod settings;

pub use inbound::{
    ParseError, ParsedUpdate, SECRET_HEADER, SecretError, parse, parse_update, provider_message_id,
    verify_secret,
};
pub use outbound::{TelegramBot, TelegramBots};

/// The largest webhook body accepted. An update carries one message (4,096 characters of text or
/// a 1,024-character caption, their entities, the message it replies to, file ids — never the
/// files), a few kilobytes; 1 MiB leaves room for anything Telegram adds.
pub const MAX_UPDATE_BYTES: usize = 1024 * 1024;
pub use settings::{BotIdentity, BotSettings};
pub use teloxide::types::Update;
