//! How long a staff member's live stream lasts: no longer than their right to see it.
//!
//! Rights are checked when a stream opens, but a stream can stay open for hours. Meanwhile a
//! colleague may claim the waiting conversation an expert was watching, a supervisor may transfer
//! it away, the expert may sign out, or an admin may disable the account. So every staff stream
//! (a conversation's, a supervisor's observation, the notices of `/v1/expert/events`) runs until
//! [`access_ends`]: the credential is checked again whenever a conversation it watches changes
//! owner or an account is disabled or signs out, and every [`RECHECK_EVERY`] regardless (an expired token, a
//! session that ended). A stream that ends is reconnected by the browser, and the reconnection
//! gets the answer a fresh request would: 404 or 401.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::{AppState, extract::StaffUser};
use crate::{experts::Experts, live::NoticeKind};

/// The longest a stream goes without checking its credential again.
pub(super) const RECHECK_EVERY: Duration = Duration::from_secs(30);

/// Notices after which access may have changed.
fn changes_access(kind: NoticeKind) -> bool {
    use NoticeKind::*;
    matches!(
        kind,
        Queued | Assigned | Transferred | Released | Closed | TimedOut | Disabled | SignedOut
    )
}

/// A place among the open event streams for a staff member's stream (see `limits::streams`).
pub(super) fn stream_place(
    state: &AppState,
    staff: &StaffUser,
) -> Result<crate::limits::streams::StreamPermit, super::ApiError> {
    Ok(state.limits.streams.open(
        crate::limits::streams::StreamOwner::Staff(&staff.user.id),
        staff.origin.address,
    )?)
}

/// Completes when `staff` may no longer watch: their credential stopped being valid or, with
/// `conversation_id`, they may no longer see that conversation. Also completes at shutdown.
pub(super) async fn access_ends(
    state: AppState,
    staff: StaffUser,
    conversation_id: Option<crate::ids::ConversationId>,
) {
    let mut notices = state.hub.subscribe_staff();
    let mut tick = tokio::time::interval(RECHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: the stream was just authorised.
    tick.tick().await;
    let closed = state.hub.clone();
    let closed = closed.closed();
    tokio::pin!(closed);
    loop {
        tokio::select! {
            () = &mut closed => return,
            notice = notices.recv() => match notice {
                Ok(notice) => {
                    let about_it = notice.conversation_id.is_some()
                        && notice.conversation_id == conversation_id;
                    let about_them = notice.expert_id.as_ref() == Some(&staff.user.id);
                    // After missed notices (another instance's), check, to be safe.
                    let missed = notice.kind == NoticeKind::Reload;
                    if !(missed || changes_access(notice.kind) && (about_it || about_them)) {
                        continue;
                    }
                }
                // Missed some: check, to be safe.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {}
        }
        match still_allowed(&state, &staff, conversation_id.as_ref()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(user = %staff.user.id, conversation = ?conversation_id,
                    "a staff stream ended: access ended");
                return;
            }
            // The database is unavailable: keep the stream; the next check decides.
            Err(e) => tracing::warn!(error = %e, "cannot check a staff stream's access"),
        }
    }
}

async fn still_allowed(
    state: &AppState,
    staff: &StaffUser,
    conversation_id: Option<&crate::ids::ConversationId>,
) -> Result<bool, crate::store::StoreError> {
    let Some(user) = state.staff.recheck(&staff.credential).await? else {
        return Ok(false);
    };
    let Some(id) = conversation_id else {
        return Ok(true);
    };
    let conversation = crate::store::conversations::get(&mut state.store.reader(), id).await?;
    Ok(conversation.is_some_and(|c| Experts::may_see(&user, &c)))
}
