//! `switchboard replay <file>`: posts a recorded provider payload (the fixtures under
//! `webhooks/whatsapp/` and `webhooks/telegram/`) to a running gateway, authenticated the way the
//! provider would (signed, or with the webhook secret), so the channel can be tried without the
//! provider.
//!
//! A recorded message replayed now is a message written now: its timestamps are moved to the
//! present (otherwise WhatsApp's 24-hour window would be long closed). With `--new-ids` its
//! message ids are made unique too, so the same file can be replayed again and again; without it,
//! replaying a file twice shows how provider retries are recognised.

use std::{net::SocketAddr, path::Path};

use anyhow::Context as _;

use anyhow::bail;
use serde_json::Value;

use crate::config::Config;

/// Where a replay goes and how it is changed.
#[derive(Debug, Clone)]
pub struct Replay<'a> {
    /// The recorded payload.
    pub file: &'a Path,
    /// The gateway's base URL; default: its configured listen address.
    pub url: Option<String>,
    /// Give every message a new id.
    pub new_ids: bool,
    /// The Telegram bot to post to; default: the only one, or `telegram.name`.
    pub bot: Option<String>,
}

/// Posts the payload, prints the gateway's answer, and fails unless it was accepted.
pub async fn run(config: &Config, replay: Replay<'_>) -> anyhow::Result<()> {
    let channel = replay
        .file
        .parent()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    let body = std::fs::read(replay.file)
        .with_context(|| format!("cannot read {}", replay.file.display()))?;
    let base = replay
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", reachable(config.server.listen)));
    let base = base.trim_end_matches('/');
    let request = match channel {
        "whatsapp" => {
            let Some(secret) = &config.whatsapp.app_secret else {
                bail!(
                    "set WHATSAPP_APP_SECRET (or whatsapp.app_secret) to the gateway's app secret \
                     to sign WhatsApp payloads"
                );
            };
            let now = chrono::Utc::now().timestamp();
            let body = refresh_whatsapp(&body, now, replay.new_ids)?;
            reqwest::Client::new()
                .post(format!("{base}/webhooks/whatsapp"))
                .header("content-type", "application/json")
                .header(
                    switchboard_whatsapp::SIGNATURE_HEADER,
                    switchboard_whatsapp::sign(&body, secret),
                )
                .body(body)
        }
        "telegram" => {
            let bots = config.telegram.all_bots();
            let name = match (&replay.bot, bots.as_slice()) {
                (Some(name), _) => name.clone(),
                (None, [only]) => only.name.clone(),
                (None, _) => config.telegram.name.clone(),
            };
            let Some(secret) = config.telegram.bot(&name).and_then(|b| b.webhook_secret) else {
                bail!(
                    "set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET (or a [[telegram.bots]] \
                     entry named {name:?} with a webhook_secret) as the gateway has them"
                );
            };
            let now = chrono::Utc::now().timestamp();
            let body = refresh_telegram(&body, now, replay.new_ids)?;
            reqwest::Client::new()
                .post(format!("{base}/webhooks/telegram/{name}"))
                .header("content-type", "application/json")
                .header(switchboard_telegram::SECRET_HEADER, secret.expose())
                .body(body)
        }
        "email" => email_request(config, replay.file, &body, base, replay.new_ids)?,
        other => bail!(
            "cannot tell the channel of {}: replay takes files under webhooks/whatsapp/, \
             webhooks/telegram/ or webhooks/email/ (the directory names the channel), got {other:?}",
            replay.file.display()
        ),
    };
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {base}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("{status} {text}");
    if !status.is_success() {
        bail!("the gateway refused the payload");
    }
    Ok(())
}

/// The request that delivers a recorded mail the way its route expects: a raw `.eml` signed with
/// `email.raw_secret`; `mailgun.json` signed afresh with `email.mailgun_signing_key`;
/// `postmark.json` and `sendgrid.json` with the Basic auth of `email.inbound_user`.
fn email_request(
    config: &Config,
    file: &Path,
    body: &[u8],
    base: &str,
    new_ids: bool,
) -> anyhow::Result<reqwest::RequestBuilder> {
    let client = reqwest::Client::new();
    let email = &config.email;
    let fresh_id = |text: &str| {
        if new_ids {
            renew_message_id(text)
        } else {
            text.to_owned()
        }
    };
    let basic = || match (&email.inbound_user, &email.inbound_password) {
        (Some(user), Some(password)) => Ok((user.clone(), password.clone())),
        _ => Err(anyhow::anyhow!(
            "set EMAIL_INBOUND_USER and EMAIL_INBOUND_PASSWORD as the gateway has them"
        )),
    };
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name.ends_with(".eml") {
        let Some(secret) = &email.raw_secret else {
            bail!("set EMAIL_RAW_SECRET as the gateway has it to sign raw mail");
        };
        let mail = fresh_id(&String::from_utf8_lossy(body)).into_bytes();
        return Ok(client
            .post(format!("{base}/webhooks/email/raw"))
            .header("content-type", "message/rfc822")
            .header(
                switchboard_email::providers::raw::SIGNATURE_HEADER,
                switchboard_email::providers::raw::sign(&mail, secret),
            )
            .body(mail));
    }
    let request: Value = serde_json::from_slice(body).context("the request is not JSON")?;
    let fields = |request: &Value| -> Vec<(String, String)> {
        request["fields"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), fresh_id(v.as_str().unwrap_or_default())))
            .collect()
    };
    match name {
        "mailgun.json" => {
            let Some(key) = &email.mailgun_signing_key else {
                bail!("set MAILGUN_SIGNING_KEY as the gateway has it to sign Mailgun requests");
            };
            let mut form = fields(&request);
            let timestamp = chrono::Utc::now().timestamp().to_string();
            let token = uuid::Uuid::new_v4().simple().to_string();
            let signature = switchboard_email::providers::mailgun::sign(key, &timestamp, &token);
            form.extend([
                ("timestamp".to_owned(), timestamp),
                ("token".to_owned(), token),
                ("signature".to_owned(), signature),
            ]);
            Ok(client
                .post(format!("{base}/webhooks/email/mailgun"))
                .form(&form))
        }
        "postmark.json" => {
            let (user, password) = basic()?;
            let json = fresh_id(&String::from_utf8_lossy(body));
            Ok(client
                .post(format!("{base}/webhooks/email/postmark"))
                .basic_auth(user.expose(), Some(password.expose()))
                .header("content-type", "application/json")
                .body(json))
        }
        "sendgrid.json" => {
            let (user, password) = basic()?;
            let form = fields(&request)
                .into_iter()
                .fold(reqwest::multipart::Form::new(), |form, (k, v)| {
                    form.text(k, v)
                });
            Ok(client
                .post(format!("{base}/webhooks/email/sendgrid"))
                .basic_auth(user.expose(), Some(password.expose()))
                .multipart(form))
        }
        other => bail!(
            "webhooks/email/ holds .eml files and mailgun.json, postmark.json, sendgrid.json; \
             got {other:?}"
        ),
    }
}

/// The text with every Message-ID header (or Postmark's `"Message-ID"` value) made new, so that
/// the mail is a new one.
fn renew_message_id(text: &str) -> String {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(at) = rest.to_ascii_lowercase().find("message-id") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        // The id follows within the same line, between angle brackets.
        match (from.find('<'), from.find(['\n', '\r'])) {
            (Some(open), Some(end)) if open < end => {
                out.push_str(&from[..=open]);
                out.push_str(&format!("replayed.{suffix}."));
                rest = &from[open + 1..];
            }
            _ => {
                out.push_str(&from[..10]);
                rest = &from[10..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A listen address as a client reaches it (a wildcard address means this machine).
fn reachable(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    }
}

/// A WhatsApp webhook payload as if its messages and statuses happened at `now` (unix seconds);
/// with `new_ids`, its messages get ids never seen before.
pub fn refresh_whatsapp(body: &[u8], now: i64, new_ids: bool) -> anyhow::Result<Vec<u8>> {
    let mut payload: Value =
        serde_json::from_slice(body).context("the WhatsApp payload is not JSON")?;
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
    Ok(serde_json::to_vec_pretty(&payload)?)
}

/// A Telegram update as if it happened at `now` (unix seconds): every `date` and `edit_date` moves
/// to now. With `new_ids`, the update and its message get ids never seen before.
pub fn refresh_telegram(body: &[u8], now: i64, new_ids: bool) -> anyhow::Result<Vec<u8>> {
    let mut update: Value =
        serde_json::from_slice(body).context("the Telegram update is not JSON")?;
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
    Ok(serde_json::to_vec_pretty(&update)?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

#[cfg(test)]
mod telegram_tests {
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
    }
}

#[cfg(test)]
mod email_tests {
    #[test]
    fn new_ids_make_a_mail_new() {
        let mail =
            "Message-ID: <abc@x.test>\r\nIn-Reply-To: <old@x.test>\r\nSubject: hi\r\n\r\nbody";
        let renewed = super::renew_message_id(mail);
        assert!(renewed.starts_with("Message-ID: <replayed."), "{renewed}");
        assert!(renewed.contains("abc@x.test>"));
        assert!(
            renewed.contains("In-Reply-To: <old@x.test>"),
            "threading stays: {renewed}"
        );
    }
}
