//! Every recorded request in `webhooks/api/` parses into the expected normalized events.
//!
//! The fixtures are shared with the gateway's tests and with `switchboard replay`, so a change to
//! one of them shows up here first. Each fixture has a test below and an entry in [`FIXTURES`];
//! [`every_fixture_has_a_test`] fails when a file is added without one.

use std::{collections::BTreeSet, fs, path::Path};

use serde_json::json;
use switchboard_api::parse;
use switchboard_channel::{
    ContactRef, Content, ConversationRef, DeliveryStatus, InboundEvent, InboundMessage, Intent,
    ProviderError, StatusUpdate,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../webhooks/api");

/// Every fixture file and the test that checks it.
const FIXTURES: &[(&str, fn())] = &[
    ("message.json", message),
    ("batch.json", batch),
    ("invalid.json", invalid),
];

/// The integration the fixtures are parsed for.
const INTEGRATION: &str = "crm";

fn read(name: &str) -> Vec<u8> {
    let path = Path::new(DIR).join(name);
    fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn events(name: &str) -> Vec<InboundEvent> {
    parse(&read(name), INTEGRATION).unwrap_or_else(|err| panic!("{name}: {err}"))
}

fn ada() -> ContactRef {
    ContactRef {
        external_id: "crm:contact-42".into(),
        display_name: Some("Ada Lovelace".into()),
        username: None,
    }
}

#[test]
fn message() {
    let events = events("message.json");
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "metadata".into(),
        json!({"plan": "pro", "page": "https://crm.example.com/contacts/42"}),
    );
    assert_eq!(
        events,
        vec![InboundEvent::Message(InboundMessage {
            provider_message_id: Some("crm:crm-msg-1001".into()),
            sender_key: None,
            account: "crm".into(),
            from: ada(),
            conversation: ConversationRef::Current,
            sent_at: None,
            reply_to: None,
            content: Content::Text {
                body: "Hi there, what are your opening hours?".into()
            },
            subject: None,
            intent: None,
            metadata,
            files: vec![],
        })]
    );
}

#[test]
fn batch() {
    let events = events("batch.json");
    assert_eq!(events.len(), 5, "{events:?}");
    let InboundEvent::Message(first) = &events[0] else {
        panic!("{:?}", events[0])
    };
    assert_eq!(
        first.provider_message_id.as_deref(),
        Some("crm:crm-msg-1002")
    );
    assert_eq!(first.from, ada());
    assert_eq!(
        first.conversation,
        ConversationRef::Thread {
            token: Some("c8Yq2Lr0TzKw".into()),
            references: vec![]
        }
    );
    assert!(first.metadata.is_empty());
    let InboundEvent::Message(second) = &events[1] else {
        panic!("{:?}", events[1])
    };
    assert_eq!(second.from.external_id, "crm:contact-77");
    assert_eq!(second.from.display_name, None);
    assert_eq!(second.intent, Some(Intent::Handoff));
    assert_eq!(second.conversation, ConversationRef::Current);
    let status = |id: &str, status, error| {
        InboundEvent::Status(StatusUpdate {
            provider_message_id: id.into(),
            status,
            at: None,
            error,
        })
    };
    assert_eq!(
        events[2..],
        [
            status("crm:crm-out-501", DeliveryStatus::Delivered, None),
            status("crm:crm-out-501", DeliveryStatus::Read, None),
            status(
                "crm:crm-out-502",
                DeliveryStatus::Failed,
                Some(ProviderError {
                    code: "unsubscribed".into(),
                    title: "The contact unsubscribed from messages".into(),
                    detail: None,
                })
            ),
        ]
    );
}

#[test]
fn invalid() {
    let err = parse(&read("invalid.json"), INTEGRATION)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid API request: unknown field `body`, expected one of"),
        "{err}"
    );
}

#[test]
fn the_same_fixture_is_kept_apart_per_integration() {
    let events = parse(&read("message.json"), "sms").unwrap();
    let [InboundEvent::Message(message)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        message.provider_message_id.as_deref(),
        Some("sms:crm-msg-1001")
    );
    assert_eq!(message.from.external_id, "sms:contact-42");
    assert_eq!(message.account, "sms");
}

#[test]
fn limits_hold_for_fixture_shaped_requests() {
    let mut request: serde_json::Value = serde_json::from_slice(&read("message.json")).unwrap();
    let one = request["messages"][0].clone();
    request["messages"] = json!(vec![one.clone(); 100]);
    assert_eq!(
        parse(request.to_string().as_bytes(), INTEGRATION)
            .unwrap()
            .len(),
        100
    );
    request["messages"] = json!(vec![one; 101]);
    assert_eq!(
        parse(request.to_string().as_bytes(), INTEGRATION)
            .unwrap_err()
            .to_string(),
        "invalid API request: at most 100 messages per request, got 101"
    );
    request["messages"][0]["text"] = json!("x".repeat(4097));
    request["messages"] = json!([request["messages"][0].clone()]);
    assert_eq!(
        parse(request.to_string().as_bytes(), INTEGRATION)
            .unwrap_err()
            .to_string(),
        "invalid API request: messages[0].text is longer than 4096 characters"
    );
}

#[test]
fn bad_json_is_refused() {
    for body in [&b""[..], b"{", b"not json", b"null", b"{\"messages\": {}}"] {
        let err = parse(body, INTEGRATION).unwrap_err().to_string();
        assert!(err.starts_with("invalid API request: "), "{err}");
    }
}

#[test]
fn every_fixture_has_a_test() {
    let files: BTreeSet<String> = fs::read_dir(DIR)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".json"))
        .collect();
    let tested: BTreeSet<String> = FIXTURES.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(files, tested, "every fixture needs an entry in FIXTURES");
    for (_, check) in FIXTURES {
        check();
    }
}
