//! The normalization rules, one by one, on hand-written updates. The recorded fixtures in
//! `webhooks/telegram/` are checked by `tests/fixtures.rs`.

use chrono::DateTime;
use serde_json::json;
use switchboard_channel::{Attachment, Location, MediaKind, SharedContact};

use super::*;

const USER_ID: u64 = 218_485_655;
const BOT_ID: u64 = 7_000_000_001;
const GROUP_ID: i64 = -1_001_234_567_890;
const DATE: i64 = 1_739_523_600;

fn bot() -> BotIdentity {
    BotIdentity {
        name: "support".into(),
        username: Some("switchboard_test_bot".into()),
        user_id: Some(BOT_ID),
    }
}

/// A bot whose `getMe` has not answered yet.
fn unknown_bot() -> BotIdentity {
    BotIdentity {
        name: "support".into(),
        username: None,
        user_id: None,
    }
}

fn user() -> Value {
    json!({"id": USER_ID, "is_bot": false, "first_name": "Waffle", "username": "WaffleLapkin", "language_code": "en"})
}

fn bot_user() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "Switchboard", "username": "switchboard_test_bot"})
}

fn private_chat() -> Value {
    json!({"id": USER_ID, "first_name": "Waffle", "username": "WaffleLapkin", "type": "private"})
}

fn group_chat() -> Value {
    json!({"id": GROUP_ID, "title": "Support Group", "type": "supergroup"})
}

/// `base` with the fields of `extra` added or replaced.
fn with(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
        base.extend(extra);
    }
    base
}

/// A message from the user in their private chat with the bot, with `fields` (its content).
fn private_message(fields: Value) -> Value {
    with(
        json!({"message_id": 42, "from": user(), "chat": private_chat(), "date": DATE}),
        fields,
    )
}

/// A message from the user in the support supergroup.
fn group_message(fields: Value) -> Value {
    with(
        json!({"message_id": 77, "from": user(), "chat": group_chat(), "date": DATE}),
        fields,
    )
}

/// A text with its entities, each `(type, offset, length)`.
fn text(body: &str, entities: &[(&str, usize, usize)]) -> Value {
    let entities: Vec<Value> = entities
        .iter()
        .map(|(kind, offset, length)| json!({"type": kind, "offset": offset, "length": length}))
        .collect();
    json!({"text": body, "entities": entities})
}

fn parse_as(bot: &BotIdentity, kind: &str, payload: Value) -> ParsedUpdate {
    let body = serde_json::to_vec(&json!({"update_id": 10_000, kind: payload})).unwrap();
    parse(&body, bot).unwrap()
}

fn parse_json(kind: &str, payload: Value) -> ParsedUpdate {
    parse_as(&bot(), kind, payload)
}

fn only_message(parsed: ParsedUpdate) -> InboundMessage {
    assert_eq!(parsed.ignored, None);
    match <[InboundEvent; 1]>::try_from(parsed.events) {
        Ok([InboundEvent::Message(message)]) => message,
        other => panic!("expected one message, got {other:?}"),
    }
}

fn one_message(payload: Value) -> InboundMessage {
    only_message(parse_json("message", payload))
}

fn ignored(parsed: ParsedUpdate) -> &'static str {
    assert!(parsed.events.is_empty(), "{:?}", parsed.events);
    parsed.ignored.expect("a reason to ignore the update")
}

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

fn file(id: &str, size: Option<u32>) -> Value {
    let mut file = json!({"file_id": id, "file_unique_id": format!("u-{id}")});
    if let Some(size) = size {
        file["file_size"] = json!(size);
    }
    file
}

// --- parse --------------------------------------------------------------------------------------

#[test]
fn refuses_what_is_not_an_update() {
    let error = parse(b"{\"update_id\": 1, \"message\": ", &bot()).unwrap_err();
    assert!(error.reason().starts_with("invalid JSON"), "{error}");
    assert_eq!(
        parse(b"[1, 2]", &bot()).unwrap_err().to_string(),
        "not a Telegram update: the body is not a JSON object"
    );
    let error = parse(br#"{"message": {"text": "hi"}}"#, &bot()).unwrap_err();
    assert_eq!(error.reason(), "missing update_id");
    assert!(parse(br#"{"update_id": "seven"}"#, &bot()).is_err());
    assert!(parse(b"", &bot()).is_err());
}

#[test]
fn keeps_the_update_id() {
    let parsed = parse(
        br#"{"update_id": 892252934, "message": {"message_id": 6557, "from": {"id": 218485655, "is_bot": false, "first_name": "Waffle", "username": "WaffleLapkin", "language_code": "en"}, "chat": {"id": 218485655, "first_name": "Waffle", "username": "WaffleLapkin", "type": "private"}, "date": 1569518342, "text": "hello there"}}"#,
        &bot(),
    )
    .unwrap();
    assert_eq!(parsed.update_id, 892_252_934);
    assert_eq!(parsed.callback_query_id, None);
    assert_eq!(parsed.events.len(), 1);
}

#[test]
fn provider_ids_name_the_chat_and_the_message() {
    assert_eq!(provider_message_id(218_485_655, 6557), "218485655:6557");
    assert_eq!(
        provider_message_id(GROUP_ID, 12),
        "-1001234567890:12".to_owned()
    );
}

// --- messages in private chats --------------------------------------------------------------------

#[test]
fn a_private_text_is_a_message_from_the_chat() {
    let message = one_message(private_message(json!({"text": "Hi there"})));
    let mut metadata = Map::new();
    metadata.insert("telegram_type".into(), json!("text"));
    metadata.insert("chat_type".into(), json!("private"));
    metadata.insert(
        "from".into(),
        json!({"id": USER_ID, "username": "WaffleLapkin", "first_name": "Waffle", "language_code": "en"}),
    );
    assert_eq!(
        message,
        InboundMessage {
            provider_message_id: Some("218485655:42".into()),
            sender_key: None,
            account: "support".into(),
            from: ContactRef {
                external_id: "218485655".into(),
                display_name: Some("Waffle".into()),
                username: Some("WaffleLapkin".into()),
            },
            conversation: ConversationRef::Current,
            sent_at: DateTime::from_timestamp(DATE, 0),
            reply_to: None,
            subject: None,
            content: Content::Text {
                body: "Hi there".into()
            },
            intent: None,
            metadata,
            files: Vec::new(),
        }
    );
}

#[test]
fn names_a_private_chat_after_the_person() {
    let chat = json!({"id": USER_ID, "first_name": "Ada", "last_name": "Moreau", "username": "ada", "type": "private"});
    let message = one_message(private_message(json!({"chat": chat, "text": "hi"})));
    assert_eq!(message.from.display_name.as_deref(), Some("Ada Moreau"));

    let chat = json!({"id": USER_ID, "first_name": " ", "username": "ada", "type": "private"});
    let message = one_message(private_message(json!({"chat": chat, "text": "hi"})));
    assert_eq!(message.from.display_name.as_deref(), Some("ada"));
}

#[test]
fn chooses_the_largest_photo() {
    // Not in size order, to be sure the choice does not rely on Telegram's ordering.
    let photo = json!([
        with(
            file("small", Some(1_404)),
            json!({"width": 90, "height": 67})
        ),
        with(
            file("large", Some(142_350)),
            json!({"width": 1280, "height": 960})
        ),
        with(
            file("medium", Some(16_807)),
            json!({"width": 320, "height": 240})
        ),
    ]);
    let message = one_message(private_message(
        json!({"photo": photo, "caption": "Is this the right part?"}),
    ));
    let (attachment, caption) = single_attachment(&message);
    assert_eq!(
        attachment,
        Attachment {
            kind: MediaKind::Image,
            source: "large".into(),
            mime_type: Some("image/jpeg".into()),
            filename: None,
            size: Some(142_350),
            sha256: None,
            media_id: None,
        }
    );
    assert_eq!(caption.as_deref(), Some("Is this the right part?"));
    assert_eq!(message.metadata["telegram_type"], "photo");
}

#[test]
fn chooses_the_most_pixels_when_a_photo_size_is_unknown() {
    let photo = json!([
        with(
            file("small", Some(1_404)),
            json!({"width": 90, "height": 67})
        ),
        with(file("large", None), json!({"width": 1280, "height": 960})),
    ]);
    let message = one_message(private_message(json!({"photo": photo})));
    let (attachment, caption) = single_attachment(&message);
    assert_eq!(attachment.source, "large");
    assert_eq!(attachment.size, None);
    assert_eq!(caption, None);
}

#[test]
fn a_voice_note_without_mime_type_is_ogg() {
    // teloxide requires the field (the Bot API calls it optional); null is how it can be empty.
    let voice = with(
        file("voice-1", Some(15_872)),
        json!({"duration": 4, "mime_type": null}),
    );
    let message = one_message(private_message(json!({"voice": voice})));
    let (attachment, _) = single_attachment(&message);
    assert_eq!(attachment.kind, MediaKind::Voice);
    assert_eq!(attachment.mime_type.as_deref(), Some("audio/ogg"));
    assert_eq!(attachment.size, Some(15_872));
    assert_eq!(message.metadata["telegram_type"], "voice");
}

#[test]
fn animations_and_video_notes_are_videos() {
    let animation = with(
        file("gif-1", Some(80_000)),
        json!({"width": 320, "height": 240, "duration": 3, "file_name": "dance.mp4", "mime_type": null}),
    );
    let message = one_message(private_message(
        json!({"animation": animation.clone(), "document": animation}),
    ));
    let (attachment, _) = single_attachment(&message);
    assert_eq!(attachment.kind, MediaKind::Video);
    assert_eq!(attachment.mime_type.as_deref(), Some("video/mp4"));
    assert_eq!(attachment.filename.as_deref(), Some("dance.mp4"));
    assert_eq!(message.metadata["telegram_type"], "animation");

    let note = with(
        file("note-1", Some(300_000)),
        json!({"length": 240, "duration": 7}),
    );
    let message = one_message(private_message(json!({"video_note": note})));
    let (attachment, _) = single_attachment(&message);
    assert_eq!(attachment.kind, MediaKind::Video);
    assert_eq!(attachment.source, "note-1");
    assert_eq!(attachment.mime_type.as_deref(), Some("video/mp4"));
    assert_eq!(message.metadata["telegram_type"], "video_note");
}

#[test]
fn a_sticker_type_follows_its_format() {
    let sticker = |is_animated: bool, is_video: bool| {
        with(
            file("sticker-1", Some(20_000)),
            json!({"width": 512, "height": 512, "type": "regular", "emoji": "\u{1F600}",
                   "is_animated": is_animated, "is_video": is_video}),
        )
    };
    for (is_animated, is_video, mime) in [
        (false, false, "image/webp"),
        (true, false, "application/x-tgsticker"),
        (false, true, "video/webm"),
    ] {
        let message = one_message(private_message(
            json!({"sticker": sticker(is_animated, is_video)}),
        ));
        let (attachment, caption) = single_attachment(&message);
        assert_eq!(attachment.kind, MediaKind::Sticker);
        assert_eq!(attachment.mime_type.as_deref(), Some(mime));
        assert_eq!(caption, None);
        assert_eq!(
            message.metadata["sticker"],
            json!({"emoji": "\u{1F600}", "is_animated": is_animated, "is_video": is_video})
        );
    }
}

#[test]
fn a_venue_is_a_named_location() {
    let location = json!({"latitude": 52.5163, "longitude": 13.3777});
    let message = one_message(private_message(json!({
        "location": location,
        "venue": {"location": location, "title": "Brandenburg Gate", "address": "Pariser Platz, 10117 Berlin"}
    })));
    assert_eq!(
        message.content,
        Content::Location(Location {
            latitude: 52.5163,
            longitude: 13.3777,
            name: Some("Brandenburg Gate".into()),
            address: Some("Pariser Platz, 10117 Berlin".into()),
        })
    );
    assert_eq!(message.metadata["telegram_type"], "venue");
}

#[test]
fn a_shared_contact_is_a_card() {
    let message = one_message(private_message(json!({
        "contact": {"phone_number": "+491701234567", "first_name": "Kim", "last_name": "Lee"}
    })));
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
fn other_content_is_unsupported_in_a_private_chat() {
    let poll = json!({
        "id": "5834127709312434178", "question": "Which day?",
        "options": [{"text": "Saturday", "voter_count": 0}, {"text": "Sunday", "voter_count": 0}],
        "total_voter_count": 0, "is_closed": false, "is_anonymous": true, "type": "regular",
        "allows_multiple_answers": false
    });
    let poll = one_message(private_message(json!({"poll": poll})));
    assert_eq!(
        poll.content,
        Content::Unsupported {
            description: "telegram poll".into()
        }
    );
    assert_eq!(poll.metadata["telegram_type"], "poll");

    let dice = one_message(private_message(
        json!({"dice": {"emoji": "\u{1F3B2}", "value": 4}}),
    ));
    assert_eq!(
        dice.content,
        Content::Unsupported {
            description: "telegram dice".into()
        }
    );
}

#[test]
fn service_messages_yield_nothing() {
    let joined = group_message(json!({
        "new_chat_participant": user(), "new_chat_member": user(), "new_chat_members": [user()]
    }));
    assert_eq!(
        ignored(parse_json("message", joined)),
        "service message ignored: new_chat_members"
    );
    let pinned = private_message(json!({
        "pinned_message": private_message(json!({"message_id": 41, "text": "remember this"}))
    }));
    assert_eq!(
        ignored(parse_json("message", pinned)),
        "service message ignored: pinned_message"
    );
}

#[test]
fn keeps_forwards_albums_and_replies() {
    let message = one_message(private_message(json!({
        "message_id": 43,
        "forward_origin": {"type": "hidden_user", "sender_user_name": "Someone", "date": DATE - 60},
        "media_group_id": "13911254561539241",
        "photo": [with(file("p1", Some(1000)), json!({"width": 90, "height": 90}))],
        "reply_to_message": private_message(json!({"message_id": 40, "from": bot_user(), "text": "Send a photo"}))
    })));
    assert_eq!(message.metadata["forwarded"], true);
    assert_eq!(message.metadata["media_group_id"], "13911254561539241");
    assert_eq!(message.reply_to.as_deref(), Some("218485655:40"));
}

// --- commands ---------------------------------------------------------------------------------------

#[test]
fn start_and_human_are_intents() {
    let start = one_message(private_message(text("/start", &[("bot_command", 0, 6)])));
    assert_eq!(start.intent, Some(Intent::Start));
    assert_eq!(start.metadata["command"], "start");
    assert!(!start.metadata.contains_key("command_args"));
    assert_eq!(
        start.content,
        Content::Text {
            body: "/start".into()
        }
    );

    let human = one_message(private_message(text(
        "/human@switchboard_test_bot",
        &[("bot_command", 0, 27)],
    )));
    assert_eq!(human.intent, Some(Intent::Handoff));
    assert_eq!(human.metadata["command"], "human");
}

#[test]
fn keeps_a_deep_link_payload() {
    let start = one_message(private_message(text(
        "/start  spring_promo ",
        &[("bot_command", 0, 6)],
    )));
    assert_eq!(start.intent, Some(Intent::Start));
    assert_eq!(start.metadata["command_args"], "spring_promo");
}

#[test]
fn other_commands_are_text_with_the_command_noted() {
    let help = one_message(private_message(text("/Help me", &[("bot_command", 0, 5)])));
    assert_eq!(help.intent, None);
    assert_eq!(help.metadata["command"], "help");
    assert_eq!(help.metadata["command_args"], "me");
    // A command must start the text.
    let quoted = one_message(private_message(text(
        "try /start",
        &[("bot_command", 4, 6)],
    )));
    assert_eq!(quoted.intent, None);
    assert!(!quoted.metadata.contains_key("command"));
}

#[test]
fn a_command_for_another_bot_is_not_ours() {
    let private = one_message(private_message(text(
        "/start@other_bot",
        &[("bot_command", 0, 16)],
    )));
    assert_eq!(private.intent, None);
    assert!(!private.metadata.contains_key("command"));

    let group = group_message(text("/start@other_bot", &[("bot_command", 0, 16)]));
    assert_eq!(ignored(parse_json("message", group)), NOT_ADDRESSED);
}

#[test]
fn a_command_suffix_is_case_insensitive() {
    let group = group_message(text(
        "/start@Switchboard_Test_Bot",
        &[("bot_command", 0, 27)],
    ));
    assert_eq!(
        only_message(parse_json("message", group)).intent,
        Some(Intent::Start)
    );
}

// --- the group rule -----------------------------------------------------------------------------------

#[test]
fn a_group_message_for_the_bot_comes_from_the_group() {
    let message = one_message(group_message(text(
        "@switchboard_test_bot is the shop open on Sunday?",
        &[("mention", 0, 21)],
    )));
    assert_eq!(
        message.provider_message_id.as_deref(),
        Some("-1001234567890:77")
    );
    assert_eq!(
        message.from,
        ContactRef {
            external_id: "-1001234567890".into(),
            display_name: Some("Support Group".into()),
            username: None,
        }
    );
    assert_eq!(message.metadata["chat_type"], "supergroup");
    // The contact is the group; who wrote is kept here.
    assert_eq!(message.metadata["from"]["id"], USER_ID);
    assert_eq!(message.metadata["from"]["username"], "WaffleLapkin");
}

#[test]
fn a_mention_may_be_anywhere_and_in_any_case() {
    let message = one_message(group_message(text(
        "Hello \u{1F44B} @Switchboard_Test_Bot, anyone there?",
        &[("mention", 9, 21)],
    )));
    assert_eq!(message.metadata["telegram_type"], "text");
}

#[test]
fn a_text_mention_of_the_bot_counts() {
    let body = json!({
        "text": "Switchboard, are you there?",
        "entities": [{"type": "text_mention", "offset": 0, "length": 11, "user": bot_user()}]
    });
    only_message(parse_json("message", group_message(body)));
}

#[test]
fn a_mention_in_a_caption_counts() {
    let message = one_message(group_message(json!({
        "photo": [with(file("p1", Some(1000)), json!({"width": 90, "height": 90}))],
        "caption": "@switchboard_test_bot what is this part?",
        "caption_entities": [{"type": "mention", "offset": 0, "length": 21}]
    })));
    let (_, caption) = single_attachment(&message);
    assert_eq!(
        caption.as_deref(),
        Some("@switchboard_test_bot what is this part?")
    );
}

#[test]
fn a_reply_to_the_bot_counts_in_a_group() {
    let bots_message =
        group_message(json!({"message_id": 76, "from": bot_user(), "text": "Which size?"}));
    let message = one_message(group_message(
        json!({"text": "The large one", "reply_to_message": bots_message}),
    ));
    assert_eq!(message.reply_to.as_deref(), Some("-1001234567890:76"));
}

#[test]
fn other_group_messages_are_not_for_the_bot() {
    let cases = [
        text("Does anyone know a good bike shop?", &[]),
        // Someone else mentioned, or the bot's name without a mention entity.
        text("@other_bot help", &[("mention", 0, 10)]),
        text("switchboard_test_bot help", &[]),
        // A reply to another person.
        json!({"text": "Agreed", "reply_to_message": group_message(json!({"message_id": 70, "text": "Sunday works"}))}),
        // A mention entity that does not fit the text is no mention (and no panic).
        text("@switchboard_test_bot", &[("mention", 5, 40)]),
    ];
    for case in cases {
        assert_eq!(
            ignored(parse_json("message", group_message(case.clone()))),
            NOT_ADDRESSED,
            "{case}"
        );
    }
}

#[test]
fn an_unaddressed_group_message_with_unsupported_content_is_ignored() {
    let dice = group_message(json!({"dice": {"emoji": "\u{1F3B2}", "value": 4}}));
    assert_eq!(ignored(parse_json("message", dice)), NOT_ADDRESSED);
}

#[test]
fn a_plain_group_also_follows_the_rule() {
    let chat = json!({"id": -4_567_890, "title": "Old Group", "type": "group"});
    let plain = group_message(json!({"chat": chat, "text": "hello all"}));
    assert_eq!(ignored(parse_json("message", plain)), NOT_ADDRESSED);
    let start = group_message(with(
        text("/start", &[("bot_command", 0, 6)]),
        json!({"chat": chat}),
    ));
    let message = only_message(parse_json("message", start));
    assert_eq!(message.metadata["chat_type"], "group");
    assert_eq!(message.from.display_name.as_deref(), Some("Old Group"));
}

#[test]
fn an_unknown_bot_identity_only_takes_commands_without_suffix() {
    let bot = unknown_bot();
    let start = group_message(text("/start", &[("bot_command", 0, 6)]));
    let message = only_message(parse_as(&bot, "message", start));
    assert_eq!(message.intent, Some(Intent::Start));

    let bots_message =
        group_message(json!({"message_id": 76, "from": bot_user(), "text": "Which size?"}));
    let text_mention = json!({
        "text": "Switchboard?",
        "entities": [{"type": "text_mention", "offset": 0, "length": 11, "user": bot_user()}]
    });
    for case in [
        text("/start@switchboard_test_bot", &[("bot_command", 0, 27)]),
        text("@switchboard_test_bot hi", &[("mention", 0, 21)]),
        text_mention,
        json!({"text": "The large one", "reply_to_message": bots_message}),
    ] {
        assert_eq!(
            ignored(parse_as(&bot, "message", group_message(case.clone()))),
            NOT_ADDRESSED,
            "{case}"
        );
    }
    // Private chats need no addressing.
    only_message(parse_as(
        &bot,
        "message",
        private_message(json!({"text": "hi"})),
    ));
}

#[test]
fn a_forum_topic_is_no_reply() {
    let chat =
        json!({"id": GROUP_ID, "title": "Support Group", "type": "supergroup", "is_forum": true});
    let topic_opener = json!({
        "message_id": 5, "message_thread_id": 5, "from": bot_user(), "chat": chat, "date": DATE - 600,
        "forum_topic_created": {"name": "Orders", "icon_color": 7_322_096}
    });
    let in_topic = |fields: Value| {
        group_message(with(
            json!({"chat": chat, "message_thread_id": 5, "is_topic_message": true, "reply_to_message": topic_opener}),
            fields,
        ))
    };
    // Even when the bot opened the topic, writing in it is not replying to the bot.
    assert_eq!(
        ignored(parse_json(
            "message",
            in_topic(json!({"text": "any news?"}))
        )),
        NOT_ADDRESSED
    );
    let message = only_message(parse_json(
        "message",
        in_topic(text(
            "@switchboard_test_bot any news?",
            &[("mention", 0, 21)],
        )),
    ));
    assert_eq!(message.reply_to, None);
    assert_eq!(message.metadata["message_thread_id"], 5);
}

// --- edits ----------------------------------------------------------------------------------------

#[test]
fn an_edit_replaces_the_content() {
    let parsed = parse_json(
        "edited_message",
        private_message(json!({"text": "Opening hours on Saturday?", "edit_date": DATE + 60})),
    );
    assert_eq!(parsed.ignored, None);
    assert_eq!(
        parsed.events,
        vec![InboundEvent::Edit(InboundEdit {
            provider_message_id: "218485655:42".into(),
            from: ContactRef {
                external_id: "218485655".into(),
                display_name: Some("Waffle".into()),
                username: Some("WaffleLapkin".into()),
            },
            content: Content::Text {
                body: "Opening hours on Saturday?".into()
            },
            edited_at: DateTime::from_timestamp(DATE + 60, 0),
        })]
    );
}

#[test]
fn edits_follow_the_group_rule() {
    let edited = group_message(json!({"text": "never mind", "edit_date": DATE + 5}));
    assert_eq!(ignored(parse_json("edited_message", edited)), NOT_ADDRESSED);
}

#[test]
fn a_live_location_moving_is_no_edit() {
    let live = private_message(json!({
        "location": {"latitude": 52.52, "longitude": 13.40, "live_period": 900},
        "edit_date": DATE + 30
    }));
    assert_eq!(
        ignored(parse_json("edited_message", live)),
        "live location update"
    );
}

// --- button presses ----------------------------------------------------------------------------------

fn keyboard_message(chat: Value) -> Value {
    json!({
        "message_id": 50, "from": bot_user(), "chat": chat, "date": DATE,
        "text": "Shall I book Saturday 10:00?",
        "reply_markup": {"inline_keyboard": [[
            {"text": "Yes, please", "callback_data": "confirm_yes"},
            {"text": "No, thanks", "callback_data": "confirm_no"}
        ], [{"text": "Opening hours", "url": "https://example.com/hours"}]]}
    })
}

fn callback(message: Option<Value>, data: Option<&str>) -> Value {
    let mut query = json!({"id": "4382bfdwdsb323b2d9", "from": user(), "chat_instance": "-6723349287749371234"});
    if let Some(message) = message {
        query["message"] = message;
    }
    if let Some(data) = data {
        query["data"] = json!(data);
    }
    query
}

#[test]
fn a_button_press_answers_the_keyboard() {
    let parsed = parse_json(
        "callback_query",
        callback(Some(keyboard_message(private_chat())), Some("confirm_no")),
    );
    assert_eq!(
        parsed.callback_query_id.as_deref(),
        Some("4382bfdwdsb323b2d9")
    );
    let message = only_message(parsed);
    assert_eq!(
        message.provider_message_id.as_deref(),
        Some("callback:4382bfdwdsb323b2d9")
    );
    assert_eq!(message.reply_to.as_deref(), Some("218485655:50"));
    assert_eq!(message.from.external_id, "218485655");
    assert_eq!(message.account, "support");
    assert_eq!(message.sent_at, None);
    assert_eq!(
        message.content,
        Content::Interactive(InteractiveReply {
            id: "confirm_no".into(),
            title: "No, thanks".into(),
            description: None,
        })
    );
    assert_eq!(message.metadata["telegram_type"], "callback_query");
    assert_eq!(message.metadata["from"]["id"], USER_ID);
}

#[test]
fn a_button_press_in_a_group_needs_no_mention() {
    let message = only_message(parse_json(
        "callback_query",
        callback(Some(keyboard_message(group_chat())), Some("confirm_yes")),
    ));
    assert_eq!(message.from.external_id, "-1001234567890");
    assert_eq!(message.reply_to.as_deref(), Some("-1001234567890:50"));
    assert_eq!(message.metadata["chat_type"], "supergroup");
}

#[test]
fn an_unknown_button_is_known_by_its_data() {
    let message = only_message(parse_json(
        "callback_query",
        callback(Some(keyboard_message(private_chat())), Some("stale_choice")),
    ));
    assert_eq!(
        message.content,
        Content::Interactive(InteractiveReply {
            id: "stale_choice".into(),
            title: "stale_choice".into(),
            description: None,
        })
    );
    let message = only_message(parse_json(
        "callback_query",
        callback(Some(keyboard_message(private_chat())), None),
    ));
    assert_eq!(
        message.content,
        Content::Interactive(InteractiveReply {
            id: String::new(),
            title: String::new(),
            description: None,
        })
    );
}

#[test]
fn a_press_under_an_old_message_still_names_the_chat() {
    // Telegram sends a message too old to show as a date of 0 and nothing else.
    let inaccessible = json!({"message_id": 50, "chat": private_chat(), "date": 0});
    let message = only_message(parse_json(
        "callback_query",
        callback(Some(inaccessible), Some("confirm_yes")),
    ));
    assert_eq!(message.reply_to.as_deref(), Some("218485655:50"));
    assert_eq!(message.from.display_name.as_deref(), Some("Waffle"));
    assert_eq!(
        message.content,
        Content::Interactive(InteractiveReply {
            id: "confirm_yes".into(),
            title: "confirm_yes".into(),
            description: None,
        })
    );
}

#[test]
fn a_press_under_an_inline_message_comes_from_the_user() {
    let mut query = callback(None, Some("confirm_yes"));
    query["inline_message_id"] = json!("AgAAAPsMAQCXVxUNlH8PX8z1");
    let message = only_message(parse_json("callback_query", query));
    assert_eq!(
        message.from,
        ContactRef {
            external_id: "218485655".into(),
            display_name: Some("Waffle".into()),
            username: Some("WaffleLapkin".into()),
        }
    );
    assert_eq!(message.reply_to, None);
    assert_eq!(message.metadata["chat_type"], "private");
    assert_eq!(
        message.metadata["inline_message_id"],
        "AgAAAPsMAQCXVxUNlH8PX8z1"
    );
}

#[test]
fn a_press_in_a_channel_is_still_answered() {
    let channel = json!({"id": -1_009_876_543_210_i64, "title": "News", "type": "channel"});
    let parsed = parse_json(
        "callback_query",
        callback(Some(keyboard_message(channel)), Some("confirm_yes")),
    );
    assert_eq!(
        parsed.callback_query_id.as_deref(),
        Some("4382bfdwdsb323b2d9")
    );
    assert_eq!(ignored(parsed), CHANNEL_CHAT);
}

// --- membership ------------------------------------------------------------------------------------------

fn member_update(chat: Value, old: Value, new: Value) -> Value {
    json!({
        "chat": chat, "from": user(), "date": DATE,
        "old_chat_member": with(json!({"user": bot_user()}), old),
        "new_chat_member": with(json!({"user": bot_user()}), new),
    })
}

fn reachability_of(payload: Value) -> Reachability {
    let parsed = parse_json("my_chat_member", payload);
    assert_eq!(parsed.ignored, None);
    match <[InboundEvent; 1]>::try_from(parsed.events) {
        Ok([InboundEvent::Reachability(reachability)]) => reachability,
        other => panic!("expected reachability, got {other:?}"),
    }
}

#[test]
fn blocking_and_unblocking_the_bot() {
    let blocked = reachability_of(member_update(
        private_chat(),
        json!({"status": "member"}),
        json!({"status": "kicked", "until_date": 0}),
    ));
    assert_eq!(
        blocked,
        Reachability {
            contact: ContactRef {
                external_id: "218485655".into(),
                display_name: Some("Waffle".into()),
                username: Some("WaffleLapkin".into()),
            },
            reachable: false,
            reason: "kicked".into(),
            at: DateTime::from_timestamp(DATE, 0),
        }
    );
    let unblocked = reachability_of(member_update(
        private_chat(),
        json!({"status": "kicked", "until_date": 0}),
        json!({"status": "member"}),
    ));
    assert!(unblocked.reachable);
    assert_eq!(unblocked.reason, "member");
}

#[test]
fn membership_in_groups() {
    let left = reachability_of(member_update(
        group_chat(),
        json!({"status": "member"}),
        json!({"status": "left"}),
    ));
    assert_eq!(
        (
            left.contact.external_id.as_str(),
            left.reachable,
            left.reason.as_str()
        ),
        ("-1001234567890", false, "left")
    );
    let admin = json!({
        "status": "administrator", "can_be_edited": false, "is_anonymous": false,
        "can_manage_chat": true, "can_delete_messages": true, "can_manage_video_chats": true,
        "can_restrict_members": true, "can_promote_members": false, "can_change_info": true,
        "can_invite_users": true, "can_post_stories": false, "can_edit_stories": false,
        "can_delete_stories": false, "can_pin_messages": true, "can_manage_topics": false
    });
    let promoted = reachability_of(member_update(
        group_chat(),
        json!({"status": "member"}),
        admin,
    ));
    assert_eq!(
        (promoted.reachable, promoted.reason.as_str()),
        (true, "administrator")
    );

    let restricted = |is_member: bool| {
        json!({
            "status": "restricted", "until_date": 0, "is_member": is_member,
            "can_send_messages": false, "can_send_audios": false, "can_send_documents": false,
            "can_send_photos": false, "can_send_videos": false, "can_send_video_notes": false,
            "can_send_voice_notes": false, "can_send_polls": false, "can_send_other_messages": false,
            "can_add_web_page_previews": false, "can_change_info": false, "can_invite_users": false,
            "can_pin_messages": false, "can_manage_topics": false
        })
    };
    for is_member in [true, false] {
        let update = reachability_of(member_update(
            group_chat(),
            json!({"status": "member"}),
            restricted(is_member),
        ));
        assert_eq!(
            (update.reachable, update.reason.as_str()),
            (is_member, "restricted")
        );
    }
}

#[test]
fn membership_of_someone_else_is_not_ours() {
    let mut update = member_update(
        private_chat(),
        json!({"status": "member"}),
        json!({"status": "kicked", "until_date": 0}),
    );
    update["new_chat_member"]["user"] = user();
    assert_eq!(
        ignored(parse_json("my_chat_member", update)),
        "chat member update about another user"
    );
}

// --- other updates -------------------------------------------------------------------------------------

#[test]
fn channel_posts_are_ignored() {
    let channel = json!({"id": -1_009_876_543_210_i64, "title": "News", "type": "channel"});
    let post = json!({"message_id": 3, "sender_chat": channel, "chat": channel, "date": DATE, "text": "New opening hours"});
    assert_eq!(
        ignored(parse_json("channel_post", post)),
        "update kind not handled: channel_post"
    );
}

#[test]
fn other_update_kinds_are_named() {
    let inline = json!({"id": "2760391", "from": user(), "query": "hours", "offset": ""});
    assert_eq!(
        ignored(parse_json("inline_query", inline)),
        "update kind not handled: inline_query"
    );
    let request =
        json!({"chat": group_chat(), "from": user(), "user_chat_id": USER_ID, "date": DATE});
    assert_eq!(
        ignored(parse_json("chat_join_request", request)),
        "update kind not handled: chat_join_request"
    );
}

#[test]
fn a_kind_newer_than_teloxide_is_unknown() {
    let parsed = parse_json("some_future_update", json!({"id": 1}));
    assert_eq!(parsed.update_id, 10_000);
    assert_eq!(ignored(parsed), "update kind not handled: unknown");
    // What teloxide hands long polling when it did not keep the raw update.
    let update = Update {
        id: teloxide::types::UpdateId(7),
        kind: UpdateKind::Error(Value::Object(Map::new())),
    };
    assert_eq!(
        parse_update(update, &bot()).ignored,
        Some("update kind not handled: unknown")
    );
}

#[test]
fn a_message_teloxide_cannot_read_is_skipped_not_refused() {
    // No chat: not a message teloxide can decode, but still an update Telegram would resend.
    let parsed = parse_json(
        "message",
        json!({"message_id": 1, "date": DATE, "text": "hi"}),
    );
    assert_eq!(ignored(parsed), "update not readable: message");
}

#[test]
fn every_update_kind_has_its_reasons() {
    for (name, not_handled_reason, unreadable) in UPDATE_KINDS {
        assert_eq!(not_handled(name), *not_handled_reason);
        assert!(not_handled_reason.ends_with(name));
        assert!(unreadable.ends_with(name));
    }
    assert_eq!(not_handled("unknown"), UNKNOWN_KIND);
}
