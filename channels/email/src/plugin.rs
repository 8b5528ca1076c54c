//! The e-mail channel as a plug-in of the gateway: [`KIND`] is what the gateway registers.
//!
//! The gateway knows nothing of mail. It reads the `[email]` section and hands it to
//! [`EmailKind`], which validates it ([`Config::validate`]) and, when the section turns the
//! channel on, builds the running [`EmailPlugin`]: the SMTP sender (for replies, and for the
//! gateway's own notifications to staff), the inbound webhooks, the IMAP poller, and the hourly
//! cap on answers that keeps two robots from mailing each other forever.

use std::sync::Arc;

use futures::future::BoxFuture;
use switchboard_channel::{
    Channel, ChannelKind, ChannelPlugin, ConfigError, Dependency, Policy, Sender, StartContext,
    Webhook,
    plugin::{Replay, ReplayRequest, parse_checked, parse_section, section_of},
};

use crate::{
    CHANNEL, Config, SmtpSender,
    config::ENV,
    imap::{ImapPoller, MailboxUrl},
    replay,
    webhook::EmailWebhook,
};

/// The e-mail channel's kind: the entry point the gateway registers (`&switchboard_email::KIND`).
#[derive(Debug, Clone, Copy, Default)]
pub struct EmailKind;

/// The e-mail channel.
pub static KIND: EmailKind = EmailKind;

impl EmailKind {
    /// The section read and validated.
    fn config(&self, section: serde_json::Value) -> Result<Config, ConfigError> {
        parse_checked(CHANNEL, section, Config::validate)
    }
}

impl ChannelKind for EmailKind {
    fn channel(&self) -> Channel {
        CHANNEL
    }

    fn label(&self) -> &'static str {
        "E-mail"
    }

    fn env(&self) -> &'static [(&'static str, &'static str)] {
        ENV
    }

    fn defaults(&self) -> serde_json::Value {
        section_of(&Config::default())
    }

    fn validate(&self, section: serde_json::Value) -> Result<(), ConfigError> {
        self.config(section).map(|_| ())
    }

    /// The channel runs when `from` is set together with a way in or out (an SMTP URL, a
    /// provider's secret, the raw route's secret, an IMAP mailbox).
    fn build(
        &self,
        section: serde_json::Value,
    ) -> Result<Option<Arc<dyn ChannelPlugin>>, ConfigError> {
        let config = self.config(section)?;
        if !config.is_on() {
            return Ok(None);
        }
        Ok(Some(Arc::new(EmailPlugin::new(config)?)))
    }

    fn replay(
        &self,
        section: serde_json::Value,
        replay: &Replay<'_>,
    ) -> Result<ReplayRequest, String> {
        let config: Config = parse_section(CHANNEL, section).map_err(|e| e.to_string())?;
        replay::build(&config, replay)
    }
}

/// The running e-mail channel.
pub struct EmailPlugin {
    config: Config,
    /// Replies and staff notifications, when an SMTP server is configured.
    smtp: Option<Arc<SmtpSender>>,
    webhook: Arc<EmailWebhook>,
}

impl std::fmt::Debug for EmailPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailPlugin")
            .field("smtp", &self.smtp)
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

impl EmailPlugin {
    /// The channel `config` describes (validated). Fails when the SMTP settings cannot make a
    /// sender (a URL lettre cannot use, a `from` that is not a mailbox).
    pub fn new(config: Config) -> Result<EmailPlugin, ConfigError> {
        let smtp = match config.smtp() {
            Some(settings) => Some(Arc::new(SmtpSender::new(settings).map_err(|e| {
                ConfigError::new(CHANNEL, format!("cannot set up the SMTP sender: {e}"))
            })?)),
            None => None,
        };
        let webhook = Arc::new(EmailWebhook::new(&config));
        Ok(EmailPlugin {
            config,
            smtp,
            webhook,
        })
    }
}

impl ChannelPlugin for EmailPlugin {
    fn channel(&self) -> Channel {
        CHANNEL
    }

    fn policy(&self) -> Policy {
        Policy {
            answers_per_hour: Some(self.config.max_answers_per_hour),
        }
    }

    fn sender(&self) -> Option<Arc<dyn Sender>> {
        self.smtp.clone().map(|smtp| smtp as Arc<dyn Sender>)
    }

    /// Staff notifications go out through the same SMTP server as replies: their replies come
    /// back to the channel's own address.
    fn staff_mailer(&self) -> Option<Arc<dyn Sender>> {
        self.sender()
    }

    fn webhook(&self) -> Option<Arc<dyn Webhook>> {
        Some(self.webhook.clone())
    }

    /// The SMTP server replies and staff notifications go through, when there is one.
    fn dependencies(&self) -> Vec<Dependency> {
        let Some(smtp) = self.smtp.clone() else {
            return Vec::new();
        };
        vec![Dependency {
            name: "smtp",
            check: Arc::new(move || {
                let smtp = smtp.clone();
                Box::pin(async move { smtp.check().await })
            }),
        }]
    }

    /// The IMAP poller, when a mailbox is configured.
    fn start(&self, context: StartContext) -> Vec<BoxFuture<'static, ()>> {
        let (Some(url), Some(ours)) = (&self.config.imap.url, self.config.reply_address()) else {
            return Vec::new();
        };
        let url = match MailboxUrl::parse(url) {
            Ok(url) => url,
            Err(e) => {
                // Validation refused it before; this only guards against a section changed since.
                tracing::error!(error = %e, "the IMAP mailbox is not polled");
                return Vec::new();
            }
        };
        // Two pollers would fetch every mail twice: one instance polls.
        let lease = format!("imap:{}@{}:{}", url.user, url.host, url.mailbox);
        let (max_attachments, poll_interval, mark_seen) = (
            self.config.max_attachments,
            self.config.imap.poll_interval,
            self.config.imap.mark_seen,
        );
        let inbox = context.inbox;
        let polling = switchboard_channel::exclusive::exclusively(
            context.exclusive,
            lease,
            context.stop,
            move |stop| {
                ImapPoller {
                    url: url.clone(),
                    inbox: inbox.clone(),
                    ours: ours.clone(),
                    max_attachments,
                    poll_interval,
                    mark_seen,
                    stop,
                }
                .run()
            },
        );
        vec![Box::pin(polling)]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_channel_is_on_with_an_address_and_a_way_in_or_out() {
        assert!(KIND.build(json!({})).unwrap().is_none());
        assert!(
            KIND.build(json!({"from": "s@x.test"})).unwrap().is_none(),
            "an address alone"
        );
        let plugin = KIND
            .build(json!({"from": "S <s@x.test>", "raw_secret": "r"}))
            .unwrap()
            .unwrap();
        assert_eq!(plugin.channel(), CHANNEL);
        assert!(plugin.sender().is_none() && plugin.staff_mailer().is_none());
        assert!(plugin.webhook().is_some());
        assert_eq!(plugin.policy().answers_per_hour, Some(10));

        let plugin = KIND
            .build(json!({
                "from": "S <s@x.test>",
                "smtp_url": "smtps://u:p@smtp.x.test",
                "max_answers_per_hour": 3,
            }))
            .unwrap()
            .unwrap();
        assert!(plugin.sender().is_some());
        assert!(Arc::ptr_eq(
            &plugin.sender().unwrap(),
            &plugin.staff_mailer().unwrap()
        ));
        assert_eq!(plugin.policy().answers_per_hour, Some(3));
    }

    #[test]
    fn bad_sections_are_refused_with_the_section_named() {
        let error = KIND.validate(json!({"raw_secret": "r"})).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("[email] email.from (EMAIL_FROM)"),
            "{error}"
        );
        assert!(KIND.validate(json!({"unknown": 1})).is_err());
        let error = KIND
            .validate(json!({"from": "s@x.test", "imap": {"url": "imap://host"}}))
            .unwrap_err();
        assert!(error.to_string().contains("needs a user"), "{error}");
        let error = match KIND.build(json!({"from": "s@x.test", "smtp_url": "ftp://x"})) {
            Err(error) => error,
            Ok(_) => panic!("an unusable SMTP URL was accepted"),
        };
        assert!(
            error.to_string().contains("cannot set up the SMTP sender"),
            "{error}"
        );
        assert_eq!(KIND.defaults()["max_attachments"], 20);
        assert_eq!(KIND.env().len(), 8);
        assert_eq!(KIND.label(), "E-mail");
    }
}
