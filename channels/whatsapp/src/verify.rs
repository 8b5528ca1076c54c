//! Proof that a webhook request comes from Meta.
//!
//! The callback URL is public, so anyone could post a forged "message from a customer" to it. Meta
//! signs every POST with the app secret (`X-Hub-Signature-256`); [`verify_signature`] checks that
//! signature over the raw body bytes before anything is parsed. When the webhook is set up, Meta
//! first sends a GET handshake carrying the verify token chosen by the operator;
//! [`verify_subscription`] answers it.
//!
//! Both comparisons run in constant time so that timing does not leak the secret byte by byte.

use switchboard_channel::signature;

/// The header carrying the body's signature, in lowercase as HTTP libraries normalize it.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Why a webhook signature is refused.
///
/// The messages describe the header, never the expected digest: they may end up in logs or in the
/// answer to whoever forged the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request has no signature header.
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    /// The header is not `sha256=` followed by 64 hex digits.
    #[error("malformed X-Hub-Signature-256 header: expected sha256=<64 hex digits>")]
    Malformed,
    /// The signature does not match the body and the app secret.
    #[error("X-Hub-Signature-256 does not match the request body")]
    Mismatch,
}

/// Checks the `X-Hub-Signature-256` header value against the raw request body.
///
/// `header` is the header's value (`sha256=<hex HMAC-SHA256 of the body keyed with the app secret>`),
/// `None` when the request has none. The body must be the bytes exactly as received: re-serialized
/// JSON would not match. Hex digits may be upper or lower case.
pub fn verify_signature(
    header: Option<&str>,
    body: &[u8],
    app_secret: &str,
) -> Result<(), SignatureError> {
    signature::verify_sha256(header, body, app_secret.as_bytes()).map_err(|e| match e {
        signature::SignatureError::Missing => SignatureError::Missing,
        signature::SignatureError::Malformed => SignatureError::Malformed,
        signature::SignatureError::Mismatch => SignatureError::Mismatch,
    })
}

/// Signs a body as Meta does: returns the whole header value, `sha256=<lowercase hex>`.
///
/// Used to replay recorded webhooks against a running gateway, and by tests.
pub fn sign(body: &[u8], app_secret: &str) -> String {
    signature::sign_sha256(app_secret.as_bytes(), body)
}

/// Answers the GET handshake Meta sends when the webhook is (re)configured.
///
/// Returns the challenge to echo back with `200` when `hub.mode` is `subscribe`, `hub.verify_token`
/// equals `expected_token` and `hub.challenge` is present; otherwise `None`, which the gateway
/// answers with `403`. An empty `expected_token` never matches, so an unconfigured token cannot be
/// satisfied by an empty query parameter.
pub fn verify_subscription<'a>(
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&'a str>,
    expected_token: &str,
) -> Option<&'a str> {
    if mode != Some("subscribe") || expected_token.is_empty() {
        return None;
    }
    let token = token?;
    let challenge = challenge?;
    tokens_match(token, expected_token).then_some(challenge)
}

/// Compares two tokens in constant time, independent of where they differ and of their lengths.
fn tokens_match(given: &str, expected: &str) -> bool {
    signature::secrets_match(given.as_bytes(), expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "6f1c2a9b0d3e4f5a";
    const BODY: &[u8] = br#"{"object":"whatsapp_business_account","entry":[]}"#;

    #[test]
    fn accepts_a_good_signature() {
        let header = sign(BODY, SECRET);
        assert_eq!(verify_signature(Some(&header), BODY, SECRET), Ok(()));
    }

    #[test]
    fn accepts_upper_case_hex() {
        let header = sign(BODY, SECRET);
        let upper = format!("sha256={}", header["sha256=".len()..].to_ascii_uppercase());
        assert_eq!(verify_signature(Some(&upper), BODY, SECRET), Ok(()));
    }

    #[test]
    fn sign_matches_a_known_digest() {
        // The widely published reference value (e.g. Wikipedia's HMAC article), so the digest is
        // checked against something other than this module's own code.
        assert_eq!(
            sign(b"The quick brown fox jumps over the lazy dog", "key"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn sign_round_trips() {
        let header = sign(b"any body at all", "s3cret");
        assert!(header.starts_with("sha256="));
        assert_eq!(header.len(), "sha256=".len() + 64);
        assert_eq!(header, header.to_ascii_lowercase());
        assert!(verify_signature(Some(&header), b"any body at all", "s3cret").is_ok());
    }

    #[test]
    fn refuses_a_wrong_secret() {
        let header = sign(BODY, "another secret");
        assert_eq!(
            verify_signature(Some(&header), BODY, SECRET),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn refuses_a_tampered_body() {
        let header = sign(BODY, SECRET);
        let tampered = br#"{"object":"whatsapp_business_account","entry":[ ]}"#;
        assert_eq!(
            verify_signature(Some(&header), tampered, SECRET),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn refuses_a_missing_header() {
        assert_eq!(
            verify_signature(None, BODY, SECRET),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn refuses_a_header_without_prefix() {
        let header = sign(BODY, SECRET);
        let bare = &header["sha256=".len()..];
        assert_eq!(
            verify_signature(Some(bare), BODY, SECRET),
            Err(SignatureError::Malformed)
        );
        let sha1 = format!("sha1={bare}");
        assert_eq!(
            verify_signature(Some(&sha1), BODY, SECRET),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn refuses_non_hex_and_wrong_lengths() {
        let non_hex = format!("sha256={}", "zz".repeat(32));
        assert_eq!(
            verify_signature(Some(&non_hex), BODY, SECRET),
            Err(SignatureError::Malformed)
        );
        let header = sign(BODY, SECRET);
        let short = &header[..header.len() - 2];
        assert_eq!(
            verify_signature(Some(short), BODY, SECRET),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(Some("sha256="), BODY, SECRET),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(Some(""), BODY, SECRET),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn errors_do_not_reveal_the_expected_signature() {
        let expected = sign(BODY, SECRET);
        let digest = &expected["sha256=".len()..];
        for error in [
            SignatureError::Missing,
            SignatureError::Malformed,
            SignatureError::Mismatch,
        ] {
            let message = error.to_string();
            assert!(!message.contains(digest), "{message}");
            assert!(!message.contains(SECRET), "{message}");
        }
    }

    #[test]
    fn subscription_handshake_echoes_the_challenge() {
        assert_eq!(
            verify_subscription(
                Some("subscribe"),
                Some("meatyhamhock"),
                Some("1158201444"),
                "meatyhamhock"
            ),
            Some("1158201444")
        );
    }

    #[test]
    fn subscription_handshake_refuses_a_wrong_token() {
        let check = |token| {
            verify_subscription(Some("subscribe"), token, Some("1158201444"), "meatyhamhock")
        };
        assert_eq!(check(Some("meatyhamhocks")), None);
        assert_eq!(check(Some("meatyhamhoc")), None);
        assert_eq!(check(Some("MEATYHAMHOCK")), None);
        assert_eq!(check(Some("")), None);
        assert_eq!(check(None), None);
    }

    #[test]
    fn subscription_handshake_refuses_a_wrong_mode() {
        for mode in [Some("unsubscribe"), Some("Subscribe"), Some(""), None] {
            assert_eq!(
                verify_subscription(mode, Some("meatyhamhock"), Some("42"), "meatyhamhock"),
                None
            );
        }
    }

    #[test]
    fn subscription_handshake_needs_a_challenge() {
        assert_eq!(
            verify_subscription(
                Some("subscribe"),
                Some("meatyhamhock"),
                None,
                "meatyhamhock"
            ),
            None
        );
    }

    #[test]
    fn subscription_handshake_never_matches_an_unset_token() {
        assert_eq!(
            verify_subscription(Some("subscribe"), Some(""), Some("42"), ""),
            None
        );
    }
}
