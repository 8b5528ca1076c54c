//! Test doubles shared by the unit tests: an in-memory [`Inbox`] that records what it is given,
//! refuses one-time tokens it saw before (as the gateway does) and can be told to fail.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use switchboard_channel::{Checkpoint, InboundEvent, InboundMessage, Inbox, InboxError, Ingested};

/// What the fake inbox was given: each batch with its checkpoint.
pub(crate) type Batch = (Vec<InboundEvent>, Option<Checkpoint>);

pub(crate) struct FakeInbox {
    now: DateTime<Utc>,
    batches: Mutex<Vec<Batch>>,
    once: Mutex<HashSet<(String, String)>>,
    positions: Mutex<HashMap<String, String>>,
    fail: Mutex<Option<InboxError>>,
}

impl FakeInbox {
    /// An inbox whose clock says `now`.
    pub(crate) fn at(now: DateTime<Utc>) -> FakeInbox {
        FakeInbox {
            now,
            batches: Mutex::default(),
            once: Mutex::default(),
            positions: Mutex::default(),
            fail: Mutex::default(),
        }
    }

    /// Every later `ingest` fails with `error`.
    pub(crate) fn fail_with(&self, error: InboxError) {
        *self.fail.lock().unwrap() = Some(error);
    }

    pub(crate) fn batches(&self) -> Vec<Batch> {
        self.batches.lock().unwrap().clone()
    }

    /// The messages of every batch, in order.
    pub(crate) fn messages(&self) -> Vec<InboundMessage> {
        self.batches()
            .into_iter()
            .flat_map(|(events, _)| events)
            .filter_map(|event| match event {
                InboundEvent::Message(message) => Some(message),
                _ => None,
            })
            .collect()
    }
}

#[async_trait]
impl Inbox for FakeInbox {
    fn now(&self) -> DateTime<Utc> {
        self.now
    }

    async fn ingest(
        &self,
        events: Vec<InboundEvent>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Ingested, InboxError> {
        if let Some(error) = self.fail.lock().unwrap().clone() {
            return Err(error);
        }
        match &checkpoint {
            Some(Checkpoint::Once { scope, token })
                if !self
                    .once
                    .lock()
                    .unwrap()
                    .insert((scope.clone(), token.clone())) =>
            {
                return Err(InboxError::Replayed);
            }
            Some(Checkpoint::Once { .. }) => {}
            Some(Checkpoint::Cursor { name, value }) => {
                self.positions
                    .lock()
                    .unwrap()
                    .insert(name.clone(), value.clone());
            }
            None => {}
        }
        let stored = events
            .iter()
            .filter(|event| matches!(event, InboundEvent::Message(_)))
            .count();
        let ingested = Ingested {
            events: events.len(),
            stored,
            ..Ingested::default()
        };
        self.batches.lock().unwrap().push((events, checkpoint));
        Ok(ingested)
    }

    async fn position(&self, cursor: &str) -> Result<Option<String>, InboxError> {
        Ok(self.positions.lock().unwrap().get(cursor).cloned())
    }
}
