//! Following a conversation: what a client missed, read from the database, then what happens
//! live, each event once and in order. The event stream (`GET /v1/conversations/{id}/events`,
//! server-sent events), the experts' and supervisors' streams and the WebSocket all follow
//! conversations this one way; they differ only in how they write an event down.
//!
//! A follower keeps only a [`Cursor`] while idle, so an idle stream stays small. A replay is read a
//! page at a time as the client takes it, so a slow reader of a long conversation holds one page,
//! not the conversation. Whenever the live feed runs ahead of what was sent (a gap: a concurrent
//! writer has not published an earlier message yet; or a client too slow for the feed), the
//! follower catches up from the database.

use std::{borrow::Cow, future::Future, pin::Pin, sync::Arc};

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    ids::{ConversationId, MessageId},
    live::{Delta, Hub, LiveEvent, Position, Streaming, Subscription},
    store::{
        Store, StoreError,
        messages::{self, Direction, Message, Role},
    },
};

/// Messages read per query while catching up.
const REPLAY_BATCH: i64 = 200;

/// Answered messages a cursor remembers.
const ANSWERED_KEPT: usize = 16;

/// Who reads a stream: website visitors see messages as [`Message::for_visitor`] shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Audience {
    /// The end user.
    Visitor,
    /// Experts and supervisors.
    Staff,
}

/// What a follower hands its client.
#[derive(Debug, Clone)]
pub(super) enum Followed {
    /// Something that happened in the conversation (as stored or published: see [`visible`]),
    /// and where it puts the client.
    Event {
        /// The event.
        event: Arc<LiveEvent>,
        /// The client's position after it (an update leaves it where it was).
        position: Position,
    },
    /// The replayed history ended here (observers' streams mark it): what follows is live.
    HistoryEnd {
        /// The newest message replayed.
        last_seq: i64,
    },
}

/// An event as `audience` may see it: a visitor sees a message without what is for staff only
/// (an AI reply's usage and raw events, an expert's account).
pub(super) fn visible(event: &LiveEvent, audience: Audience) -> Cow<'_, LiveEvent> {
    let hidden = |m: &Message| {
        m.role == Role::Expert
            || m.metadata.usage.is_some()
            || !m.metadata.raw_events.is_empty()
            || m.metadata.raw_events_dropped.is_some()
    };
    match (audience, event) {
        (Audience::Visitor, LiveEvent::Message(m)) if hidden(m) => {
            Cow::Owned(LiveEvent::Message(m.clone().for_visitor()))
        }
        (Audience::Visitor, LiveEvent::Update(m)) if hidden(m) => {
            Cow::Owned(LiveEvent::Update(m.clone().for_visitor()))
        }
        _ => Cow::Borrowed(event),
    }
}

/// Starts following a conversation from `from` (events as stored: a client shows them as its
/// audience may see them, [`visible`]): subscribes to its live events first (so that
/// nothing published during the replay is missed), reads the first page of what was missed, and
/// returns it with the rest: further pages when the first was not the last, then (when
/// `mark_history`) the end of the history, the reply being written, and live events. The stream
/// ends when the hub closes (the gateway is shutting down).
///
/// The first page is read here, before anything is sent: a failing database is still an error
/// the caller can answer; most followers need no more, and go live right after it.
pub(super) async fn follow(
    store: &Store,
    hub: &Hub,
    conversation_id: ConversationId,
    from: Position,
    mark_history: bool,
) -> Result<
    (
        Vec<Followed>,
        impl Stream<Item = Followed> + Send + 'static + use<>,
    ),
    StoreError,
> {
    let mut subscription = hub.subscribe(&conversation_id);
    let mut cursor = Cursor::new(from);
    let (mut replay, complete) = cursor.page(store, &conversation_id).await?;
    if complete {
        if mark_history {
            replay.push(cursor.history_end());
        }
        if let Some(streaming) = subscription.streaming.take() {
            replay.extend(cursor.resume_reply(streaming));
        }
    }
    let live = live(
        store.clone(),
        conversation_id,
        cursor,
        subscription,
        !complete,
        mark_history && !complete,
    );
    Ok((replay, live))
}

/// Where a client is in a conversation's event stream, and what it has already seen.
#[derive(Debug, Clone)]
pub(super) struct Cursor {
    /// The client's position, the id given to events that do not move it (updates).
    position: Position,
    /// The newest message sent; messages are sent in seq order, each once.
    newest: i64,
    /// The reply whose deltas were replayed, and how many: live deltas up to there are repeats.
    replayed_deltas: Option<(i64, u32)>,
    /// Ids of messages answered by messages sent to this client: a reply in progress for one of
    /// them is already complete.
    answered: Vec<MessageId>,
}

/// What to do with a live event.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Send it with this id.
    Send(Position),
    /// Already sent.
    Skip,
    /// Earlier messages are stored but not yet published: read them (and this one) from the
    /// database first.
    Gap,
}

impl Cursor {
    /// A client at `from`.
    pub(super) fn new(from: Position) -> Self {
        Self {
            position: from,
            newest: from.seq,
            replayed_deltas: None,
            answered: Vec::new(),
        }
    }

    /// Records that `message` was sent.
    fn sent(&mut self, message: &Message) -> Position {
        self.newest = self.newest.max(message.seq);
        self.position = Position {
            seq: message.seq,
            delta: 0,
        };
        if message.direction == Direction::Outbound
            && let Some(reply_to) = &message.reply_to
        {
            // The recent ones are enough: a reply in progress answers one of the newest messages.
            if self.answered.len() == ANSWERED_KEPT {
                self.answered.remove(0);
            }
            self.answered.push(reply_to.clone());
        }
        self.position
    }

    /// The end of the replayed history.
    fn history_end(&self) -> Followed {
        Followed::HistoryEnd {
            last_seq: self.newest,
        }
    }

    /// The next page of stored messages after the newest one sent, and whether it was the last
    /// (nothing more is stored now).
    async fn page(
        &mut self,
        store: &Store,
        conversation_id: &ConversationId,
    ) -> Result<(Vec<Followed>, bool), StoreError> {
        let batch = stored_after(store, conversation_id, self.newest, REPLAY_BATCH).await?;
        let complete = (batch.len() as i64) < REPLAY_BATCH;
        let events = batch
            .into_iter()
            .map(|message| {
                let position = self.sent(&message);
                Followed::Event {
                    event: Arc::new(LiveEvent::Message(message)),
                    position,
                }
            })
            .collect();
        Ok((events, complete))
    }

    /// The reply being written, as far as the client has not seen it: its typing notice when the
    /// client saw none of it (a follower that joins right after the message it answers), then
    /// the deltas the client missed — unless the replay already included the finished reply.
    fn resume_reply(&mut self, streaming: Streaming) -> Vec<Followed> {
        let Some(progress) = streaming.progress else {
            return Vec::new();
        };
        if self.answered.contains(&progress.reply_to) {
            return Vec::new();
        }
        let seen = if progress.reply_to_seq == self.position.seq {
            self.position.delta
        } else {
            0
        };
        let count = u32::try_from(streaming.deltas.len()).unwrap_or(u32::MAX);
        self.replayed_deltas = Some((progress.reply_to_seq, count));
        let mut events = Vec::new();
        if seen == 0 {
            self.position = Position {
                seq: progress.reply_to_seq,
                delta: 0,
            };
            events.push(Followed::Event {
                event: Arc::new(LiveEvent::Typing(progress.clone())),
                position: self.position,
            });
        }
        for (index, content) in (1..).zip(streaming.deltas) {
            if index <= seen {
                continue;
            }
            self.position = Position {
                seq: progress.reply_to_seq,
                delta: index,
            };
            let delta = LiveEvent::Delta(Delta {
                reply_to: progress.reply_to.clone(),
                reply_to_seq: progress.reply_to_seq,
                index,
                content,
            });
            events.push(Followed::Event {
                event: Arc::new(delta),
                position: self.position,
            });
        }
        events
    }

    /// Decides about a live event and moves the position accordingly.
    pub(super) fn judge(&mut self, event: &LiveEvent) -> Verdict {
        match event {
            LiveEvent::Message(m) if m.seq <= self.newest => return Verdict::Skip,
            // Seqs have no gaps, and a conversation's messages commit in seq order: a gap means a
            // concurrent writer has not published an earlier message yet. It is stored.
            LiveEvent::Message(m) if m.seq > self.newest + 1 => return Verdict::Gap,
            LiveEvent::Message(m) => {
                return Verdict::Send(self.sent(m));
            }
            // Events may have been missed (another instance's): read on from the database.
            LiveEvent::Resync => return Verdict::Gap,
            // The pieces of a reply the client has whole already: the replay read it from the
            // database before its live events came through.
            LiveEvent::Delta(d) if self.answered.contains(&d.reply_to) => return Verdict::Skip,
            LiveEvent::Typing(p) if self.answered.contains(&p.reply_to) => return Verdict::Skip,
            LiveEvent::Delta(d)
                if self
                    .replayed_deltas
                    .is_some_and(|(seq, index)| seq == d.reply_to_seq && d.index <= index) =>
            {
                return Verdict::Skip;
            }
            // A typing notice the replay already gave.
            LiveEvent::Typing(p)
                if self
                    .replayed_deltas
                    .is_some_and(|(seq, _)| seq == p.reply_to_seq) =>
            {
                return Verdict::Skip;
            }
            LiveEvent::Delta(_) | LiveEvent::Typing(_) | LiveEvent::Update(_) => {}
        }
        if let Some(position) = event.position() {
            self.position = position;
        }
        Verdict::Send(self.position)
    }
}

/// Stored messages after `seq`. Boxed, so that an idle stream does not reserve room for a query
/// it is not running.
fn stored_after<'a>(
    store: &'a Store,
    conversation_id: &'a ConversationId,
    seq: i64,
    limit: i64,
) -> Pin<Box<dyn Future<Output = Result<Vec<Message>, StoreError>> + Send + 'a>> {
    Box::pin(async move { messages::after(&mut store.reader(), conversation_id, seq, limit).await })
}

/// The next page of a catch-up, boxed for the same reason as [`stored_after`].
fn next_page<'a>(
    cursor: &'a mut Cursor,
    store: &'a Store,
    conversation_id: &'a ConversationId,
) -> PageFuture<'a> {
    Box::pin(cursor.page(store, conversation_id))
}

/// A page of events being read, boxed.
type PageFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(Vec<Followed>, bool), StoreError>> + Send + 'a>>;

/// Follows the live feed from where the replay left the cursor; `behind` when the replay is not
/// complete yet (it goes on a page at a time, then marks the history's end when `end_history`,
/// then resumes the reply in progress). Whenever the feed runs ahead of what was sent (a gap, or
/// a client too slow for the feed), the stream catches up from the database, a page at a time.
fn live(
    store: Store,
    conversation_id: ConversationId,
    mut cursor: Cursor,
    mut subscription: Subscription,
    mut behind: bool,
    mut end_history: bool,
) -> impl Stream<Item = Followed> + Send + 'static {
    async_stream::stream! {
        loop {
            if behind {
                loop {
                    match next_page(&mut cursor, &store, &conversation_id).await {
                        Ok((events, complete)) => {
                            for event in events {
                                yield event;
                            }
                            if complete {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, conversation = %conversation_id, "event catch-up failed");
                            return;
                        }
                    }
                }
                behind = false;
                if end_history {
                    end_history = false;
                    yield cursor.history_end();
                }
                // After the first replay only: the reply being written when the client came.
                if let Some(streaming) = subscription.streaming.take() {
                    for event in cursor.resume_reply(streaming) {
                        yield event;
                    }
                }
            }
            match subscription.receiver.recv().await {
                Ok(event) => match cursor.judge(&event) {
                    Verdict::Send(position) => yield Followed::Event { event, position },
                    Verdict::Skip => {}
                    Verdict::Gap => behind = true,
                },
                // Too slow: catch up on stored messages; missed deltas are superseded by them.
                Err(RecvError::Lagged(_)) => behind = true,
                // The hub is gone: the gateway is shutting down.
                Err(RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{live::ReplyProgress, time::Timestamp};
    use switchboard_channel::{Channel, DeliveryStatus};

    fn message(seq: i64, reply_to: Option<&str>) -> Message {
        Message {
            id: format!("m{seq}").into(),
            conversation_id: "c".into(),
            seq,
            channel: Channel::WEB,
            direction: if reply_to.is_some() {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            role: if reply_to.is_some() {
                Role::Ai
            } else {
                Role::User
            },
            author: None,
            kind: "text".into(),
            content: "x".into(),
            attachments: Vec::new(),
            provider_message_id: None,
            reply_to: reply_to.map(MessageId::from),
            status: DeliveryStatus::Sent,
            status_at: Timestamp(0),
            error: None,
            created_at: Timestamp(0),
            metadata: Default::default(),
        }
    }

    fn at(seq: i64, delta: u32) -> Position {
        Position { seq, delta }
    }

    #[test]
    fn messages_go_out_once_in_order_and_gaps_are_detected() {
        let mut cursor = Cursor::new(at(2, 0));
        assert_eq!(
            cursor.judge(&LiveEvent::Message(message(2, None))),
            Verdict::Skip
        );
        assert_eq!(
            cursor.judge(&LiveEvent::Message(message(3, None))),
            Verdict::Send(at(3, 0))
        );
        assert_eq!(
            cursor.judge(&LiveEvent::Message(message(5, None))),
            Verdict::Gap
        );
        assert_eq!(
            cursor.judge(&LiveEvent::Message(message(4, Some("m3")))),
            Verdict::Send(at(4, 0))
        );
        // An update keeps the client where it is.
        assert_eq!(
            cursor.judge(&LiveEvent::Update(message(3, None))),
            Verdict::Send(at(4, 0))
        );
    }

    #[test]
    fn replayed_deltas_are_not_repeated() {
        let mut cursor = Cursor::new(at(3, 1));
        let streaming = Streaming {
            progress: Some(ReplyProgress {
                reply_to: "m3".into(),
                reply_to_seq: 3,
            }),
            deltas: vec!["He".into(), "ll".into(), "o".into()],
        };
        let replayed = cursor.resume_reply(streaming);
        assert_eq!(replayed.len(), 2, "deltas 2 and 3; the client had 1");
        let typing = LiveEvent::Typing(ReplyProgress {
            reply_to: "m3".into(),
            reply_to_seq: 3,
        });
        assert_eq!(cursor.judge(&typing), Verdict::Skip, "seen before");
        let delta = |index| {
            LiveEvent::Delta(Delta {
                reply_to: "m3".into(),
                reply_to_seq: 3,
                index,
                content: "x".into(),
            })
        };
        assert_eq!(cursor.judge(&delta(3)), Verdict::Skip);
        assert_eq!(cursor.judge(&delta(4)), Verdict::Send(at(3, 4)));
    }

    #[test]
    fn a_finished_reply_is_not_resumed() {
        let mut cursor = Cursor::new(at(3, 0));
        cursor.sent(&message(4, Some("m3")));
        let streaming = Streaming {
            progress: Some(ReplyProgress {
                reply_to: "m3".into(),
                reply_to_seq: 3,
            }),
            deltas: vec!["Hello".into()],
        };
        assert!(cursor.resume_reply(streaming).is_empty());
    }

    #[test]
    fn pieces_of_a_reply_already_sent_whole_are_not_sent() {
        let mut cursor = Cursor::new(at(0, 0));
        cursor.sent(&message(1, None));
        cursor.sent(&message(2, Some("m1")));
        let typing = LiveEvent::Typing(ReplyProgress {
            reply_to: "m1".into(),
            reply_to_seq: 1,
        });
        assert_eq!(cursor.judge(&typing), Verdict::Skip);
        let delta = LiveEvent::Delta(Delta {
            reply_to: "m1".into(),
            reply_to_seq: 1,
            index: 1,
            content: "x".into(),
        });
        assert_eq!(cursor.judge(&delta), Verdict::Skip);
        assert_eq!(
            cursor.judge(&LiveEvent::Message(message(3, None))),
            Verdict::Send(at(3, 0))
        );
    }

    #[test]
    fn a_follower_that_comes_before_the_first_delta_is_told_of_the_typing() {
        let mut cursor = Cursor::new(at(3, 0));
        let streaming = Streaming {
            progress: Some(ReplyProgress {
                reply_to: "m3".into(),
                reply_to_seq: 3,
            }),
            deltas: vec!["Hel".into()],
        };
        let replayed = cursor.resume_reply(streaming);
        let names: Vec<_> = replayed
            .iter()
            .map(|f| match f {
                Followed::Event { event, .. } => event.name(),
                Followed::HistoryEnd { .. } => "history-end",
            })
            .collect();
        assert_eq!(names, ["typing", "delta"]);
    }

    #[test]
    fn visitors_never_see_what_a_reply_used() {
        let mut reply = message(4, Some("m3"));
        reply.metadata.usage = Some(crate::store::meta::ReplyUsage {
            agent: "assistant".into(),
            model: "m".into(),
            tokens_in: 1,
            tokens_out: 2,
            estimated: false,
            cost: 0.5,
            currency: "EUR".into(),
            response_time_ms: 7,
        });
        let event = LiveEvent::Message(reply);
        let shown = serde_json::to_value(visible(&event, Audience::Visitor).as_ref()).unwrap();
        assert!(shown["metadata"].get("usage").is_none(), "{shown}");
        let staff = serde_json::to_value(visible(&event, Audience::Staff).as_ref()).unwrap();
        assert_eq!(staff["metadata"]["usage"]["tokens_out"], 2);
    }
}
