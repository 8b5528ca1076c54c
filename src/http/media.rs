//! `GET /v1/media/{id}`: the gateway's stored copy of a file a user sent. These are private files
//! of end users: the operator (bearer token) gets any of them; signed-in staff get a file as they
//! see its conversation (an expert the conversations they hold or may take; supervisors and admins
//! every one, and the files no message uses yet), and each fetch is in the audit log as a view of
//! the conversation (an observation, for a supervisor's look at somebody else's); a website
//! visitor gets the files they uploaded themselves (`POST /v1/uploads`) and the files of their
//! conversations' messages (an expert's); everybody else a 404 as for a missing file. A file is
//! whatever its sender made it: it is served so that a browser never runs it (downloaded unless it
//! is an image, audio or video; no sniffing; a sandbox).

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde_json::json;
use tokio_util::io::ReaderStream;

use super::{
    ApiError, AppState,
    auth::require_operator,
    extract::{ApiPath, StaffUser, Visitor},
};
use crate::{
    experts::ExpertError,
    store::{
        audit,
        media::{self, StoredMedia},
        messages,
        users::StaffRole,
    },
};

/// `GET /v1/media/{id}`
#[utoipa::path(
    get,
    path = "/v1/media/{id}",
    tag = "media",
    summary = "A stored file",
    description = "The gateway's copy of a file a user sent: for the operator any file; for staff the files of conversations they may see (supervisors and admins also files no message uses yet), each fetch audited as a view; for a website visitor (their identity headers) the files they uploaded and those of their conversations' messages; 404 for anything else. Served so that a browser never runs it: `Content-Disposition: attachment` unless it is an image (not SVG), audio or video, `X-Content-Type-Options: nosniff`, `Content-Security-Policy: sandbox`.",
    security(("operator_token" = []), ("staff_token" = []), ("dashboard_session" = []), ("device_id" = []), ("visitor_jwt" = [])),
    params(("id" = String, Path, description = "The stored file's id (`attachments[].media_id`)")),
    responses(
        (status = 200, description = "The file, with the MIME type it was stored with", content_type = "application/octet-stream", body = crate::http::openapi::schemas::Binary),
        (status = 400, description = "`invalid_path`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: no operator token, a wrong one, or none configured", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such file, or not one the caller may see", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    staff: Result<StaffUser, ApiError>,
) -> Result<Response, ApiError> {
    let mut reader = state.store.reader();
    let stored = if require_operator(&state, &headers).is_ok() {
        media::get(&mut reader, &id).await?
    } else if let Ok(staff) = staff {
        match media::get(&mut reader, &id).await? {
            Some(stored) => for_staff(&state, &staff, stored).await?,
            None => None,
        }
    } else {
        // Not staff: a visitor (whose identity errors are the answer), and only their files.
        let visitor = Visitor::from_headers(&state, &headers, None, None)?;
        media::visible_to_visitor(&mut reader, &id, &visitor.external_id()).await?
    };
    let stored = stored.ok_or_else(|| ApiError::not_found("media"))?;
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
    // The type is what the sender claimed: never let a browser guess another, and never let the
    // file run anything (an HTML "image" would otherwise run script on the gateway's origin).
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; style-src 'unsafe-inline'"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    // Who may see the file depends on who asks: a cache keeps one copy per identity.
    headers.insert(
        header::VARY,
        HeaderValue::from_static("authorization, x-device-id"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", stored.sha256)) {
        headers.insert(header::ETAG, etag);
    }
    if let Ok(value) =
        HeaderValue::from_str(&disposition(&stored.mime_type, stored.filename.as_deref()))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// A file for a staff member who may see its conversation, the fetch recorded in the audit log;
/// a file no message uses yet only for supervisors and admins.
async fn for_staff(
    state: &AppState,
    staff: &StaffUser,
    stored: StoredMedia,
) -> Result<Option<StoredMedia>, ApiError> {
    let message = match &stored.message_id {
        Some(id) => messages::get(&mut state.store.reader(), id).await?,
        None => None,
    };
    let supervisor = staff.user.role.includes(StaffRole::Supervisor);
    let conversation = match message {
        Some(message) => match state
            .experts
            .visible(&staff.user, &message.conversation_id)
            .await
        {
            Ok(conversation) => Some(conversation),
            Err(ExpertError::NotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        },
        None if supervisor => None,
        None => return Ok(None),
    };
    let mine = conversation
        .as_ref()
        .is_some_and(|c| c.expert_id.as_deref() == Some(staff.user.id.as_str()));
    let action = if supervisor && !mine {
        audit::Action::Observe
    } else {
        audit::Action::View
    };
    super::staff::audit(
        state,
        staff,
        action,
        conversation.as_ref().map(|c| c.id.as_str()),
        json!({"file": stored.id}),
    )
    .await?;
    Ok(Some(stored))
}

/// `inline` only for media a browser shows without running anything (images but SVG, audio,
/// video); everything else downloads as a file.
fn disposition(mime: &str, filename: Option<&str>) -> String {
    let mime = mime.trim().to_ascii_lowercase();
    let (kind, subtype) = mime.split_once('/').unwrap_or((&mime, ""));
    let shown = match kind {
        "image" => !subtype.starts_with("svg"),
        "audio" | "video" => true,
        _ => false,
    };
    let kind = if shown { "inline" } else { "attachment" };
    match filename {
        Some(name) => {
            let safe: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(200)
                .collect();
            format!("{kind}; filename=\"{safe}\"")
        }
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::disposition;

    #[test]
    fn only_harmless_media_is_shown_inline() {
        assert_eq!(disposition("image/jpeg", None), "inline");
        assert_eq!(
            disposition("audio/ogg", Some("note.ogg")),
            "inline; filename=\"note.ogg\""
        );
        assert_eq!(disposition("video/mp4", None), "inline");
        assert_eq!(disposition("image/svg+xml", None), "attachment");
        assert_eq!(disposition("text/html", None), "attachment");
        assert_eq!(
            disposition("application/pdf", Some("a.pdf")),
            "attachment; filename=\"a.pdf\""
        );
        assert_eq!(
            disposition("text/plain", Some("x\"\r\nSet-Cookie: a=b")),
            "attachment; filename=\"x___Set-Cookie: a=b\""
        );
        assert_eq!(
            disposition("text/plain", Some("été.txt")),
            "attachment; filename=\"_t_.txt\""
        );
    }
}
