//! Receiving a mail, however it arrived (a provider's webhook, the raw route, the IMAP poller):
//! automated mail is dropped unanswered, the attachments go to the media directory, and the mail
//! is ingested as a reply within its thread or as a new conversation — with the webhook's
//! one-time token or the mailbox's position in the same transaction.

use bytes::Bytes;
use futures::stream;
use switchboard_channel::{Attachment, Channel, InboundEvent, MediaKind};
use switchboard_email::{InboundEmail, ReplyAddress};

use serde_json::json;

use crate::{
    experts::{ExpertError, Experts},
    media::{Expected, MediaError, MediaStore},
    pipeline::{Checkpoint, IngestError, Outcome, Pipeline},
    store::{
        Store, StoreError, audit,
        media::{self, NewMedia},
        messages::Message,
        threads, users,
    },
    time::Clock,
};

/// What receiving a mail did.
#[derive(Debug)]
pub enum Received {
    /// Automated mail (auto-reply, bounce, mailing list): not stored, never answered.
    Ignored {
        /// Why.
        reason: String,
    },
    /// The mail went through the pipeline.
    Ingested(Vec<Outcome>),
    /// An expert answered their notification mail: their reply went to the end user.
    ExpertReply(Box<Message>),
    /// A mail that may not do what it tries (a reply to an expert's notification from another
    /// address): not stored, logged.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Why a mail was not received. Nothing of it was stored (files stored before the failure stay
/// in the media directory, content-addressed, and are reused by the provider's retry).
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// An attachment is larger than the media limit.
    #[error("an attachment is larger than {0} bytes")]
    TooLarge(u64),
    /// Storing an attachment failed.
    #[error(transparent)]
    Media(MediaError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The pipeline refused or failed the mail.
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// Where received mail goes.
#[derive(Clone)]
pub struct Inbox {
    /// The experts' side: replies to notification mails are expert replies.
    pub experts: Experts,
    /// The gateway's reply address (its account on the e-mail channel).
    pub ours: ReplyAddress,
    /// The database.
    pub store: Store,
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The media directory.
    pub files: MediaStore,
    /// Largest attachment kept.
    pub max_bytes: u64,
    /// Attachments kept of one mail at most; the rest are dropped (and counted in the message's
    /// metadata), so that one mail cannot fill the media directory with thousands of files.
    pub max_attachments: usize,
    /// The gateway's clock.
    pub clock: Clock,
}

impl Inbox {
    /// Receives a mail, recording `checkpoint` with it (also for a mail that is dropped, so a
    /// mailbox position moves past it).
    pub async fn receive(
        &self,
        mut email: InboundEmail,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Received, ReceiveError> {
        let dropped = email.attachments.len().saturating_sub(self.max_attachments);
        if dropped > 0 {
            tracing::warn!(from = %email.from.address, dropped, kept = self.max_attachments,
                "a mail has more attachments than email.max_attachments; dropped the rest");
            email.attachments.truncate(self.max_attachments);
        }
        if let Some(reason) = email.automated.clone() {
            tracing::info!(from = %email.from.address, %reason, "ignored an automated mail");
            self.pass(checkpoint).await?;
            return Ok(Received::Ignored { reason });
        }
        if let Some(token) = &email.reply_token
            && let Some(binding) = threads::binding(&mut self.store.reader(), token).await?
            && let Some(expert_id) = binding.expert_id
        {
            let received = self
                .expert_reply(email, &binding.conversation_id, &expert_id)
                .await?;
            self.pass(checkpoint).await?;
            return Ok(received);
        }
        let mut attachments = Vec::with_capacity(email.attachments.len());
        for file in &email.attachments {
            attachments.push(self.keep(file).await?);
        }
        let account = format!("{}@{}", self.ours.local, self.ours.domain);
        let mut message = email.into_message(&account, attachments);
        if dropped > 0 {
            message
                .metadata
                .insert("attachments_dropped".into(), dropped.into());
        }
        let outcomes = self
            .pipeline
            .ingest_to(
                Channel::Email,
                vec![InboundEvent::Message(message)],
                checkpoint,
            )
            .await?;
        Ok(Received::Ingested(outcomes))
    }

    /// Moves a mailbox's position past a mail that is not ingested (the webhook's one-time
    /// values only matter for mail that is).
    async fn pass(&self, checkpoint: Option<Checkpoint>) -> Result<(), ReceiveError> {
        if let Some(Checkpoint::Cursor { .. }) = &checkpoint {
            self.pipeline
                .ingest_to(Channel::Email, Vec::new(), checkpoint)
                .await?;
        }
        Ok(())
    }

    /// An expert's reply to their notification mail: only from the expert's own address, once
    /// per mail, passed through to the end user, audited. A refused reply is logged and written
    /// to the audit log (under the expert the notification went to), and stores nothing.
    async fn expert_reply(
        &self,
        email: InboundEmail,
        conversation_id: &str,
        expert_id: &str,
    ) -> Result<Received, ReceiveError> {
        let Some(expert) = users::get(&mut self.store.reader(), expert_id).await? else {
            tracing::warn!(from = %email.from.address, conversation = conversation_id,
                "refused a reply to an expert's notification: the expert's account is disabled");
            return Ok(Received::Refused {
                reason: "the expert's account is disabled".into(),
            });
        };
        let actor = audit::Actor::by_email(&expert);
        let from = email.from.address.clone();
        let refuse = |reason: String| self.refused(&actor, &from, conversation_id, reason);
        if !email.from.address.eq_ignore_ascii_case(&expert.email) {
            let reason = format!(
                "{} is not the address of the expert this notification was sent to",
                email.from.address
            );
            return refuse(reason).await;
        }
        // Checked before the attachments are stored, so that a refused or repeated mail leaves
        // no files behind; the reply checks both again in its transaction.
        const ONCE: &str = "expert_mail";
        if threads::seen(&mut self.store.reader(), ONCE, &email.message_id).await? {
            return refuse("this message was received before".into()).await;
        }
        match self.experts.may_reply(&expert, conversation_id).await {
            Ok(()) => {}
            Err(ExpertError::Store(e)) => return Err(e.into()),
            Err(e) => return refuse(e.to_string()).await,
        }
        let mut attachments = Vec::with_capacity(email.attachments.len());
        for file in &email.attachments {
            attachments.push(self.keep(file).await?);
        }
        let kept: Vec<String> = attachments
            .iter()
            .filter_map(|a| a.media_id.clone())
            .collect();
        let reply = self
            .experts
            .reply(
                &actor,
                conversation_id,
                &email.text,
                attachments,
                Some((ONCE, &email.message_id)),
            )
            .await;
        match reply {
            Ok(message) => Ok(Received::ExpertReply(Box::new(message))),
            Err(ExpertError::Store(e)) => Err(e.into()),
            Err(e) => {
                // Refused in the reply's own transaction (the conversation changed hands, or the
                // same mail came twice at once): the kept attachments are of no message.
                let kept: Vec<&str> = kept.iter().map(String::as_str).collect();
                let mut tx = self.store.begin().await?;
                media::forget(&mut tx, &kept).await?;
                tx.commit().await?;
                refuse(e.to_string()).await
            }
        }
    }

    /// Logs and audits a refused reply to `actor`'s notification mail.
    async fn refused(
        &self,
        actor: &audit::Actor<'_>,
        from: &str,
        conversation_id: &str,
        reason: String,
    ) -> Result<Received, ReceiveError> {
        tracing::warn!(from, conversation = conversation_id, %reason,
            "refused a reply to an expert's notification");
        audit::record(
            &mut self.store.reader(),
            actor,
            "reply_refused",
            Some(conversation_id),
            json!({"from": from, "reason": reason}),
            self.clock.now(),
        )
        .await?;
        Ok(Received::Refused { reason })
    }

    /// Stores an attachment's file and its media row; returns the normalized attachment.
    async fn keep(
        &self,
        file: &switchboard_email::EmailAttachment,
    ) -> Result<Attachment, ReceiveError> {
        let saved = self
            .files
            .save(
                stream::iter([Ok(Bytes::from(file.bytes.clone()))]),
                Expected {
                    max_bytes: self.max_bytes,
                    ..Expected::default()
                },
            )
            .await
            .map_err(|e| match e {
                MediaError::TooLarge { limit } => ReceiveError::TooLarge(limit),
                other => ReceiveError::Media(other),
            })?;
        let mut tx = self.store.begin().await?;
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
            },
            self.clock.now(),
        )
        .await?;
        tx.commit().await?;
        Ok(Attachment {
            kind: kind_of(&file.mime_type),
            source: format!("sha256:{}", saved.sha256),
            mime_type: Some(file.mime_type.clone()),
            filename: file.filename.clone(),
            size: Some(saved.size),
            sha256: Some(saved.sha256),
            media_id: Some(media_id),
        })
    }
}

/// The kind of a file by its MIME type.
fn kind_of(mime_type: &str) -> MediaKind {
    match mime_type.split('/').next().unwrap_or_default() {
        "image" => MediaKind::Image,
        "audio" => MediaKind::Audio,
        "video" => MediaKind::Video,
        _ => MediaKind::Document,
    }
}
