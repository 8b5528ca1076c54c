//! The store's rules, on both backends: what storing a reply queues, when a session lock is
//! renewed, the order of delivery statuses, and the lanes of the job queue — each written once
//! in Rust and used by both dialects' SQL, checked here against the real databases.

use std::time::Duration;

use serde_json::Map;
use switchboard::{
    config::DatabaseConfig,
    live::Hub,
    pipeline::{Outcome, ingest},
    store::{
        Db, Store, conversations, jobs, leases,
        messages::{self, Message, ReplyAppend, StoredReply},
        query,
    },
    time::Timestamp,
};
use switchboard_channel::{
    Channel, ContactRef, Content, ConversationRef, DeliveryStatus, InboundEvent, InboundMessage,
};

use crate::{
    both_backends,
    helpers::{Backend, TestDb},
};

both_backends!(
    a_reply_queues_its_delivery_except_on_the_web_and_its_evaluation_when_asked,
    a_lock_is_renewed_only_after_half_its_time_or_by_another_agent,
    statuses_only_move_forward,
    a_lanes_next_job_waits_for_its_first,
    a_reply_heading_its_lane_comes_with_its_delivery_claimed,
    a_lease_has_one_holder_until_it_runs_out_is_given_up_or_its_holder_is_gone,
    writes_committed_together_keep_their_own_results,
    a_message_carries_its_conversation_only_when_first_in_line,
    what_a_write_returns_is_what_the_database_holds,
    a_messaging_contact_writes_in_one_current_conversation,
);

const SMS: Channel = Channel::named("sms");

async fn store(backend: &Backend) -> (Store, TestDb) {
    let db = TestDb::create(backend).await;
    let store = Store::connect(&DatabaseConfig {
        url: db.url.clone(),
        ..DatabaseConfig::default()
    })
    .await
    .expect("connect");
    store.migrate().await.expect("migrate");
    (store, db)
}

fn at(seconds: i64) -> Timestamp {
    Timestamp(1_800_000_000_000_000 + seconds * 1_000_000)
}

/// A channel that counts nothing at ingest: no caps, rates, quotas or media to fetch.
fn plain(channel: Channel) -> ingest::Source<'static> {
    ingest::Source {
        channel,
        fetches_media: false,
        answers_per_hour: None,
        floods: None,
        quotas: None,
        admit: None,
        chosen: None,
    }
}

/// Stores a user's message on `channel` (with its work-list entry), as a channel's delivery would.
async fn inbound(store: &Store, channel: Channel, id: &str, now: Timestamp) -> Message {
    let event = InboundEvent::Message(InboundMessage {
        provider_message_id: Some(id.into()),
        sender_key: None,
        account: String::new(),
        from: ContactRef {
            external_id: "user-1".into(),
            display_name: None,
            username: None,
        },
        conversation: ConversationRef::Current,
        sent_at: None,
        reply_to: None,
        content: Content::Text {
            body: "hello".into(),
        },
        subject: None,
        intent: None,
        metadata: Map::new(),
        files: Vec::new(),
    });
    let outcomes = ingest::ingest(store, &Hub::default(), plain(channel), &[event], None, now)
        .await
        .expect("ingest");
    match outcomes.into_iter().next() {
        Some(Outcome::Stored { message, .. }) => message,
        other => panic!("not stored: {other:?}"),
    }
}

async fn reply(
    store: &Store,
    to: &Message,
    agent: &str,
    evaluate: bool,
    now: Timestamp,
) -> Option<Message> {
    stored_reply(store, to, agent, evaluate, now)
        .await
        .map(|r| r.message)
}

/// How long a reply's write claims its delivery job for.
const DELIVERY_LEASE: Duration = Duration::from_secs(60);

async fn stored_reply(
    store: &Store,
    to: &Message,
    agent: &str,
    evaluate: bool,
    now: Timestamp,
) -> Option<StoredReply> {
    messages::append_reply(
        store,
        ReplyAppend {
            inbound_id: to.id.clone(),
            inbound_seq: to.seq,
            conversation_id: to.conversation_id.clone(),
            agent: agent.into(),
            lock_agent: agent.into(),
            lock_ttl: Duration::from_secs(100),
            content: "an answer".into(),
            status: messages::initial_status(to.channel),
            metadata: Default::default(),
            evaluate,
            usage: switchboard::store::usage::NewUsage {
                model: "echo".into(),
                tokens_in: 1,
                tokens_out: 2,
                estimated: true,
                cost_micros: 0,
                response_time_ms: 1,
            },
            delivery_lease: DELIVERY_LEASE,
        },
        now,
        |_| (),
    )
    .await
    .expect("append reply")
}

async fn jobs_of(store: &Store, queue: &str) -> i64 {
    jobs::count(&mut store.reader(), queue)
        .await
        .expect("count")
}

async fn a_reply_queues_its_delivery_except_on_the_web_and_its_evaluation_when_asked(
    backend: Backend,
) {
    let (store, _db) = store(&backend).await;
    let message = inbound(&store, SMS, "m1", at(0)).await;
    let stored = reply(&store, &message, "echo", true, at(1))
        .await
        .expect("reply");
    assert_eq!(stored.status, DeliveryStatus::Pending);
    assert_eq!(jobs_of(&store, jobs::DELIVER).await, 1);
    assert_eq!(jobs_of(&store, jobs::EVALUATE).await, 1);
    assert!(
        reply(&store, &message, "echo", true, at(2)).await.is_none(),
        "a message is answered once"
    );

    let web = inbound(&store, Channel::WEB, "w1", at(3)).await;
    let stored = reply(&store, &web, "echo", false, at(4))
        .await
        .expect("reply");
    assert_eq!(
        stored.status,
        DeliveryStatus::Sent,
        "delivered by being stored"
    );
    assert_eq!(
        jobs_of(&store, jobs::DELIVER).await,
        1,
        "no job for the web"
    );
    assert_eq!(jobs_of(&store, jobs::EVALUATE).await, 1, "not asked");
}

async fn lock_of(
    store: &Store,
    conversation: &switchboard::ids::ConversationId,
) -> (Option<String>, Option<Timestamp>) {
    let c = conversations::get(&mut store.reader(), conversation)
        .await
        .unwrap()
        .unwrap();
    (c.active_agent, c.locked_at)
}

async fn a_lock_is_renewed_only_after_half_its_time_or_by_another_agent(backend: Backend) {
    let (store, _db) = store(&backend).await;
    let first = inbound(&store, SMS, "m1", at(0)).await;
    reply(&store, &first, "echo", false, at(1)).await.unwrap();
    let conversation = first.conversation_id.clone();
    assert_eq!(
        lock_of(&store, &conversation).await,
        (Some("echo".into()), Some(at(1)))
    );
    // 40 s of a 100 s lock: kept as it is.
    let second = inbound(&store, SMS, "m2", at(40)).await;
    reply(&store, &second, "echo", false, at(41)).await.unwrap();
    assert_eq!(lock_of(&store, &conversation).await.1, Some(at(1)));
    // 60 s: more than half has passed, renewed.
    let third = inbound(&store, SMS, "m3", at(60)).await;
    reply(&store, &third, "echo", false, at(61)).await.unwrap();
    assert_eq!(lock_of(&store, &conversation).await.1, Some(at(61)));
    // Another agent takes the conversation: locked anew at once.
    let fourth = inbound(&store, SMS, "m4", at(62)).await;
    let mut tx = store.begin().await.unwrap();
    conversations::take_seq_for_agent(
        &mut tx,
        &conversation,
        "other",
        Duration::from_secs(100),
        at(63),
    )
    .await
    .unwrap()
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        lock_of(&store, &conversation).await,
        (Some("other".into()), Some(at(63)))
    );
    drop(fourth);
}

async fn statuses_only_move_forward(backend: Backend) {
    let (store, _db) = store(&backend).await;
    let message = inbound(&store, SMS, "m1", at(0)).await;
    let sent = reply(&store, &message, "echo", false, at(1)).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    messages::record_part(&mut tx, SMS, &sent.id, 0, "provider-1")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let step = |status: DeliveryStatus, second: i64| {
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let moved =
                messages::advance_status(&mut tx, SMS, "provider-1", status, at(second), None)
                    .await
                    .unwrap();
            tx.commit().await.unwrap();
            moved.map(|m| m.status)
        }
    };
    assert_eq!(
        step(DeliveryStatus::Sent, 2).await,
        Some(DeliveryStatus::Sent)
    );
    assert_eq!(
        step(DeliveryStatus::Read, 3).await,
        Some(DeliveryStatus::Read)
    );
    assert_eq!(
        step(DeliveryStatus::Delivered, 4).await,
        None,
        "a late delivered never undoes read"
    );
    assert_eq!(step(DeliveryStatus::Failed, 5).await, None);
    let (status,): (String,) = store
        .reader()
        .fetch_one(query("SELECT status FROM messages WHERE id = $1").bind(&sent.id))
        .await
        .unwrap();
    assert_eq!(status, "read");
}

/// Two messages of one SMS conversation answered one after the other.
async fn two_replies(store: &Store) -> (StoredReply, StoredReply) {
    let message = inbound(store, SMS, "m1", at(0)).await;
    let first = stored_reply(store, &message, "echo", false, at(1))
        .await
        .unwrap();
    let next = inbound(store, SMS, "m2", at(2)).await;
    let second = stored_reply(store, &next, "echo", false, at(3))
        .await
        .unwrap();
    (first, second)
}

async fn a_lanes_next_job_waits_for_its_first(backend: Backend) {
    let (store, _db) = store(&backend).await;
    let (first, _) = two_replies(&store).await;
    assert_eq!(jobs_of(&store, jobs::DELIVER).await, 2);
    let lease = Duration::from_secs(60);
    // On SQLite the first reply's write claimed its job (see the test below).
    let first_job = match first.delivery {
        Some(claimed) => claimed.job,
        None => {
            let claimed = jobs::claim(&store, jobs::DELIVER, at(10), lease, 10)
                .await
                .unwrap();
            assert_eq!(claimed.len(), 1, "one job of a lane at a time: {claimed:?}");
            claimed[0].clone()
        }
    };
    assert!(
        jobs::claim(&store, jobs::DELIVER, at(11), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "the second waits while the first exists, claimed or not"
    );
    let mut tx = store.begin().await.unwrap();
    jobs::finish(&mut tx, &first_job.id).await.unwrap();
    tx.commit().await.unwrap();
    let claimed = jobs::claim(&store, jobs::DELIVER, at(12), lease, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "then the next one");
}

async fn a_reply_heading_its_lane_comes_with_its_delivery_claimed(backend: Backend) {
    let (store, _db) = store(&backend).await;
    let (first, second) = two_replies(&store).await;
    assert!(second.delivery.is_none(), "the lane's second job waits");
    let web = inbound(&store, Channel::WEB, "w1", at(4)).await;
    let on_the_web = stored_reply(&store, &web, "echo", false, at(5))
        .await
        .unwrap();
    assert!(on_the_web.delivery.is_none(), "nothing to deliver");
    let Some(claimed) = first.delivery else {
        // PostgreSQL: instances share the lanes, and one statement cannot see a lane's job
        // another transaction is adding, so the delivery worker claims it.
        assert!(matches!(backend, Backend::Postgres(_)));
        let claimed = jobs::claim(&store, jobs::DELIVER, at(10), DELIVERY_LEASE, 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].subject, first.message.id.to_string());
        return;
    };
    assert!(matches!(backend, Backend::Sqlite));
    assert_eq!(claimed.job.subject, first.message.id.to_string());
    assert_eq!(
        claimed.job.lane.as_deref(),
        Some(first.message.conversation_id.as_str())
    );
    assert_eq!(claimed.job.attempts, 1);
    assert_eq!(claimed.lease_until, at(1).plus(DELIVERY_LEASE));
    assert!(
        jobs::claim(&store, jobs::DELIVER, at(10), DELIVERY_LEASE, 10)
            .await
            .unwrap()
            .is_empty(),
        "the claim is in the database: nobody else takes the job"
    );
    // A hand-over lost with its process: the job is claimed again once the lease runs out.
    let again = jobs::claim(&store, jobs::DELIVER, at(62), DELIVERY_LEASE, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].id, claimed.job.id);
    assert_eq!(again[0].attempts, 2, "the first attempt counted");
}

/// Leases on exclusive work (pollers, scheduled runs) between two instances of one database.
async fn a_lease_has_one_holder_until_it_runs_out_is_given_up_or_its_holder_is_gone(
    backend: Backend,
) {
    let (store, _db) = store(&backend).await;
    for name in ["a", "b"] {
        store
            .execute(
                query(
                    "INSERT INTO instances (name, boot_id, started_at, heartbeat_at) \
                     VALUES ($1, $1, 0, 0)",
                )
                .bind(name),
            )
            .await
            .unwrap();
    }
    let a = store.clone().for_instance("a");
    let b = store.clone().for_instance("b");
    let holder = |s: &Store, t| {
        let s = s.clone();
        async move { leases::holder(&s, "poll", at(t)).await.unwrap() }
    };

    assert!(leases::claim(&a, "poll", at(0), at(3)).await.unwrap());
    assert!(
        !leases::claim(&b, "poll", at(1), at(4)).await.unwrap(),
        "held by a"
    );
    assert!(
        leases::claim(&a, "poll", at(1), at(4)).await.unwrap(),
        "a keeps its own"
    );
    assert!(leases::renew(&a, "poll", at(5)).await.unwrap());
    assert!(
        !leases::renew(&b, "poll", at(5)).await.unwrap(),
        "not b's to renew"
    );
    assert_eq!(holder(&b, 4).await.as_deref(), Some("a"));

    // It runs out: b takes it, and a learns at its next renewal that it lost it.
    assert!(leases::claim(&b, "poll", at(5), at(8)).await.unwrap());
    assert!(!leases::renew(&a, "poll", at(9)).await.unwrap());
    assert_eq!(holder(&a, 6).await.as_deref(), Some("b"));

    // Given up: free at once.
    leases::release(&a, "poll").await.unwrap();
    assert_eq!(
        holder(&a, 6).await.as_deref(),
        Some("b"),
        "a cannot give up b's"
    );
    leases::release(&b, "poll").await.unwrap();
    assert_eq!(holder(&a, 6).await, None);
    assert!(leases::claim(&a, "poll", at(6), at(9)).await.unwrap());

    // Its holder is no longer an instance (stopped, or found dead): free before it runs out.
    store
        .execute(query("DELETE FROM instances WHERE name = 'a'"))
        .await
        .unwrap();
    assert!(leases::claim(&b, "poll", at(7), at(10)).await.unwrap());

    // One run of a scheduled occurrence: whoever comes first, then nobody until it runs out.
    assert!(
        leases::claim_once(&b, "schedule:x", at(10), at(15))
            .await
            .unwrap()
    );
    assert!(
        !leases::claim_once(&a, "schedule:x", at(10), at(15))
            .await
            .unwrap()
    );
    assert!(
        !leases::claim_once(&b, "schedule:x", at(11), at(16))
            .await
            .unwrap(),
        "not twice by the same instance either"
    );
    assert!(
        leases::claim_once(&a, "schedule:x", at(15), at(20))
            .await
            .unwrap()
    );
}

/// A visitor's first message, resent under the same key when `key` repeats.
fn first_message(visitor: usize, key: usize) -> InboundEvent {
    InboundEvent::Message(InboundMessage {
        provider_message_id: None,
        sender_key: Some(format!("key-{key}")),
        account: String::new(),
        from: ContactRef {
            external_id: format!("visitor-{visitor}"),
            display_name: None,
            username: None,
        },
        conversation: ConversationRef::New,
        sent_at: None,
        reply_to: None,
        content: Content::Text {
            body: format!("hello from {visitor}"),
        },
        subject: None,
        intent: None,
        metadata: Map::new(),
        files: Vec::new(),
    })
}

/// Many first messages at once (on SQLite they are committed together, see
/// `store::group_commit`), a quarter of them resends of another under the same key: every
/// resend gets the message stored the first time, and the copy it began (a conversation, a
/// message, its turn) leaves nothing behind.
async fn writes_committed_together_keep_their_own_results(backend: Backend) {
    let (store, _db) = store(&backend).await;
    let hub = Hub::default();
    let calls = (0..40).map(|i| {
        // Calls 30..40 resend the messages of visitors 0..10.
        let visitor = if i < 30 { i } else { i - 30 };
        let (store, hub) = (store.clone(), hub.clone());
        tokio::spawn(async move {
            let outcomes = ingest::ingest(
                &store,
                &hub,
                plain(Channel::WEB),
                &[first_message(visitor, visitor)],
                None,
                at(0),
            )
            .await
            .expect("ingest");
            (visitor, outcomes.into_iter().next().expect("an outcome"))
        })
    });
    let mut stored = std::collections::HashMap::new();
    let mut resent = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        let (visitor, outcome) = call.await.expect("task");
        match outcome {
            Outcome::Stored { message, .. } => {
                assert!(
                    stored.insert(visitor, message.id).is_none(),
                    "visitor {visitor}'s message stored twice"
                );
            }
            Outcome::Duplicate { message } => resent.push((visitor, message.id)),
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(stored.len(), 30, "one message per visitor");
    assert_eq!(resent.len(), 10, "every resend recognised");
    for (visitor, id) in resent {
        assert_eq!(
            stored[&visitor], id,
            "a resend answers with the stored message"
        );
    }
    let count = |sql: &'static str| {
        let store = store.clone();
        async move {
            let (n,): (i64,) = store.reader().fetch_one(query(sql)).await.expect("count");
            n
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM messages").await, 30);
    assert_eq!(count("SELECT COUNT(*) FROM conversations").await, 30);
    assert_eq!(count("SELECT COUNT(*) FROM contacts").await, 30);
    assert_eq!(count("SELECT COUNT(*) FROM pending_turns").await, 30);
}

/// A visitor's message in the conversation they name.
fn visitor_message(visitor: usize, conversation: &str, body: &str) -> InboundEvent {
    let InboundEvent::Message(mut message) = first_message(visitor, 0) else {
        unreachable!()
    };
    message.sender_key = None;
    message.conversation = ConversationRef::Existing(conversation.into());
    message.content = Content::Text { body: body.into() };
    InboundEvent::Message(message)
}

/// The write that stores a message tells its turn about the conversation (so that the turn
/// need not read it) only when no earlier message of the conversation waits for an answer, and
/// then as the write left it: with the agent the conversation is locked to.
async fn a_message_carries_its_conversation_only_when_first_in_line(backend: Backend) {
    let (store, _db) = store(&backend).await;
    let hub = Hub::default();
    let send = |event: InboundEvent, now: Timestamp| {
        let (store, hub) = (store.clone(), hub.clone());
        async move {
            match ingest::ingest(&store, &hub, plain(Channel::WEB), &[event], None, now)
                .await
                .expect("ingest")
                .into_iter()
                .next()
            {
                Some(Outcome::Stored {
                    message, answering, ..
                }) => (message, answering),
                other => panic!("not stored: {other:?}"),
            }
        }
    };
    let (first, answering) = send(first_message(1, 1), at(0)).await;
    let known = answering.expect("a new conversation's first message is first in line");
    assert_eq!(known.id, first.conversation_id);
    assert_eq!(known.mode, conversations::Mode::Ai);
    assert_eq!(known.active_agent, None);
    let conversation = first.conversation_id.to_string();

    let (second, answering) = send(visitor_message(1, &conversation, "two"), at(1)).await;
    assert!(answering.is_none(), "the first message still waits");
    reply(&store, &first, "echo", false, at(2))
        .await
        .expect("answered");
    let (_, answering) = send(visitor_message(1, &conversation, "three"), at(3)).await;
    assert!(answering.is_none(), "the second message still waits");
    reply(&store, &second, "echo", false, at(4))
        .await
        .expect("answered");
    // The third is still unanswered: the fourth waits behind it.
    let (_, answering) = send(visitor_message(1, &conversation, "four"), at(5)).await;
    assert!(answering.is_none(), "the third message still waits");

    // A conversation with nothing waiting: its next message is first in line, and learns the
    // lock the answers left.
    let (fresh, _) = send(first_message(2, 2), at(10)).await;
    reply(&store, &fresh, "echo", false, at(11))
        .await
        .expect("answered");
    let (next, answering) = send(
        visitor_message(2, fresh.conversation_id.as_str(), "again"),
        at(12),
    )
    .await;
    let known = answering.expect("nothing waits before it");
    assert_eq!(known.id, next.conversation_id);
    assert_eq!(known.active_agent.as_deref(), Some("echo"));
    assert_eq!(known.locked_at, Some(at(11)));
    assert_eq!(known.lock_ttl_secs, Some(100));
    assert_eq!(known.locked_agent(at(12)), Some("echo"));
}

/// The rows a one-trip write or a hot-path read returns (on SQLite decoded by hand from the
/// writer or reader thread's connection) are the rows a read of the database gives (decoded by
/// sqlx): a message, its reply, the reply's delivery job and what its delivery reads, field for
/// field.
async fn what_a_write_returns_is_what_the_database_holds(backend: Backend) {
    let (store, _db) = store(&backend).await;
    let InboundEvent::Message(mut first) = first_message(7, 7) else {
        unreachable!()
    };
    first.metadata = serde_json::json!({"campaign": "spring", "n": 3})
        .as_object()
        .cloned()
        .unwrap();
    let outcome = ingest::ingest(
        &store,
        &Hub::default(),
        plain(SMS),
        &[InboundEvent::Message(first)],
        None,
        at(0),
    )
    .await
    .expect("ingest")
    .pop();
    let Some(Outcome::Stored { message, .. }) = outcome else {
        panic!("not stored: {outcome:?}")
    };
    let read = |id: String| {
        let store = store.clone();
        async move {
            messages::get(&mut store.reader(), &id)
                .await
                .expect("read")
                .expect("stored")
        }
    };
    assert_eq!(
        format!("{message:?}"),
        format!("{:?}", read(message.id.to_string()).await)
    );
    let stored = stored_reply(&store, &message, "echo", false, at(1))
        .await
        .expect("answered");
    let answer = stored.message;
    assert_eq!(
        format!("{answer:?}"),
        format!("{:?}", read(answer.id.to_string()).await)
    );
    // On SQLite the reply's write claimed its delivery job and built it without reading it.
    let claimed = match stored.delivery {
        Some(claimed) => vec![claimed.job],
        None => jobs::claim(&store, jobs::DELIVER, at(2), Duration::from_secs(30), 10)
            .await
            .expect("claim"),
    };
    let [job] = claimed.as_slice() else {
        panic!("one delivery job: {claimed:?}")
    };
    let stored: jobs::Job = store
        .reader()
        .fetch_one(
            query(
                "SELECT id, queue, subject, lane, payload, attempts, last_error, created_at \
                 FROM jobs WHERE id = $1",
            )
            .bind(&job.id),
        )
        .await
        .expect("read the job");
    assert_eq!(format!("{job:?}"), format!("{stored:?}"));
    assert_eq!(job.subject, answer.id.to_string());

    // What a delivery reads on the hot path (on SQLite the reader thread's connection).
    let context = messages::delivery_context(&store, &answer.id)
        .await
        .expect("read on the hot path")
        .expect("the reply");
    let through_pool: Option<messages::DeliveryContext> = store
        .reader()
        .fetch_optional(messages::delivery_context_query(&answer.id))
        .await
        .expect("read through the pool");
    assert!(context.last_inbound_metadata.is_some(), "{context:?}");
    assert_eq!(format!("{:?}", Some(context)), format!("{through_pool:?}"));
}

/// A message of a messaging channel's contact for their current conversation.
fn chat_message(contact: &str, account: &str, provider_id: &str) -> InboundEvent {
    let InboundEvent::Message(mut message) = first_message(0, 0) else {
        unreachable!()
    };
    message.sender_key = None;
    message.provider_message_id = Some(provider_id.into());
    message.account = account.into();
    message.from.external_id = contact.into();
    message.conversation = ConversationRef::Current;
    InboundEvent::Message(message)
}

/// A messaging channel's contact writes in one conversation at a time: their first messages,
/// also many at once, start exactly one (on PostgreSQL a concurrent first message must see the
/// conversation another just started); later ones join it until it is closed; another account
/// of the gateway, or another contact, has a conversation of its own; a provider's resend is the
/// message stored the first time.
async fn a_messaging_contact_writes_in_one_current_conversation(backend: Backend) {
    let (store, _db) = store(&backend).await;
    let hub = Hub::default();
    let send = |event: InboundEvent, now: Timestamp| {
        let (store, hub) = (store.clone(), hub.clone());
        async move {
            ingest::ingest(&store, &hub, plain(SMS), &[event], None, now)
                .await
                .expect("ingest")
                .into_iter()
                .next()
                .expect("an outcome")
        }
    };
    let stored = |outcome: Outcome| match outcome {
        Outcome::Stored {
            message, answering, ..
        } => (message, answering),
        other => panic!("not stored: {other:?}"),
    };

    let first = (0..16).map(|i| {
        let send = &send;
        async move { stored(send(chat_message("+100", "", &format!("m{i}")), at(i)).await) }
    });
    let first = futures::future::join_all(first).await;
    let conversation = first[0].0.conversation_id.clone();
    let mut seqs: Vec<i64> = first
        .iter()
        .map(|(m, _)| {
            assert_eq!(
                m.conversation_id, conversation,
                "one conversation for the contact"
            );
            m.seq
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=16).collect::<Vec<i64>>());
    let waiting_first: Vec<_> = first.iter().filter(|(_, a)| a.is_some()).collect();
    assert_eq!(
        waiting_first.len(),
        1,
        "only the message first in line learns its conversation"
    );
    assert_eq!(waiting_first[0].0.seq, 1);

    let (later, answering) = stored(send(chat_message("+100", "", "m16"), at(20)).await);
    assert_eq!(
        (later.conversation_id.clone(), later.seq),
        (conversation.clone(), 17)
    );
    assert!(answering.is_none(), "sixteen messages wait before it");

    let resent = send(chat_message("+100", "", "m3"), at(21)).await;
    let Outcome::Duplicate { message } = resent else {
        panic!("a resend stored again: {resent:?}")
    };
    assert_eq!(message.id, first[3].0.id);

    let (other_account, _) = stored(send(chat_message("+100", "sales", "s1"), at(22)).await);
    let (other_contact, _) = stored(send(chat_message("+200", "", "o1"), at(23)).await);
    assert_ne!(other_account.conversation_id, conversation);
    assert_ne!(other_contact.conversation_id, conversation);
    assert_ne!(other_account.conversation_id, other_contact.conversation_id);
    assert_eq!((other_account.seq, other_contact.seq), (1, 1));

    store
        .execute(
            query("UPDATE conversations SET mode = 'closed' WHERE id = $1").bind(&conversation),
        )
        .await
        .expect("close");
    let (after_close, answering) = stored(send(chat_message("+100", "", "m17"), at(30)).await);
    assert_ne!(after_close.conversation_id, conversation);
    assert_eq!(after_close.seq, 1);
    let answering = answering.expect("the new conversation's first message is first in line");
    assert_eq!(answering.id, after_close.conversation_id);
    assert_eq!(
        conversations::message_count(&mut store.reader(), &conversation)
            .await
            .expect("count"),
        17
    );
}
