//! Conversations: who the end user talks to, on which channel, and who answers now.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Serialize, Serializer, ser::SerializeStruct};
use sqlx::types::Json;
use switchboard_channel::Channel;
use uuid::Uuid;

use super::{Db, StoreError, Tx, query};
use crate::time::Timestamp;

/// Who answers a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// An AI agent answers.
    Ai,
    /// A human expert owns the conversation; the AI stays silent.
    Expert,
    /// Nobody answers; new messages are refused.
    Closed,
}

impl Mode {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Ai => "ai",
            Mode::Expert => "expert",
            Mode::Closed => "closed",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ai" => Ok(Mode::Ai),
            "expert" => Ok(Mode::Expert),
            "closed" => Ok(Mode::Closed),
            other => Err(format!("unknown conversation mode {other:?}")),
        }
    }
}

impl TryFrom<String> for Mode {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A stored conversation.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Conversation {
    /// Its id (UUIDv7).
    pub id: String,
    /// The channel it runs on.
    #[sqlx(try_from = "String")]
    pub channel: Channel,
    /// Which of our identities on the channel it runs through.
    pub account: String,
    /// The end user.
    pub contact_id: String,
    /// Who answers.
    #[sqlx(try_from = "String")]
    pub mode: Mode,
    /// The agent the conversation is locked to, if any.
    pub active_agent: Option<String>,
    /// When the lock was last taken or renewed.
    pub locked_at: Option<Timestamp>,
    /// How long the lock lasts after `locked_at`.
    pub lock_ttl_secs: Option<i64>,
    /// A short title, from the first message.
    pub title: Option<String>,
    /// The seq of the newest message.
    pub last_seq: i64,
    /// Created.
    pub created_at: Timestamp,
    /// Last activity.
    pub updated_at: Timestamp,
    /// Soft-deleted, if set.
    pub deleted_at: Option<Timestamp>,
    /// Free-form data.
    pub metadata: Json<serde_json::Map<String, serde_json::Value>>,
}

impl Conversation {
    /// When the agent lock runs out, if there is one.
    pub fn lock_expires_at(&self) -> Option<Timestamp> {
        match (self.locked_at, self.lock_ttl_secs) {
            (Some(at), Some(ttl)) => Some(at.plus(Duration::from_secs(ttl.max(0) as u64))),
            _ => None,
        }
    }

    /// The agent holding a lock that is still valid at `now`.
    pub fn locked_agent(&self, now: Timestamp) -> Option<&str> {
        match self.lock_expires_at() {
            Some(expires) if expires > now => self.active_agent.as_deref(),
            _ => None,
        }
    }
}

impl Serialize for Conversation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Conversation", 9)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("channel", &self.channel)?;
        st.serialize_field("title", &self.title)?;
        st.serialize_field("mode", &self.mode)?;
        st.serialize_field("agent", &self.active_agent)?;
        st.serialize_field("lock_expires_at", &self.lock_expires_at())?;
        st.serialize_field("last_seq", &self.last_seq)?;
        st.serialize_field("created_at", &self.created_at)?;
        st.serialize_field("updated_at", &self.updated_at)?;
        st.end()
    }
}

/// Expands to a statement with the conversation columns spliced in (they are a constant, so the
/// statement stays a `&'static str`).
macro_rules! with_columns {
    ($before:literal, $after:literal) => {
        concat!(
            $before,
            " id, channel, account, contact_id, mode, active_agent, locked_at, lock_ttl_secs, \
             title, last_seq, created_at, updated_at, deleted_at, metadata ",
            $after
        )
    };
}

/// What a new conversation starts with.
#[derive(Debug, Clone)]
pub struct NewConversation<'a> {
    /// The channel.
    pub channel: Channel,
    /// Our identity on it.
    pub account: &'a str,
    /// The end user.
    pub contact_id: &'a str,
    /// Title from the first message.
    pub title: Option<String>,
}

/// Creates a conversation whose first message takes seq 1.
pub async fn create(
    tx: &mut Tx,
    new: NewConversation<'_>,
    now: Timestamp,
) -> Result<Conversation, StoreError> {
    tx.fetch_one(
        query(with_columns!(
            "INSERT INTO conversations (id, channel, account, contact_id, title, last_seq, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6) RETURNING",
            ""
        ))
        .bind(Uuid::now_v7().to_string())
        .bind(new.channel.as_str())
        .bind(new.account)
        .bind(new.contact_id)
        .bind(new.title)
        .bind(now),
    )
    .await
}

/// Takes the next seq of a live conversation for a new message, and marks it active. Returns the
/// conversation with the new `last_seq`, or `None` if it does not exist or is deleted. Locks the
/// row on PostgreSQL, which orders concurrent writers of one conversation.
pub async fn take_seq(
    tx: &mut Tx,
    id: &str,
    now: Timestamp,
) -> Result<Option<Conversation>, StoreError> {
    tx.fetch_optional(
        query(with_columns!(
            "UPDATE conversations SET last_seq = last_seq + 1, updated_at = $2 \
             WHERE id = $1 AND deleted_at IS NULL RETURNING",
            ""
        ))
        .bind(id)
        .bind(now),
    )
    .await
}

/// Like [`take_seq`], but only when the conversation belongs to the contact with this channel
/// identity; anybody else's conversation looks like a missing one.
pub async fn take_seq_for_owner(
    tx: &mut Tx,
    id: &str,
    channel: Channel,
    external_id: &str,
    now: Timestamp,
) -> Result<Option<Conversation>, StoreError> {
    tx.fetch_optional(
        query(with_columns!(
            "UPDATE conversations SET last_seq = last_seq + 1, updated_at = $4 \
             WHERE id = $1 AND deleted_at IS NULL AND contact_id = \
             (SELECT id FROM contacts WHERE channel = $2 AND external_id = $3) RETURNING",
            ""
        ))
        .bind(id)
        .bind(channel.as_str())
        .bind(external_id)
        .bind(now),
    )
    .await
}

/// The contact's newest open conversation on a channel account.
pub async fn current_for_contact(
    db: &mut impl Db,
    channel: Channel,
    account: &str,
    contact_id: &str,
) -> Result<Option<Conversation>, StoreError> {
    db.fetch_optional(
        query(with_columns!(
            "SELECT",
            "FROM conversations WHERE contact_id = $1 AND channel = $2 AND account = $3 \
             AND deleted_at IS NULL AND mode <> 'closed' ORDER BY updated_at DESC LIMIT 1"
        ))
        .bind(contact_id)
        .bind(channel.as_str())
        .bind(account),
    )
    .await
}

/// A live (not deleted) conversation by id.
pub async fn get(db: &mut impl Db, id: &str) -> Result<Option<Conversation>, StoreError> {
    db.fetch_optional(
        query(with_columns!(
            "SELECT",
            "FROM conversations WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id),
    )
    .await
}

/// A conversation and the message of it that should be answered next.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WithNextTurn {
    /// The conversation.
    #[sqlx(flatten)]
    pub conversation: Conversation,
    /// The id of its oldest message still on the pipeline's work list, if any.
    pub next_turn: Option<String>,
}

/// A live conversation, with the id of the message it should answer next (see
/// `pending_turns`). One query.
pub async fn get_with_next_turn(
    db: &mut impl Db,
    id: &str,
) -> Result<Option<WithNextTurn>, StoreError> {
    db.fetch_optional(
        query(with_columns!(
            "SELECT",
            ", (SELECT message_id FROM pending_turns WHERE conversation_id = $1 ORDER BY seq LIMIT 1) \
             AS next_turn FROM conversations WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id),
    )
    .await
}

/// A live conversation of the contact with this channel identity.
pub async fn get_for_owner(
    db: &mut impl Db,
    id: &str,
    channel: Channel,
    external_id: &str,
) -> Result<Option<Conversation>, StoreError> {
    db.fetch_optional(
        query(with_columns!(
            "SELECT",
            "FROM conversations WHERE id = $1 AND deleted_at IS NULL AND contact_id = \
             (SELECT id FROM contacts WHERE channel = $2 AND external_id = $3)"
        ))
        .bind(id)
        .bind(channel.as_str())
        .bind(external_id),
    )
    .await
}

/// One page of a contact's live conversations, most recently active first, and the total.
pub async fn page_for_contact(
    db: &mut impl Db,
    contact_id: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Conversation>, i64), StoreError> {
    let (total,): (i64,) = db
        .fetch_one(
            query(
                "SELECT COUNT(*) FROM conversations WHERE contact_id = $1 AND deleted_at IS NULL",
            )
            .bind(contact_id),
        )
        .await?;
    let page = db
        .fetch_all(
            query(with_columns!(
                "SELECT",
                "FROM conversations WHERE contact_id = $1 AND deleted_at IS NULL \
                 ORDER BY updated_at DESC, id DESC LIMIT $2 OFFSET $3"
            ))
            .bind(contact_id)
            .bind(limit)
            .bind(offset),
        )
        .await?;
    Ok((page, total))
}

/// Soft-deletes a live conversation of a contact. Returns whether it existed.
pub async fn soft_delete(
    tx: &mut Tx,
    id: &str,
    contact_id: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let n = tx
        .execute(
            query(
                "UPDATE conversations SET deleted_at = $3, updated_at = $3 \
                 WHERE id = $1 AND contact_id = $2 AND deleted_at IS NULL",
            )
            .bind(id)
            .bind(contact_id)
            .bind(now),
        )
        .await?;
    Ok(n == 1)
}

/// Takes the next seq for an agent's reply and locks the conversation to that agent for `ttl`
/// (renewing a lock of the same agent once more than half of it has passed, as
/// [`super::messages::append_reply`] does) — provided the AI still answers it. Returns `None` when
/// the conversation left AI mode or was deleted while the agent was working.
pub async fn take_seq_for_agent(
    tx: &mut Tx,
    id: &str,
    agent: &str,
    ttl: Duration,
    now: Timestamp,
) -> Result<Option<Conversation>, StoreError> {
    tx.fetch_optional(
        query(with_columns!(
            "UPDATE conversations SET last_seq = last_seq + 1, updated_at = $4, active_agent = $2, \
             locked_at = CASE WHEN active_agent = $2 AND locked_at + lock_ttl_secs * 500000 > $4 \
             THEN locked_at ELSE $4 END, lock_ttl_secs = $3 \
             WHERE id = $1 AND mode = 'ai' AND deleted_at IS NULL RETURNING",
            ""
        ))
        .bind(id)
        .bind(agent)
        .bind(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
        .bind(now),
    )
    .await
}

/// Hands a conversation in AI mode to the experts and takes a seq for the notice that says so.
/// Returns `None` when the conversation is not in AI mode (or gone).
pub async fn take_seq_for_handoff(
    tx: &mut Tx,
    id: &str,
    now: Timestamp,
) -> Result<Option<Conversation>, StoreError> {
    tx.fetch_optional(
        query(with_columns!(
            "UPDATE conversations SET mode = 'expert', last_seq = last_seq + 1, updated_at = $2 \
             WHERE id = $1 AND mode = 'ai' AND deleted_at IS NULL RETURNING",
            ""
        ))
        .bind(id)
        .bind(now),
    )
    .await
}

/// Clears every agent lock that expired before `now`. Returns how many were cleared.
pub async fn clear_expired_locks(tx: &mut Tx, now: Timestamp) -> Result<u64, StoreError> {
    tx.execute(
        query(
            "UPDATE conversations SET active_agent = NULL, locked_at = NULL, lock_ttl_secs = NULL \
             WHERE active_agent IS NOT NULL AND (locked_at + lock_ttl_secs * 1000000) <= $1",
        )
        .bind(now),
    )
    .await
}
