//! The audit log: every access of staff to a conversation.

use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

use super::{Db, StoreError, query};
use crate::time::Timestamp;

/// A recorded access.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Entry {
    /// Its id.
    pub id: String,
    /// Who.
    pub actor_id: String,
    /// In which role.
    pub actor_role: String,
    /// What: `view`, `observe`, `reply`, `claim`, `transfer`, `release`, `close`, `export`…
    pub action: String,
    /// Which conversation, if one.
    pub conversation_id: Option<String>,
    /// Details (the transfer's target, the message written…).
    pub detail: Json<serde_json::Value>,
    /// From where: the client's address.
    pub remote_addr: Option<String>,
    /// From where: the client's user agent.
    pub user_agent: Option<String>,
    /// When.
    pub created_at: Timestamp,
}

/// An access to record.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    /// Who.
    pub actor_id: &'a str,
    /// In which role.
    pub actor_role: &'a str,
    /// What.
    pub action: &'a str,
    /// Which conversation.
    pub conversation_id: Option<&'a str>,
    /// Details.
    pub detail: serde_json::Value,
    /// The client's address.
    pub remote_addr: Option<&'a str>,
    /// The client's user agent.
    pub user_agent: Option<&'a str>,
}

/// Records an access (in a transaction of its own, or the caller's).
pub async fn record(
    db: &mut impl Db,
    entry: NewEntry<'_>,
    now: Timestamp,
) -> Result<(), StoreError> {
    db.execute(
        query(
            "INSERT INTO audit_log (id, actor_id, actor_role, action, conversation_id, detail, \
             remote_addr, user_agent, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(entry.actor_id)
        .bind(entry.actor_role)
        .bind(entry.action)
        .bind(entry.conversation_id)
        .bind(entry.detail)
        .bind(entry.remote_addr)
        .bind(entry.user_agent)
        .bind(now),
    )
    .await?;
    Ok(())
}

/// A page of the log, newest first, optionally of one actor or conversation.
pub async fn page(
    db: &mut impl Db,
    actor_id: Option<&str>,
    conversation_id: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Entry>, i64), StoreError> {
    let (total,): (i64,) = db
        .fetch_one(
            query(
                "SELECT COUNT(*) FROM audit_log WHERE ($1 IS NULL OR actor_id = $1) \
                 AND ($2 IS NULL OR conversation_id = $2)",
            )
            .bind(actor_id)
            .bind(conversation_id),
        )
        .await?;
    let entries = db
        .fetch_all(
            query(
                "SELECT id, actor_id, actor_role, action, conversation_id, detail, remote_addr, \
                 user_agent, created_at FROM audit_log WHERE ($1 IS NULL OR actor_id = $1) \
                 AND ($2 IS NULL OR conversation_id = $2) ORDER BY created_at DESC, id DESC \
                 LIMIT $3 OFFSET $4",
            )
            .bind(actor_id)
            .bind(conversation_id)
            .bind(limit)
            .bind(offset),
        )
        .await?;
    Ok((entries, total))
}
