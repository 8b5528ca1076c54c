//! Messages: everything said in a conversation, in order, by anybody.

use std::fmt;

use serde::Serialize;
use switchboard_channel::{Attachment, Channel, DeliveryStatus};

use super::{
    Backend, Db, FromOwnedRow, OneTrip, OwnedRow, Query, Store, StoreError, Tx, jobs,
    meta::MessageMeta, query, sql, statement::Sql,
};
use crate::{
    ids::{ContactId, ConversationId, JobId, MessageId},
    store::conversations::{Answering, Mode},
    time::Timestamp,
};

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the end user to the gateway.
    Inbound,
    /// From the gateway (AI, expert, system) to the end user.
    Outbound,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The end user.
    User,
    /// An AI agent.
    Ai,
    /// A human expert.
    Expert,
    /// The gateway itself (mode changes, notices).
    System,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// The stored name.
            pub const fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),* }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $ty {
            type Error = String;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                match s.as_str() {
                    $($name => Ok($ty::$variant),)*
                    other => Err(format!(concat!("unknown ", stringify!($ty), " {:?}"), other)),
                }
            }
        }
    };
}

text_enum!(Direction { Inbound => "inbound", Outbound => "outbound" });
text_enum!(Role { User => "user", Ai => "ai", Expert => "expert", System => "system" });

/// A stored message. Serializes to the JSON shown in APIs and event streams.
///
/// Fields whose type serializes as text (ids, times, the channel) are described to the OpenAPI
/// document as that text (`value_type`).
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct Message {
    /// Its id (UUIDv7).
    #[schema(value_type = String, format = "uuid")]
    pub id: MessageId,
    /// The conversation.
    #[schema(value_type = String, format = "uuid")]
    pub conversation_id: ConversationId,
    /// Position in the conversation, from 1.
    pub seq: i64,
    /// The channel it travelled on.
    #[sqlx(try_from = "String")]
    #[schema(value_type = String, example = "web")]
    pub channel: Channel,
    /// Inbound or outbound.
    #[sqlx(try_from = "String")]
    pub direction: Direction,
    /// Who wrote it.
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// The agent or expert that wrote an outbound message.
    pub author: Option<String>,
    /// What kind of content (`text`, `media`, …).
    pub kind: String,
    /// The text (for media, the caption; for other kinds, a readable summary).
    pub content: String,
    /// Attached files.
    #[sqlx(json)]
    pub attachments: Vec<Attachment>,
    /// The provider's id.
    #[serde(skip)]
    pub provider_message_id: Option<String>,
    /// The message this one answers or replies to.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub reply_to: Option<MessageId>,
    /// Delivery status.
    #[sqlx(try_from = "String")]
    pub status: DeliveryStatus,
    /// When the status last changed.
    #[schema(value_type = String, format = DateTime)]
    pub status_at: Timestamp,
    /// Why delivery failed, when it did.
    pub error: Option<String>,
    /// When it was stored.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Kind-specific data (location, reaction, edits, agent errors…).
    #[sqlx(json)]
    #[schema(value_type = Object)]
    pub metadata: MessageMeta,
}

/// The columns of [`Message`], for statements built with `concat!`.
/// As sqlx decodes it (the derive above), from a row a one-trip write returned on SQLite.
impl FromOwnedRow for Message {
    fn from_owned_row(r: &mut OwnedRow) -> Result<Self, StoreError> {
        Ok(Message {
            id: r.get::<String>("id")?.into(),
            conversation_id: r.get::<String>("conversation_id")?.into(),
            seq: r.get("seq")?,
            channel: r.parse("channel")?,
            direction: r.parse("direction")?,
            role: r.parse("role")?,
            author: r.get("author")?,
            kind: r.get("kind")?,
            content: r.get("content")?,
            attachments: r.json("attachments")?,
            provider_message_id: r.get("provider_message_id")?,
            reply_to: r.get::<Option<String>>("reply_to")?.map(MessageId::from),
            status: r.parse("status")?,
            status_at: Timestamp(r.get("status_at")?),
            error: r.get("error")?,
            created_at: Timestamp(r.get("created_at")?),
            metadata: r.json("metadata")?,
        })
    }
}

impl Message {
    /// The message as a website visitor may see it: an expert is named by the display name they
    /// wrote under, never by their staff account's id; what an AI reply used (tokens, cost, the
    /// provider's raw events) is for staff only.
    pub fn for_visitor(mut self) -> Message {
        if self.role == Role::Expert {
            self.author = self.metadata.expert_name.clone();
        }
        self.metadata = self.metadata.for_visitor();
        self
    }
}

macro_rules! columns {
    () => {
        " id, conversation_id, seq, channel, direction, role, author, kind, content, attachments, \
         provider_message_id, reply_to, status, status_at, error, created_at, metadata "
    };
}

macro_rules! with_columns {
    ($before:literal, $after:literal) => {
        concat!($before, columns!(), $after)
    };
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Its seq, taken with [`super::conversations::take_seq`] in the same transaction.
    pub seq: i64,
    /// The channel.
    pub channel: Channel,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Who wrote it.
    pub role: Role,
    /// Agent name or expert id.
    pub author: Option<String>,
    /// Content kind.
    pub kind: &'static str,
    /// Text.
    pub content: String,
    /// Files.
    pub attachments: Vec<Attachment>,
    /// The provider's id, for deduplication.
    pub provider_message_id: Option<String>,
    /// The message it answers.
    pub reply_to: Option<MessageId>,
    /// Initial delivery status.
    pub status: DeliveryStatus,
    /// Whether the message needs a turn of the pipeline (an inbound message to answer).
    pub awaits_answer: bool,
    /// Extra data.
    pub metadata: MessageMeta,
}

/// Whether outbound messages of a channel are delivered by a job. Web replies are delivered by
/// being stored and published; every other channel needs its provider's API.
pub fn needs_delivery(channel: Channel) -> bool {
    channel != Channel::WEB
}

/// The delivery status an outbound message starts with: a web message is delivered by being
/// stored and published; on other channels it waits for the provider to accept it.
pub fn initial_status(channel: Channel) -> DeliveryStatus {
    if needs_delivery(channel) {
        DeliveryStatus::Pending
    } else {
        DeliveryStatus::Sent
    }
}

impl NewMessage {
    /// A notice of the gateway to the end user (a handoff, a release, a rate limit), as the next
    /// message of `conversation` (whose seq was just taken), delivered on its channel.
    pub fn system_notice(
        conversation: &super::conversations::Conversation,
        content: &str,
        metadata: MessageMeta,
    ) -> NewMessage {
        NewMessage {
            conversation_id: conversation.id.clone(),
            seq: conversation.last_seq,
            channel: conversation.channel,
            direction: Direction::Outbound,
            role: Role::System,
            author: None,
            kind: "text",
            content: content.to_owned(),
            attachments: Vec::new(),
            provider_message_id: None,
            reply_to: None,
            status: initial_status(conversation.channel),
            awaits_answer: false,
            metadata,
        }
    }
}

/// Stores a message (and puts it on the pipeline's work list when it awaits an answer, or on the
/// delivery queue when it is outbound on a channel that needs delivery). Returns `None` when a
/// message with the same provider id is already stored on the channel (a provider retry).
pub async fn insert(
    tx: &mut Tx,
    new: NewMessage,
    now: Timestamp,
) -> Result<Option<Message>, StoreError> {
    let awaits_answer = new.awaits_answer;
    let message: Option<Message> = tx
        .fetch_optional(query(with_columns!(
            "INSERT INTO messages (id, conversation_id, seq, channel, direction, role, author, kind, \
             content, attachments, provider_message_id, reply_to, status, status_at, created_at, \
             metadata) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15) \
             ON CONFLICT (channel, provider_message_id) WHERE provider_message_id IS NOT NULL \
             DO NOTHING RETURNING",
            ""
        ))
        .bind(MessageId::generate())
        .bind(new.conversation_id)
        .bind(new.seq)
        .bind(new.channel.as_str())
        .bind(new.direction.as_str())
        .bind(new.role.as_str())
        .bind(new.author)
        .bind(new.kind)
        .bind(new.content)
        .bind(serde_json::to_value(&new.attachments).unwrap_or_default())
        .bind(new.provider_message_id)
        .bind(new.reply_to)
        .bind(new.status.as_str())
        .bind(now)
        .bind(new.metadata.to_value()))
        .await?;
    if let Some(message) = &message
        && awaits_answer
    {
        tx.execute(
            query(
                "INSERT INTO pending_turns (message_id, conversation_id, seq, created_at, owner) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&message.id)
            .bind(&message.conversation_id)
            .bind(message.seq)
            .bind(now)
            .bind(tx.instance().to_owned()),
        )
        .await?;
    }
    if let Some(message) = &message
        && message.direction == Direction::Outbound
        && needs_delivery(message.channel)
    {
        jobs::enqueue(
            tx,
            jobs::NewJob::new(jobs::DELIVER, &message.id)
                .in_lane(&message.conversation_id, message.seq),
            now,
        )
        .await?;
    }
    Ok(message)
}

/// The message a provider id refers to on a channel.
pub async fn find_by_provider_id(
    db: &mut impl Db,
    channel: Channel,
    provider_message_id: &str,
) -> Result<Option<Message>, StoreError> {
    db.fetch_optional(
        query(with_columns!(
            "SELECT",
            "FROM messages WHERE channel = $1 AND provider_message_id = $2"
        ))
        .bind(channel.as_str())
        .bind(provider_message_id),
    )
    .await
}

/// The message stored before under the same provider id, or else under the same sender's own
/// key (a website visitor's `Idempotency-Key`, only ever one of their own messages): the one a
/// resent message is. At least one of the two must be given.
pub fn resent(
    channel: Channel,
    provider_message_id: Option<&str>,
    external_id: &str,
    key: Option<&str>,
) -> Query {
    query(with_columns!(
        "SELECT",
        "FROM messages WHERE id = COALESCE( \
         (SELECT id FROM messages WHERE channel = $1 AND provider_message_id = $2), \
         (SELECT message_id FROM idempotency_keys \
          WHERE channel = $1 AND external_id = $3 AND key = $4))"
    ))
    .bind(channel.as_str())
    .bind(provider_message_id)
    .bind(external_id)
    .bind(key)
}

/// Records a sender's key of a message stored in the same transaction. A concurrent request with
/// the same key makes this a unique violation: the transaction is retried and finds the message.
pub async fn record_sender_key(
    tx: &mut Tx,
    channel: Channel,
    external_id: &str,
    key: &str,
    message_id: &MessageId,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        query(
            "INSERT INTO idempotency_keys (channel, external_id, key, message_id, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(channel.as_str())
        .bind(external_id)
        .bind(key)
        .bind(message_id)
        .bind(now),
    )
    .await?;
    Ok(())
}

/// A message by id.
pub async fn get(db: &mut impl Db, id: &str) -> Result<Option<Message>, StoreError> {
    db.fetch_optional(query(with_columns!("SELECT", "FROM messages WHERE id = $1")).bind(id))
        .await
}

/// The first answer stored for a message.
pub async fn answer_to(
    db: &mut impl Db,
    conversation_id: &ConversationId,
    message_id: &MessageId,
) -> Result<Option<Message>, StoreError> {
    db.fetch_optional(
        query(with_columns!(
            "SELECT",
            "FROM messages WHERE conversation_id = $1 AND reply_to = $2 AND direction = 'outbound' \
             ORDER BY seq LIMIT 1"
        ))
        .bind(conversation_id)
        .bind(message_id),
    )
    .await
}

/// Up to `limit` messages before seq `before` (or the newest ones), oldest first.
pub async fn page(
    db: &mut impl Db,
    conversation_id: &ConversationId,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Message>, StoreError> {
    let mut rows: Vec<Message> = db
        .fetch_all(
            query(with_columns!(
                "SELECT",
                "FROM messages WHERE conversation_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
            ))
            .bind(conversation_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit),
        )
        .await?;
    rows.reverse();
    Ok(rows)
}

/// The messages after seq `after`, oldest first, at most `limit`.
pub async fn after(
    db: &mut impl Db,
    conversation_id: &ConversationId,
    after: i64,
    limit: i64,
) -> Result<Vec<Message>, StoreError> {
    db.fetch_all(
        query(with_columns!(
            "SELECT",
            "FROM messages WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(conversation_id)
        .bind(after)
        .bind(limit),
    )
    .await
}

/// A line of conversation history as an agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ContextLine {
    /// Who said it.
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// What they said.
    pub content: String,
}

/// What an agent answering `message` sees: the last `limit` lines of the conversation, oldest
/// first, ending with `message` itself. Everything said before it counts, including answers
/// stored after it arrived (the reply to the previous message, when the user wrote again before
/// it came); user messages that arrived after it do not, as they get their own turn.
pub async fn context(
    db: &mut impl Db,
    message: &Message,
    limit: i64,
) -> Result<Vec<ContextLine>, StoreError> {
    let mut rows: Vec<ContextLine> = db
        .fetch_all(
            query(
                "SELECT role, content FROM messages WHERE conversation_id = $1 AND id <> $2 \
                 AND (seq < $3 OR direction = 'outbound') ORDER BY seq DESC LIMIT $4",
            )
            .bind(&message.conversation_id)
            .bind(&message.id)
            .bind(message.seq)
            .bind((limit - 1).max(0)),
        )
        .await?;
    rows.reverse();
    rows.push(ContextLine {
        role: message.role,
        content: message.content.clone(),
    });
    Ok(rows)
}

/// Takes a message off the pipeline's work list. Returns false when it was not on it (another
/// turn got there first), which makes answering a message at most once atomic.
pub async fn mark_handled(tx: &mut Tx, message: &Message) -> Result<bool, StoreError> {
    let n = tx
        .execute(
            query("DELETE FROM pending_turns WHERE conversation_id = $1 AND seq = $2")
                .bind(&message.conversation_id)
                .bind(message.seq),
        )
        .await?;
    Ok(n == 1)
}

/// Messages on the pipeline's work list since before `before` whose turns are `owner`'s, oldest
/// first.
pub async fn pending(
    db: &mut impl Db,
    owner: &str,
    before: Timestamp,
    limit: i64,
) -> Result<Vec<Message>, StoreError> {
    db.fetch_all(
        query(with_columns!(
            "SELECT",
            "FROM messages WHERE id IN (SELECT message_id FROM pending_turns WHERE created_at < $1 \
             AND owner = $3 ORDER BY created_at LIMIT $2) ORDER BY created_at"
        ))
        .bind(before)
        .bind(limit)
        .bind(owner),
    )
    .await
}

/// Makes the turn of `message_id`, still this store's instance's, `owner`'s. Whether it was.
pub async fn hand_turn_over(
    store: &crate::store::Store,
    message_id: &MessageId,
    owner: &str,
) -> Result<bool, StoreError> {
    let n = store
        .execute(
            query("UPDATE pending_turns SET owner = $3 WHERE message_id = $1 AND owner = $2")
                .bind(message_id)
                .bind(store.instance())
                .bind(owner),
        )
        .await?;
    Ok(n == 1)
}

/// How many messages are on the pipeline's work list.
pub async fn pending_count(db: &mut impl Db) -> Result<i64, StoreError> {
    let (n,): (i64,) = db
        .fetch_one(query("SELECT COUNT(*) FROM pending_turns"))
        .await?;
    Ok(n)
}

/// How many messages are on the pipeline's work list, and since when the oldest waits.
pub async fn pending_figures(db: &mut impl Db) -> Result<(i64, Option<Timestamp>), StoreError> {
    db.fetch_one(query("SELECT COUNT(*), MIN(created_at) FROM pending_turns"))
        .await
}

/// Replaces the content of a message (an edit), with the edit history in `metadata`.
pub async fn set_content(
    tx: &mut Tx,
    id: &MessageId,
    content: String,
    metadata: MessageMeta,
) -> Result<Message, StoreError> {
    tx.fetch_one(
        query(with_columns!(
            "UPDATE messages SET content = $2, metadata = $3 WHERE id = $1 RETURNING",
            ""
        ))
        .bind(id)
        .bind(content)
        .bind(metadata.to_value()),
    )
    .await
}

/// Moves the outbound message that a provider id (of any of its parts) belongs to, to a new
/// delivery status, unless it is already at that stage or beyond ([`DeliveryStatus::rank`]): a late
/// "delivered" never overwrites "read". Returns the message as it is now, or `None` when nothing
/// changed (or no sent message has that id).
pub async fn advance_status(
    tx: &mut Tx,
    channel: Channel,
    provider_message_id: &str,
    status: DeliveryStatus,
    at: Timestamp,
    error: Option<String>,
) -> Result<Option<Message>, StoreError> {
    static ADVANCE: Sql = Sql::new(|| {
        format!(
            "UPDATE messages SET status = $3, status_at = $4, error = COALESCE($5, error) \
             WHERE id = (SELECT message_id FROM message_parts WHERE channel = $1 \
             AND provider_message_id = $2) AND direction = 'outbound' AND {} < $6 RETURNING{}",
            sql::status_rank(),
            columns!()
        )
    });
    tx.fetch_optional(
        query(ADVANCE.text())
            .bind(channel.as_str())
            .bind(provider_message_id)
            .bind(status.as_str())
            .bind(at)
            .bind(error)
            .bind(i64::from(status.rank())),
    )
    .await
}

/// Like [`advance_status`], for a message by id.
pub async fn advance_status_of(
    tx: &mut Tx,
    id: &MessageId,
    status: DeliveryStatus,
    at: Timestamp,
    error: Option<String>,
) -> Result<Option<Message>, StoreError> {
    static ADVANCE: Sql = Sql::new(|| {
        format!(
            "UPDATE messages SET status = $2, status_at = $3, error = COALESCE($4, error) \
             WHERE id = $1 AND {} < $5 RETURNING{}",
            sql::status_rank(),
            columns!()
        )
    });
    tx.fetch_optional(
        query(ADVANCE.text())
            .bind(id)
            .bind(status.as_str())
            .bind(at)
            .bind(error)
            .bind(i64::from(status.rank())),
    )
    .await
}

/// Keeps a status for a provider id no sent message has (yet): the provider's webhook may overtake
/// the API response that tells us the id. [`apply_early_statuses`] applies it once the id is
/// recorded.
pub async fn keep_early_status(
    tx: &mut Tx,
    channel: Channel,
    update: &switchboard_channel::StatusUpdate,
    error: Option<String>,
    at: Timestamp,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        query(
            "INSERT INTO early_statuses (channel, provider_message_id, status, status_at, error, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (channel, provider_message_id, status) DO NOTHING",
        )
        .bind(channel.as_str())
        .bind(&update.provider_message_id)
        .bind(update.status.as_str())
        .bind(at)
        .bind(error)
        .bind(now),
    )
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct EarlyStatus {
    #[sqlx(try_from = "String")]
    status: DeliveryStatus,
    status_at: Timestamp,
    error: Option<String>,
}

/// Applies the statuses that arrived for a message's parts before the parts were recorded, and
/// forgets them. Returns the message if its status changed.
pub async fn apply_early_statuses(
    tx: &mut Tx,
    channel: Channel,
    message_id: &MessageId,
) -> Result<Option<Message>, StoreError> {
    let early: Vec<EarlyStatus> = tx
        .fetch_all(
            query(
                "DELETE FROM early_statuses WHERE channel = $1 AND provider_message_id IN \
                 (SELECT provider_message_id FROM message_parts WHERE message_id = $2) \
                 RETURNING status, status_at, error",
            )
            .bind(channel.as_str())
            .bind(message_id),
        )
        .await?;
    let Some(best) = early.into_iter().max_by_key(|e| e.status.rank()) else {
        return Ok(None);
    };
    advance_status_of(tx, message_id, best.status, best.status_at, best.error).await
}

/// Forgets early statuses older than `before` whose message never turned up.
pub async fn forget_early_statuses(tx: &mut Tx, before: Timestamp) -> Result<u64, StoreError> {
    tx.execute(query("DELETE FROM early_statuses WHERE created_at < $1").bind(before))
        .await
}

/// Records that part `part` (from 0) of an outbound message was accepted by the provider under
/// `provider_message_id`. The first part's id is also the message's own provider id.
pub async fn record_part(
    tx: &mut Tx,
    channel: Channel,
    message_id: &MessageId,
    part: i64,
    provider_message_id: &str,
) -> Result<(), StoreError> {
    tx.execute(
        query(
            "INSERT INTO message_parts (channel, provider_message_id, message_id, part) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (channel, provider_message_id) DO NOTHING",
        )
        .bind(channel.as_str())
        .bind(provider_message_id)
        .bind(message_id)
        .bind(part),
    )
    .await?;
    if part == 0 {
        tx.execute(
            query("UPDATE messages SET provider_message_id = $2 WHERE id = $1")
                .bind(message_id)
                .bind(provider_message_id),
        )
        .await?;
    }
    Ok(())
}

/// Records in one round trip that the last part of an outbound message (`part`, from 0) was
/// accepted by the provider under `provider_message_id`, as [`record_part`], then
/// [`advance_status_of`] to `sent` and [`apply_early_statuses`] do in a transaction, and
/// finishes its delivery job (`job`). Returns the message as it is now, and whether a later
/// delivery waits in its lane.
pub async fn record_sent(
    store: &Store,
    channel: Channel,
    message_id: &MessageId,
    part: i64,
    provider_message_id: &str,
    job: &JobId,
    now: Timestamp,
) -> Result<Option<RecordedSent>, StoreError> {
    /// The provider ids of the message's parts.
    const PARTS: &str = "SELECT provider_message_id FROM message_parts WHERE message_id = $3";
    static SQLITE: Sql = Sql::new(|| {
        format!(
            "INSERT INTO message_parts (channel, provider_message_id, message_id, part) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (channel, provider_message_id) DO NOTHING; \
             UPDATE messages SET provider_message_id = $2 WHERE id = $3 AND $4 = 0; \
             UPDATE messages SET status = $7, status_at = $5 WHERE id = $3 AND {rank} < $8; \
             UPDATE messages SET status = e.status, status_at = e.status_at, \
             error = COALESCE(e.error, messages.error) \
             FROM (SELECT status, status_at, error, {rank} AS rank FROM early_statuses \
             WHERE channel = $1 AND provider_message_id IN ({PARTS}) ORDER BY rank DESC LIMIT 1) e \
             WHERE messages.id = $3 AND {message_rank} < e.rank; \
             DELETE FROM early_statuses WHERE channel = $1 AND provider_message_id IN ({PARTS}); \
             DELETE FROM jobs WHERE id = $6; \
             SELECT{columns}, EXISTS (SELECT 1 FROM jobs WHERE queue = '{deliver}' \
             AND lane = messages.conversation_id) AS lane_waits FROM messages WHERE id = $3;",
            deliver = jobs::DELIVER,
            rank = sql::status_rank(),
            message_rank = sql::status_rank_of("messages.status"),
            columns = columns!(),
        )
    });
    // One statement sees the database as it was before it: the part it records is not among
    // the message's parts yet, and the status is the best of `sent` and the early ones.
    static POSTGRES: Sql = Sql::new(|| {
        format!(
            "WITH part AS (INSERT INTO message_parts (channel, provider_message_id, message_id, \
             part) VALUES ($1, $2, $3, $4) ON CONFLICT (channel, provider_message_id) DO NOTHING), \
             early AS (DELETE FROM early_statuses WHERE channel = $1 \
             AND provider_message_id IN ({PARTS} UNION ALL SELECT $2) \
             RETURNING status, status_at, error), \
             best AS (SELECT status AS best_status, status_at AS best_at, error AS best_error, \
             rank AS best_rank FROM (SELECT status, status_at, error, {rank} AS rank FROM early \
             UNION ALL SELECT $7, $5, NULL, $8) candidates ORDER BY rank DESC LIMIT 1), \
             job AS (DELETE FROM jobs WHERE id = $6) \
             UPDATE messages SET \
             provider_message_id = CASE WHEN $4 = 0 THEN $2 ELSE provider_message_id END, \
             status = CASE WHEN {rank} < best_rank THEN best_status ELSE status END, \
             status_at = CASE WHEN {rank} < best_rank THEN best_at ELSE status_at END, \
             error = CASE WHEN {rank} < best_rank THEN COALESCE(best_error, error) ELSE error END \
             FROM best WHERE id = $3 RETURNING{columns}, TRUE AS lane_waits",
            rank = sql::status_rank(),
            columns = columns!(),
        )
    });
    let write = OneTrip::new(SQLITE.text(), POSTGRES.text())
        .bind(channel.as_str())
        .bind(provider_message_id)
        .bind(message_id)
        .bind(part)
        .bind(now)
        .bind(job)
        .bind(DeliveryStatus::Sent.as_str())
        .bind(i64::from(DeliveryStatus::Sent.rank()));
    Ok(store
        .write_once(write, |_: &[RecordedSent]| ())
        .await?
        .pop())
}

/// An outbound message [`record_sent`] recorded.
#[derive(Debug, sqlx::FromRow)]
pub struct RecordedSent {
    /// The message as it is now.
    #[sqlx(flatten)]
    pub message: Message,
    /// Whether a later delivery of its conversation waits for this one to be finished. Always
    /// true on PostgreSQL, where a delivery another transaction adds meanwhile cannot be seen.
    /// (On SQLite a delivery added later finds its lane empty: its own write claims it, or its
    /// writer wakes the queue.)
    pub lane_waits: bool,
}

impl FromOwnedRow for RecordedSent {
    fn from_owned_row(r: &mut OwnedRow) -> Result<Self, StoreError> {
        Ok(RecordedSent {
            message: Message::from_owned_row(r)?,
            lane_waits: r.get::<i64>("lane_waits")? != 0,
        })
    }
}

/// The message a provider id refers to, whether it is an inbound message or any part of an
/// outbound one (for replies that quote one of our messages).
pub async fn find_quoted(
    db: &mut impl Db,
    channel: Channel,
    provider_message_id: &str,
) -> Result<Option<Message>, StoreError> {
    db.fetch_optional(
        query(with_columns!(
            "SELECT",
            "FROM messages WHERE id = COALESCE( \
             (SELECT message_id FROM message_parts WHERE channel = $1 AND provider_message_id = $2), \
             (SELECT id FROM messages WHERE channel = $1 AND provider_message_id = $2))"
        ))
        .bind(channel.as_str())
        .bind(provider_message_id),
    )
    .await
}

/// Marks an outbound message failed for good, with the reason.
pub async fn mark_failed(
    tx: &mut Tx,
    id: &MessageId,
    error: &str,
    at: Timestamp,
) -> Result<Option<Message>, StoreError> {
    tx.fetch_optional(
        query(with_columns!(
            "UPDATE messages SET status = 'failed', status_at = $3, error = $2 WHERE id = $1 \
             RETURNING",
            ""
        ))
        .bind(id)
        .bind(error)
        .bind(at),
    )
    .await
}

/// Changes a message's metadata (read, changed, written: callers serialise writes to one
/// message, e.g. through a job lane).
pub async fn update_metadata(
    tx: &mut Tx,
    id: &MessageId,
    change: impl FnOnce(&mut MessageMeta),
) -> Result<Option<Message>, StoreError> {
    let Some(message) = get(tx, id).await? else {
        return Ok(None);
    };
    let mut metadata = message.metadata;
    change(&mut metadata);
    tx.fetch_optional(
        query(with_columns!(
            "UPDATE messages SET metadata = $2 WHERE id = $1 RETURNING",
            ""
        ))
        .bind(id)
        .bind(metadata.to_value()),
    )
    .await
}

/// Replaces a message's attachments (to link a downloaded copy).
pub async fn set_attachments(
    tx: &mut Tx,
    id: &MessageId,
    attachments: &[Attachment],
) -> Result<Option<Message>, StoreError> {
    tx.fetch_optional(
        query(with_columns!(
            "UPDATE messages SET attachments = $2 WHERE id = $1 RETURNING",
            ""
        ))
        .bind(id)
        .bind(serde_json::to_value(attachments).unwrap_or_default()),
    )
    .await
}

/// What delivering an outbound message needs to know besides the message.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryContext {
    /// The message.
    #[sqlx(flatten)]
    pub message: Message,
    /// The conversation's account (which of our identities sends).
    pub account: String,
    /// The conversation's title (an e-mail thread's subject).
    pub conversation_title: Option<String>,
    /// The recipient's channel id.
    pub recipient: String,
    /// The recipient's contact id.
    pub contact_id: String,
    /// Since when the recipient cannot be reached (they blocked us), if they cannot.
    pub recipient_unreachable_since: Option<Timestamp>,
    /// The provider id of the user's message this one answers, if any.
    pub answered_provider_id: Option<String>,
    /// Whether the user wrote again after the message this one answers.
    pub user_wrote_since: bool,
    /// When the newest message of the user in the conversation was stored, and its metadata
    /// (which holds when the provider says it was written).
    pub last_inbound_at: Option<Timestamp>,
    /// See `last_inbound_at`.
    #[sqlx(json(nullable))]
    pub last_inbound_metadata: Option<MessageMeta>,
    /// How many parts of the message the provider has accepted so far.
    pub parts_sent: i64,
}

impl FromOwnedRow for DeliveryContext {
    fn from_owned_row(r: &mut OwnedRow) -> Result<Self, StoreError> {
        Ok(DeliveryContext {
            message: Message::from_owned_row(r)?,
            account: r.get("account")?,
            conversation_title: r.get("conversation_title")?,
            recipient: r.get("recipient")?,
            contact_id: r.get("contact_id")?,
            recipient_unreachable_since: r
                .get::<Option<i64>>("recipient_unreachable_since")?
                .map(Timestamp),
            answered_provider_id: r.get("answered_provider_id")?,
            user_wrote_since: r.get::<i64>("user_wrote_since")? != 0,
            last_inbound_at: r.get::<Option<i64>>("last_inbound_at")?.map(Timestamp),
            last_inbound_metadata: r.json_or_null("last_inbound_metadata")?,
            parts_sent: r.get("parts_sent")?,
        })
    }
}

/// Loads a message with what its delivery needs.
pub async fn delivery_context(
    store: &Store,
    id: &MessageId,
) -> Result<Option<DeliveryContext>, StoreError> {
    Ok(store.read_once(delivery_context_query(id)).await?.pop())
}

/// The query of [`delivery_context`].
pub fn delivery_context_query(id: &MessageId) -> Query {
    query(
            "SELECT m.id, m.conversation_id, m.seq, m.channel, m.direction, m.role, m.author, \
             m.kind, m.content, m.attachments, m.provider_message_id, m.reply_to, m.status, \
             m.status_at, m.error, m.created_at, m.metadata, c.account, c.title AS conversation_title, \
             k.external_id AS recipient, \
             c.contact_id, k.unreachable_since AS recipient_unreachable_since, \
             a.provider_message_id AS answered_provider_id, \
             (a.id IS NOT NULL AND EXISTS (SELECT 1 FROM messages n \
              WHERE n.conversation_id = m.conversation_id AND n.direction = 'inbound' \
              AND n.seq > a.seq)) AS user_wrote_since, \
             l.created_at AS last_inbound_at, l.metadata AS last_inbound_metadata, \
             (SELECT COUNT(*) FROM message_parts p WHERE p.message_id = m.id) AS parts_sent \
             FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             JOIN contacts k ON k.id = c.contact_id \
             LEFT JOIN messages a ON a.id = m.reply_to \
             LEFT JOIN messages l ON l.id = (SELECT i.id FROM messages i \
              WHERE i.conversation_id = m.conversation_id AND i.direction = 'inbound' \
              ORDER BY i.seq DESC LIMIT 1) \
             WHERE m.id = $1",
    )
    .bind(id)
}

/// A message stored by [`append_inbound`] or [`start_inbound`], with its conversation as the
/// same write left it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Appended {
    /// The stored message.
    #[sqlx(flatten)]
    pub message: Message,
    /// Who answers the conversation.
    #[sqlx(try_from = "String")]
    pub conversation_mode: Mode,
    /// The conversation's contact (the message's author).
    pub contact_id: ContactId,
    /// Which of our identities on the channel the conversation runs through.
    account: String,
    /// The agent the conversation is locked to, and since when for how long.
    active_agent: Option<String>,
    locked_at: Option<Timestamp>,
    lock_ttl_secs: Option<i64>,
    /// The oldest message of the conversation waiting for its turn, as far as the write could
    /// tell: `NULL` when it could not (on PostgreSQL, when another write to the conversation
    /// committed while this one waited for it).
    next_turn: Option<MessageId>,
}

impl FromOwnedRow for Appended {
    fn from_owned_row(r: &mut OwnedRow) -> Result<Self, StoreError> {
        Ok(Appended {
            message: Message::from_owned_row(r)?,
            conversation_mode: r.parse("conversation_mode")?,
            contact_id: r.get::<String>("contact_id")?.into(),
            account: r.get("account")?,
            active_agent: r.get("active_agent")?,
            locked_at: r.get::<Option<i64>>("locked_at")?.map(Timestamp),
            lock_ttl_secs: r.get("lock_ttl_secs")?,
            next_turn: r.get::<Option<String>>("next_turn")?.map(MessageId::from),
        })
    }
}

impl Appended {
    /// The conversation as its turn acts on it, when this message is the first in it waiting for
    /// an answer: the turn then need not read it back. (A handoff committed in between is still
    /// caught: a reply is stored only while the AI answers.)
    pub fn answering(&self) -> Option<Answering> {
        (self.next_turn.as_ref() == Some(&self.message.id)).then(|| Answering {
            id: self.message.conversation_id.clone(),
            channel: self.message.channel,
            account: self.account.clone(),
            contact_id: self.contact_id.clone(),
            mode: self.conversation_mode,
            active_agent: self.active_agent.clone(),
            locked_at: self.locked_at,
            lock_ttl_secs: self.lock_ttl_secs,
            contact_identity: None,
        })
    }
}

/// The columns of [`Appended`] besides the message's, in the SQLite scripts: from the
/// conversation `c` (as the script left it), with the oldest of its messages waiting for a turn.
macro_rules! appended_columns {
    ($conversation:literal) => {
        concat!(
            "c.mode AS conversation_mode, c.contact_id, c.account, c.active_agent, c.locked_at, \
             c.lock_ttl_secs, (SELECT message_id FROM pending_turns WHERE conversation_id = ",
            $conversation,
            " ORDER BY seq LIMIT 1) AS next_turn"
        )
    };
}

/// An end user's message for a conversation they named.
#[derive(Debug, Clone)]
pub struct InboundAppend {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The channel.
    pub channel: Channel,
    /// The author's channel identity; the conversation must be theirs.
    pub external_id: String,
    /// Content kind.
    pub kind: &'static str,
    /// Text.
    pub content: String,
    /// Files.
    pub attachments: Vec<Attachment>,
    /// The provider's id, for deduplication.
    pub provider_message_id: Option<String>,
    /// The sender's own key of the message, for deduplication among their messages.
    pub sender_key: Option<String>,
    /// Whether it needs a turn of the pipeline (not for reactions).
    pub awaits_answer: bool,
    /// Extra data.
    pub metadata: MessageMeta,
}

/// Appends an end user's message to a live, open conversation of theirs, in one round trip.
/// `None` when there is no such conversation (missing, someone else's, deleted or closed).
pub async fn append_inbound(
    store: &Store,
    new: InboundAppend,
    now: Timestamp,
    after: impl FnOnce(&[Appended]) + Send + 'static,
) -> Result<Option<Appended>, StoreError> {
    let write = OneTrip::new(
        concat!(
            "UPDATE conversations SET last_seq = last_seq + 1, updated_at = $4 \
             WHERE id = $1 AND deleted_at IS NULL AND mode <> 'closed' \
             AND contact_id = (SELECT id FROM contacts WHERE channel = $2 AND external_id = $3); \
             INSERT INTO messages (id, conversation_id, seq, channel, direction, role, kind, content, \
             attachments, provider_message_id, status, status_at, created_at, metadata) \
             SELECT $5, id, last_seq, channel, 'inbound', 'user', $6, $7, $8, $9, 'received', $4, $4, $11 \
             FROM conversations WHERE id = $1 AND changes() = 1; \
             INSERT INTO pending_turns (message_id, conversation_id, seq, created_at, owner) \
             SELECT $5, $1, (SELECT seq FROM messages WHERE id = $5), $4, $13 \
             WHERE $10 = 1 AND changes() = 1; \
             INSERT INTO idempotency_keys (channel, external_id, key, message_id, created_at) \
             SELECT $2, $3, $12, $5, $4 WHERE $12 IS NOT NULL \
             AND EXISTS (SELECT 1 FROM messages WHERE id = $5); \
             SELECT m.*, ",
            appended_columns!("$1"),
            " FROM (SELECT",
            columns!(),
            "FROM messages WHERE id = $5) m JOIN conversations c ON c.id = m.conversation_id;"
        ),
        concat!(
            "WITH conversation AS ( \
             UPDATE conversations SET last_seq = last_seq + 1, updated_at = $4 \
             WHERE id = $1 AND deleted_at IS NULL AND mode <> 'closed' \
             AND contact_id = (SELECT id FROM contacts WHERE channel = $2 AND external_id = $3) \
             RETURNING id, last_seq, channel, mode, contact_id, account, active_agent, locked_at, \
             lock_ttl_secs), \
             message AS (INSERT INTO messages (id, conversation_id, seq, channel, direction, role, \
             kind, content, attachments, provider_message_id, status, status_at, created_at, metadata) \
             SELECT $5, id, last_seq, channel, 'inbound', 'user', $6, $7, $8, $9, 'received', $4, $4, $11 \
             FROM conversation RETURNING",
            columns!(),
            "), pending AS (INSERT INTO pending_turns (message_id, conversation_id, seq, created_at, \
             owner) SELECT id, conversation_id, seq, created_at, $13 FROM message WHERE $10 = 1), \
             keyed AS (INSERT INTO idempotency_keys (channel, external_id, key, message_id, created_at) \
             SELECT $2, $3, $12, id, created_at FROM message WHERE $12::text IS NOT NULL) \
             SELECT message.*, conversation.mode AS conversation_mode, conversation.contact_id, \
             conversation.account, conversation.active_agent, conversation.locked_at, \
             conversation.lock_ttl_secs, \
             CASE WHEN conversation.last_seq = (SELECT last_seq + 1 FROM conversations WHERE id = $1) \
             THEN COALESCE((SELECT message_id FROM pending_turns WHERE conversation_id = $1 \
             ORDER BY seq LIMIT 1), CASE WHEN $10 = 1 THEN message.id END) END AS next_turn \
             FROM message, conversation"
        ),
    )
    .bind(new.conversation_id)
    .bind(new.channel.as_str())
    .bind(new.external_id)
    .bind(now)
    .bind(MessageId::generate())
    .bind(new.kind)
    .bind(new.content)
    .bind(serde_json::to_value(&new.attachments).unwrap_or_default())
    .bind(new.provider_message_id)
    .bind(i64::from(new.awaits_answer))
    .bind(new.metadata.to_value())
    .bind(new.sender_key)
    .bind(store.instance());
    Ok(store.write_once(write, after).await?.pop())
}

/// An end user's first message, starting a conversation (see [`start_inbound`]).
#[derive(Debug, Clone)]
pub struct InboundStart {
    /// The new conversation's id.
    pub conversation_id: ConversationId,
    /// Its title.
    pub title: Option<String>,
    /// Which of the gateway's identities on the channel it runs through.
    pub account: String,
    /// The author as the channel names them; created as a contact when new, their name and
    /// handle refreshed (and their reachability restored) when known.
    pub contact: switchboard_channel::ContactRef,
    /// The message (its `conversation_id` is ignored: the new conversation's is used).
    pub message: InboundAppend,
}

/// Whether an end user's message changes their stored contact (their name or handle, or shows
/// them reachable again), in an upsert's `ON CONFLICT` clause.
const CONTACT_CHANGED: &str = "(excluded.display_name IS NOT NULL \
     AND excluded.display_name IS DISTINCT FROM contacts.display_name) \
     OR (excluded.username IS NOT NULL AND excluded.username IS DISTINCT FROM contacts.username) \
     OR contacts.unreachable_since IS NOT NULL";

/// The contact of an [`InboundStart`] (`$1` its id if new, `$2`–`$6` channel, identity, name,
/// handle, now), created or refreshed as `contacts::upsert` does; `updated_at` and `only_when`
/// finish the `ON CONFLICT … DO UPDATE` clause.
fn contact_upsert(updated_at: &str, only_when: &str) -> String {
    format!(
        "INSERT INTO contacts (id, channel, external_id, display_name, username, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) \
         ON CONFLICT (channel, external_id) DO UPDATE SET \
         display_name = COALESCE(excluded.display_name, contacts.display_name), \
         username = COALESCE(excluded.username, contacts.username), unreachable_since = NULL, \
         unreachable_reason = NULL, updated_at = {updated_at}{only_when}"
    )
}

/// The contact upsert of SQLite's scripts: a known contact's row is left alone unless the
/// message changes it.
fn contact_upsert_sqlite() -> String {
    contact_upsert("excluded.updated_at", &format!(" WHERE {CONTACT_CHANGED}"))
}

/// The contact upsert on PostgreSQL, which needs the row back (and so locked) even when nothing
/// changes — a contact a concurrent transaction just inserted is not in the statement's
/// snapshot — so there it is always "updated", its `updated_at` only on a change.
fn contact_upsert_postgres() -> String {
    contact_upsert(
        &format!(
            "CASE WHEN {CONTACT_CHANGED} THEN excluded.updated_at ELSE contacts.updated_at END"
        ),
        "",
    )
}

/// The arguments of both inbound scripts: `$1` a new contact's id, `$2` channel, `$3` the
/// author's identity, `$4` name, `$5` handle, `$6` now, `$7` a new conversation's id, `$8`
/// account, `$9` title, `$10` the message's id, `$11` kind, `$12` text, `$13` attachments, `$14`
/// provider id, `$15` metadata, `$16` whether it awaits an answer, `$17` the instance that owns
/// its turn, `$18` the sender's key.
fn inbound_write(write: OneTrip, new: InboundStart, now: Timestamp, instance: &str) -> OneTrip {
    let InboundStart {
        conversation_id,
        title,
        account,
        contact,
        message,
    } = new;
    write
        .bind(ContactId::generate())
        .bind(message.channel.as_str())
        .bind(message.external_id)
        .bind(contact.display_name)
        .bind(contact.username)
        .bind(now)
        .bind(conversation_id)
        .bind(account)
        .bind(title)
        .bind(MessageId::generate())
        .bind(message.kind)
        .bind(message.content)
        .bind(serde_json::to_value(&message.attachments).unwrap_or_default())
        .bind(message.provider_message_id)
        .bind(message.metadata.to_value())
        .bind(i64::from(message.awaits_answer))
        .bind(instance.to_owned())
        .bind(message.sender_key)
}

/// The start of the statement that stores an [`InboundStart`]'s message.
const INSERT_INBOUND: &str = "INSERT INTO messages (id, conversation_id, seq, channel, direction, \
     role, kind, content, attachments, provider_message_id, status, status_at, created_at, metadata)";

/// The end of SQLite's inbound scripts: the sender's key of the message `$10`, and the message
/// with its conversation `c` (`appended`: [`appended_columns`]).
fn sqlite_stored_inbound(appended: &str) -> String {
    format!(
        "INSERT INTO idempotency_keys (channel, external_id, key, message_id, created_at) \
         SELECT $2, $3, $18, $10, $6 WHERE $18 IS NOT NULL; \
         SELECT m.*, {appended} FROM (SELECT{columns}FROM messages WHERE id = $10) m \
         JOIN conversations c ON c.id = m.conversation_id;",
        columns = columns!(),
    )
}

/// Starts a conversation with an end user's message, in one round trip: the contact (created
/// or refreshed as `contacts::upsert` does), the conversation (as `conversations::create` stores
/// it), the message at seq 1, its turn and its sender's key. A message whose provider id or sender
/// key is stored already fails the whole write with a unique violation: nothing is kept, and the
/// caller's retry finds the stored one.
pub async fn start_inbound(
    store: &Store,
    new: InboundStart,
    now: Timestamp,
    after: impl FnOnce(&[Appended]) + Send + 'static,
) -> Result<Option<Appended>, StoreError> {
    static SQLITE: Sql = Sql::new(|| {
        format!(
            "{contact}; \
             INSERT INTO conversations (id, channel, account, contact_id, title, last_seq, \
             created_at, updated_at) \
             SELECT $7, $2, $8, id, $9, 1, $6, $6 FROM contacts WHERE channel = $2 AND external_id = $3; \
             {insert} \
             VALUES ($10, $7, 1, $2, 'inbound', 'user', $11, $12, $13, $14, 'received', $6, $6, $15); \
             INSERT INTO pending_turns (message_id, conversation_id, seq, created_at, owner) \
             SELECT $10, $7, 1, $6, $17 WHERE $16 = 1; \
             {stored}",
            contact = contact_upsert_sqlite(),
            insert = INSERT_INBOUND,
            stored = sqlite_stored_inbound(appended_columns!("$7")),
        )
    });
    static POSTGRES: Sql = Sql::new(|| {
        format!(
            "WITH contact AS ({contact} RETURNING id), \
             conversation AS (INSERT INTO conversations (id, channel, account, contact_id, title, \
             last_seq, created_at, updated_at) \
             SELECT $7, $2, $8, id, $9, 1, $6, $6 FROM contact RETURNING id, contact_id), \
             message AS ({insert} \
             SELECT $10, id, 1, $2, 'inbound', 'user', $11, $12, $13, $14, 'received', $6, $6, $15 \
             FROM conversation RETURNING{columns}), \
             pending AS (INSERT INTO pending_turns (message_id, conversation_id, seq, created_at, \
             owner) SELECT id, conversation_id, seq, created_at, $17 FROM message WHERE $16 = 1), \
             keyed AS (INSERT INTO idempotency_keys (channel, external_id, key, message_id, created_at) \
             SELECT $2, $3, $18, id, created_at FROM message WHERE $18::text IS NOT NULL) \
             SELECT message.*, 'ai' AS conversation_mode, conversation.contact_id, \
             $8 AS account, NULL::text AS active_agent, NULL::bigint AS locked_at, \
             NULL::bigint AS lock_ttl_secs, CASE WHEN $16 = 1 THEN message.id END AS next_turn \
             FROM message, conversation",
            contact = contact_upsert_postgres(),
            insert = INSERT_INBOUND,
            columns = columns!(),
        )
    });
    let write = inbound_write(
        OneTrip::new(SQLITE.text(), POSTGRES.text()),
        new,
        now,
        store.instance(),
    );
    Ok(store.write_once(write, after).await?.pop())
}

/// Stores an end user's message in their current conversation on its channel and account — the
/// most recently active one that is open — or, when they have none, in a new one (`new`'s id and
/// title); the contact is created or refreshed on the way, as by [`start_inbound`]. The messaging
/// channels' hot path: on SQLite one round trip; on PostgreSQL two statements in a transaction,
/// the first locking the contact's row, so that the second (whose snapshot is taken after the
/// lock) sees a conversation a concurrent first message of the same contact just started, and
/// does not start a second one. A message whose provider id or sender key is stored already
/// fails with a unique violation, as with [`start_inbound`].
pub async fn continue_inbound(
    store: &Store,
    new: InboundStart,
    now: Timestamp,
    after: impl FnOnce(&[Appended]) + Send + 'static,
) -> Result<Option<Appended>, StoreError> {
    /// The contact's current conversation, as `conversations::current_for_contact` finds it.
    const CURRENT: &str = "SELECT id FROM conversations WHERE contact_id = \
         (SELECT id FROM contacts WHERE channel = $2 AND external_id = $3) AND channel = $2 \
         AND account = $8 AND deleted_at IS NULL AND mode <> 'closed' \
         ORDER BY updated_at DESC LIMIT 1";
    // The message takes the conversation's next seq before the conversation is updated: its
    // `updated_at` decides which conversation is current, and must not change under the script.
    static SQLITE: Sql = Sql::new(|| {
        format!(
            "{contact}; \
             INSERT INTO conversations (id, channel, account, contact_id, title, last_seq, \
             created_at, updated_at) \
             SELECT $7, $2, $8, id, $9, 0, $6, $6 FROM contacts WHERE channel = $2 \
             AND external_id = $3 AND NOT EXISTS ({CURRENT}); \
             {insert} \
             SELECT $10, id, last_seq + 1, $2, 'inbound', 'user', $11, $12, $13, $14, 'received', \
             $6, $6, $15 FROM conversations WHERE id = ({CURRENT}); \
             UPDATE conversations SET last_seq = last_seq + 1, updated_at = $6 \
             WHERE id = (SELECT conversation_id FROM messages WHERE id = $10); \
             INSERT INTO pending_turns (message_id, conversation_id, seq, created_at, owner) \
             SELECT id, conversation_id, seq, $6, $17 FROM messages WHERE id = $10 AND $16 = 1; \
             {stored}",
            contact = contact_upsert_sqlite(),
            insert = INSERT_INBOUND,
            stored = sqlite_stored_inbound(appended_columns!("c.id")),
        )
    });
    // `$1` is the contact's id here, as the first statement returned it. The oldest message
    // waiting is known only for a conversation this statement started, or one that no other
    // write changed since its snapshot (see `append_inbound`).
    static POSTGRES: Sql = Sql::new(|| {
        format!(
            "WITH current AS (SELECT id FROM conversations WHERE contact_id = $1 AND channel = $2 \
             AND account = $8 AND deleted_at IS NULL AND mode <> 'closed' \
             ORDER BY updated_at DESC LIMIT 1), \
             started AS (INSERT INTO conversations (id, channel, account, contact_id, title, \
             last_seq, created_at, updated_at) \
             SELECT $7, $2, $8, $1, $9, 1, $6, $6 WHERE NOT EXISTS (SELECT 1 FROM current) \
             RETURNING {conversation}, TRUE AS fresh), \
             taken AS (UPDATE conversations SET last_seq = last_seq + 1, updated_at = $6 \
             WHERE id = (SELECT id FROM current) RETURNING {conversation}, FALSE AS fresh), \
             conversation AS (SELECT * FROM started UNION ALL SELECT * FROM taken), \
             message AS ({insert} \
             SELECT $10, id, last_seq, $2, 'inbound', 'user', $11, $12, $13, $14, 'received', $6, \
             $6, $15 FROM conversation RETURNING{columns}), \
             pending AS (INSERT INTO pending_turns (message_id, conversation_id, seq, created_at, \
             owner) SELECT id, conversation_id, seq, created_at, $17 FROM message WHERE $16 = 1), \
             keyed AS (INSERT INTO idempotency_keys (channel, external_id, key, message_id, created_at) \
             SELECT $2, $3, $18, id, created_at FROM message WHERE $18::text IS NOT NULL) \
             SELECT message.*, conversation.mode AS conversation_mode, conversation.contact_id, \
             conversation.account, conversation.active_agent, conversation.locked_at, \
             conversation.lock_ttl_secs, \
             CASE WHEN conversation.fresh THEN CASE WHEN $16 = 1 THEN message.id END \
             WHEN conversation.last_seq = \
             (SELECT last_seq + 1 FROM conversations WHERE id = conversation.id) \
             THEN COALESCE((SELECT message_id FROM pending_turns \
             WHERE conversation_id = conversation.id ORDER BY seq LIMIT 1), \
             CASE WHEN $16 = 1 THEN message.id END) END AS next_turn \
             FROM message, conversation",
            conversation = "id, last_seq, mode, contact_id, account, active_agent, locked_at, \
                            lock_ttl_secs",
            insert = INSERT_INBOUND,
            columns = columns!(),
        )
    });
    static CONTACT: Sql = Sql::new(|| format!("{} RETURNING id", contact_upsert_postgres()));
    let mut write = inbound_write(
        OneTrip::new(SQLITE.text(), POSTGRES.text()),
        new,
        now,
        store.instance(),
    );
    if store.backend() == Backend::Sqlite {
        return Ok(store.write_once(write, after).await?.pop());
    }
    let mut tx = store.begin().await?;
    let mut contact = query(CONTACT.text());
    for arg in &write.args[..6] {
        contact = contact.bind(arg.clone());
    }
    let contact: ContactKey = tx.fetch_one(contact).await?;
    write.args[0] = contact.id.into();
    let mut rows: Vec<Appended> = tx.fetch_all(write.postgres_query()).await?;
    tx.commit_then(|| after(&rows)).await?;
    Ok(rows.pop())
}

/// A contact's id, as an upsert returns it.
#[derive(sqlx::FromRow)]
struct ContactKey {
    id: ContactId,
}

/// An agent's answer to a message.
#[derive(Debug, Clone)]
pub struct ReplyAppend {
    /// The message answered.
    pub inbound_id: MessageId,
    /// Its seq.
    pub inbound_seq: i64,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// The agent that wrote the answer.
    pub agent: String,
    /// The agent the conversation stays locked to: the one that answered, unless the user chose
    /// it for this message only.
    pub lock_agent: String,
    /// How long the conversation stays locked to `lock_agent`.
    pub lock_ttl: std::time::Duration,
    /// The answer.
    pub content: String,
    /// Its initial delivery status.
    pub status: DeliveryStatus,
    /// Extra data (agent errors).
    pub metadata: MessageMeta,
    /// Queue the reply's evaluation.
    pub evaluate: bool,
    /// What the reply used (a `usage` row is written with it).
    pub usage: super::usage::NewUsage,
    /// How long the reply's delivery job is claimed for when the write claims it.
    pub delivery_lease: std::time::Duration,
}

/// A reply [`append_reply`] stored.
#[derive(Debug, Clone)]
pub struct StoredReply {
    /// The reply.
    pub message: Message,
    /// Its delivery job, when the write claimed it for this instance (on SQLite, when it heads
    /// its lane): the delivery worker is handed it instead of claiming it.
    pub delivery: Option<jobs::Claimed>,
}

/// The row of a stored reply.
#[derive(sqlx::FromRow)]
struct ReplyRow {
    #[sqlx(flatten)]
    message: Message,
    delivery_claimed: bool,
}

impl FromOwnedRow for ReplyRow {
    fn from_owned_row(r: &mut OwnedRow) -> Result<Self, StoreError> {
        Ok(ReplyRow {
            message: Message::from_owned_row(r)?,
            delivery_claimed: r.get::<i64>("delivery_claimed")? != 0,
        })
    }
}

/// The reply's usage row (see `store::usage`), for [`append_reply`]: the columns, then the values
/// after the message's ids and contact.
const USAGE_INSERT: &str = "INSERT INTO usage (message_id, conversation_id, contact_id, agent, \
     model, tokens_in, tokens_out, estimated, cost_micros, response_time_ms, created_at)";
const USAGE_VALUES: &str = "$4, $14, $15, $16, $17, $18, $19, $1";

/// In one round trip: takes the message off the work list, and — if it was still on it and the AI
/// still answers the conversation — stores the agent's answer and locks the conversation to
/// `lock_agent`. A lock held by the same agent is renewed only once more than half of it has passed:
/// an active conversation keeps its agent, and most answers leave the (indexed) lock columns as
/// they are. On SQLite the reply's delivery job is claimed in the same write when it heads its
/// lane. Returns the answer, or `None` when nothing was stored; `after` sees it as soon as it is
/// committed.
pub async fn append_reply(
    store: &Store,
    reply: ReplyAppend,
    now: Timestamp,
    after: impl FnOnce(&Message) + Send + 'static,
) -> Result<Option<StoredReply>, StoreError> {
    // The reply is read back last, by its (new) id rather than with `RETURNING` (which SQLite
    // buffers in a temporary table), with whether its delivery job was claimed as written.
    static SQLITE: Sql = Sql::new(|| {
        format!(
            "DELETE FROM pending_turns WHERE conversation_id = $3 AND seq = $10; \
             UPDATE conversations SET last_seq = last_seq + 1, updated_at = $1, {lock}, \
             lock_ttl_secs = $5 \
             WHERE id = $3 AND mode = 'ai' AND deleted_at IS NULL AND changes() = 1; \
             INSERT INTO messages (id, conversation_id, seq, channel, direction, role, author, kind, \
             content, attachments, reply_to, status, status_at, created_at, metadata) \
             SELECT $6, id, last_seq, channel, 'outbound', 'ai', $4, 'text', $7, '[]', $2, $8, $1, $1, $9 \
             FROM conversations WHERE id = $3 AND changes() = 1; \
             {usage} SELECT m.id, m.conversation_id, c.contact_id, {usage_values} \
             FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.id = $6; \
             {deliver}; {evaluate}; \
             SELECT{columns}, EXISTS (SELECT 1 FROM jobs WHERE id = $11 AND lease_until IS NOT NULL) \
             AS delivery_claimed FROM messages WHERE id = $6;",
            usage = USAGE_INSERT,
            usage_values = USAGE_VALUES,
            lock = sql::renew_lock("$20", "$1"),
            columns = columns!(),
            deliver = sql::claimed_delivery_job("$11", "$6", "$21", "$22"),
            evaluate = sql::evaluation_job("$13", "messages", "id = $6 AND $12 = 1"),
        )
    });
    static POSTGRES: Sql = Sql::new(|| {
        format!(
            "WITH handled AS ( \
             DELETE FROM pending_turns WHERE conversation_id = $3 AND seq = $10 RETURNING seq), \
             conversation AS ( \
             UPDATE conversations SET last_seq = last_seq + 1, updated_at = $1, {lock}, \
             lock_ttl_secs = $5 \
             WHERE id = $3 AND mode = 'ai' AND deleted_at IS NULL AND EXISTS (SELECT 1 FROM handled) \
             RETURNING id, last_seq, channel, contact_id), \
             reply AS (INSERT INTO messages (id, conversation_id, seq, channel, direction, role, author, kind, \
             content, attachments, reply_to, status, status_at, created_at, metadata) \
             SELECT $6, id, last_seq, channel, 'outbound', 'ai', $4, 'text', $7, '[]', $2, $8, $1, $1, $9 \
             FROM conversation RETURNING{columns}), \
             used AS ({usage} SELECT reply.id, reply.conversation_id, conversation.contact_id, \
             {usage_values} FROM reply, conversation), \
             job AS ({deliver}), evaluation AS ({evaluate}) \
             SELECT *, FALSE AS delivery_claimed FROM reply",
            usage = USAGE_INSERT,
            usage_values = USAGE_VALUES,
            lock = sql::renew_lock("$20", "$1"),
            columns = columns!(),
            deliver = sql::delivery_job("$11", "reply", "TRUE"),
            evaluate = sql::evaluation_job("$13", "reply", "$12 = 1"),
        )
    });
    let delivery_job = JobId::generate();
    let write = OneTrip::new(SQLITE.text(), POSTGRES.text())
        .bind(now)
        .bind(reply.inbound_id)
        .bind(reply.conversation_id)
        .bind(reply.agent)
        .bind(i64::try_from(reply.lock_ttl.as_secs()).unwrap_or(i64::MAX))
        .bind(MessageId::generate())
        .bind(reply.content)
        .bind(reply.status.as_str())
        .bind(reply.metadata.to_value())
        .bind(reply.inbound_seq)
        .bind(delivery_job.clone())
        .bind(i64::from(reply.evaluate))
        .bind(JobId::generate())
        .bind(reply.usage.model)
        .bind(reply.usage.tokens_in)
        .bind(reply.usage.tokens_out)
        .bind(i64::from(reply.usage.estimated))
        .bind(reply.usage.cost_micros)
        .bind(reply.usage.response_time_ms)
        .bind(reply.lock_agent)
        .bind(now.plus(reply.delivery_lease))
        .bind(store.instance());
    let stored: Vec<ReplyRow> = store
        .write_once(write, move |rows: &[ReplyRow]| {
            if let Some(row) = rows.first() {
                after(&row.message);
            }
        })
        .await?;
    Ok(stored.into_iter().next().map(|row| {
        let delivery = row.delivery_claimed.then(|| jobs::Claimed {
            // As `jobs::claim` would return it.
            job: jobs::Job {
                id: delivery_job,
                queue: jobs::DELIVER.to_owned(),
                subject: row.message.id.to_string(),
                lane: Some(row.message.conversation_id.to_string()),
                payload: sqlx::types::Json(serde_json::Value::Object(serde_json::Map::new())),
                attempts: 1,
                last_error: None,
                created_at: now,
            },
            lease_until: now.plus(reply.delivery_lease),
        });
        StoredReply {
            message: row.message,
            delivery,
        }
    }))
}

/// The provider ids of a conversation's messages before seq `before`, oldest first, at most
/// `limit` of the newest (an e-mail's `References`).
pub async fn provider_ids_before(
    db: &mut impl Db,
    conversation_id: &ConversationId,
    before: i64,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let mut rows: Vec<(String,)> = db
        .fetch_all(
            query(
                "SELECT provider_message_id FROM messages WHERE conversation_id = $1 AND seq < $2 \
                 AND provider_message_id IS NOT NULL ORDER BY seq DESC LIMIT $3",
            )
            .bind(conversation_id)
            .bind(before)
            .bind(limit),
        )
        .await?;
    rows.reverse();
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// How many messages a contact wrote (on any of their conversations) since `since`.
pub async fn inbound_of_contact_since(
    db: &mut impl Db,
    contact_id: &ContactId,
    since: Timestamp,
) -> Result<i64, StoreError> {
    let (n,): (i64,) = db
        .fetch_one(
            query(
                "SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
                 WHERE c.contact_id = $1 AND m.direction = 'inbound' AND m.created_at > $2",
            )
            .bind(contact_id)
            .bind(since),
        )
        .await?;
    Ok(n)
}
