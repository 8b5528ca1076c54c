//! The `[whatsapp]` section of the gateway's configuration.
//!
//! The gateway hands the section over as it read it (after the environment was applied, see
//! [`ENV`]); the crate owns its keys, their defaults and what makes them consistent, so that a
//! new key of the channel is a change to this crate alone. [`Config::settings`] turns the section
//! into the [`Settings`] the sender and the media downloader work with.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_channel::{ConfigError, Secret, plugin::parse_section};

use crate::{CHANNEL, NumberSettings, Settings, Template};

/// The environment variables that set keys of the section: `(variable, key)`.
pub const ENV: &[(&str, &str)] = &[
    ("WHATSAPP_APP_SECRET", "app_secret"),
    ("WHATSAPP_VERIFY_TOKEN", "verify_token"),
    ("WHATSAPP_ACCESS_TOKEN", "access_token"),
    ("WHATSAPP_API_BASE", "api_base"),
    ("WHATSAPP_API_VERSION", "api_version"),
];

/// The WhatsApp Business Cloud API channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The Meta app's secret: webhooks are signed with it (`X-Hub-Signature-256`). Setting it turns
    /// the channel on.
    #[serde(deserialize_with = "Secret::optional")]
    pub app_secret: Option<Secret>,
    /// The token Meta echoes when the webhook is set up (`hub.verify_token`).
    #[serde(deserialize_with = "Secret::optional")]
    pub verify_token: Option<Secret>,
    /// Access token of the numbers that do not have their own.
    #[serde(deserialize_with = "Secret::optional")]
    pub access_token: Option<Secret>,
    /// Graph API base URL.
    pub api_base: String,
    /// Graph API version.
    pub api_version: String,
    /// Mark a user's message read, with a typing indicator, while the agent answers it.
    pub mark_read: bool,
    /// Longest time for one Graph API request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Template sent instead of free text outside the 24-hour customer-service window. Unset: such
    /// messages fail with the reason.
    pub fallback_template: Option<Template>,
    /// Business numbers with settings of their own.
    pub numbers: Vec<NumberConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            app_secret: None,
            verify_token: None,
            access_token: None,
            api_base: "https://graph.facebook.com".into(),
            api_version: "v23.0".into(),
            mark_read: true,
            timeout: Duration::from_secs(20),
            fallback_template: None,
            numbers: Vec::new(),
        }
    }
}

/// A WhatsApp business number with settings of its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NumberConfig {
    /// The number's id in the Graph API (`metadata.phone_number_id` of its webhooks).
    pub phone_number_id: String,
    /// Its access token, if not `whatsapp.access_token`.
    #[serde(deserialize_with = "Secret::optional")]
    pub access_token: Option<Secret>,
    /// Its fallback template, if not `whatsapp.fallback_template`.
    pub fallback_template: Option<Template>,
}

impl Config {
    /// Reads and checks a section: unknown keys and inconsistent settings are refused.
    pub fn from_section(section: serde_json::Value) -> Result<Config, ConfigError> {
        let config: Config = parse_section(CHANNEL, section)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot: settings that only make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Half a configuration would either accept unsigned deliveries or never pass Meta's
        // handshake; neither is a channel that works.
        if self.app_secret.is_some() != self.verify_token.is_some() {
            return Err(ConfigError::new(
                CHANNEL,
                "whatsapp.app_secret and whatsapp.verify_token are needed together (the webhook \
                 is verified with the token and signed with the secret)",
            ));
        }
        Ok(())
    }

    /// Whether the channel is on.
    pub fn enabled(&self) -> bool {
        self.app_secret.is_some()
    }

    /// The settings of the sender and the media downloader.
    pub fn settings(&self) -> Settings {
        Settings {
            api_base: self.api_base.clone(),
            api_version: self.api_version.clone(),
            access_token: self.access_token.as_deref().map(str::to_owned),
            numbers: self
                .numbers
                .iter()
                .map(|n| NumberSettings {
                    phone_number_id: n.phone_number_id.clone(),
                    access_token: n.access_token.as_deref().map(str::to_owned),
                    fallback_template: n.fallback_template.clone(),
                })
                .collect(),
            fallback_template: self.fallback_template.clone(),
            mark_read: self.mark_read,
            timeout: self.timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_empty_section_is_the_defaults_and_off() {
        let config = Config::from_section(json!({})).unwrap();
        assert!(!config.enabled());
        assert_eq!(config.api_base, "https://graph.facebook.com");
        assert_eq!(config.api_version, "v23.0");
        assert!(config.mark_read);
        assert_eq!(config.timeout, Duration::from_secs(20));
        assert!(config.fallback_template.is_none());
        assert!(config.numbers.is_empty());
        let settings = config.settings();
        assert_eq!(settings.access_token, None);
        assert_eq!(settings.url("x"), "https://graph.facebook.com/v23.0/x");
    }

    #[test]
    fn the_defaults_read_back_as_the_defaults() {
        let defaults = switchboard_channel::plugin::section_of(&Config::default());
        assert_eq!(defaults["timeout"], "20s");
        let config = Config::from_section(defaults).unwrap();
        assert!(!config.enabled());
        assert_eq!(config.timeout, Duration::from_secs(20));
    }

    #[test]
    fn a_full_section_is_read() {
        let config = Config::from_section(json!({
            "app_secret": "secret",
            "verify_token": "token",
            "access_token": "default-token",
            "api_base": "http://127.0.0.1:9",
            "api_version": "v99.0",
            "mark_read": false,
            "timeout": "5s",
            "fallback_template": {"name": "follow_up", "language": "en_US"},
            "numbers": [{"phone_number_id": "106", "access_token": "own-token"}],
        }))
        .unwrap();
        assert!(config.enabled());
        assert_eq!(config.timeout, Duration::from_secs(5));
        let settings = config.settings();
        assert_eq!(settings.token_for("106"), Some("own-token"));
        assert_eq!(settings.token_for("107"), Some("default-token"));
        assert_eq!(
            settings
                .fallback_template_for("106")
                .map(|t| t.name.as_str()),
            Some("follow_up")
        );
        assert!(!settings.mark_read);
        assert_eq!(
            settings.url("/106/messages"),
            "http://127.0.0.1:9/v99.0/106/messages"
        );
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("own-token") && !printed.contains("default-token"),
            "secrets are masked: {printed}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = Config::from_section(json!({"app_secrets": "x"})).unwrap_err();
        assert_eq!(error.section, "whatsapp");
        assert!(error.message.contains("app_secrets"), "{error}");
        let error = Config::from_section(json!({"numbers": [{"phone_number": "1"}]})).unwrap_err();
        assert!(error.message.contains("phone_number"), "{error}");
    }

    #[test]
    fn the_secret_and_the_verify_token_come_together() {
        for section in [
            json!({"app_secret": "secret"}),
            json!({"verify_token": "token"}),
            // An empty value is no value.
            json!({"app_secret": "", "verify_token": "token"}),
        ] {
            let error = Config::from_section(section.clone()).unwrap_err();
            assert_eq!(
                error.to_string(),
                "[whatsapp] whatsapp.app_secret and whatsapp.verify_token are needed together \
                 (the webhook is verified with the token and signed with the secret)",
                "{section}"
            );
        }
        assert!(Config::from_section(json!({"app_secret": "s", "verify_token": "t"})).is_ok());
        assert!(Config::from_section(json!({"app_secret": " ", "verify_token": ""})).is_ok());
    }
}
