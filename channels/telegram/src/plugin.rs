//! The Telegram channel as a plug-in of the gateway: [`KIND`] reads the `[telegram]` section and
//! builds the running channel, which offers the bots as sender and media fetcher, the webhook of
//! the bots in webhook mode, and at start-up what the bots need beside the server (who they are,
//! their webhook registrations, a poller for each bot in polling mode). It also signs replays
//! and runs `switchboard telegram set-webhook`.

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, future::BoxFuture};
use switchboard_channel::{
    Channel, ChannelKind, ChannelPlugin, ConfigError, MediaFetcher, Sender, StartContext, Webhook,
    plugin::{CommandHost, Replay, ReplayRequest, parse_checked, section_of},
};

use switchboard_channel::exclusive::exclusively;

use crate::{CHANNEL, Config, TelegramMode, bots::Telegram, poll::Poller};

/// The Telegram channel's entry point.
#[derive(Debug, Clone, Copy, Default)]
pub struct TelegramKind;

/// The Telegram channel, for the gateway's registry.
pub static KIND: TelegramKind = TelegramKind;

/// The command that registers the webhooks.
const SET_WEBHOOK: &str = "set-webhook";

impl TelegramKind {
    /// The section, typed and checked.
    fn config(&self, section: serde_json::Value) -> Result<Config, ConfigError> {
        parse_checked(CHANNEL, section, Config::validate)
    }
}

impl ChannelKind for TelegramKind {
    fn channel(&self) -> Channel {
        CHANNEL
    }

    fn env(&self) -> &'static [(&'static str, &'static str)] {
        crate::config::ENV
    }

    fn defaults(&self) -> serde_json::Value {
        section_of(&Config::default())
    }

    fn validate(&self, section: serde_json::Value) -> Result<(), ConfigError> {
        self.config(section).map(drop)
    }

    fn build(
        &self,
        section: serde_json::Value,
    ) -> Result<Option<Arc<dyn ChannelPlugin>>, ConfigError> {
        let config = self.config(section)?;
        let Some(telegram) =
            Telegram::from_config(&config).map_err(|message| ConfigError::new(CHANNEL, message))?
        else {
            return Ok(None);
        };
        Ok(Some(Arc::new(TelegramPlugin {
            telegram: Arc::new(telegram),
            set_webhook_on_start: config.set_webhook_on_start,
            poll_timeout: config.poll_timeout,
        })))
    }

    fn replay(
        &self,
        section: serde_json::Value,
        replay: &Replay<'_>,
    ) -> Result<ReplayRequest, String> {
        let config = self.config(section).map_err(|e| e.to_string())?;
        crate::replay::request(&config, replay)
    }

    fn commands(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            SET_WEBHOOK,
            "Register the webhook of every bot in webhook mode with Telegram, at \
             <server.public_url>/webhooks/telegram/<name>",
        )]
    }

    fn run_command<'a>(
        &'a self,
        section: serde_json::Value,
        command: &'a str,
        host: &'a CommandHost,
    ) -> BoxFuture<'a, Result<String, String>> {
        async move {
            if command != SET_WEBHOOK {
                return Err(format!("the {CHANNEL} channel has no command {command:?}"));
            }
            let config = self.config(section).map_err(|e| e.to_string())?;
            set_webhook(&config, host.public_url.as_deref()).await
        }
        .boxed()
    }
}

/// `switchboard telegram set-webhook`: one line per registered URL.
async fn set_webhook(config: &Config, public_url: Option<&str>) -> Result<String, String> {
    let Some(telegram) = Telegram::from_config(config)? else {
        return Err(
            "no Telegram bot is configured (TELEGRAM_BOT_TOKEN or telegram.token)".to_owned(),
        );
    };
    let Some(public_url) = public_url else {
        return Err(
            "set server.public_url (SWITCHBOARD_PUBLIC_URL) to the gateway's public \
                    https:// address: Telegram posts the updates there"
                .to_owned(),
        );
    };
    let registered = telegram.set_webhooks(public_url).await?;
    if registered.is_empty() {
        return Err("no bot is in webhook mode".to_owned());
    }
    Ok(registered
        .iter()
        .map(|url| format!("registered {url}"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The running Telegram channel.
struct TelegramPlugin {
    telegram: Arc<Telegram>,
    set_webhook_on_start: bool,
    poll_timeout: Duration,
}

impl ChannelPlugin for TelegramPlugin {
    fn channel(&self) -> Channel {
        CHANNEL
    }

    fn sender(&self) -> Option<Arc<dyn Sender>> {
        Some(self.telegram.bots().clone())
    }

    fn fetcher(&self) -> Option<Arc<dyn MediaFetcher>> {
        Some(self.telegram.bots().clone())
    }

    fn webhook(&self) -> Option<Arc<dyn Webhook>> {
        Some(self.telegram.clone())
    }

    /// Who the webhook bots are (for group chats) and, when asked, their registrations, in one
    /// task that ends when done; a poller for each bot in polling mode, until stopped.
    fn start(&self, context: StartContext) -> Vec<BoxFuture<'static, ()>> {
        let mut tasks = Vec::new();
        let webhook_bots = self.telegram.names(TelegramMode::Webhook);
        if !webhook_bots.is_empty() {
            let telegram = self.telegram.clone();
            let register = self.set_webhook_on_start;
            let public_url = context.public_url.clone();
            let stop = context.stop.clone();
            let setup = async move {
                for name in &webhook_bots {
                    telegram.identify(name).await;
                }
                if register && let Err(e) = telegram.set_webhooks(&public_url).await {
                    tracing::error!(error = %e, "cannot register the Telegram webhooks");
                }
            };
            tasks.push(
                async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = setup => {}
                    }
                }
                .boxed(),
            );
        }
        // Telegram answers a second getUpdates caller with 409 Conflict: one instance polls.
        for bot in self.telegram.names(TelegramMode::Polling) {
            let (telegram, inbox, timeout) = (
                self.telegram.clone(),
                context.inbox.clone(),
                self.poll_timeout,
            );
            let lease = format!("telegram:{bot}:polling");
            let polling = exclusively(
                context.exclusive.clone(),
                lease,
                context.stop.clone(),
                move |stop| {
                    Poller {
                        telegram: telegram.clone(),
                        bot: bot.clone(),
                        inbox: inbox.clone(),
                        timeout,
                        stop,
                    }
                    .run()
                },
            );
            tasks.push(polling.boxed());
        }
        tasks
    }
}

#[cfg(test)]
mod tests;
