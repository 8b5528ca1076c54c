//! What the crate's tests share: an in-memory [`Inbox`] standing in for the gateway, and the
//! recorded updates of `webhooks/telegram/`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use switchboard_channel::{Checkpoint, InboundEvent, Inbox, InboxError, Ingested};

/// A batch the inbox stored: its events and its checkpoint.
pub(crate) type Batch = (Vec<InboundEvent>, Option<Checkpoint>);

/// The gateway's inbox, in memory: it keeps every batch and the positions of cursors, and can be
/// told to fail (then it stores nothing, like the real one).
#[derive(Clone, Default)]
pub(crate) struct FakeInbox {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    batches: Vec<Batch>,
    positions: HashMap<String, String>,
    failures: usize,
    /// Every ingest, stored or not.
    attempts: Vec<Batch>,
}

impl FakeInbox {
    /// The batches stored so far.
    pub(crate) fn batches(&self) -> Vec<Batch> {
        self.state.lock().unwrap().batches.clone()
    }

    /// Every batch handed over, stored or refused.
    pub(crate) fn attempts(&self) -> Vec<Batch> {
        self.state.lock().unwrap().attempts.clone()
    }

    /// Makes the next `n` ingests fail.
    pub(crate) fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().failures = n;
    }
}

#[async_trait]
impl Inbox for FakeInbox {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn ingest(
        &self,
        events: Vec<InboundEvent>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Ingested, InboxError> {
        let mut state = self.state.lock().unwrap();
        state.attempts.push((events.clone(), checkpoint.clone()));
        if state.failures > 0 {
            state.failures -= 1;
            return Err(InboxError::Unavailable("the database is down".into()));
        }
        if let Some(Checkpoint::Cursor { name, value }) = &checkpoint {
            state.positions.insert(name.clone(), value.clone());
        }
        let ingested = Ingested {
            events: events.len(),
            stored: events
                .iter()
                .filter(|e| matches!(e, InboundEvent::Message(_)))
                .count(),
            ..Ingested::default()
        };
        state.batches.push((events, checkpoint));
        Ok(ingested)
    }

    async fn position(&self, cursor: &str) -> Result<Option<String>, InboxError> {
        Ok(self.state.lock().unwrap().positions.get(cursor).cloned())
    }
}

/// A recorded update of `webhooks/telegram/`.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../webhooks/telegram/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
