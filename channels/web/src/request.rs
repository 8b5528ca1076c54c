//! What a visitor may send, and how it becomes a normalized inbound message.

use serde::Deserialize;
use serde_json::{Map, Value};
use switchboard_channel::{Attachment, Content, ConversationRef, InboundMessage, MediaKind};

use crate::identity::Identity;

/// The body of `POST /v1/chat/messages` and `POST /v1/chat/stream`.
///
/// Unknown fields are refused: a misspelt `conversationId` would otherwise silently start a new
/// conversation.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// The conversation to continue; absent or `null` starts a new one.
    #[serde(default)]
    #[schema(format = "uuid")]
    pub conversation_id: Option<String>,
    /// The visitor's text. May be empty only when attachments are sent.
    #[serde(default)]
    pub content: String,
    /// Files the visitor shares, by URL or as their own uploads.
    #[serde(default)]
    pub attachments: Vec<AttachmentRequest>,
    /// The client's own data about the message (at most 32 keys, 4 KiB as JSON), stored with it
    /// and returned as given.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// What kind of message the client says this is (`text`, `question`, `fitness_plan`…): 1 to
    /// 50 lowercase letters, digits, `_`, `.` or `-`. Stored and returned.
    #[serde(default)]
    pub message_type: Option<String>,
}

/// The most keys of a client's metadata object.
pub const MAX_METADATA_KEYS: usize = 32;
/// The largest client metadata object, serialized, in bytes.
pub const MAX_METADATA_BYTES: usize = 4096;

/// A client's metadata object: at most [`MAX_METADATA_KEYS`] keys and [`MAX_METADATA_BYTES`]
/// bytes as JSON, so what a client may park on the gateway stays small.
pub fn client_metadata(metadata: Map<String, Value>) -> Result<Map<String, Value>, RequestError> {
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(RequestError::InvalidField {
            field: "metadata",
            reason: "must have at most 32 keys",
        });
    }
    let size = serde_json::to_vec(&metadata).map_or(usize::MAX, |v| v.len());
    if size > MAX_METADATA_BYTES {
        return Err(RequestError::InvalidField {
            field: "metadata",
            reason: "must be at most 4096 bytes as JSON",
        });
    }
    Ok(metadata)
}

/// The longest `message_type`.
pub const MAX_MESSAGE_TYPE_LEN: usize = 50;

/// A file shared by URL (`url`, with what the visitor says about it), or one the visitor uploaded
/// (`upload_id` alone: the gateway knows the rest).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRequest {
    /// Where the file is: an `http` or `https` URL.
    #[serde(default)]
    pub url: Option<String>,
    /// The id `POST /v1/uploads` answered with.
    #[serde(default)]
    pub upload_id: Option<String>,
    /// MIME type, used to tell images, audio and video from other documents.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// File name to show.
    #[serde(default)]
    pub name: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
}

/// Limits a chat request must respect.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most characters (Unicode scalar values) of content.
    pub max_content_chars: usize,
    /// Most attachments per message.
    pub max_attachments: usize,
}

/// The source of an attachment that names one of the visitor's uploads (`upload:<id>`), until
/// the gateway replaces it with the stored file (see [`upload_id`]).
pub const UPLOAD_SOURCE: &str = "upload:";

/// The upload an attachment names, if it names one.
pub fn upload_id(attachment: &Attachment) -> Option<&str> {
    attachment.source.strip_prefix(UPLOAD_SOURCE)
}

/// The longest attachment URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// The longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// Why a chat request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No text and no attachments.
    #[error("content must not be empty")]
    EmptyContent,
    /// More text than the limit.
    #[error("content has {actual} characters; the limit is {max}")]
    ContentTooLong {
        /// The limit.
        max: usize,
        /// What was sent.
        actual: usize,
    },
    /// More attachments than the limit.
    #[error("at most {max} attachments per message")]
    TooManyAttachments {
        /// The limit.
        max: usize,
    },
    /// An attachment is unusable.
    #[error("attachment {index}: {reason}")]
    InvalidAttachment {
        /// Its position in the request, from 0.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// `conversation_id` is not a conversation id.
    #[error("conversation_id must be a conversation id (a UUID)")]
    InvalidConversationId,
    /// The `Idempotency-Key` header is unusable.
    #[error("Idempotency-Key must be 1 to 128 visible ASCII characters")]
    InvalidIdempotencyKey,
    /// A field is unusable.
    #[error("{field} {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

impl ChatRequest {
    /// Validates the request and turns it into the normalized message the pipeline ingests.
    ///
    /// `idempotency_key` is the client's `Idempotency-Key` header: a retried request with the same key
    /// is stored once. The key becomes the message's `sender_key`, which the pipeline stores scoped
    /// to the visitor, so one visitor can never collide with another.
    pub fn into_inbound(
        self,
        identity: &Identity,
        idempotency_key: Option<&str>,
        limits: Limits,
    ) -> Result<InboundMessage, RequestError> {
        let conversation = match self.conversation_id {
            None => ConversationRef::New,
            Some(id) if is_uuid(&id) => ConversationRef::Existing(id.to_ascii_lowercase()),
            Some(_) => return Err(RequestError::InvalidConversationId),
        };
        let text = self.content.trim();
        let actual = text.chars().count();
        if actual > limits.max_content_chars {
            return Err(RequestError::ContentTooLong {
                max: limits.max_content_chars,
                actual,
            });
        }
        if self.attachments.len() > limits.max_attachments {
            return Err(RequestError::TooManyAttachments {
                max: limits.max_attachments,
            });
        }
        let attachments = self
            .attachments
            .into_iter()
            .enumerate()
            .map(|(index, a)| a.validate(index))
            .collect::<Result<Vec<_>, _>>()?;
        let content = match (text.is_empty(), attachments.is_empty()) {
            (true, true) => return Err(RequestError::EmptyContent),
            (false, true) => Content::Text {
                body: text.to_owned(),
            },
            (_, false) => Content::Media {
                attachments,
                caption: (!text.is_empty()).then(|| text.to_owned()),
            },
        };
        let mut metadata = serde_json::Map::new();
        if let Some(client) = self.metadata {
            metadata.insert(
                "client".into(),
                serde_json::Value::Object(client_metadata(client)?),
            );
        }
        if let Some(kind) = self.message_type {
            let valid = !kind.is_empty()
                && kind.len() <= MAX_MESSAGE_TYPE_LEN
                && kind.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
                });
            if !valid {
                return Err(RequestError::InvalidField {
                    field: "message_type",
                    reason: "must be 1 to 50 lowercase letters, digits, '_', '.' or '-'",
                });
            }
            metadata.insert("message_type".into(), serde_json::Value::String(kind));
        }
        let from = identity.contact();
        let sender_key = match idempotency_key {
            None => None,
            Some(key) if is_valid_key(key) => Some(key.to_owned()),
            Some(_) => return Err(RequestError::InvalidIdempotencyKey),
        };
        Ok(InboundMessage {
            provider_message_id: None,
            sender_key,
            account: String::new(),
            from,
            conversation,
            sent_at: None,
            reply_to: None,
            subject: None,
            content,
            intent: None,
            metadata,
            files: Vec::new(),
        })
    }
}

impl AttachmentRequest {
    fn validate(self, index: usize) -> Result<Attachment, RequestError> {
        let invalid = |reason| RequestError::InvalidAttachment { index, reason };
        let url = match (self.url, self.upload_id) {
            (Some(url), None) => url,
            (None, Some(id)) => {
                if self.mime_type.is_some() || self.name.is_some() || self.size.is_some() {
                    return Err(invalid(
                        "upload_id comes alone: the upload's type, name and size are known",
                    ));
                }
                if !is_uuid(&id) {
                    return Err(invalid("upload_id must be an upload's id (a UUID)"));
                }
                return Ok(Attachment {
                    kind: MediaKind::Document,
                    source: format!("{UPLOAD_SOURCE}{}", id.to_ascii_lowercase()),
                    mime_type: None,
                    filename: None,
                    size: None,
                    sha256: None,
                    media_id: None,
                });
            }
            _ => return Err(invalid("give either url or upload_id")),
        };
        let url = url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(invalid("url must start with http:// or https://"));
        }
        if url.len() > MAX_URL_LEN || url.chars().any(char::is_whitespace) {
            return Err(invalid(
                "url must be at most 2048 characters without spaces",
            ));
        }
        let mime_type = self.mime_type.map(|m| m.trim().to_ascii_lowercase());
        if let Some(mime) = &mime_type
            && (!mime.contains('/') || mime.len() > 255)
        {
            return Err(invalid("mime_type must look like type/subtype"));
        }
        let kind = match mime_type.as_deref().and_then(|m| m.split('/').next()) {
            Some("image") => MediaKind::Image,
            Some("audio") => MediaKind::Audio,
            Some("video") => MediaKind::Video,
            _ => MediaKind::Document,
        };
        Ok(Attachment {
            kind,
            source: url.to_owned(),
            mime_type,
            filename: self.name.filter(|n| !n.trim().is_empty()),
            size: self.size,
            sha256: None,
            media_id: None,
        })
    }
}

fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_content_chars: 10,
        max_attachments: 2,
    };

    fn visitor() -> Identity {
        Identity::Device("dev1".into())
    }

    fn request(json: serde_json::Value) -> ChatRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn text_becomes_a_trimmed_text_message() {
        let msg = request(serde_json::json!({"content": "  hello  "}))
            .into_inbound(&visitor(), None, LIMITS)
            .unwrap();
        assert_eq!(
            msg.content,
            Content::Text {
                body: "hello".into()
            }
        );
        assert_eq!(msg.conversation, ConversationRef::New);
        assert_eq!(msg.from.external_id, "device:dev1");
        assert_eq!(msg.provider_message_id, None);
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        let ok = request(serde_json::json!({"content": "éééééééééé"}));
        assert!(ok.into_inbound(&visitor(), None, LIMITS).is_ok());
        let long = request(serde_json::json!({"content": "ééééééééééé"}));
        assert_eq!(
            long.into_inbound(&visitor(), None, LIMITS).unwrap_err(),
            RequestError::ContentTooLong {
                max: 10,
                actual: 11
            }
        );
    }

    #[test]
    fn blank_content_needs_attachments() {
        let blank = request(serde_json::json!({"content": " \n\t "}));
        assert_eq!(
            blank.into_inbound(&visitor(), None, LIMITS).unwrap_err(),
            RequestError::EmptyContent
        );
        let picture = request(serde_json::json!({
            "attachments": [{"url": "https://example.com/a.png", "mime_type": "image/png"}]
        }));
        let msg = picture.into_inbound(&visitor(), None, LIMITS).unwrap();
        let Content::Media {
            attachments,
            caption,
        } = msg.content
        else {
            panic!("expected media")
        };
        assert_eq!(attachments[0].kind, MediaKind::Image);
        assert_eq!(caption, None);
    }

    #[test]
    fn bad_attachments_and_ids_are_refused() {
        let ftp =
            request(serde_json::json!({"content": "x", "attachments": [{"url": "ftp://x/y"}]}));
        assert!(matches!(
            ftp.into_inbound(&visitor(), None, LIMITS),
            Err(RequestError::InvalidAttachment { index: 0, .. })
        ));
        let id = request(serde_json::json!({"content": "x", "conversation_id": "42"}));
        assert_eq!(
            id.into_inbound(&visitor(), None, LIMITS).unwrap_err(),
            RequestError::InvalidConversationId
        );
        assert!(
            serde_json::from_value::<ChatRequest>(serde_json::json!({"contnet": "typo"})).is_err()
        );
    }

    #[test]
    fn uploads_are_named_by_id_alone() {
        let id = "0193a0b4-1c2d-7e3f-8a9b-0c1d2e3f4a5b";
        let msg = request(serde_json::json!({"attachments": [{"upload_id": id}]}))
            .into_inbound(&visitor(), None, LIMITS)
            .unwrap();
        let Content::Media { attachments, .. } = msg.content else {
            panic!("expected media")
        };
        assert_eq!(upload_id(&attachments[0]), Some(id));
        for bad in [
            serde_json::json!({"upload_id": "../etc"}),
            serde_json::json!({"upload_id": id, "mime_type": "text/html"}),
            serde_json::json!({"upload_id": id, "url": "https://example.com/a.png"}),
            serde_json::json!({}),
        ] {
            let request = request(serde_json::json!({"content": "x", "attachments": [bad]}));
            assert!(
                matches!(
                    request.into_inbound(&visitor(), None, LIMITS),
                    Err(RequestError::InvalidAttachment { index: 0, .. })
                ),
                "accepted"
            );
        }
    }

    #[test]
    fn idempotency_keys_are_scoped_to_the_visitor() {
        let msg = request(serde_json::json!({"content": "hi"}))
            .into_inbound(&visitor(), Some("k-1"), LIMITS)
            .unwrap();
        // The key travels beside the sender, never glued to it: the pipeline scopes it.
        assert_eq!(msg.sender_key.as_deref(), Some("k-1"));
        assert_eq!(msg.from.external_id, "device:dev1");
        assert_eq!(msg.provider_message_id, None);
        let bad = request(serde_json::json!({"content": "hi"}));
        assert_eq!(
            bad.into_inbound(&visitor(), Some("has space"), LIMITS)
                .unwrap_err(),
            RequestError::InvalidIdempotencyKey
        );
    }
}
