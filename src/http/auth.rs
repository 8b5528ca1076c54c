//! Credentials the gateway's own routes check: the operator's bearer token, and the shared
//! secrets of webhooks (Basic auth). Always compared in constant time, so that response timing
//! reveals neither how much of a guess was right nor how long the secret is.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use base64::Engine;

use super::{ApiError, AppState};

/// Whether a presented secret equals the expected one, in time that reveals neither where they
/// differ nor their lengths (an empty expected secret matches nothing).
pub use switchboard_channel::signature::secrets_match;

/// Checks `Authorization: Bearer <server.admin_token>`.
pub fn require_operator(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthenticated = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "this route needs the operator's bearer token",
        )
    };
    let Some(expected) = state.config.server.admin_token.as_deref() else {
        return Err(unauthenticated());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthenticated)?;
    if secrets_match(given.trim().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(unauthenticated())
    }
}

/// Checks `Authorization: Basic` against a user and password; a refusal asks for Basic auth.
pub fn require_basic(headers: &HeaderMap, user: &str, password: &str) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .unwrap_or_default();
    if secrets_match(&given, format!("{user}:{password}").as_bytes()) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "this webhook needs the configured Basic auth user and password",
    )
    .with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"switchboard\""),
    ))
}
