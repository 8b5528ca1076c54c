//! The sweeper: the database is the truth, so whatever it says is unanswered gets answered.
//!
//! An inbound message is acknowledged once it is committed, together with its entry in the
//! `pending_turns` work list; the entry goes in the transaction that stores the answer. If the
//! gateway dies in between (a crash, `kill -9`, a deploy), the entry stays. At start-up the sweeper
//! hands every such message back to its lane, and it runs again on a schedule for messages whose
//! turn failed. Messages already queued or running are skipped, and a turn stores a reply only if
//! its message is still on the list, so sweeping never answers twice.

use std::{sync::Arc, time::Duration};

use super::{Inner, turn::Job};
use crate::store::{StoreError, messages};

/// The most messages one sweep resumes; the rest wait for the next sweep.
const BATCH: i64 = 10_000;

impl Inner {
    /// Resumes unhandled messages older than `grace`. Returns how many were resumed.
    pub(super) async fn sweep(self: &Arc<Self>, grace: Duration) -> Result<usize, StoreError> {
        let before = self.clock.now().minus(grace);
        let stranded = messages::pending(&mut self.store.reader(), before, BATCH).await?;
        let mut resumed = 0;
        for message in stranded {
            if self.lanes.contains(&message.id) {
                continue;
            }
            tracing::info!(
                conversation = %message.conversation_id,
                message = %message.id,
                "resuming an unanswered message"
            );
            self.submit(Job {
                message,
                watcher: None,
            });
            resumed += 1;
        }
        Ok(resumed)
    }
}
