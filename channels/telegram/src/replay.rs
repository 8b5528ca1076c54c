//! `switchboard replay webhooks/telegram/…`: a recorded update posted to the gateway the way
//! Telegram would post it (to the bot's webhook, with its secret), so the channel can be tried
//! without Telegram.
//!
//! A recorded message replayed now is a message written now: its timestamps are moved to the
//! present. With `new_ids` its update and message ids are made new too, so the same file can be
//! replayed again and again; without it, replaying a file twice shows how Telegram's retries are
//! recognised.

use serde_json::Value;
use switchboard_channel::plugin::{Replay, ReplayRequest};

use crate::{Config, SECRET_HEADER};

/// The request replaying `replay` to a bot of `config`: the bot `replay.account`, else the only
/// one, else the bot of `token` (`name`).
pub(crate) fn request(config: &Config, replay: &Replay<'_>) -> Result<ReplayRequest, String> {
    let bots = config.all_bots();
    let name = match (replay.account, bots.as_slice()) {
        (Some(name), _) => name.to_owned(),
        (None, [only]) => only.name.clone(),
        (None, _) => config.name.clone(),
    };
    let Some(secret) = config.bot(&name).and_then(|b| b.webhook_secret) else {
        return Err(format!(
            "set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET (or a [[telegram.bots]] \
             entry named {name:?} with a webhook_secret) as the gateway has them"
        ));
    };
    let body = refresh_telegram(replay.body, replay.now, replay.new_ids)?;
    Ok(ReplayRequest {
        path: format!("/webhooks/telegram/{name}"),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (SECRET_HEADER.into(), secret.expose().to_owned()),
        ],
        body,
    })
}

/// A Telegram update as if it happened at `now` (unix seconds): every `date` and `edit_date` moves
/// to now. With `new_ids`, the update and its message get ids never seen before.
pub fn refresh_telegram(body: &[u8], now: i64, new_ids: bool) -> Result<Vec<u8>, String> {
    let mut update: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the Telegram update is not JSON: {e}"))?;
    fn restamp(value: &mut Value, now: i64) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map.iter_mut() {
                    if (key == "date" || key == "edit_date") && inner.is_i64() {
                        *inner = Value::from(now);
                    } else {
                        restamp(inner, now);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| restamp(v, now)),
            _ => {}
        }
    }
    restamp(&mut update, now);
    if new_ids {
        // Fresh, increasing ids: seconds since 2020 keep them within Telegram's 32-bit range.
        let fresh = now.saturating_sub(1_577_836_800).max(1);
        if let Some(id) = update.get_mut("update_id") {
            *id = Value::from(fresh);
        }
        for kind in ["message", "edited_message"] {
            if let Some(id) = update.get_mut(kind).and_then(|m| m.get_mut("message_id")) {
                *id = Value::from(fresh);
            }
        }
        if let Some(id) = update
            .get_mut("callback_query")
            .and_then(|q| q.get_mut("id"))
        {
            *id = Value::from(format!("{fresh}"));
        }
    }
    serde_json::to_vec_pretty(&update).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;

    #[test]
    fn replayed_updates_happen_now() {
        let body = br#"{"update_id":1,"message":{"message_id":5,"date":1569518342,
            "chat":{"id":1,"type":"private"},"text":"hi",
            "reply_to_message":{"message_id":4,"date":1569518000,"chat":{"id":1,"type":"private"}}}}"#;
        let same: Value =
            serde_json::from_slice(&refresh_telegram(body, 1_800_000_000, false).unwrap()).unwrap();
        assert_eq!(same["message"]["date"], 1_800_000_000);
        assert_eq!(same["message"]["reply_to_message"]["date"], 1_800_000_000);
        assert_eq!(same["update_id"], 1);
        let fresh: Value =
            serde_json::from_slice(&refresh_telegram(body, 1_800_000_000, true).unwrap()).unwrap();
        assert_ne!(fresh["update_id"], 1);
        assert_ne!(fresh["message"]["message_id"], 5);
        assert_eq!(
            fresh["message"]["reply_to_message"]["message_id"], 4,
            "what it replies to stays"
        );
        assert!(
            refresh_telegram(b"nope", 1, false)
                .unwrap_err()
                .starts_with("the Telegram update is not JSON")
        );
    }

    fn replay<'a>(account: Option<&'a str>, body: &'a [u8]) -> Replay<'a> {
        Replay {
            file: Path::new("webhooks/telegram/text.json"),
            body,
            new_ids: false,
            account,
            now: 1_800_000_000,
        }
    }

    fn config(section: Value) -> Config {
        serde_json::from_value(section).unwrap()
    }

    #[test]
    fn the_request_goes_to_the_chosen_bot_with_its_secret() {
        let body = br#"{"update_id":1}"#;
        let one = config(json!({"token": "1:a", "name": "support", "webhook_secret": "s1"}));
        let request = request(&one, &replay(None, body)).unwrap();
        assert_eq!(request.path, "/webhooks/telegram/support");
        assert!(
            request
                .headers
                .contains(&(SECRET_HEADER.to_owned(), "s1".to_owned()))
        );
        assert!(
            request
                .headers
                .contains(&("content-type".to_owned(), "application/json".to_owned()))
        );

        let two = config(json!({
            "token": "1:a", "name": "support", "webhook_secret": "s1",
            "bots": [{"name": "sales", "token": "2:b", "webhook_secret": "s2"}]
        }));
        let request = super::request(&two, &replay(Some("sales"), body)).unwrap();
        assert_eq!(request.path, "/webhooks/telegram/sales");
        assert!(
            request
                .headers
                .contains(&(SECRET_HEADER.to_owned(), "s2".to_owned()))
        );
        // Several bots and none named: the bot of `token`.
        let request = super::request(&two, &replay(None, body)).unwrap();
        assert_eq!(request.path, "/webhooks/telegram/support");

        let error = super::request(&two, &replay(Some("other"), body)).unwrap_err();
        assert!(error.contains("named \"other\""), "{error}");
        let polling = config(json!({"token": "1:a", "mode": "polling"}));
        let error = super::request(&polling, &replay(None, body)).unwrap_err();
        assert!(error.starts_with("set TELEGRAM_BOT_TOKEN"), "{error}");
    }
}
