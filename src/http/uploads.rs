//! `POST /v1/uploads`: a website visitor sends a file (a picture or a PDF) ahead of the message
//! that attaches it (`{"upload_id": …}` in the message's `attachments`).
//!
//! The body is `multipart/form-data` with one part named `file`. The file is stored the way every
//! other file is (the content-addressed media directory, owner-only), under a media row that
//! names the visitor: only they can attach it or fetch it (staff can fetch it too). What the file
//! is comes from its first bytes, never from the browser's `Content-Type` or file name; the name
//! is kept only to show. The size limit (`web.max_upload_bytes`) holds while the body arrives: the
//! first byte too many ends the upload with 413 and nothing of it is kept. Every upload counts
//! against the visitor's message rate. An upload no message attaches is removed after
//! `web.unused_upload_ttl` ([`crate::retention::UnlinkedFiles`]).

use axum::{
    Json,
    extract::{
        Multipart, State,
        multipart::{Field, MultipartError, MultipartRejection},
    },
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use switchboard_web::upload::{SNIFF_BYTES, display_name, sniff};

use super::{
    AppState,
    error::ApiError,
    extract::{ClientAddress, Visitor},
};
use crate::{
    media_dir::{Expected, MediaError},
    store::media::{self, NewMedia},
};

/// What multipart framing (boundaries, part headers) may add to the file's own bytes before the
/// body as a whole is too large.
pub(super) const FRAMING_BYTES: u64 = 64 * 1024;

/// The answer: what the gateway made of the file.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Uploaded {
    /// The id to attach it with (`{"upload_id": id}`).
    id: String,
    /// The type the content shows.
    mime_type: &'static str,
    /// Bytes.
    size: u64,
    /// The sanitized file name, when the browser sent one.
    name: Option<String>,
    /// Where the visitor fetches it (with their identity headers).
    url: String,
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "upload_too_large",
        format!("the file is larger than {limit} bytes"),
    )
}

fn malformed(detail: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_upload",
        format!("the body must be multipart/form-data with one part named file: {detail}"),
    )
}

/// A broken body: too large for the route (413), or not multipart as announced (400).
fn body_error(e: &MultipartError, limit: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit)
    } else {
        malformed(e.body_text())
    }
}

/// The multipart body of an upload, for the document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct UploadForm {
    /// The file: a PNG, JPEG, GIF or WebP picture or a PDF document, up to `web.max_upload_bytes`.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// `POST /v1/uploads`
#[utoipa::path(
    post,
    path = "/v1/uploads",
    tag = "chat",
    summary = "Upload a file to attach",
    description = "One part named `file`. The type is read from the content (PNG, JPEG, GIF, WebP, PDF), never from the client; the answer's `id` goes into a message's `attachments` as `{\"upload_id\": id}`. Counts against the visitor's message rate.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored", body = Uploaded, headers(("Location" = String, description = "Where the file is fetched"))),
        (status = 400, description = "`invalid_upload`: not one part named file; `invalid_device_id`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`, `invalid_token`, `token_required`", body = crate::http::error::ErrorBody),
        (status = 413, description = "`upload_too_large`: over `web.max_upload_bytes`", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not a picture or a PDF", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn create(
    State(state): State<AppState>,
    visitor: Visitor,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let limit = state.config.web.max_upload_bytes;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit.saturating_add(FRAMING_BYTES)) {
        return Err(too_large(limit));
    }
    let mut multipart = multipart.map_err(|e| malformed(e.body_text()))?;
    let owner = visitor.external_id();
    // Counted before the body is read: a visitor who floods uploads is stopped before the disk.
    state.limits.visitors.message(&owner, address, false)?;

    let mut field = match multipart.next_field().await {
        Ok(Some(field)) if field.name() == Some("file") => field,
        Ok(Some(_)) => return Err(malformed("the only part must be named file")),
        Ok(None) => return Err(malformed("no file part")),
        Err(e) => return Err(body_error(&e, limit)),
    };
    let name = field.file_name().and_then(display_name);
    let head = first_bytes(&mut field, limit).await?;
    let mime_type = sniff(&head).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "only PNG, JPEG, GIF and WebP pictures and PDF documents can be uploaded",
        )
    })?;
    let rest = field.map_err(std::io::Error::other);
    let body = futures::stream::iter([Ok(head)]).chain(rest);
    let saved = state
        .files
        .save(
            Box::pin(body),
            Expected {
                max_bytes: limit,
                ..Expected::default()
            },
        )
        .await
        .map_err(|e| match e {
            MediaError::TooLarge { limit } => too_large(limit),
            MediaError::Download(e) => match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<MultipartError>())
            {
                Some(e) => body_error(e, limit),
                None => malformed(e),
            },
            other => ApiError::internal(&other),
        })?;
    // One part only: anything after the file is refused, and the file is not kept.
    let extra = match multipart.next_field().await {
        Ok(None) => None,
        Ok(Some(_)) => Some(malformed("only one part, named file, is accepted")),
        Err(e) => Some(body_error(&e, limit)),
    };
    if let Some(refused) = extra {
        crate::retention::remove_files(&state.store, &state.files, &[saved.path]).await?;
        return Err(refused);
    }

    let mut tx = state.store.begin().await?;
    let id = media::insert(
        &mut tx,
        NewMedia {
            message_id: None,
            attachment: None,
            sha256: saved.sha256,
            mime_type: mime_type.to_owned(),
            size: i64::try_from(saved.size).unwrap_or(i64::MAX),
            filename: name.clone(),
            path: saved.path,
            uploaded_by: Some(owner),
        },
        state.clock.now(),
    )
    .await?;
    tx.commit().await?;
    let location = format!("/v1/media/{id}");
    let body = Uploaded {
        url: format!("{}{location}", state.public_url),
        id: id.into_string(),
        mime_type,
        size: saved.size,
        name,
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// Reads the file's first bytes, enough to tell its type (fewer when the file is shorter).
async fn first_bytes(field: &mut Field<'_>, limit: u64) -> Result<Bytes, ApiError> {
    let mut head = BytesMut::new();
    while head.len() < SNIFF_BYTES {
        match field.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Err(body_error(&e, limit)),
        }
    }
    if head.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(head.freeze())
}
