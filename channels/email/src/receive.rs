//! Receiving a mail, however it arrived (a provider's webhook, the raw route, the IMAP poller).
//!
//! The rules every route shares live here so that a mail is treated the same whichever way it
//! came: attachments beyond `email.max_attachments` are dropped (one mail must not fill the
//! media directory with thousands of files), automated mail is acknowledged but never ingested
//! (answering an auto-reply starts a loop), and everything else goes to the gateway's [`Inbox`]
//! as one message with its files inline — together with the webhook's one-time token or the
//! mailbox's position, in the same transaction.
//!
//! Replies to the gateway's staff notifications need nothing special: they carry the thread
//! token of the notification, and the gateway recognises it.

use serde_json::json;
use switchboard_channel::{Checkpoint, InboundEvent, Inbox, InboxError, Ingested, WebhookAnswer};

use crate::{InboundEmail, ReplyAddress};

/// What receiving a mail did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Received {
    /// Automated mail (auto-reply, bounce, mailing list): not stored, never answered.
    Ignored {
        /// Why.
        reason: String,
    },
    /// The mail went to the gateway.
    Ingested(Ingested),
}

impl From<Received> for WebhookAnswer {
    fn from(received: Received) -> Self {
        match received {
            Received::Ignored { reason } => {
                WebhookAnswer::Json(json!({"status": "ignored", "reason": reason}))
            }
            Received::Ingested(ingested) => ingested.into(),
        }
    }
}

/// Hands `email` to `inbox`, received at `ours`, keeping at most `max_attachments` files, with
/// `checkpoint` in the same transaction. An automated mail stores nothing but a mailbox's
/// position ([`Checkpoint::Cursor`]), so that the poller moves past it; a webhook's one-time
/// token only matters for mail that is stored.
pub(crate) async fn receive(
    inbox: &dyn Inbox,
    ours: &ReplyAddress,
    max_attachments: usize,
    mut email: InboundEmail,
    checkpoint: Option<Checkpoint>,
) -> Result<Received, InboxError> {
    let dropped = email.attachments.len().saturating_sub(max_attachments);
    if dropped > 0 {
        tracing::warn!(from = %email.from.address, dropped, kept = max_attachments,
            "a mail has more attachments than email.max_attachments; dropped the rest");
        email.attachments.truncate(max_attachments);
    }
    if let Some(reason) = email.automated.clone() {
        tracing::info!(from = %email.from.address, %reason, "ignored an automated mail");
        if let Some(cursor @ Checkpoint::Cursor { .. }) = checkpoint {
            inbox.ingest(Vec::new(), Some(cursor)).await?;
        }
        return Ok(Received::Ignored { reason });
    }
    let account = format!("{}@{}", ours.local, ours.domain);
    let mut message = email.into_message(&account);
    if dropped > 0 {
        message
            .metadata
            .insert("attachments_dropped".into(), dropped.into());
    }
    let ingested = inbox
        .ingest(vec![InboundEvent::Message(message)], checkpoint)
        .await?;
    Ok(Received::Ingested(ingested))
}
