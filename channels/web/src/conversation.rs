//! What a visitor may say about a conversation itself: create one before writing in it (a title,
//! where it was started from, the client's own data), and rename it. Checked here, like the chat
//! request, so a refused request changes nothing.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::request::RequestError;
pub use crate::request::{MAX_METADATA_BYTES, MAX_METADATA_KEYS, client_metadata as metadata};

/// The longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// The longest `source`, in bytes.
pub const MAX_SOURCE_LEN: usize = 64;

/// The body of `POST /v1/conversations`; every field is optional.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConversationRequest {
    /// Its title.
    #[serde(default)]
    pub title: Option<String>,
    /// Where it is started from: `web`, `mobile`, a partner app's name.
    #[serde(default)]
    pub source: Option<String>,
    /// The client's own data about it, returned as given.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// The agent to answer it, when the gateway lets visitors choose.
    #[serde(default)]
    pub agent: Option<String>,
}

/// The body of `PATCH /v1/conversations/{id}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// The new title.
    pub title: String,
}

/// A title, trimmed: 1 to [`MAX_TITLE_CHARS`] characters without control characters.
pub fn title(title: &str) -> Result<String, RequestError> {
    let title = title.trim();
    if title.is_empty() {
        return Err(RequestError::InvalidField {
            field: "title",
            reason: "must not be empty",
        });
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(RequestError::InvalidField {
            field: "title",
            reason: "must be at most 200 characters",
        });
    }
    if title.chars().any(char::is_control) {
        return Err(RequestError::InvalidField {
            field: "title",
            reason: "must not contain control characters",
        });
    }
    Ok(title.to_owned())
}

/// A source: 1 to [`MAX_SOURCE_LEN`] letters, digits, `.`, `_` or `-`.
pub fn source(source: &str) -> Result<String, RequestError> {
    let valid = !source.is_empty()
        && source.len() <= MAX_SOURCE_LEN
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(source.to_owned())
    } else {
        Err(RequestError::InvalidField {
            field: "source",
            reason: "must be 1 to 64 letters, digits, '.', '_' or '-'",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn titles_sources_and_metadata_are_bounded() {
        assert_eq!(title("  Trip to Rome ").unwrap(), "Trip to Rome");
        assert!(title("   ").is_err());
        assert!(title(&"x".repeat(201)).is_err());
        assert!(title("a\u{0}b").is_err());
        assert_eq!(source("mobile-app").unwrap(), "mobile-app");
        assert!(source("").is_err());
        assert!(source("has space").is_err());
        assert!(source(&"s".repeat(65)).is_err());
        let small = json!({"plan": "pro", "tags": [1, 2]});
        assert!(metadata(small.as_object().unwrap().clone()).is_ok());
        let many: Map<String, Value> = (0..33).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(metadata(many).is_err());
        let big = json!({"blob": "x".repeat(5000)})
            .as_object()
            .unwrap()
            .clone();
        assert!(metadata(big).is_err());
    }
}
