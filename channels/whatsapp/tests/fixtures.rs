//! Every recorded webhook in `webhooks/whatsapp/` parses into the expected normalized events.
//!
//! The fixtures are shared with the gateway's tests and with `switchboard replay`, so a change to
//! one of them shows up here first. Each fixture has a test below and an entry in [`FIXTURES`];
//! [`every_fixture_has_a_test`] fails when a file is added without one.

use std::{collections::BTreeSet, fs, path::Path};

use chrono::{DateTime, Utc};
use serde_json::json;
use switchboard_channel::{
    Attachment, ContactRef, Content, ConversationRef, DeliveryStatus, InboundEvent, InboundMessage,
    InteractiveReply, Location, MediaKind, ProviderError, Reaction, SharedContact, StatusUpdate,
};
use switchboard_whatsapp::parse;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../webhooks/whatsapp");

/// Every fixture file and the test that checks it.
const FIXTURES: &[(&str, fn())] = &[
    ("text.json", text),
    ("image.json", image),
    ("audio.json", audio),
    ("voice.json", voice),
    ("video.json", video),
    ("document.json", document),
    ("sticker.json", sticker),
    ("location.json", location),
    ("contacts.json", contacts),
    ("interactive_button_reply.json", interactive_button_reply),
    ("interactive_list_reply.json", interactive_list_reply),
    ("button.json", button),
    ("reaction.json", reaction),
    ("reaction_removed.json", reaction_removed),
    ("reply.json", reply),
    ("referral.json", referral),
    ("unsupported.json", unsupported),
    ("system.json", system),
    ("batch.json", batch),
    ("multi_entry.json", multi_entry),
    ("statuses.json", statuses),
    ("status_failed.json", status_failed),
    ("not_whatsapp.json", not_whatsapp),
];

/// The business number every fixture was sent to.
const ACCOUNT: &str = "106540352242922";
const DISPLAY_NUMBER: &str = "15550783881";
/// The customer.
const USER: &str = "16505551234";
const USER_NAME: &str = "Sheena Nelson";
/// The message of ours that replies, reactions and statuses refer to.
const OUTBOUND: &str = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI5QUNBNDI0MDlCNEI5NjY3NUUA";

fn read(name: &str) -> Vec<u8> {
    let path = Path::new(DIR).join(name);
    fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn events(name: &str) -> Vec<InboundEvent> {
    parse(&read(name)).unwrap_or_else(|err| panic!("{name}: {err}"))
}

/// The only event of a fixture, which must be a message.
fn message(name: &str) -> InboundMessage {
    match events(name).as_slice() {
        [InboundEvent::Message(message)] => message.clone(),
        other => panic!("{name}: expected one message, got {other:?}"),
    }
}

fn at(seconds: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(seconds, 0)
}

/// Checks what every message from the customer to the test number has in common.
fn assert_from_customer(message: &InboundMessage, id: &str, sent_at: i64, whatsapp_type: &str) {
    assert_eq!(message.provider_message_id.as_deref(), Some(id));
    assert_eq!(message.account, ACCOUNT);
    assert_eq!(
        message.from,
        ContactRef {
            external_id: USER.into(),
            display_name: Some(USER_NAME.into()),
            username: None,
        }
    );
    assert_eq!(message.conversation, ConversationRef::Current);
    assert_eq!(message.sent_at, at(sent_at));
    assert_eq!(message.metadata["whatsapp_type"], whatsapp_type);
    assert_eq!(message.metadata["display_phone_number"], DISPLAY_NUMBER);
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

fn media_attachment(
    kind: MediaKind,
    source: &str,
    mime_type: &str,
    sha256: &str,
    filename: Option<&str>,
) -> Attachment {
    Attachment {
        kind,
        source: source.into(),
        mime_type: Some(mime_type.into()),
        filename: filename.map(Into::into),
        size: None,
        sha256: Some(sha256.into()),
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

#[test]
fn text() {
    let message = message("text.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdCNUE4RTg3NkQ2QkU2RkIxNQA=",
        1_739_321_024,
        "text",
    );
    assert_eq!(
        message.content,
        Content::Text {
            body: "Hi there, what are your opening hours?".into()
        }
    );
    assert_eq!(message.reply_to, None);
    // Nothing beyond the type and the number for a plain text.
    assert_eq!(message.metadata.len(), 2, "{:?}", message.metadata);
}

#[test]
fn image() {
    let message = message("image.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQwRTc2MjkyNzk0ODg4RDRGMUZBNwA=",
        1_739_321_100,
        "image",
    );
    let (attachment, caption) = single_attachment(&message);
    assert_eq!(
        attachment,
        media_attachment(
            MediaKind::Image,
            "1003383421387256",
            "image/jpeg",
            "YQXWzHavQAMl6U1YjOURvlv9u3O0N9xR7KQ5F9ekPj0=",
            None,
        )
    );
    assert_eq!(caption.as_deref(), Some("Is this the right part?"));
}

#[test]
fn audio() {
    let message = message("audio.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBRBMDZBNDkyOTU5Q0UxMkIzRjAyOQA=",
        1_739_321_160,
        "audio",
    );
    let (attachment, caption) = single_attachment(&message);
    assert_eq!(
        attachment,
        media_attachment(
            MediaKind::Audio,
            "1214872059931447",
            "audio/mpeg",
            "btiRnOIEkKXjrYYwpPq2lHUper0H23ORjdXzb8+usRs=",
            None,
        )
    );
    assert_eq!(caption, None);
}

#[test]
fn voice() {
    let message = message("voice.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQ0N0VGNjU4OTBEREJEN0RBNzM1MwA=",
        1_739_321_220,
        "audio",
    );
    let (attachment, caption) = single_attachment(&message);
    assert_eq!(
        attachment,
        media_attachment(
            MediaKind::Voice,
            "980226970857396",
            "audio/ogg; codecs=opus",
            "xX1+kgGXCLYUyQ+jaFzWRPVDpgFT+5nsm2fDgaJF+yo=",
            None,
        )
    );
    assert_eq!(caption, None);
}

#[test]
fn video() {
    let message = message("video.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBRGRkJBRjU4RjEyMzE2MjhGOUFDMgA=",
        1_739_321_280,
        "video",
    );
    let (attachment, caption) = single_attachment(&message);
    assert_eq!(
        attachment,
        media_attachment(
            MediaKind::Video,
            "1582317145792615",
            "video/mp4",
            "DKsclhdAT68rJOIh4YnKWUWBPhTT92Y0WwnKE7vij/w=",
            None,
        )
    );
    assert_eq!(caption.as_deref(), Some("Here's the noise it makes"));
}

#[test]
fn document() {
    let message = message("document.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQ0RjgyNzhDODlBRDE2REEwNUZFQwA=",
        1_739_321_340,
        "document",
    );
    let (attachment, caption) = single_attachment(&message);
    assert_eq!(
        attachment,
        media_attachment(
            MediaKind::Document,
            "641852358349762",
            "application/pdf",
            "Q8wj+lK4e0zB0CtbEUFUFR1q3dsXyf3cBrAn+pniQAg=",
            Some("invoice-2025-0204.pdf"),
        )
    );
    assert_eq!(caption.as_deref(), Some("My invoice from last week"));
}

#[test]
fn sticker() {
    let message = message("sticker.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQ2NTgxRjY1NDMxNDhDQzI0MjUyRQA=",
        1_739_321_400,
        "sticker",
    );
    let (attachment, caption) = single_attachment(&message);
    assert_eq!(
        attachment,
        media_attachment(
            MediaKind::Sticker,
            "1140283074154297",
            "image/webp",
            "V8SxOkxzNecvFmngUG6ZII3x2gUMEl2meLI+u1W/TGE=",
            None,
        )
    );
    assert_eq!(caption, None);
    assert_eq!(message.metadata["animated"], false);
}

#[test]
fn location() {
    let message = message("location.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQ2NDY5QUM4NEE4OTc0OEJCNjdCOQA=",
        1_739_321_460,
        "location",
    );
    assert_eq!(
        message.content,
        Content::Location(Location {
            latitude: 37.4847483,
            longitude: -122.1473898,
            name: Some("Meta Headquarters".into()),
            address: Some("1 Hacker Way, Menlo Park, CA 94025".into()),
        })
    );
}

#[test]
fn contacts() {
    let message = message("contacts.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQ5REI0OUE1OTI0OUVFRkI2RjY1MgA=",
        1_739_321_520,
        "contacts",
    );
    assert_eq!(
        message.content,
        Content::Contacts {
            contacts: vec![
                SharedContact {
                    name: "Barbara Johnson".into(),
                    phones: vec!["+1 (650) 555-1234".into(), "+1 (650) 555-0199".into()],
                    emails: vec!["barbara.johnson@example.com".into()],
                },
                SharedContact {
                    name: "Kim Lee".into(),
                    phones: vec!["+1 (631) 555-1181".into()],
                    emails: vec![],
                },
            ]
        }
    );
}

#[test]
fn interactive_button_reply() {
    let message = message("interactive_button_reply.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQwOTI1QzUyRjQ1MkFFMjJERUE2NAA=",
        1_739_321_580,
        "interactive",
    );
    assert_eq!(
        message.content,
        Content::Interactive(InteractiveReply {
            id: "confirm-booking".into(),
            title: "Yes, confirm".into(),
            description: None,
        })
    );
    // The tap answers the message that offered the buttons.
    assert_eq!(message.reply_to.as_deref(), Some(OUTBOUND));
    assert_eq!(message.metadata["context_from"], DISPLAY_NUMBER);
}

#[test]
fn interactive_list_reply() {
    let message = message("interactive_list_reply.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzRjEwMkY4NTlGREQwNEVCM0IzNQA=",
        1_739_321_640,
        "interactive",
    );
    assert_eq!(
        message.content,
        Content::Interactive(InteractiveReply {
            id: "slot-tue-0900".into(),
            title: "Tuesday 9:00".into(),
            description: Some("Workshop A \u{2013} about 30 minutes".into()),
        })
    );
    assert_eq!(message.reply_to.as_deref(), Some(OUTBOUND));
}

#[test]
fn button() {
    let message = message("button.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQ3QjdGQ0M3OEQ2Q0QxNTA3OTI1QgA=",
        1_739_321_700,
        "button",
    );
    assert_eq!(
        message.content,
        Content::Interactive(InteractiveReply {
            id: "STOP_PROMOTIONS".into(),
            title: "Stop promotions".into(),
            description: None,
        })
    );
    assert_eq!(message.reply_to.as_deref(), Some(OUTBOUND));
}

#[test]
fn reaction() {
    let message = message("reaction.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBRBOTA0M0ZGRTQ2OTgwM0Y3QTdGMAA=",
        1_739_321_760,
        "reaction",
    );
    assert_eq!(
        message.content,
        Content::Reaction(Reaction {
            target_provider_message_id: OUTBOUND.into(),
            emoji: Some("\u{1F44D}".into()),
        })
    );
    assert!(!message.content.expects_answer());
}

#[test]
fn reaction_removed() {
    let message = message("reaction_removed.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQ3QzA3MTBEMUJEN0Y1OTJDNzY5MwA=",
        1_739_321_820,
        "reaction",
    );
    assert_eq!(
        message.content,
        Content::Reaction(Reaction {
            target_provider_message_id: OUTBOUND.into(),
            emoji: None,
        })
    );
}

#[test]
fn reply() {
    let message = message("reply.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBRBNURGRDFFMkExNTQxM0MyMzlDNQA=",
        1_739_321_880,
        "text",
    );
    assert_eq!(
        message.content,
        Content::Text {
            body: "Can I also bring it in on Saturday?".into()
        }
    );
    assert_eq!(message.reply_to.as_deref(), Some(OUTBOUND));
    assert_eq!(message.metadata["context_from"], DISPLAY_NUMBER);
    assert!(!message.metadata.contains_key("forwarded"));
}

#[test]
fn referral() {
    let message = message("referral.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzM0I4OEFFRkQzNTU0MDRFMTI4MQA=",
        1_739_321_940,
        "text",
    );
    assert_eq!(
        message.content,
        Content::Text {
            body: "Hello! Can I get more info on this?".into()
        }
    );
    assert_eq!(message.reply_to, None);
    let referral = &message.metadata["referral"];
    assert_eq!(referral["source_type"], "ad");
    assert_eq!(referral["source_id"], "120214040427820529");
    assert_eq!(referral["source_url"], "https://fb.me/3cr4Wqqkv");
    assert_eq!(referral["headline"], "Spring bike service: 20% off");
    assert!(
        referral["ctwa_clid"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
}

#[test]
fn unsupported() {
    let message = message("unsupported.json");
    assert_from_customer(
        &message,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQ5OTVGRUUxRjFBN0VCM0EyQTkzNQA=",
        1_739_322_000,
        "unsupported",
    );
    assert_eq!(
        message.content,
        Content::Unsupported {
            description: "Message type unknown".into()
        }
    );
}

#[test]
fn system() {
    let message = message("system.json");
    assert_eq!(
        message.provider_message_id.as_deref(),
        Some("wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzMTdGMUU3NjFGMkZBQThEQTc4MQA=")
    );
    assert_eq!(message.account, ACCOUNT);
    // System messages come without a contacts list, hence without a profile name.
    assert_eq!(
        message.from,
        ContactRef {
            external_id: USER.into(),
            display_name: None,
            username: None,
        }
    );
    assert_eq!(message.sent_at, at(1_739_322_060));
    assert_eq!(
        message.content,
        Content::System {
            event: "user_changed_number".into(),
            text: "User Sheena Nelson changed from 16505551234 to 16505553333".into(),
        }
    );
    assert!(!message.content.expects_answer());
    assert_eq!(message.metadata["whatsapp_type"], "system");
    assert_eq!(message.metadata["new_wa_id"], "16505553333");
}

#[test]
fn batch() {
    let events = events("batch.json");
    let messages: Vec<&InboundMessage> = events
        .iter()
        .map(|event| match event {
            InboundEvent::Message(message) => message,
            other => panic!("expected only messages, got {other:?}"),
        })
        .collect();
    let expected = [
        (
            "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBRGQzZDMTMxRDI2OTNDNTJERUVDMwA=",
            1_739_322_120,
            "first",
        ),
        (
            "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQwMzQ2NkFDOUEyQjdDQUY1QkMxMAA=",
            1_739_322_121,
            "second",
        ),
        (
            "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBRFQUJGMkZFNzUzODk1QUYyMzdBNwA=",
            1_739_322_123,
            "third",
        ),
    ];
    assert_eq!(messages.len(), expected.len());
    for (message, (id, sent_at, body)) in messages.iter().zip(expected) {
        assert_from_customer(message, id, sent_at, "text");
        assert_eq!(message.content, Content::Text { body: body.into() });
    }
}

#[test]
fn multi_entry() {
    let events = events("multi_entry.json");
    let [
        InboundEvent::Message(first),
        InboundEvent::Status(status),
        InboundEvent::Message(second),
    ] = events.as_slice()
    else {
        panic!("expected message, status, message; got {events:?}");
    };
    assert_from_customer(
        first,
        "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQ0JERDc4QjdFMTJCMzlBMDlGQwA=",
        1_739_322_180,
        "text",
    );
    assert_eq!(
        first.content,
        Content::Text {
            body: "Is the shop open on Sunday?".into()
        }
    );
    assert_eq!(
        *status,
        StatusUpdate {
            provider_message_id: OUTBOUND.into(),
            status: DeliveryStatus::Read,
            at: at(1_739_322_185),
            error: None,
        }
    );
    // The second customer's name comes from the second entry's own contacts list.
    assert_eq!(
        second.provider_message_id.as_deref(),
        Some("wamid.HBgLMTYzMTU1NTExODEVAgASGBQ3RUZGNUM5NDk2NjlDNjRDOTYyRgA=")
    );
    assert_eq!(second.account, ACCOUNT);
    assert_eq!(
        second.from,
        ContactRef {
            external_id: "16315551181".into(),
            display_name: Some("Pablo Morales".into()),
            username: None,
        }
    );
    assert_eq!(second.sent_at, at(1_739_322_190));
    assert_eq!(
        second.content,
        Content::Text {
            body: "Do you repair e-bikes?".into()
        }
    );
}

#[test]
fn statuses() {
    let expected: Vec<InboundEvent> = [
        (DeliveryStatus::Sent, 1_739_322_240),
        (DeliveryStatus::Delivered, 1_739_322_242),
        (DeliveryStatus::Read, 1_739_322_300),
    ]
    .into_iter()
    .map(|(status, seconds)| {
        InboundEvent::Status(StatusUpdate {
            provider_message_id: OUTBOUND.into(),
            status,
            at: at(seconds),
            error: None,
        })
    })
    .collect();
    assert_eq!(events("statuses.json"), expected);
}

#[test]
fn status_failed() {
    assert_eq!(
        events("status_failed.json"),
        vec![InboundEvent::Status(StatusUpdate {
            provider_message_id: OUTBOUND.into(),
            status: DeliveryStatus::Failed,
            at: at(1_739_408_700),
            error: Some(ProviderError {
                code: "131047".into(),
                title: "Re-engagement message".into(),
                detail: Some(
                    "Message failed to send because more than 24 hours have passed since the \
                     customer last replied to this number."
                        .into()
                ),
            }),
        })]
    );
}

#[test]
fn not_whatsapp() {
    let body = read("not_whatsapp.json");
    // Valid JSON, so the refusal is about the envelope and not the syntax.
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
    let error = parse(&body).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"not a WhatsApp Business Account webhook: object is "instagram", not "whatsapp_business_account""#
    );
}

/// Meta sends timestamps as strings; a fixture "tidied" to numbers would stop exercising that path.
#[test]
fn fixtures_keep_metas_wire_shape() {
    let text: serde_json::Value = serde_json::from_slice(&read("text.json")).unwrap();
    let message = &text["entry"][0]["changes"][0]["value"]["messages"][0];
    assert_eq!(message["timestamp"], json!("1739321024"));
    assert_eq!(text["entry"][0]["changes"][0]["field"], "messages");
}
