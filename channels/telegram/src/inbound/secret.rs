//! Proof that a webhook request comes from Telegram.
//!
//! The webhook URL is public, so anyone could post a forged update to it. Telegram does not sign
//! its requests; instead the bot chooses a secret when it sets the webhook (`setWebhook`'s
//! `secret_token`) and Telegram sends it back in [`SECRET_HEADER`] with every update. The
//! comparison runs in constant time (and does not reveal the secret's length either) so that
//! response times do not leak the secret byte by byte.

use switchboard_channel::signature::secrets_match;

/// The header Telegram sends the webhook secret in, lowercase as HTTP libraries normalize it.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Why a webhook request is refused.
///
/// The message describes the request, never the expected secret: it may end up in logs or in the
/// answer to whoever forged the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Telegram webhook refused: {reason}")]
pub struct SecretError {
    reason: &'static str,
}

impl SecretError {
    /// What is wrong, without the leading "Telegram webhook refused".
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// Checks the [`SECRET_HEADER`] value of a webhook request against the bot's secret.
///
/// `header` is `None` when the request has no such header. An empty `expected` secret never
/// matches: a bot set up without one must not accept requests that simply omit it.
pub fn verify_secret(header: Option<&str>, expected: &str) -> Result<(), SecretError> {
    if expected.is_empty() {
        return Err(SecretError {
            reason: "no webhook secret is configured for this bot",
        });
    }
    let header = header.ok_or(SecretError {
        reason: "missing X-Telegram-Bot-Api-Secret-Token header",
    })?;
    if secrets_match(header.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(SecretError {
            reason: "X-Telegram-Bot-Api-Secret-Token does not match",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Vb3kQ9_x-Lr2mT7pZ";

    #[test]
    fn accepts_the_right_secret() {
        assert_eq!(verify_secret(Some(SECRET), SECRET), Ok(()));
    }

    #[test]
    fn refuses_a_wrong_secret_of_the_same_length() {
        let mut wrong = SECRET.to_owned();
        wrong.replace_range(SECRET.len() - 1.., "Y");
        assert_eq!(wrong.len(), SECRET.len());
        let error = verify_secret(Some(&wrong), SECRET).unwrap_err();
        assert_eq!(
            error.reason(),
            "X-Telegram-Bot-Api-Secret-Token does not match"
        );
        // A difference in the first byte is refused just the same.
        let wrong = format!("x{}", &SECRET[1..]);
        assert!(verify_secret(Some(&wrong), SECRET).is_err());
    }

    #[test]
    fn refuses_a_secret_of_another_length() {
        assert!(verify_secret(Some(&SECRET[..SECRET.len() - 1]), SECRET).is_err());
        assert!(verify_secret(Some(&format!("{SECRET}x")), SECRET).is_err());
        assert!(verify_secret(Some(""), SECRET).is_err());
    }

    #[test]
    fn refuses_a_missing_header() {
        let error = verify_secret(None, SECRET).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Telegram webhook refused: missing X-Telegram-Bot-Api-Secret-Token header"
        );
    }

    #[test]
    fn an_empty_expected_secret_never_matches() {
        for header in [None, Some(""), Some(SECRET)] {
            let error = verify_secret(header, "").unwrap_err();
            assert_eq!(
                error.reason(),
                "no webhook secret is configured for this bot"
            );
        }
    }

    #[test]
    fn errors_never_show_the_expected_secret() {
        for header in [None, Some("guess"), Some("Vb3kQ9_x-Lr2mT7pY")] {
            let error = verify_secret(header, SECRET).unwrap_err();
            assert!(!error.to_string().contains(SECRET), "{error}");
            assert!(!format!("{error:?}").contains(SECRET), "{error:?}");
        }
    }
}
