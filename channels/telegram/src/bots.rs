//! The configured bots as the gateway runs them: their clients, who they are on Telegram, their
//! webhook secrets, and the one way their updates reach the gateway ([`Telegram::deliver`]).
//!
//! Parsing group chats needs the bot's own username and user id (a message there counts only when
//! it mentions or answers the bot), which only `getMe` tells; [`Telegram::identify`] asks at
//! start-up and whenever a poller starts, and parsing uses what is known by then.
//!
//! Updates arrive by webhook (one per request) or by long polling (a batch per `getUpdates`),
//! but what happens to them is the same: normalized with the bot's identity, handed to the
//! gateway's [`Inbox`] (with the poller's position, when there is one), and their button presses
//! answered once stored. Both go through [`Telegram::deliver`] so that the two paths cannot drift
//! apart.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use switchboard_channel::{Checkpoint, Inbox, InboxError, Ingested};
use teloxide::types::Update;
use tracing::{info, warn};

use crate::{
    BotIdentity, BotSettings, TelegramBots,
    config::{Config, TelegramBotConfig, TelegramMode},
    parse_update,
};

/// The configured Telegram bots.
pub struct Telegram {
    bots: Arc<TelegramBots>,
    configs: HashMap<String, TelegramBotConfig>,
    identities: RwLock<HashMap<String, BotIdentity>>,
}

impl std::fmt::Debug for Telegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telegram")
            .field("bots", &self.bots)
            .finish_non_exhaustive()
    }
}

/// What became of delivered updates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// What the inbox did with their events (nothing, when they had none and there was no
    /// position to keep).
    pub ingested: Ingested,
    /// Why updates yielded no events, in their order (see [`crate::ParsedUpdate::ignored`]).
    pub ignored: Vec<&'static str>,
}

impl Telegram {
    /// The bots of the configuration; `None` when no bot is configured. Needs a Tokio runtime
    /// (each bot's throttle runs as a task).
    pub fn from_config(config: &Config) -> Result<Option<Telegram>, String> {
        let bots = config.all_bots();
        if bots.is_empty() {
            return Ok(None);
        }
        let settings = bots
            .iter()
            .map(|b| BotSettings {
                name: b.name.clone(),
                token: b.token.as_deref().unwrap_or_default().to_owned(),
                api_url: config.api_url.clone(),
            })
            .collect();
        let clients = TelegramBots::new(settings)
            .map_err(|e| format!("cannot set up the Telegram bots: {e}"))?;
        let identities = bots
            .iter()
            .map(|b| {
                let identity = BotIdentity {
                    name: b.name.clone(),
                    ..BotIdentity::default()
                };
                (b.name.clone(), identity)
            })
            .collect();
        Ok(Some(Telegram {
            bots: Arc::new(clients),
            configs: bots.into_iter().map(|b| (b.name.clone(), b)).collect(),
            identities: RwLock::new(identities),
        }))
    }

    /// The bots' clients (sender, media fetcher).
    pub fn bots(&self) -> &Arc<TelegramBots> {
        &self.bots
    }

    /// The names of the bots in a mode, in order.
    pub fn names(&self, mode: TelegramMode) -> Vec<String> {
        let mut names: Vec<String> = self
            .configs
            .values()
            .filter(|b| b.mode == mode)
            .map(|b| b.name.clone())
            .collect();
        names.sort();
        names
    }

    /// The webhook secret of a bot that receives webhooks; `None` for unknown or polling bots.
    pub fn webhook_secret(&self, name: &str) -> Option<&str> {
        self.configs
            .get(name)
            .filter(|b| b.mode == TelegramMode::Webhook)
            .and_then(|b| b.webhook_secret.as_deref())
    }

    /// What is known of a bot's identity.
    pub fn identity(&self, name: &str) -> BotIdentity {
        self.identities
            .read()
            .ok()
            .and_then(|ids| ids.get(name).cloned())
            .unwrap_or_else(|| BotIdentity {
                name: name.to_owned(),
                ..BotIdentity::default()
            })
    }

    /// Asks Telegram who a bot is (`getMe`), remembering the answer. Failures are logged: the bot
    /// then only reads commands in groups until it is known.
    pub async fn identify(&self, name: &str) {
        let Some(bot) = self.bots.bot(name) else {
            return;
        };
        match bot.get_me().await {
            Ok(identity) => {
                info!(bot = name, username = ?identity.username, "Telegram bot identified");
                if let Ok(mut ids) = self.identities.write() {
                    ids.insert(name.to_owned(), identity);
                }
            }
            Err(e) => warn!(bot = name, error = %e, "cannot ask Telegram who the bot is"),
        }
    }

    /// Answers an inline-button press so the user's client stops showing a spinner. Best effort,
    /// beside the request that brought it.
    pub fn answer_callback(&self, name: &str, callback_query_id: String) {
        let Some(bot) = self.bots.bot(name).cloned() else {
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = bot.answer_callback(&callback_query_id).await {
                warn!(error = %e, "cannot answer a Telegram button press");
            }
        });
    }

    /// Normalizes the updates of bot `name` and hands their events to `inbox` in one batch with
    /// `checkpoint`, then answers their button presses.
    ///
    /// The inbox is asked only when there is something to keep: events, or a position (a batch of
    /// updates that all yield nothing still moves a poller past them). Button presses are answered
    /// only once the batch is stored: an error leaves the provider to deliver them again.
    pub async fn deliver(
        &self,
        name: &str,
        updates: Vec<Update>,
        checkpoint: Option<Checkpoint>,
        inbox: &dyn Inbox,
    ) -> Result<Delivered, InboxError> {
        let identity = self.identity(name);
        let mut events = Vec::new();
        let mut callbacks = Vec::new();
        let mut ignored = Vec::new();
        for update in updates {
            let parsed = parse_update(update, &identity);
            events.extend(parsed.events);
            callbacks.extend(parsed.callback_query_id);
            ignored.extend(parsed.ignored);
        }
        let ingested = if events.is_empty() && checkpoint.is_none() {
            Ingested::default()
        } else {
            inbox.ingest(events, checkpoint).await?
        };
        for id in callbacks {
            self.answer_callback(name, id);
        }
        Ok(Delivered { ingested, ignored })
    }

    /// Registers the webhook of every bot in webhook mode at `{public_url}/webhooks/telegram/{name}`.
    /// Returns the URLs registered.
    pub async fn set_webhooks(&self, public_url: &str) -> Result<Vec<String>, String> {
        if !public_url.starts_with("https://") {
            return Err(format!(
                "Telegram only posts webhooks to HTTPS URLs; set server.public_url \
                 (SWITCHBOARD_PUBLIC_URL) to the gateway's https:// address, got {public_url:?}"
            ));
        }
        let mut registered = Vec::new();
        for name in self.names(TelegramMode::Webhook) {
            let (Some(bot), Some(secret)) = (self.bots.bot(&name), self.webhook_secret(&name))
            else {
                continue;
            };
            let url = format!(
                "{}/webhooks/telegram/{name}",
                public_url.trim_end_matches('/')
            );
            bot.set_webhook(&url, secret)
                .await
                .map_err(|e| format!("cannot register the webhook of bot {name}: {e}"))?;
            info!(bot = %name, %url, "Telegram webhook registered");
            registered.push(url);
        }
        Ok(registered)
    }
}
