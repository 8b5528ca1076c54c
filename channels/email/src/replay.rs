//! `switchboard replay webhooks/email/…`: a recorded mail or provider request, posted to the
//! route it belongs to the way that provider would post it, so the channel can be tried without
//! the provider.
//!
//! A raw `.eml` is signed with `email.raw_secret`; `mailgun.json` becomes a URL-encoded form
//! signed afresh with `email.mailgun_signing_key` (a new timestamp and one-time token every
//! time); `postmark.json` is posted as it is and `sendgrid.json` as a multipart form, both with
//! the Basic auth of `email.inbound_user`. With `--new-ids` every Message-ID is made new, so the
//! same file makes a new mail each time; without, replaying twice shows how retries are
//! recognised.

use base64::Engine;
use serde_json::Value;
use switchboard_channel::plugin::{Replay, ReplayRequest};

use crate::{
    Config,
    providers::{mailgun, raw},
};

/// The request that delivers `replay` the way its route expects.
pub(crate) fn build(config: &Config, replay: &Replay<'_>) -> Result<ReplayRequest, String> {
    let fresh_id = |text: &str| {
        if replay.new_ids {
            renew_message_id(text)
        } else {
            text.to_owned()
        }
    };
    let basic = || match (&config.inbound_user, &config.inbound_password) {
        (Some(user), Some(password)) => Ok(basic_auth(user, password)),
        _ => Err(
            "set EMAIL_INBOUND_USER and EMAIL_INBOUND_PASSWORD as the gateway has them".to_owned(),
        ),
    };
    let name = replay
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name.ends_with(".eml") {
        let Some(secret) = &config.raw_secret else {
            return Err("set EMAIL_RAW_SECRET as the gateway has it to sign raw mail".into());
        };
        let mail = fresh_id(&String::from_utf8_lossy(replay.body)).into_bytes();
        return Ok(ReplayRequest {
            path: "/webhooks/email/raw".into(),
            headers: vec![
                ("content-type".into(), "message/rfc822".into()),
                (raw::SIGNATURE_HEADER.into(), raw::sign(&mail, secret)),
            ],
            body: mail,
        });
    }
    let request: Value =
        serde_json::from_slice(replay.body).map_err(|e| format!("the request is not JSON: {e}"))?;
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
            let Some(key) = &config.mailgun_signing_key else {
                return Err(
                    "set MAILGUN_SIGNING_KEY as the gateway has it to sign Mailgun requests".into(),
                );
            };
            let mut form = fields(&request);
            let timestamp = replay.now.to_string();
            let token = uuid::Uuid::new_v4().simple().to_string();
            let signature = mailgun::sign(key, &timestamp, &token);
            form.extend([
                ("timestamp".to_owned(), timestamp),
                ("token".to_owned(), token),
                ("signature".to_owned(), signature),
            ]);
            let body = serde_urlencoded::to_string(&form)
                .map_err(|e| format!("cannot encode the Mailgun form: {e}"))?;
            Ok(ReplayRequest {
                path: "/webhooks/email/mailgun".into(),
                headers: vec![(
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                )],
                body: body.into_bytes(),
            })
        }
        "postmark.json" => {
            let authorization = basic()?;
            let json = fresh_id(&String::from_utf8_lossy(replay.body));
            Ok(ReplayRequest {
                path: "/webhooks/email/postmark".into(),
                headers: vec![
                    ("authorization".into(), authorization),
                    ("content-type".into(), "application/json".into()),
                ],
                body: json.into_bytes(),
            })
        }
        "sendgrid.json" => {
            let authorization = basic()?;
            let boundary = format!("switchboard-{}", uuid::Uuid::new_v4().simple());
            let body = multipart(&fields(&request), &boundary);
            Ok(ReplayRequest {
                path: "/webhooks/email/sendgrid".into(),
                headers: vec![
                    ("authorization".into(), authorization),
                    (
                        "content-type".into(),
                        format!("multipart/form-data; boundary={boundary}"),
                    ),
                ],
                body,
            })
        }
        other => Err(format!(
            "webhooks/email/ holds .eml files and mailgun.json, postmark.json, sendgrid.json; \
             got {other:?}"
        )),
    }
}

/// An `Authorization: Basic` value.
fn basic_auth(user: &str, password: &str) -> String {
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {credentials}")
}

/// A `multipart/form-data` body of text fields, as a browser (or SendGrid) sends it. The
/// boundary must not occur in the values: a random one does not.
pub(crate) fn multipart(fields: &[(String, String)], boundary: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        // Quotes and line breaks cannot appear in a quoted parameter; field names are plain.
        let name = name.replace(['"', '\r', '\n'], "_");
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(value.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn new_ids_make_a_mail_new() {
        let mail =
            "Message-ID: <abc@x.test>\r\nIn-Reply-To: <old@x.test>\r\nSubject: hi\r\n\r\nbody";
        let renewed = renew_message_id(mail);
        assert!(renewed.starts_with("Message-ID: <replayed."), "{renewed}");
        assert!(renewed.contains("abc@x.test>"));
        assert!(
            renewed.contains("In-Reply-To: <old@x.test>"),
            "threading stays: {renewed}"
        );
    }

    fn config() -> Config {
        Config {
            from: Some("Support <support@mail.example.com>".into()),
            mailgun_signing_key: Some("mailgun-key".into()),
            inbound_user: Some("postmaster".into()),
            inbound_password: Some("pw".into()),
            raw_secret: Some("raw-secret".into()),
            ..Config::default()
        }
    }

    fn replay<'a>(file: &'a str, body: &'a [u8]) -> Replay<'a> {
        Replay {
            file: Path::new(file),
            body,
            new_ids: false,
            account: None,
            now: 1_800_000_000,
        }
    }

    fn header<'a>(request: &'a ReplayRequest, name: &str) -> &'a str {
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    #[test]
    fn each_file_goes_to_its_route_signed() {
        let mail = b"Message-ID: <a@x.test>\r\nFrom: kim@x.test\r\n\r\nhi";
        let request = build(&config(), &replay("webhooks/email/new.eml", mail)).unwrap();
        assert_eq!(request.path, "/webhooks/email/raw");
        assert_eq!(
            header(&request, raw::SIGNATURE_HEADER),
            raw::sign(mail, "raw-secret")
        );

        let fields = br#"{"fields": {"from": "kim@x.test", "body-plain": "hi"}}"#;
        let request = build(&config(), &replay("webhooks/email/mailgun.json", fields)).unwrap();
        assert_eq!(request.path, "/webhooks/email/mailgun");
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&request.body).unwrap();
        let field = |name: &str| form.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(field("from"), "kim@x.test");
        assert_eq!(field("timestamp"), "1800000000");
        assert_eq!(
            field("signature"),
            mailgun::sign("mailgun-key", "1800000000", &field("token"))
        );

        let request = build(&config(), &replay("webhooks/email/postmark.json", b"{}")).unwrap();
        assert_eq!(request.path, "/webhooks/email/postmark");
        assert_eq!(
            header(&request, "authorization"),
            basic_auth("postmaster", "pw")
        );

        let request = build(&config(), &replay("webhooks/email/sendgrid.json", fields)).unwrap();
        assert_eq!(request.path, "/webhooks/email/sendgrid");
        assert!(header(&request, "content-type").starts_with("multipart/form-data; boundary="));
        let body = String::from_utf8(request.body.clone()).unwrap();
        assert!(body.contains("name=\"body-plain\"\r\n"), "{body}");
    }

    #[test]
    fn missing_secrets_and_unknown_files_are_explained() {
        let error =
            |file: &str, body: &[u8]| build(&Config::default(), &replay(file, body)).unwrap_err();
        assert_eq!(
            error("x.eml", b""),
            "set EMAIL_RAW_SECRET as the gateway has it to sign raw mail"
        );
        assert_eq!(
            error("mailgun.json", b"{}"),
            "set MAILGUN_SIGNING_KEY as the gateway has it to sign Mailgun requests"
        );
        assert_eq!(
            error("sendgrid.json", b"{}"),
            "set EMAIL_INBOUND_USER and EMAIL_INBOUND_PASSWORD as the gateway has them"
        );
        assert!(error("mailgun.json", b"nope").starts_with("the request is not JSON"));
        assert!(error("other.json", b"{}").contains("got \"other.json\""));
    }
}
