//! Handoff: the conversation goes from the AI to the experts.
//!
//! From then on the AI stays silent: turns of a conversation in expert mode store nothing, and a
//! reply an agent was producing when the handoff happened is dropped (see `turn`). The end user is
//! told with a system message, which is also how the change shows on event streams
//! (`metadata.mode`).

use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::{
    ids::ConversationId,
    live::NoticeKind,
    store::{
        StoreError, Tx,
        conversations::{self, Conversation, Mode},
        messages::{self, Message, NewMessage},
    },
    time::Timestamp,
};

/// Turns watched for a handoff, by conversation: the watch's id and its token.
pub(super) type Watched = std::collections::HashMap<ConversationId, (u64, CancellationToken)>;

/// Ids of watches, so that a watch that ends removes itself and not its successor.
static NEXT_WATCH: AtomicU64 = AtomicU64::new(0);

/// A turn watched for a handoff (see [`Inner::watch_replies`]).
pub(super) struct ReplyInProgress<'a> {
    inner: &'a Inner,
    conversation_id: ConversationId,
    id: u64,
    /// Cancelled by a handoff.
    pub token: CancellationToken,
}

impl Drop for ReplyInProgress<'_> {
    fn drop(&mut self) {
        let mut watched = self.inner.watched();
        if watched
            .get(&self.conversation_id)
            .is_some_and(|(id, _)| *id == self.id)
        {
            watched.remove(&self.conversation_id);
        }
    }
}

/// What the end user is told when an expert is asked to take over.
pub const HANDOFF_NOTICE: &str = "You've asked for a person. An expert will join this conversation shortly; the assistant will stay quiet until then.";

/// Why a handoff could not happen.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// The conversation does not exist (or is deleted).
    #[error("conversation not found")]
    NotFound,
    /// The conversation is closed.
    #[error("the conversation is closed")]
    Closed,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of a handoff request.
#[derive(Debug, Clone)]
pub struct Handoff {
    /// The conversation as it is now (in expert mode).
    pub conversation: Conversation,
    /// The notice stored for the end user; `None` when experts already had the conversation.
    pub notice: Option<Message>,
}

/// Switches a conversation in AI mode to expert mode and stores the notice, inside `tx`.
/// Returns `None` (changing nothing) when the conversation is not in AI mode.
pub async fn to_expert(
    tx: &mut Tx,
    conversation_id: &ConversationId,
    reason: &str,
    now: Timestamp,
) -> Result<Option<Message>, StoreError> {
    let Some(conversation) = conversations::take_seq_for_handoff(tx, conversation_id, now).await?
    else {
        return Ok(None);
    };
    let metadata = crate::store::meta::MessageMeta {
        mode: Some(Mode::Expert),
        reason: Some(reason.to_string()),
        ..Default::default()
    };
    messages::insert(
        tx,
        NewMessage::system_notice(&conversation, HANDOFF_NOTICE, metadata),
        now,
    )
    .await
}

impl Inner {
    /// A turn of a conversation begins, before it reads the conversation: a handoff committed
    /// from now on cancels the returned watch's token, so the reply the agent may be writing is
    /// abandoned. Lanes run one turn per conversation at a time, so there is one watch at most;
    /// dropping it ends the watch. Handoffs of this process only: a reply written by another
    /// instance is dropped when it is stored, as always.
    pub(super) fn watch_replies(&self, conversation_id: &ConversationId) -> ReplyInProgress<'_> {
        let id = NEXT_WATCH.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        self.watched()
            .insert(conversation_id.clone(), (id, token.clone()));
        ReplyInProgress {
            inner: self,
            conversation_id: conversation_id.clone(),
            id,
            token,
        }
    }

    /// The conversation was handed to the experts: the reply being written, if any, is
    /// abandoned.
    pub(super) fn abandon_reply(&self, conversation_id: &ConversationId) {
        if let Some((_, token)) = self.watched().remove(conversation_id) {
            token.cancel();
        }
    }

    fn watched(&self) -> std::sync::MutexGuard<'_, Watched> {
        // A panic elsewhere cannot leave the map inconsistent: every change is one call.
        self.replies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A conversation entered the experts' queue: dashboards hear of it, and a free expert gets
    /// it at once if there is one.
    pub(super) fn queued(&self, conversation_id: &ConversationId) {
        self.hub
            .staff_notice(NoticeKind::Queued, conversation_id, None);
        self.experts.assign_soon();
    }

    /// Hands a conversation to the experts. Asking again is harmless.
    pub(super) async fn handoff(
        &self,
        conversation_id: &ConversationId,
        reason: &str,
    ) -> Result<Handoff, HandoffError> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let notice = to_expert(&mut tx, conversation_id, reason, now).await?;
        let conversation = conversations::get(&mut tx, conversation_id)
            .await?
            .ok_or(HandoffError::NotFound)?;
        if conversation.mode == Mode::Closed {
            return Err(HandoffError::Closed);
        }
        tx.commit_then(|| {
            if let Some(notice) = &notice {
                self.hub.message(notice);
            }
        })
        .await?;
        if notice.is_some() {
            self.abandon_reply(conversation_id);
            self.deliver_soon(conversation.channel);
            self.queued(conversation_id);
        }
        Ok(Handoff {
            conversation,
            notice,
        })
    }
}
