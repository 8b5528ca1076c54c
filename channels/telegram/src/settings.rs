//! What the channel needs to know about each bot.

/// One bot's settings. The gateway builds them from its configuration.
#[derive(Debug, Clone)]
pub struct BotSettings {
    /// The gateway's name for the bot: the account of its conversations and the last segment of
    /// its webhook URL (`/webhooks/telegram/{name}`).
    pub name: String,
    /// The token from @BotFather.
    pub token: String,
    /// Bot API base URL, e.g. `https://api.telegram.org` (a fake server in tests).
    pub api_url: String,
}

/// Who the bot is on Telegram, as far as reading group chats needs: messages there count only
/// when they mention the bot, reply to it, or are commands for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotIdentity {
    /// The gateway's name for the bot (see [`BotSettings::name`]).
    pub name: String,
    /// The bot's username without `@`, once known (`getMe`).
    pub username: Option<String>,
    /// The bot's user id, once known (`getMe`).
    pub user_id: Option<u64>,
}
