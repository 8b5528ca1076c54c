//! The gateway's own inbound route, for a self-hosted MTA (Postfix, Exim…) that pipes each mail
//! to it as a `message/rfc822` body.
//!
//! Whatever delivers the mail signs the body with a secret it shares with the gateway:
//! [`SIGNATURE_HEADER`] carries `sha256=<hex HMAC-SHA256(secret, body)>`, as WhatsApp's webhooks do,
//! so that the route can be public without anyone being able to post mail "from" a customer.
//! `switchboard replay` signs the `.eml` fixtures the same way.

use switchboard_channel::signature;

use crate::{InboundEmail, ParseError, ReplyAddress, parse_mime};

/// The header carrying the body's signature, lowercase as HTTP libraries normalize it.
pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";

/// Why a raw mail request is refused.
///
/// The messages describe the header, never the expected digest: they may end up in logs or in the
/// answer to whoever forged the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No secret is configured: an unsigned route must not accept anything.
    #[error("no secret is configured for the raw mail route")]
    NoSecret,
    /// The request has no signature header.
    #[error("missing X-Switchboard-Signature header")]
    Missing,
    /// The header is not `sha256=` followed by 64 hex digits.
    #[error("malformed X-Switchboard-Signature header: expected sha256=<64 hex digits>")]
    Malformed,
    /// The signature does not match the body and the secret.
    #[error("X-Switchboard-Signature does not match the request body")]
    Mismatch,
}

/// Signs a body: returns the whole header value, `sha256=<lowercase hex HMAC-SHA256>`.
///
/// Used by MTA hooks and `switchboard replay`, and by tests.
pub fn sign(body: &[u8], secret: &str) -> String {
    signature::sign_sha256(secret.as_bytes(), body)
}

/// Checks the [`SIGNATURE_HEADER`] value (`None` when the request has none) against the raw body,
/// exactly as received, in constant time. Hex digits may be upper or lower case. An empty
/// `secret` never matches.
pub fn verify(header: Option<&str>, body: &[u8], secret: &str) -> Result<(), SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    signature::verify_sha256(header, body, secret.as_bytes()).map_err(|e| match e {
        signature::SignatureError::Missing => SignatureError::Missing,
        signature::SignatureError::Malformed => SignatureError::Malformed,
        signature::SignatureError::Mismatch => SignatureError::Mismatch,
    })
}

/// Reads the mail of a verified request: the body is the raw mail. The same as
/// [`parse_mime`], named for the route.
pub fn parse(body: &[u8], ours: &ReplyAddress) -> Result<InboundEmail, ParseError> {
    parse_mime(body, ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "9d4e1c7a2b6f3e8d";
    const BODY: &[u8] = b"From: kim@example.org\r\nSubject: Hi\r\n\r\nHello\r\n";

    #[test]
    fn accepts_a_good_signature() {
        let header = sign(BODY, SECRET);
        assert!(header.starts_with("sha256="));
        assert_eq!(header.len(), "sha256=".len() + 64);
        assert_eq!(header, header.to_ascii_lowercase());
        assert_eq!(verify(Some(&header), BODY, SECRET), Ok(()));
        let upper = format!("SHA256={}", header["sha256=".len()..].to_ascii_uppercase());
        assert_eq!(verify(Some(&upper), BODY, SECRET), Ok(()));
    }

    #[test]
    fn sign_matches_a_known_digest() {
        assert_eq!(
            sign(b"The quick brown fox jumps over the lazy dog", "key"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn refuses_a_wrong_secret_or_body() {
        let header = sign(BODY, "another secret");
        assert_eq!(
            verify(Some(&header), BODY, SECRET),
            Err(SignatureError::Mismatch)
        );
        let header = sign(BODY, SECRET);
        assert_eq!(
            verify(
                Some(&header),
                b"From: kim@example.org\r\n\r\nHello!\r\n",
                SECRET
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn refuses_missing_and_malformed_headers() {
        assert_eq!(verify(None, BODY, SECRET), Err(SignatureError::Missing));
        let header = sign(BODY, SECRET);
        let bare = &header["sha256=".len()..];
        for malformed in [
            bare.to_owned(),
            format!("sha1={bare}"),
            format!("sha256={}", "zz".repeat(32)),
            header[..header.len() - 2].to_owned(),
            "sha256=".to_owned(),
            String::new(),
        ] {
            assert_eq!(
                verify(Some(&malformed), BODY, SECRET),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn an_empty_secret_never_matches() {
        let header = sign(BODY, "");
        assert_eq!(
            verify(Some(&header), BODY, ""),
            Err(SignatureError::NoSecret)
        );
        assert_eq!(verify(None, BODY, ""), Err(SignatureError::NoSecret));
    }

    #[test]
    fn errors_do_not_reveal_the_expected_signature() {
        let expected = sign(BODY, SECRET);
        let digest = &expected["sha256=".len()..];
        for error in [
            SignatureError::NoSecret,
            SignatureError::Missing,
            SignatureError::Malformed,
            SignatureError::Mismatch,
        ] {
            let message = format!("{error} {error:?}");
            assert!(!message.contains(digest), "{message}");
            assert!(!message.contains(SECRET), "{message}");
        }
    }
}
