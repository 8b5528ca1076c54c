//! Long polling for Telegram bots without a public URL.
//!
//! Telegram confirms updates by offset: calling `getUpdates(offset = n + 1)` drops every update up
//! to `n` for good. The poller therefore stores a batch and the id of its last update in one
//! transaction ([`Pipeline::ingest_to`] with a cursor) before it asks for the next batch: after a
//! crash before the commit, the same updates come again (and are recognised by their ids); after
//! it, the stored offset confirms them. A restart neither loses nor repeats an update.

use std::{sync::Arc, time::Duration};

use switchboard_channel::{Channel, SendError};
use switchboard_telegram::parse_update;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::telegram::Telegram;
use crate::{
    pipeline::{Checkpoint, Pipeline},
    store::{Store, cursors},
};

/// The most updates one getUpdates call returns.
const BATCH: u8 = 100;

/// What one poller needs.
pub struct Poller {
    /// The bots.
    pub telegram: Arc<Telegram>,
    /// Which bot this poller reads for.
    pub bot: String,
    /// Where updates go.
    pub pipeline: Pipeline,
    /// Where the offset is kept.
    pub store: Store,
    /// How long one getUpdates call waits for updates.
    pub timeout: Duration,
    /// Ends the loop.
    pub stop: CancellationToken,
}

impl Poller {
    /// The cursor holding the id of the last update stored for this bot.
    fn cursor_name(&self) -> String {
        format!("telegram:{}:last_update_id", self.bot)
    }

    /// Polls until stopped.
    pub async fn run(self) {
        let Some(client) = self.telegram.bots().bot(&self.bot).cloned() else {
            return;
        };
        // getUpdates is refused while a webhook is set; pending updates are kept.
        while let Err(e) = client.delete_webhook().await {
            warn!(bot = %self.bot, error = %e, "cannot remove the webhook before polling");
            if self.pause(Duration::from_secs(5)).await {
                return;
            }
        }
        self.telegram.identify(&self.bot).await;
        info!(bot = %self.bot, "polling Telegram for updates");
        let mut failures = 0u32;
        loop {
            let offset = match self.offset().await {
                Ok(offset) => offset,
                Err(e) => {
                    error!(bot = %self.bot, error = %e, "cannot read the polling offset");
                    if self.pause(Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            let updates = tokio::select! {
                () = self.stop.cancelled() => return,
                updates = client.get_updates(offset, self.timeout, BATCH) => updates,
            };
            let wait = match updates {
                Ok(updates) if updates.is_empty() => None,
                Ok(updates) => match self.store_batch(updates).await {
                    Ok(()) => None,
                    // Not confirmed: the same updates come again.
                    Err(e) => {
                        error!(bot = %self.bot, error = %e, "cannot store Telegram updates");
                        Some(Duration::from_secs(1))
                    }
                },
                Err(SendError::Transient {
                    retry_after,
                    reason,
                }) => {
                    failures += 1;
                    warn!(bot = %self.bot, %reason, "getUpdates failed; trying again");
                    Some(retry_after.unwrap_or_else(|| backoff(failures)))
                }
                Err(e) => {
                    // A revoked token, or another process polling the same bot.
                    failures += 1;
                    error!(bot = %self.bot, error = %e, "getUpdates was refused");
                    Some(Duration::from_secs(30))
                }
            };
            if let Some(wait) = wait {
                if self.pause(wait).await {
                    return;
                }
            } else {
                failures = 0;
            }
        }
    }

    /// The offset of the next getUpdates call: one past the last update stored.
    async fn offset(&self) -> Result<i32, crate::store::StoreError> {
        let last = cursors::get(&mut self.store.reader(), &self.cursor_name()).await?;
        Ok(last
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(0, |last| i32::try_from(last + 1).unwrap_or(i32::MAX)))
    }

    /// Stores a batch with the id of its last update, then answers its button presses.
    async fn store_batch(
        &self,
        updates: Vec<switchboard_telegram::Update>,
    ) -> Result<(), crate::pipeline::IngestError> {
        let identity = self.telegram.identity(&self.bot);
        let mut last = 0u32;
        let mut events = Vec::new();
        let mut callbacks = Vec::new();
        for update in updates {
            let parsed = parse_update(update, &identity);
            last = last.max(parsed.update_id);
            events.extend(parsed.events);
            callbacks.extend(parsed.callback_query_id);
        }
        let cursor = Checkpoint::Cursor {
            name: self.cursor_name(),
            value: last.to_string(),
        };
        self.pipeline
            .ingest_to(Channel::Telegram, events, Some(cursor))
            .await?;
        for id in callbacks {
            self.telegram.answer_callback(&self.bot, id);
        }
        Ok(())
    }

    /// Waits, unless stopped first; returns whether it was stopped.
    async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => true,
            () = tokio::time::sleep(wait) => false,
        }
    }
}

/// 1 s, 2 s, 4 s … up to a minute.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}
