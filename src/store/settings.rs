//! Values the gateway generates once and then keeps: every instance sharing the database, and
//! every restart, uses the same one (the staff token secret when none is configured).

use super::{Db, Store, StoreError, query};
use crate::time::Timestamp;

/// The value stored under `name`; when there is none yet, `generate`'s is stored first. Two
/// instances starting together agree: the first insert wins and both read it back.
pub async fn get_or_create(
    store: &Store,
    name: &str,
    generate: impl FnOnce() -> String,
    now: Timestamp,
) -> Result<String, StoreError> {
    let mut tx = store.begin().await?;
    tx.execute(
        query(
            "INSERT INTO settings (name, value, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(generate())
        .bind(now),
    )
    .await?;
    let (value,): (String,) = tx
        .fetch_one(query("SELECT value FROM settings WHERE name = $1").bind(name))
        .await?;
    tx.commit().await?;
    Ok(value)
}
