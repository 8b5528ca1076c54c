//! The WhatsApp channel as a plug-in of the gateway: [`KIND`] is what the gateway registers.
//!
//! From the `[whatsapp]` section it builds, when `app_secret` is set, a running channel that
//! offers the Graph API sender ([`WhatsappSender`]), the media downloader ([`WhatsappMedia`]) and
//! the webhook ([`WhatsappWebhook`]). WhatsApp needs nothing running beside the server: Meta
//! pushes everything to the webhook.

use std::{sync::Arc, time::Duration};

use switchboard_channel::{
    Channel, ChannelKind, ChannelPlugin, ConfigError, MediaFetcher, Sender, Webhook,
    plugin::{Replay, ReplayRequest, section_of},
};

use crate::{
    CHANNEL, Config, WhatsappMedia, WhatsappSender, config::ENV, replay, webhook::WhatsappWebhook,
};

/// How long a connection to the Graph API (or the media host) may take to open: the gateway's
/// own outbound requests used the same bound.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The WhatsApp Business Cloud API channel kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct WhatsappKind;

/// The entry point the gateway registers (`&switchboard_whatsapp::KIND`).
pub static KIND: WhatsappKind = WhatsappKind;

impl ChannelKind for WhatsappKind {
    fn channel(&self) -> Channel {
        CHANNEL
    }

    fn env(&self) -> &'static [(&'static str, &'static str)] {
        ENV
    }

    fn defaults(&self) -> serde_json::Value {
        section_of(&Config::default())
    }

    fn validate(&self, section: serde_json::Value) -> Result<(), ConfigError> {
        Config::from_section(section).map(drop)
    }

    fn build(
        &self,
        section: serde_json::Value,
    ) -> Result<Option<Arc<dyn ChannelPlugin>>, ConfigError> {
        build(Config::from_section(section)?)
    }

    fn replay(
        &self,
        section: serde_json::Value,
        replay: &Replay<'_>,
    ) -> Result<ReplayRequest, String> {
        let config = Config::from_section(section).map_err(|e| e.to_string())?;
        replay::request(&config, replay)
    }
}

/// The running channel of a checked configuration; `None` when it is off.
pub(crate) fn build(config: Config) -> Result<Option<Arc<dyn ChannelPlugin>>, ConfigError> {
    let (Some(app_secret), Some(verify_token)) = (&config.app_secret, &config.verify_token) else {
        // `Config::validate` refuses one without the other: off means neither.
        return Ok(None);
    };
    let settings = Arc::new(config.settings());
    if settings.access_token.is_none() && settings.numbers.iter().all(|n| n.access_token.is_none())
    {
        // Deliveries are still received and stored; only the answers cannot go out.
        tracing::warn!(
            "WhatsApp is on but no access token is configured: replies cannot be sent \
             (set WHATSAPP_ACCESS_TOKEN or whatsapp.access_token)"
        );
    }
    let http = reqwest::Client::builder()
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| {
            ConfigError::new(
                CHANNEL,
                format!(
                    "cannot build the HTTP client: {}",
                    switchboard_channel::error_chain(&e)
                ),
            )
        })?;
    Ok(Some(Arc::new(Whatsapp {
        sender: Arc::new(WhatsappSender::new(settings.clone(), http.clone())),
        media: Arc::new(WhatsappMedia::new(settings, http)),
        webhook: Arc::new(WhatsappWebhook::new(
            app_secret.clone(),
            verify_token.clone(),
        )),
    })))
}

/// The running WhatsApp channel.
struct Whatsapp {
    sender: Arc<WhatsappSender>,
    media: Arc<WhatsappMedia>,
    webhook: Arc<WhatsappWebhook>,
}

impl ChannelPlugin for Whatsapp {
    fn channel(&self) -> Channel {
        CHANNEL
    }

    fn sender(&self) -> Option<Arc<dyn Sender>> {
        Some(self.sender.clone())
    }

    fn fetcher(&self) -> Option<Arc<dyn MediaFetcher>> {
        Some(self.media.clone())
    }

    fn webhook(&self) -> Option<Arc<dyn Webhook>> {
        Some(self.webhook.clone())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_kind_names_its_section_and_variables() {
        assert_eq!(KIND.channel(), Channel::named("whatsapp"));
        assert_eq!(KIND.channel().as_str(), "whatsapp");
        assert!(KIND.env().contains(&("WHATSAPP_APP_SECRET", "app_secret")));
        assert_eq!(KIND.env().len(), 5);
        assert!(KIND.validate(KIND.defaults()).is_ok());
        assert!(KIND.validate(json!({"verify_token": "t"})).is_err());
    }

    #[test]
    fn off_until_the_app_secret_is_set() {
        assert!(KIND.build(json!({})).unwrap().is_none());
        assert!(KIND.build(KIND.defaults()).unwrap().is_none());
        assert!(KIND.build(json!({"app_secret": "s"})).is_err());
        let plugin = KIND
            .build(json!({"app_secret": "s", "verify_token": "t"}))
            .unwrap()
            .unwrap();
        assert_eq!(plugin.channel(), CHANNEL);
        assert!(plugin.sender().is_some());
        assert!(plugin.fetcher().is_some());
        assert!(plugin.webhook().is_some());
        assert!(plugin.staff_mailer().is_none());
        assert_eq!(plugin.policy(), switchboard_channel::Policy::default());
    }
}
