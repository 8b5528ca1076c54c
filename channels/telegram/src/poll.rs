//! Long polling for Telegram bots without a public URL.
//!
//! Telegram confirms updates by offset: calling `getUpdates(offset = n + 1)` drops every update up
//! to `n` for good. The poller therefore hands a batch to the gateway's [`Inbox`] with the id of
//! its last update as a [`Checkpoint::Cursor`], which the inbox stores in the same transaction,
//! before it asks for the next batch; the next offset is read back from the inbox
//! ([`Inbox::position`]). After a crash before the commit (or a failed ingest), the same updates
//! come again (and are recognised by their ids); after it, the stored offset confirms them. A
//! restart neither loses nor repeats an update.

use std::{sync::Arc, time::Duration};

use switchboard_channel::{Checkpoint, Inbox, InboxError, SendError};
use teloxide::types::Update;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::bots::Telegram;

/// The most updates one getUpdates call returns.
const BATCH: u8 = 100;

/// One bot's poller.
pub(crate) struct Poller {
    /// The bots.
    pub telegram: Arc<Telegram>,
    /// Which bot this poller reads for.
    pub bot: String,
    /// Where updates go, and where the offset is kept.
    pub inbox: Arc<dyn Inbox>,
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
    async fn offset(&self) -> Result<i32, InboxError> {
        let last = self.inbox.position(&self.cursor_name()).await?;
        Ok(last
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(0, |last| i32::try_from(last + 1).unwrap_or(i32::MAX)))
    }

    /// Stores a batch with the id of its last update, then answers its button presses.
    async fn store_batch(&self, updates: Vec<Update>) -> Result<(), InboxError> {
        let last = updates.iter().map(|u| u.id.0).max().unwrap_or_default();
        let cursor = Checkpoint::Cursor {
            name: self.cursor_name(),
            value: last.to_string(),
        };
        self.telegram
            .deliver(&self.bot, updates, Some(cursor), self.inbox.as_ref())
            .await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(0), Duration::from_secs(1));
    }
}
