//! The `[telegram]` section of the gateway's configuration, owned by this crate so that the
//! gateway can host the channel without knowing its keys.
//!
//! One bot comes from `token` (enough for most deployments, and settable from the environment
//! alone, see [`ENV`]); further bots are listed in `bots`. Each bot receives its updates either by
//! webhook (Telegram posts them to `/webhooks/telegram/{name}` with the bot's secret) or by long
//! polling. [`Config::validate`] refuses what cannot work before anything starts: a bot without a
//! token, a webhook without a secret (anyone could post forged updates), a name that cannot be a
//! URL segment or is used twice.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_channel::Secret;

/// Environment variables that set keys of the section (`[telegram]`): the one bot of `token`,
/// without a file.
pub const ENV: &[(&str, &str)] = &[
    ("TELEGRAM_BOT_TOKEN", "token"),
    ("TELEGRAM_BOT_NAME", "name"),
    ("TELEGRAM_WEBHOOK_SECRET", "webhook_secret"),
    ("TELEGRAM_API_URL", "api_url"),
    ("TELEGRAM_MODE", "mode"),
];

/// The Telegram channel: one bot from `token` (enough for most deployments, and settable from the
/// environment alone), and any number of further bots in `bots`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Bot API base URL.
    pub api_url: String,
    /// The bot token from @BotFather. Setting it turns the channel on with one bot called `name`.
    #[serde(deserialize_with = "Secret::optional")]
    pub token: Option<Secret>,
    /// The gateway's name for that bot: the account of its conversations and the end of its webhook
    /// URL, `/webhooks/telegram/{name}`.
    pub name: String,
    /// How updates arrive for that bot: `webhook` (Telegram posts them; needs a public HTTPS URL) or
    /// `polling` (the gateway asks with getUpdates; works behind NAT).
    pub mode: TelegramMode,
    /// The secret Telegram sends with every webhook (`X-Telegram-Bot-Api-Secret-Token`); required
    /// in webhook mode.
    #[serde(deserialize_with = "Secret::optional")]
    pub webhook_secret: Option<Secret>,
    /// Register the webhooks (`setWebhook` with `server.public_url`) at start-up.
    pub set_webhook_on_start: bool,
    /// How long one getUpdates call waits for updates in polling mode.
    #[serde(with = "humantime_serde")]
    pub poll_timeout: Duration,
    /// Further bots.
    pub bots: Vec<TelegramBotConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api_url: "https://api.telegram.org".into(),
            token: None,
            name: "bot".into(),
            mode: TelegramMode::Webhook,
            webhook_secret: None,
            set_webhook_on_start: false,
            poll_timeout: Duration::from_secs(30),
            bots: Vec::new(),
        }
    }
}

/// How a bot receives its updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    /// Telegram posts updates to `/webhooks/telegram/{name}`.
    #[default]
    Webhook,
    /// The gateway long-polls getUpdates.
    Polling,
}

/// A further Telegram bot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramBotConfig {
    /// The gateway's name for the bot (letters, digits, `_`, `-`).
    pub name: String,
    /// Its token.
    #[serde(deserialize_with = "Secret::optional")]
    pub token: Option<Secret>,
    /// How its updates arrive.
    pub mode: TelegramMode,
    /// Its webhook secret (webhook mode).
    #[serde(deserialize_with = "Secret::optional")]
    pub webhook_secret: Option<Secret>,
}

impl Config {
    /// Every configured bot: the one from `token` first, then `bots`.
    pub fn all_bots(&self) -> Vec<TelegramBotConfig> {
        let mut bots = Vec::new();
        if let Some(token) = &self.token {
            bots.push(TelegramBotConfig {
                name: self.name.clone(),
                token: Some(token.clone()),
                mode: self.mode,
                webhook_secret: self.webhook_secret.clone(),
            });
        }
        bots.extend(self.bots.iter().cloned());
        bots
    }

    /// One bot by name.
    pub fn bot(&self, name: &str) -> Option<TelegramBotConfig> {
        self.all_bots().into_iter().find(|b| b.name == name)
    }

    /// Checks the bots; the message says what is wrong with which one.
    pub fn validate(&self) -> Result<(), String> {
        let bots = self.all_bots();
        for (i, bot) in bots.iter().enumerate() {
            let valid_name = !bot.name.is_empty()
                && bot
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_name {
                return Err(format!(
                    "telegram bot name {:?} must be letters, digits, _ or -",
                    bot.name
                ));
            }
            if bot.token.is_none() {
                return Err(format!("telegram bot {:?} has no token", bot.name));
            }
            if bot.mode == TelegramMode::Webhook && bot.webhook_secret.is_none() {
                return Err(format!(
                    "telegram bot {:?} receives webhooks and needs a webhook_secret \
                     (TELEGRAM_WEBHOOK_SECRET), or mode = \"polling\"",
                    bot.name
                ));
            }
            if bots[..i].iter().any(|b| b.name == bot.name) {
                return Err(format!("telegram bot name {:?} is used twice", bot.name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(section: serde_json::Value) -> Config {
        serde_json::from_value(section).unwrap()
    }

    #[test]
    fn the_defaults_leave_the_channel_off_and_round_trip() {
        let defaults = Config::default();
        assert!(defaults.all_bots().is_empty());
        assert_eq!(defaults.validate(), Ok(()));
        let section = serde_json::to_value(&defaults).unwrap();
        assert_eq!(section["poll_timeout"], "30s");
        assert_eq!(section["mode"], "webhook");
        assert_eq!(section["api_url"], "https://api.telegram.org");
        let again = parse(section);
        assert_eq!(again.poll_timeout, Duration::from_secs(30));
        assert_eq!(again.name, "bot");
    }

    #[test]
    fn a_token_makes_one_bot_and_bots_add_more() {
        let config = parse(json!({
            "token": "123:abc",
            "name": "support",
            "webhook_secret": "s3cret",
            "poll_timeout": "5s",
            "bots": [{"name": "sales", "token": "456:def", "mode": "polling"}]
        }));
        assert_eq!(config.poll_timeout, Duration::from_secs(5));
        let bots = config.all_bots();
        let names: Vec<_> = bots.iter().map(|b| (b.name.as_str(), b.mode)).collect();
        assert_eq!(
            names,
            [
                ("support", TelegramMode::Webhook),
                ("sales", TelegramMode::Polling)
            ]
        );
        assert_eq!(
            config.bot("support").unwrap().webhook_secret.as_deref(),
            Some("s3cret")
        );
        assert!(config.bot("sales").unwrap().webhook_secret.is_none());
        assert!(config.bot("other").is_none());
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn empty_secrets_are_no_secrets_and_unknown_keys_are_refused() {
        let config = parse(json!({"token": "", "webhook_secret": " "}));
        assert!(config.token.is_none() && config.webhook_secret.is_none());
        assert!(config.all_bots().is_empty());
        assert!(serde_json::from_value::<Config>(json!({"tokn": "x"})).is_err());
        assert!(serde_json::from_value::<Config>(json!({"mode": "push"})).is_err());
        assert!(
            serde_json::from_value::<Config>(json!({"bots": [{"name": "a", "secret": "x"}]}))
                .is_err()
        );
    }

    #[test]
    fn unusable_bots_are_refused_with_the_reason() {
        let refused = |section: serde_json::Value| parse(section).validate().unwrap_err();
        assert_eq!(
            refused(json!({"token": "1:a"})),
            "telegram bot \"bot\" receives webhooks and needs a webhook_secret \
             (TELEGRAM_WEBHOOK_SECRET), or mode = \"polling\""
        );
        assert_eq!(
            refused(json!({"token": "1:a", "name": "sup port", "mode": "polling"})),
            "telegram bot name \"sup port\" must be letters, digits, _ or -"
        );
        assert_eq!(
            refused(json!({"token": "1:a", "name": "", "mode": "polling"})),
            "telegram bot name \"\" must be letters, digits, _ or -"
        );
        assert_eq!(
            refused(json!({"bots": [{"name": "sales", "mode": "polling"}]})),
            "telegram bot \"sales\" has no token"
        );
        assert_eq!(
            refused(json!({
                "token": "1:a", "mode": "polling",
                "bots": [{"name": "bot", "token": "2:b", "mode": "polling"}]
            })),
            "telegram bot name \"bot\" is used twice"
        );
        // Polling needs no secret.
        assert_eq!(
            parse(json!({"token": "1:a", "mode": "polling"})).validate(),
            Ok(())
        );
    }
}
