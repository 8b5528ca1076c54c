//! Live events across instances, over PostgreSQL's `LISTEN`/`NOTIFY`.
//!
//! Every event published on this instance's hub is also sent, as a small [`Signal`], to the
//! other instances sharing the database; their signals are published on this hub. A signal about
//! a stored message names it and the listening instance reads it from the database, so a
//! notification stays far below PostgreSQL's 8000-byte limit and never carries more than the
//! database holds. Typing notices, deltas and staff notices travel whole.
//!
//! Notifications are a wake-up, not the record: PostgreSQL drops those sent while a listener
//! reconnects, and the relay drops signals when it falls far behind. Either way the listeners
//! catch up from the database — a lost connection makes every stream here re-read its
//! conversation and every dashboard reload ([`LiveEvent::Resync`](super::LiveEvent::Resync)),
//! and a stream that sees a message with a gap before it reads what it missed.
//!
//! Signals are sent in batches, one round trip each, by one task: the hot path only hands a signal
//! to a channel. Signals are applied one at a time, in the order they were sent, and only for
//! conversations someone here watches.
//!
//! Two more things travel the same way: word that turns were handed to an instance (see
//! `pipeline::placement`), and, every second, what the rate limits counted here, which the other
//! instances count too — so a client spreading requests over the instances meets one limit.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Hub, ReplyProgress, StaffNotice};
use crate::{
    ids::{ConversationId, MessageId},
    limits::{Charge, Limits},
    store::{
        Store, messages,
        signals::{self, Heard, MAX_PAYLOAD},
    },
    telemetry::metrics::{SignalOutcome, live_signals},
};

/// The topic of the PostgreSQL channel the instances talk on (see [`signals::channel`]).
const TOPIC: &str = "live";
/// Signals waiting to be sent. Beyond this the relay is far behind, and signals are dropped.
const BACKLOG: usize = 8_192;
/// Signals sent in one round trip at most.
const BATCH: usize = 256;
/// How long to wait before listening again after the database could not be reached.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often the other instances are told what the rate limits counted here.
const SHARE_RATES_EVERY: Duration = Duration::from_secs(1);
/// Rate charges per signal: well under the payload limit.
const CHARGES_PER_SIGNAL: usize = 100;

/// What one instance tells the others about an event it published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    /// A message was stored (read it from the database).
    Message {
        /// Its conversation.
        conversation_id: ConversationId,
        /// The message.
        message_id: MessageId,
    },
    /// A stored message changed (read it again).
    Update {
        /// Its conversation.
        conversation_id: ConversationId,
        /// The message.
        message_id: MessageId,
    },
    /// An agent started answering a message.
    Typing {
        /// The conversation.
        conversation_id: ConversationId,
        /// The message being answered.
        progress: ReplyProgress,
    },
    /// A piece of the reply being streamed.
    Delta {
        /// The conversation.
        conversation_id: ConversationId,
        /// Its position in the reply, from 1.
        index: u32,
        /// The text.
        content: String,
    },
    /// A reply ended without a message.
    EndReply {
        /// The conversation.
        conversation_id: ConversationId,
    },
    /// A notice for staff dashboards.
    Staff {
        /// The notice.
        notice: StaffNotice,
    },
    /// Turns were handed to the instance `to` (see `pipeline::placement`).
    Turns {
        /// The instance.
        to: String,
        /// The messages whose turns they are.
        messages: Vec<MessageId>,
    },
    /// An instance started: the others relay to it from now on.
    Hello,
    /// What the sender's rate limits counted lately.
    Charges {
        /// The events, by rate and key.
        charges: Vec<Charge>,
    },
}

/// A signal as sent: who sent it, so an instance skips its own.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    #[serde(flatten)]
    signal: Signal,
}

/// Starts relaying `hub`'s events and what `limits` count to and from the other instances on the
/// database, until `stop`. On SQLite (one process) there is nobody to relay to, and nothing
/// starts.
pub fn start(
    store: &Store,
    hub: &Hub,
    limits: &Arc<Limits>,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    if store.backend() != crate::store::Backend::Postgres {
        return None;
    }
    let (sender, receiver) = mpsc::channel(BACKLOG);
    if hub.inner.relay.set(sender).is_err() {
        // A hub relays through one relay only.
        return None;
    }
    limits.share();
    let from: Arc<str> = store.instance().into();
    let (store, hub, limits) = (store.clone(), hub.clone(), limits.clone());
    Some(tokio::spawn(async move {
        let channel = loop {
            match signals::channel(&store, TOPIC).await {
                Ok(Some(channel)) => break Arc::<str>::from(channel),
                Ok(None) => return,
                Err(e) => warn!(error = %e, "cannot name the channel to the other instances"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RETRY_AFTER) => {}
            }
        };
        let sending = send(
            store.clone(),
            channel.clone(),
            from.clone(),
            receiver,
            limits.clone(),
            stop.clone(),
        );
        // Listening first: the others may answer the hello at once.
        hub.relay(|| Signal::Hello);
        let listening = listen(store, channel, hub, limits, from, stop);
        tokio::join!(sending, listening);
    }))
}

/// Sends the hub's signals in batches until `stop` (what is queued then is not sent: the
/// instance is going away, and its streams with it).
async fn send(
    store: Store,
    channel: Arc<str>,
    from: Arc<str>,
    mut signals: mpsc::Receiver<Signal>,
    limits: Arc<Limits>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut share = tokio::time::interval(SHARE_RATES_EVERY);
    share.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            n = signals.recv_many(&mut batch, BATCH) => if n == 0 { return },
            _ = share.tick() => {
                let charges = limits.take_charges();
                batch.extend(charges.chunks(CHARGES_PER_SIGNAL).map(|chunk| Signal::Charges {
                    charges: chunk.to_vec(),
                }));
                if batch.is_empty() {
                    continue;
                }
            }
        }
        let payloads: Vec<String> = batch
            .drain(..)
            .filter_map(|signal| encode(&from, signal))
            .collect();
        match signals::notify(&store, &channel, &payloads).await {
            Ok(()) => live_signals(SignalOutcome::Sent, payloads.len()),
            Err(e) => {
                warn!(error = %e, signals = payloads.len(), "cannot tell the other instances about live events");
                live_signals(SignalOutcome::Dropped, payloads.len());
            }
        }
    }
}

/// The payload of a signal, or `None` when it is too long to send (a huge delta: the reply's
/// message, which follows, holds the text).
fn encode(from: &str, signal: Signal) -> Option<String> {
    let payload = serde_json::to_string(&Envelope {
        from: from.to_owned(),
        signal,
    })
    .ok()?;
    if payload.len() > MAX_PAYLOAD {
        live_signals(SignalOutcome::Dropped, 1);
        return None;
    }
    Some(payload)
}

/// Listens to the other instances' signals until `stop`, reconnecting when the connection is
/// lost; after every (re)connection the streams here re-read what they may have missed.
async fn listen(
    store: Store,
    channel: Arc<str>,
    hub: Hub,
    limits: Arc<Limits>,
    from: Arc<str>,
    stop: CancellationToken,
) {
    loop {
        let listener = tokio::select! {
            () = stop.cancelled() => return,
            listener = signals::listen(&store, &channel) => listener,
        };
        let mut listener = match listener {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "cannot listen to the other instances; trying again");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY_AFTER) => continue,
                }
            }
        };
        hub.resync();
        loop {
            let heard = tokio::select! {
                () = stop.cancelled() => return,
                heard = listener.next() => heard,
            };
            match heard {
                Ok(Heard::Payload(payload)) => {
                    apply(&store, &hub, &limits, &from, &payload).await;
                }
                Ok(Heard::Gap) => {
                    debug!("the connection to the other instances was lost and reopened");
                    hub.resync();
                }
                Err(e) => {
                    warn!(error = %e, "lost the connection to the other instances; listening again");
                    break;
                }
            }
        }
    }
}

/// Publishes another instance's signal on this hub.
async fn apply(store: &Store, hub: &Hub, limits: &Limits, me: &str, payload: &str) {
    let envelope: Envelope = match serde_json::from_str(payload) {
        Ok(envelope) => envelope,
        Err(e) => {
            // Another version of the gateway, during an upgrade: its streams resync later.
            debug!(error = %e, "a signal this version does not read");
            return;
        }
    };
    if envelope.from == me {
        return;
    }
    live_signals(SignalOutcome::Received, 1);
    hub.set_others(true);
    match envelope.signal {
        Signal::Message {
            conversation_id,
            message_id,
        } => {
            if hub.is_watched(&conversation_id)
                && let Some(message) = read(store, hub, &message_id).await
            {
                hub.message_here(&message);
            }
        }
        Signal::Update {
            conversation_id,
            message_id,
        } => {
            if hub.is_watched(&conversation_id)
                && let Some(message) = read(store, hub, &message_id).await
            {
                hub.update_here(&message);
            }
        }
        Signal::Typing {
            conversation_id,
            progress,
        } => {
            if hub.is_watched(&conversation_id) {
                hub.start_reply_here(&conversation_id, progress);
            }
        }
        Signal::Delta {
            conversation_id,
            index,
            content,
        } => {
            hub.delta_here(&conversation_id, &content, Some(index));
        }
        Signal::EndReply { conversation_id } => hub.end_reply_here(&conversation_id),
        Signal::Staff { notice } => hub.send_staff_here(notice),
        Signal::Turns { to, messages } => {
            if to == me {
                hub.handed_here(messages);
            }
        }
        Signal::Charges { charges } => limits.charge(&charges),
        Signal::Hello => {}
    }
}

/// Reads a message another instance published; when the database cannot be read now, the
/// streams here re-read later instead.
async fn read(store: &Store, hub: &Hub, id: &MessageId) -> Option<messages::Message> {
    match messages::get(&mut store.reader(), id.as_str()).await {
        Ok(message) => message,
        Err(e) => {
            warn!(error = %e, message = %id, "cannot read another instance's message");
            hub.resync();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_small_and_name_their_sender() {
        let payload = encode(
            "gw-1",
            Signal::Message {
                conversation_id: "c1".into(),
                message_id: "m1".into(),
            },
        )
        .unwrap();
        assert_eq!(
            payload,
            r#"{"from":"gw-1","kind":"message","conversation_id":"c1","message_id":"m1"}"#
        );
        let back: Envelope = serde_json::from_str(&payload).unwrap();
        assert_eq!(back.from, "gw-1");
        assert!(matches!(back.signal, Signal::Message { .. }));
    }

    #[test]
    fn a_full_signal_of_rate_charges_fits_in_a_notification() {
        use crate::limits::RateName;
        let worst = Charge(
            RateName::AddressConversations,
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".into(),
            u32::MAX,
        );
        let payload = encode(
            "an-instance-name-of-some-length-0000000000",
            Signal::Charges {
                charges: vec![worst; CHARGES_PER_SIGNAL],
            },
        );
        assert!(payload.is_some_and(|p| p.len() <= MAX_PAYLOAD));
    }

    #[test]
    fn a_delta_too_long_to_send_is_left_to_the_final_message() {
        let long = Signal::Delta {
            conversation_id: "c1".into(),
            index: 1,
            content: "x".repeat(MAX_PAYLOAD),
        };
        assert_eq!(encode("gw-1", long), None);
    }
}
