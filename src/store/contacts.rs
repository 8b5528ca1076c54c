//! Contacts: the end users, one row per identity on a channel.

use switchboard_channel::{Channel, ContactRef};
use uuid::Uuid;

use super::{Db, StoreError, Tx, query};
use crate::time::Timestamp;

#[derive(sqlx::FromRow)]
struct Existing {
    id: String,
    display_name: Option<String>,
}

/// Finds the contact for a channel identity, creating it on first contact and keeping its display
/// name current. Returns the contact id. Costs one read for a known, unchanged contact.
pub async fn upsert(
    tx: &mut Tx,
    channel: Channel,
    contact: &ContactRef,
    now: Timestamp,
) -> Result<String, StoreError> {
    let existing: Option<Existing> = tx
        .fetch_optional(
            query("SELECT id, display_name FROM contacts WHERE channel = $1 AND external_id = $2")
                .bind(channel.as_str())
                .bind(&contact.external_id),
        )
        .await?;
    match existing {
        Some(found) => {
            if contact.display_name.is_some() && contact.display_name != found.display_name {
                tx.execute(
                    query("UPDATE contacts SET display_name = $2, updated_at = $3 WHERE id = $1")
                        .bind(&found.id)
                        .bind(contact.display_name.clone())
                        .bind(now),
                )
                .await?;
            }
            Ok(found.id)
        }
        None => {
            let id = Uuid::now_v7().to_string();
            tx.execute(
                query(
                    "INSERT INTO contacts (id, channel, external_id, display_name, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5)",
                )
                .bind(&id)
                .bind(channel.as_str())
                .bind(&contact.external_id)
                .bind(contact.display_name.clone())
                .bind(now),
            )
            .await?;
            Ok(id)
        }
    }
}

/// The id of the contact with this channel identity, if it has ever written.
pub async fn find_id(
    db: &mut impl Db,
    channel: Channel,
    external_id: &str,
) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = db
        .fetch_optional(
            query("SELECT id FROM contacts WHERE channel = $1 AND external_id = $2")
                .bind(channel.as_str())
                .bind(external_id),
        )
        .await?;
    Ok(row.map(|(id,)| id))
}

/// The channel identity of a contact.
pub async fn external_id(db: &mut impl Db, id: &str) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = db
        .fetch_optional(query("SELECT external_id FROM contacts WHERE id = $1").bind(id))
        .await?;
    Ok(row.map(|(external_id,)| external_id))
}
