//! Who a website visitor is.
//!
//! Anonymous visitors identify with a random device id that the widget keeps in local storage
//! (`X-Device-ID`). Sites with their own login sign a short-lived HS256 JWT for the visitor
//! (`Authorization: Bearer …`) with a secret shared with the gateway; its `sub` claim is the visitor.
//! Either way the identity maps to one contact, and a visitor only ever sees that contact's
//! conversations.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use switchboard_channel::ContactRef;

/// The longest device id accepted.
pub const MAX_DEVICE_ID_LEN: usize = 128;

/// A verified website visitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An anonymous visitor known by the id their browser generated.
    Device(String),
    /// A visitor logged in on the embedding site, vouched for by a signed token.
    User {
        /// The token's `sub` claim.
        subject: String,
        /// The token's `name` claim, if any.
        name: Option<String>,
    },
}

impl Identity {
    /// The contact this visitor is, on the web channel. Devices and users live in separate
    /// namespaces so that a device id can never impersonate a signed-in user.
    pub fn contact(&self) -> ContactRef {
        match self {
            Identity::Device(id) => ContactRef {
                external_id: format!("device:{id}"),
                display_name: None,
                username: None,
            },
            Identity::User { subject, name } => ContactRef {
                external_id: format!("user:{subject}"),
                display_name: name.clone(),
                username: None,
            },
        }
    }
}

/// Why a request carries no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Neither a device id nor a bearer token was sent.
    #[error("identify yourself with an X-Device-ID header or an Authorization: Bearer token")]
    Missing,
    /// The device id is empty, too long, or has characters outside `A-Z a-z 0-9 . _ : -`.
    #[error("X-Device-ID must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'")]
    InvalidDeviceId,
    /// The Authorization header is not `Bearer <token>`.
    #[error("the Authorization header must be 'Bearer <token>'")]
    MalformedAuthorization,
    /// A bearer token was sent, but this gateway has no JWT secret configured.
    #[error("bearer tokens are not accepted by this gateway")]
    TokensDisabled,
    /// The token's signature, algorithm or claims are not valid.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// Only the embedding site's signed tokens identify visitors here; a device id was sent.
    #[error(
        "this gateway identifies visitors by the site's signed tokens only: send Authorization: Bearer <token>"
    )]
    TokenRequired,
}

/// Checks visitor identities; built once from the configuration and shared.
pub struct IdentityVerifier {
    jwt: Option<(DecodingKey, Validation)>,
    /// The longest validity a token may have (`exp` after `iat`, or after now without `iat`).
    max_lifetime_secs: u64,
    /// Clock skew tolerated.
    leeway_secs: u64,
    /// Device ids are refused: only tokens identify visitors.
    require_token: bool,
}

impl std::fmt::Debug for IdentityVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityVerifier")
            .field("tokens_enabled", &self.jwt.is_some())
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    name: Option<String>,
}

/// What a visitor token must satisfy.
#[derive(Debug, Clone, Default)]
pub struct TokenRules<'a> {
    /// The HS256 secret shared with the embedding site; `None`: tokens are not accepted.
    pub secret: Option<&'a str>,
    /// Clock skew tolerated for `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// The longest validity a token may have, in seconds (0: no maximum).
    pub max_lifetime_secs: u64,
    /// The `aud` a token must carry, when set.
    pub audience: Option<&'a str>,
    /// The `iss` a token must carry, when set.
    pub issuer: Option<&'a str>,
    /// Refuse device ids: a site that signs its visitors' tokens can insist on them, so nobody
    /// chats as an anonymous device.
    pub require_token: bool,
}

impl IdentityVerifier {
    /// A verifier that accepts device ids, and HS256 tokens following `rules` when a secret is
    /// given. Tokens must carry `sub` and `exp`; a `nbf` in the future is refused.
    pub fn new(rules: TokenRules<'_>) -> Self {
        let jwt = rules.secret.filter(|s| !s.trim().is_empty()).map(|secret| {
            let mut validation = Validation::new(Algorithm::HS256);
            let mut required = vec!["exp", "sub"];
            required.extend(rules.audience.map(|_| "aud"));
            required.extend(rules.issuer.map(|_| "iss"));
            validation.set_required_spec_claims(&required);
            validation.leeway = rules.leeway_secs;
            validation.validate_nbf = true;
            match rules.audience {
                Some(audience) => validation.set_audience(&[audience]),
                None => validation.validate_aud = false,
            }
            if let Some(issuer) = rules.issuer {
                validation.set_issuer(&[issuer]);
            }
            (DecodingKey::from_secret(secret.as_bytes()), validation)
        });
        Self {
            jwt,
            max_lifetime_secs: match rules.max_lifetime_secs {
                0 => u64::MAX,
                n => n.saturating_add(rules.leeway_secs),
            },
            leeway_secs: rules.leeway_secs,
            require_token: rules.require_token,
        }
    }

    /// Identifies a visitor from the `Authorization` header value and the `X-Device-ID` header value
    /// (or their query-string equivalents, for `EventSource` clients that cannot set headers).
    /// A bearer token wins over a device id.
    pub fn identify(
        &self,
        authorization: Option<&str>,
        device_id: Option<&str>,
    ) -> Result<Identity, IdentityError> {
        if let Some(header) = authorization {
            let token = header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or(IdentityError::MalformedAuthorization)?;
            return self.verify_token(token);
        }
        match device_id {
            Some(_) if self.require_token => Err(IdentityError::TokenRequired),
            Some(id) => validate_device_id(id).map(|id| Identity::Device(id.to_owned())),
            None => Err(IdentityError::Missing),
        }
    }

    /// Verifies a bearer token alone.
    pub fn verify_token(&self, token: &str) -> Result<Identity, IdentityError> {
        let (key, validation) = self.jwt.as_ref().ok_or(IdentityError::TokensDisabled)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| {
            IdentityError::InvalidToken(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::InvalidSignature => "the signature does not match",
                ErrorKind::InvalidAlgorithm => "only HS256 tokens are accepted",
                ErrorKind::MissingRequiredClaim(_) => {
                    "the token must carry 'sub' and 'exp' (and 'aud', 'iss' when required)"
                }
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::InvalidAudience => "the token's 'aud' is not this gateway's",
                ErrorKind::InvalidIssuer => "the token's 'iss' is not the expected issuer",
                _ => "the token is malformed",
            })
        })?;
        // The validity counts from when it was issued, but never from later than now: a token
        // cannot shorten its own lifetime by claiming to be issued in the future.
        let now = chrono::Utc::now().timestamp();
        if data
            .claims
            .iat
            .is_some_and(|iat| iat > now.saturating_add_unsigned(self.leeway_secs))
        {
            return Err(IdentityError::InvalidToken(
                "the token claims to be issued later",
            ));
        }
        let issued = data.claims.iat.map_or(now, |iat| iat.min(now));
        let lifetime = u64::try_from(data.claims.exp.saturating_sub(issued)).unwrap_or(0);
        if lifetime > self.max_lifetime_secs {
            return Err(IdentityError::InvalidToken(
                "the token is valid for longer than this gateway accepts",
            ));
        }
        let subject = data.claims.sub.trim();
        if subject.is_empty() || subject.len() > 256 {
            return Err(IdentityError::InvalidToken(
                "'sub' must be 1 to 256 characters",
            ));
        }
        Ok(Identity::User {
            subject: subject.to_owned(),
            name: data.claims.name.filter(|n| !n.trim().is_empty()),
        })
    }
}

fn validate_device_id(id: &str) -> Result<&str, IdentityError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_DEVICE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if valid {
        Ok(id)
    } else {
        Err(IdentityError::InvalidDeviceId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn token(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn in_an_hour() -> i64 {
        chrono::Utc::now().timestamp() + 3600
    }

    fn rules(secret: &str) -> TokenRules<'_> {
        TokenRules {
            secret: Some(secret),
            max_lifetime_secs: 24 * 3600,
            ..TokenRules::default()
        }
    }

    #[test]
    fn lifetimes_nbf_audience_and_issuer_are_checked() {
        let now = chrono::Utc::now().timestamp();
        let verifier = IdentityVerifier::new(rules("s3cret"));
        let long = token(
            "s3cret",
            json!({"sub": "u1", "iat": now, "exp": now + 30 * 86400}),
        );
        let long_without_iat = token("s3cret", json!({"sub": "u1", "exp": now + 30 * 86400}));
        let not_yet = token(
            "s3cret",
            json!({"sub": "u1", "nbf": now + 600, "exp": now + 3600}),
        );
        for t in [long, long_without_iat, not_yet] {
            assert!(
                matches!(
                    verifier.identify(Some(&format!("Bearer {t}")), None),
                    Err(IdentityError::InvalidToken(_))
                ),
                "{t}"
            );
        }
        let strict = IdentityVerifier::new(TokenRules {
            audience: Some("chat.example.com"),
            issuer: Some("https://shop.example.com"),
            ..rules("s3cret")
        });
        let good = token(
            "s3cret",
            json!({"sub": "u1", "exp": now + 600, "aud": "chat.example.com",
                   "iss": "https://shop.example.com"}),
        );
        assert!(
            strict
                .identify(Some(&format!("Bearer {good}")), None)
                .is_ok()
        );
        for claims in [
            json!({"sub": "u1", "exp": now + 600, "iss": "https://shop.example.com"}),
            json!({"sub": "u1", "exp": now + 600, "aud": "other", "iss": "https://shop.example.com"}),
            json!({"sub": "u1", "exp": now + 600, "aud": "chat.example.com", "iss": "https://evil"}),
        ] {
            let t = token("s3cret", claims);
            assert!(
                strict.identify(Some(&format!("Bearer {t}")), None).is_err(),
                "{t}"
            );
        }
    }

    #[test]
    fn device_ids_are_checked() {
        let verifier = IdentityVerifier::new(TokenRules::default());
        assert_eq!(
            verifier.identify(None, Some("dev-123_abc:9")),
            Ok(Identity::Device("dev-123_abc:9".into()))
        );
        assert_eq!(
            verifier.identify(None, Some("")),
            Err(IdentityError::InvalidDeviceId)
        );
        assert_eq!(
            verifier.identify(None, Some("a b")),
            Err(IdentityError::InvalidDeviceId)
        );
        assert_eq!(
            verifier.identify(None, Some(&"x".repeat(129))),
            Err(IdentityError::InvalidDeviceId)
        );
        assert_eq!(verifier.identify(None, None), Err(IdentityError::Missing));
    }

    #[test]
    fn a_site_can_insist_on_its_tokens() {
        let verifier = IdentityVerifier::new(TokenRules {
            require_token: true,
            ..rules("s3cret")
        });
        assert_eq!(
            verifier.identify(None, Some("dev1")),
            Err(IdentityError::TokenRequired)
        );
        let t = token("s3cret", json!({"sub": "u1", "exp": in_an_hour()}));
        assert!(matches!(
            verifier.identify(Some(&format!("Bearer {t}")), Some("dev1")),
            Ok(Identity::User { subject, .. }) if subject == "u1"
        ));
    }

    #[test]
    fn tokens_need_a_configured_secret() {
        let verifier = IdentityVerifier::new(TokenRules::default());
        let t = token("s3cret", json!({"sub": "u1", "exp": in_an_hour()}));
        assert_eq!(
            verifier.identify(Some(&format!("Bearer {t}")), Some("dev1")),
            Err(IdentityError::TokensDisabled)
        );
    }

    #[test]
    fn valid_tokens_identify_users_and_win_over_devices() {
        let verifier = IdentityVerifier::new(rules("s3cret"));
        let t = token(
            "s3cret",
            json!({"sub": "u1", "name": "Ada", "exp": in_an_hour()}),
        );
        let identity = verifier
            .identify(Some(&format!("Bearer {t}")), Some("dev1"))
            .unwrap();
        assert_eq!(
            identity,
            Identity::User {
                subject: "u1".into(),
                name: Some("Ada".into())
            }
        );
        assert_eq!(identity.contact().external_id, "user:u1");
    }

    #[test]
    fn bad_tokens_are_refused() {
        let verifier = IdentityVerifier::new(rules("s3cret"));
        let forged = token("other", json!({"sub": "u1", "exp": in_an_hour()}));
        let expired = token(
            "s3cret",
            json!({"sub": "u1", "exp": chrono::Utc::now().timestamp() - 60}),
        );
        let no_exp = token("s3cret", json!({"sub": "u1"}));
        for t in [forged, expired, no_exp, "not.a.token".to_owned()] {
            assert!(matches!(
                verifier.identify(Some(&format!("Bearer {t}")), None),
                Err(IdentityError::InvalidToken(_))
            ));
        }
        assert_eq!(
            verifier.identify(Some("Basic abc"), None),
            Err(IdentityError::MalformedAuthorization)
        );
    }
}
