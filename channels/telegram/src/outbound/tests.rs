//! The real [`TelegramBots`] (throttle included) against a fake Bot API.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_channel::{Attachment, Choice, testing::read_download};
use teloxide::types::UpdateKind;

use super::*;
use crate::testing::{
    BOT, BOT_USER_ID, BOT_USERNAME, BotApiReply, Call, FakeBotApi, OTHER_BOT, OTHER_TOKEN, Reply,
    TOKEN, sent_message,
};

const USER: i64 = 218485655;
const GROUP: i64 = -1001234567890;

async fn bots(fake: &FakeBotApi) -> TelegramBots {
    TelegramBots::new(fake.settings()).unwrap()
}

fn message(to: i64, content: OutboundContent) -> OutboundMessage {
    OutboundMessage {
        message_id: "msg-1".into(),
        account: BOT.into(),
        to: to.to_string(),
        reply_to: None,
        content,
        service_window_open: true,
        thread: None,
    }
}

fn text(body: &str) -> OutboundContent {
    OutboundContent::Text { body: body.into() }
}

fn media(kind: MediaKind, source: &str, caption: Option<&str>) -> OutboundContent {
    OutboundContent::Media {
        attachment: Attachment {
            kind,
            source: source.into(),
            mime_type: None,
            filename: Some("report.pdf".into()),
            size: None,
            sha256: None,
            media_id: None,
        },
        caption: caption.map(str::to_owned),
    }
}

/// The path of a call. teloxide spells methods as its payload types (`SendMessage`); the Bot API
/// does not mind the case of method names.
fn path(token: &str, method: &str) -> String {
    format!("/bot{token}/{method}")
}

fn permanent_code(error: &SendError) -> &str {
    match error {
        SendError::Permanent { code, .. } => code,
        other => panic!("not permanent: {other:?}"),
    }
}

/// Sends `content` to `to` through a fresh fake and returns the one request it received.
async fn sent_request(to: i64, content: OutboundContent, reply_to: Option<&str>) -> Call {
    let fake = FakeBotApi::start().await;
    let mut message = message(to, content);
    message.reply_to = reply_to.map(str::to_owned);
    bots(&fake).await.send(&message).await.unwrap();
    fake.only_call()
}

#[tokio::test]
async fn sends_plain_text_to_the_chat_with_the_bots_token() {
    let fake = FakeBotApi::start().await;
    let sent = bots(&fake)
        .await
        .send(&message(USER, text("Hello there 👋")))
        .await
        .unwrap();
    assert_eq!(
        sent,
        Sent {
            provider_message_id: format!("{USER}:1001"),
            substituted: None
        }
    );
    let request = fake.only_call();
    assert_eq!(request.http_method, "POST");
    assert_eq!(request.path, path(TOKEN, "SendMessage"));
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    // No parse_mode (plain text), no preview options, no reply, no keyboard.
    assert_eq!(
        request.params,
        json!({"chat_id": USER, "text": "Hello there 👋"})
    );
}

#[tokio::test]
async fn the_account_picks_the_bot() {
    let fake = FakeBotApi::start().await;
    let mut other = message(GROUP, text("Hi group"));
    other.account = OTHER_BOT.into();
    let sent = bots(&fake).await.send(&other).await.unwrap();
    assert_eq!(sent.provider_message_id, format!("{GROUP}:1001"));
    assert_eq!(fake.only_call().path, path(OTHER_TOKEN, "SendMessage"));
}

#[tokio::test]
async fn replies_to_a_message_of_the_chat_even_if_it_is_gone() {
    let request = sent_request(USER, text("Yes"), Some(&format!("{USER}:6557"))).await;
    assert_eq!(
        request.params,
        json!({
            "chat_id": USER,
            "text": "Yes",
            "reply_parameters": {"message_id": 6557, "allow_sending_without_reply": true}
        })
    );
}

#[tokio::test]
async fn other_reply_references_are_ignored() {
    for reply_to in [
        "callback:4382bfdwdsb323b2d9".to_owned(),
        format!("{GROUP}:12"),
        format!("{USER}:"),
        format!("{USER}:0"),
        "6557".to_owned(),
    ] {
        let request = sent_request(USER, text("Yes"), Some(&reply_to)).await;
        assert_eq!(
            request.params,
            json!({"chat_id": USER, "text": "Yes"}),
            "{reply_to}"
        );
    }
}

#[tokio::test]
async fn choices_become_an_inline_keyboard_one_button_a_row() {
    let choices = OutboundContent::Choices {
        body: "How can we help?".into(),
        choices: vec![
            Choice {
                id: "billing".into(),
                title: "Billing question".into(),
            },
            Choice {
                id: "agent".into(),
                title: "Talk to a person".into(),
            },
        ],
    };
    let request = sent_request(USER, choices, Some(&format!("{USER}:9"))).await;
    assert_eq!(request.method, "SendMessage");
    assert_eq!(
        request.params,
        json!({
            "chat_id": USER,
            "text": "How can we help?",
            "reply_parameters": {"message_id": 9, "allow_sending_without_reply": true},
            "reply_markup": {"inline_keyboard": [
                [{"text": "Billing question", "callback_data": "billing"}],
                [{"text": "Talk to a person", "callback_data": "agent"}]
            ]}
        })
    );

    let no_choices = OutboundContent::Choices {
        body: "Nothing to pick".into(),
        choices: Vec::new(),
    };
    let request = sent_request(USER, no_choices, None).await;
    assert_eq!(
        request.params,
        json!({"chat_id": USER, "text": "Nothing to pick"})
    );
}

#[tokio::test]
async fn choice_ids_must_fit_in_callback_data() {
    let fake = FakeBotApi::start().await;
    let bots = bots(&fake).await;
    for (id, code) in [
        ("x".repeat(65), "choice_id_too_long"),
        // 22 × 3 bytes: short in characters, too long in bytes.
        ("€".repeat(22), "choice_id_too_long"),
        (String::new(), "invalid_choice_id"),
    ] {
        let content = OutboundContent::Choices {
            body: "Pick".into(),
            choices: vec![Choice {
                id,
                title: "A".into(),
            }],
        };
        let error = bots.send(&message(USER, content)).await.unwrap_err();
        assert_eq!(permanent_code(&error), code);
    }
    // 64 bytes is fine.
    let content = OutboundContent::Choices {
        body: "Pick".into(),
        choices: vec![Choice {
            id: "y".repeat(64),
            title: "A".into(),
        }],
    };
    bots.send(&message(GROUP, content)).await.unwrap();
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn each_kind_of_file_goes_by_url_to_its_method() {
    let fake = FakeBotApi::start().await;
    let bots = bots(&fake).await;
    let url = "https://files.example.com/media/f?sig=abc";
    let kinds = [
        (MediaKind::Image, "SendPhoto", "photo"),
        (MediaKind::Voice, "SendVoice", "voice"),
        (MediaKind::Audio, "SendAudio", "audio"),
        (MediaKind::Video, "SendVideo", "video"),
        (MediaKind::Document, "SendDocument", "document"),
        (MediaKind::Sticker, "SendSticker", "sticker"),
    ];
    // A chat each, so the per-chat limit does not space the sends out.
    for (n, (kind, _, _)) in kinds.iter().enumerate() {
        let sent = bots
            .send(&message(
                USER + n as i64,
                media(*kind, url, Some("Your invoice")),
            ))
            .await
            .unwrap();
        assert_eq!(
            sent.provider_message_id,
            format!("{}:{}", USER + n as i64, 1001 + n)
        );
    }
    let requests = fake.calls();
    assert_eq!(requests.len(), kinds.len());
    for (n, ((_, method, field), request)) in kinds.iter().zip(&requests).enumerate() {
        assert_eq!(request.path, path(TOKEN, method));
        // teloxide posts a form for every method that could upload a file.
        assert!(request.is_multipart(), "{request:?}");
        let mut expected = json!({"chat_id": USER + n as i64, *field: url});
        if *method != "SendSticker" {
            expected["caption"] = json!("Your invoice");
        }
        assert_eq!(request.params, expected, "{method}");
    }
}

#[tokio::test]
async fn files_carry_replies_and_skip_blank_captions() {
    let request = sent_request(
        USER,
        media(
            MediaKind::Image,
            "http://files.example.com/a.jpg",
            Some("  "),
        ),
        Some(&format!("{USER}:31")),
    )
    .await;
    assert_eq!(
        request.params,
        json!({
            "chat_id": USER,
            "photo": "http://files.example.com/a.jpg",
            "reply_parameters": {"message_id": 31, "allow_sending_without_reply": true}
        })
    );
}

#[tokio::test]
async fn a_stickers_caption_is_dropped_however_long() {
    let request = sent_request(
        USER,
        media(
            MediaKind::Sticker,
            "https://files.example.com/s.webp",
            Some(&"é".repeat(2000)),
        ),
        None,
    )
    .await;
    assert_eq!(
        request.params,
        json!({"chat_id": USER, "sticker": "https://files.example.com/s.webp"})
    );
}

#[tokio::test]
async fn refused_before_any_request() {
    let fake = FakeBotApi::start().await;
    let bots = bots(&fake).await;
    let cases = [
        (
            message(
                USER,
                OutboundContent::Template {
                    name: "order_update".into(),
                    language: "en".into(),
                    components: Value::Null,
                },
            ),
            "unsupported",
        ),
        (
            message(USER, media(MediaKind::Image, "file:///etc/passwd", None)),
            "invalid_media_url",
        ),
        (
            message(
                USER,
                media(MediaKind::Image, "ftp://files.example.com/a", None),
            ),
            "invalid_media_url",
        ),
        (
            message(USER, media(MediaKind::Document, "AgACAgIAAxkBAAIBZ2", None)),
            "invalid_media_url",
        ),
        (
            message(
                USER,
                media(
                    MediaKind::Image,
                    "https://files.example.com/a.jpg",
                    Some(&"é".repeat(1025)),
                ),
            ),
            "caption_too_long",
        ),
        (
            OutboundMessage {
                account: "nobody".into(),
                ..message(USER, text("Hi"))
            },
            "unknown_bot",
        ),
        (
            OutboundMessage {
                to: "@ada".into(),
                ..message(USER, text("Hi"))
            },
            "invalid_chat_id",
        ),
        (
            OutboundMessage {
                to: String::new(),
                ..message(USER, text("Hi"))
            },
            "invalid_chat_id",
        ),
    ];
    for (message, code) in cases {
        let error = bots.send(&message).await.unwrap_err();
        assert_eq!(permanent_code(&error), code, "{message:?}");
    }
    let template = bots
        .send(&message(
            USER,
            OutboundContent::Template {
                name: "x".into(),
                language: "en".into(),
                components: Value::Null,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        template,
        SendError::permanent("unsupported", "Telegram has no message templates")
    );
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn flood_control_is_transient_and_not_retried() {
    let fake = FakeBotApi::start().await;
    fake.reply(Reply::flood(3));
    let error = bots(&fake)
        .await
        .send(&message(USER, text("Hi")))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        SendError::Transient {
            retry_after: Some(Duration::from_secs(3)),
            reason: "Telegram's flood control asks to wait 3s".into()
        }
    );
    // teloxide's throttle would retry on its own after the wait; that is the gateway's job.
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn a_server_error_is_transient() {
    let fake = FakeBotApi::start().await;
    fake.reply(Reply::error(500, "Internal Server Error"));
    // teloxide waits 10 s after any 5xx before it reads the answer.
    let error = bots(&fake)
        .await
        .send(&message(USER, text("Hi")))
        .await
        .unwrap_err();
    assert_eq!(error, SendError::transient("Internal Server Error"));
}

#[tokio::test]
async fn a_proxys_error_page_is_transient() {
    let fake = FakeBotApi::start().await;
    fake.reply(Reply::raw(
        502,
        "text/html",
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
    ));
    let error = bots(&fake)
        .await
        .send(&message(USER, text("Hi")))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SendError::Transient { retry_after: None, reason } if reason.contains("502 Bad Gateway")),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unreachable_api_is_transient_and_the_token_stays_secret() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = vec![
        BotSettings {
            name: BOT.into(),
            token: TOKEN.into(),
            api_url: format!("http://127.0.0.1:{port}"),
        },
        BotSettings {
            name: OTHER_BOT.into(),
            token: OTHER_TOKEN.into(),
            api_url: format!("http://127.0.0.1:{port}"),
        },
    ];
    let bots = TelegramBots::new(settings).unwrap();
    for account in [BOT, OTHER_BOT] {
        let error = bots
            .send(&OutboundMessage {
                account: account.into(),
                ..message(USER, text("Hi"))
            })
            .await
            .unwrap_err();
        let SendError::Transient {
            retry_after: None,
            reason,
        } = &error
        else {
            panic!("{error:?}");
        };
        assert!(reason.contains("could not be reached"), "{reason}");
        assert!(
            !reason.contains(TOKEN) && !reason.contains(OTHER_TOKEN),
            "{reason}"
        );
    }
    let error = bots.bot(BOT).unwrap().get_me().await.unwrap_err();
    assert!(matches!(error, SendError::Transient { .. }));
}

#[tokio::test]
async fn blocked_and_gone_users_are_unreachable() {
    let fake = FakeBotApi::start().await;
    fake.reply(Reply::error(403, "Forbidden: bot was blocked by the user"));
    fake.reply(Reply::error(
        403,
        "Forbidden: bot can't initiate conversation with a user",
    ));
    fake.reply(Reply::error(400, "Bad Request: chat not found"));
    let bots = bots(&fake).await;
    for (chat, reason) in [
        (USER, "Forbidden: bot was blocked by the user"),
        (
            USER + 1,
            "Forbidden: bot can't initiate conversation with a user",
        ),
        (USER + 2, "Bad Request: chat not found"),
    ] {
        let error = bots.send(&message(chat, text("Hi"))).await.unwrap_err();
        assert_eq!(
            error,
            SendError::Unreachable {
                reason: reason.into()
            }
        );
    }
}

#[tokio::test]
async fn group_troubles_are_permanent() {
    let fake = FakeBotApi::start().await;
    fake.reply(Reply::error(400, "Bad Request: chat not found"));
    fake.reply(Reply::json(
        400,
        json!({
            "ok": false,
            "error_code": 400,
            "description": "Bad Request: group chat was upgraded to a supergroup chat",
            "parameters": {"migrate_to_chat_id": GROUP}
        }),
    ));
    fake.reply(Reply::error(400, "Bad Request: message text is empty"));
    let bots = bots(&fake).await;
    let error = bots.send(&message(-4001, text("Hi"))).await.unwrap_err();
    assert_eq!(permanent_code(&error), "chat_not_found");
    let error = bots.send(&message(-4002, text("Hi"))).await.unwrap_err();
    assert_eq!(
        error,
        SendError::permanent(
            "migrated",
            format!("the group was upgraded to a supergroup; its new chat id is {GROUP}")
        )
    );
    let error = bots.send(&message(-4003, text(""))).await.unwrap_err();
    assert_eq!(
        error,
        SendError::permanent(
            "message_text_is_empty",
            "Bad Request: message text is empty"
        )
    );
}

#[tokio::test]
async fn a_refused_token_is_permanent() {
    let fake = FakeBotApi::start().await;
    fake.reply(Reply::error(401, "Unauthorized"));
    fake.reply(Reply::error(404, "Not Found"));
    let bots = bots(&fake).await;
    let error = bots.send(&message(USER, text("Hi"))).await.unwrap_err();
    assert_eq!(permanent_code(&error), "invalid_token");
    let error = bots.bot(BOT).unwrap().get_me().await.unwrap_err();
    assert_eq!(permanent_code(&error), "invalid_token");
}

#[tokio::test]
async fn a_delivered_message_whose_answer_teloxide_cannot_read_is_sent() {
    let fake = FakeBotApi::start().await;
    // No `date`: teloxide cannot read it, but Telegram did send the message.
    fake.reply(Reply::ok(
        json!({"message_id": 77, "chat": {"id": USER, "type": "private"}, "text": "Hi"}),
    ));
    let sent = bots(&fake)
        .await
        .send(&message(USER, text("Hi")))
        .await
        .unwrap();
    assert_eq!(sent.provider_message_id, format!("{USER}:77"));
}

#[test]
fn the_fakes_messages_are_what_teloxide_reads() {
    // Otherwise the send tests would pass through the fallback above without noticing.
    let params = json!({"text": "Hi", "caption": "c"});
    for method in [
        "SendMessage",
        "SendPhoto",
        "SendVoice",
        "SendAudio",
        "SendVideo",
        "SendSticker",
        "SendDocument",
    ] {
        for chat in [USER, GROUP] {
            let json = sent_message(method, 5, chat, &params);
            let message: Message = serde_json::from_value(json)
                .unwrap_or_else(|err| panic!("{method} in {chat}: {err}"));
            assert_eq!((message.chat.id.0, message.id.0), (chat, 5));
        }
    }
}

#[tokio::test]
async fn sends_to_one_chat_are_spaced_by_the_throttle() {
    let fake = FakeBotApi::start().await;
    let bots = bots(&fake).await;
    let (first, second) = (message(USER, text("one")), message(USER, text("two")));
    let (a, b) = tokio::join!(bots.send(&first), bots.send(&second));
    a.unwrap();
    b.unwrap();
    let requests = fake.calls();
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(gap >= Duration::from_millis(900), "{gap:?}");
    // In order.
    assert_eq!(requests[0].params["text"], "one");
    assert_eq!(requests[1].params["text"], "two");

    // Other chats do not wait for each other.
    let (c, d) = (message(USER + 1, text("c")), message(USER + 2, text("d")));
    let (c, d) = tokio::join!(bots.send(&c), bots.send(&d));
    c.unwrap();
    d.unwrap();
    let requests = fake.calls();
    let gap = requests[3].at.duration_since(requests[2].at);
    assert!(gap < Duration::from_millis(900), "{gap:?}");
}

#[tokio::test]
async fn typing_is_a_chat_action() {
    let fake = FakeBotApi::start().await;
    let bots = bots(&fake).await;
    let target = TypingTarget {
        account: BOT.into(),
        to: USER.to_string(),
        message_provider_id: Some(format!("{USER}:6557")),
    };
    bots.typing(&target).await.unwrap();
    let request = fake.only_call();
    assert_eq!(request.path, path(TOKEN, "SendChatAction"));
    assert_eq!(request.params, json!({"chat_id": USER, "action": "typing"}));

    let error = bots
        .typing(&TypingTarget {
            account: "nobody".into(),
            ..target
        })
        .await
        .unwrap_err();
    assert_eq!(permanent_code(&error), "unknown_bot");
}

#[tokio::test]
async fn answers_button_presses() {
    let fake = FakeBotApi::start().await;
    let bots = bots(&fake).await;
    bots.bot(BOT)
        .unwrap()
        .answer_callback("4382bfdwdsb323b2d9")
        .await
        .unwrap();
    let request = fake.only_call();
    assert_eq!(request.path, path(TOKEN, "AnswerCallbackQuery"));
    assert_eq!(
        request.params,
        json!({"callback_query_id": "4382bfdwdsb323b2d9"})
    );

    fake.reply(Reply::error(
        400,
        "Bad Request: query is too old and response timeout expired or query id is invalid",
    ));
    let error = bots
        .bot(BOT)
        .unwrap()
        .answer_callback("old")
        .await
        .unwrap_err();
    assert_eq!(permanent_code(&error), "invalid_query_id");
}

#[tokio::test]
async fn get_me_tells_who_the_bot_is() {
    let fake = FakeBotApi::start().await;
    let identity = bots(&fake).await.bot(BOT).unwrap().get_me().await.unwrap();
    assert_eq!(
        identity,
        BotIdentity {
            name: BOT.into(),
            username: Some(BOT_USERNAME.into()),
            user_id: Some(BOT_USER_ID),
        }
    );
    assert_eq!(fake.only_call().path, path(TOKEN, "GetMe"));
}

#[tokio::test]
async fn get_updates_long_polls_for_the_handled_kinds() {
    let fake = FakeBotApi::start().await;
    let user = json!({"id": USER, "is_bot": false, "first_name": "Waffle", "username": "WaffleLapkin", "language_code": "en"});
    let chat =
        json!({"id": USER, "first_name": "Waffle", "username": "WaffleLapkin", "type": "private"});
    fake.reply(Reply::ok(json!([
        {"update_id": 892252934, "message": {
            "message_id": 6557, "from": user, "chat": chat, "date": 1569518342, "text": "hello there"
        }},
        // A kind of update teloxide does not know: it must not cost the batch.
        {"update_id": 892252935, "future_kind_of_update": {"anything": [1, 2, 3]}},
        {"update_id": 892252936, "callback_query": {
            "id": "4382bfdwdsb323b2d9", "from": user, "chat_instance": "-5316839460386069497",
            "data": "billing",
            "message": {"message_id": 6558, "from": {"id": BOT_USER_ID, "is_bot": true, "first_name": "Switchboard", "username": BOT_USERNAME},
                        "chat": chat, "date": 1569518350, "text": "How can we help?"}
        }}
    ])));
    let bot = bots(&fake).await.bot(BOT).unwrap().clone();
    let updates = bot
        .get_updates(892252934, Duration::from_secs(30), 100)
        .await
        .unwrap();
    let ids: Vec<u32> = updates.iter().map(|update| update.id.0).collect();
    assert_eq!(ids, [892252934, 892252935, 892252936]);
    assert!(matches!(updates[0].kind, UpdateKind::Message(_)));
    assert!(
        matches!(&updates[1].kind, UpdateKind::Error(value) if value["future_kind_of_update"]["anything"] == json!([1, 2, 3]))
    );
    assert!(matches!(updates[2].kind, UpdateKind::CallbackQuery(_)));

    let request = fake.only_call();
    assert_eq!(request.path, path(TOKEN, "GetUpdates"));
    assert_eq!(
        request.params,
        json!({
            "offset": 892252934,
            "limit": 100,
            "timeout": 30,
            "allowed_updates": ["message", "edited_message", "callback_query", "my_chat_member"]
        })
    );

    // Out-of-range values are brought within what Telegram (and the HTTP timeout) allow. (No
    // update is waiting: answered at once rather than after the fake's long poll.)
    fake.reply(Reply::ok(json!([])));
    let none = bot
        .get_updates(-1, Duration::from_secs(600), 0)
        .await
        .unwrap();
    assert!(none.is_empty());
    let params = &fake.calls()[1].params;
    assert_eq!(
        (&params["offset"], &params["timeout"], &params["limit"]),
        (&json!(-1), &json!(50), &json!(1))
    );
    bot.get_updates(0, Duration::from_millis(500), 255)
        .await
        .unwrap();
    let params = &fake.calls()[2].params;
    assert_eq!(
        (&params["timeout"], &params["limit"]),
        (&json!(0), &json!(100))
    );
}

#[tokio::test]
async fn polling_while_a_webhook_is_set_is_permanent() {
    let fake = FakeBotApi::start().await;
    fake.reply(Reply::error(
        409,
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
    ));
    fake.reply(Reply::error(
        409,
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
    ));
    let bots = bots(&fake).await;
    let bot = bots.bot(BOT).unwrap();
    let error = bot
        .get_updates(1, Duration::from_secs(1), 10)
        .await
        .unwrap_err();
    assert_eq!(permanent_code(&error), "cant_get_updates");
    let error = bot
        .get_updates(1, Duration::from_secs(1), 10)
        .await
        .unwrap_err();
    assert!(matches!(error, SendError::Transient { .. }), "{error:?}");
}

#[tokio::test]
async fn set_webhook_registers_url_secret_and_kinds() {
    let fake = FakeBotApi::start().await;
    let bots = bots(&fake).await;
    let bot = bots.bot(OTHER_BOT).unwrap();
    bot.set_webhook(
        "https://gateway.example.com/webhooks/telegram/sales",
        "s3cr3t_-X",
    )
    .await
    .unwrap();
    let request = fake.only_call();
    assert_eq!(request.path, path(OTHER_TOKEN, "SetWebhook"));
    // A form, like the file-sending methods: setWebhook can upload a certificate.
    assert!(request.is_multipart(), "{request:?}");
    assert_eq!(
        request.params,
        json!({
            "url": "https://gateway.example.com/webhooks/telegram/sales",
            "secret_token": "s3cr3t_-X",
            "allowed_updates": ["message", "edited_message", "callback_query", "my_chat_member"],
            "drop_pending_updates": false
        })
    );

    for (url, secret, code) in [
        ("gateway.example.com/hook", "secret", "invalid_webhook_url"),
        (
            "https://gateway.example.com/hook",
            "",
            "invalid_webhook_secret",
        ),
        (
            "https://gateway.example.com/hook",
            "has space",
            "invalid_webhook_secret",
        ),
    ] {
        let error = bot.set_webhook(url, secret).await.unwrap_err();
        assert_eq!(permanent_code(&error), code);
    }
    assert_eq!(fake.calls().len(), 1);

    fake.reply(Reply::error(
        400,
        "Bad Request: bad webhook: HTTPS url must be provided for webhook",
    ));
    let error = bot
        .set_webhook("http://gateway.example.com/hook", "secret")
        .await
        .unwrap_err();
    assert_eq!(permanent_code(&error), "webhook_require_https");
}

#[tokio::test]
async fn delete_webhook_keeps_pending_updates() {
    let fake = FakeBotApi::start().await;
    bots(&fake)
        .await
        .bot(BOT)
        .unwrap()
        .delete_webhook()
        .await
        .unwrap();
    let request = fake.only_call();
    assert_eq!(request.path, path(TOKEN, "DeleteWebhook"));
    assert_eq!(request.params, json!({"drop_pending_updates": false}));
}

#[tokio::test]
async fn fetches_a_file_by_id_then_path() {
    let fake = FakeBotApi::start().await;
    let file: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fake.reply(Reply::ok(json!({
        "file_id": "AwACAgIAAxkBAAIBZ2",
        "file_unique_id": "AgADZ2",
        "file_size": 300_000,
        "file_path": "voice/file_12.oga"
    })));
    fake.reply(Reply::raw(200, "application/octet-stream", file.clone()));
    let download = bots(&fake)
        .await
        .fetch(BOT, "AwACAgIAAxkBAAIBZ2")
        .await
        .unwrap();
    assert_eq!(download.size, Some(300_000));
    assert_eq!(download.mime_type, None);
    assert_eq!(download.sha256, None);
    assert_eq!(download.filename, None);
    assert_eq!(read_download(download).await.unwrap(), file);

    let requests = fake.calls();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].path, path(TOKEN, "GetFile"));
    assert_eq!(requests[0].params, json!({"file_id": "AwACAgIAAxkBAAIBZ2"}));
    assert_eq!(requests[1].http_method, "GET");
    // teloxide appends the file path as one URL segment, so its `/` arrives encoded; the Bot
    // API's file server accepts that.
    assert_eq!(
        requests[1].path,
        format!("/file/bot{TOKEN}/voice%2Ffile_12.oga")
    );
}

#[tokio::test]
async fn files_added_to_the_fake_are_served_and_others_are_not() {
    let fake = FakeBotApi::start().await;
    fake.add_file("AgACAgIAAxkBAAIEsm", b"a photo");
    let bots = bots(&fake).await;
    let download = bots.fetch(BOT, "AgACAgIAAxkBAAIEsm").await.unwrap();
    assert_eq!(download.size, Some(7));
    assert_eq!(read_download(download).await.unwrap(), b"a photo");
    let error = bots.fetch(BOT, "unknown").await.unwrap_err();
    assert!(matches!(error, SendError::Permanent { .. }), "{error:?}");
    assert_eq!(fake.calls_of("getFile").len(), 2);
}

#[tokio::test]
async fn a_file_without_size_and_an_empty_file() {
    let fake = FakeBotApi::start().await;
    fake.reply(Reply::ok(json!({
        "file_id": "x", "file_unique_id": "y", "file_path": "documents/file_1.txt"
    })));
    fake.reply(Reply::raw(200, "text/plain", ""));
    let download = bots(&fake).await.fetch(OTHER_BOT, "x").await.unwrap();
    assert_eq!(download.size, None);
    assert!(read_download(download).await.unwrap().is_empty());
    assert_eq!(
        fake.calls()[1].path,
        format!("/file/bot{OTHER_TOKEN}/documents%2Ffile_1.txt")
    );
}

#[tokio::test]
async fn unknown_files_are_permanent() {
    let fake = FakeBotApi::start().await;
    let bots = bots(&fake).await;
    fake.reply(Reply::error(400, "Bad Request: invalid file_id"));
    let error = bots.fetch(BOT, "nope").await.unwrap_err();
    assert_eq!(
        error,
        SendError::permanent("media_not_found", "Bad Request: invalid file_id")
    );
    assert_eq!(fake.calls().len(), 1, "no download without a path");

    // Known to getFile, gone from the file server.
    fake.reply(Reply::ok(json!({
        "file_id": "a", "file_unique_id": "b", "file_size": 3, "file_path": "photos/file_3.jpg"
    })));
    fake.reply(Reply::error(404, "Not Found"));
    let error = bots.fetch(BOT, "a").await.unwrap_err();
    assert_eq!(permanent_code(&error), "media_not_found");
    let SendError::Permanent { reason, .. } = &error else {
        unreachable!()
    };
    assert!(!reason.contains(TOKEN), "{reason}");

    let error = bots.fetch(BOT, " ").await.unwrap_err();
    assert_eq!(permanent_code(&error), "media_not_found");
    let error = bots.fetch("nobody", "a").await.unwrap_err();
    assert_eq!(permanent_code(&error), "unknown_bot");
    assert_eq!(fake.calls().len(), 3);

    // Too big for bots to download.
    fake.reply(Reply::error(400, "Bad Request: file is too big"));
    let error = bots.fetch(BOT, "big").await.unwrap_err();
    assert_eq!(permanent_code(&error), "file_is_too_big");
}

#[tokio::test]
async fn download_trouble_on_the_file_server_is_transient() {
    let fake = FakeBotApi::start().await;
    fake.reply(Reply::ok(json!({
        "file_id": "a", "file_unique_id": "b", "file_size": 3, "file_path": "photos/file_3.jpg"
    })));
    fake.reply(Reply::raw(503, "text/html", "<h1>busy</h1>"));
    let error = bots(&fake).await.fetch(BOT, "a").await.unwrap_err();
    assert!(matches!(error, SendError::Transient { .. }), "{error:?}");
}

#[tokio::test]
async fn sender_limits() {
    let fake = FakeBotApi::start().await;
    let bots = bots(&fake).await;
    assert_eq!(bots.text_limit(), Some((4096, Measure::Utf16)));
    assert_eq!(bots.service_window(), None);
    assert_eq!(bots.names().collect::<Vec<_>>(), [OTHER_BOT, BOT]);
    assert_eq!(bots.bot(BOT).unwrap().name(), BOT);
    assert!(bots.bot("nobody").is_none());
    let debug = format!("{bots:?}");
    assert!(debug.contains(BOT) && !debug.contains(TOKEN), "{debug}");
}

#[tokio::test]
async fn unusable_settings_are_refused() {
    let good = || BotSettings {
        name: BOT.into(),
        token: TOKEN.into(),
        api_url: "https://api.telegram.org".into(),
    };
    for (bad, code) in [
        (
            BotSettings {
                api_url: "api.telegram.org".into(),
                ..good()
            },
            "invalid_api_url",
        ),
        (
            BotSettings {
                api_url: "mailto:bot@example.com".into(),
                ..good()
            },
            "invalid_api_url",
        ),
        (
            BotSettings {
                api_url: "ftp://api.telegram.org".into(),
                ..good()
            },
            "invalid_api_url",
        ),
        (
            BotSettings {
                token: " ".into(),
                ..good()
            },
            "missing_token",
        ),
        (
            BotSettings {
                name: String::new(),
                ..good()
            },
            "invalid_bot_name",
        ),
    ] {
        let error = TelegramBots::new(vec![bad]).unwrap_err();
        assert_eq!(permanent_code(&error), code);
    }
    let error = TelegramBots::new(vec![good(), good()]).unwrap_err();
    assert_eq!(permanent_code(&error), "invalid_bot_name");
    let bots = TelegramBots::new(vec![BotSettings {
        api_url: "https://example.com/telegram/".into(),
        ..good()
    }])
    .unwrap();
    assert_eq!(
        bots.bot(BOT).unwrap().downloader.api_url().as_str(),
        "https://example.com/telegram"
    );
    assert!(
        TelegramBots::new(Vec::new())
            .unwrap()
            .names()
            .next()
            .is_none()
    );
}

#[test]
fn outside_a_runtime_is_refused_rather_than_panicking() {
    let error = TelegramBots::new(Vec::new()).unwrap_err();
    assert_eq!(permanent_code(&error), "no_runtime");
}
