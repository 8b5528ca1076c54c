//! The human side of a conversation: which expert owns it, and what they do with it.
//!
//! A conversation handed over to the experts waits in a queue (oldest first). Whenever something
//! changes — a handoff, an expert becoming available or raising their capacity, a conversation
//! released, closed or timed out — [`Experts::assign_waiting`] gives waiting conversations to
//! available experts with room: the one with the fewest open conversations, and of those the one
//! idle longest. Experts can also claim from the queue, transfer to a colleague, release a
//! conversation back to the AI (its agent lock reset) or close it; each change is a system message
//! the end user receives on their channel, and a notice on the staff's dashboards. An assignment
//! the expert leaves unanswered for `experts.assignment_timeout` goes back to the queue.
//!
//! Experts see and act on the conversations they own, and on waiting ones (to claim them);
//! anything else answers 404, as if it did not exist. Supervisors and admins see and act on all.
//! Assignment is serialised (one writer on SQLite, an advisory lock on PostgreSQL), so two
//! instances never give one conversation to two experts.

pub mod notify;
pub mod supervision;

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use switchboard_channel::Attachment;

use crate::{
    config::ExpertsConfig,
    ids::{ConversationId, UserId},
    jobs::queue::Wakers,
    live::Hub,
    live::NoticeKind,
    store::meta::MessageMeta,
    store::{
        Section, Store, StoreError, Tx,
        audit::{self, Actor},
        conversations::{self, Conversation, Mode, Owned},
        media, messages,
        messages::{Direction, Message, NewMessage, Role as Author},
        threads,
        users::{self, StaffRole, User},
    },
    time::Clock,
};

/// Why an expert's action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ExpertError {
    /// No such conversation — or one the expert may not see.
    #[error("conversation not found")]
    NotFound,
    /// The conversation is not in a state that allows it (already taken, not in expert mode…).
    #[error("{0}")]
    Conflict(&'static str),
    /// A request that cannot be carried out as asked.
    #[error("{0}")]
    Invalid(&'static str),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A conversation waiting for an expert, as the queue shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    /// The conversation.
    pub conversation: Conversation,
    /// The end user's name.
    pub contact_name: Option<String>,
    /// Its place in the queue, from 1.
    pub position: usize,
}

/// What the end user is told when an expert takes the conversation.
fn joined_notice(expert: &str) -> String {
    format!("{expert} has joined the conversation.")
}
/// What the end user is told when the AI answers again.
pub const RELEASED_NOTICE: &str =
    "You're back with the assistant. Ask for a person any time if you need one again.";
/// What the end user is told when the conversation is closed.
pub const CLOSED_NOTICE: &str =
    "This conversation has been closed. Write again any time to start a new one.";

/// The experts' side. Cheap to clone.
#[derive(Clone)]
pub struct Experts {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: Clock,
    hub: Hub,
    wakers: Wakers,
    config: ExpertsConfig,
    /// One assignment round at a time in this process (the database serialises instances).
    assigning: tokio::sync::Mutex<()>,
}

impl Experts {
    /// The experts' side over a store.
    pub fn new(shared: &crate::shared::Shared, config: ExpertsConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: shared.store.clone(),
                clock: shared.clock.clone(),
                hub: shared.hub.clone(),
                wakers: shared.wakers.clone(),
                config,
                assigning: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Whether `actor` may see a conversation: its owner, anyone while it waits in the queue,
    /// supervisors always.
    pub fn may_see(actor: &User, conversation: &Conversation) -> bool {
        actor.role.includes(StaffRole::Supervisor)
            || conversation.expert_id.as_deref() == Some(actor.id.as_str())
            || (conversation.mode == Mode::Expert && conversation.expert_id.is_none())
    }

    /// Whether `actor` may act on a conversation (reply, transfer, release, close): its owner,
    /// supervisors always.
    fn may_act(actor: &User, conversation: &Conversation) -> bool {
        actor.role.includes(StaffRole::Supervisor)
            || conversation.expert_id.as_deref() == Some(actor.id.as_str())
    }

    /// A conversation the actor may see, or [`ExpertError::NotFound`].
    pub async fn visible(
        &self,
        actor: &User,
        id: &ConversationId,
    ) -> Result<Conversation, ExpertError> {
        conversations::get(&mut self.inner.store.reader(), id)
            .await?
            .filter(|c| Self::may_see(actor, c))
            .ok_or(ExpertError::NotFound)
    }

    /// A conversation and its newest messages, for an actor who may see it. In one
    /// transaction, the view is recorded in the audit log (with `record`'s detail, when given)
    /// and, for its owner, the conversation marked read: a view that cannot be recorded neither
    /// shows nor marks anything.
    pub async fn open(
        &self,
        actor: &Actor<'_>,
        id: &ConversationId,
        limit: i64,
        record: Option<serde_json::Value>,
    ) -> Result<(Conversation, Vec<Message>), ExpertError> {
        let conversation = self.visible(actor.user, id).await?;
        let messages = messages::page(&mut self.inner.store.reader(), id, None, limit).await?;
        let owner = conversation.expert_id.as_deref() == Some(actor.user.id.as_str());
        if owner || record.is_some() {
            let mut tx = self.inner.store.begin().await?;
            if let Some(detail) = record {
                // A supervisor looking at somebody else's conversation observes it.
                let action = if !owner && actor.user.role.includes(StaffRole::Supervisor) {
                    audit::Action::Observe
                } else {
                    audit::Action::View
                };
                self.audit(&mut tx, actor, action, id, detail).await?;
            }
            if owner {
                conversations::mark_read(&mut tx, id, &actor.user.id).await?;
            }
            tx.commit().await?;
        }
        Ok((conversation, messages))
    }

    /// The queue, longest waiting first.
    pub async fn queue(&self) -> Result<Vec<Waiting>, StoreError> {
        let waiting = conversations::waiting(&mut self.inner.store.reader(), 500).await?;
        Ok(waiting
            .into_iter()
            .enumerate()
            .map(|(i, listed)| Waiting {
                conversation: listed.conversation,
                contact_name: listed.contact_name,
                position: i + 1,
            })
            .collect())
    }

    /// The conversations an expert owns, with unread counts.
    pub async fn owned(&self, expert: &User) -> Result<Vec<Owned>, StoreError> {
        conversations::owned_by(&mut self.inner.store.reader(), &expert.id).await
    }

    /// An expert sets themselves available or away, and their capacity. Becoming available (or
    /// having more room) may bring them waiting conversations at once.
    pub async fn set_availability(
        &self,
        expert: &User,
        available: bool,
        capacity: Option<i64>,
    ) -> Result<User, ExpertError> {
        if capacity.is_some_and(|c| !(1..=100).contains(&c)) {
            return Err(ExpertError::Invalid("capacity must be between 1 and 100"));
        }
        let mut tx = self.inner.store.begin().await?;
        let user = users::set_availability(
            &mut tx,
            &expert.id,
            available,
            capacity,
            self.inner.clock.now(),
        )
        .await?
        .ok_or(ExpertError::NotFound)?;
        tx.commit().await?;
        if available {
            self.assign_soon();
        }
        Ok(user)
    }

    /// Runs an assignment round beside the caller.
    pub fn assign_soon(&self) {
        let experts = self.clone();
        tokio::spawn(async move {
            if let Err(e) = experts.assign_waiting().await {
                tracing::error!(error = %e, "assigning waiting conversations failed");
            }
        });
    }

    /// Gives waiting conversations, oldest first, to free experts until either runs out.
    /// Returns the conversations assigned.
    pub async fn assign_waiting(&self) -> Result<Vec<Conversation>, StoreError> {
        let _one_round = self.inner.assigning.lock().await;
        let mut assigned = Vec::new();
        loop {
            let mut tx = self.serialised().await?;
            let Some(waiting) = conversations::next_waiting(&mut tx).await? else {
                break;
            };
            let Some(expert_id) = conversations::free_expert(&mut tx).await? else {
                break;
            };
            let Some(expert) = users::get(&mut tx, &expert_id).await? else {
                break;
            };
            // Changed since it was read (released, closed or deleted by a request that does not
            // wait for the assignment lock): nothing was written; the next one is tried.
            let Some((conversation, notice)) =
                self.give(&mut tx, &waiting.id, &expert, None).await?
            else {
                continue;
            };
            tx.commit().await?;
            self.published(&notice);
            self.inner
                .hub
                .staff_notice(NoticeKind::Assigned, &conversation.id, Some(&expert.id));
            tracing::info!(conversation = %conversation.id, expert = %expert.email, "assigned a waiting conversation");
            assigned.push(conversation);
        }
        Ok(assigned)
    }

    /// A write transaction in which assignment decisions cannot race another instance's.
    async fn serialised(&self) -> Result<Tx, StoreError> {
        self.inner.store.begin_serialised(Section::Assignment).await
    }

    /// Gives a conversation to an expert inside `tx` (from nobody, or from `from`): the notice
    /// to the end user, and the expert's notifications. `None` when it is not in that state.
    async fn give(
        &self,
        tx: &mut Tx,
        conversation_id: &ConversationId,
        expert: &User,
        from: Option<&str>,
    ) -> Result<Option<(Conversation, Message)>, StoreError> {
        let now = self.inner.clock.now();
        let Some(conversation) =
            conversations::take_seq_for_expert(tx, conversation_id, &expert.id, from, now).await?
        else {
            return Ok(None);
        };
        let notice = self
            .notice(
                tx,
                &conversation,
                &joined_notice(&expert.display_name),
                Mode::Expert,
            )
            .await?;
        notify::enqueue(tx, &conversation.id, &expert.id, &self.inner.config, now).await?;
        // A system message has no provider id, so nothing can make it a duplicate.
        let notice = notice.ok_or_else(|| StoreError::Corrupt {
            what: "the joined notice",
            message: "it was not stored".into(),
        })?;
        Ok(Some((conversation, notice)))
    }

    /// Stores a system message for the end user (delivered on their channel).
    async fn notice(
        &self,
        tx: &mut Tx,
        conversation: &Conversation,
        text: &str,
        mode: Mode,
    ) -> Result<Option<Message>, StoreError> {
        let metadata = MessageMeta {
            mode: Some(mode),
            ..MessageMeta::default()
        };
        messages::insert(
            tx,
            NewMessage::system_notice(conversation, text, metadata),
            self.inner.clock.now(),
        )
        .await
    }

    /// Publishes a stored message and lets its delivery start.
    fn published(&self, message: &Message) {
        self.inner.hub.message(message);
        if messages::needs_delivery(message.channel) {
            self.inner.wakers.deliver.wake();
        }
    }

    /// An expert takes a waiting conversation.
    pub async fn claim(
        &self,
        actor: &Actor<'_>,
        id: &ConversationId,
    ) -> Result<Conversation, ExpertError> {
        let expert = actor.user;
        let conversation = self.visible(expert, id).await?;
        if conversation.mode != Mode::Expert || conversation.expert_id.is_some() {
            return Err(ExpertError::Conflict(
                "the conversation is not waiting for an expert",
            ));
        }
        let mut tx = self.serialised().await?;
        // Read again under the lock: an account disabled meanwhile takes nothing.
        let expert = &users::get(&mut tx, &expert.id)
            .await?
            .ok_or(ExpertError::NotFound)?;
        if !expert.role.includes(StaffRole::Supervisor)
            && conversations::open_count(&mut tx, &expert.id).await? >= expert.capacity
        {
            return Err(ExpertError::Conflict(
                "you have as many conversations as your capacity",
            ));
        }
        let (conversation, notice) =
            self.give(&mut tx, id, expert, None)
                .await?
                .ok_or(ExpertError::Conflict(
                    "another expert took the conversation first",
                ))?;
        self.audit(&mut tx, actor, audit::Action::Claim, id, json!({}))
            .await?;
        tx.commit().await?;
        self.published(&notice);
        self.inner
            .hub
            .staff_notice(NoticeKind::Assigned, &conversation.id, Some(&expert.id));
        Ok(conversation)
    }

    /// Hands a conversation on to another expert. An expert hands on their own, to a colleague
    /// who is available; a supervisor may also give a waiting conversation to someone, and to
    /// anyone enabled, away or not.
    pub async fn transfer(
        &self,
        actor: &Actor<'_>,
        id: &ConversationId,
        to: &str,
    ) -> Result<Conversation, ExpertError> {
        let conversation = self.visible(actor.user, id).await?;
        let supervisor = actor.user.role.includes(StaffRole::Supervisor);
        if !Self::may_act(actor.user, &conversation) {
            return Err(if conversation.expert_id.is_none() {
                ExpertError::Conflict("claim the conversation first")
            } else {
                ExpertError::NotFound
            });
        }
        if conversation.mode != Mode::Expert {
            return Err(ExpertError::Conflict(
                "the conversation is not with the experts",
            ));
        }
        let from = conversation.expert_id.clone();
        if from.as_deref() == Some(to) {
            return Err(ExpertError::Invalid("the conversation is already theirs"));
        }
        let mut tx = self.serialised().await?;
        let target = users::get(&mut tx, to)
            .await?
            .ok_or(ExpertError::Invalid("no such expert"))?;
        // Capacity limits what assignment hands out; a transfer is a person's deliberate choice
        // and may go beyond it. But an expert who is away would not see it.
        if !supervisor && !target.available.0 {
            return Err(ExpertError::Conflict("that colleague is away"));
        }
        let (conversation, notice) = self
            .give(&mut tx, id, &target, from.as_deref())
            .await?
            .ok_or(ExpertError::Conflict("the conversation changed meanwhile"))?;
        self.audit(
            &mut tx,
            actor,
            audit::Action::Transfer,
            id,
            json!({"from": from, "to": target.id}),
        )
        .await?;
        tx.commit().await?;
        self.published(&notice);
        self.inner
            .hub
            .staff_notice(NoticeKind::Transferred, &conversation.id, Some(&target.id));
        Ok(conversation)
    }

    /// Gives a conversation back to the AI; the agent lock is reset and the user told.
    pub async fn release(
        &self,
        actor: &Actor<'_>,
        id: &ConversationId,
    ) -> Result<Conversation, ExpertError> {
        let conversation = self.visible(actor.user, id).await?;
        let owner = self.owner_filter(actor.user, &conversation)?;
        let mut tx = self.inner.store.begin().await?;
        let conversation = conversations::take_seq_for_release(
            &mut tx,
            id,
            owner.as_deref(),
            self.inner.clock.now(),
        )
        .await?
        .ok_or(ExpertError::Conflict(
            "the conversation is not with the experts",
        ))?;
        let notice = self
            .notice(&mut tx, &conversation, RELEASED_NOTICE, Mode::Ai)
            .await?;
        self.audit(&mut tx, actor, audit::Action::Release, id, json!({}))
            .await?;
        tx.commit().await?;
        if let Some(notice) = &notice {
            self.published(notice);
        }
        self.inner
            .hub
            .staff_notice(NoticeKind::Released, &conversation.id, None);
        self.assign_soon();
        Ok(conversation)
    }

    /// Closes a conversation; the user is told.
    pub async fn close(
        &self,
        actor: &Actor<'_>,
        id: &ConversationId,
    ) -> Result<Conversation, ExpertError> {
        let conversation = self.visible(actor.user, id).await?;
        let owner = self.owner_filter(actor.user, &conversation)?;
        let mut tx = self.inner.store.begin().await?;
        let conversation = conversations::take_seq_for_close(
            &mut tx,
            id,
            owner.as_deref(),
            self.inner.clock.now(),
        )
        .await?
        .ok_or(ExpertError::Conflict("the conversation is already closed"))?;
        let notice = self
            .notice(&mut tx, &conversation, CLOSED_NOTICE, Mode::Closed)
            .await?;
        self.audit(&mut tx, actor, audit::Action::Close, id, json!({}))
            .await?;
        tx.commit().await?;
        if let Some(notice) = &notice {
            self.published(notice);
        }
        self.inner
            .hub
            .staff_notice(NoticeKind::Closed, &conversation.id, None);
        self.assign_soon();
        Ok(conversation)
    }

    /// Who must own the conversation for the actor to change it: the actor (an expert), or
    /// anyone (a supervisor).
    fn owner_filter(
        &self,
        actor: &User,
        conversation: &Conversation,
    ) -> Result<Option<UserId>, ExpertError> {
        if actor.role.includes(StaffRole::Supervisor) {
            return Ok(None);
        }
        if Self::may_act(actor, conversation) {
            return Ok(Some(actor.id.clone()));
        }
        // A waiting conversation is visible to experts, but only its owner may change it.
        Err(ExpertError::Conflict("claim the conversation first"))
    }

    /// Whether the expert may write in the conversation now: they own it, and it is still in
    /// expert mode.
    pub async fn may_reply(&self, expert: &User, id: &ConversationId) -> Result<(), ExpertError> {
        let conversation = self.visible(expert, id).await?;
        if conversation.expert_id.as_deref() == Some(expert.id.as_str()) {
            return if conversation.mode == Mode::Expert {
                Ok(())
            } else {
                Err(ExpertError::Conflict(
                    "the conversation is not with the experts any more",
                ))
            };
        }
        Err(
            if conversation.mode == Mode::Expert && conversation.expert_id.is_none() {
                ExpertError::Conflict("claim the conversation first")
            } else if Self::may_act(expert, &conversation) {
                ExpertError::Conflict("the conversation is not yours")
            } else {
                ExpertError::NotFound
            },
        )
    }

    /// The expert writes to the end user, passed through on the conversation's channel. `once`:
    /// a one-time value (scope, token) recorded with the message — the Message-ID of the mail it
    /// came in — so that a redelivered mail is not posted twice.
    pub async fn reply(
        &self,
        actor: &Actor<'_>,
        id: &ConversationId,
        content: &str,
        attachments: Vec<Attachment>,
        once: Option<(&str, &str)>,
    ) -> Result<Message, ExpertError> {
        let expert = actor.user;
        self.may_reply(expert, id).await?;
        let content = content.trim();
        if content.is_empty() && attachments.is_empty() {
            return Err(ExpertError::Invalid("write something"));
        }
        let now = self.inner.clock.now();
        let mut tx = self.inner.store.begin().await?;
        if let Some((scope, token)) = once
            && !threads::see_once(&mut tx, scope, token, now).await?
        {
            return Err(ExpertError::Conflict("this message was received before"));
        }
        let conversation = conversations::take_seq_for_expert_message(&mut tx, id, &expert.id, now)
            .await?
            .ok_or(ExpertError::Conflict("the conversation is no longer yours"))?;
        let message = messages::insert(
            &mut tx,
            NewMessage {
                conversation_id: conversation.id.clone(),
                seq: conversation.last_seq,
                channel: conversation.channel,
                direction: Direction::Outbound,
                role: Author::Expert,
                author: Some(expert.id.to_string()),
                kind: if attachments.is_empty() {
                    "text"
                } else {
                    "media"
                },
                content: content.to_owned(),
                attachments,
                provider_message_id: None,
                reply_to: None,
                status: messages::initial_status(conversation.channel),
                awaits_answer: false,
                metadata: MessageMeta {
                    expert_name: Some(expert.display_name.clone()),
                    ..MessageMeta::default()
                },
            },
            now,
        )
        .await?
        .ok_or(ExpertError::Conflict("the message could not be stored"))?;
        media::link_kept(&mut tx, &message.id, &message.attachments).await?;
        self.audit(
            &mut tx,
            actor,
            audit::Action::Reply,
            id,
            json!({"message_id": message.id}),
        )
        .await?;
        tx.commit().await?;
        self.published(&message);
        self.inner
            .hub
            .staff_notice(NoticeKind::Message, &conversation.id, Some(&expert.id));
        Ok(message)
    }

    /// Sends unanswered assignments back to the queue and sets their experts away. Returns how
    /// many timed out; [`Experts::assign_waiting`] gives them to someone else.
    pub async fn time_out_unanswered(&self) -> Result<usize, StoreError> {
        let now = self.inner.clock.now();
        let before = now.minus(self.inner.config.assignment_timeout);
        let timed_out = {
            let mut tx = self.serialised().await?;
            let timed_out = conversations::requeue_unanswered(&mut tx, before, now).await?;
            tx.commit().await?;
            timed_out
        };
        for t in &timed_out {
            tracing::info!(conversation = %t.conversation.id, expert = %t.expert_id,
                "an unanswered assignment went back to the queue; its expert is now away");
            self.inner.hub.staff_notice(
                NoticeKind::TimedOut,
                &t.conversation.id,
                Some(&t.expert_id),
            );
        }
        Ok(timed_out.len())
    }

    /// Disables a staff account (its sessions end, its tokens stop working) and puts its
    /// conversations back in the queue — serialised with assignment, so that none is given to it
    /// meanwhile. `false` when there is no such enabled account.
    pub async fn disable_account(
        &self,
        actor: &Actor<'_>,
        user_id: &UserId,
    ) -> Result<bool, StoreError> {
        let now = self.inner.clock.now();
        let mut tx = self.serialised().await?;
        if !users::disable(&mut tx, user_id, now).await? {
            return Ok(false);
        }
        let requeued = conversations::requeue_all_of(&mut tx, user_id, now).await?;
        let detail = json!({"user_id": user_id, "requeued": requeued.len()});
        audit::record(
            &mut tx,
            actor,
            audit::Action::DisableUser,
            None,
            detail,
            now,
        )
        .await?;
        tx.commit().await?;
        self.inner.hub.account_notice(NoticeKind::Disabled, user_id);
        for conversation in &requeued {
            self.inner
                .hub
                .staff_notice(NoticeKind::Queued, &conversation.id, None);
        }
        if !requeued.is_empty() {
            self.assign_soon();
        }
        Ok(true)
    }

    /// Records an action in the audit log, in the action's transaction.
    async fn audit(
        &self,
        tx: &mut Tx,
        actor: &Actor<'_>,
        action: audit::Action,
        conversation_id: &ConversationId,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        audit::record(
            tx,
            actor,
            action,
            Some(conversation_id),
            detail,
            self.inner.clock.now(),
        )
        .await
    }
}

/// The scheduled round of assignment (`experts.assign_schedule`): unanswered assignments go back
/// to the queue, waiting conversations go to available experts (assignment also happens at once
/// on every change), expired dashboard sessions are forgotten.
pub struct AssignmentRound {
    /// The experts' side.
    pub experts: Experts,
}

#[async_trait::async_trait]
impl crate::jobs::ScheduledTask for AssignmentRound {
    fn name(&self) -> &'static str {
        "experts"
    }

    fn once_per_deployment(&self) -> bool {
        true
    }

    fn schedule(&self) -> &str {
        &self.experts.inner.config.assign_schedule
    }

    async fn tick(&self) -> Result<(), apalis::prelude::BoxDynError> {
        self.experts.time_out_unanswered().await?;
        self.experts.assign_waiting().await?;
        let inner = &self.experts.inner;
        let mut tx = inner.store.begin().await?;
        crate::store::sessions::forget_expired(&mut tx, inner.clock.now()).await?;
        tx.commit().await?;
        Ok(())
    }
}
