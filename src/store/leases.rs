//! The `leases` table: work only one instance may do at a time (a channel's poller, one run of a
//! periodic job), held by name.
//!
//! A lease is free to take when nobody holds it, when it ran out, or when its holder is no longer
//! among the registered instances (it stopped cleanly, or was found dead). Its holder renews it
//! while it works; one that fails to renew has lost it and stops.

use super::{Db, Store, StoreError, query};
use crate::time::Timestamp;

/// Takes the lease `name` for the store's instance until `until`, if it is free or already this
/// instance's. Whether it is held now.
pub async fn claim(
    store: &Store,
    name: &str,
    now: Timestamp,
    until: Timestamp,
) -> Result<bool, StoreError> {
    let n = store
        .execute(
            query(
                "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $4) \
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
                     expires_at = excluded.expires_at \
                 WHERE leases.owner = excluded.owner OR leases.expires_at <= $3 \
                    OR NOT EXISTS (SELECT 1 FROM instances i WHERE i.name = leases.owner)",
            )
            .bind(name)
            .bind(store.instance())
            .bind(now)
            .bind(until),
        )
        .await?;
    Ok(n == 1)
}

/// Takes the lease `name` until `until` only if nobody holds it now, this instance included: the
/// first instance to run a scheduled job's occurrence gets it, the others skip that occurrence.
pub async fn claim_once(
    store: &Store,
    name: &str,
    now: Timestamp,
    until: Timestamp,
) -> Result<bool, StoreError> {
    let n = store
        .execute(
            query(
                "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $4) \
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
                     expires_at = excluded.expires_at \
                 WHERE leases.expires_at <= $3",
            )
            .bind(name)
            .bind(store.instance())
            .bind(now)
            .bind(until),
        )
        .await?;
    Ok(n == 1)
}

/// Extends this instance's lease `name` to `until`. `false` when it is not this instance's any
/// more (it ran out and another took it).
pub async fn renew(store: &Store, name: &str, until: Timestamp) -> Result<bool, StoreError> {
    let n = store
        .execute(
            query("UPDATE leases SET expires_at = $3 WHERE name = $1 AND owner = $2")
                .bind(name)
                .bind(store.instance())
                .bind(until),
        )
        .await?;
    Ok(n == 1)
}

/// Gives up this instance's lease `name`, so another may take it at once.
pub async fn release(store: &Store, name: &str) -> Result<(), StoreError> {
    store
        .execute(
            query("DELETE FROM leases WHERE name = $1 AND owner = $2")
                .bind(name)
                .bind(store.instance()),
        )
        .await?;
    Ok(())
}

/// Who holds the lease `name` now, if anyone.
pub async fn holder(
    store: &Store,
    name: &str,
    now: Timestamp,
) -> Result<Option<String>, StoreError> {
    let mut reader = store.reader();
    reader
        .fetch_optional(
            query("SELECT owner FROM leases WHERE name = $1 AND expires_at > $2")
                .bind(name)
                .bind(now),
        )
        .await
        .map(|row: Option<(String,)>| row.map(|(owner,)| owner))
}
