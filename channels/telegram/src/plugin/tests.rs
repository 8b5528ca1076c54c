//! The plug-in as the gateway sees it: its section, what it offers, its start-up tasks (the
//! pollers against the fake Bot API), its command and its replays.

use std::{path::Path, sync::Arc, time::Duration};

use serde_json::{Value, json};
use switchboard_channel::{Checkpoint, InboundEvent, Inbox, StartContext, testing::FakeInbox};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::testing::{BOT, BotApiReply, FakeBotApi, Reply, TOKEN};

const SECRET: &str = "test-webhook-secret";
const CHAT: i64 = 218_485_655;
const CURSOR: &str = "telegram:support:last_update_id";

/// One bot, [`BOT`], on the fake.
fn section(api: &FakeBotApi, mode: &str) -> Value {
    json!({
        "api_url": api.api_url(),
        "token": TOKEN,
        "name": BOT,
        "mode": mode,
        "webhook_secret": SECRET,
        "poll_timeout": "1s",
    })
}

/// A private text message update.
fn text(update_id: i64, message_id: i64, body: &str) -> Value {
    json!({"update_id": update_id, "message": {
        "message_id": message_id, "date": 1_700_000_000,
        "from": {"id": CHAT, "is_bot": false, "first_name": "Waffle"},
        "chat": {"id": CHAT, "first_name": "Waffle", "type": "private"},
        "text": body
    }})
}

fn context(inbox: &FakeInbox, public_url: &str) -> (StartContext, CancellationToken) {
    let stop = CancellationToken::new();
    let context = StartContext {
        inbox: Arc::new(inbox.clone()),
        public_url: public_url.into(),
        stop: stop.clone(),
        exclusive: Arc::new(switchboard_channel::exclusive::Alone),
    };
    (context, stop)
}

/// Runs the plug-in's start-up tasks until `done`, then stops them and waits for them to end.
async fn run_until(
    plugin: &Arc<dyn ChannelPlugin>,
    context: StartContext,
    stop: CancellationToken,
    done: impl Fn() -> bool,
) {
    let tasks: Vec<_> = plugin
        .start(context)
        .into_iter()
        .map(tokio::spawn)
        .collect();
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    stop.cancel();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("a task that ends when stopped")
            .unwrap();
    }
    waited.expect("the awaited state in time");
}

fn offsets(api: &FakeBotApi) -> Vec<i64> {
    api.calls_of("GetUpdates")
        .iter()
        .map(|call| call.params["offset"].as_i64().unwrap_or_default())
        .collect()
}

fn texts(events: &[InboundEvent]) -> Vec<String> {
    events
        .iter()
        .map(|event| match event {
            InboundEvent::Message(message) => format!("{:?}", message.content),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn the_section_is_the_crates() {
    assert_eq!(KIND.channel().as_str(), "telegram");
    assert_eq!(KIND.defaults(), section_of(&Config::default()));
    assert_eq!(KIND.defaults()["poll_timeout"], "30s");
    assert!(KIND.env().contains(&("TELEGRAM_BOT_TOKEN", "token")));
    assert_eq!(KIND.env().len(), 5);
    assert_eq!(KIND.validate(json!({})), Ok(()));
    let refused = KIND.validate(json!({"token": "1:a"})).unwrap_err();
    assert!(
        refused.to_string().starts_with(
            "[telegram] telegram bot \"bot\" receives webhooks and needs a webhook_secret"
        ),
        "{refused}"
    );
    assert!(KIND.validate(json!({"tokn": "1:a"})).is_err());
    assert_eq!(
        KIND.commands(),
        &[(
            "set-webhook",
            "Register the webhook of every bot in webhook mode with Telegram, at \
             <server.public_url>/webhooks/telegram/<name>"
        )]
    );
}

#[tokio::test]
async fn without_a_bot_the_channel_is_off() {
    assert!(KIND.build(json!({})).unwrap().is_none());
    assert!(KIND.build(KIND.defaults()).unwrap().is_none());
    assert!(KIND.build(json!({"token": "1:a"})).is_err(), "validated");
}

#[tokio::test]
async fn the_plug_in_offers_the_bots_and_their_webhook() {
    let api = FakeBotApi::start().await;
    let plugin = KIND.build(section(&api, "webhook")).unwrap().unwrap();
    assert_eq!(plugin.channel(), CHANNEL);
    assert!(plugin.sender().is_some());
    assert!(plugin.fetcher().is_some());
    assert!(plugin.staff_mailer().is_none());
    assert_eq!(plugin.policy(), switchboard_channel::Policy::default());
    let webhook = plugin.webhook().unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(crate::SECRET_HEADER, SECRET.parse().unwrap());
    let request = switchboard_channel::WebhookRequest {
        method: http::Method::POST,
        path: BOT.into(),
        query: None,
        headers,
    };
    assert!(webhook.check(&request).is_ok());
}

#[tokio::test]
async fn the_poller_asks_past_each_stored_batch() {
    let api = FakeBotApi::start().await;
    let plugin = KIND.build(section(&api, "polling")).unwrap().unwrap();
    let inbox = FakeInbox::default();
    // The gateway ran before: update 899 is confirmed.
    inbox
        .ingest(
            Vec::new(),
            Some(Checkpoint::Cursor {
                name: CURSOR.into(),
                value: "899".into(),
            }),
        )
        .await
        .unwrap();
    api.reply_to(
        "GetUpdates",
        Reply::ok(json!([text(900, 1, "first"), text(901, 2, "second")])),
    );
    let (context, stop) = context(&inbox, "https://gateway.example");
    run_until(&plugin, context, stop, || offsets(&api).len() >= 2).await;

    let methods: Vec<String> = api.calls().iter().map(|r| r.method.clone()).collect();
    assert_eq!(
        &methods[..3],
        ["DeleteWebhook", "GetMe", "GetUpdates"],
        "the webhook is removed and the bot identified before polling"
    );
    assert_eq!(&offsets(&api)[..2], [900, 902]);
    let batches = inbox.batches();
    assert_eq!(batches.len(), 2);
    let (events, checkpoint) = &batches[1];
    assert_eq!(texts(events).len(), 2, "{events:?}");
    assert_eq!(
        checkpoint,
        &Some(Checkpoint::Cursor {
            name: CURSOR.into(),
            value: "901".into()
        })
    );
    assert!(
        api.calls_of("SetWebhook").is_empty(),
        "a polling bot has no webhook"
    );
}

#[tokio::test]
async fn updates_not_stored_come_again() {
    let api = FakeBotApi::start().await;
    let plugin = KIND.build(section(&api, "polling")).unwrap().unwrap();
    let inbox = FakeInbox::default();
    inbox.fail_next(1);
    let batch = json!([text(900, 1, "first"), text(901, 2, "second")]);
    // Telegram answers the same offset with the same updates.
    api.reply_to("GetUpdates", Reply::ok(batch.clone()));
    api.reply_to("GetUpdates", Reply::ok(batch));
    let (context, stop) = context(&inbox, "https://gateway.example");
    run_until(&plugin, context, stop, || offsets(&api).len() >= 3).await;

    assert_eq!(
        &offsets(&api)[..3],
        [0, 0, 902],
        "unconfirmed until stored, then confirmed"
    );
    let attempts = inbox.attempts();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0], attempts[1], "the same batch, again");
    assert_eq!(inbox.batches().len(), 1);
}

#[tokio::test]
async fn webhook_bots_are_identified_and_registered_at_start() {
    let api = FakeBotApi::start().await;
    let mut section = section(&api, "webhook");
    section["set_webhook_on_start"] = json!(true);
    let plugin = KIND.build(section).unwrap().unwrap();
    let inbox = FakeInbox::default();
    let (context, stop) = context(&inbox, "https://gateway.example/");
    run_until(&plugin, context, stop, || {
        !api.calls_of("SetWebhook").is_empty()
    })
    .await;
    assert_eq!(api.calls_of("GetMe").len(), 1);
    let registration = &api.calls_of("SetWebhook")[0];
    assert_eq!(
        registration.params["url"],
        "https://gateway.example/webhooks/telegram/support"
    );
    assert_eq!(registration.params["secret_token"], SECRET);
    assert!(api.calls_of("GetUpdates").is_empty(), "no poller");
    assert!(inbox.attempts().is_empty());
}

#[tokio::test]
async fn a_public_url_telegram_cannot_post_to_is_not_registered() {
    let api = FakeBotApi::start().await;
    let mut section = section(&api, "webhook");
    section["set_webhook_on_start"] = json!(true);
    let plugin = KIND.build(section).unwrap().unwrap();
    let inbox = FakeInbox::default();
    let (context, stop) = context(&inbox, "http://127.0.0.1:8080");
    let tasks: Vec<_> = plugin
        .start(context)
        .into_iter()
        .map(tokio::spawn)
        .collect();
    for task in tasks {
        // The set-up task ends by itself once done (the failure is logged).
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(!stop.is_cancelled());
    assert_eq!(api.calls_of("GetMe").len(), 1);
    assert!(api.calls_of("SetWebhook").is_empty());
}

#[tokio::test]
async fn set_webhook_registers_every_webhook_bot() {
    let api = FakeBotApi::start().await;
    let host = CommandHost {
        public_url: Some("https://gateway.example".into()),
    };
    let mut two = section(&api, "webhook");
    two["bots"] = json!([
        {"name": "sales", "token": "other-token", "webhook_secret": "s2"},
        {"name": "night", "token": "third-token", "mode": "polling"}
    ]);
    let printed = KIND.run_command(two, "set-webhook", &host).await.unwrap();
    assert_eq!(
        printed,
        "registered https://gateway.example/webhooks/telegram/sales\n\
         registered https://gateway.example/webhooks/telegram/support"
    );
    assert_eq!(api.calls_of("SetWebhook").len(), 2);

    let error = KIND
        .run_command(json!({}), "set-webhook", &host)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        "no Telegram bot is configured (TELEGRAM_BOT_TOKEN or telegram.token)"
    );
    let error = KIND
        .run_command(
            section(&api, "webhook"),
            "set-webhook",
            &CommandHost::default(),
        )
        .await
        .unwrap_err();
    assert!(
        error.starts_with("set server.public_url (SWITCHBOARD_PUBLIC_URL)"),
        "{error}"
    );
    let error = KIND
        .run_command(section(&api, "polling"), "set-webhook", &host)
        .await
        .unwrap_err();
    assert_eq!(error, "no bot is in webhook mode");
    let error = KIND
        .run_command(
            section(&api, "webhook"),
            "set-webhook",
            &CommandHost {
                public_url: Some("http://gateway.example".into()),
            },
        )
        .await
        .unwrap_err();
    assert!(
        error.starts_with("Telegram only posts webhooks to HTTPS URLs"),
        "{error}"
    );
    let error = KIND
        .run_command(section(&api, "webhook"), "delete-webhook", &host)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        "the telegram channel has no command \"delete-webhook\""
    );
}

#[tokio::test]
async fn a_refused_registration_names_the_bot() {
    let api = FakeBotApi::start().await;
    api.reply_to(
        "SetWebhook",
        Reply::error(
            400,
            "Bad Request: bad webhook: HTTPS url must be provided for webhook",
        ),
    );
    let host = CommandHost {
        public_url: Some("https://gateway.example".into()),
    };
    let error = KIND
        .run_command(section(&api, "webhook"), "set-webhook", &host)
        .await
        .unwrap_err();
    assert!(
        error.starts_with("cannot register the webhook of bot support: "),
        "{error}"
    );
    assert!(!error.contains(TOKEN), "{error}");
}

#[test]
fn replays_are_signed_with_the_bots_secret() {
    let body = br#"{"update_id":1,"message":{"message_id":5,"date":1569518342,"chat":{"id":1,"type":"private"},"text":"hi"}}"#;
    let replay = Replay {
        file: Path::new("webhooks/telegram/text.json"),
        body,
        new_ids: false,
        account: None,
        now: 1_800_000_000,
    };
    let section = json!({"token": "1:a", "name": "support", "webhook_secret": SECRET});
    let request = KIND.replay(section, &replay).unwrap();
    assert_eq!(request.path, "/webhooks/telegram/support");
    assert!(
        request
            .headers
            .contains(&(crate::SECRET_HEADER.to_owned(), SECRET.to_owned()))
    );
    let sent: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(sent["message"]["date"], 1_800_000_000);
    let error = KIND.replay(json!({}), &replay).unwrap_err();
    assert!(error.starts_with("set TELEGRAM_BOT_TOKEN"), "{error}");
}
