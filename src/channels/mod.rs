//! The channels the gateway can reach out through: for each configured channel, its
//! [`Sender`] (outbound messages, typing indicators) and, where provider links to media expire,
//! its [`MediaFetcher`].
//!
//! The pipeline and the jobs only ever ask this registry for "the sender of channel X"; which
//! provider crate stands behind it is decided here, from the configuration, and nowhere else.
//! Channels that need more than a sender — Telegram's bots poll, answer button presses and
//! register webhooks — keep that in a module of their own ([`telegram`]).

pub mod email;
pub mod imap_poll;
pub mod telegram;
pub mod telegram_poll;

use std::{collections::HashMap, sync::Arc};

use switchboard_channel::{Channel, MediaFetcher, Sender};

use crate::config::Config;
use telegram::Telegram;

/// The configured channels' connectors. Cheap to clone.
#[derive(Clone, Default)]
pub struct Channels {
    senders: HashMap<Channel, Arc<dyn Sender>>,
    fetchers: HashMap<Channel, Arc<dyn MediaFetcher>>,
    telegram: Option<Arc<Telegram>>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("senders", &self.senders.keys().collect::<Vec<_>>())
            .field("fetchers", &self.fetchers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Channels {
    /// The connectors of every channel the configuration turns on. Call inside the async runtime
    /// (Telegram's rate limiter runs a task).
    pub fn from_config(config: &Config, http: &reqwest::Client) -> anyhow::Result<Self> {
        let mut channels = Channels::default();
        if config.whatsapp.enabled() {
            let settings = Arc::new(config.whatsapp.settings());
            if settings.access_token.is_none()
                && settings.numbers.iter().all(|n| n.access_token.is_none())
            {
                tracing::warn!(
                    "WhatsApp is on but no access token is configured: replies cannot be sent \
                     (set WHATSAPP_ACCESS_TOKEN or whatsapp.access_token)"
                );
            }
            channels.add_sender(
                Channel::Whatsapp,
                Arc::new(switchboard_whatsapp::WhatsappSender::new(
                    settings.clone(),
                    http.clone(),
                )),
            );
            channels.add_fetcher(
                Channel::Whatsapp,
                Arc::new(switchboard_whatsapp::WhatsappMedia::new(
                    settings,
                    http.clone(),
                )),
            );
        }
        if let Some(settings) = config.email.smtp() {
            let sender = switchboard_email::SmtpSender::new(settings)
                .map_err(|e| anyhow::anyhow!("cannot set up the SMTP sender: {e}"))?;
            channels.add_sender(Channel::Email, Arc::new(sender));
        }
        if let Some(telegram) = Telegram::from_config(&config.telegram)? {
            let telegram = Arc::new(telegram);
            channels.add_sender(Channel::Telegram, telegram.bots().clone());
            channels.add_fetcher(Channel::Telegram, telegram.bots().clone());
            channels.telegram = Some(telegram);
        }
        Ok(channels)
    }

    /// The Telegram bots, when the channel is on.
    pub fn telegram(&self) -> Option<&Arc<Telegram>> {
        self.telegram.as_ref()
    }

    /// Adds (or replaces) a channel's sender.
    pub fn add_sender(&mut self, channel: Channel, sender: Arc<dyn Sender>) {
        self.senders.insert(channel, sender);
    }

    /// Adds (or replaces) a channel's media fetcher.
    pub fn add_fetcher(&mut self, channel: Channel, fetcher: Arc<dyn MediaFetcher>) {
        self.fetchers.insert(channel, fetcher);
    }

    /// The sender of a channel, if it is configured.
    pub fn sender(&self, channel: Channel) -> Option<&Arc<dyn Sender>> {
        self.senders.get(&channel)
    }

    /// The media fetcher of a channel, if it has one.
    pub fn fetcher(&self, channel: Channel) -> Option<&Arc<dyn MediaFetcher>> {
        self.fetchers.get(&channel)
    }
}
