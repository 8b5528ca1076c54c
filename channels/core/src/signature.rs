//! Proofs of origin shared by every channel and by the gateway: HMAC-SHA256 signatures in the
//! `sha256=<hex>` form most providers use, and comparison of secrets in constant time.
//!
//! Comparisons never return early, not even on a length mismatch: both sides are first reduced to
//! a MAC of fixed length under a key of this process, and the MACs are compared in constant time.
//! Timing then reveals neither how much of a guess was right nor how long the secret is.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What precedes the hex digest in a `sha256=` signature header.
pub const SHA256_PREFIX: &str = "sha256=";

/// HMAC-SHA256 of `message` keyed with `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    keyed(key, message).finalize().into_bytes().into()
}

/// A signature header value: `sha256=<lowercase hex HMAC-SHA256 of the body>`.
pub fn sign_sha256(key: &[u8], body: &[u8]) -> String {
    format!("{SHA256_PREFIX}{}", hex::encode(hmac_sha256(key, body)))
}

/// Why a `sha256=` signature is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request carries no signature.
    #[error("the signature is missing")]
    Missing,
    /// The value is not `sha256=` followed by 64 hex digits.
    #[error("the signature is malformed: expected sha256=<64 hex digits>")]
    Malformed,
    /// The signature does not match the body and the key.
    #[error("the signature does not match the request body")]
    Mismatch,
}

/// Checks a `sha256=<hex>` signature (prefix in any case, hex digits in either case) over the
/// exact body bytes, in constant time. An empty key never verifies anything: a signature anyone
/// could compute proves nothing.
pub fn verify_sha256(header: Option<&str>, body: &[u8], key: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let digest = match header.split_at_checked(SHA256_PREFIX.len()) {
        Some((prefix, digest)) if prefix.eq_ignore_ascii_case(SHA256_PREFIX) => digest,
        _ => return Err(SignatureError::Malformed),
    };
    verify_hex_mac(digest, body, key)
}

/// Whether a `sha256=<hex>` signature header is there and well formed, before the body it signs
/// is even read: a request without one is refused without reading anything.
pub fn check_sha256_format(header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    match header.split_at_checked(SHA256_PREFIX.len()) {
        Some((prefix, digest))
            if prefix.eq_ignore_ascii_case(SHA256_PREFIX)
                && digest.len() == 64
                && digest.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(())
        }
        _ => Err(SignatureError::Malformed),
    }
}

/// Checks a bare hex HMAC-SHA256 (no prefix) of `message` under `key`, in constant time. An empty
/// key never verifies.
pub fn verify_hex_mac(digest: &str, message: &[u8], key: &[u8]) -> Result<(), SignatureError> {
    let digest = hex::decode(digest.trim()).map_err(|_| SignatureError::Malformed)?;
    if digest.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    if key.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    keyed(key, message)
        .verify_slice(&digest)
        .map_err(|_| SignatureError::Mismatch)
}

/// Whether a secret someone presented equals the expected one, in time that depends neither on
/// where they differ nor on their lengths. An empty expected secret matches nothing.
pub fn secrets_match(given: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let key = comparison_key();
    let expected = hmac_sha256(key, expected);
    keyed(key, given).verify_slice(&expected).is_ok()
}

/// A random key of this process for [`secrets_match`]: a fixed key would do as well for timing,
/// but a random one also keeps the MACs useless to anyone who sees them.
fn comparison_key() -> &'static [u8] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let seed = format!(
            "{:?}{:?}{}",
            std::time::SystemTime::now(),
            std::thread::current().id(),
            std::process::id()
        );
        // Mixed with the address of a stack value (randomised by ASLR).
        let marker = 0u8;
        hmac_sha256(
            seed.as_bytes(),
            &(&marker as *const u8 as usize).to_le_bytes(),
        )
    })
}

fn keyed(key: &[u8], message: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| {
        // HMAC accepts keys of any length; this branch cannot be taken.
        unreachable!("HMAC takes keys of any length")
    });
    mac.update(message);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_round_trip_and_refuse_tampering() {
        let header = sign_sha256(b"key", b"body");
        assert!(header.starts_with("sha256="));
        assert_eq!(verify_sha256(Some(&header), b"body", b"key"), Ok(()));
        assert_eq!(
            verify_sha256(
                Some(&header.to_uppercase().replace("SHA256=", "sha256=")),
                b"body",
                b"key"
            ),
            Ok(())
        );
        assert_eq!(
            verify_sha256(Some(&header), b"body!", b"key"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_sha256(Some(&header), b"body", b"other"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_sha256(None, b"body", b"key"),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_sha256(Some("sha256=abc"), b"body", b"key"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_sha256(Some("md5=00"), b"body", b"key"),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_format_is_checked_without_the_body() {
        assert_eq!(check_sha256_format(Some(&sign_sha256(b"k", b"b"))), Ok(()));
        assert_eq!(check_sha256_format(None), Err(SignatureError::Missing));
        for bad in ["sha256=", "sha256=xyz", "sha1=00", "", "sha256=0123"] {
            assert_eq!(
                check_sha256_format(Some(bad)),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_empty_key_verifies_nothing() {
        let forged = sign_sha256(b"", b"body");
        assert_eq!(
            verify_sha256(Some(&forged), b"body", b""),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn secrets_are_compared_exactly() {
        assert!(secrets_match(b"abc", b"abc"));
        assert!(!secrets_match(b"abc", b"abC"));
        assert!(!secrets_match(b"abc", b"ab"));
        assert!(!secrets_match(b"ab", b"abc"));
        assert!(!secrets_match(b"", b""), "an empty secret matches nothing");
        assert!(!secrets_match(b"x", b""));
    }
}
