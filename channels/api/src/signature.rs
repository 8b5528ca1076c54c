//! How the gateway and an integration prove to each other who is talking: both directions sign
//! the same way, with the integration's secret.
//!
//! A request carries `X-Switchboard-Timestamp: <unix seconds>` and
//! `X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`. Signing the
//! timestamp with the body lets the receiver refuse old requests ([`MAX_CLOCK_SKEW`]): a request
//! recorded by someone on the way cannot be posted again an hour later, and within the window
//! the gateway recognises a repeated message by its id anyway.

use std::time::Duration;

use chrono::{DateTime, Utc};
use switchboard_channel::signature::{self, SignatureError, hmac_sha256};

/// The header that carries the signature: `sha256=<64 hex digits>`.
pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";

/// The header that carries the time of signing, in seconds since the Unix epoch.
pub const TIMESTAMP_HEADER: &str = "x-switchboard-timestamp";

/// The header of a callback that identifies it: the same on every retry of it.
pub const DELIVERY_HEADER: &str = "x-switchboard-delivery";

/// How far a request's timestamp may be from the receiver's clock, either way.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The longest timestamp header taken: 12 digits reach beyond the year 30000.
const MAX_TIMESTAMP_DIGITS: usize = 12;

/// The signature of a request: `sha256=<lowercase hex HMAC-SHA256 of "{timestamp}.{body}">`
/// under `secret`.
///
/// ```
/// let signature = switchboard_api::sign("s3cret", 1_700_000_000, br#"{"messages":[]}"#);
/// assert!(signature.starts_with("sha256="));
/// assert_eq!(signature.len(), 7 + 64);
/// ```
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    sign_text(secret, &timestamp.to_string(), body)
}

/// Checks a signature made by [`sign`] (the `sha256=` prefix in any case, hex digits in either
/// case), in constant time. The freshness of `timestamp` is the caller's to check
/// ([`is_fresh`]).
pub fn verify(
    secret: &str,
    timestamp: i64,
    body: &[u8],
    signature: &str,
) -> Result<(), SignatureError> {
    verify_text(secret, &timestamp.to_string(), body, signature)
}

/// Whether a request signed at `timestamp` may be taken at `now`: within [`MAX_CLOCK_SKEW`]
/// either way (the two clocks are never quite the same).
pub fn is_fresh(timestamp: i64, now: DateTime<Utc>) -> bool {
    now.timestamp().abs_diff(timestamp) <= MAX_CLOCK_SKEW.as_secs()
}

/// A timestamp header's value: decimal digits only (no sign, no spaces inside).
pub(crate) fn parse_timestamp(header: &str) -> Option<i64> {
    let header = header.trim();
    if header.is_empty()
        || header.len() > MAX_TIMESTAMP_DIGITS
        || !header.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    header.parse().ok()
}

/// [`sign`] over the timestamp exactly as written in the header.
pub(crate) fn sign_text(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "{}{}",
        signature::SHA256_PREFIX,
        hex::encode(hmac_sha256(
            secret.as_bytes(),
            &signed_bytes(timestamp, body)
        ))
    )
}

/// [`verify`] over the timestamp exactly as written in the header: the integration signed its
/// text, whatever number it reads as.
pub(crate) fn verify_text(
    secret: &str,
    timestamp: &str,
    body: &[u8],
    signature: &str,
) -> Result<(), SignatureError> {
    signature::verify_sha256(
        Some(signature),
        &signed_bytes(timestamp, body),
        secret.as_bytes(),
    )
}

/// `{timestamp}.{body}`.
fn signed_bytes(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let timestamp = timestamp.trim();
    let mut bytes = Vec::with_capacity(timestamp.len() + 1 + body.len());
    bytes.extend_from_slice(timestamp.as_bytes());
    bytes.push(b'.');
    bytes.extend_from_slice(body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_signs_as_documented() {
        // The example of the crate documentation, computed independently:
        // printf '1700000000.{"messages":[]}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            sign("s3cret", 1_700_000_000, br#"{"messages":[]}"#),
            "sha256=df3617487b5519b12822d571a5901cd590258119ff464489a9d2962b30904c4e"
        );
    }

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let signature = sign("s3cret", 1_700_000_000, b"body");
        assert_eq!(verify("s3cret", 1_700_000_000, b"body", &signature), Ok(()));
        assert_eq!(
            verify("s3cret", 1_700_000_000, b"body", &signature.to_uppercase()),
            Ok(())
        );
        assert_eq!(
            verify("s3cret", 1_700_000_001, b"body", &signature),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("s3cret", 1_700_000_000, b"body!", &signature),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("other", 1_700_000_000, b"body", &signature),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("s3cret", 1_700_000_000, b"body", "sha256=abc"),
            Err(SignatureError::Malformed)
        );
        // The header text is what was signed.
        assert_eq!(
            verify_text("s3cret", " 1700000000 ", b"body", &signature),
            Ok(())
        );
    }

    #[test]
    fn timestamps_are_digits_and_fresh_within_five_minutes() {
        assert_eq!(parse_timestamp(" 1700000000 "), Some(1_700_000_000));
        for bad in ["", "-5", "+5", "1.5", "17e8", "1 7", "1234567890123", "now"] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert!(is_fresh(1_700_000_000, now));
        assert!(is_fresh(1_700_000_300, now));
        assert!(is_fresh(1_699_999_700, now));
        assert!(!is_fresh(1_700_000_301, now));
        assert!(!is_fresh(1_699_999_699, now));
        assert!(!is_fresh(0, now));
        assert!(!is_fresh(i64::MAX, now));
    }
}
