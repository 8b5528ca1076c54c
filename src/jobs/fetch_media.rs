//! Downloading the files users send, right after their message is stored.
//!
//! Some providers' webhooks carry a media id, not the file, and the link to the file is valid
//! for minutes (the channels whose plug-in has a media fetcher). A `fetch_media` job per attachment is added in the transaction that stores
//! the message, so the download starts at once and survives a restart. The file goes to the media
//! directory ([`MediaDir`]) after its size, checksum and MIME type were checked against what the
//! provider announced; the message's attachment then names the stored copy (`media_id`). A
//! download that can never succeed (unknown media, wrong checksum, too large) is recorded in the
//! message's metadata (`media_errors`) instead.

use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard_channel::{Channel, SendError};
use tracing::{Instrument, info_span, warn};

use super::queue::{RetryPolicy, Wake};
use crate::{
    channels::Channels,
    live::Hub,
    media_dir::{Expected, MediaDir},
    store::{
        Store, StoreError, jobs,
        media::{self, NewMedia},
        messages::{self, Message},
    },
    time::Clock,
};

/// The payload of a `fetch_media` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchMedia {
    /// The message the file came with.
    pub message_id: crate::ids::MessageId,
    /// Which of its attachments.
    pub index: usize,
    /// The channel it came through.
    pub channel: Channel,
    /// Which of our identities received it (its token fetches the file).
    pub account: String,
}

impl FetchMedia {
    /// The job for one attachment of a stored message.
    pub fn job(message: &Message, index: usize, account: &str) -> jobs::NewJob {
        let payload = FetchMedia {
            message_id: message.id.clone(),
            index,
            channel: message.channel,
            account: account.to_owned(),
        };
        jobs::NewJob::new(jobs::FETCH_MEDIA, format!("{}/{index}", message.id))
            .in_lane(&message.id, i64::try_from(index).unwrap_or(i64::MAX))
            .with_payload(&payload)
    }
}

/// What media jobs work with.
#[derive(Clone)]
pub struct MediaDownloads {
    /// The database.
    pub store: Store,
    /// The gateway's clock.
    pub clock: Clock,
    /// Live events (the message's attachment changes).
    pub hub: Hub,
    /// The channels' media fetchers.
    pub channels: Channels,
    /// The media directory.
    pub files: MediaDir,
    /// Largest file accepted.
    pub max_bytes: u64,
    /// When to retry.
    pub policy: RetryPolicy,
    /// Wakes the media queue.
    pub wake: Wake,
}

/// How an attempt ended.
enum Attempt {
    /// The file is stored (and the job finished).
    Stored,
    /// Try again later.
    Retry(Option<std::time::Duration>, String),
    /// It will never work.
    Failed(String),
}

impl MediaDownloads {
    /// Runs one media job.
    pub async fn run(&self, job: jobs::Job) -> Result<(), StoreError> {
        let span = info_span!("fetch_media", subject = %job.subject, attempt = job.attempts);
        self.attempt(job).instrument(span).await
    }

    async fn attempt(&self, job: jobs::Job) -> Result<(), StoreError> {
        let task: FetchMedia = job.payload()?;
        let message = messages::get(&mut self.store.reader(), &task.message_id).await?;
        let Some((message, attachment)) = message.and_then(|m| {
            let attachment = m.attachments.get(task.index).cloned()?;
            Some((m, attachment))
        }) else {
            return self.finish(&job).await;
        };
        if attachment.media_id.is_some() {
            return self.finish(&job).await;
        }
        let outcome = match self.channels.fetcher(task.channel) {
            None => Attempt::Failed(format!("the {} channel is not configured", task.channel)),
            Some(fetcher) => match fetcher.fetch(&task.account, &attachment.source).await {
                Err(SendError::Transient {
                    retry_after,
                    reason,
                }) => Attempt::Retry(retry_after, reason),
                Err(SendError::Permanent { code, reason }) => {
                    Attempt::Failed(format!("{code}: {reason}"))
                }
                Err(SendError::Unreachable { reason }) => Attempt::Failed(reason),
                Ok(download) => {
                    let announced_mime = attachment.mime_type.as_deref().map(essence);
                    let served_mime = download.mime_type.as_deref().map(essence);
                    match (announced_mime, served_mime) {
                        (Some(announced), Some(served)) if announced != served => {
                            Attempt::Failed(format!(
                                "the provider serves {served}, the message announced {announced}"
                            ))
                        }
                        _ => {
                            let mime_type = download
                                .mime_type
                                .clone()
                                .or_else(|| attachment.mime_type.clone())
                                .unwrap_or_else(|| "application/octet-stream".into());
                            let sha256 = download.sha256.clone().or(attachment.sha256.clone());
                            let expected = Expected {
                                max_bytes: self.max_bytes,
                                size: download.size,
                                sha256: sha256.as_deref(),
                            };
                            match self.files.save(download.body, expected).await {
                                Ok(saved) => {
                                    self.record(
                                        &message,
                                        task.index,
                                        &attachment,
                                        saved,
                                        mime_type,
                                        &job,
                                    )
                                    .await?;
                                    Attempt::Stored
                                }
                                Err(e) if e.is_transient() => Attempt::Retry(None, e.to_string()),
                                Err(e) => Attempt::Failed(e.to_string()),
                            }
                        }
                    }
                }
            },
        };
        match outcome {
            Attempt::Stored => Ok(()),
            Attempt::Retry(hint, reason) => match self.policy.next(job.attempts, hint) {
                Some(wait) => {
                    warn!(%reason, retry_in = ?wait, "media download failed; retrying");
                    let at = self.clock.now().plus(wait);
                    jobs::retry_at(&self.store, &job.id, at, &reason).await?;
                    self.wake.wake();
                    Ok(())
                }
                None => {
                    let reason = format!("gave up after {} attempts: {reason}", job.attempts);
                    self.give_up(&job, &task, &reason).await
                }
            },
            Attempt::Failed(reason) => self.give_up(&job, &task, &reason).await,
        }
    }

    /// Records the stored file and links it from the message, finishing the job.
    async fn record(
        &self,
        message: &Message,
        index: usize,
        attachment: &switchboard_channel::Attachment,
        saved: crate::media_dir::SavedFile,
        mime_type: String,
        job: &jobs::Job,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        if messages::get(&mut tx, &message.id).await?.is_none() {
            // The message was erased while its file downloaded: keep nothing of it. The file
            // stays only when another message's row has the same content.
            jobs::finish(&mut tx, &job.id).await?;
            tx.commit().await?;
            if !crate::store::privacy::path_in_use(&mut self.store.reader(), &saved.path).await?
                && let Err(e) = tokio::fs::remove_file(self.files.locate(&saved.path)).await
            {
                warn!(path = %saved.path, error = %e, "could not delete the file of an erased message");
            }
            return Ok(());
        }
        let id = media::insert(
            &mut tx,
            NewMedia {
                message_id: Some(message.id.clone()),
                attachment: Some(i64::try_from(index).unwrap_or(i64::MAX)),
                sha256: saved.sha256,
                mime_type,
                size: i64::try_from(saved.size).unwrap_or(i64::MAX),
                filename: attachment.filename.clone(),
                path: saved.path,
                uploaded_by: None,
            },
            now,
        )
        .await?;
        // Re-read inside the transaction: the attachments are the current ones.
        let current = messages::get(&mut tx, &message.id).await?;
        let mut updated = None;
        if let Some(current) = current {
            let mut attachments = current.attachments;
            if let Some(a) = attachments.get_mut(index) {
                a.media_id = Some(id.to_string());
            }
            updated = messages::set_attachments(&mut tx, &message.id, &attachments).await?;
        }
        jobs::finish(&mut tx, &job.id).await?;
        tx.commit().await?;
        self.published(updated);
        Ok(())
    }

    /// Records why an attachment could not be downloaded, finishing the job.
    async fn give_up(
        &self,
        job: &jobs::Job,
        task: &FetchMedia,
        reason: &str,
    ) -> Result<(), StoreError> {
        warn!(message = %task.message_id, index = task.index, %reason, "media not downloaded");
        let mut tx = self.store.begin().await?;
        let current = messages::get(&mut tx, &task.message_id).await?;
        let mut updated = None;
        if current.is_some() {
            updated = messages::update_metadata(&mut tx, &task.message_id, |m| {
                m.media_errors.insert(task.index.to_string(), json!(reason));
            })
            .await?;
        }
        jobs::finish(&mut tx, &job.id).await?;
        tx.commit().await?;
        self.published(updated);
        Ok(())
    }

    /// Removes a job that has nothing (more) to do.
    async fn finish(&self, job: &jobs::Job) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        jobs::finish(&mut tx, &job.id).await?;
        tx.commit().await?;
        self.published(None);
        Ok(())
    }

    /// Publishes a changed message and lets the lane's next job go.
    fn published(&self, changed: Option<Message>) {
        if let Some(changed) = &changed {
            self.hub.update(changed);
        }
        self.wake.wake();
    }
}

/// A MIME type without its parameters, lowercased: `image/JPEG; q=1` is `image/jpeg`.
fn essence(mime: &str) -> String {
    mime.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

#[async_trait::async_trait]
impl super::QueueHandler for MediaDownloads {
    fn queue(&self) -> &'static str {
        jobs::FETCH_MEDIA
    }

    fn wake(&self) -> &Wake {
        &self.wake
    }

    async fn handle(&self, job: jobs::Job) -> Result<(), StoreError> {
        self.run(job).await
    }
}
