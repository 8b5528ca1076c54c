//! `GET /v1/conversations/{id}/events`: everything that happens in a conversation, as server-sent
//! events.
//!
//! | event     | data                                       | id                 |
//! |-----------|--------------------------------------------|--------------------|
//! | `message` | a stored message                           | `<seq>`            |
//! | `typing`  | `{reply_to, reply_to_seq}`                 | `<seq>`            |
//! | `delta`   | `{reply_to, reply_to_seq, index, content}` | `<seq>.<index>`    |
//! | `update`  | a changed message (edit, delivery status)  | unchanged position |
//!
//! A client that reconnects with `Last-Event-ID` first gets the stored messages after that id, then
//! the deltas it missed of a reply still being written, then live events; duplicates between the
//! replay and the live feed are dropped. Comment heartbeats keep proxies from closing idle streams.
//! `EventSource` cannot send headers, so the identity may also come as `?device_id=` or
//! `?access_token=`.
//!
//! A gateway holds one of these streams per watching visitor, so the idle stream is kept small:
//! the live part keeps only a [`Cursor`]. A replay is read a page at a time as the client takes
//! it, so a slow reader of a long conversation holds one page, not the conversation.

use std::{convert::Infallible, future::Future, pin::Pin};

use axum::{
    extract::State,
    http::HeaderMap,
    response::{Response, sse::Event},
};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::{
    AppState,
    chat::sse_response,
    conversations::owned,
    error::ApiError,
    extract::{ApiPath, ApiQuery, ClientAddress, Visitor},
};
use crate::{
    ids::{ConversationId, MessageId},
    limits::streams::{StreamOwner, StreamPermit},
    live::{Delta, LiveEvent, Position, Streaming, Subscription},
    store::{
        Store, StoreError,
        messages::{self, Direction, Message, Role},
    },
};

/// Messages read per query while catching up.
const REPLAY_BATCH: i64 = 200;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct EventParams {
    device_id: Option<String>,
    access_token: Option<String>,
    /// For clients that reconnect by hand instead of with the `Last-Event-ID` header.
    last_event_id: Option<String>,
}

/// `GET /v1/conversations/{id}/events`
#[utoipa::path(
    get,
    path = "/v1/conversations/{id}/events",
    tag = "conversations",
    summary = "Follow a conversation",
    description = "Server-sent events: `message` (id `<seq>`), `typing` and `delta` (id `<seq>.<n>`) for replies being written, `update` for changed messages; comment heartbeats. Reconnecting with `Last-Event-ID` (or `?last_event_id=`) replays what was missed, including the rest of a reply in progress. `EventSource` clients may identify with `?device_id=` or `?access_token=`.",
    security(("device_id" = []), ("visitor_jwt" = [])),
    params(("id" = String, Path, description = "The conversation's id (UUID)"), EventParams, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (`<seq>` or `<seq>.<n>`): what was missed is replayed")),
    responses(
        (status = 200, description = "The conversation's events, replayed from the resume point, then live", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_device_id`, `invalid_path`", body = crate::http::error::ErrorBody),
        (status = 401, description = "`unauthenticated`: neither `X-Device-ID` nor a bearer token; `invalid_token`: a bearer token that is not valid", body = crate::http::error::ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, deleted, or someone else's", body = crate::http::error::ErrorBody),
        (status = 422, description = "`invalid_query`", body = crate::http::error::ErrorBody),
        (status = 429, description = "`rate_limited`: too many event streams open for this visitor or address", body = crate::http::error::ErrorBody, headers(("Retry-After" = u64, description = "Seconds until trying again makes sense"))),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn stream(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    ApiPath(id): ApiPath<ConversationId>,
    ApiQuery(params): ApiQuery<EventParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let visitor = Visitor::from_headers(
        &state,
        &headers,
        params.access_token.as_deref(),
        params.device_id.as_deref(),
    )?;
    let conversation = owned(&state, &visitor, &id).await?;
    let permit = state
        .limits
        .streams
        .open(StreamOwner::Visitor(&visitor.external_id()), address)?;
    let from = resume_from(&headers, params.last_event_id.as_deref());
    // A visitor's stream lasts as long as they keep it open.
    conversation_stream(
        &state,
        conversation.id,
        from,
        None,
        std::future::pending(),
        permit,
        Audience::Visitor,
    )
    .await
}

/// Who reads a stream: website visitors see messages as [`Message::for_visitor`] shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Audience {
    /// The end user.
    Visitor,
    /// Experts and supervisors.
    Staff,
}

/// Where a client resumes: `Last-Event-ID` (or the query's `last_event_id`), else the start.
pub(super) fn resume_from(headers: &HeaderMap, query: Option<&str>) -> Position {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(query)
        .map(Position::parse)
        .unwrap_or_default()
}

/// The event stream of a conversation the caller may see, from `from` (replayed from the
/// database), then live until `until` completes. An observer's stream (`observer`: its first
/// event) marks where the replayed history starts and ends (`history-start`, `history-end`), so a
/// supervisor's screen can tell what happened before it looked from what happens while it looks.
/// The stream holds `permit` (its place among the open streams) until it ends.
///
/// The replay is read a page at a time as the client takes it: a slow reader of a long
/// conversation holds one page in memory, not the conversation. The first page is read before the
/// response starts (a missing conversation or a failing database is still an HTTP error); most
/// streams need no more, and go live right after it.
pub(super) async fn conversation_stream(
    state: &AppState,
    conversation_id: ConversationId,
    from: Position,
    first: Option<Event>,
    until: impl Future<Output = ()> + Send + 'static,
    permit: StreamPermit,
    audience: Audience,
) -> Result<Response, ApiError> {
    // Subscribe first, so nothing published during the replay is missed.
    let mut subscription = state.hub.subscribe(&conversation_id);
    let mut cursor = Cursor::new(from, audience);
    let observed = first.is_some();
    let mut replay: Vec<Event> = first.into_iter().collect();
    if observed {
        replay.push(marker(
            "history-start",
            serde_json::json!({"conversation_id": conversation_id, "after_seq": from.seq}),
        ));
    }
    let (page, complete) = cursor.page(&state.store, &conversation_id).await?;
    replay.extend(page);
    if complete {
        if observed {
            replay.push(history_end(&cursor));
        }
        if let Some(streaming) = subscription.streaming.take() {
            replay.extend(cursor.resume_reply(streaming));
        }
    }
    let live = live(
        state.store.clone(),
        conversation_id,
        cursor,
        subscription,
        !complete,
        observed && !complete,
    );
    let events = futures::stream::iter(replay.into_iter().map(Ok))
        .chain(live)
        .take_until(until);
    Ok(sse_response(events, state, Some(permit)))
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
    /// Who reads the stream.
    audience: Audience,
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
    pub(super) fn new(from: Position, audience: Audience) -> Self {
        Self {
            position: from,
            newest: from.seq,
            replayed_deltas: None,
            answered: Vec::new(),
            audience,
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
            self.answered.push(reply_to.clone());
        }
        self.position
    }

    /// The next page of stored messages after the newest one sent, as events, and whether it was
    /// the last (nothing more is stored now).
    async fn page(
        &mut self,
        store: &Store,
        conversation_id: &ConversationId,
    ) -> Result<(Vec<Event>, bool), StoreError> {
        let batch = stored_after(store, conversation_id, self.newest, REPLAY_BATCH).await?;
        let complete = (batch.len() as i64) < REPLAY_BATCH;
        let events = batch
            .into_iter()
            .map(|message| {
                let position = self.sent(&message);
                sse(&LiveEvent::Message(message), position, self.audience)
            })
            .collect();
        Ok((events, complete))
    }

    /// The deltas of the reply being written that the client has not seen, unless the replay
    /// already included the finished reply.
    fn resume_reply(&mut self, streaming: Streaming) -> Vec<Event> {
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
            events.push(sse(&delta, self.position, self.audience));
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
            // Events may have been missed: read the conversation again from where we are.
            LiveEvent::Resync => return Verdict::Gap,
            LiveEvent::Delta(d)
                if self
                    .replayed_deltas
                    .is_some_and(|(seq, index)| seq == d.reply_to_seq && d.index <= index) =>
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

fn sse(event: &LiveEvent, position: Position, audience: Audience) -> Event {
    let data = match (audience, event) {
        (Audience::Visitor, LiveEvent::Message(m)) if m.role == Role::Expert => {
            serde_json::to_string(&LiveEvent::Message(m.clone().for_visitor()))
        }
        (Audience::Visitor, LiveEvent::Update(m)) if m.role == Role::Expert => {
            serde_json::to_string(&LiveEvent::Update(m.clone().for_visitor()))
        }
        _ => serde_json::to_string(event),
    };
    Event::default()
        .event(event.name())
        .id(position.to_string())
        .data(data.unwrap_or_default())
}

/// An event that marks the stream rather than tells of the conversation: no id, so it never moves
/// a client's `Last-Event-ID`.
fn marker(name: &'static str, data: serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// The end of the replayed history: what follows happens live.
fn history_end(cursor: &Cursor) -> Event {
    marker(
        "history-end",
        serde_json::json!({"last_seq": cursor.newest}),
    )
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
    Pin<Box<dyn Future<Output = Result<(Vec<Event>, bool), StoreError>> + Send + 'a>>;

/// Follows the live feed from where the replay left the cursor; `behind` when the replay is not
/// complete yet (it goes on a page at a time, then marks the history's end when `end_history`,
/// then resumes the reply in progress). Whenever the
/// feed runs ahead of what was sent (a gap, or a client too slow for the feed), the stream catches
/// up from the database, a page at a time.
fn live(
    store: Store,
    conversation_id: ConversationId,
    mut cursor: Cursor,
    mut subscription: Subscription,
    mut behind: bool,
    mut end_history: bool,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    async_stream::stream! {
        loop {
            if behind {
                loop {
                    match next_page(&mut cursor, &store, &conversation_id).await {
                        Ok((events, complete)) => {
                            for event in events {
                                yield Ok(event);
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
                    yield Ok(history_end(&cursor));
                }
                // After the first replay only: the reply being written when the client came.
                if let Some(streaming) = subscription.streaming.take() {
                    for event in cursor.resume_reply(streaming) {
                        yield Ok(event);
                    }
                }
            }
            match subscription.receiver.recv().await {
                Ok(event) => match cursor.judge(&event) {
                    Verdict::Send(position) => {
                        yield Ok(sse(&event, position, cursor.audience));
                    }
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
        let mut cursor = Cursor::new(at(2, 0), Audience::Staff);
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
        let mut cursor = Cursor::new(at(3, 1), Audience::Staff);
        let streaming = Streaming {
            progress: Some(ReplyProgress {
                reply_to: "m3".into(),
                reply_to_seq: 3,
            }),
            deltas: vec!["He".into(), "ll".into(), "o".into()],
        };
        let replayed = cursor.resume_reply(streaming);
        assert_eq!(replayed.len(), 2, "deltas 2 and 3; the client had 1");
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
        let mut cursor = Cursor::new(at(3, 0), Audience::Staff);
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
}
