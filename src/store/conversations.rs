//! Conversations: who the end user talks to, on which channel, and who answers now.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Serialize, Serializer, ser::SerializeStruct};
use sqlx::types::Json;
use switchboard_channel::Channel;

use super::{Db, StoreError, Tx, query, statement::Sql};
use crate::{
    ids::{ContactId, ConversationId, MessageId, UserId},
    time::Timestamp,
};

/// Who answers a conversation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
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
    pub id: ConversationId,
    /// The channel it runs on.
    #[sqlx(try_from = "String")]
    pub channel: Channel,
    /// Which of our identities on the channel it runs through.
    pub account: String,
    /// The end user.
    pub contact_id: ContactId,
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
    /// In expert mode: the expert who owns it (none while it waits in the queue).
    pub expert_id: Option<UserId>,
    /// In expert mode: waiting for an expert since then.
    pub queued_at: Option<Timestamp>,
    /// In expert mode: assigned to its expert since then.
    pub assigned_at: Option<Timestamp>,
    /// How far its expert has read (the seq of the last message they saw).
    pub expert_seen_seq: i64,
    /// Where the client that created it says it was started from (`web`, `mobile`…).
    pub source: Option<String>,
}

impl Conversation {
    /// When the agent lock runs out, if there is one.
    pub fn lock_expires_at(&self) -> Option<Timestamp> {
        lock_expiry(self.locked_at, self.lock_ttl_secs)
    }
}

fn lock_expiry(locked_at: Option<Timestamp>, ttl_secs: Option<i64>) -> Option<Timestamp> {
    match (locked_at, ttl_secs) {
        (Some(at), Some(ttl)) => Some(at.plus(Duration::from_secs(ttl.max(0) as u64))),
        _ => None,
    }
}

/// What a turn acts on of its conversation: who answers it, the agent it is locked to, and
/// where its end user is. A turn gets it from the write that stored its message when that write
/// could tell (see `messages::Appended::answering`), else by reading the conversation.
#[derive(Debug, Clone)]
pub struct Answering {
    /// The conversation.
    pub id: ConversationId,
    /// Its channel.
    pub channel: Channel,
    /// Which of our identities on the channel it runs through.
    pub account: String,
    /// The end user.
    pub contact_id: ContactId,
    /// Who answers.
    pub mode: Mode,
    /// The agent it is locked to, if any.
    pub active_agent: Option<String>,
    /// When the lock was last taken or renewed.
    pub locked_at: Option<Timestamp>,
    /// How long the lock lasts after `locked_at`.
    pub lock_ttl_secs: Option<i64>,
    /// The end user's channel identity, when whoever stored their message knew it (its author):
    /// a typing indicator then needs no read to find whom it goes to.
    pub contact_identity: Option<String>,
}

impl Answering {
    /// The agent holding a lock that is still valid at `now`.
    pub fn locked_agent(&self, now: Timestamp) -> Option<&str> {
        match lock_expiry(self.locked_at, self.lock_ttl_secs) {
            Some(expires) if expires > now => self.active_agent.as_deref(),
            _ => None,
        }
    }
}

impl From<Conversation> for Answering {
    fn from(c: Conversation) -> Self {
        Answering {
            id: c.id,
            channel: c.channel,
            account: c.account,
            contact_id: c.contact_id,
            mode: c.mode,
            active_agent: c.active_agent,
            locked_at: c.locked_at,
            lock_ttl_secs: c.lock_ttl_secs,
            contact_identity: None,
        }
    }
}

impl Serialize for Conversation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Conversation", 12)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("channel", &self.channel)?;
        st.serialize_field("title", &self.title)?;
        st.serialize_field("mode", &self.mode)?;
        st.serialize_field("agent", &self.active_agent)?;
        st.serialize_field("lock_expires_at", &self.lock_expires_at())?;
        st.serialize_field("expert_id", &self.expert_id)?;
        st.serialize_field("queued_at", &self.queued_at)?;
        st.serialize_field("assigned_at", &self.assigned_at)?;
        st.serialize_field("last_seq", &self.last_seq)?;
        st.serialize_field("created_at", &self.created_at)?;
        st.serialize_field("updated_at", &self.updated_at)?;
        st.end()
    }
}

/// Expands to a statement with the conversation columns spliced in (they are a constant, so the
/// statement stays a `&'static str`).
macro_rules! with_columns {
    ($before:expr, $after:expr) => {
        concat!(
            $before,
            " id, channel, account, contact_id, mode, active_agent, locked_at, lock_ttl_secs, \
             title, last_seq, created_at, updated_at, deleted_at, metadata, expert_id, queued_at, \
             assigned_at, expert_seen_seq, source ",
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
        .bind(ConversationId::generate())
        .bind(new.channel.as_str())
        .bind(new.account)
        .bind(new.contact_id)
        .bind(new.title)
        .bind(now),
    )
    .await
}

/// A conversation a client creates before writing in it.
#[derive(Debug, Clone)]
pub struct EmptyConversation<'a> {
    /// The channel.
    pub channel: Channel,
    /// The end user.
    pub contact_id: &'a ContactId,
    /// Its title.
    pub title: Option<String>,
    /// Where it was started from.
    pub source: Option<String>,
    /// The client's data about it.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The agent it is locked to from the start (the visitor's choice), and for how long after
    /// the agent's last answer.
    pub agent: Option<(&'a str, std::time::Duration)>,
}

/// Creates a conversation without messages (its first message takes seq 1).
pub async fn create_empty(
    tx: &mut Tx,
    new: EmptyConversation<'_>,
    now: Timestamp,
) -> Result<Conversation, StoreError> {
    tx.fetch_one(
        query(with_columns!(
            "INSERT INTO conversations (id, channel, account, contact_id, title, source, metadata, \
             last_seq, created_at, updated_at, active_agent, locked_at, lock_ttl_secs) \
             VALUES ($1, $2, '', $3, $4, $5, $6, 0, $7, $7, $8, $9, $10) RETURNING",
            ""
        ))
        .bind(ConversationId::generate())
        .bind(new.channel.as_str())
        .bind(new.contact_id)
        .bind(new.title)
        .bind(new.source)
        .bind(serde_json::Value::Object(new.metadata))
        .bind(now)
        .bind(new.agent.map(|(name, _)| name))
        .bind(new.agent.map(|_| now))
        .bind(
            new.agent
                .map(|(_, ttl)| i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        ),
    )
    .await
}

/// Renames a live conversation of `contact_id`. Returns it as it is now, or `None` when there is
/// no such conversation.
pub async fn rename(
    tx: &mut Tx,
    id: &ConversationId,
    contact_id: &ContactId,
    title: &str,
    now: Timestamp,
) -> Result<Option<Conversation>, StoreError> {
    tx.fetch_optional(
        query(with_columns!(
            "UPDATE conversations SET title = $3, updated_at = $4 \
             WHERE id = $1 AND contact_id = $2 AND deleted_at IS NULL RETURNING",
            ""
        ))
        .bind(id)
        .bind(contact_id)
        .bind(title)
        .bind(now),
    )
    .await
}

/// How many messages a conversation holds.
pub async fn message_count(db: &mut impl Db, id: &ConversationId) -> Result<i64, StoreError> {
    let (n,): (i64,) = db
        .fetch_one(query("SELECT COUNT(*) FROM messages WHERE conversation_id = $1").bind(id))
        .await?;
    Ok(n)
}

/// Takes the next seq of a live conversation for a new message, and marks it active. Returns the
/// conversation with the new `last_seq`, or `None` if it does not exist or is deleted. Locks the
/// row on PostgreSQL, which orders concurrent writers of one conversation.
pub async fn take_seq(
    tx: &mut Tx,
    id: &ConversationId,
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
    id: &ConversationId,
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
    contact_id: &ContactId,
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
pub async fn get(
    db: &mut impl Db,
    id: &ConversationId,
) -> Result<Option<Conversation>, StoreError> {
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
    pub next_turn: Option<MessageId>,
}

/// A live conversation, with the id of the message it should answer next (see
/// `pending_turns`). One query.
pub async fn get_with_next_turn(
    db: &mut impl Db,
    id: &ConversationId,
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
    id: &ConversationId,
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
    contact_id: &ContactId,
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

/// Up to `limit` of a contact's conversations, deleted ones too, oldest first, after the one
/// with id `after` (`""` for the first page): what an export of the contact pages through.
pub async fn all_of_contact(
    db: &mut impl Db,
    contact_id: &ContactId,
    after: &str,
    limit: i64,
) -> Result<Vec<Conversation>, StoreError> {
    db.fetch_all(
        query(with_columns!(
            "SELECT",
            "FROM conversations WHERE contact_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(contact_id)
        .bind(after)
        .bind(limit),
    )
    .await
}

/// Soft-deletes a live conversation of a contact. Returns whether it existed.
pub async fn soft_delete(
    tx: &mut Tx,
    id: &ConversationId,
    contact_id: &ContactId,
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
    id: &ConversationId,
    agent: &str,
    ttl: Duration,
    now: Timestamp,
) -> Result<Option<Conversation>, StoreError> {
    static TAKE: Sql = Sql::new(|| {
        format!(
            "UPDATE conversations SET last_seq = last_seq + 1, updated_at = $4, {}, \
             lock_ttl_secs = $3 WHERE id = $1 AND mode = 'ai' AND deleted_at IS NULL RETURNING{}",
            super::sql::renew_lock("$2", "$4"),
            with_columns!("", "")
        )
    });
    tx.fetch_optional(
        query(TAKE.text())
            .bind(id)
            .bind(agent)
            .bind(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
            .bind(now),
    )
    .await
}

/// Hands a conversation in AI mode to the experts — it waits in the queue from now — and takes a
/// seq for the notice that says so. Returns `None` when the conversation is not in AI mode (or
/// gone).
pub async fn take_seq_for_handoff(
    tx: &mut Tx,
    id: &ConversationId,
    now: Timestamp,
) -> Result<Option<Conversation>, StoreError> {
    tx.fetch_optional(
        query(with_columns!(
            "UPDATE conversations SET mode = 'expert', queued_at = $2, expert_id = NULL, \
             assigned_at = NULL, last_seq = last_seq + 1, updated_at = $2 \
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

// ---- Expert ownership ------------------------------------------------------------------------

/// The conversation that has waited longest for an expert.
pub async fn next_waiting(db: &mut impl Db) -> Result<Option<Conversation>, StoreError> {
    db.fetch_optional(query(with_columns!(
        "SELECT",
        "FROM conversations WHERE queued_at IS NOT NULL AND mode = 'expert' \
         AND expert_id IS NULL AND deleted_at IS NULL ORDER BY queued_at, id LIMIT 1"
    )))
    .await
}

/// A conversation in a staff list, with its end user's name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Listed {
    /// The conversation.
    #[sqlx(flatten)]
    pub conversation: Conversation,
    /// The end user's name.
    pub contact_name: Option<String>,
}

/// The column with the contact's name, for [`Listed`].
macro_rules! contact_name {
    () => {
        ", (SELECT display_name FROM contacts k WHERE k.id = conversations.contact_id) \
         AS contact_name "
    };
}

/// Conversations waiting for an expert, longest waiting first.
pub async fn waiting(db: &mut impl Db, limit: i64) -> Result<Vec<Listed>, StoreError> {
    db.fetch_all(
        query(with_columns!(
            "SELECT",
            concat!(
                contact_name!(),
                "FROM conversations WHERE queued_at IS NOT NULL AND mode = 'expert' \
                 AND expert_id IS NULL AND deleted_at IS NULL ORDER BY queued_at, id LIMIT $1"
            )
        ))
        .bind(limit),
    )
    .await
}

/// An available expert with room for another conversation: the one with the fewest open
/// conversations, and of those the one who got a conversation longest ago.
pub async fn free_expert(db: &mut impl Db) -> Result<Option<UserId>, StoreError> {
    let row: Option<(UserId,)> = db
        .fetch_optional(query(
            "SELECT u.id FROM users u \
             LEFT JOIN (SELECT expert_id, COUNT(*) AS open FROM conversations \
                WHERE mode = 'expert' AND expert_id IS NOT NULL AND deleted_at IS NULL \
                GROUP BY expert_id) o ON o.expert_id = u.id \
             WHERE u.available = 1 AND u.disabled_at IS NULL \
             AND COALESCE(o.open, 0) < u.capacity \
             ORDER BY COALESCE(o.open, 0), COALESCE(u.last_assigned_at, 0), u.id LIMIT 1",
        ))
        .await?;
    Ok(row.map(|(id,)| id))
}

/// How many conversations an expert owns now.
pub async fn open_count(db: &mut impl Db, expert_id: &UserId) -> Result<i64, StoreError> {
    let (n,): (i64,) = db
        .fetch_one(
            query(
                "SELECT COUNT(*) FROM conversations WHERE expert_id = $1 AND mode = 'expert' \
                 AND deleted_at IS NULL",
            )
            .bind(expert_id),
        )
        .await?;
    Ok(n)
}

/// Gives a conversation in expert mode to an expert, taking a seq for the notice that says so.
/// `only_if_waiting`: only a conversation nobody owns (assignment, claim); otherwise also one
/// owned by `from` (a transfer). `None` when the conversation is not in that state.
pub async fn take_seq_for_expert(
    tx: &mut Tx,
    id: &ConversationId,
    expert_id: &UserId,
    from: Option<&str>,
    now: Timestamp,
) -> Result<Option<Conversation>, StoreError> {
    let conversation = tx
        .fetch_optional(
            query(with_columns!(
                "UPDATE conversations SET expert_id = $2, assigned_at = $3, queued_at = NULL, \
                 expert_answered_at = NULL, expert_seen_seq = 0, last_seq = last_seq + 1, \
                 updated_at = $3 \
                 WHERE id = $1 AND mode = 'expert' AND deleted_at IS NULL \
                 AND ((expert_id IS NULL AND $4 IS NULL) OR expert_id = $4) RETURNING",
                ""
            ))
            .bind(id)
            .bind(expert_id)
            .bind(now)
            .bind(from),
        )
        .await?;
    if conversation.is_some() {
        tx.execute(
            query("UPDATE users SET last_assigned_at = $2 WHERE id = $1")
                .bind(expert_id)
                .bind(now),
        )
        .await?;
    }
    Ok(conversation)
}

/// Gives a conversation back to the AI: expert mode ends, the agent lock is reset (routing
/// chooses again), a seq is taken for the notice. `owner`: only if this expert owns it.
pub async fn take_seq_for_release(
    tx: &mut Tx,
    id: &ConversationId,
    owner: Option<&str>,
    now: Timestamp,
) -> Result<Option<Conversation>, StoreError> {
    tx.fetch_optional(
        query(with_columns!(
            "UPDATE conversations SET mode = 'ai', expert_id = NULL, queued_at = NULL, \
             assigned_at = NULL, active_agent = NULL, locked_at = NULL, lock_ttl_secs = NULL, \
             last_seq = last_seq + 1, updated_at = $2 \
             WHERE id = $1 AND mode = 'expert' AND deleted_at IS NULL \
             AND ($3 IS NULL OR expert_id = $3) RETURNING",
            ""
        ))
        .bind(id)
        .bind(now)
        .bind(owner),
    )
    .await
}

/// Closes a conversation (nobody answers it any more), taking a seq for the notice. `owner`: only
/// if this expert owns it.
pub async fn take_seq_for_close(
    tx: &mut Tx,
    id: &ConversationId,
    owner: Option<&str>,
    now: Timestamp,
) -> Result<Option<Conversation>, StoreError> {
    tx.fetch_optional(
        query(with_columns!(
            "UPDATE conversations SET mode = 'closed', queued_at = NULL, \
             last_seq = last_seq + 1, updated_at = $2 \
             WHERE id = $1 AND mode <> 'closed' AND deleted_at IS NULL \
             AND ($3 IS NULL OR expert_id = $3) RETURNING",
            ""
        ))
        .bind(id)
        .bind(now)
        .bind(owner),
    )
    .await
}

/// Takes a seq for an expert's message in a conversation the expert owns (and marks everything
/// up to it read). `None` when they do not own it (any more).
pub async fn take_seq_for_expert_message(
    tx: &mut Tx,
    id: &ConversationId,
    expert_id: &UserId,
    now: Timestamp,
) -> Result<Option<Conversation>, StoreError> {
    tx.fetch_optional(
        query(with_columns!(
            "UPDATE conversations SET last_seq = last_seq + 1, expert_seen_seq = last_seq + 1, \
             expert_answered_at = $3, updated_at = $3 \
             WHERE id = $1 AND mode = 'expert' AND expert_id = $2 \
             AND deleted_at IS NULL RETURNING",
            ""
        ))
        .bind(id)
        .bind(expert_id)
        .bind(now),
    )
    .await
}

/// Marks a conversation read by its expert up to its newest message.
pub async fn mark_read(
    tx: &mut Tx,
    id: &ConversationId,
    expert_id: &UserId,
) -> Result<(), StoreError> {
    tx.execute(
        query(
            "UPDATE conversations SET expert_seen_seq = last_seq WHERE id = $1 AND expert_id = $2",
        )
        .bind(id)
        .bind(expert_id),
    )
    .await?;
    Ok(())
}

/// An assignment that timed out: the conversation, back in the queue, and the expert who let it.
#[derive(Debug, Clone)]
pub struct TimedOut {
    /// The conversation, waiting again.
    pub conversation: Conversation,
    /// The expert it was assigned to, now set away.
    pub expert_id: UserId,
}

/// Assigned conversations whose expert has not written since they were assigned, before
/// `before`: they go back to the queue, keeping their place (queued again as of their
/// assignment), and their experts are set away — evidently not at their desk, they would
/// otherwise get the same conversations straight back. Call it in a serialised transaction.
///
/// The answer is a column of the conversation row (set by
/// [`take_seq_for_expert_message`]), not a look at the messages: on PostgreSQL an UPDATE that
/// waited for a concurrent reply's row lock re-checks the row's new version, while a subquery
/// would still see the old snapshot and requeue a conversation that was just answered.
pub async fn requeue_unanswered(
    tx: &mut Tx,
    before: Timestamp,
    now: Timestamp,
) -> Result<Vec<TimedOut>, StoreError> {
    let candidates: Vec<(ConversationId, UserId)> = tx
        .fetch_all(
            query(
                "SELECT id, expert_id FROM conversations WHERE mode = 'expert' \
                 AND expert_id IS NOT NULL AND assigned_at < $1 AND expert_answered_at IS NULL \
                 AND deleted_at IS NULL ORDER BY assigned_at, id",
            )
            .bind(before),
        )
        .await?;
    let mut timed_out = Vec::with_capacity(candidates.len());
    for (id, expert_id) in candidates {
        let conversation = tx
            .fetch_optional(
                query(with_columns!(
                    "UPDATE conversations SET expert_id = NULL, queued_at = assigned_at, \
                     assigned_at = NULL, updated_at = $3 \
                     WHERE id = $1 AND mode = 'expert' AND expert_id = $2 \
                     AND expert_answered_at IS NULL AND deleted_at IS NULL RETURNING",
                    ""
                ))
                .bind(&id)
                .bind(&expert_id)
                .bind(now),
            )
            .await?;
        let Some(conversation) = conversation else {
            continue;
        };
        tx.execute(
            query("UPDATE users SET available = 0, updated_at = $2 WHERE id = $1")
                .bind(&expert_id)
                .bind(now),
        )
        .await?;
        timed_out.push(TimedOut {
            conversation,
            expert_id,
        });
    }
    Ok(timed_out)
}

/// Puts every conversation an expert owns back in the queue (their account was disabled), each
/// keeping its place (queued again as of its assignment). Returns them.
pub async fn requeue_all_of(
    tx: &mut Tx,
    expert_id: &UserId,
    now: Timestamp,
) -> Result<Vec<Conversation>, StoreError> {
    tx.fetch_all(
        query(with_columns!(
            "UPDATE conversations SET expert_id = NULL, queued_at = COALESCE(assigned_at, $2), \
             assigned_at = NULL, updated_at = $2 WHERE expert_id = $1 AND mode = 'expert' AND deleted_at IS NULL \
             RETURNING",
            ""
        ))
        .bind(expert_id)
        .bind(now),
    )
    .await
}

/// A conversation as an expert's list shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Owned {
    /// The conversation.
    #[sqlx(flatten)]
    pub conversation: Conversation,
    /// Messages of the end user the expert has not seen.
    pub unread: i64,
    /// The end user's name.
    pub contact_name: Option<String>,
}

/// The conversations an expert owns, most recently active first, with unread counts.
pub async fn owned_by(db: &mut impl Db, expert_id: &UserId) -> Result<Vec<Owned>, StoreError> {
    db.fetch_all(
        query(with_columns!(
            "SELECT",
            concat!(
                ", (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = conversations.id \
                 AND m.direction = 'inbound' AND m.seq > conversations.expert_seen_seq) AS unread",
                contact_name!(),
                "FROM conversations WHERE expert_id = $1 AND mode = 'expert' \
                 AND deleted_at IS NULL ORDER BY updated_at DESC, id DESC"
            )
        ))
        .bind(expert_id),
    )
    .await
}

/// Live (not closed, not deleted) conversations of every channel, most recently active first,
/// and their total: what supervisors watch.
pub async fn live(
    db: &mut impl Db,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Listed>, i64), StoreError> {
    let (total,): (i64,) = db
        .fetch_one(query(
            "SELECT COUNT(*) FROM conversations WHERE mode <> 'closed' AND deleted_at IS NULL",
        ))
        .await?;
    let page = db
        .fetch_all(
            query(with_columns!(
                "SELECT",
                concat!(
                    contact_name!(),
                    "FROM conversations WHERE mode <> 'closed' AND deleted_at IS NULL \
                     ORDER BY updated_at DESC, id DESC LIMIT $1 OFFSET $2"
                )
            ))
            .bind(limit)
            .bind(offset),
        )
        .await?;
    Ok((page, total))
}
