//! The conversation pipeline: every channel's inbound messages go through here.
//!
//! ```text
//! adapter ─▶ ingest (one transaction) ─▶ caller acknowledges ─▶ lane of the conversation ─▶ turn
//!                                                                  (one message at a time)    │
//!                                      live hub (SSE) ◀── deltas, stored reply ◀──────────────┘
//! ```
//!
//! - [`ingest`]: normalized events into the database, deduplicated by provider id.
//! - [`lanes`]: per-conversation serial queues with bounded overall concurrency; `placement`:
//!   which instance runs a conversation's turns, when several share a database.
//! - [`router`]: which agent answers (session lock, rules, default).
//! - [`turn`]: answering one message: agent, timeout, fallback, storing the reply.
//! - [`handoff`]: AI → expert mode.
//! - [`sweeper`]: resumes messages the database says are unanswered (after a crash).
//! - [`quotas`]: re-reads the quota counters, for instances sharing a database.
//!
//! No polling job queue sits between an inbound message and its reply: the lane starts the turn as
//! soon as the message is committed. Background jobs are for what may wait (see `jobs`).

pub mod handoff;
pub mod ingest;
pub mod lanes;
mod placement;
pub mod quotas;
pub mod router;
pub mod sweeper;
pub mod turn;

use std::{sync::Arc, time::Duration};

use switchboard_channel::{Channel, InboundEvent, InboundMessage};

pub use handoff::{Handoff, HandoffError};
pub use ingest::{Checkpoint, IngestError, Outcome};
pub use turn::{ReplyWatch, TurnOutcome};

use crate::{
    agents::{AgentRegistry, Chosen},
    channels::Channels,
    config::Config,
    experts::Experts,
    ids::{ConversationId, MessageId},
    jobs::queue::Wakers,
    limits::Limits,
    live::Hub,
    shared::Shared,
    store::{
        Store, StoreError,
        messages::{self, needs_delivery},
    },
    telemetry::metrics,
    time::Clock,
};
use lanes::{Lanes, Pushed};
use router::Router;
use turn::PendingTurn;

/// The pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    store: Store,
    clock: Clock,
    hub: Hub,
    agents: AgentRegistry,
    channels: Channels,
    wakers: Wakers,
    experts: Experts,
    /// Queue an evaluation of every reply the agent wrote.
    evaluate_replies: bool,
    /// How long a reply's delivery job is claimed for by the write that stores the reply.
    delivery_lease: std::time::Duration,
    /// Rate limits (per contact on the messaging channels).
    limits: Arc<Limits>,
    /// What a contact over their rate is told.
    over_limit_notice: String,
    /// What a contact over their quota is told.
    over_quota_notice: String,
    /// The currency of costs (`quotas.currency`).
    currency: String,
    router: Router,
    default_agent: String,
    config: crate::config::PipelineConfig,
    lanes: Lanes<PendingTurn>,
    /// The conversations whose turns run here (several instances on one database).
    places: placement::Places,
    /// The replies agents are writing now, by conversation: a handoff abandons its
    /// conversation's at once, so the user stops seeing it being written (and the agent's API
    /// stops being paid for it).
    replies: std::sync::Mutex<handoff::Watched>,
}

impl Pipeline {
    /// A pipeline over a migrated store. `channels` reach end users on their channels; the
    /// shared wakers start background jobs as soon as the pipeline stores work for them;
    /// `experts` take the conversations handed over to them.
    pub fn new(
        shared: &Shared,
        agents: AgentRegistry,
        channels: Channels,
        experts: Experts,
        limits: Arc<Limits>,
        config: &Config,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: shared.store.clone(),
                clock: shared.clock.clone(),
                hub: shared.hub.clone(),
                agents,
                channels,
                wakers: shared.wakers.clone(),
                experts,
                evaluate_replies: config.evaluations.enabled,
                delivery_lease: config.jobs.lease,
                limits,
                over_limit_notice: config.limits.contact.notice.clone(),
                over_quota_notice: config.quotas.notice.clone(),
                currency: config.quotas.currency.clone(),
                router: Router::new(&config.routing),
                default_agent: config.routing.default_agent.clone(),
                config: config.pipeline.clone(),
                lanes: Lanes::new(config.pipeline.max_concurrency),
                places: Default::default(),
                replies: Default::default(),
            }),
        }
    }

    /// Ingests a batch of events from one delivery, in one transaction, then queues every new
    /// message for an answer. When this returns `Ok`, the batch is durable: acknowledge it.
    pub async fn ingest(
        &self,
        channel: Channel,
        events: Vec<InboundEvent>,
    ) -> Result<Vec<Outcome>, IngestError> {
        self.ingest_to(channel, events, None).await
    }

    /// Like [`Pipeline::ingest`], recording a checkpoint in the same transaction: a stream's
    /// position (the batch and the position after it are stored together or not at all, so a
    /// restart neither loses nor repeats what was read: a poller's position; an empty batch
    /// just moves it), or a webhook's one-time token (a replay is refused).
    pub async fn ingest_to(
        &self,
        channel: Channel,
        events: Vec<InboundEvent>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Vec<Outcome>, IngestError> {
        let inner = self.inner.clone();
        // Runs to completion even if the caller (an HTTP request) is cancelled, so that a committed
        // message is always dispatched.
        spawn_detached(async move {
            inner
                .ingest(channel, events, checkpoint, None, Accepting::default())
                .await
                .map(|(o, _)| o)
        })
        .await
    }

    /// Ingests one message and follows its answer as it is produced. The watch is `None` when no
    /// answer will come from this turn (a duplicate, or a message that needs none). `admit`, if
    /// given, counts a message that is not a retry against its sender's rates before it is stored
    /// ([`IngestError::Limited`] when over one). `chosen`, if given, answers the message with the
    /// agent the sender chose instead of the routed one.
    pub async fn ingest_and_watch(
        &self,
        channel: Channel,
        message: InboundMessage,
        admit: Option<Box<ingest::Admission>>,
        chosen: Option<Chosen>,
    ) -> Result<(Outcome, Option<ReplyWatch>), IngestError> {
        let inner = self.inner.clone();
        let (watcher, watch) = turn::watch();
        let (mut outcomes, watched) = spawn_detached(async move {
            inner
                .ingest(
                    channel,
                    vec![InboundEvent::Message(message)],
                    None,
                    Some(watcher),
                    Accepting {
                        admit: admit.as_deref(),
                        chosen: chosen.as_ref(),
                    },
                )
                .await
        })
        .await?;
        let outcome = outcomes.pop().unwrap_or(Outcome::Ignored {
            reason: "nothing to ingest",
        });
        Ok((outcome, watched.then_some(watch)))
    }

    /// Hands a conversation to the experts: the AI stops answering it.
    pub async fn handoff(
        &self,
        conversation_id: &ConversationId,
        reason: &str,
    ) -> Result<Handoff, HandoffError> {
        self.inner.handoff(conversation_id, reason).await
    }

    /// Publishes a handoff committed in someone else's transaction (with
    /// [`handoff::to_expert`]): live streams and the end user's channel get the notice, and the
    /// experts' queue hears of the conversation.
    pub fn announce_handoff(&self, notice: &crate::store::messages::Message) {
        self.inner.abandon_reply(&notice.conversation_id);
        self.inner.hub.message(notice);
        self.inner.deliver_soon(notice.channel);
        self.inner.queued(&notice.conversation_id);
    }

    /// Resumes messages left unanswered for longer than `grace`. Returns how many.
    pub async fn sweep(&self, grace: Duration) -> Result<usize, StoreError> {
        self.inner.sweep(grace).await
    }

    /// Answers these unanswered messages here (their turns were handed to this instance, or
    /// taken over from one that stopped); those already queued here are left alone. Returns how
    /// many were queued.
    pub async fn resume(&self, ids: &[MessageId]) -> Result<usize, StoreError> {
        let mut resumed = 0;
        for id in ids {
            if self.inner.lanes.contains(id) {
                continue;
            }
            if let Some(message) =
                messages::get(&mut self.inner.store.reader(), id.as_str()).await?
            {
                self.inner.submit(PendingTurn {
                    message,
                    watcher: None,
                    origin: tracing::Span::none(),
                    answering: None,
                });
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Forgets which conversations' turns run here: the other instances took this one for dead
    /// and freed its leases.
    pub fn forget_places(&self) {
        self.inner.places.forget();
    }

    /// Waits for running and queued turns to finish, up to `timeout`. Returns whether they did.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.inner.lanes.wait_idle(timeout).await
    }

    /// How many messages are queued or being answered.
    pub fn pending(&self) -> usize {
        self.inner.lanes.len()
    }
}

/// What the caller that hands a single message in decides about it.
#[derive(Default, Clone, Copy)]
struct Accepting<'a> {
    /// Counts it against its sender's rates (see [`ingest::Source::admit`]).
    admit: Option<&'a ingest::Admission>,
    /// The agent its sender chose.
    chosen: Option<&'a Chosen>,
}

impl Inner {
    /// Ingests (which publishes), and queues turns. With a watcher, the (single) new message's turn
    /// reports to it; the flag says whether the watcher was attached.
    async fn ingest(
        self: &Arc<Self>,
        channel: Channel,
        events: Vec<InboundEvent>,
        checkpoint: Option<Checkpoint>,
        mut watcher: Option<turn::ReplyWatcher>,
        accepting: Accepting<'_>,
    ) -> Result<(Vec<Outcome>, bool), IngestError> {
        let now = self.clock.now();
        let source = ingest::Source {
            channel,
            fetches_media: self.channels.fetcher(channel).is_some(),
            answers_per_hour: self.channels.policy(channel).answers_per_hour,
            // Website visitors over their rate are refused (429) before their message is
            // stored; a provider's message cannot be refused, only left unanswered.
            floods: (channel != Channel::WEB)
                .then_some((&self.limits.contacts, self.over_limit_notice.as_str())),
            // Website visitors over their quota are refused (402) by their admission.
            quotas: (channel != Channel::WEB)
                .then_some((&self.limits.quotas, self.over_quota_notice.as_str())),
            admit: accepting.admit,
            chosen: accepting.chosen,
        };
        let outcomes = ingest::ingest(
            &self.store,
            &self.hub,
            source,
            &events,
            checkpoint.as_ref(),
            now,
        )
        .await?;
        // The sender's identity lets their next request be checked before it is stored.
        let sender = match events.as_slice() {
            [InboundEvent::Message(m)] => Some((channel, m.from.external_id.as_str())),
            _ => None,
        };
        for outcome in &outcomes {
            if let Outcome::Stored { contact_id, .. } = outcome {
                self.limits.quotas.count_message(contact_id, sender);
            }
        }
        let mut watched = false;
        if outcomes.iter().any(|o| matches!(o, Outcome::Notice { .. })) {
            self.deliver_soon(channel);
        }
        if source.fetches_media
            && outcomes.iter().any(
                |o| matches!(o, Outcome::Stored { message, .. } if !message.attachments.is_empty()),
            )
        {
            self.wakers.fetch_media.wake();
        }
        for outcome in &outcomes {
            if let Outcome::Stored {
                message,
                awaits_answer,
                answering,
                ..
            } = outcome
            {
                metrics::message_received(channel);
                if *awaits_answer {
                    watched |= watcher.is_some();
                    self.submit(PendingTurn {
                        message: message.clone(),
                        watcher: watcher.take(),
                        origin: tracing::Span::current(),
                        answering: answering.as_deref().cloned(),
                    });
                }
            }
        }
        Ok((outcomes, watched))
    }

    /// Lets the delivery queue know that outbound messages were stored on a channel that needs them
    /// delivered.
    fn deliver_soon(&self, channel: Channel) {
        if needs_delivery(channel) {
            self.wakers.deliver.wake();
        }
    }

    /// Queues a turn in its conversation's lane, starting the lane's runner if it was idle.
    fn submit(self: &Arc<Self>, job: PendingTurn) {
        let lane = job.message.conversation_id.clone();
        if self.lanes.push(job) == Pushed::StartRunner {
            let inner = self.clone();
            tokio::spawn(async move {
                let runner = inner.clone();
                inner.lanes.run(lane, |job| runner.turn(job)).await;
            });
        }
    }
}

/// Runs a future on its own task and waits for it; the task completes even if the waiter is
/// dropped.
async fn spawn_detached<T: Send + 'static>(
    future: impl Future<Output = Result<T, IngestError>> + Send + 'static,
) -> Result<T, IngestError> {
    // In the caller's span: the request that stored a message names the turn that answers it.
    match tokio::spawn(tracing::Instrument::in_current_span(future)).await {
        Ok(result) => result,
        Err(e) => Err(IngestError::Internal(e.to_string())),
    }
}
