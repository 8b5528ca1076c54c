//! Secrets from the configuration: never empty, never printed.
//!
//! A webhook's signing key, a bot token, a password: if such a value is configured empty, the
//! feature it protects must be off (or refuse to start), never open — an HMAC with an empty key is
//! a signature anyone can compute. So an empty (or blank) value reads as no value at all, from a
//! file as from the environment, and a [`Secret`] that exists is never empty. Its `Debug` output is
//! masked, so a configuration can be logged without leaking what it protects.

use std::{fmt, ops::Deref};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A configured secret: never empty, masked in `Debug`. Dereferences to the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret from a value; `None` when the value is empty or blank.
    pub fn new(value: impl Into<String>) -> Option<Secret> {
        let value = value.into();
        (!value.trim().is_empty()).then_some(Secret(value))
    }

    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Deserializes an optional secret, for `#[serde(deserialize_with = "Secret::optional")]`:
    /// an empty or blank value is no value.
    pub fn optional<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Secret>, D::Error> {
        Ok(Option::<String>::deserialize(deserializer)?.and_then(Secret::new))
    }
}

impl Deref for Secret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A secret named in code (tests, examples). Panics on an empty value: a programming error, never
/// input from outside.
impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value).unwrap_or_else(|| panic!("a secret must not be empty"))
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::from(value.as_str())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A secret that must be there: an empty value is refused.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        Secret::new(String::deserialize(deserializer)?)
            .ok_or_else(|| serde::de::Error::custom("must not be empty"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Settings {
        #[serde(default, deserialize_with = "Secret::optional")]
        key: Option<Secret>,
    }

    #[test]
    fn empty_values_are_no_values_and_secrets_are_not_printed() {
        let parsed: Settings = serde_json::from_str(r#"{"key": ""}"#).unwrap();
        assert!(parsed.key.is_none());
        let parsed: Settings = serde_json::from_str(r#"{"key": "  "}"#).unwrap();
        assert!(parsed.key.is_none());
        let parsed: Settings = serde_json::from_str(r#"{}"#).unwrap();
        assert!(parsed.key.is_none());
        let parsed: Settings = serde_json::from_str(r#"{"key": "s3cret"}"#).unwrap();
        let key = parsed.key.unwrap();
        assert_eq!(key.expose(), "s3cret");
        assert!(!format!("{key:?}").contains("s3cret"));
        assert!(serde_json::from_str::<Secret>(r#""""#).is_err());
    }
}
