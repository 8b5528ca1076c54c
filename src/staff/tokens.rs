//! Bearer tokens of staff for the API: HS256 JWTs carrying the user and the role, signed with the
//! staff secret (never the website visitors' secret, so a visitor's token is never a staff token).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{store::users::StaffRole, time::Timestamp};

/// What a staff token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The role when the token was issued (the account's current role is what counts).
    pub role: StaffRole,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Always `staff`: what kind of token this is.
    pub aud: String,
}

/// Issues and checks staff tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The longest validity a token may claim (`exp` after `iat`).
    max_lifetime: std::time::Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys")
    }
}

const AUDIENCE: &str = "staff";

impl TokenKeys {
    /// Keys from a secret; tokens claiming a validity longer than `max_lifetime` are refused.
    pub fn new(secret: &[u8], max_lifetime: std::time::Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            max_lifetime,
        }
    }

    /// A token for a user, valid until `expires`.
    pub fn issue(
        &self,
        user_id: &str,
        role: StaffRole,
        now: Timestamp,
        expires: Timestamp,
    ) -> String {
        let claims = Claims {
            sub: user_id.to_owned(),
            role,
            exp: expires.micros() / 1_000_000,
            iat: now.micros() / 1_000_000,
            aud: AUDIENCE.into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// The claims of a valid staff token: signed with this key, unexpired, not before its `nbf`,
    /// and claiming no longer a validity than the configured one.
    pub fn verify(&self, token: &str, now: Timestamp) -> Option<Claims> {
        const LEEWAY: u64 = 30;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        // Counted from when it was issued, never from later than now: a token claiming to be
        // issued in the future is refused.
        let now = now.micros() / 1_000_000;
        if claims.iat > now.saturating_add_unsigned(LEEWAY) {
            return None;
        }
        let lifetime = u64::try_from(claims.exp.saturating_sub(claims.iat.min(now))).ok()?;
        (lifetime <= self.max_lifetime.as_secs() + LEEWAY).then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_other_keys_and_expiry() {
        let keys = TokenKeys::new(b"staff-secret", Duration::from_secs(3600));
        let now = Timestamp::from(chrono::Utc::now());
        let token = keys.issue(
            "u1",
            StaffRole::Expert,
            now,
            now.plus(Duration::from_secs(60)),
        );
        let claims = keys.verify(&token, now).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.role),
            ("u1", StaffRole::Expert)
        );
        assert!(
            TokenKeys::new(b"other", Duration::from_secs(3600))
                .verify(&token, now)
                .is_none()
        );
        let old = keys.issue(
            "u1",
            StaffRole::Expert,
            now,
            now.minus(Duration::from_secs(600)),
        );
        assert!(keys.verify(&old, now).is_none(), "expired");
        assert!(keys.verify("not.a.token", now).is_none());
    }

    #[test]
    fn tokens_claiming_too_long_a_validity_or_not_yet_valid_are_refused() {
        let keys = TokenKeys::new(b"staff-secret", Duration::from_secs(3600));
        let now = Timestamp::from(chrono::Utc::now());
        let forever = keys.issue(
            "u1",
            StaffRole::Admin,
            now,
            now.plus(Duration::from_secs(100 * 86400)),
        );
        assert!(
            keys.verify(&forever, now).is_none(),
            "longer than the maximum lifetime"
        );
        let secs = now.micros() / 1_000_000;
        let later = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "u1", "role": "admin", "aud": "staff", "iat": secs,
                                "exp": secs + 600, "nbf": secs + 300}),
            &EncodingKey::from_secret(b"staff-secret"),
        )
        .unwrap();
        assert!(keys.verify(&later, now).is_none(), "nbf in the future");
    }
}
