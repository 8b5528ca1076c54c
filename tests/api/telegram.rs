//! The Telegram channel end to end: webhook updates (with the secret) and long polling into the
//! real gateway, replies out through teloxide to a fake Bot API, with Telegram's realities:
//! repeated updates, rate limits, users who block the bot, commands, buttons, group chats.

use std::time::Duration;

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
        botapi::{Failure, FakeBotApi},
    },
};

both_backends!(
    a_text_update_is_answered_in_its_chat,
    forged_and_misdirected_updates_store_nothing,
    a_repeated_update_is_answered_once,
    polling_confirms_offsets_across_a_restart,
);

const BOT: &str = "support";
const SECRET: &str = "test-webhook-secret";
const TOKEN: &str = "7000000001:test-token";
const CHAT: i64 = 218_485_655;

/// Points the Telegram channel at the fake, with one bot in `mode`.
fn on_telegram<'a>(api: &'a FakeBotApi, mode: &'static str) -> impl FnOnce(&mut Config) + 'a {
    move |config: &mut Config| {
        config.set("telegram.api_url", api.api_url());
        config.set("telegram.token", TOKEN);
        config.set("telegram.name", BOT);
        config.set("telegram.mode", mode);
        config.set("telegram.webhook_secret", SECRET);
        config.set("telegram.poll_timeout", "1s");
    }
}

/// A fixture from `webhooks/telegram/`, as if sent just now.
fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/webhooks/telegram/{name}", env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    switchboard_telegram::refresh_telegram(&body, chrono::Utc::now().timestamp(), false)
        .expect("a Telegram update")
}

/// A private text message update.
fn text(update_id: i64, message_id: i64, body: &str) -> Value {
    json!({"update_id": update_id, "message": {
        "message_id": message_id, "date": chrono::Utc::now().timestamp(),
        "from": {"id": CHAT, "is_bot": false, "first_name": "Waffle", "username": "WaffleLapkin"},
        "chat": {"id": CHAT, "first_name": "Waffle", "username": "WaffleLapkin", "type": "private"},
        "text": body
    }})
}

/// The stored outbound messages of the bot's conversations, oldest first.
async fn replies(app: &TestApp) -> Vec<messages::Message> {
    let ids: Vec<(String,)> = app
        .store
        .reader()
        .fetch_all(query(
            "SELECT id FROM messages WHERE channel = 'telegram' AND direction = 'outbound' \
             ORDER BY created_at, seq",
        ))
        .await
        .unwrap();
    let mut found = Vec::new();
    for (id,) in ids {
        found.push(
            messages::get(&mut app.store.reader(), &id)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    found
}

async fn a_text_update_is_answered_in_its_chat(backend: Backend) {
    let api = FakeBotApi::start().await;
    let app = TestApp::spawn_with(&backend, on_telegram(&api, "webhook")).await;
    let (status, body) = app.telegram(BOT, Some(SECRET), &fixture("text.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], 1);

    api.wait_for_sends(1).await;
    let send = &api.calls_of("sendMessage")[0];
    assert_eq!(send.token, TOKEN);
    assert_eq!(send.params["chat_id"], CHAT);
    assert_eq!(
        send.params["text"],
        "We're open Monday to Friday, 9:00 to 18:00."
    );
    // The user saw the bot typing while the agent worked.
    api.wait(
        || !api.calls_of("sendChatAction").is_empty(),
        "a typing action",
    )
    .await;
    let typing = &api.calls_of("sendChatAction")[0];
    assert_eq!(
        (&typing.params["chat_id"], &typing.params["action"]),
        (&json!(CHAT), &json!("typing"))
    );

    app.all_delivered().await;
    let replies = replies(&app).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, DeliveryStatus::Sent);
    assert_eq!(
        replies[0].provider_message_id.as_deref(),
        Some("218485655:1001")
    );
    let (name,): (Option<String>,) = app
        .store
        .reader()
        .fetch_one(
            query(
                "SELECT display_name FROM contacts WHERE channel = 'telegram' AND external_id = $1",
            )
            .bind(CHAT.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("Waffle"));
}

async fn forged_and_misdirected_updates_store_nothing(backend: Backend) {
    let api = FakeBotApi::start().await;
    let app = TestApp::spawn_with(&backend, on_telegram(&api, "webhook")).await;
    let body = fixture("text.json");
    for (what, secret) in [("no secret", None), ("a wrong secret", Some("guess"))] {
        let (status, reply) = app.telegram(BOT, secret, &body).await;
        assert_eq!(status, 401, "{what}: {reply}");
        assert_eq!(reply["error"]["code"], "invalid_secret", "{what}");
        assert!(
            !reply.to_string().contains(SECRET),
            "{what}: the secret must not leak"
        );
    }
    let (status, reply) = app.telegram("another-bot", Some(SECRET), &body).await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (404, &json!("not_found"))
    );
    let (status, reply) = app
        .telegram(BOT, Some(SECRET), &fixture("not_telegram.json"))
        .await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (400, &json!("invalid_payload"))
    );
    assert_eq!(app.count("messages").await, 0);
    assert_eq!(app.count("contacts").await, 0);
    assert!(api.calls_of("sendMessage").is_empty());

    // A gateway without Telegram settings has no such channel.
    let plain = TestApp::spawn(&Backend::Sqlite).await;
    let (status, reply) = plain.telegram(BOT, Some(SECRET), &body).await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (404, &json!("channel_not_configured"))
    );
}

async fn a_repeated_update_is_answered_once(backend: Backend) {
    let api = FakeBotApi::start().await;
    let app = TestApp::spawn_with(&backend, on_telegram(&api, "webhook")).await;
    let body = fixture("text.json");
    let posts = (0..10).map(|_| app.telegram(BOT, Some(SECRET), &body));
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
    assert_eq!(app.count("messages").await, 2);
    assert_eq!(api.calls_of("sendMessage").len(), 1);
}

async fn polling_confirms_offsets_across_a_restart(backend: Backend) {
    let api = FakeBotApi::start().await;
    let app = TestApp::spawn_with(&backend, |config| {
        on_telegram(&api, "polling")(config);
        config.routing.default_agent = "echo".into();
    })
    .await;
    api.push_update(text(900, 1, "first by polling"));
    api.wait_for_sends(1).await;
    app.all_delivered().await;
    assert!(
        !api.calls_of("deleteWebhook").is_empty(),
        "polling needs the webhook removed"
    );

    // The gateway stops; another update arrives meanwhile; a new gateway takes over.
    let config = app.config.clone();
    let db = app.stop().await;
    let polls_before = api.calls_of("getUpdates").len();
    api.push_update(text(901, 2, "second, while it was down"));
    let mut again = TestApp::start(config, switchboard::time::Clock::system()).await;
    again.keep(db);
    api.wait_for_sends(2).await;
    again.all_delivered().await;

    assert_eq!(
        api.sent_texts(),
        ["first by polling", "second, while it was down"],
        "each update answered exactly once"
    );
    let resumed = &api.calls_of("getUpdates")[polls_before];
    assert_eq!(
        resumed.params["offset"], 901,
        "the restarted gateway confirmed the first update and did not ask for it again"
    );
    assert_eq!(again.count("messages").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_replies_arrive_after_the_wait() {
    let api = FakeBotApi::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_telegram(&api, "webhook")).await;
    api.fail_next([Failure::RetryAfter(1)]);
    let started = std::time::Instant::now();
    app.telegram(BOT, Some(SECRET), &fixture("text.json")).await;
    api.wait_for_sends(2).await;
    app.all_delivered().await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retry_after was honoured"
    );
    assert_eq!(
        api.calls_of("sendMessage").len(),
        2,
        "refused once, then sent"
    );
    assert_eq!(replies(&app).await[0].status, DeliveryStatus::Sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_replies_go_out_as_two_messages_in_order() {
    let api = FakeBotApi::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |config| {
        on_telegram(&api, "webhook")(config);
        config.routing.default_agent = "echo".into();
        config.web.max_content_chars = 10_000;
    })
    .await;
    let sentence = "Telegram counts UTF-16 units, so this is measured carefully. ";
    let long = sentence.repeat(75);
    assert!(long.trim().encode_utf16().count() > 4096 && long.len() < 4600);
    let update = serde_json::to_vec(&text(700, 70, long.trim())).unwrap();
    app.telegram(BOT, Some(SECRET), &update).await;
    api.wait_for_sends(2).await;
    app.all_delivered().await;
    let parts = api.sent_texts();
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert!(parts.iter().all(|p| p.encode_utf16().count() <= 4096));
    assert_eq!(parts.join(" "), long.trim(), "in order, nothing lost");
    assert_eq!(replies(&app).await[0].status, DeliveryStatus::Sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_greets_and_human_hands_over() {
    let api = FakeBotApi::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_telegram(&api, "webhook")).await;
    app.telegram(BOT, Some(SECRET), &fixture("start.json"))
        .await;
    api.wait_for_sends(1).await;
    assert!(
        api.sent_texts()[0].starts_with("Hello! I'm the Switchboard assistant"),
        "{:?}",
        api.sent_texts()
    );
    // The greeting offers its topics as an inline keyboard.
    let keyboard = &api.calls_of("sendMessage")[0].params["reply_markup"]["inline_keyboard"];
    let buttons: Vec<(&str, &str)> = keyboard
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|b| {
            (
                b["text"].as_str().unwrap(),
                b["callback_data"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        buttons,
        [
            ("Opening hours", "Opening hours"),
            ("Pricing", "Pricing"),
            ("Talk to a human", "Talk to a human")
        ]
    );

    app.telegram(BOT, Some(SECRET), &fixture("human.json"))
        .await;
    api.wait_for_sends(2).await;
    assert!(
        api.sent_texts()[1].contains("expert will join"),
        "the user is told on Telegram: {:?}",
        api.sent_texts()
    );
    let (mode,): (String,) = app
        .store
        .reader()
        .fetch_one(query(
            "SELECT mode FROM conversations WHERE channel = 'telegram'",
        ))
        .await
        .unwrap();
    assert_eq!(mode, "expert");

    // The AI stays silent from now on.
    let later =
        serde_json::to_vec(&text(573_920_200, 1300, "hello? what are your hours?")).unwrap();
    app.telegram(BOT, Some(SECRET), &later).await;
    app.all_answered().await;
    app.all_delivered().await;
    assert_eq!(api.calls_of("sendMessage").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_users_are_unreachable_until_they_come_back() {
    let api = FakeBotApi::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_telegram(&api, "webhook")).await;
    let unreachable = || async {
        let (since,): (Option<i64>,) = app
            .store
            .reader()
            .fetch_one(
                query("SELECT unreachable_since FROM contacts WHERE external_id = $1")
                    .bind(CHAT.to_string()),
            )
            .await
            .unwrap();
        since.is_some()
    };

    api.fail_next([Failure::Blocked]);
    app.telegram(BOT, Some(SECRET), &fixture("text.json")).await;
    app.all_answered().await;
    app.all_delivered().await;
    let reply = replies(&app).await[0].clone();
    assert_eq!(reply.status, DeliveryStatus::Failed);
    assert!(
        reply.error.as_deref().unwrap().contains("blocked"),
        "{:?}",
        reply.error
    );
    assert_eq!(api.calls_of("sendMessage").len(), 1, "not retried");
    assert!(unreachable().await);

    // Telegram reports the unblock: reachable again, and answered again.
    let (status, body) = app
        .telegram(BOT, Some(SECRET), &fixture("my_chat_member_unblocked.json"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!unreachable().await);
    let (_, body) = app
        .telegram(BOT, Some(SECRET), &fixture("my_chat_member_blocked.json"))
        .await;
    assert_eq!(body["stored"], 0);
    assert!(unreachable().await, "blocking is recorded too");
    let hello =
        serde_json::to_vec(&text(573_920_300, 1400, "I'm back, what are your hours?")).unwrap();
    app.telegram(BOT, Some(SECRET), &hello).await;
    api.wait_for_sends(2).await;
    app.all_delivered().await;
    assert!(!unreachable().await, "writing again makes a user reachable");
    assert_eq!(replies(&app).await[1].status, DeliveryStatus::Sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn button_presses_are_answered_and_stored() {
    let api = FakeBotApi::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_telegram(&api, "webhook")).await;
    let (status, body) = app
        .telegram(BOT, Some(SECRET), &fixture("callback_query.json"))
        .await;
    assert_eq!((status, &body["stored"]), (200, &json!(1)), "{body}");
    api.wait(
        || !api.calls_of("answerCallbackQuery").is_empty(),
        "the button press answered",
    )
    .await;
    assert_eq!(
        api.calls_of("answerCallbackQuery")[0].params["callback_query_id"],
        "938457102934857213"
    );
    let pressed = messages::find_by_provider_id(
        &mut app.store.reader(),
        switchboard_telegram::CHANNEL,
        "callback:938457102934857213",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(pressed.kind, "interactive");
    assert_eq!(pressed.content, "Yes, please");
    api.wait_for_sends(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_only_hear_what_is_addressed_to_the_bot() {
    let api = FakeBotApi::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_telegram(&api, "webhook")).await;
    // The bot learns its username at start-up (getMe).
    api.wait(|| !api.calls_of("getMe").is_empty(), "getMe")
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (status, body) = app
        .telegram(BOT, Some(SECRET), &fixture("group_other.json"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ignored"], "group message not addressed to the bot");
    assert_eq!(app.count("messages").await, 0);

    let (_, body) = app
        .telegram(BOT, Some(SECRET), &fixture("group_mention.json"))
        .await;
    assert_eq!(body["stored"], 1, "{body}");
    api.wait_for_sends(1).await;
    assert_eq!(
        api.calls_of("sendMessage")[0].params["chat_id"],
        -1_001_234_567_890_i64,
        "answered in the group"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_are_downloaded_with_getfile() {
    let api = FakeBotApi::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_telegram(&api, "webhook")).await;
    let update: Value = serde_json::from_slice(&fixture("photo.json")).unwrap();
    let largest = update["message"]["photo"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|p| p["file_size"].as_u64())
        .unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let photo: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
    api.add_file(&largest, &photo);
    app.telegram(BOT, Some(SECRET), &fixture("photo.json"))
        .await;
    app.eventually(
        Duration::from_secs(20),
        "the photo to be stored",
        || async {
            let (n,): (i64,) = app
                .store
                .reader()
                .fetch_one(query("SELECT COUNT(*) FROM media WHERE size = 20000"))
                .await
                .unwrap();
            (n == 1).then_some(())
        },
    )
    .await;
    assert_eq!(api.calls_of("getFile")[0].params["file_id"], json!(largest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_is_retried() {
    let api = FakeBotApi::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_telegram(&api, "webhook")).await;
    api.fail_next([Failure::ServerError]);
    app.telegram(BOT, Some(SECRET), &fixture("text.json")).await;
    // teloxide pauses 10 s after a 5xx before it reports it.
    tokio::time::timeout(Duration::from_secs(40), api.wait_for_sends(2))
        .await
        .expect("retried");
    app.all_delivered().await;
    assert_eq!(api.calls_of("sendMessage").len(), 2);
    assert_eq!(replies(&app).await[0].status, DeliveryStatus::Sent);
}
