//! What the channel needs to know: where the Graph API is, and the phone numbers it serves.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The WhatsApp channel's settings. The gateway builds them from its configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Graph API base URL, e.g. `https://graph.facebook.com` (a fake server in tests).
    pub api_base: String,
    /// Graph API version, e.g. `v21.0`.
    pub api_version: String,
    /// Access token for numbers that do not have their own.
    pub access_token: Option<String>,
    /// The business phone numbers, by `phone_number_id`, when they need settings of their own.
    pub numbers: Vec<NumberSettings>,
    /// Template sent instead of free-form text outside the 24-hour customer-service window, for
    /// numbers that do not name their own.
    pub fallback_template: Option<Template>,
    /// Mark a user's message read (with a typing indicator) while the agent answers it.
    pub mark_read: bool,
    /// Longest time for one Graph API request.
    pub timeout: Duration,
}

/// Settings of one business phone number.
#[derive(Debug, Clone)]
pub struct NumberSettings {
    /// The number's id in the Graph API (`metadata.phone_number_id` in webhooks).
    pub phone_number_id: String,
    /// Its access token; unset: [`Settings::access_token`].
    pub access_token: Option<String>,
    /// Its fallback template; unset: [`Settings::fallback_template`].
    pub fallback_template: Option<Template>,
}

/// A message template approved by Meta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Template name.
    pub name: String,
    /// Language code, e.g. `en_US`.
    pub language: String,
    /// Template components (parameters) in the Graph API's shape; usually empty.
    #[serde(default = "no_components")]
    pub components: serde_json::Value,
}

fn no_components() -> serde_json::Value {
    serde_json::Value::Array(Vec::new())
}

impl Settings {
    /// The settings of a number, if it has its own.
    pub fn number(&self, phone_number_id: &str) -> Option<&NumberSettings> {
        self.numbers
            .iter()
            .find(|n| n.phone_number_id == phone_number_id)
    }

    /// The access token to use for a number.
    pub fn token_for(&self, phone_number_id: &str) -> Option<&str> {
        self.number(phone_number_id)
            .and_then(|n| n.access_token.as_deref())
            .or(self.access_token.as_deref())
    }

    /// The fallback template of a number.
    pub fn fallback_template_for(&self, phone_number_id: &str) -> Option<&Template> {
        self.number(phone_number_id)
            .and_then(|n| n.fallback_template.as_ref())
            .or(self.fallback_template.as_ref())
    }

    /// `{api_base}/{api_version}/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/{}/{}",
            self.api_base.trim_end_matches('/'),
            self.api_version.trim_matches('/'),
            path.trim_start_matches('/')
        )
    }
}
