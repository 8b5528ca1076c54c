//! One open WebSocket: it reads the visitor's frames and writes what happens in their
//! conversations, until either side closes, the client stops answering pings, or the gateway
//! shuts down.
//!
//! The socket follows every conversation of its visitor (up to [`MAX_FOLLOWED`], the most
//! recently active), each with the event stream's own follower ([`follow`]): a message is sent
//! once and in order, whatever the race between the database and the live feed, and `resume`
//! replays from the database. A conversation the socket starts, or writes in, is followed from
//! its message on. Messages and handoffs go through the very functions the HTTP routes use.
//!
//! Everything the client can make the socket do is bounded: its frames' size (larger: closed
//! with 1009) and rate ([`FRAMES_PER_MINUTE`], beyond that error frames; messages also count
//! against the visitor's message rate, as over HTTP), the conversations followed, and the time a
//! write may take (a client that does not read is dropped).

use std::{
    collections::VecDeque,
    net::IpAddr,
    pin::Pin,
    time::{Duration, Instant},
};

use axum::extract::ws::{CloseFrame, Message as Frame, Utf8Bytes, WebSocket};
use futures::{Stream, StreamExt};
use switchboard_channel::Channel;
use tokio_stream::StreamMap;

use super::frames::{self, ClientFrame, FrameError};
use crate::{
    http::{
        AppState,
        chat::{self, Accepted},
        conversations::{self, owned},
        extract::Visitor,
        follow::{Followed, follow},
    },
    ids::{ConversationId, MessageId},
    limits::streams::StreamPermit,
    live::{LiveEvent, Position},
    store::{contacts, conversations::Mode},
};

/// Conversations one socket follows at most; past that, the least recently active one is let go
/// (a `resume` takes it up again).
pub(super) const MAX_FOLLOWED: usize = 32;

/// Frames one socket may send per minute, of every type: enough for any person, few enough
/// that a script cannot keep the gateway busy through one socket.
const FRAMES_PER_MINUTE: u32 = 240;

/// Ids of the client's own messages remembered, so that the socket does not echo them back.
const OWN_MESSAGES: usize = 16;

/// The longest a write to the client may take: one that does not read is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Close codes.
const GOING_AWAY: u16 = 1001;
const TOO_BIG: u16 = 1009;
const NO_ANSWER: u16 = 4408;

type Follower = Pin<Box<dyn Stream<Item = Followed> + Send>>;

/// What a socket holds while open: besides its own state, its places among the visitor's
/// sockets and among the server's connections, given back when it ends.
pub(super) struct Session {
    state: AppState,
    visitor: Visitor,
    address: IpAddr,
    follows: StreamMap<ConversationId, Follower>,
    /// The followed conversations, least recently active first.
    recent: VecDeque<ConversationId>,
    /// The client's own messages acknowledged lately.
    own: VecDeque<MessageId>,
    /// When the current minute of the frame budget started, and the frames in it.
    budget: (Instant, u32),
    /// When the client was last heard from.
    heard: Instant,
    _places: (StreamPermit, Option<crate::http::server::ConnectionPlaces>),
}

/// Why the loop stops.
enum End {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// The client is gone (or cannot be written to): nothing more to say.
    Gone,
}

impl Session {
    /// A session of `visitor`, holding its places.
    pub(super) fn new(
        state: AppState,
        visitor: Visitor,
        address: IpAddr,
        permit: StreamPermit,
        connection: Option<crate::http::server::ConnectionPlaces>,
    ) -> Self {
        let now = Instant::now();
        Self {
            state,
            visitor,
            address,
            follows: StreamMap::new(),
            recent: VecDeque::new(),
            own: VecDeque::new(),
            budget: (now, 0),
            heard: now,
            _places: (permit, connection),
        }
    }

    /// Runs the socket to its end.
    pub(super) async fn run(mut self, mut socket: WebSocket) {
        // Boxed: the task of an idle socket keeps only the loop's own state, not room for the
        // largest thing a frame can make it do (sending a message runs the pipeline's ingest).
        let end = match Box::pin(self.start(&mut socket)).await {
            Ok(()) => self.serve(&mut socket).await,
            Err(end) => end,
        };
        if let End::Close(code, reason) = end {
            let close = Frame::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            }));
            let _ = tokio::time::timeout(WRITE_TIMEOUT, socket.send(close)).await;
        }
    }

    /// Follows the visitor's recent conversations and says so.
    async fn start(&mut self, socket: &mut WebSocket) -> Result<(), End> {
        let mut reader = self.state.store.reader();
        let recent = async {
            let Some(contact) =
                contacts::find_id(&mut reader, Channel::WEB, &self.visitor.external_id()).await?
            else {
                return Ok(Vec::new());
            };
            crate::store::conversations::page_for_contact(
                &mut reader,
                &contact,
                0,
                MAX_FOLLOWED as i64,
            )
            .await
            .map(|(page, _)| page)
        };
        let recent = match recent.await {
            Ok(recent) => recent,
            Err(e) => {
                tracing::error!(error = %e, "cannot list a visitor's conversations for their socket");
                return Err(End::Close(1011, "internal error"));
            }
        };
        // Oldest first, so that the most recent end up the least likely to be let go.
        let mut ids = Vec::new();
        for conversation in recent.into_iter().rev() {
            if conversation.mode == Mode::Closed {
                continue;
            }
            let from = Position {
                seq: conversation.last_seq,
                delta: 0,
            };
            if let Err(error) = self.follow(conversation.id.clone(), from).await {
                tracing::error!(error = error.message(), "cannot follow a conversation");
                return Err(End::Close(1011, "internal error"));
            }
            ids.push(conversation.id);
        }
        let interval = self.state.config.web.ws_ping_interval;
        write(socket, frames::connected(&ids, interval.as_millis())).await
    }

    /// The socket's loop.
    async fn serve(&mut self, socket: &mut WebSocket) -> End {
        let hub = self.state.hub.clone();
        let interval = self.state.config.web.ws_ping_interval;
        let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let result = tokio::select! {
                () = hub.closed() => return End::Close(GOING_AWAY, "the gateway is shutting down"),
                received = socket.recv() => match received {
                    None => return End::Gone,
                    Some(Err(error)) => return if too_big(&error) {
                        End::Close(TOO_BIG, "frame too large")
                    } else {
                        End::Gone
                    },
                    Some(Ok(frame)) => {
                        self.heard = Instant::now();
                        Box::pin(self.received(socket, frame)).await
                    }
                },
                Some((conversation, followed)) = self.follows.next(), if !self.follows.is_empty() => {
                    Box::pin(self.forward(socket, &conversation, &followed)).await
                }
                _ = pings.tick() => {
                    if self.heard.elapsed() >= interval * 2 {
                        return End::Close(NO_ANSWER, "no answer to pings");
                    }
                    write_frame(socket, Frame::Ping(Default::default())).await
                }
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    /// A frame from the client.
    async fn received(&mut self, socket: &mut WebSocket, frame: Frame) -> Result<(), End> {
        let text = match frame {
            Frame::Text(text) => text,
            // Answered by the socket itself; hearing them is enough.
            Frame::Ping(_) | Frame::Pong(_) => return Ok(()),
            Frame::Close(_) => return Err(End::Gone),
            Frame::Binary(_) => {
                return write(
                    socket,
                    frames::error(&FrameError {
                        code: "unsupported_frame",
                        message: "frames are JSON text".into(),
                        client_id: None,
                    }),
                )
                .await;
            }
        };
        if let Err(retry_after) = self.spend() {
            let error = FrameError {
                code: "rate_limited",
                message: format!(
                    "more than {FRAMES_PER_MINUTE} frames in a minute; try again in {retry_after} s"
                ),
                client_id: None,
            };
            return write(socket, frames::error(&error)).await;
        }
        match frames::parse(text.as_str()) {
            Err(error) => write(socket, frames::error(&error)).await,
            Ok(ClientFrame::Ping) => write(socket, frames::pong()).await,
            Ok(ClientFrame::Typing) => Ok(()),
            Ok(ClientFrame::Message { client_id, body }) => {
                let sent = chat::send(
                    &self.state,
                    &self.visitor,
                    self.address,
                    client_id.as_deref(),
                    body,
                    None,
                )
                .await;
                match sent {
                    Ok(accepted) => {
                        self.acknowledge(socket, client_id.as_deref(), accepted)
                            .await
                    }
                    Err(error) => {
                        write(socket, frames::api_error(&error, client_id.as_deref())).await
                    }
                }
            }
            Ok(ClientFrame::Resume {
                conversation_id,
                after_seq,
            }) => {
                let resumed = async {
                    let conversation = owned(&self.state, &self.visitor, &conversation_id).await?;
                    let from = Position {
                        seq: after_seq,
                        delta: 0,
                    };
                    self.follows.remove(&conversation.id);
                    self.follow(conversation.id, from).await
                };
                match resumed.await {
                    Ok(()) => Ok(()),
                    Err(error) => write(socket, frames::api_error(&error, None)).await,
                }
            }
            Ok(ClientFrame::Handoff {
                conversation_id,
                reason,
            }) => {
                let handoff = conversations::hand_off(
                    &self.state,
                    &self.visitor,
                    self.address,
                    &conversation_id,
                    reason,
                )
                .await;
                match handoff {
                    Ok(handoff) => {
                        // The notice shown to the visitor comes as a message of the conversation.
                        if !self.follows.contains_key(&conversation_id)
                            && let Some(notice) = &handoff.message
                        {
                            let from = Position {
                                seq: notice.seq - 1,
                                delta: 0,
                            };
                            if let Err(error) = self.follow(conversation_id, from).await {
                                return write(socket, frames::api_error(&error, None)).await;
                            }
                        }
                        write(socket, frames::handed_off(&handoff)).await
                    }
                    Err(error) => write(socket, frames::api_error(&error, None)).await,
                }
            }
        }
    }

    /// Acknowledges the client's message and follows its conversation from there on (its
    /// answer comes as typing, deltas and the message).
    async fn acknowledge(
        &mut self,
        socket: &mut WebSocket,
        client_id: Option<&str>,
        accepted: Accepted,
    ) -> Result<(), End> {
        let duplicate = matches!(accepted, Accepted::Repeat { .. });
        let message = accepted.message();
        if self.own.len() == OWN_MESSAGES {
            self.own.pop_front();
        }
        self.own.push_back(message.id.clone());
        let conversation = message.conversation_id.clone();
        let from = Position {
            seq: message.seq,
            delta: 0,
        };
        write(socket, frames::ack(client_id, message, duplicate)).await?;
        if self.follows.contains_key(&conversation) {
            self.touch(&conversation);
            return Ok(());
        }
        match self.follow(conversation, from).await {
            Ok(()) => Ok(()),
            Err(error) => write(socket, frames::api_error(&error, client_id)).await,
        }
    }

    /// An event of a followed conversation, to the client.
    async fn forward(
        &mut self,
        socket: &mut WebSocket,
        conversation: &ConversationId,
        followed: &Followed,
    ) -> Result<(), End> {
        if let Followed::Event { event, .. } = followed
            && let LiveEvent::Message(message) = event.as_ref()
        {
            // The client has its own message already, from the ack.
            if self.own.contains(&message.id) {
                return Ok(());
            }
            self.touch(conversation);
        }
        match frames::followed(conversation, followed) {
            Some(frame) => write(socket, frame).await,
            None => Ok(()),
        }
    }

    /// Follows a conversation from `from` (replacing how it was followed), letting go of the
    /// least recently active one when the socket follows as many as it may.
    async fn follow(
        &mut self,
        conversation: ConversationId,
        from: Position,
    ) -> Result<(), crate::http::ApiError> {
        let (replay, live) = follow(
            &self.state.store,
            &self.state.hub,
            conversation.clone(),
            from,
            false,
        )
        .await?;
        self.recent.retain(|id| *id != conversation);
        while self.recent.len() >= MAX_FOLLOWED {
            if let Some(oldest) = self.recent.pop_front() {
                self.follows.remove(&oldest);
            }
        }
        self.recent.push_back(conversation.clone());
        let follower: Follower = Box::pin(futures::stream::iter(replay).chain(live));
        self.follows.insert(conversation, follower);
        Ok(())
    }

    /// Marks a conversation as the most recently active.
    fn touch(&mut self, conversation: &ConversationId) {
        if self.recent.back() != Some(conversation) {
            self.recent.retain(|id| id != conversation);
            self.recent.push_back(conversation.clone());
        }
    }

    /// Counts a frame against the socket's budget; over it, the seconds until the next minute.
    fn spend(&mut self) -> Result<(), u64> {
        let (start, count) = &mut self.budget;
        let elapsed = start.elapsed();
        if elapsed >= Duration::from_secs(60) {
            *start = Instant::now();
            *count = 0;
        }
        if *count >= FRAMES_PER_MINUTE {
            return Err(60u64.saturating_sub(elapsed.as_secs()).max(1));
        }
        *count += 1;
        Ok(())
    }
}

/// Writes a text frame.
async fn write(socket: &mut WebSocket, text: String) -> Result<(), End> {
    write_frame(socket, Frame::Text(text.into())).await
}

/// Writes a frame, in bounded time.
async fn write_frame(socket: &mut WebSocket, frame: Frame) -> Result<(), End> {
    match tokio::time::timeout(WRITE_TIMEOUT, socket.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(End::Gone),
    }
}

/// Whether reading failed because a frame was over the size limit.
fn too_big(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(tungstenite::Error::Capacity(_)) = e.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        cause = e.source();
    }
    false
}
