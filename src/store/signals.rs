//! PostgreSQL's `LISTEN`/`NOTIFY`: how instances sharing one database wake each other up.
//!
//! A notification is a hint that something changed, never the record: PostgreSQL drops the ones
//! sent while a listener reconnects, so [`Listener::next`] says when that happened and the caller
//! re-reads from the database. SQLite has one process and nobody to tell.

use sqlx::postgres::PgListener;

use super::{Inner, Store, StoreError};

/// The longest payload PostgreSQL takes (8000 bytes), less a margin.
pub const MAX_PAYLOAD: usize = 7_900;

/// The channel named `topic` of this deployment. PostgreSQL's channels belong to the whole
/// database, while a deployment may be one schema of it: the name is made from both, so that
/// deployments sharing a database do not hear each other. `None` on SQLite.
pub async fn channel(store: &Store, topic: &str) -> Result<Option<String>, StoreError> {
    use sha2::{Digest, Sha256};
    let Inner::Postgres { pool } = &*store.inner else {
        return Ok(None);
    };
    let (place,): (String,) =
        sqlx::query_as("SELECT current_database() || '.' || COALESCE(current_schema(), '')")
            .fetch_one(pool)
            .await?;
    let digest = Sha256::digest(place.as_bytes());
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    // Well under PostgreSQL's 63-byte limit on channel names.
    Ok(Some(format!("switchboard_{topic}_{short}")))
}

/// A connection that listens on one channel.
pub struct Listener {
    listener: PgListener,
}

/// What a [`Listener`] heard.
#[derive(Debug)]
pub enum Heard {
    /// A notification's payload.
    Payload(String),
    /// The connection was lost and is being reopened: notifications sent meanwhile are lost.
    Gap,
}

/// Listens on `channel`, on a connection of its own. `None` on SQLite.
pub async fn listen(store: &Store, channel: &str) -> Result<Option<Listener>, StoreError> {
    let Inner::Postgres { pool } = &*store.inner else {
        return Ok(None);
    };
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    Ok(Some(Listener { listener }))
}

impl Listener {
    /// The next notification, or word that some may have been lost. Reconnects as needed; an
    /// error means the database cannot be reached now (or the store was closed).
    pub async fn next(&mut self) -> Result<Heard, StoreError> {
        Ok(match self.listener.try_recv().await? {
            Some(notification) => Heard::Payload(notification.payload().to_owned()),
            None => Heard::Gap,
        })
    }
}

/// Sends `payloads` on `channel`, in order, in one round trip. Payloads longer than
/// [`MAX_PAYLOAD`] are refused by PostgreSQL; callers keep under it. Nothing on SQLite.
pub async fn notify(store: &Store, channel: &str, payloads: &[String]) -> Result<(), StoreError> {
    let Inner::Postgres { pool } = &*store.inner else {
        return Ok(());
    };
    // `WITH ORDINALITY … ORDER BY` keeps the order: listeners apply them one after another.
    sqlx::query(
        "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n",
    )
    .bind(channel)
    .bind(payloads)
    .execute(pool)
    .await?;
    Ok(())
}
