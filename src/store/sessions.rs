//! Dashboard sessions. The browser holds a random token; the database holds its SHA-256, so a
//! leaked database does not hand out sessions.

use super::{Db, StoreError, Tx, query};
use crate::time::Timestamp;

/// A session and its CSRF token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    /// SHA-256 of the cookie's token.
    pub id: String,
    /// The user.
    pub user_id: String,
    /// The token forms must carry.
    pub csrf_token: String,
    /// When it ends.
    pub expires_at: Timestamp,
}

/// Opens a session.
pub async fn create(
    tx: &mut Tx,
    id: &str,
    user_id: &str,
    csrf_token: &str,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        query(
            "INSERT INTO sessions (id, user_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now)
        .bind(expires_at),
    )
    .await?;
    Ok(())
}

/// A live session by id.
pub async fn get(
    db: &mut impl Db,
    id: &str,
    now: Timestamp,
) -> Result<Option<Session>, StoreError> {
    db.fetch_optional(
        query(
            "SELECT id, user_id, csrf_token, expires_at FROM sessions \
             WHERE id = $1 AND expires_at > $2",
        )
        .bind(id)
        .bind(now),
    )
    .await
}

/// Ends a session.
pub async fn delete(tx: &mut Tx, id: &str) -> Result<(), StoreError> {
    tx.execute(query("DELETE FROM sessions WHERE id = $1").bind(id))
        .await?;
    Ok(())
}

/// Forgets expired sessions.
pub async fn forget_expired(tx: &mut Tx, now: Timestamp) -> Result<u64, StoreError> {
    tx.execute(query("DELETE FROM sessions WHERE expires_at <= $1").bind(now))
        .await
}
