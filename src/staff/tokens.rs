//! Bearer tokens of staff for the API: HS256 JWTs carrying the user and the role, signed with the
//! staff secret (never the website visitors' secret, so a visitor's token is never a staff token).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{store::users::Role, time::Timestamp};

/// What a staff token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The role when the token was issued (the account's current role is what counts).
    pub role: Role,
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
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys")
    }
}

const AUDIENCE: &str = "staff";

impl TokenKeys {
    /// Keys from a secret.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// A token for a user, valid until `expires`.
    pub fn issue(&self, user_id: &str, role: Role, now: Timestamp, expires: Timestamp) -> String {
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

    /// The claims of a valid, unexpired staff token.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 30;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_other_keys_and_expiry() {
        let keys = TokenKeys::new(b"staff-secret");
        let now = Timestamp::from(chrono::Utc::now());
        let token = keys.issue("u1", Role::Expert, now, now.plus(Duration::from_secs(60)));
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.role), ("u1", Role::Expert));
        assert!(TokenKeys::new(b"other").verify(&token).is_none());
        let old = keys.issue("u1", Role::Expert, now, now.minus(Duration::from_secs(600)));
        assert!(keys.verify(&old).is_none(), "expired");
        assert!(keys.verify("not.a.token").is_none());
    }
}
