//! The channel as the gateway registers it: its section, its defaults, when it is on, and the
//! requests `switchboard replay` posts.

use std::path::Path;

use serde_json::{Value, json};
use switchboard_api::{CHANNEL, KIND, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use switchboard_channel::{ChannelKind, plugin::Replay};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../webhooks/api/message.json"
);
const NOW: i64 = 1_700_000_000;

fn section() -> Value {
    json!({"integrations": [
        {"name": "crm", "secret": "crm-secret", "callback_url": "https://crm.example.com/cb"}
    ]})
}

fn replay<'a>(body: &'a [u8], new_ids: bool, account: Option<&'a str>) -> Replay<'a> {
    Replay {
        file: Path::new(FIXTURE),
        body,
        new_ids,
        account,
        now: NOW,
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

#[test]
fn the_channel_is_named_api() {
    assert_eq!(KIND.channel(), CHANNEL);
    assert_eq!(CHANNEL.as_str(), "api");
    assert_eq!(KIND.label(), "API");
    assert!(KIND.env().is_empty());
}

#[test]
fn the_defaults_are_a_valid_section_that_leaves_the_channel_off() {
    let defaults = KIND.defaults();
    assert_eq!(
        defaults,
        json!({"integrations": [], "max_body_bytes": 262144})
    );
    assert_eq!(KIND.validate(defaults.clone()), Ok(()));
    assert!(KIND.build(defaults).unwrap().is_none());
    assert!(KIND.build(json!({})).unwrap().is_none());
}

#[test]
fn one_integration_turns_the_channel_on() {
    let plugin = KIND.build(section()).unwrap().expect("on");
    assert_eq!(plugin.channel(), CHANNEL);
    assert!(plugin.sender().is_some());
    assert!(plugin.webhook().is_some());
    assert!(plugin.fetcher().is_none());
    assert_eq!(plugin.policy(), Default::default());
}

#[test]
fn invalid_sections_are_refused_by_validate_and_build() {
    let bad = json!({"integrations": [{"name": "crm", "secret": "s"}]});
    let error = KIND.validate(bad.clone()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "[api] api integration \"crm\" has no callback_url"
    );
    assert_eq!(KIND.build(bad).err(), Some(error));
    assert!(
        KIND.validate(json!({"integrations": [], "secret": "x"}))
            .is_err()
    );
}

#[test]
fn a_replay_is_signed_now_for_the_only_integration() {
    let body = std::fs::read(FIXTURE).unwrap();
    let request = KIND.replay(section(), &replay(&body, false, None)).unwrap();
    assert_eq!(request.path, "/webhooks/api/crm");
    assert_eq!(request.body, body, "the recorded bytes, unchanged");
    assert_eq!(header(&request.headers, "content-type"), "application/json");
    assert_eq!(header(&request.headers, TIMESTAMP_HEADER), NOW.to_string());
    assert_eq!(
        verify(
            "crm-secret",
            NOW,
            &request.body,
            header(&request.headers, SIGNATURE_HEADER)
        ),
        Ok(())
    );
}

#[test]
fn a_replay_with_new_ids_renames_every_message() {
    let body = std::fs::read(FIXTURE).unwrap();
    let first = KIND.replay(section(), &replay(&body, true, None)).unwrap();
    let second = KIND.replay(section(), &replay(&body, true, None)).unwrap();
    let id = |body: &[u8]| {
        let request: Value = serde_json::from_slice(body).unwrap();
        request["messages"][0]["id"].as_str().unwrap().to_owned()
    };
    assert!(
        id(&first.body).starts_with("crm-msg-1001."),
        "{}",
        id(&first.body)
    );
    assert_ne!(id(&first.body), id(&second.body));
    let request: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(
        request["messages"][0]["text"],
        "Hi there, what are your opening hours?"
    );
    assert_eq!(
        verify(
            "crm-secret",
            NOW,
            &first.body,
            header(&first.headers, SIGNATURE_HEADER)
        ),
        Ok(())
    );
}

#[test]
fn a_replay_names_its_integration_when_there_are_several() {
    let body = std::fs::read(FIXTURE).unwrap();
    let two = json!({"integrations": [
        {"name": "crm", "secret": "crm-secret", "callback_url": "https://crm.example.com/cb"},
        {"name": "sms", "secret": "sms-secret", "callback_url": "https://sms.example.com/cb"}
    ]});
    let error = KIND
        .replay(two.clone(), &replay(&body, false, None))
        .unwrap_err();
    assert_eq!(
        error,
        "several API integrations are configured (crm, sms): name the one to post as"
    );
    let request = KIND
        .replay(two.clone(), &replay(&body, false, Some("sms")))
        .unwrap();
    assert_eq!(request.path, "/webhooks/api/sms");
    assert_eq!(
        verify(
            "sms-secret",
            NOW,
            &body,
            header(&request.headers, SIGNATURE_HEADER)
        ),
        Ok(())
    );
    let error = KIND
        .replay(two, &replay(&body, false, Some("nope")))
        .unwrap_err();
    assert_eq!(
        error,
        "no API integration named \"nope\" is configured (configured: crm, sms)"
    );
    let error = KIND
        .replay(json!({}), &replay(&body, false, None))
        .unwrap_err();
    assert!(
        error.starts_with("no API integration is configured"),
        "{error}"
    );
    let error = KIND
        .replay(section(), &replay(b"not json", true, None))
        .unwrap_err();
    assert!(error.starts_with("the API request is not JSON"), "{error}");
}
