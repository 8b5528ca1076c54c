//! Everything stored about one person, as a whole: what a data subject's request reads and erases,
//! and what retention removes.
//!
//! A contact's data is spread over many tables: its row, its conversations, their messages, and
//! what hangs off messages (stored files, evaluations, the parts of long replies, idempotency
//! keys, jobs about them) or off conversations (pending turns, e-mail thread tokens, jobs named
//! after them). Removing any of it goes through this module, so that no table is forgotten and
//! nothing is left pointing at a removed row. The files themselves are the caller's to remove
//! once the rows are committed: [`Removed::paths`] names them, and [`path_in_use`] says whether
//! another row still needs one (files are content-addressed, so two messages may share one).

use serde::Serialize;
use serde_json::json;

use super::{Backend, Db, StoreError, Tx, media::StoredMedia, query};
use crate::{
    ids::{ContactId, ConversationId, MessageId},
    time::Timestamp,
};

/// A statement over a list of ids bound as one JSON array at `$1`: `{ids}` in the text stands for
/// the ids' rows in the backend's dialect. One statement removes a whole batch, whatever its size.
macro_rules! over_ids {
    ($backend:expr, $sql:literal) => {{
        static SQLITE: $crate::store::statement::Sql = $crate::store::statement::Sql::new(|| {
            format!($sql, ids = "SELECT value FROM json_each($1)")
        });
        static POSTGRES: $crate::store::statement::Sql = $crate::store::statement::Sql::new(|| {
            format!($sql, ids = "SELECT jsonb_array_elements_text($1)")
        });
        match $backend {
            $crate::store::Backend::Sqlite => SQLITE.text(),
            $crate::store::Backend::Postgres => POSTGRES.text(),
        }
    }};
}
pub(super) use over_ids;

/// What was removed, by kind, and the files that the removed rows referred to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Removed {
    /// Contacts.
    pub contacts: u64,
    /// Conversations.
    pub conversations: u64,
    /// Messages.
    pub messages: u64,
    /// Stored files' rows.
    pub media: u64,
    /// Audit log entries.
    pub audit_entries: u64,
    /// The files (relative paths) of the removed media rows; each is to be deleted unless
    /// [`path_in_use`].
    #[serde(skip)]
    pub paths: Vec<String>,
}

impl Removed {
    /// Adds another removal's counts and files.
    pub fn add(&mut self, other: Removed) {
        self.contacts += other.contacts;
        self.conversations += other.conversations;
        self.messages += other.messages;
        self.media += other.media;
        self.audit_entries += other.audit_entries;
        self.paths.extend(other.paths);
        self.paths.sort_unstable();
        self.paths.dedup();
    }

    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.contacts == 0
            && self.conversations == 0
            && self.messages == 0
            && self.media == 0
            && self.audit_entries == 0
    }
}

/// Removes messages with everything that refers to them: their stored files' rows, evaluations,
/// parts, idempotency keys and jobs. The caller checks that no turn is pending for them.
pub async fn delete_messages(tx: &mut Tx, ids: &[MessageId]) -> Result<Removed, StoreError> {
    if ids.is_empty() {
        return Ok(Removed::default());
    }
    let backend = tx.backend();
    let list = json!(ids);
    let paths: Vec<(String,)> = tx
        .fetch_all(
            query(over_ids!(
                backend,
                "SELECT DISTINCT path FROM media WHERE message_id IN ({ids})"
            ))
            .bind(list.clone()),
        )
        .await?;
    for statement in [
        over_ids!(
            backend,
            "DELETE FROM jobs WHERE subject IN ({ids}) OR lane IN ({ids})"
        ),
        over_ids!(
            backend,
            "DELETE FROM evaluations WHERE message_id IN ({ids})"
        ),
        over_ids!(
            backend,
            "DELETE FROM message_parts WHERE message_id IN ({ids})"
        ),
        over_ids!(
            backend,
            "DELETE FROM idempotency_keys WHERE message_id IN ({ids})"
        ),
    ] {
        tx.execute(query(statement).bind(list.clone())).await?;
    }
    let media = tx
        .execute(
            query(over_ids!(
                backend,
                "DELETE FROM media WHERE message_id IN ({ids})"
            ))
            .bind(list.clone()),
        )
        .await?;
    let messages = tx
        .execute(
            query(over_ids!(
                backend,
                "DELETE FROM messages WHERE id IN ({ids})"
            ))
            .bind(list),
        )
        .await?;
    Ok(Removed {
        messages,
        media,
        paths: paths.into_iter().map(|(p,)| p).collect(),
        ..Removed::default()
    })
}

/// The audit detail left on entries about a conversation that was erased: who did what and
/// when stays accountable; what the detail said (a mail sender, a transfer's note) goes.
fn erased_detail() -> serde_json::Value {
    json!({"erased": true})
}

/// Removes a conversation for good, with its messages and everything that refers to either. The
/// audit log keeps its entries about the conversation, without their details.
pub async fn delete_conversation(tx: &mut Tx, id: &ConversationId) -> Result<Removed, StoreError> {
    let paths: Vec<(String,)> = tx
        .fetch_all(
            query(
                "SELECT DISTINCT path FROM media WHERE message_id IN \
                 (SELECT id FROM messages WHERE conversation_id = $1)",
            )
            .bind(id),
        )
        .await?;
    for statement in [
        // Deliveries are in the conversation's lane, notifications named after it; media
        // downloads are in their message's lane, evaluations named after their reply.
        "DELETE FROM jobs WHERE lane = $1 OR subject LIKE $1 || '/%' \
         OR subject IN (SELECT id FROM messages WHERE conversation_id = $1) \
         OR lane IN (SELECT id FROM messages WHERE conversation_id = $1)",
        "DELETE FROM pending_turns WHERE conversation_id = $1",
        "DELETE FROM evaluations WHERE message_id IN \
         (SELECT id FROM messages WHERE conversation_id = $1)",
        "DELETE FROM message_parts WHERE message_id IN \
         (SELECT id FROM messages WHERE conversation_id = $1)",
        "DELETE FROM idempotency_keys WHERE message_id IN \
         (SELECT id FROM messages WHERE conversation_id = $1)",
        "DELETE FROM thread_tokens WHERE conversation_id = $1",
    ] {
        tx.execute(query(statement).bind(id)).await?;
    }
    let media = tx
        .execute(
            query(
                "DELETE FROM media WHERE message_id IN \
                 (SELECT id FROM messages WHERE conversation_id = $1)",
            )
            .bind(id),
        )
        .await?;
    let messages = tx
        .execute(query("DELETE FROM messages WHERE conversation_id = $1").bind(id))
        .await?;
    tx.execute(
        query("UPDATE audit_log SET detail = $2 WHERE conversation_id = $1")
            .bind(id)
            .bind(erased_detail()),
    )
    .await?;
    let conversations = tx
        .execute(query("DELETE FROM conversations WHERE id = $1").bind(id))
        .await?;
    Ok(Removed {
        conversations,
        messages,
        media,
        paths: paths.into_iter().map(|(p,)| p).collect(),
        ..Removed::default()
    })
}

/// A conversation that was erased with its contact.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ErasedConversation {
    /// Its id.
    pub id: ConversationId,
    /// Who answered it: `expert` when staff had it (their dashboards are told it is gone).
    pub mode: String,
}

/// A contact that was erased.
#[derive(Debug, Clone)]
pub struct Erased {
    /// Its channel.
    pub channel: String,
    /// Its conversations.
    pub conversations: Vec<ErasedConversation>,
    /// What was removed.
    pub removed: Removed,
}

/// Erases a contact: its row, every conversation of it (deleted ones too) with their messages,
/// and its idempotency keys. `None` when there is no such contact. Afterwards nothing stored
/// names the contact, so the next message from the same address creates a new contact.
pub async fn erase_contact(tx: &mut Tx, id: &ContactId) -> Result<Option<Erased>, StoreError> {
    // On PostgreSQL a message of the contact arriving meanwhile would add a conversation beside
    // this transaction: the row lock makes it wait, and then find no contact to write to.
    let select = match tx.backend() {
        Backend::Sqlite => "SELECT channel, external_id FROM contacts WHERE id = $1",
        Backend::Postgres => "SELECT channel, external_id FROM contacts WHERE id = $1 FOR UPDATE",
    };
    let Some((channel, external_id)) = tx
        .fetch_optional::<(String, String)>(query(select).bind(id))
        .await?
    else {
        return Ok(None);
    };
    let conversations: Vec<ErasedConversation> = tx
        .fetch_all(
            query("SELECT id, mode FROM conversations WHERE contact_id = $1 ORDER BY id").bind(id),
        )
        .await?;
    let mut removed = Removed::default();
    for conversation in &conversations {
        removed.add(delete_conversation(tx, &conversation.id).await?);
    }
    // A website visitor's uploads that no message attached are theirs too.
    if channel == switchboard_channel::Channel::WEB.as_str() {
        let paths: Vec<(String,)> = tx
            .fetch_all(
                query("SELECT DISTINCT path FROM media WHERE uploaded_by = $1").bind(&external_id),
            )
            .await?;
        removed.media += tx
            .execute(query("DELETE FROM media WHERE uploaded_by = $1").bind(&external_id))
            .await?;
        removed.paths.extend(paths.into_iter().map(|(p,)| p));
    }
    // The contact's usage records go too: retention keeps them for billing after the messages
    // they count are purged, but an erasure leaves nothing tied to the person.
    tx.execute(query("DELETE FROM usage WHERE contact_id = $1").bind(id))
        .await?;
    tx.execute(
        query("DELETE FROM idempotency_keys WHERE channel = $1 AND external_id = $2")
            .bind(&channel)
            .bind(&external_id),
    )
    .await?;
    removed.contacts = tx
        .execute(query("DELETE FROM contacts WHERE id = $1").bind(id))
        .await?;
    Ok(Some(Erased {
        channel,
        conversations,
        removed,
    }))
}

/// Whether a stored file is still referred to by a media row.
pub async fn path_in_use(db: &mut impl Db, path: &str) -> Result<bool, StoreError> {
    let row: Option<(i64,)> = db
        .fetch_optional(
            query("SELECT CAST(1 AS BIGINT) FROM media WHERE path = $1 LIMIT 1").bind(path),
        )
        .await?;
    Ok(row.is_some())
}

/// A stored file of a message, as an export lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedFile {
    /// Its id (the message's attachment names it as `media_id`).
    pub id: String,
    /// Position of the attachment in the message.
    pub attachment: Option<i64>,
    /// MIME type.
    pub mime_type: String,
    /// Size in bytes.
    pub size: i64,
    /// The sender's file name.
    pub filename: Option<String>,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// When it was stored.
    pub stored_at: Timestamp,
}

impl From<StoredMedia> for ExportedFile {
    fn from(m: StoredMedia) -> Self {
        Self {
            id: m.id.into_string(),
            attachment: m.attachment,
            mime_type: m.mime_type,
            size: m.size,
            filename: m.filename,
            sha256: m.sha256,
            stored_at: m.created_at,
        }
    }
}

/// The stored files of a conversation's messages with seq in `(after, up_to]`.
pub async fn files_of_messages(
    db: &mut impl Db,
    conversation_id: &ConversationId,
    after: i64,
    up_to: i64,
) -> Result<Vec<StoredMedia>, StoreError> {
    db.fetch_all(
        query(
            "SELECT id, message_id, attachment, sha256, mime_type, size, filename, path, \
             created_at, uploaded_by FROM media WHERE message_id IN (SELECT id FROM messages \
             WHERE conversation_id = $1 AND seq > $2 AND seq <= $3) ORDER BY id",
        )
        .bind(conversation_id)
        .bind(after)
        .bind(up_to),
    )
    .await
}

/// An evaluation of a reply, as an export lists it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ExportedEvaluation {
    /// The reply evaluated.
    #[serde(skip)]
    pub message_id: String,
    /// Which evaluator.
    pub evaluator: String,
    /// Whether the reply passed.
    #[sqlx(try_from = "i64")]
    pub passed: super::Flag,
    /// The score, for evaluators that score.
    pub score: Option<f64>,
    /// What was found.
    pub detail: sqlx::types::Json<serde_json::Value>,
    /// When.
    pub created_at: Timestamp,
}

/// The evaluations of a conversation's messages with seq in `(after, up_to]`.
pub async fn evaluations_of_messages(
    db: &mut impl Db,
    conversation_id: &ConversationId,
    after: i64,
    up_to: i64,
) -> Result<Vec<ExportedEvaluation>, StoreError> {
    db.fetch_all(
        query(
            "SELECT message_id, evaluator, passed, score, detail, created_at FROM evaluations \
             WHERE message_id IN (SELECT id FROM messages \
             WHERE conversation_id = $1 AND seq > $2 AND seq <= $3) ORDER BY id",
        )
        .bind(conversation_id)
        .bind(after)
        .bind(up_to),
    )
    .await
}
