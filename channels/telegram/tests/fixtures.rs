//! Every recorded update in `webhooks/telegram/` parses into the expected normalized result.
//!
//! The fixtures are shared with the gateway's tests and with `switchboard replay`, so a change to
//! one of them shows up here first. Each fixture has a test below and an entry in [`FIXTURES`];
//! [`every_fixture_has_a_test`] fails when a file is added without one.

use std::{collections::BTreeSet, fs, path::Path};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use switchboard_channel::{
    Attachment, ContactRef, Content, ConversationRef, InboundEdit, InboundEvent, InboundMessage,
    Intent, InteractiveReply, Location, MediaKind, Reachability, SharedContact,
};
use switchboard_telegram::{BotIdentity, ParsedUpdate, parse};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../webhooks/telegram");

/// Every fixture file and the test that checks it.
const FIXTURES: &[(&str, fn())] = &[
    ("start.json", start),
    ("text.json", text),
    ("photo.json", photo),
    ("voice.json", voice),
    ("audio.json", audio),
    ("video.json", video),
    ("document.json", document),
    ("sticker.json", sticker),
    ("location.json", location),
    ("contact.json", contact),
    ("reply.json", reply),
    ("edited.json", edited),
    ("callback_query.json", callback_query),
    ("human.json", human),
    ("group_mention.json", group_mention),
    ("group_other.json", group_other),
    ("group_command.json", group_command),
    ("my_chat_member_blocked.json", my_chat_member_blocked),
    ("my_chat_member_unblocked.json", my_chat_member_unblocked),
    ("poll.json", poll),
    ("not_telegram.json", not_telegram),
];

/// The gateway's name for the bot: the account of every message.
const ACCOUNT: &str = "support";
/// The user, and their private chat with the bot (same id).
const USER: &str = "218485655";
const USER_NAME: &str = "Waffle";
/// The support supergroup.
const GROUP: &str = "-1001234567890";
const GROUP_NAME: &str = "Support Group";
/// Who writes in the group fixtures that are addressed to the bot.
const GROUP_MEMBER: u64 = 391_845_227;

fn bot() -> BotIdentity {
    BotIdentity {
        name: ACCOUNT.into(),
        username: Some("switchboard_test_bot".into()),
        user_id: Some(7_000_000_001),
    }
}

fn read(name: &str) -> Vec<u8> {
    let path = Path::new(DIR).join(name);
    fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn parsed(name: &str) -> ParsedUpdate {
    parse(&read(name), &bot()).unwrap_or_else(|err| panic!("{name}: {err}"))
}

/// The only event of a fixture, which must be a message.
fn message(name: &str) -> InboundMessage {
    let parsed = parsed(name);
    assert_eq!(parsed.ignored, None, "{name}");
    match parsed.events.as_slice() {
        [InboundEvent::Message(message)] => message.clone(),
        other => panic!("{name}: expected one message, got {other:?}"),
    }
}

/// The only event of a fixture, which must be a reachability change.
fn reachability(name: &str) -> Reachability {
    let parsed = parsed(name);
    assert_eq!(parsed.ignored, None, "{name}");
    match parsed.events.as_slice() {
        [InboundEvent::Reachability(reachability)] => reachability.clone(),
        other => panic!("{name}: expected one reachability change, got {other:?}"),
    }
}

fn at(seconds: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(seconds, 0)
}

fn user_contact() -> ContactRef {
    ContactRef {
        external_id: USER.into(),
        display_name: Some(USER_NAME.into()),
        username: Some("WaffleLapkin".into()),
    }
}

fn group_contact() -> ContactRef {
    ContactRef {
        external_id: GROUP.into(),
        display_name: Some(GROUP_NAME.into()),
        username: None,
    }
}

/// Checks what every message from the user in their private chat has in common.
fn assert_from_user(message: &InboundMessage, message_id: i32, sent_at: i64, telegram_type: &str) {
    assert_eq!(
        message.provider_message_id,
        Some(format!("{USER}:{message_id}"))
    );
    assert_eq!(message.account, ACCOUNT);
    assert_eq!(message.from, user_contact());
    assert_eq!(message.conversation, ConversationRef::Current);
    assert_eq!(message.sent_at, at(sent_at));
    assert_eq!(message.metadata["telegram_type"], telegram_type);
    assert_eq!(message.metadata["chat_type"], "private");
    assert_eq!(
        message.metadata["from"],
        json!({"id": 218_485_655, "username": "WaffleLapkin", "first_name": "Waffle", "language_code": "en"})
    );
    assert!(!message.metadata.contains_key("forwarded"));
}

/// The single attachment and the caption of a media message.
fn single_attachment(message: &InboundMessage) -> (Attachment, Option<String>) {
    match &message.content {
        Content::Media {
            attachments,
            caption,
        } => match attachments.as_slice() {
            [attachment] => (attachment.clone(), caption.clone()),
            other => panic!("expected one attachment, got {other:?}"),
        },
        other => panic!("expected media, got {other:?}"),
    }
}

fn telegram_file(
    kind: MediaKind,
    file_id: &str,
    mime_type: &str,
    filename: Option<&str>,
    size: u64,
) -> Attachment {
    Attachment {
        kind,
        source: file_id.into(),
        mime_type: Some(mime_type.into()),
        filename: filename.map(Into::into),
        size: Some(size),
        // Telegram gives no digest, and the gateway downloads files later.
        sha256: None,
        media_id: None,
    }
}

#[test]
fn every_fixture_has_a_test() {
    let on_disk: BTreeSet<String> = fs::read_dir(DIR)
        .unwrap_or_else(|err| panic!("{DIR}: {err}"))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    let checked: BTreeSet<String> = FIXTURES.iter().map(|(name, _)| name.to_string()).collect();
    let untested: Vec<_> = on_disk.difference(&checked).collect();
    assert!(
        untested.is_empty(),
        "fixtures without a test in tests/fixtures.rs: {untested:?}"
    );
    let missing: Vec<_> = checked.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "tested fixtures not on disk: {missing:?}"
    );
    // Run them all from here too, so this test alone proves every file is checked.
    for (_, check) in FIXTURES {
        check();
    }
}

/// The gateway drops repeated update ids, so fixtures replayed one after another must not share
/// one; listed in [`FIXTURES`] order, they increase as Telegram's do.
#[test]
fn update_ids_increase() {
    let ids: Vec<u32> = FIXTURES
        .iter()
        .filter(|(name, _)| *name != "not_telegram.json")
        .map(|(name, _)| parsed(name).update_id)
        .collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "update ids out of order: {ids:?}"
    );
}

/// Telegram sends dates as Unix seconds and ids as numbers; a fixture "tidied" to strings would
/// stop exercising that path.
#[test]
fn fixtures_keep_telegrams_wire_shape() {
    let text: Value = serde_json::from_slice(&read("text.json")).unwrap();
    assert!(text["update_id"].is_u64());
    assert!(text["message"]["date"].is_i64());
    assert!(text["message"]["chat"]["id"].is_i64());
    let group: Value = serde_json::from_slice(&read("group_mention.json")).unwrap();
    assert_eq!(
        group["message"]["chat"]["id"],
        json!(-1_001_234_567_890_i64)
    );
}

#[test]
fn start() {
    let parsed = parsed("start.json");
    assert_eq!(parsed.update_id, 573_920_100);
    assert_eq!(parsed.callback_query_id, None);
    let message = message("start.json");
    assert_from_user(&message, 1198, 1_739_523_540, "text");
    assert_eq!(message.intent, Some(Intent::Start));
    // The command stays readable in the transcript.
    assert_eq!(
        message.content,
        Content::Text {
            body: "/start".into()
        }
    );
    assert_eq!(message.metadata["command"], "start");
    assert!(!message.metadata.contains_key("command_args"));
}

#[test]
fn text() {
    assert_eq!(parsed("text.json").update_id, 573_920_101);
    let message = message("text.json");
    assert_from_user(&message, 1200, 1_739_523_600, "text");
    assert_eq!(
        message.content,
        Content::Text {
            body: "Hi there, what are your opening hours?".into()
        }
    );
    assert_eq!(message.intent, None);
    assert_eq!(message.reply_to, None);
    // Nothing beyond the type, the chat type and the author for a plain text.
    assert_eq!(message.metadata.len(), 3, "{:?}", message.metadata);
}

#[test]
fn photo() {
    let message = message("photo.json");
    assert_from_user(&message, 1202, 1_739_523_720, "photo");
    let (attachment, caption) = single_attachment(&message);
    // The largest of the three sizes.
    assert_eq!(
        attachment,
        telegram_file(
            MediaKind::Image,
            "AgACAgIAAxkBAAIEsmev3xYAAe4tAAE0r5Xk1n0gAAGQ2QACn-sxG_3SeUnhGk2a9q1VbAEAAwIAA3kAAzYE",
            "image/jpeg",
            None,
            142_350,
        )
    );
    assert_eq!(caption.as_deref(), Some("Is this the right part?"));
}

#[test]
fn voice() {
    let message = message("voice.json");
    assert_from_user(&message, 1203, 1_739_523_780, "voice");
    let (attachment, caption) = single_attachment(&message);
    assert_eq!(
        attachment,
        telegram_file(
            MediaKind::Voice,
            "AwACAgIAAxkBAAIEs2ev3-sAAc9zUhV1dJ0Yk4mNw2fLAAK5ZQAC_dJ5SVGAk9oQ4eHaNgQ",
            "audio/ogg",
            None,
            15_872,
        )
    );
    assert_eq!(caption, None);
}

#[test]
fn audio() {
    let message = message("audio.json");
    assert_from_user(&message, 1204, 1_739_523_840, "audio");
    let (attachment, caption) = single_attachment(&message);
    assert_eq!(
        attachment,
        telegram_file(
            MediaKind::Audio,
            "CQACAgIAAxkBAAIEtGev4CdYk3J1c2xQ8vJr0m2L7aXbAAK6ZQAC_dJ5SQ1f3x0bXN5jNgQ",
            "audio/mpeg",
            Some("rattle-recording.mp3"),
            2_991_045,
        )
    );
    assert_eq!(caption, None);
}

#[test]
fn video() {
    let message = message("video.json");
    assert_from_user(&message, 1205, 1_739_523_900, "video");
    let (attachment, caption) = single_attachment(&message);
    assert_eq!(
        attachment,
        telegram_file(
            MediaKind::Video,
            "BAACAgIAAxkBAAIEtWev4F3PBfaAAAFpltld2xau70tCQAACu2UAAv3SeUlKlNKE4JkxtDYE",
            "video/mp4",
            Some("noise.mp4"),
            4_821_734,
        )
    );
    assert_eq!(caption.as_deref(), Some("Here's the noise it makes"));
}

#[test]
fn document() {
    let message = message("document.json");
    assert_from_user(&message, 1206, 1_739_523_960, "document");
    let (attachment, caption) = single_attachment(&message);
    assert_eq!(
        attachment,
        telegram_file(
            MediaKind::Document,
            "BQACAgIAAxkBAAIEtmev4JkxYe2ZEdbatGPKFm9Mb9nBAAK8ZQAC_dJ5ScLcm84AAWYaNgQ",
            "application/pdf",
            Some("invoice-2025-0204.pdf"),
            84_213,
        )
    );
    assert_eq!(caption.as_deref(), Some("My invoice from last week"));
}

#[test]
fn sticker() {
    let message = message("sticker.json");
    assert_from_user(&message, 1207, 1_739_524_020, "sticker");
    let (attachment, caption) = single_attachment(&message);
    assert_eq!(
        attachment,
        telegram_file(
            MediaKind::Sticker,
            "CAACAgIAAxkBAAIEt2ev4NJNX9mJeHd5tK_GMTekNm-bAAIxAAPANk8TAbfJLwABdF2-NgQ",
            "image/webp",
            None,
            23_418,
        )
    );
    assert_eq!(caption, None);
    assert_eq!(
        message.metadata["sticker"],
        json!({"emoji": "\u{1F44D}", "is_animated": false, "is_video": false})
    );
}

#[test]
fn location() {
    let message = message("location.json");
    assert_from_user(&message, 1208, 1_739_524_080, "location");
    assert_eq!(
        message.content,
        Content::Location(Location {
            latitude: 52.520008,
            longitude: 13.404954,
            name: None,
            address: None,
        })
    );
}

#[test]
fn contact() {
    let message = message("contact.json");
    assert_from_user(&message, 1209, 1_739_524_140, "contact");
    assert_eq!(
        message.content,
        Content::Contacts {
            contacts: vec![SharedContact {
                name: "Kim Lee".into(),
                phones: vec!["+491701234567".into()],
                emails: vec![],
            }]
        }
    );
}

#[test]
fn reply() {
    let message = message("reply.json");
    assert_from_user(&message, 1211, 1_739_524_200, "text");
    // The bot's message, in the id format the outbound half records for what it sends.
    assert_eq!(message.reply_to.as_deref(), Some("218485655:1210"));
    assert_eq!(
        message.content,
        Content::Text {
            body: "Can I also come by on Saturday?".into()
        }
    );
}

#[test]
fn edited() {
    let parsed = parsed("edited.json");
    assert_eq!(parsed.ignored, None);
    assert_eq!(
        parsed.events,
        vec![InboundEvent::Edit(InboundEdit {
            // The message of text.json.
            provider_message_id: "218485655:1200".into(),
            from: user_contact(),
            content: Content::Text {
                body: "Hi there, what are your opening hours this weekend?".into()
            },
            edited_at: at(1_739_524_260),
        })]
    );
}

#[test]
fn callback_query() {
    let parsed = parsed("callback_query.json");
    assert_eq!(
        parsed.callback_query_id.as_deref(),
        Some("938457102934857213")
    );
    let message = message("callback_query.json");
    assert_eq!(
        message.provider_message_id.as_deref(),
        Some("callback:938457102934857213")
    );
    assert_eq!(message.account, ACCOUNT);
    assert_eq!(message.from, user_contact());
    assert_eq!(message.conversation, ConversationRef::Current);
    assert_eq!(message.sent_at, None);
    assert_eq!(
        message.content,
        Content::Interactive(InteractiveReply {
            id: "confirm_yes".into(),
            title: "Yes, please".into(),
            description: None,
        })
    );
    // The press answers the bot's message that carried the keyboard.
    assert_eq!(message.reply_to.as_deref(), Some("218485655:1212"));
    assert_eq!(message.intent, None);
    assert_eq!(message.metadata["telegram_type"], "callback_query");
    assert_eq!(message.metadata["chat_type"], "private");
    assert_eq!(message.metadata["from"]["id"], 218_485_655);
}

#[test]
fn human() {
    let message = message("human.json");
    assert_from_user(&message, 1213, 1_739_524_380, "text");
    assert_eq!(message.intent, Some(Intent::Handoff));
    assert_eq!(
        message.content,
        Content::Text {
            body: "/human".into()
        }
    );
    assert_eq!(message.metadata["command"], "human");
}

#[test]
fn group_mention() {
    let message = message("group_mention.json");
    assert_eq!(message.provider_message_id, Some(format!("{GROUP}:5501")));
    assert_eq!(message.account, ACCOUNT);
    // The group is the contact; the member who wrote is in the metadata.
    assert_eq!(message.from, group_contact());
    assert_eq!(message.conversation, ConversationRef::Current);
    assert_eq!(message.sent_at, at(1_739_524_500));
    assert_eq!(
        message.content,
        Content::Text {
            body: "@switchboard_test_bot is the shop open on Sunday?".into()
        }
    );
    assert_eq!(message.intent, None);
    assert_eq!(message.metadata["chat_type"], "supergroup");
    assert_eq!(message.metadata["telegram_type"], "text");
    assert_eq!(
        message.metadata["from"],
        json!({"id": GROUP_MEMBER, "username": "ada_moreau", "first_name": "Ada", "last_name": "Moreau", "language_code": "fr"})
    );
}

#[test]
fn group_other() {
    let parsed = parsed("group_other.json");
    assert_eq!(parsed.update_id, 573_920_115);
    assert!(parsed.events.is_empty(), "{:?}", parsed.events);
    assert_eq!(
        parsed.ignored,
        Some("group message not addressed to the bot")
    );
}

#[test]
fn group_command() {
    let message = message("group_command.json");
    assert_eq!(message.provider_message_id, Some(format!("{GROUP}:5503")));
    assert_eq!(message.from, group_contact());
    assert_eq!(message.sent_at, at(1_739_524_620));
    assert_eq!(message.intent, Some(Intent::Start));
    assert_eq!(message.metadata["command"], "start");
    assert_eq!(message.metadata["from"]["id"], GROUP_MEMBER);
    // Until the bot knows its username, it cannot tell this command is for it.
    let unknown = BotIdentity {
        name: ACCOUNT.into(),
        username: None,
        user_id: None,
    };
    let parsed = parse(&read("group_command.json"), &unknown).unwrap();
    assert!(parsed.events.is_empty());
    assert_eq!(
        parsed.ignored,
        Some("group message not addressed to the bot")
    );
}

#[test]
fn my_chat_member_blocked() {
    assert_eq!(
        reachability("my_chat_member_blocked.json"),
        Reachability {
            contact: user_contact(),
            reachable: false,
            reason: "kicked".into(),
            at: at(1_739_527_200),
        }
    );
}

#[test]
fn my_chat_member_unblocked() {
    assert_eq!(
        reachability("my_chat_member_unblocked.json"),
        Reachability {
            contact: user_contact(),
            reachable: true,
            reason: "member".into(),
            at: at(1_739_530_800),
        }
    );
}

#[test]
fn poll() {
    let parsed = parsed("poll.json");
    assert_eq!(parsed.update_id, 573_920_119);
    assert!(parsed.events.is_empty(), "{:?}", parsed.events);
    assert_eq!(parsed.callback_query_id, None);
    assert_eq!(parsed.ignored, Some("update kind not handled: poll"));
}

#[test]
fn not_telegram() {
    let body = read("not_telegram.json");
    // Valid JSON, so the refusal is about the shape and not the syntax.
    assert!(serde_json::from_slice::<Value>(&body).is_ok());
    let error = parse(&body, &bot()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "not a Telegram update: missing update_id"
    );
    assert_eq!(error.reason(), "missing update_id");
}
