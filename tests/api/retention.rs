//! Retention end to end: with the gateway's clock moved past the periods, a purge removes old
//! messages with their files, conversations and contacts left empty, deleted conversations and
//! old audit entries — in bounded batches — and keeps everything recent and everything pending
//! work still needs.

use std::time::Duration;

use serde_json::json;
use switchboard::{
    config::Config,
    media_dir::MediaDir,
    retention::Retention,
    store::{Db, query},
    time::Clock,
};

use crate::{
    both_backends,
    helpers::{
        Backend, TestApp,
        graph::{Failure, FakeGraph},
    },
};

both_backends!(
    a_purge_removes_what_is_older_than_its_period_and_keeps_the_rest,
    messages_that_pending_work_needs_wait_for_a_later_purge,
    the_purge_runs_on_its_schedule,
);

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A schedule that does not come round during a test: the test runs the purge itself.
const NEVER_DURING_A_TEST: &str = "0 0 0 1 1 *";

/// The WhatsApp channel on the fake, evaluations on, and the given retention.
fn configured(graph: &FakeGraph, retention: impl FnOnce(&mut Config)) -> impl FnOnce(&mut Config) {
    let api_base = graph.base_url();
    move |config: &mut Config| {
        config.set("whatsapp.app_secret", "test-app-secret");
        config.set("whatsapp.verify_token", "test-verify-token");
        config.set("whatsapp.access_token", "test-access-token");
        config.set("whatsapp.api_base", api_base);
        config.evaluations.enabled = true;
        config.retention.schedule = NEVER_DURING_A_TEST.into();
        retention(config);
    }
}

/// The image fixture, sent at the gateway's time.
fn image(clock: &Clock) -> Vec<u8> {
    let path = format!(
        "{}/webhooks/whatsapp/image.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    switchboard_whatsapp::refresh_whatsapp(&body, clock.now().to_datetime().timestamp(), false)
        .expect("a WhatsApp payload")
}

/// A WhatsApp text message, sent at the gateway's time.
fn text(clock: &Clock, id: &str, body: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
            "messages": [{"from": "16505551234", "id": id,
                "timestamp": clock.now().to_datetime().timestamp().to_string(),
                "type": "text", "text": {"body": body}}]
        }}]}]
    }))
    .unwrap()
}

/// How many rows a query counts.
async fn count(app: &TestApp, sql: &'static str) -> i64 {
    let (n,): (i64,) = app.store.reader().fetch_one(query(sql)).await.unwrap();
    n
}

/// Waits until every job is done (replies delivered, files downloaded, replies evaluated).
async fn all_jobs_done(app: &TestApp) {
    app.all_answered().await;
    app.eventually(Duration::from_secs(20), "every job to finish", || async {
        (count(app, "SELECT COUNT(*) FROM jobs").await == 0).then_some(())
    })
    .await;
}

/// The purge of the app, run by the test.
fn purge_of(app: &TestApp) -> Retention {
    Retention::new(
        app.store.clone(),
        app.clock.clone(),
        MediaDir::new(&app.config.media.dir),
        app.config.retention.clone(),
    )
}

async fn a_purge_removes_what_is_older_than_its_period_and_keeps_the_rest(backend: Backend) {
    let graph = FakeGraph::start().await;
    let clock = Clock::system();
    let app = TestApp::spawn_with_clock(
        &backend,
        clock.clone(),
        configured(&graph, |c| {
            c.retention.messages_days = Some(30);
            c.retention.deleted_conversations_days = Some(7);
            c.retention.audit_days = Some(30);
            c.retention.batch_size = 3;
        }),
    )
    .await;
    // Old: a WhatsApp contact with a photo, a web conversation that goes on, one deleted.
    graph.add_media("1003383421387256", b"an old photo", "image/jpeg");
    app.whatsapp(&text(&clock, "wamid.old", "old news")).await;
    app.whatsapp(&image(&clock)).await;
    let (_, first) = app.send("regular", json!({"content": "first"})).await;
    let ongoing = first["conversation_id"].as_str().unwrap().to_owned();
    for n in 0..3 {
        app.send(
            "regular",
            json!({"content": format!("old {n}"), "conversation_id": ongoing}),
        )
        .await;
    }
    let (_, gone) = app.send("leaver", json!({"content": "forget me"})).await;
    let gone = gone["conversation_id"].as_str().unwrap().to_owned();
    let response = app
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/conversations/{gone}"),
            "leaver",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    app.staff_token("old-admin@example.com", "admin").await;
    all_jobs_done(&app).await;
    let (photo,): (String,) = app
        .store
        .reader()
        .fetch_one(query("SELECT path FROM media"))
        .await
        .unwrap();
    let photo = app.config.media.dir.join(photo);
    assert!(photo.exists());
    let old_messages = app.count("messages").await;
    assert!(old_messages >= 12, "{old_messages}");
    assert!(count(&app, "SELECT COUNT(*) FROM evaluations").await > 0);

    // A month later: the ongoing conversation goes on, someone new writes, staff sign in.
    clock.advance(31 * DAY);
    let (status, _) = app
        .send(
            "regular",
            json!({"content": "still here", "conversation_id": ongoing}),
        )
        .await;
    assert_eq!(status, 200);
    app.send("newcomer", json!({"content": "hi"})).await;
    app.staff_token("new-admin@example.com", "admin").await;
    all_jobs_done(&app).await;
    let recent_messages = app.count("messages").await - old_messages;
    let recent_audit = count(&app, "SELECT COUNT(*) FROM audit_log").await;

    let purged = purge_of(&app).purge().await.unwrap();
    let removed = &purged.removed;
    assert_eq!(removed.messages, u64::try_from(old_messages).unwrap());
    assert!(
        purged.batches >= removed.messages / 3,
        "batches of at most 3: {purged:?}"
    );
    assert_eq!(app.count("messages").await, recent_messages);
    let (kept,): (i64,) = app
        .store
        .reader()
        .fetch_one(
            query("SELECT COUNT(*) FROM messages WHERE conversation_id = $1")
                .bind(ongoing.as_str()),
        )
        .await
        .unwrap();
    assert_eq!(
        kept, 2,
        "the recent message of the ongoing conversation and its reply"
    );
    // Files, evaluations and parts went with their messages; empty conversations and contacts too.
    assert_eq!(app.count("media").await, 0);
    assert!(!photo.exists(), "the photo's file is deleted");
    assert_eq!(removed.media, 1);
    assert_eq!(purged.files, 1);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM evaluations WHERE message_id NOT IN (SELECT id FROM messages)"
        )
        .await,
        0
    );
    assert_eq!(
        app.count("conversations").await,
        2,
        "the ongoing and the new one"
    );
    assert_eq!(
        removed.conversations, 2,
        "the WhatsApp one and the deleted one"
    );
    assert_eq!(app.count("contacts").await, 2, "regular and newcomer");
    assert_eq!(removed.contacts, 2, "the WhatsApp contact and the leaver");
    // The audit log keeps the month.
    assert!(removed.audit_entries > 0);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM audit_log").await,
        recent_audit - i64::try_from(removed.audit_entries).unwrap()
    );
    assert!(count(&app, "SELECT COUNT(*) FROM audit_log").await > 0);

    // The ongoing conversation still answers; a second purge finds nothing.
    let (status, body) = app
        .send(
            "regular",
            json!({"content": "and now?", "conversation_id": ongoing}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"]["seq"], 11, "seq numbers keep counting");
    let again = purge_of(&app).purge().await.unwrap();
    assert!(again.removed.is_empty(), "{again:?}");
}

async fn messages_that_pending_work_needs_wait_for_a_later_purge(backend: Backend) {
    let graph = FakeGraph::start().await;
    let clock = Clock::system();
    let app = TestApp::spawn_with_clock(
        &backend,
        clock.clone(),
        configured(&graph, |c| {
            c.retention.messages_days = Some(30);
            c.jobs.max_attempts = 1_000_000;
            // One attempt, then the next an hour away: no retry races the purge (which removes
            // the user's message, and with it the 24-hour window a retry would need).
            c.jobs.retry_base = Duration::from_secs(3600);
            c.jobs.retry_max = Duration::from_secs(3600);
            c.evaluations.enabled = false;
        }),
    )
    .await;
    // The provider refuses every delivery for now: the reply's delivery job stays.
    graph.fail_next(vec![Failure::ServerError; 100_000]);
    app.whatsapp(&text(&clock, "wamid.stuck", "hello")).await;
    app.all_answered().await;
    app.eventually(
        Duration::from_secs(20),
        "the delivery to be tried and put back for a retry",
        || async {
            // Claiming counts the attempt before the send: wait for the retry to be scheduled,
            // or the purge could remove the window's message under a delivery still deciding.
            let retrying =
                "SELECT COUNT(*) FROM jobs WHERE attempts > 0 AND last_error IS NOT NULL";
            (count(&app, retrying).await > 0).then_some(())
        },
    )
    .await;
    // Only the purge sees the month go by: moving the gateway's own clock would also close
    // WhatsApp's 24-hour window, and a delivery attempt racing the purge would then fail the
    // reply for good (finishing its job) instead of retrying it.
    let later = Clock::system();
    later.advance(31 * DAY);
    let purge = Retention::new(
        app.store.clone(),
        later,
        MediaDir::new(&app.config.media.dir),
        app.config.retention.clone(),
    );
    let purged = purge.purge().await.unwrap();
    assert_eq!(purged.removed.messages, 1, "the user's message only");
    let (role,): (String,) = app
        .store
        .reader()
        .fetch_one(query("SELECT role FROM messages"))
        .await
        .unwrap();
    assert_eq!(role, "ai", "the reply still waiting for delivery stays");
    assert_eq!(app.count("conversations").await, 1);
    assert_eq!(app.count("contacts").await, 1);
    let (status, error): (String, Option<String>) = app
        .store
        .reader()
        .fetch_one(query("SELECT status, error FROM messages"))
        .await
        .unwrap();
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM jobs").await,
        1,
        "{status} {error:?}"
    );
}

async fn the_purge_runs_on_its_schedule(backend: Backend) {
    let clock = Clock::system();
    let app = TestApp::spawn_with_clock(&backend, clock.clone(), |c| {
        c.retention.messages_days = Some(1);
        c.retention.schedule = "* * * * * *".into();
    })
    .await;
    app.send("dev-1", json!({"content": "hello"})).await;
    assert_eq!(app.count("messages").await, 2);
    clock.advance(2 * DAY);
    app.eventually(
        Duration::from_secs(10),
        "the scheduled purge to remove the old conversation",
        || async {
            let left = app.count("messages").await
                + app.count("conversations").await
                + app.count("contacts").await;
            (left == 0).then_some(())
        },
    )
    .await;
}
