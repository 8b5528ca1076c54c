//! The operator's bearer token, the credential of the gateway's own operations routes. Always
//! compared in constant time, so that response timing reveals neither how much of a guess was
//! right nor how long the secret is.

use axum::http::{HeaderMap, StatusCode, header};

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
