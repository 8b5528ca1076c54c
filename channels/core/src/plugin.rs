//! The plug-in contract between a channel crate and the gateway that hosts it.
//!
//! A channel crate exports one [`ChannelKind`]: its name, its configuration section (parsed and
//! validated in the crate), and how to build the running [`ChannelPlugin`] from that section.
//! The plug-in then offers what the channel has: a [`Sender`] for replies, a [`MediaFetcher`] for
//! files whose provider links expire, [`Webhook`]s the gateway mounts under
//! `/webhooks/{channel}/…`, background tasks (pollers) that feed the gateway's [`Inbox`], the
//! signer `switchboard replay` uses, and commands (`switchboard {channel} …`).
//!
//! The gateway keeps everything that is not the provider's: storage, deduplication, limits, the
//! conversation pipeline, the HTTP server. A plug-in never sees those; it sees the [`Inbox`].

use std::{path::Path, sync::Arc};

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde::{Serialize, de::DeserializeOwned};
use tokio_util::sync::CancellationToken;

use crate::{Channel, Inbox, MediaFetcher, Sender, webhook::Webhook};

/// A kind of channel the gateway can run: the entry point of a channel crate.
pub trait ChannelKind: Send + Sync + 'static {
    /// The channel: its name is also the name of its configuration section (`[whatsapp]`) and
    /// of its webhook path (`/webhooks/whatsapp`).
    fn channel(&self) -> Channel;

    /// The channel's name for people ("WhatsApp"), shown on the dashboard.
    fn label(&self) -> &'static str {
        self.channel().as_str()
    }

    /// Environment variables that set keys of the section: `(variable, key within the section)`,
    /// e.g. `("WHATSAPP_APP_SECRET", "app_secret")`. An empty variable is unset.
    fn env(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// The section with every key at its default, as documented in the example configuration.
    fn defaults(&self) -> serde_json::Value;

    /// Checks a section (after the environment was applied) without starting anything.
    fn validate(&self, section: serde_json::Value) -> Result<(), ConfigError>;

    /// The running channel configured by `section`; `None` when the section leaves it off.
    /// Called inside the gateway's async runtime (a channel may start tasks of its own).
    fn build(
        &self,
        section: serde_json::Value,
    ) -> Result<Option<Arc<dyn ChannelPlugin>>, ConfigError>;

    /// The request `switchboard replay` posts for a recorded payload of this channel, signed the
    /// way the provider signs.
    fn replay(
        &self,
        section: serde_json::Value,
        replay: &Replay<'_>,
    ) -> Result<ReplayRequest, String> {
        let _ = (section, replay);
        Err(format!(
            "the {} channel has no recorded payloads to replay",
            self.channel()
        ))
    }

    /// The commands of `switchboard {channel} …`, with a line of help each.
    fn commands(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// Runs `switchboard {channel} {command}`; returns what to print.
    fn run_command<'a>(
        &'a self,
        section: serde_json::Value,
        command: &'a str,
        host: &'a CommandHost,
    ) -> BoxFuture<'a, Result<String, String>> {
        let _ = (section, host);
        Box::pin(async move {
            Err(format!(
                "the {} channel has no command {command:?}",
                self.channel()
            ))
        })
    }
}

/// What a command may need of the gateway's configuration.
#[derive(Debug, Clone, Default)]
pub struct CommandHost {
    /// The gateway's public URL (`server.public_url`), when configured.
    pub public_url: Option<String>,
}

/// A running channel.
#[async_trait]
pub trait ChannelPlugin: Send + Sync + 'static {
    /// Which channel this is.
    fn channel(&self) -> Channel;

    /// How the gateway treats the channel's conversations.
    fn policy(&self) -> Policy {
        Policy::default()
    }

    /// Sends replies, when the channel can.
    fn sender(&self) -> Option<Arc<dyn Sender>> {
        None
    }

    /// Downloads the files users send, when provider links expire.
    fn fetcher(&self) -> Option<Arc<dyn MediaFetcher>> {
        None
    }

    /// Sends the gateway's own mail to staff (notifications experts answer by replying), when
    /// this channel is e-mail with a way out.
    fn staff_mailer(&self) -> Option<Arc<dyn Sender>> {
        None
    }

    /// The channel's inbound webhooks; `None` when it receives none.
    fn webhook(&self) -> Option<Arc<dyn Webhook>> {
        None
    }

    /// The services the channel depends on (an SMTP relay), checked by the gateway's health
    /// report. Each check connects and answers whether the service works; the gateway bounds its
    /// time.
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }

    /// Starts what the channel runs beside the server (pollers, start-up registrations): each
    /// returned task ends when `context.stop` is cancelled, or earlier when its work is done (a
    /// registration); an ended task is not a failure.
    fn start(&self, context: StartContext) -> Vec<BoxFuture<'static, ()>> {
        let _ = context;
        Vec::new()
    }
}

/// A service a channel depends on, for the health report.
#[derive(Clone)]
pub struct Dependency {
    /// Its name in the report (`smtp`).
    pub name: &'static str,
    /// Connects to it: `Err` says what is wrong, without secrets.
    pub check: Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>,
}

impl std::fmt::Debug for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependency")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What a channel's background tasks get from the gateway.
#[derive(Clone)]
pub struct StartContext {
    /// Where inbound messages go.
    pub inbox: Arc<dyn Inbox>,
    /// The gateway's public base URL (webhook registrations).
    pub public_url: String,
    /// Cancelled at shutdown.
    pub stop: CancellationToken,
    /// Leases on work only one instance may do at a time (pollers): see [`crate::exclusive`].
    pub exclusive: Arc<dyn crate::Exclusive>,
}

/// How the gateway treats a channel's conversations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// At most this many messages of one contact are answered per hour; further ones are stored
    /// unanswered (a guard against mail loops). `None`: no such cap.
    pub answers_per_hour: Option<u32>,
}

/// A recorded payload to replay.
#[derive(Debug, Clone)]
pub struct Replay<'a> {
    /// The file (`webhooks/{channel}/…`); its name may tell which route it is for.
    pub file: &'a Path,
    /// Its bytes.
    pub body: &'a [u8],
    /// Give the messages new ids, so the same file can be replayed again and again.
    pub new_ids: bool,
    /// Which of the channel's accounts to post to (a Telegram bot's name), when it has several.
    pub account: Option<&'a str>,
    /// The time to move the payload's timestamps to (seconds since the epoch).
    pub now: i64,
}

/// A request `switchboard replay` posts.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// The path below the gateway's base URL, e.g. `/webhooks/whatsapp`.
    pub path: String,
    /// Headers (content type, signature).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A configuration section that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[{section}] {message}")]
pub struct ConfigError {
    /// The section.
    pub section: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error in `channel`'s section.
    pub fn new(channel: Channel, message: impl Into<String>) -> ConfigError {
        ConfigError {
            section: channel.to_string(),
            message: message.into(),
        }
    }
}

/// Reads a channel's section into its typed configuration (unknown keys are refused by the
/// type's `deny_unknown_fields`).
pub fn parse_section<T: DeserializeOwned>(
    channel: Channel,
    section: serde_json::Value,
) -> Result<T, ConfigError> {
    serde_json::from_value(section).map_err(|e| ConfigError::new(channel, e.to_string()))
}

/// Reads a channel's section and checks what its type cannot (`check`'s message becomes the
/// error, prefixed with the section).
pub fn parse_checked<T: DeserializeOwned>(
    channel: Channel,
    section: serde_json::Value,
    check: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, ConfigError> {
    let config: T = parse_section(channel, section)?;
    check(&config).map_err(|message| ConfigError::new(channel, message))?;
    Ok(config)
}

/// A typed configuration's defaults as a section.
pub fn section_of<T: Serialize>(config: &T) -> serde_json::Value {
    serde_json::to_value(config).unwrap_or(serde_json::Value::Null)
}
