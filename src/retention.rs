//! Retention: stored conversations, files and audit entries are kept only as long as the
//! operator chose (`[retention]`; nothing is removed unless a period is set).
//!
//! A purge runs on `retention.schedule` and removes, oldest first:
//!
//! - conversations deleted by their visitor more than `deleted_conversations_days` ago, with
//!   everything of them;
//! - messages older than `messages_days` — one by one, so a conversation that goes on keeps its
//!   recent messages and loses its old ones (seq numbers keep counting; a reply may name a
//!   message that is gone). A message that pending work still needs (a turn to answer it, a
//!   delivery, an evaluation or a download) waits for a later purge. Then conversations left
//!   without messages and unchanged for as long, and contacts left without conversations;
//! - stored files older than `media_days` (their messages keep describing the attachment; the
//!   file itself answers 404);
//! - audit log entries older than `audit_days`.
//!
//! Apart from those periods, [`UnlinkedFiles`] removes stored files that no message came to use
//! within `web.unused_upload_ttl` (a visitor's upload never attached, a resent mail's copy), and
//! links those a message names but whose link a stop left unwritten.
//!
//! Every batch of at most `batch_size` rows is its own short transaction, so the database is never
//! held for long and the gateway keeps answering during a purge that has much to do. Files are
//! removed after their rows are committed, and only when no remaining row refers to them (files
//! are content-addressed, so two messages may share one). Each purge logs what it removed.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::{
    config::RetentionConfig,
    media_dir::MediaDir,
    store::{
        Store, StoreError, media,
        privacy::{self, Removed},
        retention as queries,
    },
    time::{Clock, Timestamp},
};

/// One day.
const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Rows, by kind.
    #[serde(flatten)]
    pub removed: Removed,
    /// Files deleted from the media directory.
    pub files: u64,
    /// Transactions it took.
    pub batches: u64,
}

impl Purged {
    fn add(&mut self, removed: Removed, files: u64) {
        self.removed.add(removed);
        // The paths were deleted already; only the counts are reported.
        self.removed.paths.clear();
        self.files += files;
        self.batches += 1;
    }
}

/// The purge, as a scheduled task of the gateway.
#[derive(Clone)]
pub struct Retention {
    store: Store,
    clock: Clock,
    files: MediaDir,
    config: RetentionConfig,
    /// Held while a purge runs: a purge still busy when the schedule comes round again is not
    /// joined by a second one.
    running: Arc<Mutex<()>>,
}

impl Retention {
    /// The purge of `store` and `files` by `config`'s periods, on `clock`'s time.
    pub fn new(store: Store, clock: Clock, files: MediaDir, config: RetentionConfig) -> Self {
        Self {
            store,
            clock,
            files,
            config,
            running: Arc::default(),
        }
    }

    fn cutoff(&self, days: Option<u32>) -> Option<Timestamp> {
        days.map(|d| self.clock.now().minus(DAY * d))
    }

    /// Removes everything older than its period, batch by batch, until nothing is left to
    /// remove; returns what it removed. Another purge running at the same time makes this one
    /// return at once, having removed nothing.
    pub async fn purge(&self) -> Result<Purged, StoreError> {
        let Ok(_running) = self.running.try_lock() else {
            return Ok(Purged::default());
        };
        let mut purged = Purged::default();
        let limit = i64::from(self.config.batch_size);
        if let Some(before) = self.cutoff(self.config.deleted_conversations_days) {
            self.deleted_conversations(before, limit, &mut purged)
                .await?;
        }
        if let Some(before) = self.cutoff(self.config.messages_days) {
            self.messages(before, limit, &mut purged).await?;
            self.empty_conversations(before, limit, &mut purged).await?;
        }
        // Contacts are left without conversations by either of the two above.
        let contacts_before = [
            self.cutoff(self.config.messages_days),
            self.cutoff(self.config.deleted_conversations_days),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(before) = contacts_before {
            self.orphan_contacts(before, limit, &mut purged).await?;
        }
        if let Some(before) = self.cutoff(self.config.media_days) {
            self.media(before, limit, &mut purged).await?;
        }
        if let Some(before) = self.cutoff(self.config.audit_days) {
            loop {
                let mut tx = self.store.begin().await?;
                let removed = queries::delete_old_audit_entries(&mut tx, before, limit).await?;
                tx.commit().await?;
                let done = removed.audit_entries < self.config.batch_size.into();
                self.after_batch(&mut purged, removed).await?;
                if done {
                    break;
                }
            }
        }
        Ok(purged)
    }

    async fn deleted_conversations(
        &self,
        before: Timestamp,
        limit: i64,
        purged: &mut Purged,
    ) -> Result<(), StoreError> {
        loop {
            let ids =
                queries::deleted_conversations(&mut self.store.reader(), before, limit).await?;
            if ids.is_empty() {
                return Ok(());
            }
            for id in ids {
                // A long conversation goes a batch of messages at a time, then itself.
                loop {
                    let mut tx = self.store.begin().await?;
                    let removed =
                        queries::delete_part_of_deleted_conversation(&mut tx, &id, limit).await?;
                    tx.commit().await?;
                    let done = removed.conversations > 0 || removed.is_empty();
                    self.after_batch(purged, removed).await?;
                    if done {
                        break;
                    }
                }
            }
        }
    }

    async fn messages(
        &self,
        before: Timestamp,
        limit: i64,
        purged: &mut Purged,
    ) -> Result<(), StoreError> {
        loop {
            let ids = queries::old_messages(&mut self.store.reader(), before, limit).await?;
            if ids.is_empty() {
                return Ok(());
            }
            let mut tx = self.store.begin().await?;
            let removed = queries::delete_unneeded_messages(&mut tx, &ids).await?;
            tx.commit().await?;
            let stalled = removed.messages == 0;
            self.after_batch(purged, removed).await?;
            if stalled {
                // Every candidate got work to do in between; the next purge tries again.
                return Ok(());
            }
        }
    }

    async fn empty_conversations(
        &self,
        before: Timestamp,
        limit: i64,
        purged: &mut Purged,
    ) -> Result<(), StoreError> {
        let mut after = String::new();
        loop {
            let ids = queries::empty_conversations(&mut self.store.reader(), before, &after, limit)
                .await?;
            let Some(last) = ids.last() else {
                return Ok(());
            };
            after = last.to_string();
            let mut tx = self.store.begin().await?;
            let mut removed = Removed::default();
            for id in &ids {
                removed.add(queries::delete_if_empty(&mut tx, id).await?);
            }
            tx.commit().await?;
            self.after_batch(purged, removed).await?;
        }
    }

    async fn orphan_contacts(
        &self,
        before: Timestamp,
        limit: i64,
        purged: &mut Purged,
    ) -> Result<(), StoreError> {
        let mut after = String::new();
        loop {
            let ids = queries::contacts_without_conversations(
                &mut self.store.reader(),
                before,
                &after,
                limit,
            )
            .await?;
            let Some(last) = ids.last() else {
                return Ok(());
            };
            after = last.to_string();
            let mut tx = self.store.begin().await?;
            let removed = queries::delete_contacts_without_conversations(&mut tx, &ids).await?;
            tx.commit().await?;
            self.after_batch(purged, removed).await?;
        }
    }

    async fn media(
        &self,
        before: Timestamp,
        limit: i64,
        purged: &mut Purged,
    ) -> Result<(), StoreError> {
        loop {
            let ids = queries::old_media(&mut self.store.reader(), before, limit).await?;
            if ids.is_empty() {
                return Ok(());
            }
            let mut tx = self.store.begin().await?;
            let removed = queries::delete_media(&mut tx, &ids).await?;
            tx.commit().await?;
            self.after_batch(purged, removed).await?;
        }
    }

    /// Counts a committed batch and deletes the files its rows referred to, then lets other
    /// work run before the next batch.
    async fn after_batch(&self, purged: &mut Purged, removed: Removed) -> Result<(), StoreError> {
        let files = remove_files(&self.store, &self.files, &removed.paths).await?;
        purged.add(removed, files);
        tokio::task::yield_now().await;
        Ok(())
    }
}

/// Deletes the stored files at `paths` (relative to the media directory) that no media row refers
/// to any more; returns how many it deleted. Call it after the rows' removal is committed. A file
/// already gone counts as deleted; one that cannot be deleted is logged and left.
///
/// A download of the very same content that is stored in the instant between the check and the
/// deletion loses its file (the row stays, the file answers 404): the check and the file system
/// cannot be made one step.
pub async fn remove_files(
    store: &Store,
    files: &MediaDir,
    paths: &[String],
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for path in paths {
        if privacy::path_in_use(&mut store.reader(), path).await? {
            continue;
        }
        match tokio::fs::remove_file(files.locate(path)).await {
            Ok(()) => deleted += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => deleted += 1,
            Err(e) => warn!(%path, error = %e, "could not delete a stored file"),
        }
    }
    Ok(deleted)
}

#[async_trait::async_trait]
impl crate::jobs::ScheduledTask for Retention {
    fn name(&self) -> &'static str {
        "retention"
    }

    fn once_per_deployment(&self) -> bool {
        true
    }

    fn schedule(&self) -> &str {
        &self.config.schedule
    }

    async fn tick(&self) -> Result<(), apalis::prelude::BoxDynError> {
        let purged = self.purge().await?;
        if !purged.removed.is_empty() || purged.files > 0 {
            let r = &purged.removed;
            info!(
                contacts = r.contacts,
                conversations = r.conversations,
                messages = r.messages,
                media = r.media,
                files = purged.files,
                audit_entries = r.audit_entries,
                batches = purged.batches,
                "retention removed old data"
            );
        }
        Ok(())
    }
}

/// Looks after stored files no message is linked to, once they are older than
/// `web.unused_upload_ttl`: a file that a message names among its attachments is linked to it
/// (its link was never written: a stop came between the message's write and the link's), so that
/// erasure and retention take it along; any other (a visitor's upload no message attached, a
/// resent mail's copy) is removed, with its file when no other row needs it. Runs every quarter of
/// an hour; several instances running it at once treat each file once.
pub struct UnlinkedFiles {
    store: Store,
    clock: Clock,
    files: MediaDir,
    ttl: std::time::Duration,
}

/// What one sweep of [`UnlinkedFiles`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Files linked to the message that names them.
    pub linked: u64,
    /// Files no message uses, removed.
    pub removed: u64,
}

impl UnlinkedFiles {
    /// How many files one transaction treats.
    const BATCH: i64 = 500;

    /// The sweep of files unlinked for longer than `ttl`.
    pub fn new(store: Store, clock: Clock, files: MediaDir, ttl: std::time::Duration) -> Self {
        Self {
            store,
            clock,
            files,
            ttl,
        }
    }

    /// Links or removes every file unlinked for longer than the time to live.
    pub async fn sweep(&self) -> Result<Swept, StoreError> {
        let before = self.clock.now().minus(self.ttl);
        let mut swept = Swept::default();
        loop {
            let ids = media::unlinked(&mut self.store.reader(), before, Self::BATCH).await?;
            if ids.is_empty() {
                return Ok(swept);
            }
            let mut named = Vec::with_capacity(ids.len());
            for id in &ids {
                named.push(media::named_by(&mut self.store.reader(), id).await?);
            }
            let mut tx = self.store.begin().await?;
            let mut paths = Vec::new();
            for (id, named) in ids.iter().zip(named) {
                // A file named by a message it may not be linked to (another visitor's upload) is
                // no message's: it goes like any other.
                let linked = match named {
                    Some((message, index)) => media::relink(&mut tx, id, &message, index).await?,
                    None => false,
                };
                if linked {
                    swept.linked += 1;
                } else if let Some(path) = media::forget_unlinked(&mut tx, id).await? {
                    swept.removed += 1;
                    paths.push(path);
                }
            }
            tx.commit().await?;
            remove_files(&self.store, &self.files, &paths).await?;
            if (ids.len() as i64) < Self::BATCH {
                return Ok(swept);
            }
        }
    }
}

#[async_trait::async_trait]
impl crate::jobs::ScheduledTask for UnlinkedFiles {
    fn name(&self) -> &'static str {
        "unlinked_files"
    }

    fn once_per_deployment(&self) -> bool {
        true
    }

    fn schedule(&self) -> &str {
        "0 */15 * * * *"
    }

    async fn tick(&self) -> Result<(), apalis::prelude::BoxDynError> {
        let swept = self.sweep().await?;
        if swept.linked > 0 {
            info!(
                files = swept.linked,
                "linked files to the messages that name them"
            );
        }
        if swept.removed > 0 {
            info!(files = swept.removed, "removed files no message uses");
        }
        Ok(())
    }
}
