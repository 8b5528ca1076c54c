//! Thread tokens: the unguessable value that brings an e-mail reply back to its conversation.

use uuid::Uuid;

use super::{Db, StoreError, Tx, query};
use crate::time::Timestamp;

/// The token of a conversation's thread — the end user's (`expert_id: None`), or one bound to an
/// expert as well (the notification mail they answer) — created on first use.
pub async fn token_for(
    tx: &mut Tx,
    conversation_id: &str,
    expert_id: Option<&str>,
    now: Timestamp,
) -> Result<String, StoreError> {
    // 122 random bits (UUIDv4) in lowercase hex: unguessable, and safe in an address's local part.
    let fresh = Uuid::new_v4().simple().to_string();
    tx.execute(
        query(
            "INSERT INTO thread_tokens (token, conversation_id, expert_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&fresh)
        .bind(conversation_id)
        .bind(expert_id)
        .bind(now),
    )
    .await?;
    let (token,): (String,) = tx
        .fetch_one(
            query(
                "SELECT token FROM thread_tokens WHERE conversation_id = $1 \
                 AND COALESCE(expert_id, '') = COALESCE($2, '')",
            )
            .bind(conversation_id)
            .bind(expert_id),
        )
        .await?;
    Ok(token)
}

/// What a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Binding {
    /// The conversation.
    pub conversation_id: crate::ids::ConversationId,
    /// The expert, for tokens of notification mails.
    pub expert_id: Option<crate::ids::UserId>,
}

/// The conversation (and expert) a token names.
pub async fn binding(db: &mut impl Db, token: &str) -> Result<Option<Binding>, StoreError> {
    db.fetch_optional(
        query("SELECT conversation_id, expert_id FROM thread_tokens WHERE token = $1").bind(token),
    )
    .await
}

/// Records a one-time value (a webhook's nonce) in `scope`. Returns false when it was seen before.
pub async fn see_once(
    tx: &mut Tx,
    scope: &str,
    token: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let n = tx
        .execute(
            query(
                "INSERT INTO seen_tokens (scope, token, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (scope, token) DO NOTHING",
            )
            .bind(scope)
            .bind(token)
            .bind(now),
        )
        .await?;
    Ok(n == 1)
}

/// Forgets one-time values recorded before `before`. Returns how many.
pub async fn forget_seen_before(tx: &mut Tx, before: Timestamp) -> Result<u64, StoreError> {
    tx.execute(query("DELETE FROM seen_tokens WHERE created_at < $1").bind(before))
        .await
}

/// Whether a one-time value was seen.
pub async fn seen(db: &mut impl Db, scope: &str, token: &str) -> Result<bool, StoreError> {
    let row: Option<(i64,)> = db
        .fetch_optional(
            query("SELECT 1 FROM seen_tokens WHERE scope = $1 AND token = $2")
                .bind(scope)
                .bind(token),
        )
        .await?;
    Ok(row.is_some())
}

/// Forgets one-time values older than `before` (their signatures have expired by then).
pub async fn forget_seen(tx: &mut Tx, before: Timestamp) -> Result<u64, StoreError> {
    tx.execute(query("DELETE FROM seen_tokens WHERE created_at < $1").bind(before))
        .await
}
