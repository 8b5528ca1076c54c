//! A turn: answering one inbound message, inside its conversation's lane.
//!
//! The turn reads the conversation, leaves it alone when an expert owns it, picks the agent
//! (session lock or routing rules), gives the agent the recent history, streams the agent's deltas
//! to the live hub and to whoever waits for the reply, and finally stores the reply, renews the
//! lock and marks the message handled — in one transaction, and only if the conversation is still in
//! AI mode and the message still unhandled. An agent that fails or runs out of time yields the
//! configured polite fallback, never silence. A message whose sender chose a selectable agent
//! (`metadata.agent`) is answered by that agent, and the conversation keeps its routed lock; every
//! agent call records whether the agent worked (`agents::availability`).
//!
//! Every stored AI reply records what it used (see `store::usage`): the tokens the agent reported
//! (or an estimate, marked as such), their cost by the agent's prices, and the time from the start
//! of the agent call to the reply's write — in the reply's metadata for staff and as a `usage` row
//! written by the same statement; the contact's quota counters follow once it is stored.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use switchboard_channel::{Choice, Intent, TypingTarget};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use super::{Inner, lanes::LaneJob};
use crate::{
    agents::{AgentEvent, AgentRequest, RegisteredAgent, Usage, estimate_tokens},
    ids::{ContactId, ConversationId, MessageId},
    live::NoticeKind,
    live::ReplyProgress,
    store::{
        StoreError, contacts, conversations,
        conversations::{Answering, Mode, WithNextTurn},
        jobs::{self, NewJob},
        messages::{self, ContextLine, Direction, Message, NewMessage, ReplyAppend, Role},
        meta::ReplyUsage,
        usage::{self, NewUsage},
    },
    telemetry::metrics::{self, AgentOutcome},
};

/// The most raw provider events kept with one reply, and the largest one kept: enough to debug a
/// model's answer, bounded so that a chatty stream cannot bloat the database.
const MAX_RAW_EVENTS: usize = 64;
const MAX_RAW_EVENT_BYTES: usize = 4096;

/// A message waiting for its turn in its conversation's lane.
pub struct PendingTurn {
    /// The stored inbound message.
    pub message: Message,
    /// Whoever waits for the reply (the HTTP request that sent the message), if anybody.
    pub watcher: Option<ReplyWatcher>,
    /// The span of the work that stored the message (an HTTP request, with its request id): the
    /// turn's span is its child, so the reply's log lines name the request that caused it.
    pub origin: tracing::Span,
    /// The conversation as the write that stored the message left it, when the message was
    /// the first in it waiting for an answer: it is not read back (see
    /// `messages::Appended::answering`).
    pub answering: Option<Answering>,
}

impl LaneJob for PendingTurn {
    type Key = ConversationId;
    type Id = MessageId;

    fn lane(&self) -> ConversationId {
        self.message.conversation_id.clone()
    }

    fn id(&self) -> MessageId {
        self.message.id.clone()
    }
}

/// The sending half of a [`ReplyWatch`].
pub struct ReplyWatcher {
    deltas: mpsc::UnboundedSender<String>,
    done: oneshot::Sender<TurnOutcome>,
}

/// Follows the answer to one message as it is produced.
pub struct ReplyWatch {
    /// The reply's text, piece by piece. Ends when the turn ends.
    pub deltas: mpsc::UnboundedReceiver<String>,
    /// How the turn ended. Dropped without a value when the turn failed (the message stays
    /// unanswered in the database and the sweeper retries it).
    pub done: oneshot::Receiver<TurnOutcome>,
}

impl ReplyWatcher {
    /// A piece of the reply.
    pub(super) fn delta(&self, content: &str) {
        // An error only means the watch was dropped (the request went away).
        let _ = self.deltas.send(content.to_owned());
    }

    /// The turn ended so.
    pub(super) fn finish(self, outcome: TurnOutcome) {
        let _ = self.done.send(outcome);
    }
}

/// A connected watcher and watch.
pub fn watch() -> (ReplyWatcher, ReplyWatch) {
    let (deltas_tx, deltas_rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = oneshot::channel();
    (
        ReplyWatcher {
            deltas: deltas_tx,
            done: done_tx,
        },
        ReplyWatch {
            deltas: deltas_rx,
            done: done_rx,
        },
    )
}

/// How a turn ended.
#[derive(Debug, Clone)]
pub struct TurnOutcome {
    /// The agent's stored reply; `None` when nobody answered automatically.
    pub reply: Option<Message>,
    /// System messages the turn added (a handoff notice).
    pub notices: Vec<Message>,
    /// Who answers the conversation now.
    pub mode: Mode,
}

/// What the agent produced.
#[derive(Default)]
struct Produced {
    text: String,
    /// Buttons offered with the reply.
    choices: Vec<Choice>,
    handoff: Option<String>,
    error: Option<String>,
    /// The agent ran out of time (`error` says so too).
    timed_out: bool,
    /// What went wrong, in words anyone may read (the agent's availability keeps it).
    failure: Option<String>,
    /// The conversation left the AI while the agent was writing: nothing is stored.
    abandoned: bool,
    /// What the agent said the reply used.
    usage: Option<Usage>,
    /// The provider's raw events (agents that keep them), within the bounds.
    raw_events: Vec<serde_json::Value>,
    /// Raw events beyond the bounds.
    raw_dropped: u64,
}

/// A reply to store, as the agent's turn left it (see `Inner::store_reply`).
struct Reply {
    text: String,
    metadata: crate::store::meta::MessageMeta,
    /// Who the reply counts against, and what it used.
    used: Option<(ContactId, NewUsage)>,
    /// Whether it is evaluated once stored.
    evaluate: bool,
    /// Why the agent handed the conversation over, if it did.
    handoff: Option<String>,
}

/// The agent a conversation stays locked to after a turn, and for how long.
struct Lock {
    agent: String,
    ttl: Duration,
}

/// What is needed to record what an agent's reply used.
struct Metering {
    /// The conversation's contact, whose quota the reply counts against.
    contact_id: ContactId,
    /// The agent's model or kind, for usage it does not report.
    model: Arc<str>,
    /// Its prices per 1,000 tokens, input and output.
    prices: (f64, f64),
    /// The estimated tokens of the prompt, for usage it does not report.
    estimate_in: u64,
    /// When the agent was called.
    started: Instant,
}

impl Inner {
    /// Runs the turn of a job's message. The database decides the order within a conversation:
    /// the message answered is always the oldest one still on the work list. That is usually the
    /// job's own; when concurrent writers committed an earlier message whose job has not reached
    /// the lane yet, that message goes first (its job, arriving later, finds it answered).
    pub(super) async fn turn(self: &Arc<Self>, job: PendingTurn) {
        // Another instance may run this conversation's turns (see `placement`).
        let Some(mut job) = self.place(job).await else {
            return;
        };
        loop {
            // Watched from before the conversation is read, so that no handoff slips in between.
            let watch = self.watch_replies(&job.message.conversation_id);
            let abandon = &watch.token;
            if let Some(conversation) = job.answering.take() {
                self.run(job, Some(conversation), abandon).await;
                return;
            }
            let next = conversations::get_with_next_turn(
                &mut self.store.reader(),
                &job.message.conversation_id,
            )
            .await;
            let next = match next {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, conversation = %job.message.conversation_id,
                        "cannot read the conversation; the sweeper will retry");
                    return;
                }
            };
            let (conversation, next_turn) = match next {
                // Deleted: the message is finished without an answer.
                None => {
                    self.run(job, None, abandon).await;
                    return;
                }
                // An expert owns it, or it is closed: nothing to answer, in any order.
                Some(found) if found.conversation.mode != Mode::Ai => {
                    self.run(job, Some(found.conversation.into()), abandon)
                        .await;
                    return;
                }
                Some(WithNextTurn {
                    conversation,
                    next_turn,
                }) => (conversation, next_turn),
            };
            let Some(next) = next_turn else {
                // Nothing left to answer: this message was answered out of its job's turn.
                let reply = messages::answer_to(
                    &mut self.store.reader(),
                    &job.message.conversation_id,
                    &job.message.id,
                )
                .await
                .unwrap_or_default();
                if let Some(watcher) = job.watcher {
                    let _ = watcher.done.send(TurnOutcome {
                        reply,
                        notices: Vec::new(),
                        mode: conversation.mode,
                    });
                }
                return;
            };
            if next == job.message.id {
                self.run(job, Some(conversation.into()), abandon).await;
                return;
            }
            // An earlier message goes first, with its watcher when its job is already queued.
            let lane = job.message.conversation_id.clone();
            let earlier = match self.lanes.take_queued(&lane, &next) {
                Some(earlier) => earlier,
                None => match messages::get(&mut self.store.reader(), &next).await {
                    Ok(Some(message)) => PendingTurn {
                        message,
                        watcher: None,
                        origin: tracing::Span::none(),
                        answering: None,
                    },
                    Ok(None) => return,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read a pending message");
                        return;
                    }
                },
            };
            if !self.run(earlier, Some(conversation.into()), abandon).await {
                // Leave both to the sweeper rather than trying again and again.
                return;
            }
        }
    }

    /// Runs one message's turn. Errors are logged (and `false` returned); the message then stays
    /// on the work list for the sweeper.
    async fn run(
        self: &Arc<Self>,
        job: PendingTurn,
        conversation: Option<Answering>,
        abandon: &CancellationToken,
    ) -> bool {
        let span = info_span!(
            parent: &job.origin,
            "turn",
            conversation = %job.message.conversation_id,
            message = %job.message.id,
            channel = %job.message.channel,
        );
        let PendingTurn {
            message, watcher, ..
        } = job;
        let (deltas, done) = match watcher {
            Some(w) => (Some(w.deltas), Some(w.done)),
            None => (None, None),
        };
        match self
            .try_turn(&message, conversation, deltas.as_ref(), abandon)
            .instrument(span.clone())
            .await
        {
            Ok(outcome) => {
                if let Some(done) = done {
                    let _ = done.send(outcome);
                }
                true
            }
            Err(e) => {
                self.hub.end_reply(&message.conversation_id);
                span.in_scope(
                    || tracing::error!(error = %e, "turn failed; the sweeper will retry"),
                );
                false
            }
        }
    }

    async fn try_turn(
        self: &Arc<Self>,
        message: &Message,
        conversation: Option<Answering>,
        deltas: Option<&mpsc::UnboundedSender<String>>,
        abandon: &CancellationToken,
    ) -> Result<TurnOutcome, StoreError> {
        let Some(conversation) = conversation.filter(|c| c.mode == Mode::Ai) else {
            // Deleted, or owned by an expert: nothing for the AI to answer. The expert's
            // dashboard hears of the message.
            let mode = self.finish_unanswered(message).await?;
            if mode == Mode::Expert {
                let owner = conversations::get(&mut self.store.reader(), &message.conversation_id)
                    .await?
                    .and_then(|c| c.expert_id);
                self.hub.staff_notice(
                    NoticeKind::Message,
                    &message.conversation_id,
                    owner.as_ref(),
                );
            }
            return Ok(TurnOutcome {
                reply: None,
                notices: Vec::new(),
                mode,
            });
        };
        let now = self.clock.now();
        let (name, registered, lock) = self.agent_for(&conversation, message, now);
        let intent = message
            .metadata
            .intent
            .as_deref()
            .or_else(|| Intent::of_command(&message.content).map(Intent::as_str));
        if intent == Some(Intent::Handoff.as_str()) {
            // The user asked for a person in so many words (a command): no agent is asked.
            let produced = Produced {
                handoff: Some("the user asked for a person".into()),
                ..Produced::default()
            };
            return self
                .finish_turn(message, &name, &lock, produced, None)
                .await;
        }
        let history = if registered.agent.needs_history() {
            messages::context(
                &mut self.store.reader(),
                message,
                i64::from(self.config.context_messages),
            )
            .await?
        } else {
            vec![ContextLine {
                role: message.role,
                content: message.content.clone(),
            }]
        };
        let estimate_in = history
            .iter()
            .map(|line| estimate_tokens(&line.content))
            .sum();
        let request = AgentRequest {
            conversation_id: conversation.id.clone(),
            channel: conversation.channel,
            history,
            opening: intent == Some(Intent::Start.as_str()),
        };
        let metering = Metering {
            contact_id: conversation.contact_id.clone(),
            model: registered.model.clone(),
            prices: registered.prices,
            estimate_in,
            started: Instant::now(),
        };
        self.show_typing(&conversation, message);
        self.hub.start_reply(
            &conversation.id,
            ReplyProgress {
                reply_to: message.id.clone(),
                reply_to_seq: message.seq,
            },
        );
        let called = std::time::Instant::now();
        let produced = self
            .produce(&registered, request, &conversation.id, deltas, abandon)
            .await;
        if !produced.abandoned {
            let outcome = match (&produced.error, produced.timed_out) {
                (None, _) => AgentOutcome::Ok,
                (Some(_), true) => AgentOutcome::Timeout,
                (Some(_), false) => AgentOutcome::Error,
            };
            metrics::agent_call(&name, outcome, called.elapsed());
            match &produced.failure {
                None => registered.availability.succeeded(),
                Some(failure) => registered.availability.failed(failure, self.clock.now()),
            }
        }
        if let Some(error) = &produced.error {
            warn!(agent = %name, %error, "the agent failed; answering with the fallback message");
        }
        self.finish_turn(message, &name, &lock, produced, Some(metering))
            .await
    }

    /// Stores what the turn produced and says how it ended.
    async fn finish_turn(
        &self,
        message: &Message,
        agent: &str,
        lock: &Lock,
        produced: Produced,
        metering: Option<Metering>,
    ) -> Result<TurnOutcome, StoreError> {
        if produced.abandoned {
            self.hub.end_reply(&message.conversation_id);
            let mode = self.finish_abandoned(message).await?;
            return Ok(TurnOutcome {
                reply: None,
                notices: Vec::new(),
                mode,
            });
        }
        if let Some(outcome) = self
            .store_reply(message, agent, lock, produced, metering)
            .await?
        {
            if let Some(reply) = &outcome.reply {
                let waited = reply.created_at.micros() - message.created_at.micros();
                metrics::replied(
                    message.channel,
                    Duration::from_micros(u64::try_from(waited).unwrap_or(0)),
                );
            }
            return Ok(outcome);
        }
        // The conversation was handed to an expert (or deleted, or the message answered by
        // someone else) while the agent was working: its reply is dropped.
        self.hub.end_reply(&message.conversation_id);
        let current =
            conversations::get(&mut self.store.reader(), &message.conversation_id).await?;
        Ok(TurnOutcome {
            reply: None,
            notices: Vec::new(),
            mode: current.map_or(Mode::Closed, |c| c.mode),
        })
    }

    /// The agent that answers the message, and the lock the conversation keeps afterwards. The
    /// routed agent answers, unless the sender chose one (stored with the message, so a turn
    /// resumed after a restart asks the same agent) that is still configured and selectable: it
    /// answers this message only, and the conversation stays locked to the routed agent.
    fn agent_for(
        &self,
        conversation: &Answering,
        message: &Message,
        now: crate::time::Timestamp,
    ) -> (String, RegisteredAgent, Lock) {
        // A lock naming an agent that is no longer configured is treated as expired.
        let locked = conversation
            .locked_agent(now)
            .filter(|name| self.agents.get(name).is_some());
        let (name, _) = self.router.route(locked, &message.content);
        let (name, routed) = match self.agents.get(name) {
            Some(routed) => (name, routed),
            None => match self.agents.get(&self.default_agent) {
                Some(default) => (self.default_agent.as_str(), default),
                None => unreachable!("the default agent is validated at start"),
            },
        };
        let lock = Lock {
            agent: name.to_owned(),
            ttl: routed.lock_ttl,
        };
        let chosen = message.metadata.agent.as_deref().and_then(|chosen| {
            let registered = self.agents.get(chosen).filter(|a| a.selectable);
            if registered.is_none() {
                warn!(agent = chosen, "the agent chosen for the message is not selectable any more; the routed agent answers");
            }
            registered.map(|r| (chosen, r))
        });
        match chosen {
            Some((chosen, registered)) => (chosen.to_owned(), registered.clone(), lock),
            None => (name.to_owned(), routed.clone(), lock),
        }
    }

    /// Runs the agent within the timeout, forwarding deltas as they come.
    async fn produce(
        &self,
        registered: &RegisteredAgent,
        request: AgentRequest,
        conversation_id: &ConversationId,
        deltas: Option<&mpsc::UnboundedSender<String>>,
        abandon: &CancellationToken,
    ) -> Produced {
        let mut produced = Produced::default();
        let mut stream = registered.agent.respond(request);
        let deadline = tokio::time::sleep(self.config.agent_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = abandon.cancelled() => {
                    produced.abandoned = true;
                    return produced;
                }
                _ = &mut deadline => {
                    produced.timed_out = true;
                    produced.error = Some(format!(
                        "no complete reply within {}",
                        humantime_duration(self.config.agent_timeout)
                    ));
                    produced.failure = produced.error.clone();
                    break;
                }
                event = stream.next() => match event {
                    Some(Ok(AgentEvent::Delta(delta))) => {
                        if delta.is_empty() {
                            continue;
                        }
                        self.hub.delta(conversation_id, &delta);
                        if let Some(deltas) = deltas {
                            let _ = deltas.send(delta.clone());
                        }
                        produced.text.push_str(&delta);
                    }
                    Some(Ok(AgentEvent::Handoff { reason })) => produced.handoff = Some(reason),
                    Some(Ok(AgentEvent::Choices(choices))) => produced.choices = choices,
                    Some(Ok(AgentEvent::Usage(usage))) => produced.usage = Some(usage),
                    Some(Ok(AgentEvent::Raw(raw))) => keep_raw(&mut produced, raw),
                    Some(Err(e)) => {
                        produced.error = Some(e.to_string());
                        produced.failure = Some(crate::agents::availability::failure(&e));
                        break;
                    }
                    None => break,
                }
            }
        }
        if produced.error.is_none() && produced.text.trim().is_empty() && produced.handoff.is_none()
        {
            produced.error = Some("the agent returned an empty reply".into());
            produced.failure = produced.error.clone();
        }
        produced
    }

    /// Stores the reply (and a handoff) and marks the message handled, in one transaction.
    /// Returns `None` when nothing was stored: the message had already been answered by another
    /// turn, or the conversation left AI mode (or was deleted) while the agent was working.
    async fn store_reply(
        &self,
        message: &Message,
        agent: &str,
        lock: &Lock,
        mut produced: Produced,
        metering: Option<Metering>,
    ) -> Result<Option<TurnOutcome>, StoreError> {
        let now = self.clock.now();
        let mut metadata = crate::store::meta::MessageMeta::default();
        let used = metering.map(|m| {
            let (shown, stored) = self.usage(agent, &m, &produced);
            metrics::agent_tokens(agent, shown.tokens_in, shown.tokens_out);
            metadata.usage = Some(shown);
            metadata.raw_events = std::mem::take(&mut produced.raw_events);
            metadata.raw_events_dropped =
                (produced.raw_dropped > 0).then_some(produced.raw_dropped);
            (m.contact_id, stored)
        });
        // The fallback is the operator's own text: only what the agent wrote is evaluated.
        let evaluate = self.evaluate_replies && produced.error.is_none();
        let text = match produced.error {
            Some(error) => {
                metadata.agent_error = Some(error.to_string());
                self.config.fallback_message.clone()
            }
            None => {
                if !produced.choices.is_empty() {
                    // Channels show them as buttons (see jobs::deliver); the web API returns them.
                    metadata.choices = produced.choices.clone();
                }
                produced.text
            }
        };
        if produced.handoff.is_none()
            && !text.trim().is_empty()
            && let Some((contact_id, used)) = used
        {
            // The common case, in one round trip.
            let hub = self.hub.clone();
            let (tokens, cost_micros) = (used.tokens(), used.cost_micros);
            let reply = messages::append_reply(
                &self.store,
                ReplyAppend {
                    inbound_id: message.id.clone(),
                    inbound_seq: message.seq,
                    conversation_id: message.conversation_id.clone(),
                    agent: agent.to_owned(),
                    lock_agent: lock.agent.clone(),
                    lock_ttl: lock.ttl,
                    content: text,
                    status: messages::initial_status(message.channel),
                    metadata,
                    evaluate,
                    usage: used,
                    delivery_lease: self.delivery_lease,
                },
                now,
                move |m| hub.message(m),
            )
            .await?;
            let Some(reply) = reply else {
                return Ok(None);
            };
            self.limits
                .quotas
                .count_reply(&contact_id, tokens, cost_micros);
            match reply.delivery {
                Some(claimed) => self.wakers.deliver.hand(claimed),
                None => self.deliver_soon(reply.message.channel),
            }
            if evaluate {
                self.wakers.evaluate.wake();
            }
            return Ok(Some(TurnOutcome {
                reply: Some(reply.message),
                notices: Vec::new(),
                mode: Mode::Ai,
            }));
        }
        // Boxed: the rare path's transaction would otherwise make every turn's future larger
        // (it is moved when the turn's task is spawned and finished).
        Box::pin(self.store_reply_in_transaction(
            message,
            agent,
            lock,
            Reply {
                text,
                metadata,
                used,
                evaluate,
                handoff: produced.handoff,
            },
            now,
        ))
        .await
    }

    /// Stores a reply that comes with a handoff (or is empty) in a transaction of several
    /// statements: see [`Self::store_reply`].
    async fn store_reply_in_transaction(
        &self,
        message: &Message,
        agent: &str,
        lock: &Lock,
        reply: Reply,
        now: crate::time::Timestamp,
    ) -> Result<Option<TurnOutcome>, StoreError> {
        let Reply {
            text,
            metadata,
            used,
            evaluate,
            handoff,
        } = reply;
        let mut tx = self.store.begin().await?;
        if !messages::mark_handled(&mut tx, message).await? {
            return Ok(None);
        }
        let mut outcome = TurnOutcome {
            reply: None,
            notices: Vec::new(),
            mode: Mode::Ai,
        };
        let mut still_ai = true;
        if !text.trim().is_empty() {
            match conversations::take_seq_for_agent(
                &mut tx,
                &message.conversation_id,
                &lock.agent,
                lock.ttl,
                now,
            )
            .await?
            {
                Some(conversation) => {
                    outcome.reply = messages::insert(
                        &mut tx,
                        NewMessage {
                            conversation_id: conversation.id.clone(),
                            seq: conversation.last_seq,
                            channel: conversation.channel,
                            direction: Direction::Outbound,
                            role: Role::Ai,
                            author: Some(agent.to_owned()),
                            kind: "text",
                            content: text,
                            attachments: Vec::new(),
                            provider_message_id: None,
                            reply_to: Some(message.id.clone()),
                            status: messages::initial_status(conversation.channel),
                            awaits_answer: false,
                            metadata,
                        },
                        now,
                    )
                    .await?;
                    if let (Some(reply), Some((contact_id, used))) = (&outcome.reply, &used) {
                        usage::insert(
                            &mut tx,
                            &reply.id,
                            &reply.conversation_id,
                            contact_id,
                            agent,
                            used,
                            now,
                        )
                        .await?;
                    }
                    if let Some(reply) = outcome.reply.as_ref().filter(|_| evaluate) {
                        jobs::enqueue(&mut tx, NewJob::new(jobs::EVALUATE, &reply.id), now).await?;
                    }
                }
                None => still_ai = false,
            }
        }
        if still_ai && let Some(reason) = handoff {
            let notice =
                super::handoff::to_expert(&mut tx, &message.conversation_id, &reason, now).await?;
            if let Some(notice) = notice {
                outcome.notices.push(notice);
                outcome.mode = Mode::Expert;
            }
        }
        let stored = outcome.reply.is_some() || !outcome.notices.is_empty();
        let hub = &self.hub;
        tx.commit_then(|| {
            for m in outcome.reply.iter().chain(&outcome.notices) {
                hub.message(m);
            }
            if outcome.reply.is_none() {
                hub.end_reply(&message.conversation_id);
            }
        })
        .await?;
        if stored {
            self.deliver_soon(message.channel);
        }
        if outcome.reply.is_some()
            && let Some((contact_id, used)) = &used
        {
            self.limits
                .quotas
                .count_reply(contact_id, used.tokens(), used.cost_micros);
        }
        if evaluate && outcome.reply.is_some() {
            self.wakers.evaluate.wake();
        }
        if outcome.mode == Mode::Expert {
            self.queued(&message.conversation_id);
        }
        Ok(stored.then_some(outcome))
    }

    /// What a reply used: as its metadata shows it, and as its `usage` row stores it. Usage the
    /// agent did not report is estimated from the text (a prompt only counts when the model
    /// answered something: a refused call costs nothing).
    fn usage(&self, agent: &str, m: &Metering, produced: &Produced) -> (ReplyUsage, NewUsage) {
        let usage = produced.usage.clone().unwrap_or_else(|| Usage {
            model: m.model.to_string(),
            tokens_in: if produced.text.is_empty() && produced.error.is_some() {
                0
            } else {
                m.estimate_in
            },
            tokens_out: estimate_tokens(&produced.text),
            estimated: true,
        });
        let cost_micros = usage.cost_micros(m.prices);
        let response_time_ms = u64::try_from(m.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let stored = NewUsage {
            model: usage.model.clone(),
            tokens_in: count(usage.tokens_in),
            tokens_out: count(usage.tokens_out),
            estimated: usage.estimated,
            cost_micros,
            response_time_ms: count(response_time_ms),
        };
        let shown = ReplyUsage {
            agent: agent.to_owned(),
            model: usage.model,
            tokens_in: usage.tokens_in,
            tokens_out: usage.tokens_out,
            estimated: usage.estimated,
            cost: cost_micros as f64 / 1e6,
            currency: self.currency.clone(),
            response_time_ms,
        };
        (shown, stored)
    }

    /// Shows the user, on channels that can, that their message is being answered (some also
    /// mark it read). Runs beside the turn: it must never delay or fail the answer.
    fn show_typing(self: &Arc<Self>, conversation: &Answering, message: &Message) {
        let Some(sender) = self.channels.sender(conversation.channel) else {
            return;
        };
        let inner = self.clone();
        let account = conversation.account.clone();
        let contact_id = conversation.contact_id.clone();
        let known = conversation.contact_identity.clone();
        let message_provider_id = message.provider_message_id.clone();
        tokio::spawn(
            async move {
                let found = match known {
                    Some(to) => Ok(Some(to)),
                    None => contacts::external_id_once(&inner.store, &contact_id).await,
                };
                let to = match found {
                    Ok(Some(to)) => to,
                    Ok(None) => return,
                    Err(e) => {
                        warn!(error = %e, "cannot look up the contact for a typing indicator");
                        return;
                    }
                };
                let target = TypingTarget {
                    account,
                    to,
                    message_provider_id,
                };
                if let Err(e) = sender.typing(&target).await {
                    warn!(error = %e, "the typing indicator was not shown");
                }
            }
            .in_current_span(),
        );
    }

    /// Marks a message handled without an answer; returns the conversation's mode.
    /// A reply abandoned for a handoff: the message goes off the work list, like every message
    /// that arrives in expert mode — unless the conversation is the AI's again already (released
    /// in the moment between the handoff and its announcement), when the sweeper answers it.
    async fn finish_abandoned(&self, message: &Message) -> Result<Mode, StoreError> {
        let mut tx = self.store.begin().await?;
        let mode = conversations::get(&mut tx, &message.conversation_id)
            .await?
            .map_or(Mode::Closed, |c| c.mode);
        if mode == Mode::Ai {
            warn!(
                "a reply was abandoned for a handoff that is undone already; the sweeper answers"
            );
            return Ok(mode);
        }
        messages::mark_handled(&mut tx, message).await?;
        tx.commit().await?;
        Ok(mode)
    }

    async fn finish_unanswered(&self, message: &Message) -> Result<Mode, StoreError> {
        let mut tx = self.store.begin().await?;
        messages::mark_handled(&mut tx, message).await?;
        let mode = conversations::get(&mut tx, &message.conversation_id)
            .await?
            .map_or(Mode::Closed, |c| c.mode);
        tx.commit().await?;
        Ok(mode)
    }
}

/// Keeps one raw provider event, within the bounds; JSON events are kept as JSON.
fn keep_raw(produced: &mut Produced, raw: String) {
    if produced.raw_events.len() >= MAX_RAW_EVENTS || raw.len() > MAX_RAW_EVENT_BYTES {
        produced.raw_dropped += 1;
        return;
    }
    let event = serde_json::from_str(&raw).unwrap_or(serde_json::Value::String(raw));
    produced.raw_events.push(event);
}

fn humantime_duration(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_events_are_bounded_in_count_and_size() {
        let mut produced = Produced::default();
        keep_raw(&mut produced, "x".repeat(MAX_RAW_EVENT_BYTES + 1));
        for i in 0..MAX_RAW_EVENTS + 2 {
            keep_raw(&mut produced, format!("{{\"n\":{i}}}"));
        }
        assert_eq!(produced.raw_events.len(), MAX_RAW_EVENTS);
        assert_eq!(produced.raw_events[0]["n"], 0, "JSON is kept as JSON");
        assert_eq!(produced.raw_dropped, 3);
    }
}
