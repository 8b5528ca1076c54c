//! Jobs: background work that must survive restarts, stored next to the data it is about.
//!
//! A job is written in the same transaction as what causes it (a reply and its delivery), so the
//! two can never disagree. Workers [`claim`] due jobs with a lease that names their instance
//! (`lease_owner`): a worker that dies mid-job loses its claim when the lease runs out, or sooner
//! when its instance is known to have stopped ([`super::instances`]), and another worker (or the
//! next start) takes the job over. A write that adds a job may claim it the same way for its own
//! instance ([`Claimed`]: a reply's delivery, on SQLite), sparing the worker a claim. Jobs of one *lane* (the deliveries of one conversation) are handed out one at a time, in
//! `lane_seq` order, so a user receives replies in the order they were written even when one of
//! them needs retries.

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};
use sqlx::types::Json;

use super::{Db, FromOwnedRow, OneTrip, OwnedRow, Store, StoreError, Tx, query, statement::Sql};
use crate::{ids::JobId, time::Timestamp};

/// The queue of outbound deliveries (subject: the message id; lane: its conversation).
pub const DELIVER: &str = "deliver";
/// The queue of inbound media downloads (subject: `<message id>/<attachment index>`; lane: the
/// message).
pub const FETCH_MEDIA: &str = "fetch_media";
/// The queue of AI reply evaluations (subject: the reply's id).
pub const EVALUATE: &str = "evaluate";

/// A job handed to a worker.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The queue (worker) it belongs to.
    pub queue: String,
    /// What it is about.
    pub subject: String,
    /// Its lane, if its queue keeps an order.
    pub lane: Option<String>,
    /// Extra data of the job.
    pub payload: Json<serde_json::Value>,
    /// Attempts so far, including the current one.
    pub attempts: i64,
    /// Why the previous attempt failed.
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
}

/// As sqlx decodes it (the derive above), from a row a one-trip write returned on SQLite.
impl FromOwnedRow for Job {
    fn from_owned_row(r: &mut OwnedRow) -> Result<Self, StoreError> {
        Ok(Job {
            id: r.get::<String>("id")?.into(),
            queue: r.get("queue")?,
            subject: r.get("subject")?,
            lane: r.get("lane")?,
            payload: Json(r.json("payload")?),
            attempts: r.get("attempts")?,
            last_error: r.get("last_error")?,
            created_at: Timestamp(r.get("created_at")?),
        })
    }
}

impl Job {
    /// The payload as a typed value.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        super::from_json("job payload", self.payload.0.clone())
    }
}

/// A job claimed by the write that added it, for this instance's worker (see
/// [`crate::jobs::queue::Wake::hand`]).
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The job, as [`claim`] would have returned it.
    pub job: Job,
    /// Its lease's end.
    pub lease_until: Timestamp,
}

/// A job to add.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The queue.
    pub queue: &'static str,
    /// What it is about; a queue holds one job per subject, so adding it twice adds it once.
    pub subject: String,
    /// Its lane and position in the lane, for queues that keep an order.
    pub lane: Option<(String, i64)>,
    /// Extra data.
    pub payload: serde_json::Value,
}

impl NewJob {
    /// A job without lane or payload.
    pub fn new(queue: &'static str, subject: impl Into<String>) -> Self {
        Self {
            queue,
            subject: subject.into(),
            lane: None,
            payload: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// The same job in a lane.
    pub fn in_lane(mut self, lane: impl Into<String>, seq: i64) -> Self {
        self.lane = Some((lane.into(), seq));
        self
    }

    /// The same job with a payload.
    pub fn with_payload(mut self, payload: &impl Serialize) -> Self {
        self.payload = serde_json::to_value(payload).unwrap_or_default();
        self
    }
}

/// Adds a job, due now, inside a transaction. Adding a job whose subject is already queued does
/// nothing.
pub async fn enqueue(tx: &mut Tx, job: NewJob, now: Timestamp) -> Result<(), StoreError> {
    let (lane, lane_seq) = job.lane.map_or((None, None), |(l, s)| (Some(l), Some(s)));
    tx.execute(
        query(
            "INSERT INTO jobs (id, queue, subject, lane, lane_seq, payload, run_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (queue, subject) DO NOTHING",
        )
        .bind(JobId::generate())
        .bind(job.queue)
        .bind(job.subject)
        .bind(lane)
        .bind(lane_seq)
        .bind(job.payload)
        .bind(now),
    )
    .await?;
    Ok(())
}

macro_rules! job_columns {
    () => {
        " id, queue, subject, lane, payload, attempts, last_error, created_at "
    };
}

/// Claims up to `limit` due jobs of a queue for `lease`, counting an attempt for each. Only the
/// first job of a lane is ever due: the next one waits until it is finished.
pub async fn claim(
    store: &Store,
    queue: &str,
    now: Timestamp,
    lease: Duration,
    limit: i64,
) -> Result<Vec<Job>, StoreError> {
    /// The claim; `lock` ends its inner selection.
    fn claim_sql(lock: &str) -> String {
        format!(
            "UPDATE jobs SET lease_until = $3, lease_owner = $5, attempts = attempts + 1 WHERE id IN ( \
             SELECT id FROM jobs AS j WHERE queue = $1 AND run_at <= $2 \
             AND (lease_until IS NULL OR lease_until <= $2) \
             AND (lane IS NULL OR NOT EXISTS (SELECT 1 FROM jobs AS e \
                  WHERE e.queue = j.queue AND e.lane = j.lane AND e.lane_seq < j.lane_seq)) \
             ORDER BY run_at LIMIT $4{lock}) RETURNING{}",
            job_columns!()
        )
    }
    static SQLITE: Sql = Sql::new(|| format!("{};", claim_sql("")));
    // SKIP LOCKED: instances sharing the database each take different jobs. A lane's later jobs
    // stay out of reach while its first one exists, whoever holds it.
    static POSTGRES: Sql = Sql::new(|| claim_sql(" FOR UPDATE SKIP LOCKED"));
    let write = OneTrip::new(SQLITE.text(), POSTGRES.text())
        .bind(queue)
        .bind(now)
        .bind(now.plus(lease))
        .bind(limit)
        .bind(store.instance());
    store.write_once(write, |_: &[Job]| ()).await
}

/// When the next job of a queue that waits for a later time becomes due, if there is one. (Jobs
/// already due but not claimable wait for the end of their lane's current job, which wakes the
/// queue.)
pub async fn next_due(
    store: &Store,
    queue: &str,
    now: Timestamp,
) -> Result<Option<Timestamp>, StoreError> {
    let due: Vec<NextDue> = store
        .read_once(
            query("SELECT MIN(run_at) AS run_at FROM jobs WHERE queue = $1 AND run_at > $2")
                .bind(queue)
                .bind(now),
        )
        .await?;
    Ok(due.into_iter().next().and_then(|d| d.run_at))
}

/// When the next job is due.
#[derive(sqlx::FromRow)]
struct NextDue {
    run_at: Option<Timestamp>,
}

impl FromOwnedRow for NextDue {
    fn from_owned_row(r: &mut OwnedRow) -> Result<Self, StoreError> {
        Ok(NextDue {
            run_at: r.get::<Option<i64>>("run_at")?.map(Timestamp),
        })
    }
}

/// Removes a finished job (done, or given up).
pub async fn finish(tx: &mut Tx, id: &str) -> Result<(), StoreError> {
    tx.execute(query("DELETE FROM jobs WHERE id = $1").bind(id))
        .await?;
    Ok(())
}

/// Releases a job to run again at `run_at`, remembering why this attempt failed.
pub async fn retry_at(
    store: &Store,
    id: &str,
    run_at: Timestamp,
    error: &str,
) -> Result<(), StoreError> {
    store
        .execute(
            query("UPDATE jobs SET run_at = $2, lease_until = NULL, lease_owner = NULL, last_error = $3 \
                 WHERE id = $1")
                .bind(id)
                .bind(run_at)
                .bind(error),
        )
        .await?;
    Ok(())
}

/// How many jobs a queue holds (due or not).
pub async fn count(db: &mut impl Db, queue: &str) -> Result<i64, StoreError> {
    let (n,): (i64,) = db
        .fetch_one(query("SELECT COUNT(*) FROM jobs WHERE queue = $1").bind(queue))
        .await?;
    Ok(n)
}

/// Per queue: how many jobs it holds, and the due time of its oldest job that is due by `now`
/// (`None` when none is).
pub async fn figures(
    db: &mut impl Db,
    now: Timestamp,
) -> Result<Vec<(String, i64, Option<Timestamp>)>, StoreError> {
    db.fetch_all(
        query(
            "SELECT queue, COUNT(*), MIN(CASE WHEN run_at <= $1 THEN run_at END) FROM jobs \
             GROUP BY queue ORDER BY queue",
        )
        .bind(now),
    )
    .await
}
