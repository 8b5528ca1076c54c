//! The gateway's inbox in memory, for testing webhooks and pollers without a database: it keeps
//! every batch with its checkpoint, answers like the gateway would (a provider id seen before is a
//! duplicate, a one-time token seen before is a replay, a cursor's position is kept), can be told
//! to fail (then it stores nothing, like the real one), and has a clock a test may fix.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{Checkpoint, InboundEvent, InboundMessage, Inbox, InboxError, Ingested};

/// A batch handed to the inbox: its events and its checkpoint.
pub type Batch = (Vec<InboundEvent>, Option<Checkpoint>);

/// An in-memory [`Inbox`]. Clones share it (hand one to a plug-in, read the other).
#[derive(Clone, Default)]
pub struct FakeInbox {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// `None`: the system clock.
    now: Option<DateTime<Utc>>,
    /// Every ingest, stored or refused.
    attempts: Vec<Batch>,
    /// The batches stored.
    batches: Vec<Batch>,
    positions: HashMap<String, String>,
    /// One-time values seen, by scope.
    once: HashSet<(String, String)>,
    /// Provider message ids stored.
    seen: HashSet<String>,
    /// How the next ingests fail, first to last.
    next_failures: VecDeque<InboxError>,
    /// How every ingest fails once `next_failures` is empty.
    failure: Option<InboxError>,
}

impl FakeInbox {
    /// An inbox on the system clock.
    pub fn new() -> FakeInbox {
        FakeInbox::default()
    }

    /// An inbox whose clock says `now`.
    pub fn at(now: DateTime<Utc>) -> FakeInbox {
        let inbox = FakeInbox::default();
        inbox.set_now(now);
        inbox
    }

    /// Sets the clock to `now`.
    pub fn set_now(&self, now: DateTime<Utc>) {
        self.state().now = Some(now);
    }

    /// Makes the next `n` ingests fail as if the database were down.
    pub fn fail_next(&self, n: usize) {
        let mut state = self.state();
        for _ in 0..n {
            state
                .next_failures
                .push_back(InboxError::Unavailable("the database is down".into()));
        }
    }

    /// Makes the next ingest fail with `error` (after those already queued).
    pub fn fail_once(&self, error: InboxError) {
        self.state().next_failures.push_back(error);
    }

    /// Makes every later ingest fail with `error`.
    pub fn fail_with(&self, error: InboxError) {
        self.state().failure = Some(error);
    }

    /// The batches stored so far.
    pub fn batches(&self) -> Vec<Batch> {
        self.state().batches.clone()
    }

    /// Every batch handed over so far, stored or refused.
    pub fn attempts(&self) -> Vec<Batch> {
        self.state().attempts.clone()
    }

    /// The events of every stored batch, in order.
    pub fn events(&self) -> Vec<InboundEvent> {
        self.batches()
            .into_iter()
            .flat_map(|(events, _)| events)
            .collect()
    }

    /// The messages of every stored batch, in order.
    pub fn messages(&self) -> Vec<InboundMessage> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                InboundEvent::Message(message) => Some(message),
                _ => None,
            })
            .collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        super::lock(&self.state)
    }
}

#[async_trait]
impl Inbox for FakeInbox {
    fn now(&self) -> DateTime<Utc> {
        self.state().now.unwrap_or_else(Utc::now)
    }

    async fn ingest(
        &self,
        events: Vec<InboundEvent>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Ingested, InboxError> {
        let mut state = self.state();
        state.attempts.push((events.clone(), checkpoint.clone()));
        if let Some(error) = state.next_failures.pop_front() {
            return Err(error);
        }
        if let Some(error) = &state.failure {
            return Err(error.clone());
        }
        match &checkpoint {
            Some(Checkpoint::Once { scope, token })
                if !state.once.insert((scope.clone(), token.clone())) =>
            {
                return Err(InboxError::Replayed);
            }
            Some(Checkpoint::Once { .. }) => {}
            Some(Checkpoint::Cursor { name, value }) => {
                state.positions.insert(name.clone(), value.clone());
            }
            None => {}
        }
        let mut ingested = Ingested {
            events: events.len(),
            ..Ingested::default()
        };
        for event in &events {
            match event {
                InboundEvent::Message(message) => match &message.provider_message_id {
                    Some(id) if !state.seen.insert(id.clone()) => ingested.duplicates += 1,
                    _ => ingested.stored += 1,
                },
                InboundEvent::Status(_) => ingested.statuses += 1,
                InboundEvent::Edit(_) | InboundEvent::Reachability(_) => {}
            }
        }
        state.batches.push((events, checkpoint));
        Ok(ingested)
    }

    async fn position(&self, cursor: &str) -> Result<Option<String>, InboxError> {
        Ok(self.state().positions.get(cursor).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContactRef, Content, ConversationRef, DeliveryStatus, StatusUpdate};

    fn message(id: &str) -> InboundEvent {
        InboundEvent::Message(InboundMessage {
            provider_message_id: Some(id.into()),
            sender_key: None,
            account: "support".into(),
            from: ContactRef {
                external_id: "42".into(),
                display_name: None,
                username: None,
            },
            conversation: ConversationRef::Current,
            sent_at: None,
            reply_to: None,
            content: Content::Text { body: "hi".into() },
            subject: None,
            intent: None,
            metadata: Default::default(),
            files: Vec::new(),
        })
    }

    fn status() -> InboundEvent {
        InboundEvent::Status(StatusUpdate {
            provider_message_id: "out-1".into(),
            status: DeliveryStatus::Read,
            at: None,
            error: None,
        })
    }

    #[tokio::test]
    async fn counts_like_the_gateway() {
        let inbox = FakeInbox::new();
        let first = inbox
            .ingest(vec![message("m-1"), status()], None)
            .await
            .unwrap();
        assert_eq!((first.events, first.stored, first.statuses), (2, 1, 1));
        let again = inbox.ingest(vec![message("m-1")], None).await.unwrap();
        assert_eq!((again.stored, again.duplicates), (0, 1));
        assert_eq!(inbox.batches().len(), 2);
        assert_eq!(inbox.messages().len(), 2);
    }

    #[tokio::test]
    async fn keeps_positions_and_refuses_replays() {
        let inbox = FakeInbox::at(DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        assert_eq!(inbox.now().timestamp(), 1_700_000_000);
        let cursor = Checkpoint::Cursor {
            name: "imap".into(),
            value: "7".into(),
        };
        inbox.ingest(Vec::new(), Some(cursor)).await.unwrap();
        assert_eq!(inbox.position("imap").await, Ok(Some("7".into())));
        let once = Checkpoint::Once {
            scope: "mailgun".into(),
            token: "t".into(),
        };
        inbox.ingest(Vec::new(), Some(once.clone())).await.unwrap();
        assert_eq!(
            inbox.ingest(Vec::new(), Some(once)).await,
            Err(InboxError::Replayed)
        );
        assert_eq!(inbox.batches().len(), 2);
        assert_eq!(inbox.attempts().len(), 3);
    }

    #[tokio::test]
    async fn fails_as_told_and_stores_nothing_then() {
        let inbox = FakeInbox::new();
        inbox.fail_next(1);
        inbox.fail_once(InboxError::ConversationClosed);
        assert!(matches!(
            inbox.ingest(vec![message("m-1")], None).await,
            Err(InboxError::Unavailable(_))
        ));
        assert_eq!(
            inbox.ingest(vec![message("m-1")], None).await,
            Err(InboxError::ConversationClosed)
        );
        assert_eq!(
            inbox
                .ingest(vec![message("m-1")], None)
                .await
                .unwrap()
                .stored,
            1
        );
        inbox.fail_with(InboxError::TooLarge { limit: 1 });
        for _ in 0..2 {
            assert_eq!(
                inbox.ingest(vec![message("m-2")], None).await,
                Err(InboxError::TooLarge { limit: 1 })
            );
        }
        assert_eq!(inbox.batches().len(), 1);
    }
}
