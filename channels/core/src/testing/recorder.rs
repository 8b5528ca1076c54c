//! What a fake received, shared between its server task and the test: a list that grows, and a
//! wake-up for tests waiting until it shows what they expect (a gateway sends in the background,
//! so an end-to-end test waits for the request rather than sleeping).

use std::{
    fmt::Debug,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::sync::Notify;

/// How long [`Recorder::wait_for`] waits: long enough for retries with backoff, short enough for a
/// failing test to say so.
pub const WAIT: Duration = Duration::from_secs(20);

/// A list of received items (requests, mails) that tests read and wait on. Clones share it.
pub struct Recorder<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    items: Mutex<Vec<T>>,
    changed: Notify,
}

impl<T> Clone for Recorder<T> {
    fn clone(&self) -> Self {
        Recorder {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Default for Recorder<T> {
    fn default() -> Self {
        Recorder {
            shared: Arc::new(Shared {
                items: Mutex::new(Vec::new()),
                changed: Notify::new(),
            }),
        }
    }
}

impl<T: Clone> Recorder<T> {
    /// Adds an item and wakes the waiters; returns how many there are now.
    pub fn record(&self, item: T) -> usize {
        let count = {
            let mut items = self.items();
            items.push(item);
            items.len()
        };
        self.changed();
        count
    }

    /// Everything recorded so far, in order.
    pub fn all(&self) -> Vec<T> {
        self.items().clone()
    }

    /// How many items were recorded.
    pub fn len(&self) -> usize {
        self.items().len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.items().is_empty()
    }

    /// Wakes the waiters: something they may be waiting on changed besides the list (a fake's
    /// count of accepted messages, say).
    pub fn changed(&self) {
        self.shared.changed.notify_waiters();
    }

    /// Waits up to `timeout` until `done` holds (checked now and after every change); whether it
    /// did.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn() -> bool) -> bool {
        tokio::time::timeout(timeout, async {
            loop {
                // Registered before the check, so a change between the two is not missed.
                let changed = self.shared.changed.notified();
                if done() {
                    return;
                }
                changed.await;
            }
        })
        .await
        .is_ok()
    }

    fn items(&self) -> MutexGuard<'_, Vec<T>> {
        super::lock(&self.shared.items)
    }
}

impl<T: Clone + Debug> Recorder<T> {
    /// Waits up to [`WAIT`] until `done` holds, or panics saying that `peer` did not see `what`
    /// in time, with everything it did see.
    pub async fn wait_for(&self, peer: &str, what: &str, done: impl Fn() -> bool) {
        if !self.wait_until(WAIT, done).await {
            panic!(
                "{peer} did not see {what} in time; it saw {:#?}",
                self.all()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_on_each_record() {
        let recorder = Recorder::<u32>::default();
        let writer = recorder.clone();
        let writing = tokio::spawn(async move {
            for n in 0..3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                writer.record(n);
            }
        });
        assert!(
            recorder
                .wait_until(Duration::from_secs(5), || recorder.len() == 3)
                .await
        );
        writing.await.unwrap();
        assert_eq!(recorder.all(), [0, 1, 2]);
        assert!(
            !recorder
                .wait_until(Duration::from_millis(20), || recorder.len() > 3)
                .await
        );
    }
}
