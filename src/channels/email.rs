//! Receiving a mail, however it arrived (a provider's webhook, the raw route, the IMAP poller):
//! automated mail is dropped unanswered, the attachments go to the media directory, and the mail
//! is ingested as a reply within its thread or as a new conversation — with the webhook's
//! one-time token or the mailbox's position in the same transaction.

use bytes::Bytes;
use futures::stream;
use switchboard_channel::{Attachment, Channel, InboundEvent, MediaKind};
use switchboard_email::{InboundEmail, ReplyAddress};

use crate::{
    media::{Expected, MediaError, MediaStore},
    pipeline::{Checkpoint, IngestError, Outcome, Pipeline},
    store::{
        Store, StoreError,
        media::{self, NewMedia},
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
    /// The gateway's clock.
    pub clock: Clock,
}

impl Inbox {
    /// Receives a mail, recording `checkpoint` with it (also for a mail that is dropped, so a
    /// mailbox position moves past it).
    pub async fn receive(
        &self,
        email: InboundEmail,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Received, ReceiveError> {
        if let Some(reason) = email.automated.clone() {
            tracing::info!(from = %email.from.address, %reason, "ignored an automated mail");
            if let Some(Checkpoint::Cursor { .. }) = &checkpoint {
                self.pipeline
                    .ingest_to(Channel::Email, Vec::new(), checkpoint)
                    .await?;
            }
            return Ok(Received::Ignored { reason });
        }
        let mut attachments = Vec::with_capacity(email.attachments.len());
        for file in &email.attachments {
            attachments.push(self.keep(file).await?);
        }
        let account = format!("{}@{}", self.ours.local, self.ours.domain);
        let message = email.into_message(&account, attachments);
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
