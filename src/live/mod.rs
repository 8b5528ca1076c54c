//! The live event hub: fans out what happens in a conversation to everyone watching it (the
//! visitor's other tabs, the widget's event stream, later experts and supervisors).
//!
//! The hub is an accelerator, not a record. Durable events are stored messages, and their event id
//! is the message's `seq`, so a client that reconnects with `Last-Event-ID` gets what it missed from
//! the database. The only thing kept here is the reply being streamed right now, so a client that
//! reconnects halfway through a reply also gets the deltas it missed.
//!
//! On PostgreSQL several instances share the database, and a visitor's stream on one instance must
//! hear what another one did: [`relay`] carries every event published here to the other instances
//! and publishes theirs here.
//!
//! Event ids: a message is `<seq>`; the `n`-th delta of the reply to message `seq` is `<seq>.<n>`;
//! the typing notice of that reply is `<seq>` again. An update of an earlier message (an edit, a
//! delivery status) carries the listener's current position, so it never moves `Last-Event-ID`.

pub mod relay;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, OnceLock},
};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use self::relay::Signal;

use crate::{
    ids::{ConversationId, MessageId, UserId},
    store::messages::Message,
};

/// Events buffered per conversation for slow listeners. A listener that falls further behind
/// catches up on messages from the database; deltas it missed are superseded by the final message.
/// Every watched conversation has such a buffer, so it is kept small.
const BUFFER: usize = 16;

/// Something that happened in a conversation.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum LiveEvent {
    /// A new stored message: from the user, an agent, an expert or the system.
    Message(Message),
    /// A stored message changed (edited by the user, or a new delivery status).
    Update(Message),
    /// An agent started working on a reply.
    Typing(ReplyProgress),
    /// A piece of a reply being streamed.
    Delta(Delta),
    /// Events may have been missed (another instance's, while the connection that hears them was
    /// lost): listeners re-read the conversation from the database. Never sent to clients.
    Resync,
}

/// Which reply a typing notice or delta belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyProgress {
    /// The id of the message being answered.
    pub reply_to: MessageId,
    /// Its seq.
    pub reply_to_seq: i64,
}

/// A piece of a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delta {
    /// The id of the message being answered.
    pub reply_to: MessageId,
    /// Its seq.
    pub reply_to_seq: i64,
    /// Position of this piece in the reply, from 1.
    pub index: u32,
    /// The text to append.
    pub content: String,
}

impl LiveEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            LiveEvent::Message(_) => "message",
            LiveEvent::Update(_) => "update",
            LiveEvent::Typing(_) => "typing",
            LiveEvent::Delta(_) => "delta",
            LiveEvent::Resync => "resync",
        }
    }

    /// Where the event puts a listener in the stream; `None` for updates, which change an earlier
    /// message and leave the position where it was.
    pub fn position(&self) -> Option<Position> {
        match self {
            LiveEvent::Message(m) => Some(Position {
                seq: m.seq,
                delta: 0,
            }),
            LiveEvent::Update(_) | LiveEvent::Resync => None,
            LiveEvent::Typing(p) => Some(Position {
                seq: p.reply_to_seq,
                delta: 0,
            }),
            LiveEvent::Delta(d) => Some(Position {
                seq: d.reply_to_seq,
                delta: d.index,
            }),
        }
    }
}

/// A position in a conversation's event stream, parsed from an event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// The last message seen.
    pub seq: i64,
    /// The last delta seen of the reply to message `seq` (0: none).
    pub delta: u32,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.delta == 0 {
            write!(f, "{}", self.seq)
        } else {
            write!(f, "{}.{}", self.seq, self.delta)
        }
    }
}

impl Position {
    /// Parses `<seq>` or `<seq>.<n>`; anything else means "from the start".
    pub fn parse(id: &str) -> Position {
        let (seq, delta) = id.trim().split_once('.').unwrap_or((id.trim(), "0"));
        match (seq.parse::<i64>(), delta.parse::<u32>()) {
            (Ok(seq), Ok(delta)) if seq >= 0 => Position { seq, delta },
            _ => Position::default(),
        }
    }
}

/// The reply being streamed in a conversation, for listeners that join or rejoin midway.
#[derive(Debug, Clone, Default)]
pub struct Streaming {
    /// Which message is being answered.
    pub progress: Option<ReplyProgress>,
    /// The deltas so far, in order.
    pub deltas: Vec<String>,
}

#[derive(Default)]
struct Topic {
    sender: Option<broadcast::Sender<Arc<LiveEvent>>>,
    streaming: Option<Streaming>,
}

impl Topic {
    fn send(&self, event: LiveEvent) {
        if let Some(sender) = &self.sender {
            // An error only means nobody listens right now.
            let _ = sender.send(Arc::new(event));
        }
    }

    /// Whether nobody listens (not counting `leaving` listeners on their way out) and no reply is
    /// being streamed.
    fn is_idle(&self, leaving: usize) -> bool {
        self.streaming.is_none()
            && self
                .sender
                .as_ref()
                .is_none_or(|s| s.receiver_count() <= leaving)
    }
}

/// What staff dashboards hear about: a conversation entering or leaving the queue, changing
/// owner, receiving a message while experts own it, or having a reply flagged by an evaluation;
/// and an account being disabled. Each dashboard shows what its user may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffNotice {
    /// What happened.
    pub kind: NoticeKind,
    /// The conversation, for notices about one.
    pub conversation_id: Option<ConversationId>,
    /// The expert who owns the conversation now, if one does; the expert whose assignment
    /// `timed_out`; the account of `disabled` and `signed_out`.
    pub expert_id: Option<UserId>,
}

/// What a [`StaffNotice`] is about. Serialized in snake case (`timed_out`), as dashboards read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A conversation entered the queue.
    Queued,
    /// A conversation was given to an expert.
    Assigned,
    /// An expert handed a conversation to a colleague.
    Transferred,
    /// An expert gave a conversation back to the AI.
    Released,
    /// A conversation was closed.
    Closed,
    /// A message arrived in a conversation experts own.
    Message,
    /// An evaluation flagged a reply.
    Flagged,
    /// An assignment went unanswered: the conversation is queued again, its expert set away.
    TimedOut,
    /// An account was disabled.
    Disabled,
    /// One of an account's sessions ended.
    SignedOut,
    /// Notices may have been missed (another instance's): dashboards reload their lists.
    Reload,
}

impl NoticeKind {
    /// The name dashboards and event streams use.
    pub const fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Queued => "queued",
            NoticeKind::Assigned => "assigned",
            NoticeKind::Transferred => "transferred",
            NoticeKind::Released => "released",
            NoticeKind::Closed => "closed",
            NoticeKind::Message => "message",
            NoticeKind::Flagged => "flagged",
            NoticeKind::TimedOut => "timed_out",
            NoticeKind::Disabled => "disabled",
            NoticeKind::SignedOut => "signed_out",
            NoticeKind::Reload => "reload",
        }
    }
}

/// Staff notices kept for dashboards that fall behind; one that falls further reloads its lists.
const STAFF_BUFFER: usize = 256;

/// The hub. Cheap to clone: one pointer, which every idle event stream holds (a larger handle
/// makes each stream's state cross an allocator size class).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    topics: Mutex<HashMap<ConversationId, Topic>>,
    staff: broadcast::Sender<Arc<StaffNotice>>,
    /// Cancelled at shutdown: ends the staff streams too.
    closing: tokio_util::sync::CancellationToken,
    /// Where events published here go to reach the other instances (PostgreSQL only).
    relay: OnceLock<mpsc::Sender<Signal>>,
    /// Whether other instances may be listening: when this one is alone on its database, nothing
    /// is relayed (a signal costs a round trip and PostgreSQL's notification queue).
    others: std::sync::atomic::AtomicBool,
    /// Turns other instances handed to this one, not yet taken.
    handed: Mutex<Vec<MessageId>>,
    turns: tokio::sync::Notify,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            inner: Arc::new(HubInner {
                topics: Mutex::default(),
                staff: broadcast::channel(STAFF_BUFFER).0,
                closing: tokio_util::sync::CancellationToken::new(),
                relay: OnceLock::new(),
                // Until the instances are counted, assume company.
                others: std::sync::atomic::AtomicBool::new(true),
                handed: Mutex::default(),
                turns: tokio::sync::Notify::new(),
            }),
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

/// A listener of one conversation. Dropping it stops listening.
pub struct Subscription {
    /// Live events from the moment of subscribing.
    pub receiver: broadcast::Receiver<Arc<LiveEvent>>,
    /// The reply that was being streamed at that moment, if any.
    pub streaming: Option<Streaming>,
    hub: Hub,
    conversation_id: ConversationId,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The receiver is dropped after this runs, so it still counts as a listener here.
        self.hub.forget_if_idle(&self.conversation_id, 1);
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HashMap<ConversationId, Topic>> {
        // A panic while holding the lock cannot leave the map half-updated in a way that matters.
        self.inner.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts listening to a conversation.
    pub fn subscribe(&self, conversation_id: &ConversationId) -> Subscription {
        let mut topics = self.lock();
        let topic = topics.entry(conversation_id.clone()).or_default();
        let receiver = match &topic.sender {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = broadcast::channel(BUFFER);
                topic.sender = Some(sender);
                receiver
            }
        };
        Subscription {
            receiver,
            streaming: topic.streaming.clone(),
            hub: self.clone(),
            conversation_id: conversation_id.clone(),
        }
    }

    /// Publishes a stored message. A message that answers the reply being streamed ends it.
    pub fn message(&self, message: &Message) {
        self.message_here(message);
        self.relay(|| Signal::Message {
            conversation_id: message.conversation_id.clone(),
            message_id: message.id.clone(),
        });
    }

    fn message_here(&self, message: &Message) {
        let mut topics = self.lock();
        let Some(topic) = topics.get_mut(&message.conversation_id) else {
            return;
        };
        let answers_stream = matches!(
            (&topic.streaming, &message.reply_to),
            (Some(Streaming { progress: Some(p), .. }), Some(reply_to)) if &p.reply_to == reply_to
        );
        if answers_stream {
            topic.streaming = None;
        }
        topic.send(LiveEvent::Message(message.clone()));
        if topic.is_idle(0) {
            topics.remove(&message.conversation_id);
        }
    }

    /// Publishes a change to a stored message.
    pub fn update(&self, message: &Message) {
        self.update_here(message);
        self.relay(|| Signal::Update {
            conversation_id: message.conversation_id.clone(),
            message_id: message.id.clone(),
        });
    }

    fn update_here(&self, message: &Message) {
        let topics = self.lock();
        if let Some(topic) = topics.get(&message.conversation_id) {
            topic.send(LiveEvent::Update(message.clone()));
        }
    }

    /// An agent starts answering a message.
    pub fn start_reply(&self, conversation_id: &ConversationId, progress: ReplyProgress) {
        self.relay(|| Signal::Typing {
            conversation_id: conversation_id.clone(),
            progress: progress.clone(),
        });
        self.start_reply_here(conversation_id, progress);
    }

    fn start_reply_here(&self, conversation_id: &ConversationId, progress: ReplyProgress) {
        let mut topics = self.lock();
        let topic = topics.entry(conversation_id.clone()).or_default();
        topic.streaming = Some(Streaming {
            progress: Some(progress.clone()),
            deltas: Vec::new(),
        });
        topic.send(LiveEvent::Typing(progress));
    }

    /// A piece of the reply being streamed. Returns the delta's position in the reply.
    pub fn delta(&self, conversation_id: &ConversationId, content: &str) -> u32 {
        let index = self.delta_here(conversation_id, content, None);
        if index > 0 {
            self.relay(|| Signal::Delta {
                conversation_id: conversation_id.clone(),
                index,
                content: content.to_owned(),
            });
        }
        index
    }

    /// Appends a delta; with `expected`, only if it is that piece of the reply (another
    /// instance's delta, which may come after one was lost). Returns its position, 0 if none.
    fn delta_here(
        &self,
        conversation_id: &ConversationId,
        content: &str,
        expected: Option<u32>,
    ) -> u32 {
        let mut topics = self.lock();
        let Some(topic) = topics.get_mut(conversation_id) else {
            return 0;
        };
        let Some(streaming) = &mut topic.streaming else {
            return 0;
        };
        let Some(progress) = streaming.progress.clone() else {
            return 0;
        };
        if expected.is_some_and(|n| n as usize != streaming.deltas.len() + 1) {
            return 0;
        }
        streaming.deltas.push(content.to_owned());
        let index = u32::try_from(streaming.deltas.len()).unwrap_or(u32::MAX);
        topic.send(LiveEvent::Delta(Delta {
            reply_to: progress.reply_to,
            reply_to_seq: progress.reply_to_seq,
            index,
            content: content.to_owned(),
        }));
        index
    }

    /// The reply ended without a message being published for it (the conversation was handed to a
    /// person meanwhile, or storing failed).
    pub fn end_reply(&self, conversation_id: &ConversationId) {
        self.end_reply_here(conversation_id);
        self.relay(|| Signal::EndReply {
            conversation_id: conversation_id.clone(),
        });
    }

    fn end_reply_here(&self, conversation_id: &ConversationId) {
        let mut topics = self.lock();
        if let Some(topic) = topics.get_mut(conversation_id) {
            topic.streaming = None;
            if topic.is_idle(0) {
                topics.remove(conversation_id);
            }
        }
    }

    /// Tells the staff's dashboards about a change of a conversation.
    pub fn staff_notice(
        &self,
        kind: NoticeKind,
        conversation_id: &ConversationId,
        expert_id: Option<&UserId>,
    ) {
        self.send_staff(StaffNotice {
            kind,
            conversation_id: Some(conversation_id.clone()),
            expert_id: expert_id.cloned(),
        });
    }

    /// Tells the staff's dashboards and the account's own streams about an account: `disabled`
    /// (by an admin) or `signed_out` (one of its sessions ended).
    pub fn account_notice(&self, kind: NoticeKind, user_id: &UserId) {
        self.send_staff(StaffNotice {
            kind,
            conversation_id: None,
            expert_id: Some(user_id.clone()),
        });
    }

    fn send_staff(&self, notice: StaffNotice) {
        self.relay(|| Signal::Staff {
            notice: notice.clone(),
        });
        self.send_staff_here(notice);
    }

    fn send_staff_here(&self, notice: StaffNotice) {
        // An error only means no dashboard is open.
        let _ = self.inner.staff.send(Arc::new(notice));
    }

    /// Tells the instance `owner` that it was handed the turn of `message` (the database says
    /// so already; this wakes it up, its sweep would find it later).
    pub fn turns_handed_to(&self, owner: &str, message: &MessageId) {
        self.relay(|| Signal::Turns {
            to: owner.to_owned(),
            messages: vec![message.clone()],
        });
    }

    /// The turns other instances handed to this one, once there are some.
    pub async fn turns_handed_over(&self) -> Vec<MessageId> {
        loop {
            let handed =
                std::mem::take(&mut *self.inner.handed.lock().unwrap_or_else(|e| e.into_inner()));
            if !handed.is_empty() {
                return handed;
            }
            self.inner.turns.notified().await;
        }
    }

    fn handed_here(&self, messages: Vec<MessageId>) {
        self.inner
            .handed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(messages);
        self.inner.turns.notify_one();
    }

    /// Says whether other instances share the database now (they are counted every heartbeat;
    /// a signal from one says so at once).
    pub fn set_others(&self, others: bool) {
        self.inner
            .others
            .store(others, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sends what `signal` describes to the other instances, when there are any.
    fn relay(&self, signal: impl FnOnce() -> Signal) {
        if !self.inner.others.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if let Some(relay) = self.inner.relay.get()
            && relay.try_send(signal()).is_err()
        {
            // The relay is behind (or the database away): listeners elsewhere find the gap at
            // the next message, or at the resync that follows a lost connection.
            crate::telemetry::metrics::live_signals(
                crate::telemetry::metrics::SignalOutcome::Dropped,
                1,
            );
        }
    }

    /// Whether anyone here listens to the conversation or a reply to it is being streamed here.
    fn is_watched(&self, conversation_id: &ConversationId) -> bool {
        self.lock().contains_key(conversation_id)
    }

    /// Tells every listener that events may have been missed: each re-reads from the database.
    fn resync(&self) {
        for topic in self.lock().values() {
            topic.send(LiveEvent::Resync);
        }
        self.send_staff_here(StaffNotice {
            kind: NoticeKind::Reload,
            conversation_id: None,
            expert_id: None,
        });
    }

    /// Starts listening to staff notices.
    pub fn subscribe_staff(&self) -> broadcast::Receiver<Arc<StaffNotice>> {
        self.inner.staff.subscribe()
    }

    /// Ends every listener's stream (at shutdown).
    pub fn close(&self) {
        self.inner.closing.cancel();
        self.lock().clear();
    }

    /// Completes when the hub closes (shutdown).
    pub async fn closed(&self) {
        self.inner.closing.cancelled().await;
    }

    /// How many conversations have listeners or a reply in progress.
    pub fn active_topics(&self) -> usize {
        self.lock().len()
    }

    fn forget_if_idle(&self, conversation_id: &ConversationId, leaving: usize) {
        let mut topics = self.lock();
        if topics
            .get(conversation_id)
            .is_some_and(|t| t.is_idle(leaving))
        {
            topics.remove(conversation_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_leniently() {
        assert_eq!(Position::parse("12"), Position { seq: 12, delta: 0 });
        assert_eq!(Position::parse("12.3"), Position { seq: 12, delta: 3 });
        assert_eq!(Position::parse("nonsense"), Position::default());
        assert_eq!(Position::parse("-4"), Position::default());
        assert!(Position::parse("12.3") > Position::parse("12"));
    }

    #[test]
    fn streaming_state_is_kept_for_late_listeners_and_cleared() {
        let hub = Hub::default();
        let c1 = ConversationId::from("c1");
        hub.start_reply(
            &c1,
            ReplyProgress {
                reply_to: "m1".into(),
                reply_to_seq: 1,
            },
        );
        assert_eq!(hub.delta(&c1, "Hel"), 1);
        let sub = hub.subscribe(&c1);
        assert_eq!(sub.streaming.as_ref().unwrap().deltas, vec!["Hel"]);
        assert_eq!(hub.delta(&c1, "lo"), 2);
        hub.end_reply(&c1);
        assert_eq!(hub.active_topics(), 1, "a listener keeps the topic");
        drop(sub);
        assert_eq!(hub.active_topics(), 0, "nothing is kept for nobody");
    }
}
