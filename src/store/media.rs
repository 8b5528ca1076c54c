//! Stored media: the gateway's own copies of files users sent.
//!
//! Most files come with their message. A website visitor's upload comes first, on its own
//! (`uploaded_by` names the visitor), and a mail's files are kept before its message is stored;
//! both are linked to the message that attaches them. A file no message came to use is removed
//! after a while, and a link a stop left unwritten is written then ([`unlinked`], [`named_by`]).

use sqlx::types::Json;

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
    /// The message it came with (unset for a visitor's upload until a message attaches it, and
    /// for a mail's files until its message is stored, see [`link_kept`]).
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
    /// The website visitor who uploaded it (`POST /v1/uploads`), by contact id on the web
    /// channel; unset for files that came with a message.
    pub uploaded_by: Option<String>,
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
    /// The website visitor who uploaded it, when it is an upload.
    pub uploaded_by: Option<String>,
}

/// Records a stored file; returns its id. Recording the same attachment of a message again
/// returns the existing id.
pub async fn insert(tx: &mut Tx, new: NewMedia, now: Timestamp) -> Result<MediaId, StoreError> {
    let id = MediaId::generate();
    let of_message = new.message_id.clone().zip(new.attachment);
    tx.execute(
        query(
            "INSERT INTO media (id, message_id, attachment, sha256, mime_type, size, filename, \
             path, created_at, uploaded_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
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
        .bind(now)
        .bind(new.uploaded_by),
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

/// Links the files kept before their message (a mail's) to the message that attaches them, so
/// that they go with it (erasure, retention) and are served to whoever may read it. A file
/// linked already, or a visitor's upload (see [`link_upload`]), is left as it is.
pub async fn link_kept(
    tx: &mut Tx,
    message_id: &MessageId,
    attachments: &[switchboard_channel::Attachment],
) -> Result<(), StoreError> {
    for (index, attachment) in attachments.iter().enumerate() {
        let Some(id) = attachment.media_id.as_deref() else {
            continue;
        };
        tx.execute(
            query(
                "UPDATE media SET message_id = $2, attachment = $3 WHERE id = $1 \
                 AND message_id IS NULL AND uploaded_by IS NULL",
            )
            .bind(id)
            .bind(message_id)
            .bind(i64::try_from(index).unwrap_or(i64::MAX)),
        )
        .await?;
    }
    Ok(())
}

/// A stored file by id.
pub async fn get(db: &mut impl Db, id: &str) -> Result<Option<StoredMedia>, StoreError> {
    db.fetch_optional(
        query(
            "SELECT id, message_id, attachment, sha256, mime_type, size, filename, path, \
             created_at, uploaded_by FROM media WHERE id = $1",
        )
        .bind(id),
    )
    .await
}

/// One of a visitor's uploads, by id: `None` when there is none of that id, or it is someone
/// else's (the two answer alike, so ids of others' files cannot be probed).
pub async fn upload_of(
    db: &mut impl Db,
    id: &str,
    owner: &str,
) -> Result<Option<StoredMedia>, StoreError> {
    db.fetch_optional(
        query(
            "SELECT id, message_id, attachment, sha256, mime_type, size, filename, path, \
             created_at, uploaded_by FROM media WHERE id = $1 AND uploaded_by = $2",
        )
        .bind(id)
        .bind(owner),
    )
    .await
}

/// A file a website visitor may fetch, by id: one they uploaded, or one attached to a message of
/// one of their conversations (a file an expert sent them). `None` when there is none of that
/// id, or it is someone else's (the two answer alike, so ids of others' files cannot be probed).
pub async fn visible_to_visitor(
    db: &mut impl Db,
    id: &str,
    visitor: &str,
) -> Result<Option<StoredMedia>, StoreError> {
    db.fetch_optional(
        query(
            "SELECT id, message_id, attachment, sha256, mime_type, size, filename, path, \
             created_at, uploaded_by FROM media f WHERE id = $1 AND (uploaded_by = $2 \
             OR EXISTS (SELECT 1 FROM messages m \
              JOIN conversations c ON c.id = m.conversation_id \
              JOIN contacts k ON k.id = c.contact_id \
              WHERE m.id = f.message_id AND c.deleted_at IS NULL \
              AND k.channel = $3 AND k.external_id = $2))",
        )
        .bind(id)
        .bind(visitor)
        .bind(switchboard_channel::Channel::WEB.as_str()),
    )
    .await
}

/// Links an upload to the message that attached it (export, erasure and retention find files
/// through their message). An upload attached before keeps its first message.
pub async fn link_upload(
    tx: &mut Tx,
    id: &str,
    owner: &str,
    message_id: &MessageId,
    attachment: i64,
) -> Result<(), StoreError> {
    tx.execute(
        query(
            "UPDATE media SET message_id = $3, attachment = $4 WHERE id = $1 \
             AND uploaded_by = $2 AND message_id IS NULL",
        )
        .bind(id)
        .bind(owner)
        .bind(message_id)
        .bind(attachment),
    )
    .await?;
    Ok(())
}

/// Files stored before `before` that no message is linked to, at most `limit`, oldest first: a
/// visitor's upload no message came to attach, a mail's file whose message turned out a resend,
/// or a file whose link was never written (a message's write and its files' link are two
/// transactions, and a stop may come between them).
pub async fn unlinked(
    db: &mut impl Db,
    before: Timestamp,
    limit: i64,
) -> Result<Vec<MediaId>, StoreError> {
    let rows: Vec<(MediaId,)> = db
        .fetch_all(
            query(
                "SELECT id FROM media WHERE message_id IS NULL AND created_at < $1 \
                 ORDER BY created_at LIMIT $2",
            )
            .bind(before)
            .bind(limit),
        )
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// The message that names a file among its attachments, and at which position: all a link that
/// was never written leaves behind. Only messages stored after the file can name it.
pub async fn named_by(
    db: &mut impl Db,
    id: &MediaId,
) -> Result<Option<(MessageId, i64)>, StoreError> {
    let candidates: Vec<(MessageId, Json<Vec<switchboard_channel::Attachment>>)> = db
        .fetch_all(
            query(
                "SELECT m.id, m.attachments FROM media f JOIN messages m \
                 ON m.created_at >= f.created_at \
                 AND CAST(m.attachments AS TEXT) LIKE '%' || f.id || '%' \
                 WHERE f.id = $1 ORDER BY m.created_at LIMIT 16",
            )
            .bind(id),
        )
        .await?;
    // The text match only narrows the search; the attachment has to name the file itself.
    Ok(candidates.into_iter().find_map(|(message, attachments)| {
        let index = attachments
            .iter()
            .position(|a| a.media_id.as_deref() == Some(id.as_str()))?;
        Some((message, i64::try_from(index).unwrap_or(i64::MAX)))
    }))
}

/// Writes the link [`named_by`] found. A visitor's upload is linked only to a message in one of
/// that visitor's conversations, as attaching it requires.
pub async fn relink(
    tx: &mut Tx,
    id: &MediaId,
    message_id: &MessageId,
    attachment: i64,
) -> Result<bool, StoreError> {
    let linked = tx
        .execute(
            query(
                "UPDATE media SET message_id = $2, attachment = $3 WHERE id = $1 \
                 AND message_id IS NULL AND (uploaded_by IS NULL OR uploaded_by = \
                 (SELECT k.external_id FROM messages m \
                 JOIN conversations c ON c.id = m.conversation_id \
                 JOIN contacts k ON k.id = c.contact_id WHERE m.id = $2)) \
                 AND NOT EXISTS (SELECT 1 FROM media o WHERE o.message_id = $2 \
                 AND o.attachment = $3)",
            )
            .bind(id)
            .bind(message_id)
            .bind(attachment),
        )
        .await?;
    Ok(linked > 0)
}

/// Forgets a file no message is linked to; returns the path of its file, to be deleted once no
/// other row refers to it.
pub async fn forget_unlinked(tx: &mut Tx, id: &MediaId) -> Result<Option<String>, StoreError> {
    let path: Option<(String,)> = tx
        .fetch_optional(
            query("DELETE FROM media WHERE id = $1 AND message_id IS NULL RETURNING path").bind(id),
        )
        .await?;
    Ok(path.map(|(p,)| p))
}
