//! Data subject rights: a person may see everything stored about them, and have it erased; an
//! admin may do the same for any contact, and correct a contact's name or address.
//!
//! - `GET /v1/me/export` (the website visitor, by `X-Device-ID` or bearer token) and
//!   `GET /v1/admin/contacts/{id}/export` (admins): one JSON document — the contact, every
//!   conversation of it (deleted ones too), each with its messages, their stored files'
//!   descriptions and their evaluations. It is streamed a page at a time, so an export of any size
//!   takes little memory; a failure midway breaks the connection off, so a truncated export can
//!   never pass for a complete one. A visitor's export and erasure count against their message
//!   rate, as an upload does.
//! - `DELETE /v1/me` and `DELETE /v1/admin/contacts/{id}` → 204: the contact, its conversations,
//!   messages and everything referring to them go in one transaction, then the stored files no
//!   other row needs. Irreversible. The audit log records who erased which contact id and how much,
//!   never what was said; its earlier entries about the erased conversations lose their details.
//!   The next message from the same address or device starts a new contact and conversation.
//!   A conversation an expert holds goes too (their dashboard is told it closed; their next
//!   action on it answers 404), and a reply being written for it is not stored.
//! - `PATCH /v1/admin/contacts/{id}` `{display_name?, username?, external_id?}` → 200 with the
//!   contact: `null` clears a name or username; `external_id` is the address replies go to (not
//!   for website visitors, whose identity is their device or sign-in).

use std::collections::HashMap;

use axum::{
    Json,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::TryStreamExt;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use switchboard_channel::Channel;

use super::{
    AppState,
    error::ApiError,
    extract::{ApiJson, ApiPath, ClientAddress, StaffUser, Visitor},
};
use crate::{
    ids::{ContactId, UserId},
    live::NoticeKind,
    store::{
        audit::{self, Action},
        contacts::{self, Contact, Correction},
        conversations::{self, Conversation, Mode},
        messages,
        privacy::{self, ExportedEvaluation, ExportedFile},
        users::StaffRole,
    },
    time::Timestamp,
};

/// Conversations read per query of an export.
const CONVERSATIONS_PAGE: i64 = 50;
/// Messages read per query of an export.
const MESSAGES_PAGE: i64 = 100;
/// The longest name, in characters.
const MAX_NAME_CHARS: usize = 200;
/// The longest username, in characters.
const MAX_USERNAME_CHARS: usize = 100;
/// The longest address, in characters (an e-mail address's limit).
const MAX_ADDRESS_CHARS: usize = 320;

/// Who reads an export: the visitor sees experts by the name they wrote under, staff by account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Visitor,
    Staff,
}

/// `GET /v1/me/export`
#[utoipa::path(
    get,
    path = "/v1/me/export",
    tag = "privacy",
    summary = "Everything stored about me",
    description = "The contact, every conversation (deleted ones too), their messages, stored files' descriptions and evaluations, streamed as one JSON document.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    responses(
        (status = 200, description = "The export", body = crate::http::openapi::schemas::PersonalData),
        (status = 400, description = "`invalid_device_id`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`, `invalid_token`, `token_required`", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`: counts against the visitor's message rate", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn export_me(
    State(state): State<AppState>,
    visitor: Visitor,
    ClientAddress(address): ClientAddress,
) -> Result<Response, ApiError> {
    // Reading a whole history is work: a visitor who asks again and again is held to their rate.
    state
        .limits
        .visitors
        .message(&visitor.external_id(), address, false)?;
    let mut reader = state.store.reader();
    let found = contacts::find_id(&mut reader, Channel::WEB, &visitor.external_id()).await?;
    let contact = match found {
        Some(id) => contacts::get(&mut reader, &id).await?,
        None => None,
    };
    match contact {
        Some(contact) => Ok(export(state, contact, Reader::Visitor)),
        // Nothing is stored about a visitor who never wrote.
        None => Ok(Json(json!({
            "exported_at": state.clock.now(),
            "contact": null,
            "conversations": [],
        }))
        .into_response()),
    }
}

/// `DELETE /v1/me`
#[utoipa::path(
    delete,
    path = "/v1/me",
    tag = "privacy",
    summary = "Erase everything stored about me",
    description = "Irreversible: the contact, its conversations, messages and stored files. A later message starts afresh.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    responses(
        (status = 204, description = "Erased (also when nothing was stored)"),
        (status = 400, description = "`invalid_device_id`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`, `invalid_token`, `token_required`", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`: counts against the visitor's message rate", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn erase_me(
    State(state): State<AppState>,
    visitor: Visitor,
    ClientAddress(address): ClientAddress,
) -> Result<StatusCode, ApiError> {
    state
        .limits
        .visitors
        .message(&visitor.external_id(), address, false)?;
    let found = contacts::find_id(
        &mut state.store.reader(),
        Channel::WEB,
        &visitor.external_id(),
    )
    .await?;
    if let Some(id) = found {
        erase(&state, &id, None).await?;
    }
    // Erasing what is not (or no longer) stored succeeds: afterwards nothing is stored either way.
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/admin/contacts/{id}/export`
#[utoipa::path(
    get,
    path = "/v1/admin/contacts/{id}/export",
    tag = "privacy",
    summary = "Everything stored about a contact",
    description = "Audited as `export_contact`.",
    security(("staff_token" = [])),
    params(("id" = String, Path, description = "The contact's id (UUID)")),
    responses(
        (status = 200, description = "The export", body = crate::http::openapi::schemas::PersonalData),
        (status = 400, description = "`invalid_path`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid staff token", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such contact", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn export_contact(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<ContactId>,
) -> Result<Response, ApiError> {
    staff.require(StaffRole::Admin)?;
    let contact = contacts::get(&mut state.store.reader(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("contact"))?;
    audit::record(
        &mut state.store.reader(),
        &staff.actor(),
        Action::ExportContact,
        None,
        json!({"contact_id": id}),
        state.clock.now(),
    )
    .await?;
    Ok(export(state, contact, Reader::Staff))
}

/// `DELETE /v1/admin/contacts/{id}`
#[utoipa::path(
    delete,
    path = "/v1/admin/contacts/{id}",
    tag = "privacy",
    summary = "Erase a contact",
    description = "Irreversible: the contact, its conversations, messages and stored files. Audited as `erase_contact` without content.",
    security(("staff_token" = [])),
    params(("id" = String, Path, description = "The contact's id (UUID)")),
    responses(
        (status = 204, description = "Erased"),
        (status = 400, description = "`invalid_path`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid staff token", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such contact", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn erase_contact(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<ContactId>,
) -> Result<StatusCode, ApiError> {
    staff.require(StaffRole::Admin)?;
    if erase(&state, &id, Some(&staff)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("contact"))
    }
}

/// A field that may be given as `null`: absent is `None`, `null` is `Some(None)`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CorrectionBody {
    #[serde(default, deserialize_with = "present")]
    display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    username: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    external_id: Option<Option<String>>,
}

/// Checks a text field of a correction: trimmed, not empty, at most `max` characters, no control
/// characters, and (`single_word`) no spaces.
fn checked(field: &str, value: String, max: usize, single_word: bool) -> Result<String, ApiError> {
    let value = value.trim().to_owned();
    let invalid = |why: String| ApiError::invalid("invalid_request", format!("{field} {why}"));
    if value.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    if value.chars().count() > max {
        return Err(invalid(format!("must be at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid("must not contain control characters".into()));
    }
    if single_word && value.chars().any(char::is_whitespace) {
        return Err(invalid("must not contain spaces".into()));
    }
    Ok(value)
}

/// `PATCH /v1/admin/contacts/{id}`
#[utoipa::path(
    patch,
    path = "/v1/admin/contacts/{id}",
    tag = "privacy",
    summary = "Correct a contact's name or address",
    description = "`null` clears a name or username; `external_id` is the address replies go to (not for website visitors). Audited as `correct_contact` with the field names only.",
    security(("staff_token" = [])),
    params(("id" = String, Path, description = "The contact's id (UUID)")),
    request_body(content = CorrectionBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The contact as it is now", body = crate::http::openapi::schemas::StoredContact),
        (status = 409, description = "`contact_exists`: another contact has that address", body = crate::http::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_request`: an empty, too long or malformed field; a website visitor's identity", body = crate::http::error::ErrorBody),
        (status = 400, description = "`invalid_path`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid staff token", body = crate::http::error::ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such contact", body = crate::http::error::ErrorBody),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn correct_contact(
    State(state): State<AppState>,
    staff: StaffUser,
    ApiPath(id): ApiPath<ContactId>,
    ApiJson(body): ApiJson<CorrectionBody>,
) -> Result<Response, ApiError> {
    staff.require(StaffRole::Admin)?;
    let mut fields = Vec::new();
    let mut correction = Correction::default();
    if let Some(name) = body.display_name {
        fields.push("display_name");
        correction.display_name = Some(
            name.map(|n| checked("display_name", n, MAX_NAME_CHARS, false))
                .transpose()?,
        );
    }
    if let Some(username) = body.username {
        fields.push("username");
        correction.username = Some(
            username
                .map(|u| checked("username", u, MAX_USERNAME_CHARS, true))
                .transpose()?,
        );
    }
    if let Some(address) = body.external_id {
        let Some(address) = address else {
            return Err(ApiError::invalid(
                "invalid_request",
                "external_id cannot be removed; erase the contact instead",
            ));
        };
        fields.push("external_id");
        correction.external_id = Some(checked("external_id", address, MAX_ADDRESS_CHARS, true)?);
    }
    if fields.is_empty() {
        return Err(ApiError::invalid(
            "invalid_request",
            "nothing to correct: give display_name, username or external_id",
        ));
    }
    let mut reader = state.store.reader();
    let current = contacts::get(&mut reader, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("contact"))?;
    if correction.external_id.is_some() && current.channel == Channel::WEB.as_str() {
        return Err(ApiError::invalid(
            "invalid_request",
            "a website visitor's identity is their device or sign-in; it cannot be changed",
        ));
    }
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    let corrected = match contacts::correct(&mut tx, &id, correction, now).await {
        Ok(Some(contact)) => contact,
        Ok(None) => return Err(ApiError::not_found("contact")),
        Err(e) if e.is_unique_violation() => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "contact_exists",
                "another contact of this channel has that external_id",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // Which fields changed, never their values: the log outlives corrections and erasures.
    audit::record(
        &mut tx,
        &staff.actor(),
        Action::CorrectContact,
        None,
        json!({"contact_id": id, "fields": fields}),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({"contact": corrected})).into_response())
}

/// Erases a contact (`by` a staff member, or themselves): the rows in one transaction with its
/// audit entry, then the files. Returns whether the contact existed.
async fn erase(state: &AppState, id: &ContactId, by: Option<&StaffUser>) -> Result<bool, ApiError> {
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    let Some(erased) = privacy::erase_contact(&mut tx, id).await? else {
        return Ok(false);
    };
    let removed = &erased.removed;
    let detail = json!({
        "contact_id": id,
        "channel": erased.channel,
        "conversations": removed.conversations,
        "messages": removed.messages,
        "media": removed.media,
    });
    match by {
        Some(staff) => {
            audit::record(
                &mut tx,
                &staff.actor(),
                Action::EraseContact,
                None,
                detail,
                now,
            )
            .await?
        }
        None => audit::record_by_contact(&mut tx, id, Action::EraseContact, detail, now).await?,
    }
    tx.commit().await?;
    for conversation in &erased.conversations {
        if conversation.mode == Mode::Expert.as_str() {
            state
                .hub
                .staff_notice(NoticeKind::Closed, &conversation.id, None);
        }
    }
    let files = crate::retention::remove_files(&state.store, &state.files, &removed.paths)
        .await
        .map_err(|e| {
            // The rows are gone; files left behind are nobody's and need the operator.
            ApiError::internal(&format!(
                "contact {id} erased, but its files could not be checked for removal: {e}"
            ))
        })?;
    tracing::info!(
        contact = %id,
        conversations = removed.conversations,
        messages = removed.messages,
        files,
        by = by.map_or(audit::VISITOR_ROLE, |s| s.user.role.as_str()),
        "contact erased"
    );
    Ok(true)
}

/// A conversation as an export shows it.
#[derive(Debug, Serialize)]
struct ExportedConversation<'a> {
    id: &'a str,
    channel: Channel,
    title: Option<&'a str>,
    mode: Mode,
    agent: Option<&'a str>,
    created_at: Timestamp,
    updated_at: Timestamp,
    deleted_at: Option<Timestamp>,
    metadata: &'a serde_json::Map<String, serde_json::Value>,
    /// Staff only: the expert who has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    expert_id: Option<&'a UserId>,
}

impl<'a> ExportedConversation<'a> {
    fn of(c: &'a Conversation, reader: Reader) -> Self {
        Self {
            id: c.id.as_str(),
            channel: c.channel,
            title: c.title.as_deref(),
            mode: c.mode,
            agent: c.active_agent.as_deref(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            deleted_at: c.deleted_at,
            metadata: &c.metadata.0,
            expert_id: match reader {
                Reader::Staff => c.expert_id.as_ref(),
                Reader::Visitor => None,
            },
        }
    }
}

/// A JSON object's text without its closing brace, so that more members can follow.
fn open_object(value: &impl Serialize) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string(value)?;
    if text.ends_with('}') {
        text.pop();
    }
    Ok(text)
}

type ExportError = Box<dyn std::error::Error + Send + Sync>;

/// Streams the export of a contact: `{"exported_at", "contact", "conversations": [{…,
/// "messages": [{…, "files": […], "evaluations": […]}]}]}`.
fn export(state: AppState, contact: Contact, reader: Reader) -> Response {
    let contact_id = contact.id.clone();
    let body = export_body(state, contact, reader).inspect_err(move |e: &ExportError| {
        tracing::error!(contact = %contact_id, error = %e, "export broken off");
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"export.json\""),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The export's text, a piece at a time: each page of conversations and messages is read when
/// the previous one has been sent.
fn export_body(
    state: AppState,
    contact: Contact,
    reader: Reader,
) -> impl futures::Stream<Item = Result<Bytes, ExportError>> {
    async_stream::try_stream! {
        let now = serde_json::to_string(&state.clock.now())?;
        let about = serde_json::to_string(&contact)?;
        yield Bytes::from(format!(
            "{{\"exported_at\":{now},\"contact\":{about},\"conversations\":["
        ));
        let mut after = String::new();
        let mut first_conversation = true;
        loop {
            let page = conversations::all_of_contact(
                &mut state.store.reader(),
                &contact.id,
                &after,
                CONVERSATIONS_PAGE,
            )
            .await?;
            let Some(last) = page.last() else { break };
            after = last.id.to_string();
            for conversation in page {
                let mut text = if first_conversation { String::new() } else { ",".into() };
                first_conversation = false;
                let object = open_object(&ExportedConversation::of(&conversation, reader))?;
                text.push_str(&object);
                text.push_str(",\"messages\":[");
                yield Bytes::from(text);
                let mut seq = 0;
                let mut first_message = true;
                loop {
                    let mut db = state.store.reader();
                    let page = messages::after(&mut db, &conversation.id, seq, MESSAGES_PAGE).await?;
                    let Some(last) = page.last() else { break };
                    let up_to = last.seq;
                    let mut files: HashMap<String, Vec<ExportedFile>> = HashMap::new();
                    for file in privacy::files_of_messages(&mut db, &conversation.id, seq, up_to).await? {
                        let message = file.message_id.as_deref().unwrap_or_default().to_owned();
                        files.entry(message).or_default().push(ExportedFile::from(file));
                    }
                    let mut evaluations: HashMap<String, Vec<ExportedEvaluation>> = HashMap::new();
                    for evaluation in
                        privacy::evaluations_of_messages(&mut db, &conversation.id, seq, up_to).await?
                    {
                        evaluations.entry(evaluation.message_id.clone()).or_default().push(evaluation);
                    }
                    seq = up_to;
                    for message in page {
                        let message = match reader {
                            Reader::Visitor => message.for_visitor(),
                            Reader::Staff => message,
                        };
                        let id = message.id.to_string();
                        let mut text = if first_message { String::new() } else { ",".into() };
                        first_message = false;
                        let object = open_object(&message)?;
                        let its_files =
                            serde_json::to_string(files.get(&id).map_or(&[][..], Vec::as_slice))?;
                        let its_evaluations = serde_json::to_string(
                            evaluations.get(&id).map_or(&[][..], Vec::as_slice),
                        )?;
                        text.push_str(&object);
                        text.push_str(&format!(
                            ",\"files\":{its_files},\"evaluations\":{its_evaluations}}}"
                        ));
                        yield Bytes::from(text);
                    }
                }
                yield Bytes::from_static(b"]}");
            }
        }
        yield Bytes::from_static(b"]}");
    }
}
