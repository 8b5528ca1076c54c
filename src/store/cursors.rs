//! Cursors: how far the gateway has read a provider's stream (a poller's position: an update offset, a
//! mailbox's last UID).

use super::{Db, StoreError, Tx, query};
use crate::time::Timestamp;

/// The stored position of a stream, if it was ever read.
pub async fn get(db: &mut impl Db, name: &str) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = db
        .fetch_optional(query("SELECT value FROM cursors WHERE name = $1").bind(name))
        .await?;
    Ok(row.map(|(value,)| value))
}

/// Moves a stream's position, inside the transaction that stores what was read up to it.
pub async fn set(tx: &mut Tx, name: &str, value: &str, now: Timestamp) -> Result<(), StoreError> {
    tx.execute(
        query(
            "INSERT INTO cursors (name, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(value)
        .bind(now),
    )
    .await?;
    Ok(())
}
