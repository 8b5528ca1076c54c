//! Request extractors that answer in the API's error format, and the visitor identity.

use axum::{
    extract::{FromRequest, FromRequestParts, Path, Query},
    http::{HeaderMap, request::Parts},
};
use switchboard_web::identity::Identity;

use super::{AppState, error::ApiError};

/// `axum::Json`, with rejections in the API's error format.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// A raw request body (webhooks verify signatures over the exact bytes), with rejections — a body
/// over the size limit — in the API's error format.
#[derive(Debug)]
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        axum::body::Bytes::from_request(request, state)
            .await
            .map(ApiBytes)
            .map_err(ApiError::from)
    }
}

/// `axum::extract::Query`, with rejections in the API's error format.
#[derive(Debug, FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path`, with rejections in the API's error format.
#[derive(Debug, FromRequestParts)]
#[from_request(via(Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// The website visitor making the request, from `Authorization: Bearer` or `X-Device-ID`.
#[derive(Debug, Clone)]
pub struct Visitor(pub Identity);

impl Visitor {
    /// Identifies the visitor from headers, falling back to the given query-string values (for
    /// `EventSource`, which cannot send headers).
    pub fn from_headers(
        state: &AppState,
        headers: &HeaderMap,
        query_token: Option<&str>,
        query_device: Option<&str>,
    ) -> Result<Visitor, ApiError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let authorization = header("authorization")
            .map(str::to_owned)
            .or_else(|| query_token.map(|t| format!("Bearer {t}")));
        let device = header("x-device-id").or(query_device);
        Ok(Visitor(
            state.identity.identify(authorization.as_deref(), device)?,
        ))
    }

    /// The visitor's contact id on the web channel.
    pub fn external_id(&self) -> String {
        self.0.contact().external_id
    }
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Visitor::from_headers(state, &parts.headers, None, None)
    }
}
