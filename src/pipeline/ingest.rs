//! Ingest: normalized inbound events into the database, in one transaction.
//!
//! One webhook delivery (or one web chat request) is ingested atomically: contacts, conversations
//! and messages are written together or not at all, and only after the commit does the caller
//! acknowledge the provider. Messages already stored under the same provider id are recognised and
//! skipped, so provider retries never create duplicates.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_channel::{
    Attachment, Channel, Content, ConversationRef, DeliveryStatus, InboundEdit, InboundEvent,
    InboundMessage, StatusUpdate,
};

use crate::{
    agents::Chosen,
    ids::{ContactId, ConversationId},
    jobs::fetch_media::FetchMedia,
    limits::{
        Refused,
        contacts::{ContactFloods, ContactTurn},
        quotas::{Exceeded, Quotas},
    },
    live::Hub,
    store::meta::MessageMeta,
    store::{
        Db, Store, StoreError, Tx, contacts,
        conversations::{self, Answering, Conversation, Mode, NewConversation},
        cursors, jobs,
        messages::{
            self, Appended, Direction, InboundAppend, InboundStart, Message, NewMessage, Role,
        },
        threads,
    },
    text,
    time::Timestamp,
};

/// What ingesting one event did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A new message was stored.
    Stored {
        /// The stored message.
        message: Message,
        /// Its author.
        contact_id: ContactId,
        /// Who answers its conversation.
        mode: Mode,
        /// Whether it waits for a turn of the pipeline (everything but reactions).
        awaits_answer: bool,
        /// The conversation as the write that stored the message left it, when the message is
        /// the first in it waiting for an answer: its turn need not read it back.
        answering: Option<Box<Answering>>,
    },
    /// The provider had already delivered this message; nothing changed.
    Duplicate {
        /// The message stored the first time.
        message: Message,
    },
    /// An edit was applied to a stored message.
    Edited {
        /// The message as it is now.
        message: Message,
    },
    /// A delivery status moved a sent message forward.
    StatusUpdated {
        /// The message as it is now.
        message: Message,
    },
    /// A contact blocked or unblocked us.
    Reachability {
        /// The contact.
        contact_id: ContactId,
        /// Whether messages can reach them now.
        reachable: bool,
    },
    /// The contact was told something the gateway decided (that they write faster than they
    /// can be answered): an outbound notice, stored with its delivery job.
    Notice {
        /// The notice.
        message: Message,
    },
    /// The event changed nothing.
    Ignored {
        /// Why.
        reason: &'static str,
    },
}

/// Why a batch was not ingested. Nothing of the batch was stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The message names a conversation that does not exist (or is not the sender's).
    #[error("conversation not found")]
    ConversationNotFound,
    /// The message names a conversation that no longer takes messages.
    #[error("the conversation is closed")]
    ConversationClosed,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request's one-time value was used before: a replayed webhook.
    #[error("this request was already received (its one-time token was used)")]
    Replayed,
    /// The sender is over one of their rates: nothing was stored.
    #[error("{}", .0.reason)]
    Limited(Refused),
    /// The sender is over their quota: nothing was stored.
    #[error("{}", .0.reason)]
    OverQuota(Exceeded),
    /// The ingest task panicked or was cancelled by a shutdown.
    #[error("ingest failed: {0}")]
    Internal(String),
}

/// How often a batch is retried when a concurrent transaction stored the same provider message
/// (PostgreSQL; SQLite serialises writers).
const ATTEMPTS: usize = 3;

/// What ingest needs to know about the channel a batch came from.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    /// The channel.
    pub channel: Channel,
    /// Whether its media must be downloaded (provider links expire): attachments then get a
    /// `fetch_media` job in the same transaction.
    pub fetches_media: bool,
    /// At most this many messages of one contact are answered per hour; further ones are stored
    /// unanswered (mail loops).
    pub answers_per_hour: Option<u32>,
    /// The per-contact rate of answers (messaging channels), and what a contact over it is told
    /// once: over it, messages are stored unanswered.
    pub floods: Option<(&'a ContactFloods, &'a str)>,
    /// The contacts' quotas (messaging channels), and what a contact over theirs is told once per
    /// period: over it, messages are stored unanswered.
    pub quotas: Option<(&'a Quotas, &'a str)>,
    /// Counts a new message against its sender's rates before it is stored (website visitors:
    /// over a rate, the message is refused and nothing is stored). Called only once the message
    /// is known not to be a retry of a stored one.
    pub admit: Option<&'a Admission>,
    /// The agent the sender chose for their message (a website visitor's selectable agent,
    /// checked by the catalogue). Stored in the message's metadata, so that the turn — also one
    /// resumed after a restart — asks that agent.
    pub chosen: Option<&'a Chosen>,
}

/// Checks a new message against its sender's quota and counts it against their rates; `true` when
/// it starts a conversation. Answers [`IngestError::Limited`] or [`IngestError::OverQuota`].
pub type Admission = dyn Fn(bool) -> Result<(), IngestError> + Send + Sync;

pub use switchboard_channel::Checkpoint;

/// Ingests a batch in one transaction (recording `checkpoint` with it), publishes what changed to
/// the live hub, and returns one outcome per event.
pub async fn ingest(
    store: &Store,
    hub: &Hub,
    source: Source<'_>,
    events: &[InboundEvent],
    checkpoint: Option<&Checkpoint>,
    now: Timestamp,
) -> Result<Vec<Outcome>, IngestError> {
    let mut attempt = 1;
    loop {
        let result = match events {
            [InboundEvent::Message(message)]
                if checkpoint.is_none() && appends_to_named_conversation(message) =>
            {
                append(store, hub, source, message, now)
                    .await
                    .map(|o| vec![o])
            }
            [InboundEvent::Message(message)]
                if checkpoint.is_none() && starts_plain_conversation(source, message) =>
            {
                start(store, hub, source, message, now)
                    .await
                    .map(|o| vec![o])
            }
            [InboundEvent::Message(message)]
                if checkpoint.is_none() && joins_current_conversation(source, message) =>
            {
                match continue_current(store, hub, source, message, now).await {
                    Ok(Some(outcome)) => Ok(vec![outcome]),
                    Ok(None) => Box::pin(try_ingest(store, hub, source, events, None, now)).await,
                    Err(e) => Err(e),
                }
            }
            // Boxed: its transaction of many statements would otherwise make the future of
            // every message larger, also of those that take the one-trip paths above.
            _ => Box::pin(try_ingest(store, hub, source, events, checkpoint, now)).await,
        };
        match result {
            Err(IngestError::Store(e)) if e.is_unique_violation() && attempt < ATTEMPTS => {
                // A concurrent delivery of the same message won; the next attempt sees it.
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(5 * attempt as u64)).await;
            }
            result => return result,
        }
    }
}

/// Whether a message can take the one-round-trip path: it names its conversation (web chat) and
/// needs no lookup of a replied-to message.
fn appends_to_named_conversation(message: &InboundMessage) -> bool {
    matches!(message.conversation, ConversationRef::Existing(_)) && message.reply_to.is_none()
}

/// Whether a message can take the one-round-trip path of a messaging channel: it goes to its
/// sender's current conversation, quotes nothing, brings no media to download, and its channel
/// caps no answers per hour (all of which the transaction path looks up or adds).
fn joins_current_conversation(source: Source<'_>, message: &InboundMessage) -> bool {
    matches!(message.conversation, ConversationRef::Current)
        && message.reply_to.is_none()
        && source.answers_per_hour.is_none()
        && !(source.fetches_media && matches!(message.content, Content::Media { .. }))
}

/// Whether a message can take the one-round-trip path of a new conversation: it starts one,
/// quotes nothing, and its channel counts nothing per contact at ingest (no hourly cap, no flood
/// or quota check, no media to fetch: web chat, whose visitors are admitted before).
fn starts_plain_conversation(source: Source<'_>, message: &InboundMessage) -> bool {
    matches!(message.conversation, ConversationRef::New)
        && message.reply_to.is_none()
        && source.answers_per_hour.is_none()
        && source.floods.is_none()
        && source.quotas.is_none()
        && !source.fetches_media
}

/// A visitor's first message of a conversation, stored with its contact and conversation in one
/// round trip (after a duplicate check when the client sent an idempotency key).
async fn start(
    store: &Store,
    hub: &Hub,
    source: Source<'_>,
    inbound: &InboundMessage,
    now: Timestamp,
) -> Result<Outcome, IngestError> {
    if let Some(message) = retried_or_admitted(store, source, inbound).await? {
        return Ok(Outcome::Duplicate { message });
    }
    let started = messages::start_inbound(store, starting(source, inbound), now, publisher(hub))
        .await?
        .ok_or(IngestError::Store(StoreError::DuplicateRace))?;
    Ok(stored(started, inbound))
}

/// A message of a messaging channel's contact, stored in their current conversation (or a new
/// one) in one round trip. `None` when the sender is over their quota or rate: whether that
/// leaves the message unanswered depends on who answers the conversation, which the
/// transaction path reads before it decides (and tells the contact).
async fn continue_current(
    store: &Store,
    hub: &Hub,
    source: Source<'_>,
    inbound: &InboundMessage,
    now: Timestamp,
) -> Result<Option<Outcome>, IngestError> {
    if let Some(message) = retried_or_admitted(store, source, inbound).await? {
        return Ok(Some(Outcome::Duplicate { message }));
    }
    if !within_limits(source, inbound) {
        return Ok(None);
    }
    let stored_message =
        messages::continue_inbound(store, starting(source, inbound), now, publisher(hub))
            .await?
            .ok_or(IngestError::Store(StoreError::DuplicateRace))?;
    Ok(Some(stored(stored_message, inbound)))
}

/// Whether a message may be stored for an answer without asking who answers its conversation:
/// it expects no answer, or its sender is within their quota and their rate (the message is
/// counted against the rate here, also when an expert turns out to answer the conversation —
/// a rate of messages, not of AI answers, in that case). When not, the transaction path decides:
/// the contact is left to be told there.
fn within_limits(source: Source<'_>, inbound: &InboundMessage) -> bool {
    if !inbound.content.expects_answer() {
        return true;
    }
    let (channel, sender) = (source.channel, inbound.from.external_id.as_str());
    if let Some((quotas, _)) = source.quotas
        && quotas.check_identity(channel, sender).is_err()
    {
        return false;
    }
    if let Some((floods, _)) = source.floods
        && let ContactTurn::Quiet { tell } = floods.check(channel, sender)
    {
        if tell {
            floods.untell(channel, sender);
        }
        return false;
    }
    true
}

/// What the one-trip writes store for a message that may start a conversation: the contact, and
/// the new conversation's id and title (from the subject, else the text).
fn starting(source: Source<'_>, inbound: &InboundMessage) -> InboundStart {
    let (attachments, metadata) = message_data(inbound, source.chosen);
    let text = inbound.content.to_text();
    let about = inbound
        .subject
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(&text);
    let conversation_id = ConversationId::generate();
    InboundStart {
        title: text::title(about),
        account: inbound.account.clone(),
        contact: inbound.from.clone(),
        message: InboundAppend {
            conversation_id: conversation_id.clone(),
            channel: source.channel,
            external_id: inbound.from.external_id.clone(),
            kind: inbound.content.kind(),
            content: text,
            attachments,
            provider_message_id: inbound.provider_message_id.clone(),
            sender_key: inbound.sender_key.clone(),
            awaits_answer: inbound.content.expects_answer(),
            metadata,
        },
        conversation_id,
    }
}

/// Publishes what a one-trip write stored, once it is committed.
fn publisher(hub: &Hub) -> impl FnOnce(&[Appended]) + Send + 'static {
    let hub = hub.clone();
    move |rows| rows.iter().for_each(|row| hub.message(&row.message))
}

/// The outcome of a message a one-trip write stored.
fn stored(appended: Appended, inbound: &InboundMessage) -> Outcome {
    Outcome::Stored {
        answering: appended.answering().map(|answering| {
            Box::new(Answering {
                contact_identity: Some(inbound.from.external_id.clone()),
                ..answering
            })
        }),
        message: appended.message,
        contact_id: appended.contact_id,
        mode: appended.conversation_mode,
        awaits_answer: inbound.content.expects_answer(),
    }
}

/// The hot path of web chat: one message for a conversation the visitor named, stored in one
/// round trip (after a duplicate check when the client sent an idempotency key).
async fn append(
    store: &Store,
    hub: &Hub,
    source: Source<'_>,
    inbound: &InboundMessage,
    now: Timestamp,
) -> Result<Outcome, IngestError> {
    let channel = source.channel;
    let ConversationRef::Existing(conversation_id) = &inbound.conversation else {
        unreachable!("checked by appends_to_named_conversation")
    };
    let conversation_id = &ConversationId::from(conversation_id.as_str());
    if let Some(message) = retried_or_admitted(store, source, inbound).await? {
        return Ok(Outcome::Duplicate { message });
    }
    let (attachments, metadata) = message_data(inbound, source.chosen);
    let appended = messages::append_inbound(
        store,
        InboundAppend {
            conversation_id: conversation_id.clone(),
            channel,
            external_id: inbound.from.external_id.clone(),
            kind: inbound.content.kind(),
            content: inbound.content.to_text(),
            attachments,
            provider_message_id: inbound.provider_message_id.clone(),
            sender_key: inbound.sender_key.clone(),
            awaits_answer: inbound.content.expects_answer(),
            metadata,
        },
        now,
        publisher(hub),
    )
    .await?;
    if let Some(appended) = appended {
        return Ok(stored(appended, inbound));
    }
    let existing = conversations::get_for_owner(
        &mut store.reader(),
        conversation_id,
        channel,
        &inbound.from.external_id,
    )
    .await?;
    match existing {
        Some(c) if c.mode == Mode::Closed => Err(IngestError::ConversationClosed),
        _ => Err(IngestError::ConversationNotFound),
    }
}

/// The message stored before, when this one is a retry of it; otherwise `None`, once the new
/// message is counted against its sender's quota and rates (`source.admit`; a refusal is the
/// error). For the one-trip paths: the read is a hot-path one ([`Store::read_once`]).
async fn retried_or_admitted(
    store: &Store,
    source: Source<'_>,
    inbound: &InboundMessage,
) -> Result<Option<Message>, IngestError> {
    if let Some(resent) = resent(source.channel, inbound) {
        let stored: Vec<Message> = store.read_once(resent).await?;
        if let Some(message) = stored.into_iter().next() {
            return Ok(Some(message));
        }
    }
    admitted(source, inbound).map(|()| None)
}

/// Counts a message that is not a retry against its sender's quota and rates.
fn admitted(source: Source<'_>, inbound: &InboundMessage) -> Result<(), IngestError> {
    match source.admit {
        Some(admit) => admit(matches!(inbound.conversation, ConversationRef::New)),
        None => Ok(()),
    }
}

/// The query for the message stored before under the same provider id, or under the same
/// sender's own key; `None` when the message has neither.
fn resent(channel: Channel, inbound: &InboundMessage) -> Option<crate::store::Query> {
    (inbound.provider_message_id.is_some() || inbound.sender_key.is_some()).then(|| {
        messages::resent(
            channel,
            inbound.provider_message_id.as_deref(),
            &inbound.from.external_id,
            inbound.sender_key.as_deref(),
        )
    })
}

/// The attachments and metadata stored with an inbound message; `chosen` is the agent its sender
/// chose, if the gateway let them.
fn message_data(
    inbound: &InboundMessage,
    chosen: Option<&Chosen>,
) -> (Vec<Attachment>, MessageMeta) {
    // What the channel added is kept as it is; the gateway's own facts are typed.
    let mut metadata = MessageMeta::from_map(inbound.metadata.clone());
    // Which agent answers is the gateway's to say: a channel (or whoever writes to it) naming one
    // in its metadata would pick a private agent, so the key only ever holds a checked choice.
    metadata.agent = chosen.map(|c| c.name().to_owned());
    metadata.intent = inbound.intent.map(|i| i.as_str().to_owned());
    metadata.sent_at = inbound.sent_at;
    let (attachments, extra) = content_parts(&inbound.content);
    if let Some(extra) = extra {
        metadata.extra.insert(inbound.content.kind().into(), extra);
    }
    (attachments, metadata)
}

async fn try_ingest(
    store: &Store,
    hub: &Hub,
    source: Source<'_>,
    events: &[InboundEvent],
    checkpoint: Option<&Checkpoint>,
    now: Timestamp,
) -> Result<Vec<Outcome>, IngestError> {
    let channel = source.channel;
    let mut tx = store.begin().await?;
    if let Some(Checkpoint::Once { scope, token }) = checkpoint
        && !threads::see_once(&mut tx, scope, token, now).await?
    {
        return Err(IngestError::Replayed);
    }
    let mut outcomes = Vec::with_capacity(events.len());
    // Contacts told they are over their rate, in case this transaction does not commit.
    let mut told = Told {
        floods: source.floods.map(|(floods, _)| floods),
        quotas: source.quotas.map(|(quotas, _)| quotas),
        channel,
        contacts: Vec::new(),
        quota_contacts: Vec::new(),
    };
    for event in events {
        let outcome = match event {
            InboundEvent::Message(message) => {
                let (outcome, notice) =
                    store_message(&mut tx, source, message, &mut told, now).await?;
                if let Some(message) = notice {
                    outcomes.push(outcome);
                    Outcome::Notice { message }
                } else {
                    outcome
                }
            }
            InboundEvent::Edit(edit) => apply_edit(&mut tx, channel, edit, now).await?,
            InboundEvent::Status(update) => apply_status(&mut tx, channel, update, now).await?,
            InboundEvent::Reachability(change) => {
                let unreachable = (!change.reachable).then_some(change.reason.as_str());
                let contact_id =
                    contacts::set_reachable(&mut tx, channel, &change.contact, unreachable, now)
                        .await?;
                Outcome::Reachability {
                    contact_id,
                    reachable: change.reachable,
                }
            }
        };
        outcomes.push(outcome);
    }
    if let Some(Checkpoint::Cursor { name, value }) = checkpoint {
        cursors::set(&mut tx, name, value, now).await?;
    }
    tx.commit_then(|| publish(hub, &outcomes)).await?;
    told.contacts.clear();
    told.quota_contacts.clear();
    Ok(outcomes)
}

fn publish(hub: &Hub, outcomes: &[Outcome]) {
    for outcome in outcomes {
        match outcome {
            Outcome::Stored { message, .. } | Outcome::Notice { message } => hub.message(message),
            Outcome::Edited { message } | Outcome::StatusUpdated { message } => hub.update(message),
            Outcome::Duplicate { .. } | Outcome::Ignored { .. } | Outcome::Reachability { .. } => {}
        }
    }
}

/// The contacts a transaction told they are over their rate or quota: if it does not commit,
/// nobody was told, and the next message over the limit tells them again.
struct Told<'a> {
    floods: Option<&'a ContactFloods>,
    quotas: Option<&'a Quotas>,
    channel: Channel,
    contacts: Vec<String>,
    quota_contacts: Vec<ContactId>,
}

impl Drop for Told<'_> {
    fn drop(&mut self) {
        if let Some(floods) = self.floods {
            for contact in &self.contacts {
                floods.untell(self.channel, contact);
            }
        }
        if let Some(quotas) = self.quotas {
            for contact in &self.quota_contacts {
                quotas.untell(contact);
            }
        }
    }
}

/// Stores one message; with it, when the contact just went over their rate or quota, the notice
/// telling them so (noted in `told`).
async fn store_message(
    tx: &mut Tx,
    source: Source<'_>,
    inbound: &InboundMessage,
    told: &mut Told<'_>,
    now: Timestamp,
) -> Result<(Outcome, Option<Message>), IngestError> {
    let channel = source.channel;
    if let Some(resent) = resent(channel, inbound)
        && let Some(message) = tx.fetch_optional(resent).await?
    {
        return Ok((Outcome::Duplicate { message }, None));
    }
    admitted(source, inbound)?;
    let text = inbound.content.to_text();
    let conversation = match &inbound.conversation {
        ConversationRef::Existing(id) => {
            let id = ConversationId::from(id.as_str());
            let conversation =
                conversations::take_seq_for_owner(tx, &id, channel, &inbound.from.external_id, now)
                    .await?
                    .ok_or(IngestError::ConversationNotFound)?;
            if conversation.mode == Mode::Closed {
                return Err(IngestError::ConversationClosed);
            }
            conversation
        }
        ConversationRef::New => {
            let contact_id = contacts::upsert(tx, channel, &inbound.from, now).await?;
            new_conversation(tx, channel, inbound, &contact_id, &text, now).await?
        }
        ConversationRef::Current => {
            let contact_id = contacts::upsert(tx, channel, &inbound.from, now).await?;
            let current =
                conversations::current_for_contact(tx, channel, &inbound.account, &contact_id)
                    .await?;
            let taken = match current {
                Some(c) => conversations::take_seq(tx, &c.id, now).await?,
                None => None,
            };
            match taken {
                Some(conversation) => conversation,
                None => new_conversation(tx, channel, inbound, &contact_id, &text, now).await?,
            }
        }
        ConversationRef::Thread { token, references } => {
            let contact_id = contacts::upsert(tx, channel, &inbound.from, now).await?;
            let joined =
                match thread_of(tx, channel, &contact_id, token.as_deref(), references).await? {
                    Some(id) => conversations::take_seq(tx, &id, now).await?,
                    None => None,
                };
            match joined {
                Some(conversation) => conversation,
                None => new_conversation(tx, channel, inbound, &contact_id, &text, now).await?,
            }
        }
    };
    let (attachments, mut metadata) = message_data(inbound, source.chosen);
    let mut awaits_answer = inbound.content.expects_answer();
    if awaits_answer && let Some(limit) = source.answers_per_hour {
        let recent = messages::inbound_of_contact_since(
            tx,
            &conversation.contact_id,
            now.minus(Duration::from_secs(3600)),
        )
        .await?;
        if recent >= i64::from(limit) {
            awaits_answer = false;
            metadata.unanswered = Some(format!(
                "more than {limit} messages from this sender within an hour"
            ));
        }
    }
    let mut tell = None;
    // Checked before the rate, so that a message not answered anyway does not count against it.
    if awaits_answer
        && conversation.mode == Mode::Ai
        && let Some((quotas, notice)) = source.quotas
        && let Err(over) = quotas.check(&conversation.contact_id)
    {
        awaits_answer = false;
        metadata.unanswered = Some(format!("over quota: {}", over.reason));
        if quotas.tell(&conversation.contact_id, &over) {
            told.quota_contacts.push(conversation.contact_id.clone());
            tell = Some((notice, "quota_exceeded"));
        }
    }
    if awaits_answer
        && conversation.mode == Mode::Ai
        && let Some((floods, notice)) = source.floods
        && let ContactTurn::Quiet { tell: first } = floods.check(channel, &inbound.from.external_id)
    {
        awaits_answer = false;
        crate::telemetry::metrics::contact_over_rate();
        metadata.unanswered = Some(format!(
            "more than {} messages a minute from this contact",
            floods.per_minute()
        ));
        if first {
            told.contacts.push(inbound.from.external_id.clone());
            tell = Some((notice, "rate_limited"));
        }
    }
    let reply_to = match &inbound.reply_to {
        Some(provider_id) => {
            metadata.reply_to_provider_id = Some(provider_id.clone());
            messages::find_quoted(tx, channel, provider_id)
                .await?
                .map(|m| m.id)
        }
        None => None,
    };
    let message = messages::insert(
        tx,
        NewMessage {
            conversation_id: conversation.id.clone(),
            seq: conversation.last_seq,
            channel,
            direction: Direction::Inbound,
            role: Role::User,
            author: None,
            kind: inbound.content.kind(),
            content: text,
            attachments,
            provider_message_id: inbound.provider_message_id.clone(),
            reply_to,
            status: DeliveryStatus::Received,
            awaits_answer,
            metadata,
        },
        now,
    )
    .await?;
    if let (Some(message), Some(key)) = (&message, &inbound.sender_key) {
        messages::record_sender_key(
            tx,
            channel,
            &inbound.from.external_id,
            key,
            &message.id,
            now,
        )
        .await?;
    }
    if let Some(message) = &message
        && source.fetches_media
    {
        for index in 0..message.attachments.len() {
            jobs::enqueue(tx, FetchMedia::job(message, index, &inbound.account), now).await?;
        }
    }
    let notice = match (&message, tell) {
        (Some(_), Some((notice, kind))) => {
            over_limit_notice(tx, &conversation.id, notice, kind, now).await?
        }
        _ => None,
    };
    match message {
        Some(message) => Ok((
            Outcome::Stored {
                message,
                contact_id: conversation.contact_id.clone(),
                mode: conversation.mode,
                awaits_answer,
                answering: None,
            },
            notice,
        )),
        // A concurrent transaction stored the same provider message after our check: undo this
        // attempt entirely (it may have created a conversation) and let the retry find it.
        None => Err(IngestError::Store(StoreError::DuplicateRace)),
    }
}

/// Stores (with its delivery job) the notice that tells a contact they are over their rate or
/// quota (`kind`: `rate_limited`, `quota_exceeded`).
async fn over_limit_notice(
    tx: &mut Tx,
    conversation_id: &ConversationId,
    notice: &str,
    kind: &str,
    now: Timestamp,
) -> Result<Option<Message>, StoreError> {
    let Some(conversation) = conversations::take_seq(tx, conversation_id, now).await? else {
        return Ok(None);
    };
    let metadata = MessageMeta {
        notice: Some(kind.into()),
        ..MessageMeta::default()
    };
    messages::insert(
        tx,
        NewMessage::system_notice(&conversation, notice, metadata),
        now,
    )
    .await
}

async fn new_conversation(
    tx: &mut Tx,
    channel: Channel,
    inbound: &InboundMessage,
    contact_id: &ContactId,
    text: &str,
    now: Timestamp,
) -> Result<Conversation, StoreError> {
    let about = inbound
        .subject
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(text);
    conversations::create(
        tx,
        NewConversation {
            channel,
            account: &inbound.account,
            contact_id,
            title: text::title(about),
        },
        now,
    )
    .await
}

/// The open conversation of this contact that a reply belongs to: the one its thread token names,
/// else the one of the newest referenced message the gateway knows. A token or reference that
/// leads to somebody else's conversation (a forwarded mail answered by another person) is not
/// followed: the reply then starts a conversation of its own.
async fn thread_of(
    tx: &mut Tx,
    channel: Channel,
    contact_id: &ContactId,
    token: Option<&str>,
    references: &[String],
) -> Result<Option<ConversationId>, StoreError> {
    let mut candidates = Vec::new();
    // Tokens bound to an expert belong to expert replies, which never come through here.
    if let Some(token) = token
        && let Some(binding) = threads::binding(tx, token).await?
        && binding.expert_id.is_none()
    {
        candidates.push(binding.conversation_id);
    }
    for reference in references {
        if let Some(message) = messages::find_quoted(tx, channel, reference).await? {
            candidates.push(message.conversation_id);
        }
    }
    for id in candidates {
        if let Some(conversation) = conversations::get(tx, &id).await?
            && &conversation.contact_id == contact_id
            && conversation.channel == channel
            && conversation.mode != Mode::Closed
        {
            return Ok(Some(conversation.id));
        }
    }
    Ok(None)
}

/// Splits content into the attachments column and the kind-specific data kept in metadata.
fn content_parts(content: &switchboard_channel::Content) -> (Vec<Attachment>, Option<Value>) {
    use switchboard_channel::Content::*;
    match content {
        Text { .. } | Unsupported { .. } => (Vec::new(), None),
        Media { attachments, .. } => (attachments.clone(), None),
        Location(l) => (Vec::new(), serde_json::to_value(l).ok()),
        Contacts { contacts } => (Vec::new(), serde_json::to_value(contacts).ok()),
        Interactive(i) => (Vec::new(), serde_json::to_value(i).ok()),
        Reaction(r) => (Vec::new(), serde_json::to_value(r).ok()),
        System { event, .. } => (Vec::new(), Some(json!({ "event": event }))),
    }
}

async fn apply_edit(
    tx: &mut Tx,
    channel: Channel,
    edit: &InboundEdit,
    now: Timestamp,
) -> Result<Outcome, IngestError> {
    let Some(message) =
        messages::find_by_provider_id(tx, channel, &edit.provider_message_id).await?
    else {
        return Ok(Outcome::Ignored {
            reason: "edit of an unknown message",
        });
    };
    if message.direction != Direction::Inbound {
        return Ok(Outcome::Ignored {
            reason: "edit of a message the user did not write",
        });
    }
    let text = edit.content.to_text();
    if text == message.content {
        return Ok(Outcome::Ignored {
            reason: "edit without change",
        });
    }
    let mut metadata = message.metadata.clone();
    metadata.edits.push(json!({
        "previous": message.content,
        "edited_at": edit.edited_at.map(Timestamp::from).unwrap_or(now),
    }));
    let updated = messages::set_content(tx, &message.id, text, metadata).await?;
    Ok(Outcome::Edited { message: updated })
}

async fn apply_status(
    tx: &mut Tx,
    channel: Channel,
    update: &StatusUpdate,
    now: Timestamp,
) -> Result<Outcome, IngestError> {
    let error = error_text(update);
    let at = update.at.map(Timestamp::from).unwrap_or(now);
    let updated = messages::advance_status(
        tx,
        channel,
        &update.provider_message_id,
        update.status,
        at,
        error,
    )
    .await?;
    if let Some(message) = updated {
        return Ok(Outcome::StatusUpdated { message });
    }
    if messages::find_quoted(tx, channel, &update.provider_message_id)
        .await?
        .is_some()
    {
        return Ok(Outcome::Ignored {
            reason: "status older than the stored one",
        });
    }
    // Perhaps the status overtook the API response with the message's id: keep it for when the id
    // is recorded.
    messages::keep_early_status(tx, channel, update, error_text(update), at, now).await?;
    Ok(Outcome::Ignored {
        reason: "status of a message not (yet) known",
    })
}

fn error_text(update: &StatusUpdate) -> Option<String> {
    update.error.as_ref().map(|e| match &e.detail {
        Some(detail) => format!("{} {}: {detail}", e.code, e.title),
        None => format!("{} {}", e.code, e.title),
    })
}
