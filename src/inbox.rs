//! The [`Inbox`] every channel plug-in delivers to: the pipeline, plus what a channel's messages
//! may carry beyond text.
//!
//! - Files inside a message (a mail's attachments) are kept in the media directory before the
//!   message is stored, and the message then points at the stored copies.
//! - A message whose thread token is bound to an expert answers that expert's notification: it is
//!   the expert's reply, passed through to the end user — only from the expert's own address,
//!   once per message, while the conversation is theirs; anything else is refused, logged and
//!   audited, and stores nothing (not even its files).

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream;
use serde_json::json;
use switchboard_channel::{
    Attachment, Channel, Checkpoint, Content, ConversationRef, InboundEvent, InboundMessage, Inbox,
    InboxError, Ingested, StaffReply,
};

use crate::{
    experts::{ExpertError, Experts},
    ids::ConversationId,
    media_dir::{Expected, MediaDir, MediaError},
    pipeline::{IngestError, Outcome, Pipeline},
    store::{
        Store, audit, cursors,
        media::{self, NewMedia},
        threads, users,
    },
    time::Clock,
};

/// The scope of the one-time values of staff replies (a reply's provider message id).
const STAFF_REPLY_ONCE: &str = "expert_mail";

/// One channel's inbox.
#[derive(Clone)]
pub struct ChannelInbox {
    /// The channel whose messages come in.
    pub channel: Channel,
    /// Where messages go.
    pub pipeline: Pipeline,
    /// The experts' side (replies to notifications).
    pub experts: Experts,
    /// The database.
    pub store: Store,
    /// The media directory.
    pub files: MediaDir,
    /// Largest file kept.
    pub max_bytes: u64,
    /// The gateway's clock.
    pub clock: Clock,
}

#[async_trait]
impl Inbox for ChannelInbox {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now().to_datetime()
    }

    async fn ingest(
        &self,
        mut events: Vec<InboundEvent>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Ingested, InboxError> {
        if let [InboundEvent::Message(message)] = events.as_slice()
            && let ConversationRef::Thread {
                token: Some(token), ..
            } = &message.conversation
            && let Some(binding) = threads::binding(&mut self.store.reader(), token)
                .await
                .map_err(unavailable)?
            && let Some(expert_id) = binding.expert_id
        {
            let reply = self
                .staff_reply(message, &binding.conversation_id, &expert_id)
                .await?;
            self.pass(checkpoint).await?;
            return Ok(Ingested {
                events: 1,
                staff_reply: Some(reply),
                ..Ingested::default()
            });
        }
        let mut kept_files = false;
        for event in &mut events {
            if let InboundEvent::Message(message) = event {
                kept_files |= self.keep_files(message).await?;
            }
        }
        let received = events.len();
        let outcomes = self
            .pipeline
            .ingest_to(self.channel, events, checkpoint)
            .await
            .map_err(ingest_error)?;
        if kept_files {
            self.link_files(&outcomes).await?;
        }
        let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
        Ok(Ingested {
            events: received,
            stored: count(|o| matches!(o, Outcome::Stored { .. })),
            duplicates: count(|o| matches!(o, Outcome::Duplicate { .. })),
            statuses: count(|o| matches!(o, Outcome::StatusUpdated { .. })),
            staff_reply: None,
        })
    }

    async fn position(&self, cursor: &str) -> Result<Option<String>, InboxError> {
        cursors::get(&mut self.store.reader(), cursor)
            .await
            .map_err(unavailable)
    }
}

impl ChannelInbox {
    /// Moves a poller's position past a message that is not ingested (a webhook's one-time
    /// values only matter for what is).
    async fn pass(&self, checkpoint: Option<Checkpoint>) -> Result<(), InboxError> {
        if let Some(Checkpoint::Cursor { .. }) = &checkpoint {
            self.pipeline
                .ingest_to(self.channel, Vec::new(), checkpoint)
                .await
                .map_err(ingest_error)?;
        }
        Ok(())
    }

    /// Links the files kept for the messages just stored to them. A file kept for a message that
    /// turned out a resend stays unlinked and is removed later, and a link a stop left unwritten
    /// is written later ([`crate::retention::UnlinkedFiles`]).
    async fn link_files(&self, outcomes: &[Outcome]) -> Result<(), InboxError> {
        let mut tx = self.store.begin().await.map_err(unavailable)?;
        for outcome in outcomes {
            if let Outcome::Stored { message, .. } = outcome {
                media::link_kept(&mut tx, &message.id, &message.attachments)
                    .await
                    .map_err(unavailable)?;
            }
        }
        tx.commit().await.map_err(unavailable)
    }

    /// Keeps the files a message carries and points its attachments at the stored copies;
    /// whether it kept any.
    async fn keep_files(&self, message: &mut InboundMessage) -> Result<bool, InboxError> {
        if message.files.is_empty() {
            return Ok(false);
        }
        let mut stored = Vec::with_capacity(message.files.len());
        for file in &message.files {
            stored.push(self.keep(file).await?);
        }
        if let Content::Media { attachments, .. } = &mut message.content {
            for attachment in attachments.iter_mut() {
                if let Some(kept) = attachment.inline_index().and_then(|i| stored.get(i)) {
                    *attachment = kept.clone();
                }
            }
        }
        message.files.clear();
        Ok(true)
    }

    /// Stores a file and its media row; returns the attachment pointing at it.
    async fn keep(&self, file: &switchboard_channel::InlineFile) -> Result<Attachment, InboxError> {
        let saved = self
            .files
            .save(
                stream::iter([Ok::<Bytes, std::io::Error>(file.bytes.clone())]),
                Expected {
                    max_bytes: self.max_bytes,
                    ..Expected::default()
                },
            )
            .await
            .map_err(|e| match e {
                MediaError::TooLarge { limit } => InboxError::TooLarge { limit },
                other => unavailable(other),
            })?;
        let mut tx = self.store.begin().await.map_err(unavailable)?;
        let media_id = media::insert(
            &mut tx,
            NewMedia {
                message_id: None,
                attachment: None,
                sha256: saved.sha256.clone(),
                mime_type: file.mime_type.clone(),
                size: i64::try_from(saved.size).unwrap_or(i64::MAX),
                filename: file.filename.clone(),
                path: saved.path,
                uploaded_by: None,
            },
            self.clock.now(),
        )
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Attachment {
            kind: switchboard_channel::MediaKind::of_mime_type(&file.mime_type),
            source: format!("sha256:{}", saved.sha256),
            mime_type: Some(file.mime_type.clone()),
            filename: file.filename.clone(),
            size: Some(saved.size),
            sha256: Some(saved.sha256),
            media_id: Some(media_id.into_string()),
        })
    }

    /// An expert's reply to their notification: only from the expert's own address, once per
    /// message, passed through to the end user, audited.
    async fn staff_reply(
        &self,
        message: &InboundMessage,
        conversation_id: &ConversationId,
        expert_id: &str,
    ) -> Result<StaffReply, InboxError> {
        let from = message.from.external_id.clone();
        let Some(expert) = users::get(&mut self.store.reader(), expert_id)
            .await
            .map_err(unavailable)?
        else {
            tracing::warn!(%from, conversation = %conversation_id,
                "refused a reply to an expert's notification: the expert's account is disabled");
            return Ok(StaffReply::Refused {
                reason: "the expert's account is disabled".into(),
            });
        };
        let actor = audit::Actor::by_email(&expert);
        if !from.eq_ignore_ascii_case(&expert.email) {
            let reason =
                format!("{from} is not the address of the expert this notification was sent to");
            return self.refused(&actor, &from, conversation_id, reason).await;
        }
        let once = message.provider_message_id.clone().unwrap_or_default();
        // Checked before the files are stored, so that a refused or repeated message leaves no
        // files behind; the reply checks both again in its transaction.
        if threads::seen(&mut self.store.reader(), STAFF_REPLY_ONCE, &once)
            .await
            .map_err(unavailable)?
        {
            let reason = "this message was received before".to_owned();
            return self.refused(&actor, &from, conversation_id, reason).await;
        }
        match self.experts.may_reply(&expert, conversation_id).await {
            Ok(()) => {}
            Err(ExpertError::Store(e)) => return Err(unavailable(e)),
            Err(e) => {
                return self
                    .refused(&actor, &from, conversation_id, e.to_string())
                    .await;
            }
        }
        let mut message = message.clone();
        self.keep_files(&mut message).await?;
        let (text, attachments) = match message.content {
            Content::Text { body } => (body, Vec::new()),
            Content::Media {
                attachments,
                caption,
            } => (caption.unwrap_or_default(), attachments),
            other => (other.to_text(), Vec::new()),
        };
        let kept: Vec<String> = attachments
            .iter()
            .filter_map(|a| a.media_id.clone())
            .collect();
        let reply = self
            .experts
            .reply(
                &actor,
                conversation_id,
                &text,
                attachments,
                Some((STAFF_REPLY_ONCE, &once)),
            )
            .await;
        match reply {
            Ok(stored) => Ok(StaffReply::Accepted {
                message_id: stored.id.into_string(),
            }),
            Err(ExpertError::Store(e)) => Err(unavailable(e)),
            Err(e) => {
                // Refused in the reply's own transaction (the conversation changed hands, or the
                // same message came twice at once): the kept files are of no message.
                let kept: Vec<&str> = kept.iter().map(String::as_str).collect();
                let forget = async {
                    let mut tx = self.store.begin().await?;
                    media::forget(&mut tx, &kept).await?;
                    tx.commit().await
                };
                forget.await.map_err(unavailable)?;
                self.refused(&actor, &from, conversation_id, e.to_string())
                    .await
            }
        }
    }

    /// Logs and audits a refused reply to `actor`'s notification.
    async fn refused(
        &self,
        actor: &audit::Actor<'_>,
        from: &str,
        conversation_id: &ConversationId,
        reason: String,
    ) -> Result<StaffReply, InboxError> {
        tracing::warn!(from, conversation = %conversation_id, %reason,
            "refused a reply to an expert's notification");
        audit::record(
            &mut self.store.reader(),
            actor,
            audit::Action::ReplyRefused,
            Some(conversation_id),
            json!({"from": from, "reason": reason}),
            self.clock.now(),
        )
        .await
        .map_err(unavailable)?;
        Ok(StaffReply::Refused { reason })
    }
}

/// The gateway's own failure, logged here: the provider only learns to try again.
fn unavailable(e: impl std::fmt::Display) -> InboxError {
    tracing::error!(error = %e, "cannot store an inbound delivery");
    InboxError::Unavailable(e.to_string())
}

fn ingest_error(e: IngestError) -> InboxError {
    match e {
        IngestError::ConversationNotFound => InboxError::ConversationNotFound,
        IngestError::ConversationClosed => InboxError::ConversationClosed,
        IngestError::Replayed => InboxError::Replayed,
        IngestError::Limited(refused) => InboxError::Limited {
            reason: refused.reason.to_owned(),
            retry_after: refused.retry_after.as_secs().max(1),
        },
        // Channel deliveries are stored unanswered over a quota, never refused; should a refusal
        // come through anyway, the provider is asked to try again later rather than drop it.
        IngestError::OverQuota(exceeded) => InboxError::Limited {
            reason: exceeded.reason,
            retry_after: 3600,
        },
        IngestError::Store(e) => unavailable(e),
        IngestError::Internal(e) => unavailable(e),
    }
}
