//! Stored media: the gateway's own copies of files users sent.

use super::{Db, StoreError, Tx, query};
use crate::{
    ids::{MediaId, MessageId},
    time::Timestamp,
};

/// A stored file.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredMedia {
    /// Its id, used in URLs and in the message's attachment (`media_id`).
    pub id: MediaId,
    /// The message it came with (unset for files stored before their message, e-mail's).
    pub message_id: Option<MessageId>,
    /// Position of the attachment in the message.
    pub attachment: Option<i64>,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// MIME type.
    pub mime_type: String,
    /// Size in bytes.
    pub size: i64,
    /// The sender's file name, if any.
    pub filename: Option<String>,
    /// Where it is, relative to the media directory.
    pub path: String,
    /// When it was stored.
    pub created_at: Timestamp,
}

/// What to record about a downloaded file.
#[derive(Debug, Clone)]
pub struct NewMedia {
    /// The message it came with, when it exists already.
    pub message_id: Option<MessageId>,
    /// Position of the attachment in the message.
    pub attachment: Option<i64>,
    /// Hex SHA-256.
    pub sha256: String,
    /// MIME type.
    pub mime_type: String,
    /// Size in bytes.
    pub size: i64,
    /// File name.
    pub filename: Option<String>,
    /// Relative path.
    pub path: String,
}

/// Records a stored file; returns its id. Recording the same attachment of a message again
/// returns the existing id.
pub async fn insert(tx: &mut Tx, new: NewMedia, now: Timestamp) -> Result<MediaId, StoreError> {
    let id = MediaId::generate();
    let of_message = new.message_id.clone().zip(new.attachment);
    tx.execute(
        query(
            "INSERT INTO media (id, message_id, attachment, sha256, mime_type, size, filename, \
             path, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (message_id, attachment) DO NOTHING",
        )
        .bind(&id)
        .bind(new.message_id)
        .bind(new.attachment)
        .bind(new.sha256)
        .bind(new.mime_type)
        .bind(new.size)
        .bind(new.filename)
        .bind(new.path)
        .bind(now),
    )
    .await?;
    let Some((message_id, attachment)) = of_message else {
        return Ok(id);
    };
    let (id,): (MediaId,) = tx
        .fetch_one(
            query("SELECT id FROM media WHERE message_id = $1 AND attachment = $2")
                .bind(message_id)
                .bind(attachment),
        )
        .await?;
    Ok(id)
}

/// Forgets media rows that no message came to link (a mail refused after its attachments were
/// kept). The files stay: they are content-addressed and may be another row's too.
pub async fn forget(tx: &mut Tx, ids: &[&str]) -> Result<(), StoreError> {
    for id in ids {
        tx.execute(query("DELETE FROM media WHERE id = $1 AND message_id IS NULL").bind(*id))
            .await?;
    }
    Ok(())
}

/// A stored file by id.
pub async fn get(db: &mut impl Db, id: &str) -> Result<Option<StoredMedia>, StoreError> {
    db.fetch_optional(
        query(
            "SELECT id, message_id, attachment, sha256, mime_type, size, filename, path, \
             created_at FROM media WHERE id = $1",
        )
        .bind(id),
    )
    .await
}
