//! The Telegram channel, on teloxide, as a plug-in of the Switchboard gateway.
//!
//! The gateway registers [`KIND`]; everything Telegram-specific lives here:
//!
//! - **Configuration.** The `[telegram]` section ([`Config`], from `config.rs`): one bot from
//!   `token` (settable from the environment alone) and any number of further bots, each receiving
//!   updates by webhook or by long polling.
//! - **Inbound.** Updates arrive by webhook, `POST /webhooks/telegram/{bot}` with the bot's secret
//!   in [`SECRET_HEADER`] (checked with [`verify_secret`] before the body is read), or by long
//!   polling ([`TelegramBot::get_updates`]) from a poller the plug-in starts for each bot in
//!   polling mode, which keeps its position in the gateway's inbox with each batch. Either way
//!   [`parse`] / [`parse_update`] turn one update into normalized events: messages (text, media,
//!   location, contact, replies), edits, inline-button presses, and users blocking or unblocking
//!   the bot. In group chats only messages addressed to the bot count (a mention, a reply to the
//!   bot, a command). Both paths hand their updates to the gateway through one function
//!   ([`Telegram::deliver`]), which also answers button presses.
//! - **Outbound.** [`TelegramBots`] sends through the Bot API with teloxide (throttled to
//!   Telegram's per-chat and global limits), shows typing, answers button presses and downloads
//!   the files users send.
//! - **Operations.** `switchboard telegram set-webhook` registers the webhooks, and
//!   `switchboard replay webhooks/telegram/…` posts a recorded update ([`refresh_telegram`]) the
//!   way Telegram would.
//!
//! The crate knows nothing about the gateway's server or storage: it sees the gateway's
//! [`switchboard_channel::Inbox`].
//!
//! With the `testing` feature, `testing::FakeBotApi` is a fake Bot API on 127.0.0.1: the one
//! this crate's tests and the gateway's end-to-end tests run against.

mod bots;
pub mod config;
mod inbound;
mod outbound;
mod plugin;
mod poll;
mod replay;
mod settings;
#[cfg(feature = "testing")]
pub mod testing;
mod webhook;

use switchboard_channel::Channel;

pub use bots::{Delivered, Telegram};
pub use config::{Config, TelegramBotConfig, TelegramMode};
pub use inbound::{
    ParsedUpdate, SECRET_HEADER, SecretError, decode, parse, parse_update, provider_message_id,
    verify_secret,
};
pub use outbound::{TelegramBot, TelegramBots};
pub use plugin::{KIND, TelegramKind};
pub use replay::refresh_telegram;
pub use settings::{BotIdentity, BotSettings};
/// A webhook body that is not a Telegram update (answered `400`), e.g. `not a Telegram update:
/// missing update_id`.
pub use switchboard_channel::ParseError;
pub use teloxide::types::Update;

/// The Telegram channel: the name of its section, webhooks and conversations.
pub const CHANNEL: Channel = Channel::named("telegram");

/// The largest webhook body accepted. An update carries one message (4,096 characters of text or
/// a 1,024-character caption, their entities, the message it replies to, file ids — never the
/// files), a few kilobytes; 1 MiB leaves room for anything Telegram adds.
pub const MAX_UPDATE_BYTES: usize = 1024 * 1024;
