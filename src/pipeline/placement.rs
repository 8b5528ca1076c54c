//! One place runs a conversation's turns, when several instances share a PostgreSQL database.
//!
//! Lanes keep one message of a conversation at a time within a process; across processes, two
//! messages of one conversation stored by different instances (a messaging user whose webhooks the
//! load balancer spreads, a visitor whose requests do) would otherwise be answered at the same
//! time, each without the other's reply, and both turns could pick the same oldest unanswered
//! message and pay the agent twice for it.
//!
//! So a turn first makes sure this instance holds the conversation's lease
//! (`conversation:<id>` in the leases table). When another instance holds it, the message's turn
//! is handed to that instance (its `pending_turns.owner` changes, in the database, and the owner is
//! woken through the live relay; its sweep would find it anyway) and queued in the owner's lane
//! behind the turns it runs. The HTTP request that waits for the reply here follows it through
//! the live hub, which hears the owner's deltas and reply.
//!
//! A lease is held long enough for any turn started under it to finish (twice the agent's
//! timeout plus a margin) and re-taken only once less than that remains, so most turns cost no
//! database write for it. It is freed when its holder stops or is found dead (see
//! `store::leases`). On SQLite there is one process, and nothing to place.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::broadcast::error::RecvError, time::Instant};
use tracing::{info, warn};

use super::{
    Inner,
    turn::{PendingTurn, ReplyWatcher, TurnOutcome},
};
use crate::{
    ids::ConversationId,
    live::{LiveEvent, Subscription},
    store::{
        Backend, StoreError,
        conversations::Mode,
        leases,
        messages::{self, Message},
    },
};

/// Added to the agent's timeout for what a turn does besides calling the agent.
const MARGIN: Duration = Duration::from_secs(10);
/// Leases remembered before expired ones are forgotten.
const PRUNE_OVER: usize = 4_096;

/// The conversations whose lease this instance holds, and until when (by this process's clock,
/// from before the lease was taken: never later than the database's expiry).
#[derive(Default)]
pub(super) struct Places {
    held: Mutex<HashMap<ConversationId, Instant>>,
}

impl Places {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, Instant>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the lease is held here for at least `needed` more.
    fn holds(&self, conversation_id: &ConversationId, needed: Duration) -> bool {
        self.lock()
            .get(conversation_id)
            .is_some_and(|until| *until > Instant::now() + needed)
    }

    fn held_until(&self, conversation_id: &ConversationId, until: Instant) {
        let mut held = self.lock();
        if held.len() >= PRUNE_OVER {
            let now = Instant::now();
            held.retain(|_, until| *until > now);
        }
        held.insert(conversation_id.clone(), until);
    }

    /// Forgets every lease (the other instances took this one for dead and freed them).
    pub(super) fn forget(&self) {
        self.lock().clear();
    }
}

/// Where a turn runs.
enum Place {
    Here,
    /// At the instance of this name, which holds the conversation's lease.
    There(String),
}

impl Inner {
    /// How long a turn may take, at most: started under a lease with this much left, it ends
    /// before the lease does.
    fn turn_bound(&self) -> Duration {
        self.config.agent_timeout + MARGIN
    }

    /// Runs the job's turn here, or hands it to the instance that runs its conversation. Returns
    /// the job when it is this instance's to run.
    pub(super) async fn place(self: &Arc<Self>, job: PendingTurn) -> Option<PendingTurn> {
        match self.where_to_run(&job.message.conversation_id).await {
            Ok(Place::Here) => Some(job),
            Ok(Place::There(owner)) => {
                self.hand_over(job, owner).await;
                None
            }
            // The database is away: the turn, which needs it too, fails and is retried.
            Err(e) => {
                warn!(error = %e, "cannot tell where the conversation's turns run");
                Some(job)
            }
        }
    }

    async fn where_to_run(&self, conversation_id: &ConversationId) -> Result<Place, StoreError> {
        if self.store.backend() != Backend::Postgres {
            return Ok(Place::Here);
        }
        let bound = self.turn_bound();
        if self.places.holds(conversation_id, bound) {
            return Ok(Place::Here);
        }
        let name = format!("conversation:{conversation_id}");
        let taken_at = Instant::now();
        let now = self.clock.now();
        let term = bound * 2;
        if leases::claim(&self.store, &name, now, now.plus(term)).await? {
            self.places.held_until(conversation_id, taken_at + term);
            return Ok(Place::Here);
        }
        match leases::holder(&self.store, &name, now).await? {
            Some(owner) if owner != self.store.instance() => Ok(Place::There(owner)),
            // It ran out or was given up since: try again at the next turn.
            _ => Ok(Place::Here),
        }
    }

    /// Makes the job's turn `owner`'s and wakes it; a watcher follows the reply from here.
    async fn hand_over(self: &Arc<Self>, job: PendingTurn, owner: String) {
        let PendingTurn {
            message, watcher, ..
        } = job;
        // Listening before the hand-over, so that the reply cannot come unheard.
        let follow = watcher.map(|w| (w, self.hub.subscribe(&message.conversation_id)));
        match messages::hand_turn_over(&self.store, &message.id, &owner).await {
            Ok(true) => {
                info!(
                    conversation = %message.conversation_id,
                    message = %message.id,
                    to = %owner,
                    "the conversation's turns run on another instance; handed this one over"
                );
                self.hub.turns_handed_to(&owner, &message.id);
            }
            // Answered meanwhile, or taken over by another instance: nothing to hand.
            Ok(false) => {}
            Err(e) => {
                // Still this instance's: the sweeper answers it here.
                warn!(error = %e, message = %message.id, "cannot hand a turn over");
                return;
            }
        }
        if let Some((watcher, subscription)) = follow {
            let inner = self.clone();
            tokio::spawn(async move {
                inner.follow_elsewhere(watcher, subscription, message).await;
            });
        }
    }

    /// Passes the reply another instance writes to `message` on to `watcher`, from this
    /// instance's hub (which hears the other's deltas and stored messages), for as long as a turn
    /// may take.
    async fn follow_elsewhere(
        &self,
        watcher: ReplyWatcher,
        mut subscription: Subscription,
        message: Message,
    ) {
        let deadline = tokio::time::sleep(self.turn_bound() * 2);
        tokio::pin!(deadline);
        let mut look = true;
        loop {
            if look {
                look = false;
                match messages::answer_to(
                    &mut self.store.reader(),
                    &message.conversation_id,
                    &message.id,
                )
                .await
                {
                    Ok(Some(reply)) => return watcher.finish(outcome(reply)),
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "cannot read a reply written elsewhere"),
                }
            }
            let event = tokio::select! {
                () = &mut deadline => return,
                event = subscription.receiver.recv() => event,
            };
            match event.as_deref() {
                Ok(LiveEvent::Delta(delta)) if delta.reply_to == message.id => {
                    watcher.delta(&delta.content);
                }
                Ok(LiveEvent::Message(reply)) if reply.reply_to.as_ref() == Some(&message.id) => {
                    return watcher.finish(outcome(reply.clone()));
                }
                // Missed events: the database says whether the reply came.
                Ok(LiveEvent::Resync) | Err(RecvError::Lagged(_)) => look = true,
                Ok(_) => {}
                Err(RecvError::Closed) => return,
            }
        }
    }
}

fn outcome(reply: Message) -> TurnOutcome {
    TurnOutcome {
        reply: Some(reply),
        notices: Vec::new(),
        mode: Mode::Ai,
    }
}
