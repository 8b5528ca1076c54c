//! The WhatsApp channel end to end: signed webhooks into the real gateway, replies out to a fake
//! Graph API, with the failures real traffic brings (retries, rate limits, outages, the 24-hour
//! window, expired tokens, expiring media).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::{
    config::Config,
    store::{Db, messages, query},
};
use switchboard_channel::DeliveryStatus;

use crate::{
    both_backends,
    helpers::{
        Backend, TestApp,
        graph::{Failure, FakeGraph, FakeMedia},
    },
};

both_backends!(
    a_text_message_is_answered_on_whatsapp,
    forged_and_foreign_webhooks_store_nothing,
    a_retry_storm_is_stored_once_and_answered_once,
    a_batch_is_answered_in_order,
    a_failing_provider_is_retried_until_it_accepts,
    statuses_move_replies_forward_never_back,
    outside_the_window_a_template_goes_instead,
    refused_tokens_and_closed_windows_fail_with_the_reason,
    long_replies_go_out_in_parts_in_order,
    media_is_downloaded_checked_and_served_to_the_operator,
);

const NUMBER: &str = "106540352242922";
const USER: &str = "16505551234";
const SECRET: &str = "test-app-secret";
const OPERATOR: &str = "test-operator-token";

/// Points the WhatsApp channel at the fake.
fn on_whatsapp(graph: &FakeGraph) -> impl FnOnce(&mut Config) + '_ {
    move |config: &mut Config| {
        config.set("whatsapp.app_secret", SECRET);
        config.set("whatsapp.verify_token", "test-verify-token");
        config.set("whatsapp.access_token", "test-access-token");
        config.set("whatsapp.api_base", graph.base_url());
        config.server.admin_token = Some(OPERATOR.into());
    }
}

/// A fixture from `webhooks/whatsapp/`, as if sent just now.
fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/webhooks/whatsapp/{name}", env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    switchboard_whatsapp::refresh_whatsapp(&body, chrono::Utc::now().timestamp(), false)
        .expect("a WhatsApp payload")
}

/// A status webhook for a message we sent.
fn status(id: &str, status: &str, error: Option<Value>) -> Vec<u8> {
    let mut item = json!({
        "id": id, "status": status, "timestamp": chrono::Utc::now().timestamp().to_string(),
        "recipient_id": USER,
    });
    if let Some(error) = error {
        item["errors"] = json!([error]);
    }
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER},
            "statuses": [item]
        }}]}]
    }))
    .unwrap()
}

/// A text message webhook from the test user, written at the gateway's time.
fn text(app: &TestApp, id: &str, body: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": USER}],
            "messages": [{"from": USER, "id": id,
                "timestamp": app.clock.now().to_datetime().timestamp().to_string(),
                "type": "text", "text": {"body": body}}]
        }}]}]
    }))
    .unwrap()
}

/// The stored outbound messages, oldest first.
async fn replies(app: &TestApp) -> Vec<messages::Message> {
    let (conversation,): (String,) = app
        .store
        .reader()
        .fetch_one(query(
            "SELECT id FROM conversations WHERE channel = 'whatsapp'",
        ))
        .await
        .unwrap();
    messages::page(&mut app.store.reader(), &conversation.into(), None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == messages::Direction::Outbound)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_handshake_needs_our_token() {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_whatsapp(&graph)).await;
    let verify = |token: &str, mode: &str| {
        app.client
            .get(app.url("/webhooks/whatsapp"))
            .query(&[
                ("hub.mode", mode),
                ("hub.verify_token", token),
                ("hub.challenge", "1158201444"),
            ])
            .send()
    };
    let ok = verify("test-verify-token", "subscribe").await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    for (token, mode) in [("wrong", "subscribe"), ("test-verify-token", "unsubscribe")] {
        let refused = verify(token, mode).await.unwrap();
        assert_eq!(refused.status(), 403);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "verification_failed");
    }

    // A gateway without WhatsApp settings has no such channel.
    let plain = TestApp::spawn(&Backend::Sqlite).await;
    let (status, body) = plain
        .whatsapp_signed(&fixture("text.json"), "sha256=00")
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("channel_not_configured"))
    );
}

async fn a_text_message_is_answered_on_whatsapp(backend: Backend) {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&backend, on_whatsapp(&graph)).await;
    let (status, body) = app.whatsapp(&fixture("text.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], 1);

    graph.wait_for_accepted(1).await;
    let sent = graph.message_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, format!("/v23.0/{NUMBER}/messages"));
    assert_eq!(
        sent[0].authorization.as_deref(),
        Some("Bearer test-access-token")
    );
    assert_eq!(sent[0].body["to"], USER);
    assert_eq!(sent[0].body["type"], "text");
    assert_eq!(
        sent[0].body["text"]["body"],
        "We're open Monday to Friday, 9:00 to 18:00."
    );
    assert!(
        sent[0].body.get("context").is_none(),
        "nothing to disambiguate"
    );

    // The user's message was marked read, with a typing indicator, while the agent worked.
    graph
        .wait(|| !graph.read_receipts().is_empty(), "a read receipt")
        .await;
    let receipt = &graph.read_receipts()[0];
    assert_eq!(
        receipt.body["message_id"],
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdCNUE4RTg3NkQ2QkU2RkIxNQA="
    );
    assert_eq!(receipt.body["typing_indicator"]["type"], "text");

    app.all_delivered().await;
    let replies = replies(&app).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, DeliveryStatus::Sent);
    assert_eq!(
        replies[0].provider_message_id.as_deref(),
        Some("wamid.out.1")
    );
    let (name,): (Option<String>,) = app
        .store
        .reader()
        .fetch_one(query("SELECT display_name FROM contacts WHERE external_id = $1").bind(USER))
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("Sheena Nelson"));
}

async fn forged_and_foreign_webhooks_store_nothing(backend: Backend) {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&backend, on_whatsapp(&graph)).await;
    let body = fixture("text.json");
    let mut tampered = body.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        ("no signature", body.clone(), String::new()),
        (
            "another secret",
            body.clone(),
            switchboard_whatsapp::sign(&body, "guess"),
        ),
        (
            "a changed body",
            tampered,
            switchboard_whatsapp::sign(&body, SECRET),
        ),
        ("not a signature", body.clone(), "sha1=abc".into()),
    ];
    for (what, payload, signature) in cases {
        let (status, reply) = app.whatsapp_signed(&payload, &signature).await;
        assert_eq!(status, 401, "{what}: {reply}");
        assert_eq!(reply["error"]["code"], "invalid_signature", "{what}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains(&switchboard_whatsapp::sign(&body, SECRET)[7..]),
            "{what}: the expected signature must not leak"
        );
    }
    // Signed, but not a WhatsApp envelope.
    for (what, payload) in [
        ("an Instagram webhook", fixture("not_whatsapp.json")),
        ("not JSON", b"hello".to_vec()),
    ] {
        let (status, reply) = app.whatsapp(&payload).await;
        assert_eq!(status, 400, "{what}: {reply}");
        assert_eq!(reply["error"]["code"], "invalid_payload", "{what}");
    }
    assert_eq!(app.count("messages").await, 0);
    assert_eq!(app.count("contacts").await, 0);
    assert!(graph.requests().is_empty(), "{:?}", graph.requests());
}

async fn a_retry_storm_is_stored_once_and_answered_once(backend: Backend) {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&backend, on_whatsapp(&graph)).await;
    let body = fixture("text.json");
    let posts = (0..20).map(|_| app.whatsapp(&body));
    let answers = futures::future::join_all(posts).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    let stored: u64 = answers
        .iter()
        .map(|(_, b)| b["stored"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, 1, "{answers:?}");

    app.all_answered().await;
    app.all_delivered().await;
    assert_eq!(app.count("messages").await, 2, "the message and its reply");
    assert_eq!(
        graph.message_requests().len(),
        1,
        "{:?}",
        graph.message_requests()
    );
}

async fn a_batch_is_answered_in_order(backend: Backend) {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&backend, |config| {
        on_whatsapp(&graph)(config);
        config.routing.default_agent = "echo".into();
        // No polling to fall back on: each reply goes as soon as the one before it is delivered.
        config.jobs.poll_interval = Duration::from_secs(3600);
    })
    .await;
    let (status, body) = app.whatsapp(&fixture("batch.json")).await;
    assert_eq!((status, &body["stored"]), (200, &json!(3)), "{body}");

    graph.wait_for_accepted(3).await;
    let sent = graph.message_requests();
    let texts: Vec<&str> = sent
        .iter()
        .map(|r| r.body["text"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["first", "second", "third"]);
    // The user had written more by the time the first two were answered: they quote their message.
    let quoted: Vec<Option<&str>> = sent
        .iter()
        .map(|r| r.body["context"]["message_id"].as_str())
        .collect();
    assert_eq!(
        quoted,
        [
            Some("wamid.HBgLMTY1MDU1NTEyMzQVAgASGBRGQzZDMTMxRDI2OTNDNTJERUVDMwA="),
            Some("wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQwMzQ2NkFDOUEyQjdDQUY1QkMxMAA="),
            None
        ]
    );
}

async fn a_failing_provider_is_retried_until_it_accepts(backend: Backend) {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&backend, on_whatsapp(&graph)).await;
    graph.fail_next([Failure::ServerError, Failure::ServerError]);
    app.whatsapp(&text(&app, "wamid.retry.1", "hello")).await;
    graph.wait_for_accepted(1).await;
    app.all_delivered().await;
    assert_eq!(
        graph.message_requests().len(),
        3,
        "two failures, then accepted"
    );
    let stored = replies(&app).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].status, DeliveryStatus::Sent);

    // A rate limit with the provider's hint: the retry waits at least that long.
    graph.fail_next([Failure::RateLimited(Some(1))]);
    let started = std::time::Instant::now();
    app.whatsapp(&text(&app, "wamid.retry.2", "hello again"))
        .await;
    graph.wait_for_accepted(2).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    app.all_delivered().await;
    assert_eq!(graph.message_requests().len(), 5);
    assert!(
        replies(&app)
            .await
            .iter()
            .all(|r| r.status == DeliveryStatus::Sent)
    );
}

async fn statuses_move_replies_forward_never_back(backend: Backend) {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&backend, on_whatsapp(&graph)).await;
    app.whatsapp(&text(&app, "wamid.s.1", "hello")).await;
    graph.wait_for_accepted(1).await;
    app.all_delivered().await;

    let current = || async { replies(&app).await[0].clone() };
    for (update, expected) in [
        ("delivered", DeliveryStatus::Delivered),
        ("read", DeliveryStatus::Read),
        // Late or repeated statuses do not move it back.
        ("delivered", DeliveryStatus::Read),
        ("sent", DeliveryStatus::Read),
        ("read", DeliveryStatus::Read),
    ] {
        let (status, body) = app.whatsapp(&status("wamid.out.1", update, None)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(current().await.status, expected, "after {update}");
    }

    // A failure reported for another reply is stored with the provider's reason.
    app.whatsapp(&text(&app, "wamid.s.2", "are you there?"))
        .await;
    graph.wait_for_accepted(2).await;
    app.all_delivered().await;
    let error = json!({"code": 131047, "title": "Re-engagement message",
        "error_data": {"details": "more than 24 hours have passed"}});
    app.whatsapp(&status("wamid.out.2", "failed", Some(error)))
        .await;
    let second = replies(&app).await[1].clone();
    assert_eq!(second.status, DeliveryStatus::Failed);
    assert_eq!(
        second.error.as_deref(),
        Some("131047 Re-engagement message: more than 24 hours have passed")
    );

    // A status that overtakes the send's answer (the next reply will be "wamid.out.3") is kept and
    // applied once the id is known.
    let (status, body) = app.whatsapp(&status("wamid.out.3", "read", None)).await;
    assert_eq!((status, &body["statuses"]), (200, &json!(0)), "{body}");
    app.whatsapp(&text(&app, "wamid.s.3", "one more")).await;
    graph.wait_for_accepted(3).await;
    app.all_delivered().await;
    let third = replies(&app).await.into_iter().last().unwrap();
    assert_eq!(third.provider_message_id.as_deref(), Some("wamid.out.3"));
    assert_eq!(
        third.status,
        DeliveryStatus::Read,
        "the early status was applied"
    );
}

async fn outside_the_window_a_template_goes_instead(backend: Backend) {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&backend, |config| {
        on_whatsapp(&graph)(config);
        let template = switchboard_whatsapp::Template {
            name: "follow_up".into(),
            language: "en_US".into(),
            components: json!([]),
        };
        config.set(
            "whatsapp.fallback_template",
            toml::Value::try_from(template).unwrap(),
        );
        // Slow retries, so that the test decides when the next attempt happens.
        config.jobs.retry_base = Duration::from_secs(1);
    })
    .await;
    // The provider is down when the answer is ready; by the time it is back, the user's message
    // is more than a day old.
    graph.fail_next([Failure::ServerError]);
    app.whatsapp(&text(&app, "wamid.w.1", "hello")).await;
    graph.wait_for_attempts(1).await;
    app.clock.advance(Duration::from_secs(25 * 3600));
    graph.wait_for_accepted(1).await;
    app.all_delivered().await;

    let sent = graph.message_requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].body["type"], "template");
    assert_eq!(sent[1].body["template"]["name"], "follow_up");
    assert_eq!(sent[1].body["template"]["language"]["code"], "en_US");
    let reply = &replies(&app).await[0];
    assert_eq!(reply.status, DeliveryStatus::Sent);
    assert_eq!(reply.metadata.to_map()["substituted"], "template follow_up");

    // When WhatsApp itself says the window is closed (131047), the template goes too.
    graph.fail_next([Failure::OutsideWindow]);
    app.whatsapp(&text(&app, "wamid.w.2", "and your prices?"))
        .await;
    graph.wait_for_accepted(2).await;
    app.all_delivered().await;
    let sent = graph.message_requests();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[2].body["type"], "text");
    assert_eq!(sent[3].body["type"], "template");
}

async fn refused_tokens_and_closed_windows_fail_with_the_reason(backend: Backend) {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&backend, |config| {
        on_whatsapp(&graph)(config);
        config.jobs.retry_base = Duration::from_secs(1);
    })
    .await;
    // An expired token is not retried.
    graph.fail_next([Failure::TokenExpired]);
    app.whatsapp(&text(&app, "wamid.t.1", "hello")).await;
    app.all_answered().await;
    app.all_delivered().await;
    let reply = replies(&app).await[0].clone();
    assert_eq!(reply.status, DeliveryStatus::Failed);
    assert!(
        reply.error.as_deref().unwrap().starts_with("190:"),
        "{:?}",
        reply.error
    );
    assert_eq!(graph.message_requests().len(), 1);

    // Outside the window, without a template, no free text is sent at all.
    graph.fail_next([Failure::ServerError]);
    app.whatsapp(&text(&app, "wamid.t.2", "hello again")).await;
    graph.wait_for_attempts(2).await;
    app.clock.advance(Duration::from_secs(25 * 3600));
    app.all_delivered().await;
    let reply = replies(&app).await[1].clone();
    assert_eq!(reply.status, DeliveryStatus::Failed);
    let error = reply.error.unwrap();
    assert!(
        error.starts_with("131047:") && error.contains("24-hour"),
        "{error}"
    );
    assert_eq!(
        graph.message_requests().len(),
        2,
        "nothing after the window closed"
    );
}

async fn long_replies_go_out_in_parts_in_order(backend: Backend) {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&backend, |config| {
        on_whatsapp(&graph)(config);
        config.routing.default_agent = "echo".into();
    })
    .await;
    let paragraph = "All work and no play makes Jack a dull boy. ".repeat(50);
    let long = format!("{}\n\n{}", paragraph.trim(), paragraph.trim());
    assert!(long.chars().count() > 4096);
    // The second part fails once: the retry must not send the first part again.
    graph.answer_next([None, Some(Failure::ServerError)]);
    app.whatsapp(&text(&app, "wamid.l.1", &long)).await;
    graph.wait_for_accepted(2).await;
    app.all_delivered().await;
    let sent = graph.message_requests();
    let parts: Vec<&str> = sent
        .iter()
        .map(|r| r.body["text"]["body"].as_str().unwrap())
        .collect();
    assert!(parts.iter().all(|p| p.chars().count() <= 4096));
    assert_eq!(
        parts,
        [paragraph.trim(), paragraph.trim(), paragraph.trim()],
        "part one, part two (refused), part two again"
    );
    let reply = replies(&app).await[0].clone();
    assert_eq!(reply.status, DeliveryStatus::Sent);
    assert_eq!(reply.provider_message_id.as_deref(), Some("wamid.out.1"));
    // A status of the second part moves the whole reply.
    app.whatsapp(&status("wamid.out.2", "delivered", None))
        .await;
    assert_eq!(replies(&app).await[0].status, DeliveryStatus::Delivered);
}

async fn media_is_downloaded_checked_and_served_to_the_operator(backend: Backend) {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&backend, on_whatsapp(&graph)).await;
    let photo: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    graph.add_media("1003383421387256", &photo, "image/jpeg");
    let (status, body) = app.whatsapp(&fixture("image.json")).await;
    assert_eq!(status, 200, "{body}");

    let media_id = app
        .eventually(
            Duration::from_secs(20),
            "the photo to be downloaded",
            || async {
                let (attachments,): (String,) = app
                .store
                .reader()
                .fetch_one(query(
                    "SELECT CAST(attachments AS TEXT) FROM messages WHERE direction = 'inbound'",
                ))
                .await
                .unwrap();
                let attachments: Value = serde_json::from_str(&attachments).unwrap();
                attachments[0]["media_id"].as_str().map(str::to_owned)
            },
        )
        .await;
    // The metadata and the file were fetched with the number's token.
    let fetches: Vec<_> = graph
        .requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/messages"))
        .collect();
    assert_eq!(fetches.len(), 2, "{fetches:?}");
    assert!(
        fetches
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer test-access-token"))
    );

    let path = format!("/v1/media/{media_id}");
    let anonymous = app.client.get(app.url(&path)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let guessing = app
        .client
        .get(app.url(&path))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(guessing.status(), 401);
    let served = app
        .client
        .get(app.url(&path))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    assert_eq!(served.bytes().await.unwrap().as_ref(), photo.as_slice());
    let missing = app
        .request(Method::GET, "/v1/media/nothing-here", "x")
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // A file that does not match its announced checksum is not kept; the reason is recorded.
    graph.add_media_as(
        "media.corrupt",
        FakeMedia {
            bytes: b"not the picture".to_vec(),
            mime_type: "image/jpeg".into(),
            sha256: hex::encode([7u8; 32]),
        },
    );
    let body = String::from_utf8(fixture("image.json"))
        .unwrap()
        .replace("1003383421387256", "media.corrupt")
        .replace(
            "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQwRTc2MjkyNzk0ODg4RDRGMUZBNwA=",
            "wamid.corrupt",
        );
    app.whatsapp(body.as_bytes()).await;
    let error = app
        .eventually(
            Duration::from_secs(20),
            "the corrupt file to be refused",
            || async {
                let found = messages::find_by_provider_id(
                    &mut app.store.reader(),
                    switchboard_whatsapp::CHANNEL,
                    "wamid.corrupt",
                )
                .await
                .unwrap()?;
                found
                    .metadata
                    .media_errors
                    .get("0")?
                    .as_str()
                    .map(str::to_owned)
            },
        )
        .await;
    assert!(error.contains("SHA-256"), "{error}");
    let (stored,): (i64,) = app
        .store
        .reader()
        .fetch_one(query("SELECT COUNT(*) FROM media"))
        .await
        .unwrap();
    assert_eq!(stored, 1, "only the good photo is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_message_is_stored_and_the_right_ones_answered() {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_whatsapp(&graph)).await;
    let kinds = [
        ("text.json", "text", true),
        ("image.json", "media", true),
        ("audio.json", "media", true),
        ("voice.json", "media", true),
        ("video.json", "media", true),
        ("document.json", "media", true),
        ("sticker.json", "media", true),
        ("location.json", "location", true),
        ("contacts.json", "contacts", true),
        ("interactive_button_reply.json", "interactive", true),
        ("interactive_list_reply.json", "interactive", true),
        ("button.json", "interactive", true),
        ("referral.json", "text", true),
        ("unsupported.json", "unsupported", true),
        ("reaction.json", "reaction", false),
        ("reaction_removed.json", "reaction", false),
        ("system.json", "system", false),
    ];
    for (file, kind, answered) in kinds {
        let before = app.count("messages").await;
        let (status, body) = app.whatsapp(&fixture(file)).await;
        assert_eq!(
            (status, &body["stored"]),
            (200, &json!(1)),
            "{file}: {body}"
        );
        app.all_answered().await;
        let (stored_kind,): (String,) = app
            .store
            .reader()
            .fetch_one(query(
                "SELECT kind FROM messages WHERE direction = 'inbound' ORDER BY created_at DESC \
                 LIMIT 1",
            ))
            .await
            .unwrap();
        assert_eq!(stored_kind, kind, "{file}");
        let added = app.count("messages").await - before;
        assert_eq!(added, if answered { 2 } else { 1 }, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_our_message_links_to_it() {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_whatsapp(&graph)).await;
    app.whatsapp(&text(&app, "wamid.q.1", "hello")).await;
    graph.wait_for_accepted(1).await;
    app.all_delivered().await;
    let ours = replies(&app).await[0].clone();

    let mut quoting: Value = serde_json::from_slice(&text(&app, "wamid.q.2", "what?")).unwrap();
    quoting["entry"][0]["changes"][0]["value"]["messages"][0]["context"] =
        json!({"from": "15550783881", "id": "wamid.out.1"});
    app.whatsapp(&serde_json::to_vec(&quoting).unwrap()).await;
    let stored = messages::find_by_provider_id(
        &mut app.store.reader(),
        switchboard_whatsapp::CHANNEL,
        "wamid.q.2",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(stored.reply_to.as_deref(), Some(ours.id.as_str()));
    assert_eq!(
        stored.metadata.to_map()["reply_to_provider_id"],
        "wamid.out.1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_number_answers_with_its_own_token() {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |config| {
        on_whatsapp(&graph)(config);
        let number: toml::Table =
            "phone_number_id = \"222000111\"\naccess_token = \"second-number-token\""
                .parse()
                .unwrap();
        config.set("whatsapp.numbers", toml::Value::Array(vec![number.into()]));
    })
    .await;
    app.whatsapp(&text(&app, "wamid.n.1", "hello first number"))
        .await;
    let other = String::from_utf8(text(&app, "wamid.n.2", "hello second number"))
        .unwrap()
        .replace(NUMBER, "222000111");
    app.whatsapp(other.as_bytes()).await;
    graph.wait_for_accepted(2).await;

    let mut sent: Vec<(String, Option<String>)> = graph
        .message_requests()
        .into_iter()
        .map(|r| (r.path, r.authorization))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            (
                format!("/v23.0/{NUMBER}/messages"),
                Some("Bearer test-access-token".into())
            ),
            (
                "/v23.0/222000111/messages".into(),
                Some("Bearer second-number-token".into())
            ),
        ]
    );
    // One conversation per number the user writes to.
    assert_eq!(app.count("conversations").await, 2);
}
