//! Group commit: one-trip writes that arrive together on SQLite share one transaction.
//!
//! On SQLite every commit appends each page it changed to the WAL, and most of a message's cost
//! is its commits: a stored message touches the same few index and table pages as the message
//! stored beside it, so two messages committed together write those pages once. So a write
//! ([`super::OneTrip`]) does not take the writer for itself: it is queued, and whoever gets the
//! writer next runs every queued write in one transaction; when one of them fails (a duplicate), the
//! transaction is undone and each write runs alone, so that the failure is reported to its caller
//! only. The batch, of one
//! write or of many, is a single hand-off to the writer thread ([`super::sqlite_threads`]).
//!
//! Every caller still gets its own result, and only after the commit that holds its write: the
//! durability promise does not change. The writes' `after` callbacks (which publish to the live
//! hub) run in the order the writes were committed, before the writer is released, so that live
//! events keep the database's order. A batch runs on a task of its own: it finishes even when the
//! caller that started it is cancelled, and the others waiting on it get their results (a batch
//! holding only the caller's own write runs in the caller's task, sparing a task switch when the
//! gateway is not busy).

use std::sync::{Arc, Mutex as SyncMutex};

use sqlx::SqliteConnection;
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

use super::{
    Record, StoreError, Value,
    sqlite_threads::{FromOwnedRow, Work, WriterThread, Written},
};

/// What a write's caller does with its result: decode its rows, run its `after`, hand it over.
type Completion = Box<dyn FnOnce(Written) + Send>;

/// A write waiting for the writer.
struct Queued {
    /// Which caller's (see [`Group::next`]).
    caller: u64,
    work: Work,
    complete: Completion,
}

/// The writes waiting for the writer.
#[derive(Default)]
pub(super) struct Group {
    queue: SyncMutex<Vec<Queued>>,
    next: std::sync::atomic::AtomicU64,
}

impl Group {
    fn next(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn push(&self, write: Queued) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(write);
    }

    fn take(&self) -> Vec<Queued> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Runs `script` (statements without `BEGIN`/`COMMIT`) in a transaction, alone or with the writes
/// queued beside it, and returns its rows once committed. `after` runs on the rows once they are
/// durable, before any later transaction commits.
pub(super) async fn write<T: Record + FromOwnedRow + 'static>(
    writer: &Arc<Mutex<SqliteConnection>>,
    thread: &Arc<WriterThread>,
    group: &Arc<Group>,
    script: &'static str,
    args: Vec<Value>,
    after: impl FnOnce(&[T]) + Send + 'static,
) -> Result<Vec<T>, StoreError> {
    let (done, mut result) = oneshot::channel();
    let caller = group.next();
    group.push(Queued {
        caller,
        work: Work { script, args },
        complete: Box::new(move |rows| {
            let rows = rows.and_then(|rows| {
                rows.into_iter()
                    .map(|mut row| T::from_owned_row(&mut row))
                    .collect::<Result<Vec<T>, _>>()
            });
            if let Ok(rows) = &rows {
                after(rows);
            }
            let _ = done.send(rows);
        }),
    });
    tokio::select! {
        biased;
        // Another caller's batch took this write along.
        rows = &mut result => return rows.unwrap_or_else(|_| Err(abandoned())),
        conn = writer.clone().lock_owned() => {
            let batch = group.take();
            let only_own = matches!(batch.as_slice(), [only] if only.caller == caller);
            if only_own {
                // Only this caller's own write: run here, as a write without a group would.
                run(conn, thread.clone(), batch).await;
            } else if !batch.is_empty() {
                tokio::spawn(run(conn, thread.clone(), batch));
            }
        }
    }
    result.await.unwrap_or_else(|_| Err(abandoned()))
}

fn abandoned() -> StoreError {
    StoreError::Database(sqlx::Error::WorkerCrashed)
}

/// Runs a batch on the writer thread and completes its writes, in order, while holding the
/// writer (whose sqlx connection stays unused meanwhile: holding it keeps every other write out).
async fn run(
    writer: OwnedMutexGuard<SqliteConnection>,
    thread: Arc<WriterThread>,
    batch: Vec<Queued>,
) {
    let (work, completions): (Vec<Work>, Vec<Completion>) =
        batch.into_iter().map(|q| (q.work, q.complete)).unzip();
    let results = thread.write(work).await;
    for (complete, rows) in completions.into_iter().zip(results) {
        complete(rows);
    }
    drop(writer);
}
