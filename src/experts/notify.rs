//! Telling an expert that a conversation is theirs, besides their dashboard (which hears it live):
//!
//! - an e-mail with the conversation so far, whose reply address carries a token bound to that
//!   conversation and that expert — replying to it answers the end user (see `inbox`);
//! - a JSON notice POSTed to `experts.webhook_url`, signed in `X-Switchboard-Signature:
//!   sha256=<hex HMAC-SHA256 of the body>` with `experts.webhook_secret`, for integrations.
//!
//! Both are jobs written in the transaction that assigns the conversation, each retried on its
//! own (a failing webhook never re-sends the mail). A notice for an assignment that has ended by
//! the time it runs is dropped.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard_channel::{OutboundContent, OutboundMessage, SendError, Thread, ThreadLine};
use tracing::{error, warn};

use crate::{
    config::ExpertsConfig,
    ids::{ConversationId, UserId},
    jobs::{
        QueueHandler,
        queue::{RetryPolicy, Wake},
    },
    store::{
        Store, StoreError, Tx, contacts,
        conversations::{self, Conversation},
        jobs::{self, NewJob},
        messages, threads,
        users::{self, User},
    },
    time::{Clock, Timestamp},
};

/// The queue of notification mails to experts.
pub const EMAIL_QUEUE: &str = "notify_email";
/// The queue of notification webhooks.
pub const WEBHOOK_QUEUE: &str = "notify_webhook";
/// Messages of the conversation a notification shows.
const HISTORY: i64 = 20;

/// What a notification job is about.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assignment {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Its new expert.
    pub expert_id: UserId,
}

/// Writes the notification jobs of an assignment into its transaction.
pub async fn enqueue(
    tx: &mut Tx,
    conversation_id: &ConversationId,
    expert_id: &UserId,
    config: &ExpertsConfig,
    now: Timestamp,
) -> Result<(), StoreError> {
    let assignment = Assignment {
        conversation_id: conversation_id.clone(),
        expert_id: expert_id.clone(),
    };
    let subject = format!("{conversation_id}/{expert_id}/{}", now.micros());
    if config.notify_by_email {
        jobs::enqueue(
            tx,
            NewJob::new(EMAIL_QUEUE, &subject).with_payload(&assignment),
            now,
        )
        .await?;
    }
    if config.webhook_url.is_some() {
        jobs::enqueue(
            tx,
            NewJob::new(WEBHOOK_QUEUE, subject).with_payload(&assignment),
            now,
        )
        .await?;
    }
    Ok(())
}

/// What the notification jobs work with.
pub struct Notifications {
    /// The database.
    pub store: Store,
    /// The gateway's clock.
    pub clock: Clock,
    /// Sends the notification mails, when a channel can mail staff.
    pub mailer: Option<std::sync::Arc<dyn switchboard_channel::Sender>>,
    /// For webhooks.
    pub http: reqwest::Client,
    /// Webhook URL and secret.
    pub config: ExpertsConfig,
    /// Where the dashboard is, for links.
    pub public_url: String,
    /// When to retry.
    pub policy: RetryPolicy,
    /// Wakes the mail queue.
    pub wake_email: Wake,
    /// Wakes the webhook queue.
    pub wake_webhook: Wake,
}

/// An assignment that is still current: its conversation, expert and end user.
struct Current {
    conversation: Conversation,
    expert: User,
    contact_name: String,
    contact_id: String,
    history: Vec<messages::Message>,
}

enum Outcome {
    Done,
    Retry(Option<std::time::Duration>, String),
    Failed(String),
}

impl Notifications {
    async fn current(&self, job: &jobs::Job) -> Result<Option<Current>, StoreError> {
        let assignment: Assignment = job.payload()?;
        let mut reader = self.store.reader();
        let Some(conversation) = conversations::get(&mut reader, &assignment.conversation_id)
            .await?
            .filter(|c| c.expert_id.as_deref() == Some(assignment.expert_id.as_str()))
        else {
            return Ok(None);
        };
        let Some(expert) = users::get(&mut reader, &assignment.expert_id).await? else {
            return Ok(None);
        };
        let contact_id = contacts::external_id(&mut reader, &conversation.contact_id)
            .await?
            .unwrap_or_default();
        let contact_name = contacts::display_name(&mut reader, &conversation.contact_id)
            .await?
            .unwrap_or_else(|| contact_id.clone());
        let history = messages::page(&mut reader, &conversation.id, None, HISTORY).await?;
        Ok(Some(Current {
            conversation,
            expert,
            contact_name,
            contact_id,
            history,
        }))
    }

    fn dashboard_link(&self, conversation: &Conversation) -> String {
        format!(
            "{}/dashboard/conversations/{}",
            self.public_url, conversation.id
        )
    }

    /// Mails the expert the conversation so far.
    pub async fn email(&self, job: jobs::Job) -> Result<(), StoreError> {
        let Some(current) = self.current(&job).await? else {
            return self.finish(&job).await;
        };
        let Some(sender) = self.mailer.clone() else {
            warn!("experts.notify_by_email is on, but no channel can send mail to staff");
            return self.finish(&job).await;
        };
        let Current {
            conversation,
            expert,
            contact_name,
            history,
            ..
        } = current;
        let token = {
            let mut tx = self.store.begin().await?;
            let token = threads::token_for(
                &mut tx,
                &conversation.id,
                Some(&expert.id),
                self.clock.now(),
            )
            .await?;
            tx.commit().await?;
            token
        };
        let title = conversation.title.clone().unwrap_or_default();
        let body = format!(
            "{contact_name} ({channel}) is waiting for you: \u{201c}{title}\u{201d}.\n\n\
             Reply to this e-mail to answer them: your reply reaches them on {channel}. \
             Or open the conversation on the dashboard: {link}\n\n\
             The conversation so far is below.",
            channel = conversation.channel,
            link = self.dashboard_link(&conversation),
        );
        let message = OutboundMessage {
            message_id: job.id.to_string(),
            account: String::new(),
            to: expert.email.clone(),
            reply_to: None,
            content: OutboundContent::Text { body },
            service_window_open: true,
            thread: Some(Thread {
                subject: Some(format!(
                    "{contact_name} on {}: {title}",
                    conversation.channel
                )),
                in_reply_to: None,
                references: Vec::new(),
                token,
                history: history
                    .into_iter()
                    .map(|m| ThreadLine {
                        role: m.role.as_str().to_owned(),
                        author: m.metadata.expert_name.clone().or(m.author),
                        text: m.content,
                        at: m.created_at.to_datetime(),
                    })
                    .collect(),
            }),
        };
        let outcome = match sender.send(&message).await {
            Ok(_) => Outcome::Done,
            Err(SendError::Transient {
                retry_after,
                reason,
            }) => Outcome::Retry(retry_after, reason),
            Err(SendError::Permanent { code, reason }) => {
                Outcome::Failed(format!("{code}: {reason}"))
            }
            Err(SendError::Unreachable { reason }) => Outcome::Failed(reason),
        };
        self.settle(&job, outcome, &self.wake_email, "notification mail")
            .await
    }

    /// POSTs the signed notice to the integration's webhook.
    pub async fn webhook(&self, job: jobs::Job) -> Result<(), StoreError> {
        let (Some(url), Some(secret)) = (&self.config.webhook_url, &self.config.webhook_secret)
        else {
            return self.finish(&job).await;
        };
        let Some(current) = self.current(&job).await? else {
            return self.finish(&job).await;
        };
        let conversation = &current.conversation;
        // The signature covers `sent_at`, so a receiver can refuse a replayed old notice.
        let body = json!({
            "event": "conversation.assigned",
            "sent_at": self.clock.now(),
            "conversation": {
                "id": conversation.id,
                "channel": conversation.channel,
                "title": conversation.title,
                "assigned_at": conversation.assigned_at,
                "dashboard_url": self.dashboard_link(conversation),
            },
            "expert": {
                "id": current.expert.id,
                "email": current.expert.email,
                "name": current.expert.display_name,
            },
            "contact": {"name": current.contact_name, "id": current.contact_id},
            "messages": current.history.iter().map(|m| json!({
                "role": m.role, "content": m.content, "at": m.created_at,
            })).collect::<Vec<_>>(),
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let outcome = match self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-switchboard-signature", sign(&body, secret))
            .timeout(std::time::Duration::from_secs(10))
            .body(body)
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => Outcome::Done,
            Ok(response)
                if response.status().is_server_error()
                    || response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS =>
            {
                Outcome::Retry(None, format!("the webhook answered {}", response.status()))
            }
            Ok(response) => Outcome::Failed(format!("the webhook answered {}", response.status())),
            Err(e) => Outcome::Retry(None, format!("the webhook could not be reached: {e}")),
        };
        self.settle(&job, outcome, &self.wake_webhook, "assignment webhook")
            .await
    }

    async fn settle(
        &self,
        job: &jobs::Job,
        outcome: Outcome,
        wake: &Wake,
        what: &str,
    ) -> Result<(), StoreError> {
        match outcome {
            Outcome::Done => self.finish(job).await,
            Outcome::Retry(hint, reason) => match self.policy.next(job.attempts, hint) {
                Some(wait) => {
                    warn!(%reason, retry_in = ?wait, "{what} failed; retrying");
                    jobs::retry_at(&self.store, &job.id, self.clock.now().plus(wait), &reason)
                        .await?;
                    wake.wake();
                    Ok(())
                }
                None => {
                    error!(%reason, "{what} failed for good");
                    self.finish(job).await
                }
            },
            Outcome::Failed(reason) => {
                error!(%reason, "{what} failed");
                self.finish(job).await
            }
        }
    }

    async fn finish(&self, job: &jobs::Job) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        jobs::finish(&mut tx, &job.id).await?;
        tx.commit().await
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the signature of outbound webhooks.
pub fn sign(body: &[u8], secret: &str) -> String {
    switchboard_channel::signature::sign_sha256(secret.as_bytes(), body)
}

/// The mail queue: one notification mail per job.
pub struct MailQueue(pub Arc<Notifications>);

#[async_trait::async_trait]
impl QueueHandler for MailQueue {
    fn queue(&self) -> &'static str {
        EMAIL_QUEUE
    }

    fn wake(&self) -> &Wake {
        &self.0.wake_email
    }

    async fn handle(&self, job: jobs::Job) -> Result<(), StoreError> {
        self.0.email(job).await
    }
}

/// The webhook queue: one signed notice per job.
pub struct WebhookQueue(pub Arc<Notifications>);

#[async_trait::async_trait]
impl QueueHandler for WebhookQueue {
    fn queue(&self) -> &'static str {
        WEBHOOK_QUEUE
    }

    fn wake(&self) -> &Wake {
        &self.0.wake_webhook
    }

    async fn handle(&self, job: jobs::Job) -> Result<(), StoreError> {
        self.0.webhook(job).await
    }
}
