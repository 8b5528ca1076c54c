//! The `instances` table: which gateway processes share the database and whether they are alive,
//! and the hand-over of work in progress (job leases, the turns of unanswered messages) from an
//! instance that died, restarted or stopped, to one that runs.
//!
//! Every claim names its owner ([`super::Store::instance`]): a job's `lease_owner`, a pending
//! turn's `owner`. Work whose owner has no row here is nobody's, and the next instance to look
//! takes it. An instance's row goes when it stops cleanly, or when another finds it silent for
//! longer than `instance.dead_after`.

use super::{Backend, Db, Section, Store, StoreError, query};
use crate::{ids::MessageId, time::Timestamp};

/// The owner of work stored by a store that was never given an instance name (tools and tests
/// that use the store directly).
pub const UNNAMED: &str = "unnamed";

/// What [`register`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Registration {
    /// The instance is registered; `jobs` leases of its previous run were released.
    Registered {
        /// Job leases of an earlier run of this instance, released.
        jobs: u64,
    },
    /// Another run of an instance of this name said it was alive at `heartbeat_at`, too recently
    /// to be taken for dead.
    NameInUse {
        /// Its last heartbeat.
        heartbeat_at: Timestamp,
    },
}

/// Registers this run (`boot_id`) of the store's instance. An earlier run of the same name that
/// has been silent for at least `dead_after` ended (a crash, or a restart): what it held is
/// released at once, since nobody runs it now. On SQLite one process is the only one, so every
/// lease and turn found at start-up is stale and becomes this run's.
pub async fn register(
    store: &Store,
    boot_id: &str,
    now: Timestamp,
    dead_after: std::time::Duration,
) -> Result<Registration, StoreError> {
    let me = store.instance();
    let mut tx = store.begin().await?;
    let previous: Option<(String, Timestamp)> = tx
        .fetch_optional(
            query("SELECT boot_id, heartbeat_at FROM instances WHERE name = $1").bind(me),
        )
        .await?;
    if let Some((other, heartbeat_at)) = previous
        && other != boot_id
        && heartbeat_at > now.minus(dead_after)
        && store.backend() == Backend::Postgres
    {
        return Ok(Registration::NameInUse { heartbeat_at });
    }
    tx.execute(
        query(
            "INSERT INTO instances (name, boot_id, started_at, heartbeat_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (name) DO UPDATE SET boot_id = $2, started_at = $3, heartbeat_at = $3",
        )
        .bind(me)
        .bind(boot_id)
        .bind(now),
    )
    .await?;
    let jobs = match store.backend() {
        Backend::Sqlite => {
            tx.execute(query("DELETE FROM instances WHERE name <> $1").bind(me))
                .await?;
            tx.execute(query("UPDATE pending_turns SET owner = $1").bind(me))
                .await?;
            tx.execute(query(
                "UPDATE jobs SET lease_until = NULL, lease_owner = NULL \
                 WHERE lease_until IS NOT NULL",
            ))
            .await?
        }
        Backend::Postgres => {
            tx.execute(
                query(
                    "UPDATE jobs SET lease_until = NULL, lease_owner = NULL WHERE lease_owner = $1",
                )
                .bind(me),
            )
            .await?
        }
    };
    tx.commit().await?;
    Ok(Registration::Registered { jobs })
}

/// Says this run of the instance is alive. `false` when its row is gone or another run's: the
/// others took it for dead (it was silent too long) and took its work over.
pub async fn heartbeat(store: &Store, boot_id: &str, now: Timestamp) -> Result<bool, StoreError> {
    let n = store
        .execute(
            query("UPDATE instances SET heartbeat_at = $3 WHERE name = $1 AND boot_id = $2")
                .bind(store.instance())
                .bind(boot_id)
                .bind(now),
        )
        .await?;
    Ok(n == 1)
}

/// How many other instances are registered.
pub async fn others(store: &Store) -> Result<i64, StoreError> {
    let (n,): (i64,) = store
        .reader()
        .fetch_one(query("SELECT COUNT(*) FROM instances WHERE name <> $1").bind(store.instance()))
        .await?;
    Ok(n)
}

/// Registers this run again after the others took it for dead (see [`heartbeat`]); what they
/// took over stays theirs.
pub async fn rejoin(store: &Store, boot_id: &str, now: Timestamp) -> Result<(), StoreError> {
    store
        .execute(
            query(
                "INSERT INTO instances (name, boot_id, started_at, heartbeat_at) \
                 VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (name) DO UPDATE SET boot_id = $2, heartbeat_at = $3",
            )
            .bind(store.instance())
            .bind(boot_id)
            .bind(now),
        )
        .await?;
    Ok(())
}

/// What [`take_over`] took.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TakenOver {
    /// Instances found silent for too long, now forgotten.
    pub dead: Vec<String>,
    /// Job leases released (their jobs are due again for any instance).
    pub jobs: u64,
    /// The unanswered messages whose turns are now this instance's.
    pub turns: Vec<MessageId>,
}

/// Forgets the instances silent since before `now - dead_after`, releases the job leases of
/// instances that are gone, and makes this instance the owner of every turn nobody alive owns.
/// Instances run it one at a time, so each piece of work changes hands once.
pub async fn take_over(
    store: &Store,
    now: Timestamp,
    dead_after: std::time::Duration,
) -> Result<TakenOver, StoreError> {
    let me = store.instance();
    let mut tx = store.begin_serialised(Section::TakeOver).await?;
    let dead: Vec<(String,)> = tx
        .fetch_all(
            query("DELETE FROM instances WHERE heartbeat_at < $1 AND name <> $2 RETURNING name")
                .bind(now.minus(dead_after))
                .bind(me),
        )
        .await?;
    let jobs = tx
        .execute(query(
            "UPDATE jobs SET lease_until = NULL, lease_owner = NULL WHERE lease_owner IS NOT NULL \
             AND lease_owner NOT IN (SELECT name FROM instances)",
        ))
        .await?;
    let turns: Vec<(MessageId,)> = tx
        .fetch_all(
            query(
                "UPDATE pending_turns SET owner = $1 WHERE owner IS NULL \
                 OR owner NOT IN (SELECT name FROM instances) RETURNING message_id",
            )
            .bind(me),
        )
        .await?;
    tx.commit().await?;
    Ok(TakenOver {
        dead: dead.into_iter().map(|(name,)| name).collect(),
        jobs,
        turns: turns.into_iter().map(|(id,)| id).collect(),
    })
}

/// A clean stop: this instance's unfinished turns and job leases become nobody's, for the other
/// instances (or its own next run) to take at once, and its row goes.
pub async fn leave(store: &Store, boot_id: &str) -> Result<(), StoreError> {
    let me = store.instance();
    let mut tx = store.begin().await?;
    tx.execute(query("UPDATE pending_turns SET owner = NULL WHERE owner = $1").bind(me))
        .await?;
    tx.execute(
        query("UPDATE jobs SET lease_until = NULL, lease_owner = NULL WHERE lease_owner = $1")
            .bind(me),
    )
    .await?;
    tx.execute(
        query("DELETE FROM instances WHERE name = $1 AND boot_id = $2")
            .bind(me)
            .bind(boot_id),
    )
    .await?;
    tx.commit().await
}
