//! `switchboard replay webhooks/whatsapp/…`: a recorded delivery posted to a running gateway as
//! Meta would post it, so the channel can be tried without Meta.
//!
//! A recorded message replayed now is a message written now: its timestamps move to the present
//! (otherwise WhatsApp's 24-hour window would be long closed). With new ids the same file can be
//! replayed again and again; without, replaying it twice shows how Meta's retries are recognised.

use serde_json::Value;
use switchboard_channel::plugin::{Replay, ReplayRequest};

use crate::{CHANNEL, Config, SIGNATURE_HEADER, sign};

/// The request that delivers `replay` to the gateway configured by `config`, signed with its app
/// secret.
pub(crate) fn request(config: &Config, replay: &Replay<'_>) -> Result<ReplayRequest, String> {
    let Some(secret) = &config.app_secret else {
        return Err(
            "set WHATSAPP_APP_SECRET (or whatsapp.app_secret) to the gateway's app secret \
                    to sign WhatsApp payloads"
                .into(),
        );
    };
    let body = refresh_whatsapp(replay.body, replay.now, replay.new_ids)?;
    Ok(ReplayRequest {
        path: format!("/webhooks/{CHANNEL}"),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (SIGNATURE_HEADER.into(), sign(&body, secret)),
        ],
        body,
    })
}

/// A WhatsApp webhook payload as if its messages and statuses happened at `now` (unix seconds);
/// with `new_ids`, its messages get ids never seen before.
pub fn refresh_whatsapp(body: &[u8], now: i64, new_ids: bool) -> Result<Vec<u8>, String> {
    let mut payload: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the WhatsApp payload is not JSON: {e}"))?;
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    // Only keys that exist are touched: indexing a JSON value mutably would add missing ones.
    let entries = payload.get_mut("entry").and_then(Value::as_array_mut);
    for entry in entries.into_iter().flatten() {
        let changes = entry.get_mut("changes").and_then(Value::as_array_mut);
        for change in changes.into_iter().flatten() {
            let Some(value) = change.get_mut("value") else {
                continue;
            };
            for key in ["messages", "statuses"] {
                let items = value.get_mut(key).and_then(Value::as_array_mut);
                for item in items.into_iter().flatten() {
                    if let Some(timestamp) = item.get_mut("timestamp") {
                        *timestamp = Value::String(now.to_string());
                    }
                    if new_ids
                        && key == "messages"
                        && let Some(id) = item.get_mut("id")
                        && let Some(old) = id.as_str()
                    {
                        *id = Value::String(format!("{old}.{suffix}"));
                    }
                }
            }
        }
    }
    serde_json::to_vec_pretty(&payload).map_err(|e| format!("cannot write the payload: {e}"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;
    use switchboard_channel::ChannelKind;

    use super::*;
    use crate::{KIND, verify_signature};

    #[test]
    fn replayed_payloads_happen_now_and_may_get_new_ids() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
            "metadata":{"phone_number_id":"106"},
            "messages":[{"from":"1","id":"wamid.a","timestamp":"1739321024","type":"text","text":{"body":"hi"}}],
            "statuses":[{"id":"wamid.b","status":"read","timestamp":"1739321025"}]}}]}]}"#;
        let same = refresh_whatsapp(body, 1_800_000_000, false).unwrap();
        let same: Value = serde_json::from_slice(&same).unwrap();
        let value = &same["entry"][0]["changes"][0]["value"];
        assert_eq!(value["messages"][0]["timestamp"], "1800000000");
        assert_eq!(value["statuses"][0]["timestamp"], "1800000000");
        assert_eq!(value["messages"][0]["id"], "wamid.a");

        let fresh = refresh_whatsapp(body, 1_800_000_000, true).unwrap();
        let fresh: Value = serde_json::from_slice(&fresh).unwrap();
        let value = &fresh["entry"][0]["changes"][0]["value"];
        let id = value["messages"][0]["id"].as_str().unwrap();
        assert!(id.starts_with("wamid.a.") && id.len() > 10, "{id}");
        assert_eq!(
            value["statuses"][0]["id"], "wamid.b",
            "statuses keep their ids"
        );

        let only_messages = br#"{"entry":[{"changes":[{"value":{"messages":[]}}]}]}"#;
        let refreshed: Value =
            serde_json::from_slice(&refresh_whatsapp(only_messages, 1, true).unwrap()).unwrap();
        assert!(
            refreshed["entry"][0]["changes"][0]["value"]
                .get("statuses")
                .is_none(),
            "no keys are added"
        );
    }

    fn replay(body: &[u8]) -> Replay<'_> {
        Replay {
            file: Path::new("webhooks/whatsapp/text.json"),
            body,
            new_ids: false,
            account: None,
            now: 1_800_000_000,
        }
    }

    #[test]
    fn a_replay_is_signed_as_meta_signs() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let section = json!({"app_secret": "s3cret", "verify_token": "t"});
        let request = KIND.replay(section, &replay(body)).unwrap();
        assert_eq!(request.path, "/webhooks/whatsapp");
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(header("content-type"), Some("application/json"));
        assert_eq!(
            verify_signature(header(SIGNATURE_HEADER), &request.body, "s3cret"),
            Ok(())
        );
    }

    #[test]
    fn a_replay_needs_the_app_secret() {
        let error = KIND.replay(json!({}), &replay(b"{}")).unwrap_err();
        assert_eq!(
            error,
            "set WHATSAPP_APP_SECRET (or whatsapp.app_secret) to the gateway's app secret to \
             sign WhatsApp payloads"
        );
        let error = KIND
            .replay(
                json!({"app_secret": "s", "verify_token": "t"}),
                &replay(b"nope"),
            )
            .unwrap_err();
        assert!(
            error.starts_with("the WhatsApp payload is not JSON"),
            "{error}"
        );
    }
}
