//! The `[api]` section: which integrations may talk to the gateway, the secret each signs with,
//! and where each one's replies go.
//!
//! The section is read as data ([`Config`]) and checked once into the [`Integrations`] the
//! running channel uses, so that the webhook, the sender and `switchboard replay` never see an
//! integration without a secret or with a callback URL that cannot be called.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_channel::{ConfigError, Secret};

use crate::CHANNEL;

/// The default largest request body: a batch of 100 messages of a few hundred bytes each, with
/// room to spare.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

/// The smallest `max_body_bytes` accepted: less would refuse an ordinary single message.
const MIN_MAX_BODY_BYTES: usize = 1024;

/// The longest integration name: it is a path segment and the prefix of stored ids.
const MAX_NAME_CHARS: usize = 64;

/// The generic HTTP API channel (`[api]`): any number of integrations, each posting to
/// `/webhooks/api/{name}` and receiving the gateway's replies at its `callback_url`. The channel
/// is on when at least one integration is configured.
///
/// ```toml
/// [api]
/// max_body_bytes = 262144
///
/// [[api.integrations]]
/// name = "crm"
/// secret = "a long random string"
/// callback_url = "https://crm.example.com/switchboard/callback"
/// timeout = "10s"
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The integrations.
    pub integrations: Vec<IntegrationConfig>,
    /// The largest request body an integration may post, in bytes.
    pub max_body_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            integrations: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// One integration: a system that brings its users' messages and takes the answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntegrationConfig {
    /// The gateway's name for it (letters, digits, `_`, `-`): the end of its webhook URL
    /// (`/webhooks/api/{name}`) and the account of its conversations.
    pub name: String,
    /// The secret both sides sign with (HMAC-SHA256). Required.
    #[serde(deserialize_with = "Secret::optional")]
    pub secret: Option<Secret>,
    /// Where the gateway posts replies and typing indicators (`http` or `https`). Required.
    pub callback_url: Option<String>,
    /// Longest time for one callback, answer included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Post `{"type": "typing"}` callbacks while an answer is being written.
    pub typing: bool,
}

impl Default for IntegrationConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            secret: None,
            callback_url: None,
            timeout: Duration::from_secs(10),
            typing: true,
        }
    }
}

/// A checked integration, as the running channel uses it.
#[derive(Debug, Clone)]
pub(crate) struct Integration {
    /// Its name.
    pub name: String,
    /// Its signing secret.
    pub secret: Secret,
    /// Its callback URL.
    pub callback_url: reqwest::Url,
    /// Longest time for one callback.
    pub timeout: Duration,
    /// Whether it takes typing indicators.
    pub typing: bool,
}

/// The checked section.
#[derive(Debug, Clone)]
pub(crate) struct Integrations {
    /// Every integration, in the order configured.
    pub all: Vec<Integration>,
    /// The largest request body.
    pub max_body_bytes: usize,
}

impl Integrations {
    /// One integration by name.
    pub(crate) fn get(&self, name: &str) -> Option<&Integration> {
        self.all.iter().find(|i| i.name == name)
    }
}

impl Config {
    /// Checks the section and returns what the running channel uses.
    pub(crate) fn check(&self) -> Result<Integrations, ConfigError> {
        let invalid = |message: String| Err(ConfigError::new(CHANNEL, message));
        if self.max_body_bytes < MIN_MAX_BODY_BYTES {
            return invalid(format!(
                "api.max_body_bytes must be at least {MIN_MAX_BODY_BYTES}"
            ));
        }
        let mut all: Vec<Integration> = Vec::with_capacity(self.integrations.len());
        for integration in &self.integrations {
            let name = &integration.name;
            if !valid_name(name) {
                return invalid(format!(
                    "api integration name {name:?} must be 1 to {MAX_NAME_CHARS} letters, digits, _ or -"
                ));
            }
            if all.iter().any(|i| &i.name == name) {
                return invalid(format!("api integration name {name:?} is used twice"));
            }
            let Some(secret) = &integration.secret else {
                return invalid(format!("api integration {name:?} has no secret"));
            };
            let Some(url) = integration
                .callback_url
                .as_deref()
                .map(str::trim)
                .filter(|url| !url.is_empty())
            else {
                return invalid(format!("api integration {name:?} has no callback_url"));
            };
            // The URL may carry a token of the integration's: the error names the problem, not it.
            let callback_url = match reqwest::Url::parse(url) {
                Ok(url) => url,
                Err(e) => {
                    return invalid(format!(
                        "api integration {name:?}: callback_url is not a URL ({e})"
                    ));
                }
            };
            if !matches!(callback_url.scheme(), "http" | "https") {
                return invalid(format!(
                    "api integration {name:?}: callback_url must be an http or https URL"
                ));
            }
            if integration.timeout.is_zero() {
                return invalid(format!(
                    "api integration {name:?}: timeout must be more than 0s"
                ));
            }
            all.push(Integration {
                name: name.clone(),
                secret: secret.clone(),
                callback_url,
                timeout: integration.timeout,
                typing: integration.typing,
            });
        }
        Ok(Integrations {
            all,
            max_body_bytes: self.max_body_bytes,
        })
    }
}

/// Letters, digits, `_` and `-`: safe as a path segment, and free of the `:` that separates the
/// name from ids in stored provider ids.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use switchboard_channel::plugin::parse_section;

    use super::*;

    fn check(section: serde_json::Value) -> Result<Integrations, String> {
        parse_section::<Config>(CHANNEL, section)
            .and_then(|config| config.check())
            .map_err(|e| e.to_string())
    }

    fn one(integration: serde_json::Value) -> Result<Integrations, String> {
        check(json!({ "integrations": [integration] }))
    }

    #[test]
    fn a_complete_integration_is_taken_with_its_defaults() {
        let checked = one(json!({
            "name": "crm",
            "secret": "s3cret",
            "callback_url": "https://crm.example.com/callback"
        }))
        .unwrap();
        let crm = checked.get("crm").unwrap();
        assert_eq!(crm.secret.expose(), "s3cret");
        assert_eq!(
            crm.callback_url.as_str(),
            "https://crm.example.com/callback"
        );
        assert_eq!(crm.timeout, Duration::from_secs(10));
        assert!(crm.typing);
        assert_eq!(checked.max_body_bytes, DEFAULT_MAX_BODY_BYTES);

        let checked = check(json!({
            "max_body_bytes": 4096,
            "integrations": [{
                "name": "sms-bridge_2", "secret": "x", "callback_url": "http://10.0.0.2:8080/in",
                "timeout": "1m 30s", "typing": false
            }]
        }))
        .unwrap();
        let bridge = checked.get("sms-bridge_2").unwrap();
        assert_eq!(bridge.timeout, Duration::from_secs(90));
        assert!(!bridge.typing);
        assert_eq!(checked.max_body_bytes, 4096);
    }

    #[test]
    fn an_empty_section_is_valid_and_has_no_integrations() {
        assert!(check(json!({})).unwrap().all.is_empty());
    }

    #[test]
    fn bad_integrations_are_refused_with_a_reason() {
        let cases = [
            (
                json!({"name": "a b", "secret": "s", "callback_url": "https://x"}),
                "[api] api integration name \"a b\" must be 1 to 64 letters, digits, _ or -",
            ),
            (
                json!({"name": "", "secret": "s", "callback_url": "https://x"}),
                "[api] api integration name \"\" must be 1 to 64 letters, digits, _ or -",
            ),
            (
                json!({"name": "crm", "callback_url": "https://x"}),
                "[api] api integration \"crm\" has no secret",
            ),
            (
                json!({"name": "crm", "secret": "  ", "callback_url": "https://x"}),
                "[api] api integration \"crm\" has no secret",
            ),
            (
                json!({"name": "crm", "secret": "s"}),
                "[api] api integration \"crm\" has no callback_url",
            ),
            (
                json!({"name": "crm", "secret": "s", "callback_url": "crm.example.com/x"}),
                "[api] api integration \"crm\": callback_url is not a URL (relative URL without a base)",
            ),
            (
                json!({"name": "crm", "secret": "s", "callback_url": "ftp://crm.example.com"}),
                "[api] api integration \"crm\": callback_url must be an http or https URL",
            ),
            (
                json!({"name": "crm", "secret": "s", "callback_url": "https://x", "timeout": "0s"}),
                "[api] api integration \"crm\": timeout must be more than 0s",
            ),
        ];
        for (integration, expected) in cases {
            assert_eq!(
                one(integration.clone()).unwrap_err(),
                expected,
                "{integration}"
            );
        }
        let twice = json!({"integrations": [
            {"name": "crm", "secret": "s", "callback_url": "https://x"},
            {"name": "crm", "secret": "t", "callback_url": "https://y"}
        ]});
        assert_eq!(
            check(twice).unwrap_err(),
            "[api] api integration name \"crm\" is used twice"
        );
        assert_eq!(
            check(json!({"max_body_bytes": 10})).unwrap_err(),
            "[api] api.max_body_bytes must be at least 1024"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(check(json!({"integration": []})).is_err());
        assert!(
            one(json!({"name": "crm", "secret": "s", "callback_url": "https://x", "url": "y"}))
                .is_err()
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let checked =
            one(json!({"name": "crm", "secret": "s3cret", "callback_url": "https://x"})).unwrap();
        assert!(!format!("{checked:?}").contains("s3cret"));
    }
}
