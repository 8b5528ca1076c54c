//! Delivering an outbound message through its channel's provider.
//!
//! Every outbound message on a channel with a provider (everything but web chat) gets a `deliver`
//! job in the transaction that stores it. The job:
//!
//! - splits a text longer than the channel takes into parts (at paragraphs, sentences, words),
//!   sends them in order and records each part's provider id as soon as it is accepted, so a retry
//!   resumes after the parts already sent instead of repeating them;
//! - quotes the user's message when the user wrote again since (the answer would be ambiguous
//!   otherwise);
//! - tells the channel whether its customer-service window is open (some providers allow free text
//!   only for 24 hours after the user's last message), so the channel can substitute a template or refuse;
//! - on a transient failure (rate limit, provider outage) retries with exponential backoff, waiting
//!   at least as long as the provider asked; on a permanent one marks the message failed with the
//!   reason, and so does giving up after too many attempts.
//!
//! Jobs of one conversation run in order, one at a time (the queue's lanes), so the user receives
//! replies in the order they were written.

use switchboard_channel::{
    Choice, DeliveryStatus, OutboundContent, OutboundMessage, SendError, Sender, Sent, Thread,
    ThreadLine,
    text::{Measure, split_text},
};
use tracing::{Instrument, error, info_span, warn};

use super::queue::{RetryPolicy, Wake};
use crate::{
    channels::Channels,
    live::Hub,
    store::{
        Store, StoreError, contacts, jobs,
        messages::{self, DeliveryContext, Message},
        threads,
    },
    telemetry::metrics::{self, DeliveryOutcome},
    time::{Clock, Timestamp},
};

/// What delivery jobs work with.
#[derive(Clone)]
pub struct Deliveries {
    /// The database.
    pub store: Store,
    /// The gateway's clock.
    pub clock: Clock,
    /// Live events (status changes are published).
    pub hub: Hub,
    /// The channels' senders.
    pub channels: Channels,
    /// When to retry.
    pub policy: RetryPolicy,
    /// Wakes the delivery queue (the next message of a lane may go once this one is done).
    pub wake: Wake,
}

/// How an attempt ended.
enum Attempt {
    /// Every part is sent; the last one still has to be recorded (with the message's new status,
    /// in one transaction), unless every part was recorded already.
    Delivered {
        last_part: Option<(i64, String)>,
        substituted: Option<String>,
    },
    /// Try again later, not before `retry_after` when the provider said so.
    Retry {
        retry_after: Option<std::time::Duration>,
        reason: String,
    },
    /// Give up: the message failed.
    Failed(String),
    /// Give up: the recipient blocked us; they are marked unreachable.
    Unreachable(String),
}

impl Deliveries {
    /// Runs one delivery job.
    pub async fn run(&self, job: jobs::Job) -> Result<(), StoreError> {
        let span = info_span!("deliver", message = %job.subject, attempt = job.attempts);
        self.attempt(job).instrument(span).await
    }

    async fn attempt(&self, job: jobs::Job) -> Result<(), StoreError> {
        let id = crate::ids::MessageId::from(job.subject.as_str());
        let Some(ctx) = messages::delivery_context(&self.store, &id).await? else {
            // The message is gone; nothing to deliver.
            return self.finish(&job).await;
        };
        if ctx.message.status != DeliveryStatus::Pending {
            return self.finish(&job).await;
        }
        let channel = ctx.message.channel;
        let outcome = match self.channels.sender(channel) {
            None => Attempt::Failed(format!(
                "not_configured: the {channel} channel is not configured on this gateway"
            )),
            // Calling the provider would only be refused again (and count against the bot).
            Some(_) if ctx.recipient_unreachable_since.is_some() => Attempt::Failed(format!(
                "unreachable: the recipient has blocked this account since {}",
                ctx.recipient_unreachable_since
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            )),
            Some(sender) => self.send_parts(sender.as_ref(), &ctx).await?,
        };
        let now = self.clock.now();
        match outcome {
            // The usual end: the last part sent as it was written, recorded in one trip.
            Attempt::Delivered {
                last_part: Some((index, provider_message_id)),
                substituted: None,
            } => {
                let recorded = messages::record_sent(
                    &self.store,
                    channel,
                    &ctx.message.id,
                    index,
                    &provider_message_id,
                    &job.id,
                    now,
                )
                .await?;
                metrics::delivery(channel, DeliveryOutcome::Sent);
                // Waking the queue for nothing would cost a claim and a read.
                let lane_waits = recorded.as_ref().is_none_or(|r| r.lane_waits);
                if let Some(recorded) = recorded {
                    self.hub.update(&recorded.message);
                }
                if lane_waits {
                    self.wake.wake();
                }
            }
            Attempt::Delivered {
                last_part,
                substituted,
            } => {
                let mut tx = self.store.begin().await?;
                if let Some((index, provider_message_id)) = last_part {
                    messages::record_part(
                        &mut tx,
                        channel,
                        &ctx.message.id,
                        index,
                        &provider_message_id,
                    )
                    .await?;
                }
                let mut latest = messages::advance_status_of(
                    &mut tx,
                    &ctx.message.id,
                    DeliveryStatus::Sent,
                    now,
                    None,
                )
                .await?;
                if let Some(substituted) = substituted {
                    latest = messages::update_metadata(&mut tx, &ctx.message.id, |m| {
                        m.substituted = Some(substituted.to_string());
                    })
                    .await?;
                }
                if let Some(updated) =
                    messages::apply_early_statuses(&mut tx, channel, &ctx.message.id).await?
                {
                    latest = Some(updated);
                }
                jobs::finish(&mut tx, &job.id).await?;
                tx.commit().await?;
                metrics::delivery(channel, DeliveryOutcome::Sent);
                self.published(latest);
            }
            Attempt::Retry {
                retry_after,
                reason,
            } => match self.policy.next(job.attempts, retry_after) {
                Some(wait) => {
                    warn!(%reason, retry_in = ?wait, "delivery failed; retrying");
                    jobs::retry_at(&self.store, &job.id, now.plus(wait), &reason).await?;
                    metrics::delivery(channel, DeliveryOutcome::Retry);
                    self.wake.wake();
                }
                None => {
                    let reason = format!("gave up after {} attempts: {reason}", job.attempts);
                    self.fail(&job, &ctx.message, &reason, None).await?;
                }
            },
            Attempt::Failed(reason) => self.fail(&job, &ctx.message, &reason, None).await?,
            Attempt::Unreachable(reason) => {
                let reason = format!("unreachable: {reason}");
                self.fail(&job, &ctx.message, &reason, Some(&ctx.contact_id))
                    .await?;
            }
        }
        Ok(())
    }

    /// Sends the parts not sent yet, recording each one.
    async fn send_parts(
        &self,
        sender: &dyn Sender,
        ctx: &DeliveryContext,
    ) -> Result<Attempt, StoreError> {
        let message = &ctx.message;
        let parts = parts(message, sender.text_limit());
        let already = usize::try_from(ctx.parts_sent).unwrap_or(usize::MAX);
        let service_window_open = match sender.service_window() {
            None => true,
            Some(window) => {
                last_user_message_at(ctx).is_some_and(|at| at.plus(window) > self.clock.now())
            }
        };
        let thread = if sender.wants_thread() {
            Some(self.thread(ctx).await?)
        } else {
            None
        };
        let total = parts.len();
        for (index, content) in parts.into_iter().enumerate().skip(already) {
            let outbound = OutboundMessage {
                message_id: message.id.to_string(),
                account: ctx.account.clone(),
                to: ctx.recipient.clone(),
                reply_to: (index == 0 && ctx.user_wrote_since)
                    .then(|| ctx.answered_provider_id.clone())
                    .flatten(),
                content,
                service_window_open,
                thread: thread.clone(),
            };
            match sender.send(&outbound).await {
                Ok(Sent {
                    provider_message_id,
                    substituted,
                }) => {
                    let part = i64::try_from(index).unwrap_or(i64::MAX);
                    // A substitute (a template outside the window) stands for the whole message.
                    if substituted.is_some() || index + 1 == total {
                        return Ok(Attempt::Delivered {
                            last_part: Some((part, provider_message_id)),
                            substituted,
                        });
                    }
                    // Recorded at once: a retry after a later part fails resumes after this one.
                    let mut tx = self.store.begin().await?;
                    messages::record_part(
                        &mut tx,
                        message.channel,
                        &message.id,
                        part,
                        &provider_message_id,
                    )
                    .await?;
                    tx.commit().await?;
                }
                Err(SendError::Transient {
                    retry_after,
                    reason,
                }) => {
                    return Ok(Attempt::Retry {
                        retry_after,
                        reason,
                    });
                }
                Err(SendError::Unreachable { reason }) => return Ok(Attempt::Unreachable(reason)),
                Err(SendError::Permanent { code, reason }) => {
                    let part = if total > 1 {
                        format!(" (part {} of {total})", index + 1)
                    } else {
                        String::new()
                    };
                    return Ok(Attempt::Failed(format!("{code}: {reason}{part}")));
                }
            }
        }
        Ok(Attempt::Delivered {
            last_part: None,
            substituted: None,
        })
    }

    /// The thread a message continues, for channels that carry it (e-mail): subject, what it
    /// answers, the conversation's provider ids, the reply token, and the last few messages.
    async fn thread(&self, ctx: &DeliveryContext) -> Result<Thread, StoreError> {
        let message = &ctx.message;
        let mut tx = self.store.begin().await?;
        let token =
            threads::token_for(&mut tx, &message.conversation_id, None, self.clock.now()).await?;
        tx.commit().await?;
        let mut reader = self.store.reader();
        let references = messages::provider_ids_before(
            &mut reader,
            &message.conversation_id,
            message.seq,
            THREAD_REFERENCES,
        )
        .await?;
        let history = messages::page(
            &mut reader,
            &message.conversation_id,
            Some(message.seq),
            THREAD_HISTORY,
        )
        .await?
        .into_iter()
        .map(|m| ThreadLine {
            role: m.role.as_str().to_owned(),
            author: m.author,
            text: m.content,
            at: m.created_at.to_datetime(),
        })
        .collect();
        Ok(Thread {
            subject: ctx.conversation_title.clone(),
            in_reply_to: ctx.answered_provider_id.clone(),
            references,
            token,
            history,
        })
    }

    /// Marks the message failed (and, when they blocked us, the contact unreachable), finishing
    /// the job.
    async fn fail(
        &self,
        job: &jobs::Job,
        message: &Message,
        reason: &str,
        unreachable_contact: Option<&str>,
    ) -> Result<(), StoreError> {
        error!(
            conversation = %message.conversation_id,
            channel = %message.channel,
            %reason,
            "message could not be delivered"
        );
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let failed = messages::mark_failed(&mut tx, &message.id, reason, now).await?;
        if let Some(contact_id) = unreachable_contact {
            contacts::mark_unreachable(&mut tx, contact_id, reason, now).await?;
        }
        jobs::finish(&mut tx, &job.id).await?;
        tx.commit().await?;
        metrics::delivery(message.channel, DeliveryOutcome::Failed);
        self.published(failed);
        self.wake.wake();
        Ok(())
    }

    async fn finish(&self, job: &jobs::Job) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        jobs::finish(&mut tx, &job.id).await?;
        tx.commit().await?;
        self.wake.wake();
        Ok(())
    }

    /// Publishes a changed message and lets the lane's next message go.
    fn published(&self, changed: Option<Message>) {
        if let Some(message) = changed {
            self.hub.update(&message);
        }
        self.wake.wake();
    }
}

/// How many provider ids of earlier messages a threaded message refers to.
const THREAD_REFERENCES: i64 = 20;
/// How many earlier messages a threaded message shows below itself.
const THREAD_HISTORY: i64 = 6;

/// The longest text shown above buttons: the tightest limit of the channels'.
const CHOICES_BODY_LIMIT: usize = 1024;

/// What a message is sent as: its attachments, then its text split to the channel's limit, the
/// last part with the buttons the agent offered (when it is short enough to carry them).
fn parts(message: &Message, limit: Option<(usize, Measure)>) -> Vec<OutboundContent> {
    let mut parts: Vec<OutboundContent> = message
        .attachments
        .iter()
        .map(|attachment| OutboundContent::Media {
            attachment: attachment.clone(),
            caption: None,
        })
        .collect();
    if !message.content.trim().is_empty() || parts.is_empty() {
        let texts = match limit {
            Some((max, measure)) => split_text(&message.content, max, measure),
            None => vec![message.content.clone()],
        };
        parts.extend(texts.into_iter().map(|body| OutboundContent::Text { body }));
    }
    let choices: Vec<Choice> = message.metadata.choices.clone();
    if !choices.is_empty()
        && let Some(last) = parts.last_mut()
        && let OutboundContent::Text { body } = last
        && body.chars().count() <= CHOICES_BODY_LIMIT
    {
        *last = OutboundContent::Choices {
            body: std::mem::take(body),
            choices,
        };
    }
    parts
}

/// When the user last wrote: the provider's time of their newest message when it has one (a
/// delivery the provider retried for hours arrives late), else when it was stored.
fn last_user_message_at(ctx: &DeliveryContext) -> Option<Timestamp> {
    let stored = ctx.last_inbound_at?;
    let written = ctx
        .last_inbound_metadata
        .as_ref()
        .and_then(|m| m.sent_at)
        .map(Timestamp::from);
    Some(written.map_or(stored, |w| w.min(stored)))
}

#[async_trait::async_trait]
impl super::QueueHandler for Deliveries {
    fn queue(&self) -> &'static str {
        jobs::DELIVER
    }

    fn wake(&self) -> &Wake {
        &self.wake
    }

    async fn handle(&self, job: jobs::Job) -> Result<(), StoreError> {
        self.run(job).await
    }
}
