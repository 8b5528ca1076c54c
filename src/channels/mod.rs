//! The channel registry: the one place in the gateway that names the channel crates.
//!
//! Each crate under `channels/` exports a [`ChannelKind`] (its configuration section, webhooks,
//! pollers, sender, replay signer, commands). [`KINDS`] lists them; everything else in the gateway
//! asks this module for "the sender of channel X" or "the webhook of channel X" and never knows
//! which provider stands behind it. Adding a channel is a new crate and a line in [`KINDS`].
//!
//! The website chat ([`Channel::WEB`]) is not a plug-in: it is the gateway's own API (`http::chat`),
//! and its replies are delivered by being stored and published.

use std::{collections::BTreeMap, sync::Arc};

use switchboard_channel::{
    Channel, ChannelKind, ChannelPlugin, MediaFetcher, Policy, Sender, Webhook, plugin::ConfigError,
};

use crate::config::Config;

/// Every channel the gateway can run, in the order the example configuration documents them.
pub static KINDS: &[&dyn ChannelKind] = &[
    &switchboard_whatsapp::KIND,
    &switchboard_telegram::KIND,
    &switchboard_email::KIND,
    &switchboard_api::KIND,
];

/// The kind of channel with this name (also its section's and webhook path's name).
pub fn kind(name: &str) -> Option<&'static dyn ChannelKind> {
    KINDS.iter().copied().find(|k| k.channel().as_str() == name)
}

/// A channel's name for people.
pub fn label(channel: Channel) -> &'static str {
    if channel == Channel::WEB {
        return "Web chat";
    }
    KINDS
        .iter()
        .find(|k| k.channel() == channel)
        .map_or(channel.as_str(), |k| k.label())
}

/// A channel's section of the configuration (empty when the file has none), as the crate reads
/// it.
pub fn section(config: &Config, kind: &dyn ChannelKind) -> serde_json::Value {
    config
        .channels
        .get(kind.channel().as_str())
        .and_then(|table| serde_json::to_value(table).ok())
        .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()))
}

/// Completes a loaded configuration with the channels' environment variables (an empty variable
/// is unset) and checks every channel section: a section no channel owns is a typo, refused like
/// an unknown key.
pub fn configure(
    config: &mut Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for kind in KINDS {
        for (var, key) in kind.env() {
            if let Some(value) = env(var).filter(|v| !v.is_empty()) {
                config.set(
                    &format!("{}.{key}", kind.channel()),
                    toml::Value::String(value),
                );
            }
        }
    }
    validate(config)
}

/// Checks every channel section of a configuration.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    for name in config.channels.keys() {
        if kind(name).is_none() {
            let known: Vec<&str> = KINDS.iter().map(|k| k.channel().as_str()).collect();
            return Err(ConfigError {
                section: name.clone(),
                message: format!(
                    "unknown section; the configuration has the gateway's sections and one per \
                     channel ({})",
                    known.join(", ")
                ),
            });
        }
    }
    for kind in KINDS {
        kind.validate(section(config, *kind))?;
    }
    Ok(())
}

/// The running channels. Cheap to clone.
#[derive(Clone, Default)]
pub struct Channels {
    plugins: BTreeMap<Channel, Arc<dyn ChannelPlugin>>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.plugins.keys()).finish()
    }
}

impl Channels {
    /// Every channel the configuration turns on. Call inside the async runtime (some channels
    /// start tasks of their own, like Telegram's rate limiter).
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        validate(config)?;
        let mut plugins = BTreeMap::new();
        for kind in KINDS {
            if let Some(plugin) = kind.build(section(config, *kind))? {
                plugins.insert(kind.channel(), plugin);
            }
        }
        Ok(Channels { plugins })
    }

    /// The running channels.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<dyn ChannelPlugin>> {
        self.plugins.values()
    }

    /// A running channel by name.
    pub fn by_name(&self, name: &str) -> Option<&Arc<dyn ChannelPlugin>> {
        self.plugins
            .iter()
            .find(|(channel, _)| channel.as_str() == name)
            .map(|(_, plugin)| plugin)
    }

    /// The sender of a channel, if it can send.
    pub fn sender(&self, channel: Channel) -> Option<Arc<dyn Sender>> {
        self.plugins.get(&channel)?.sender()
    }

    /// The media fetcher of a channel, if its provider links expire.
    pub fn fetcher(&self, channel: Channel) -> Option<Arc<dyn MediaFetcher>> {
        self.plugins.get(&channel)?.fetcher()
    }

    /// How the gateway treats a channel's conversations.
    pub fn policy(&self, channel: Channel) -> Policy {
        self.plugins
            .get(&channel)
            .map(|p| p.policy())
            .unwrap_or_default()
    }

    /// A channel's webhooks, when it is running and receives any.
    pub fn webhook(&self, name: &str) -> Option<Arc<dyn Webhook>> {
        self.by_name(name)?.webhook()
    }

    /// Sends the gateway's mail to staff, when a running channel can.
    pub fn staff_mailer(&self) -> Option<Arc<dyn Sender>> {
        self.plugins.values().find_map(|p| p.staff_mailer())
    }

    /// The services the running channels depend on, for the health report.
    pub fn dependencies(&self) -> Vec<(Channel, switchboard_channel::Dependency)> {
        self.plugins
            .iter()
            .flat_map(|(channel, plugin)| {
                plugin
                    .dependencies()
                    .into_iter()
                    .map(move |dependency| (*channel, dependency))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_unique_name_and_defaults_that_validate() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.channel().as_str()).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "two channels share a name");
        assert!(!names.contains(&Channel::WEB.as_str()));
        for kind in KINDS {
            kind.validate(kind.defaults())
                .unwrap_or_else(|e| panic!("{}: {e}", kind.channel()));
            assert!(
                kind.build(kind.defaults()).unwrap().is_none(),
                "{} must be off until configured",
                kind.channel()
            );
        }
    }

    /// Every key of every channel's section is documented in the shipped example, and the
    /// example's channel sections are valid.
    #[test]
    fn the_example_documents_every_channel_key() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("switchboard.example.toml");
        let example = std::fs::read_to_string(&path).unwrap();
        let mut config = Config::load(Some(&path), |_| None).unwrap();
        configure(&mut config, |_| None).unwrap();
        fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
            if let serde_json::Value::Object(map) = value {
                for (key, inner) in map {
                    match inner {
                        serde_json::Value::Object(_) => keys(inner, out),
                        serde_json::Value::Array(items)
                            if items.first().is_some_and(serde_json::Value::is_object) =>
                        {
                            items.iter().for_each(|item| keys(item, out));
                        }
                        _ => out.push(key.clone()),
                    }
                }
            }
        }
        let mut missing = Vec::new();
        for kind in KINDS {
            let mut all = Vec::new();
            keys(&kind.defaults(), &mut all);
            let section = kind.channel();
            for key in all {
                // A key, or a table (an optional one, a list of tables) by its header.
                let headers = [format!("[{section}.{key}]"), format!("[[{section}.{key}]]")];
                let documented = example
                    .lines()
                    .map(|l| l.trim_start_matches(['#', ' ']))
                    .any(|l| {
                        l.starts_with(&format!("{key} ="))
                            || l.starts_with(&format!("{key}="))
                            || headers.iter().any(|h| l.trim_end() == h)
                    });
                if !documented {
                    missing.push(format!("{}.{key}", kind.channel()));
                }
            }
        }
        assert!(missing.is_empty(), "undocumented keys: {missing:?}");
    }

    /// Providers are named here and in their crates, nowhere else in the gateway: a module that
    /// needs something of a channel asks the registry.
    #[test]
    fn no_other_module_names_a_provider() {
        const NAMES: &[&str] = &[
            "whatsapp",
            "telegram",
            "mailgun",
            "postmark",
            "sendgrid",
            "imap",
            "smtp",
            "switchboard_email",
            "switchboard_api",
        ];
        fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("channels/mod.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap().to_lowercase();
                    for (number, line) in text.lines().enumerate() {
                        if let Some(name) = NAMES.iter().find(|n| line.contains(*n)) {
                            found.push(format!("{}:{}: {name}", path.display(), number + 1));
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(
            found.is_empty(),
            "providers named outside the registry:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn unknown_sections_are_refused() {
        let mut config = Config::defaults();
        config.set("whatsap.app_secret", toml::Value::String("x".into()));
        let error = validate(&config).unwrap_err();
        assert_eq!(error.section, "whatsap");
    }
}
