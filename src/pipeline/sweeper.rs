//! The sweeper: the database is the truth, so whatever it says is unanswered gets answered.
//!
//! An inbound message is acknowledged once it is committed, together with its entry in the
//! `pending_turns` work list; the entry goes in the transaction that stores the answer. If the
//! gateway dies in between (a crash, `kill -9`, a deploy), the entry stays. At start-up the sweeper
//! hands every such message back to its lane, and it runs again on a schedule for messages whose
//! turn failed. Messages already queued or running are skipped, and a turn stores a reply only if
//! its message is still on the list, so sweeping never answers twice. Each instance sweeps only
//! the turns it owns: those of a dead instance become another's first (see `crate::instances`).

use std::{sync::Arc, time::Duration};

use super::{Inner, turn::PendingTurn};
use crate::store::{StoreError, messages};

/// The most messages one sweep resumes; the rest wait for the next sweep.
const BATCH: i64 = 10_000;

impl Inner {
    /// Resumes unhandled messages older than `grace`. Returns how many were resumed.
    pub(super) async fn sweep(self: &Arc<Self>, grace: Duration) -> Result<usize, StoreError> {
        let before = self.clock.now().minus(grace);
        let stranded = messages::pending(
            &mut self.store.reader(),
            self.store.instance(),
            before,
            BATCH,
        )
        .await?;
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
            self.submit(PendingTurn {
                message,
                watcher: None,
                origin: tracing::Span::none(),
                answering: None,
            });
            resumed += 1;
        }
        Ok(resumed)
    }
}

/// How long a delivery status waits for the message it refers to before it is forgotten.
const EARLY_STATUS_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long one-time values of webhooks (signed requests' nonces, the ids of staff replies) are
/// remembered: longer than any provider retries a delivery, and far longer than a signed
/// request stays fresh (the channels allow at most a day).
const SEEN_TOKEN_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The scheduled sweep (`pipeline.sweep_schedule`): resumes messages that stayed unanswered
/// longer than `pipeline.sweep_grace` (a turn failed on a database error, say), and forgets
/// delivery statuses that never found their message and one-time webhook tokens too old to
/// matter. The sweep at start-up, which resumes what a crash left behind, runs before the
/// gateway serves ([`super::Pipeline::sweep`]).
pub struct Sweep {
    /// The pipeline.
    pub pipeline: super::Pipeline,
    /// How old an unanswered message must be before a sweep resumes it.
    pub grace: Duration,
    /// When.
    pub schedule: String,
}

#[async_trait::async_trait]
impl crate::jobs::ScheduledTask for Sweep {
    fn name(&self) -> &'static str {
        "sweep"
    }

    fn schedule(&self) -> &str {
        &self.schedule
    }

    async fn tick(&self) -> Result<(), apalis::prelude::BoxDynError> {
        let resumed = self.pipeline.sweep(self.grace).await?;
        if resumed > 0 {
            tracing::info!(resumed, "resumed unanswered messages");
        }
        let inner = &self.pipeline.inner;
        let now = inner.clock.now();
        let mut tx = inner.store.begin().await?;
        messages::forget_early_statuses(&mut tx, now.minus(EARLY_STATUS_RETENTION)).await?;
        crate::store::threads::forget_seen_before(&mut tx, now.minus(SEEN_TOKEN_RETENTION)).await?;
        tx.commit().await?;
        Ok(())
    }
}
