//! Contacts: the end users, one row per identity on a channel.

use switchboard_channel::{Channel, ContactRef};

use super::{Db, FromOwnedRow, OwnedRow, Store, StoreError, Tx, query};
use crate::{ids::ContactId, time::Timestamp};

#[derive(sqlx::FromRow)]
struct Existing {
    id: String,
    display_name: Option<String>,
    username: Option<String>,
    unreachable_since: Option<Timestamp>,
}

/// Finds the contact for a channel identity, creating it on first contact and keeping its display
/// name current. A contact that writes is reachable again. Returns the contact id. Costs one read
/// for a known, unchanged contact.
pub async fn upsert(
    tx: &mut Tx,
    channel: Channel,
    contact: &ContactRef,
    now: Timestamp,
) -> Result<ContactId, StoreError> {
    let existing: Option<Existing> = tx
        .fetch_optional(
            query(
                "SELECT id, display_name, username, unreachable_since FROM contacts \
                 WHERE channel = $1 AND external_id = $2",
            )
            .bind(channel.as_str())
            .bind(&contact.external_id),
        )
        .await?;
    match existing {
        Some(found) => {
            let renamed = (contact.display_name.is_some()
                && contact.display_name != found.display_name)
                || (contact.username.is_some() && contact.username != found.username);
            if renamed || found.unreachable_since.is_some() {
                tx.execute(
                    query(
                        "UPDATE contacts SET display_name = COALESCE($2, display_name), \
                         username = COALESCE($4, username), unreachable_since = NULL, \
                         unreachable_reason = NULL, updated_at = $3 WHERE id = $1",
                    )
                    .bind(&found.id)
                    .bind(contact.display_name.clone())
                    .bind(now)
                    .bind(contact.username.clone()),
                )
                .await?;
            }
            Ok(ContactId::from(found.id))
        }
        None => {
            let id = ContactId::generate();
            tx.execute(
                query(
                    "INSERT INTO contacts (id, channel, external_id, display_name, username, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $6, $5, $5)",
                )
                .bind(&id)
                .bind(channel.as_str())
                .bind(&contact.external_id)
                .bind(contact.display_name.clone())
                .bind(now)
                .bind(contact.username.clone()),
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
) -> Result<Option<ContactId>, StoreError> {
    let row: Option<(ContactId,)> = db
        .fetch_optional(
            query("SELECT id FROM contacts WHERE channel = $1 AND external_id = $2")
                .bind(channel.as_str())
                .bind(external_id),
        )
        .await?;
    Ok(row.map(|(id,)| id))
}

/// The channel identity of a contact.
pub async fn external_id(db: &mut impl Db, id: &ContactId) -> Result<Option<String>, StoreError> {
    let row: Option<Identity> = db.fetch_optional(identity(id)).await?;
    Ok(row.map(|row| row.external_id))
}

/// The channel identity of a contact, read on the path of a turn (see [`Store::read_once`]).
pub async fn external_id_once(store: &Store, id: &ContactId) -> Result<Option<String>, StoreError> {
    let rows: Vec<Identity> = store.read_once(identity(id)).await?;
    Ok(rows.into_iter().next().map(|row| row.external_id))
}

/// The query of a contact's channel identity.
fn identity(id: &ContactId) -> super::Query {
    query("SELECT external_id FROM contacts WHERE id = $1").bind(id)
}

/// A contact's channel identity.
#[derive(sqlx::FromRow)]
struct Identity {
    external_id: String,
}

impl FromOwnedRow for Identity {
    fn from_owned_row(r: &mut OwnedRow) -> Result<Self, StoreError> {
        Ok(Identity {
            external_id: r.get("external_id")?,
        })
    }
}

/// Records that a contact can (`reason: None`) or cannot be reached. Creates the contact if it
/// never wrote (a user may block a bot they only started). Returns the contact id.
pub async fn set_reachable(
    tx: &mut Tx,
    channel: Channel,
    contact: &ContactRef,
    unreachable: Option<&str>,
    now: Timestamp,
) -> Result<ContactId, StoreError> {
    let id = upsert(tx, channel, contact, now).await?;
    tx.execute(
        query(
            "UPDATE contacts SET unreachable_since = $2, unreachable_reason = $3, updated_at = $4 \
             WHERE id = $1",
        )
        .bind(&id)
        .bind(unreachable.map(|_| now))
        .bind(unreachable)
        .bind(now),
    )
    .await?;
    Ok(id)
}

/// Marks a contact unreachable (a provider said they blocked us), by id.
pub async fn mark_unreachable(
    tx: &mut Tx,
    id: &str,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        query(
            "UPDATE contacts SET unreachable_since = $2, unreachable_reason = $3, updated_at = $2 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .bind(reason),
    )
    .await?;
    Ok(())
}

/// The name a contact goes by, if the channel told one.
pub async fn display_name(db: &mut impl Db, id: &ContactId) -> Result<Option<String>, StoreError> {
    let row: Option<(Option<String>,)> = db
        .fetch_optional(query("SELECT display_name FROM contacts WHERE id = $1").bind(id))
        .await?;
    Ok(row.and_then(|(name,)| name))
}

/// A contact as staff search for them.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct Found {
    /// Its id.
    #[schema(value_type = String, format = "uuid")]
    pub id: ContactId,
    /// Its channel.
    pub channel: String,
    /// Phone number, chat id, e-mail address, device…
    pub external_id: String,
    /// Its name.
    pub display_name: Option<String>,
    /// Its username on the channel, when it has usernames and it is known.
    pub username: Option<String>,
    /// When it first wrote.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// How many conversations it has (deleted ones not counted).
    pub conversation_count: i64,
}

/// Contacts whose name, channel id (phone, e-mail address, chat id) or username contains `q`
/// (case-insensitive), newest first, and their total.
pub async fn search(
    db: &mut impl Db,
    q: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Found>, i64), StoreError> {
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let pattern = format!("%{escaped}%");
    let (total,): (i64,) = db
        .fetch_one(
            query(
                "SELECT COUNT(*) FROM contacts WHERE LOWER(COALESCE(display_name, '')) LIKE $1 \
                 ESCAPE '\\' OR LOWER(external_id) LIKE $1 ESCAPE '\\' \
                 OR LOWER(COALESCE(username, '')) LIKE $1 ESCAPE '\\'",
            )
            .bind(&pattern),
        )
        .await?;
    let found = db
        .fetch_all(
            query(
                "SELECT id, channel, external_id, display_name, username, created_at, \
                 (SELECT COUNT(*) FROM conversations c WHERE c.contact_id = contacts.id \
                  AND c.deleted_at IS NULL) AS conversation_count \
                 FROM contacts WHERE LOWER(COALESCE(display_name, '')) LIKE $1 ESCAPE '\\' \
                 OR LOWER(external_id) LIKE $1 ESCAPE '\\' \
                 OR LOWER(COALESCE(username, '')) LIKE $1 ESCAPE '\\' \
                 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            )
            .bind(&pattern)
            .bind(limit)
            .bind(offset),
        )
        .await?;
    Ok((found, total))
}

/// Everything stored in a contact's own row.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Contact {
    /// Its id.
    pub id: ContactId,
    /// Its channel.
    pub channel: String,
    /// Phone number, chat id, e-mail address, device…
    pub external_id: String,
    /// Its name.
    pub display_name: Option<String>,
    /// Its username on the channel, when it has usernames and it is known.
    pub username: Option<String>,
    /// Free-form data.
    pub metadata: sqlx::types::Json<serde_json::Value>,
    /// Since when the channel says the contact cannot be reached, if it does.
    pub unreachable_since: Option<Timestamp>,
    /// Why it cannot be reached.
    pub unreachable_reason: Option<String>,
    /// When it first wrote.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

macro_rules! contact_columns {
    () => {
        " id, channel, external_id, display_name, username, metadata, unreachable_since, \
         unreachable_reason, created_at, updated_at "
    };
}

/// A contact by id.
pub async fn get(db: &mut impl Db, id: &ContactId) -> Result<Option<Contact>, StoreError> {
    db.fetch_optional(
        query(concat!(
            "SELECT",
            contact_columns!(),
            "FROM contacts WHERE id = $1"
        ))
        .bind(id),
    )
    .await
}

/// A correction of what is stored about a contact: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Correction {
    /// The name (`Some(None)` clears it).
    pub display_name: Option<Option<String>>,
    /// The username (`Some(None)` clears it).
    pub username: Option<Option<String>>,
    /// The channel identity (address), unique on its channel.
    pub external_id: Option<String>,
}

/// Applies a correction and returns the contact as it is now, or `None` when there is no such
/// contact. A channel identity that another contact of the channel has fails as a unique
/// violation ([`StoreError::is_unique_violation`]).
pub async fn correct(
    tx: &mut Tx,
    id: &ContactId,
    correction: Correction,
    now: Timestamp,
) -> Result<Option<Contact>, StoreError> {
    // Flags say which fields change, so that one statement sets any combination of them.
    tx.fetch_optional(
        query(concat!(
            "UPDATE contacts SET \
             display_name = CASE WHEN $2 = 1 THEN $3 ELSE display_name END, \
             username = CASE WHEN $4 = 1 THEN $5 ELSE username END, \
             external_id = COALESCE($6, external_id), updated_at = $7 \
             WHERE id = $1 RETURNING",
            contact_columns!()
        ))
        .bind(id)
        .bind(i64::from(correction.display_name.is_some()))
        .bind(correction.display_name.flatten())
        .bind(i64::from(correction.username.is_some()))
        .bind(correction.username.flatten())
        .bind(correction.external_id)
        .bind(now),
    )
    .await
}
