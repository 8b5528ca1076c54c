//! `GET /v1/media/{id}`: the gateway's stored copy of a file a user sent, for the operator (and,
//! later, experts on their dashboard). Only with the operator's bearer token: these are private
//! files of end users.

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use tokio_util::io::ReaderStream;

use super::{ApiError, AppState, auth::require_operator, extract::ApiPath};
use crate::store::media;

/// `GET /v1/media/{id}`
pub(super) async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    require_operator(&state, &headers)?;
    let stored = media::get(&mut state.store.reader(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("media"))?;
    let file = tokio::fs::File::open(state.files.locate(&stored.path))
        .await
        .map_err(|e| ApiError::internal(&format!("stored media {id} cannot be opened: {e}")))?;
    let mut response = Body::from_stream(ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    let mime = HeaderValue::from_str(&stored.mime_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, mime);
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(stored.size.max(0)),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", stored.sha256)) {
        headers.insert(header::ETAG, etag);
    }
    let disposition = match &stored.filename {
        Some(name) => format!(
            "attachment; filename=\"{}\"",
            name.replace(['"', '\\', '\r', '\n'], "_")
        ),
        None => "inline".to_owned(),
    };
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
