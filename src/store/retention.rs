//! Which rows are old enough for retention to remove (see `crate::retention`), a batch at a time.
//!
//! Every selection here is a read, outside any transaction; the removal that follows
//! ([`super::privacy`]) runs in a short transaction of its own and checks again what may have
//! changed in between (a message that got work to do, a conversation that got a message).
//!
//! Messages and stored files have no index on their creation time: one would cost every stored
//! message an index update, for a purge that runs once a day. Their ids are UUIDv7, which begin
//! with their creation time in milliseconds and sort as text in that order, so the primary key
//! serves instead: [`id_floor`] turns a time into the smallest id of that millisecond. The
//! `created_at` column still decides; the id only bounds how much is read.

use super::{
    Db, StoreError, Tx, jobs,
    privacy::{Removed, over_ids},
    query,
    statement::Sql,
};
use crate::{
    ids::{ContactId, ConversationId, MediaId, MessageId},
    time::Timestamp,
};

/// The smallest UUIDv7 (in text) of the millisecond of `t`: ids generated before `t` sort below it.
pub fn id_floor(t: Timestamp) -> String {
    let millis = u64::try_from(t.micros().div_euclid(1000)).unwrap_or(0) & 0xffff_ffff_ffff;
    format!(
        "{:08x}-{:04x}-0000-0000-000000000000",
        millis >> 16,
        millis & 0xffff
    )
}

/// A message that no pending work still needs: no turn waits to answer it, and no delivery,
/// evaluation or media download is queued for it. (`m` is the message.)
fn unneeded() -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pending_turns p WHERE p.conversation_id = m.conversation_id \
         AND p.seq = m.seq) \
         AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.queue = '{deliver}' AND j.subject = m.id) \
         AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.queue = '{evaluate}' AND j.subject = m.id) \
         AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.queue = '{fetch}' AND j.lane = m.id)",
        deliver = jobs::DELIVER,
        evaluate = jobs::EVALUATE,
        fetch = jobs::FETCH_MEDIA,
    )
}

/// Up to `limit` messages of live conversations created before `before` that no pending work
/// needs, oldest first. (Deleted conversations go as a whole: [`deleted_conversations`].)
pub async fn old_messages(
    db: &mut impl Db,
    before: Timestamp,
    limit: i64,
) -> Result<Vec<MessageId>, StoreError> {
    static SELECT: Sql = Sql::new(|| {
        format!(
            "SELECT m.id FROM messages m WHERE m.id < $1 AND m.created_at < $2 AND {} \
             ORDER BY m.id LIMIT $3",
            unneeded()
        )
    });
    let rows: Vec<(MessageId,)> = db
        .fetch_all(
            query(SELECT.text())
                .bind(id_floor(before))
                .bind(before)
                .bind(limit),
        )
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Removes those of `ids` that still no pending work needs (checked again inside the
/// transaction), with everything that refers to them.
pub async fn delete_unneeded_messages(
    tx: &mut Tx,
    ids: &[MessageId],
) -> Result<Removed, StoreError> {
    if ids.is_empty() {
        return Ok(Removed::default());
    }
    let statement = match tx.backend() {
        super::Backend::Sqlite => CHECK_SQLITE.text(),
        super::Backend::Postgres => CHECK_POSTGRES.text(),
    };
    let still: Vec<(MessageId,)> = tx
        .fetch_all(query(statement).bind(serde_json::json!(ids)))
        .await?;
    let still: Vec<MessageId> = still.into_iter().map(|(id,)| id).collect();
    super::privacy::delete_messages(tx, &still).await
}

/// The check of [`delete_unneeded_messages`], in each dialect.
static CHECK_SQLITE: Sql = Sql::new(|| {
    format!(
        "SELECT m.id FROM messages m WHERE m.id IN (SELECT value FROM json_each($1)) AND {}",
        unneeded()
    )
});
static CHECK_POSTGRES: Sql = Sql::new(|| {
    format!(
        "SELECT m.id FROM messages m WHERE m.id IN (SELECT jsonb_array_elements_text($1)) AND {}",
        unneeded()
    )
});

/// Up to `limit` conversations deleted before `before`, longest deleted first.
pub async fn deleted_conversations(
    db: &mut impl Db,
    before: Timestamp,
    limit: i64,
) -> Result<Vec<ConversationId>, StoreError> {
    let rows: Vec<(ConversationId,)> = db
        .fetch_all(
            query(
                "SELECT id FROM conversations WHERE deleted_at < $1 \
                 ORDER BY deleted_at, id LIMIT $2",
            )
            .bind(before)
            .bind(limit),
        )
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Up to `limit` messages of a conversation, first ones first.
pub async fn messages_of(
    db: &mut impl Db,
    conversation_id: &ConversationId,
    limit: i64,
) -> Result<Vec<MessageId>, StoreError> {
    let rows: Vec<(MessageId,)> = db
        .fetch_all(
            query("SELECT id FROM messages WHERE conversation_id = $1 ORDER BY seq LIMIT $2")
                .bind(conversation_id)
                .bind(limit),
        )
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Removes a batch of a deleted conversation's messages (its pending turns first: a deleted
/// conversation is not answered), or — once it has none left — the conversation itself.
pub async fn delete_part_of_deleted_conversation(
    tx: &mut Tx,
    conversation_id: &ConversationId,
    limit: i64,
) -> Result<Removed, StoreError> {
    let ids = messages_of(tx, conversation_id, limit).await?;
    if ids.is_empty() {
        return super::privacy::delete_conversation(tx, conversation_id).await;
    }
    tx.execute(query("DELETE FROM pending_turns WHERE conversation_id = $1").bind(conversation_id))
        .await?;
    super::privacy::delete_messages(tx, &ids).await
}

/// Up to `limit` conversations without messages, unchanged since before `before`, with ids after
/// `after` (in id order, so that a pass goes through the table once).
pub async fn empty_conversations(
    db: &mut impl Db,
    before: Timestamp,
    after: &str,
    limit: i64,
) -> Result<Vec<ConversationId>, StoreError> {
    let rows: Vec<(ConversationId,)> = db
        .fetch_all(
            query(
                "SELECT c.id FROM conversations c WHERE c.id > $1 AND c.updated_at < $2 \
                 AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id) \
                 AND NOT EXISTS (SELECT 1 FROM pending_turns p WHERE p.conversation_id = c.id) \
                 ORDER BY c.id LIMIT $3",
            )
            .bind(after)
            .bind(before)
            .bind(limit),
        )
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Removes a conversation found empty, unless a message arrived since.
pub async fn delete_if_empty(
    tx: &mut Tx,
    conversation_id: &ConversationId,
) -> Result<Removed, StoreError> {
    let row: Option<(i64,)> = tx
        .fetch_optional(
            query(
                "SELECT CAST(1 AS BIGINT) FROM conversations c WHERE c.id = $1 \
                 AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id) \
                 AND NOT EXISTS (SELECT 1 FROM pending_turns p WHERE p.conversation_id = c.id)",
            )
            .bind(conversation_id),
        )
        .await?;
    if row.is_none() {
        return Ok(Removed::default());
    }
    super::privacy::delete_conversation(tx, conversation_id).await
}

/// Up to `limit` contacts without any conversation, unchanged since before `before`, with ids
/// after `after`.
pub async fn contacts_without_conversations(
    db: &mut impl Db,
    before: Timestamp,
    after: &str,
    limit: i64,
) -> Result<Vec<ContactId>, StoreError> {
    let rows: Vec<(ContactId,)> = db
        .fetch_all(
            query(
                "SELECT c.id FROM contacts c WHERE c.id > $1 AND c.updated_at < $2 \
                 AND NOT EXISTS (SELECT 1 FROM conversations v WHERE v.contact_id = c.id) \
                 ORDER BY c.id LIMIT $3",
            )
            .bind(after)
            .bind(before)
            .bind(limit),
        )
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Removes those of `ids` that still have no conversation.
pub async fn delete_contacts_without_conversations(
    tx: &mut Tx,
    ids: &[ContactId],
) -> Result<Removed, StoreError> {
    if ids.is_empty() {
        return Ok(Removed::default());
    }
    let contacts = tx
        .execute(
            query(over_ids!(
                tx.backend(),
                "DELETE FROM contacts WHERE id IN ({ids}) \
                 AND NOT EXISTS (SELECT 1 FROM conversations v WHERE v.contact_id = contacts.id)"
            ))
            .bind(serde_json::json!(ids)),
        )
        .await?;
    Ok(Removed {
        contacts,
        ..Removed::default()
    })
}

/// Up to `limit` stored files' rows created before `before`, oldest first.
pub async fn old_media(
    db: &mut impl Db,
    before: Timestamp,
    limit: i64,
) -> Result<Vec<MediaId>, StoreError> {
    let rows: Vec<(MediaId,)> = db
        .fetch_all(
            query("SELECT id FROM media WHERE id < $1 AND created_at < $2 ORDER BY id LIMIT $3")
                .bind(id_floor(before))
                .bind(before)
                .bind(limit),
        )
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Removes stored files' rows; their messages keep describing the attachments.
pub async fn delete_media(tx: &mut Tx, ids: &[MediaId]) -> Result<Removed, StoreError> {
    if ids.is_empty() {
        return Ok(Removed::default());
    }
    let backend = tx.backend();
    let list = serde_json::json!(ids);
    let paths: Vec<(String,)> = tx
        .fetch_all(
            query(over_ids!(
                backend,
                "SELECT DISTINCT path FROM media WHERE id IN ({ids})"
            ))
            .bind(list.clone()),
        )
        .await?;
    let media = tx
        .execute(query(over_ids!(backend, "DELETE FROM media WHERE id IN ({ids})")).bind(list))
        .await?;
    Ok(Removed {
        media,
        paths: paths.into_iter().map(|(p,)| p).collect(),
        ..Removed::default()
    })
}

/// Removes up to `limit` audit log entries older than `before`, oldest first.
pub async fn delete_old_audit_entries(
    tx: &mut Tx,
    before: Timestamp,
    limit: i64,
) -> Result<Removed, StoreError> {
    let audit_entries = tx
        .execute(
            query(
                "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log \
                 WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
            )
            .bind(before)
            .bind(limit),
        )
        .await?;
    Ok(Removed {
        audit_entries,
        ..Removed::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_floor_sorts_ids_by_their_time() {
        let at = Timestamp(1_763_719_200_123_456);
        let floor = id_floor(at);
        let before = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            1_763_719_200,
            122_000_000,
        ))
        .to_string();
        let same = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            1_763_719_200,
            123_000_000,
        ))
        .to_string();
        assert!(before < floor, "{before} < {floor}");
        assert!(floor <= same, "{floor} <= {same}");
        assert_eq!(floor.len(), same.len());
    }
}
