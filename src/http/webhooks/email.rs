//! Inbound mail, one route per way mail reaches the gateway:
//!
//! - `POST /webhooks/email/mailgun`: Mailgun's "forward" route (URL-encoded or multipart form),
//!   signed with the webhook signing key over `timestamp ‖ token`; signatures older than
//!   `email.signature_max_age` are refused, and each token is accepted once (recorded in the
//!   transaction that stores the mail, so a Mailgun retry after a failure still gets through).
//! - `POST /webhooks/email/postmark`: Postmark's inbound JSON, behind Basic auth.
//! - `POST /webhooks/email/sendgrid`: SendGrid's Inbound Parse (multipart), behind Basic auth.
//! - `POST /webhooks/email/raw`: a `message/rfc822` body from a self-hosted MTA, with the body's
//!   HMAC in `X-Switchboard-Signature`.
//!
//! Every route ends in the same [`Inbox`]: an automated mail (auto-reply, bounce, mailing list) is
//! acknowledged and dropped without an answer; the attachments are stored in the media directory;
//! the mail is ingested as a reply within its thread, or as a new conversation.

use axum::{
    Json,
    body::Bytes,
    extract::{FromRequest, Multipart, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;
use switchboard_email::{InboundEmail, ReplyAddress, parse_mime, providers};

use super::{
    announced_length, body, channel_off, refuse_announced_over, reserve_unverified, summary,
    unverified_body,
};
use crate::{
    channels::email::{Inbox, ReceiveError, Received},
    http::{ApiError, AppState, auth::require_basic},
    pipeline::Checkpoint,
};

/// `POST /webhooks/email/mailgun`
pub async fn mailgun(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (Some(key), Some(ours)) = (
        state.config.email.mailgun_signing_key.clone(),
        state.config.email.reply_address(),
    ) else {
        return Err(channel_off("email (mailgun)"));
    };
    // The proof of origin is inside the body: it takes its place in the budget of unproven
    // bodies while it is read and checked.
    let limit = state.config.email.max_bytes;
    refuse_announced_over(&request, limit).map_err(|_| too_large())?;
    let _reserved = reserve_unverified(&state, announced_length(&request), limit).await?;
    let fields = form_fields(&state, request).await?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let (timestamp, token, signature) = (field("timestamp"), field("token"), field("signature"));
    let checked = providers::mailgun::verify(
        &key,
        &timestamp,
        &token,
        &signature,
        state.clock.now().to_datetime(),
        state.config.email.signature_max_age,
    );
    if let Err(e) = checked {
        tracing::warn!(reason = %e, "refused a Mailgun webhook");
        let code = match e {
            providers::mailgun::MailgunError::Stale => "stale_signature",
            _ => "invalid_signature",
        };
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            code,
            "the Mailgun signature is missing, wrong or too old",
        ));
    }
    let email = providers::mailgun::parse(&fields, &ours).map_err(invalid)?;
    let once = Checkpoint::Once {
        scope: "mailgun".into(),
        token,
    };
    receive(&state, &ours, email, Some(once)).await
}

/// `POST /webhooks/email/postmark`
pub async fn postmark(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let ours = basic_auth(&state, request.headers())?;
    let body = body(request, state.config.email.max_bytes).await?;
    let email = providers::postmark::parse(&body, &ours).map_err(invalid)?;
    receive(&state, &ours, email, None).await
}

/// `POST /webhooks/email/sendgrid`
pub async fn sendgrid(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let ours = basic_auth(&state, request.headers())?;
    let fields = form_fields(&state, request).await?;
    let email = providers::sendgrid::parse(&fields, &ours).map_err(invalid)?;
    receive(&state, &ours, email, None).await
}

/// `POST /webhooks/email/raw`
pub async fn raw(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (Some(secret), Some(ours)) = (
        state.config.email.raw_secret.clone(),
        state.config.email.reply_address(),
    ) else {
        return Err(channel_off("email (raw)"));
    };
    let signature = request
        .headers()
        .get(providers::raw::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let signature = signature.as_deref();
    // Not signed: refused unread.
    if let Err(e) = switchboard_channel::signature::check_sha256_format(signature) {
        tracing::warn!(reason = %e, "refused a raw mail without a signature");
        return Err(bad_raw_signature());
    }
    let (body, _reserved) = unverified_body(&state, request, state.config.email.max_bytes).await?;
    if providers::raw::verify(signature, &body, &secret).is_err() {
        tracing::warn!("refused a raw mail with a bad signature");
        return Err(bad_raw_signature());
    }
    let email = parse_mime(&body, &ours).map_err(invalid)?;
    receive(&state, &ours, email, None).await
}

fn bad_raw_signature() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "the X-Switchboard-Signature header is missing or does not match the body",
    )
}

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_payload", e.to_string())
}

/// Checks Basic auth against `email.inbound_user` / `inbound_password`.
fn basic_auth(state: &AppState, headers: &HeaderMap) -> Result<ReplyAddress, ApiError> {
    let config = &state.config.email;
    let (Some(user), Some(password), Some(ours)) = (
        config.inbound_user.as_deref(),
        config.inbound_password.as_deref(),
        config.reply_address(),
    ) else {
        return Err(channel_off("email (postmark, sendgrid)"));
    };
    require_basic(headers, user, password)?;
    Ok(ours)
}

/// The fields of a form, URL-encoded or multipart (files included, as bytes).
async fn form_fields(
    state: &AppState,
    request: Request,
) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    refuse_announced_over(&request, state.config.email.max_bytes).map_err(|_| too_large())?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, state)
            .await
            .map_err(|e| invalid(e.body_text()))?;
        let mut fields = Vec::new();
        while let Some(field) = multipart.next_field().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                invalid(e.body_text())
            }
        })? {
            let name = field.name().unwrap_or_default().to_owned();
            // A file part's name and type travel beside it (Mailgun's non-MIME mode needs them).
            if let Some(filename) = field.file_name() {
                fields.push((format!("{name}.filename"), filename.as_bytes().to_vec()));
            }
            if let Some(content_type) = field.content_type() {
                fields.push((
                    format!("{name}.content-type"),
                    content_type.as_bytes().to_vec(),
                ));
            }
            let value = field.bytes().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    invalid(e.body_text())
                }
            })?;
            fields.push((name, value.to_vec()));
        }
        Ok(fields)
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let body = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                invalid(e.body_text())
            }
        })?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).map_err(invalid)?;
        Ok(pairs
            .into_iter()
            .map(|(name, value)| (name, value.into_bytes()))
            .collect())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the mail as multipart/form-data or application/x-www-form-urlencoded",
        ))
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "the mail is larger than email.max_bytes",
    )
}

/// Hands the mail to the inbox and answers with what it did.
async fn receive(
    state: &AppState,
    ours: &ReplyAddress,
    email: InboundEmail,
    once: Option<Checkpoint>,
) -> Result<Response, ApiError> {
    let inbox = Inbox {
        experts: state.experts.clone(),
        ours: ours.clone(),
        store: state.store.clone(),
        pipeline: state.pipeline.clone(),
        files: state.files.clone(),
        max_bytes: state.config.media.max_bytes,
        max_attachments: state.config.email.max_attachments,
        clock: state.clock.clone(),
    };
    match inbox.receive(email, once).await {
        Ok(Received::Ignored { reason }) => {
            Ok(Json(json!({"status": "ignored", "reason": reason})).into_response())
        }
        Ok(Received::Ingested(outcomes)) => Ok(Json(summary(1, &outcomes)).into_response()),
        Ok(Received::ExpertReply(message)) => {
            Ok(Json(json!({"status": "ok", "expert_reply": message.id})).into_response())
        }
        // Answered 200: a provider must not retry what will be refused again.
        Ok(Received::Refused { reason }) => {
            Ok(Json(json!({"status": "refused", "reason": reason})).into_response())
        }
        Err(ReceiveError::TooLarge(_)) => Err(too_large()),
        Err(ReceiveError::Ingest(e)) => Err(e.into()),
        Err(ReceiveError::Store(e)) => Err(e.into()),
        Err(ReceiveError::Media(e)) => Err(ApiError::internal(&e)),
    }
}
