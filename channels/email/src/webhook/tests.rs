//! Every route's checks and answers, against an in-memory inbox: what a refused request changes
//! (nothing), what an accepted one hands over.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard_channel::{
    Attachment, BodyCheck, Checkpoint, Content, InboundEvent, InboxError, Webhook, WebhookAnswer,
    WebhookError, WebhookRequest,
    testing::{FakeInbox, webhook_request},
};

use super::EmailWebhook;
use crate::{
    Config,
    providers::{mailgun, raw},
    receive::{Received, receive},
};

const MAILGUN_KEY: &str = "mailgun-signing-key";
const RAW_SECRET: &str = "raw-secret";
const USER: &str = "postmaster";
const PASSWORD: &str = "inbound-password";
/// Basic `postmaster:inbound-password`.
const BASIC: &str = "Basic cG9zdG1hc3RlcjppbmJvdW5kLXBhc3N3b3Jk";
/// The clock of the fake inbox, in Unix seconds.
const NOW: i64 = 1_800_000_000;

fn config() -> Config {
    Config {
        from: Some("Switchboard Support <support@mail.example.com>".into()),
        mailgun_signing_key: Some(MAILGUN_KEY.into()),
        inbound_user: Some(USER.into()),
        inbound_password: Some(PASSWORD.into()),
        raw_secret: Some(RAW_SECRET.into()),
        ..Config::default()
    }
}

fn inbox() -> FakeInbox {
    FakeInbox::at(DateTime::<Utc>::from_timestamp(NOW, 0).unwrap())
}

fn fixture(name: &str) -> Vec<u8> {
    switchboard_channel::testing::fixture("email", name)
}

fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> WebhookRequest {
    webhook_request(method, path, headers)
}

fn post(path: &str, headers: &[(&str, &str)]) -> WebhookRequest {
    request(Method::POST, path, headers)
}

/// What the gateway does: the head first, then the body.
async fn call(
    webhook: &EmailWebhook,
    request: WebhookRequest,
    body: impl Into<Bytes>,
    inbox: &FakeInbox,
) -> Result<Value, WebhookError> {
    webhook.check(&request)?;
    match webhook.receive(request, body.into(), inbox).await? {
        WebhookAnswer::Json(value) => Ok(value),
        WebhookAnswer::Text(text) => panic!("a text answer: {text}"),
    }
}

fn refused(result: Result<Value, WebhookError>) -> (StatusCode, &'static str, String) {
    let error = result.expect_err("the request was accepted");
    (error.status, error.code, error.message)
}

fn raw_headers(body: &[u8], secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "message/rfc822".into()),
        (raw::SIGNATURE_HEADER, raw::sign(body, secret)),
    ]
}

fn raw_post(body: &[u8], secret: &str) -> WebhookRequest {
    let headers = raw_headers(body, secret);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    post("raw", &headers)
}

#[tokio::test]
async fn only_the_four_routes_exist_and_only_for_post() {
    let webhook = EmailWebhook::new(&config());
    for path in ["", "mailgun/", "other", "raw/x"] {
        let error = webhook.check(&post(path, &[])).unwrap_err();
        assert_eq!(
            (error.status, error.code, error.message.as_str()),
            (StatusCode::NOT_FOUND, "not_found", "route not found"),
            "{path:?}"
        );
    }
    for path in ["mailgun", "postmark", "sendgrid", "raw"] {
        for method in [Method::GET, Method::PUT] {
            let error = webhook.check(&request(method, path, &[])).unwrap_err();
            assert_eq!(error.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        }
    }
}

#[tokio::test]
async fn a_route_is_off_without_its_secret_or_the_gateways_address() {
    let off = |config: &Config, path: &str, headers: &[(&str, &str)]| {
        let error = EmailWebhook::new(config)
            .check(&post(path, headers))
            .unwrap_err();
        assert_eq!(
            (error.status, error.code),
            (StatusCode::NOT_FOUND, "channel_not_configured"),
            "{path}"
        );
        error.message
    };
    let none = Config {
        from: config().from,
        smtp_url: Some("smtp://localhost".into()),
        ..Config::default()
    };
    let form = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(
        off(&none, "mailgun", &form),
        "the email (mailgun) channel is not configured on this gateway"
    );
    assert_eq!(
        off(&none, "postmark", &[("authorization", BASIC)]),
        "the email (postmark, sendgrid) channel is not configured on this gateway"
    );
    assert_eq!(
        off(&none, "sendgrid", &[("authorization", BASIC)]),
        "the email (postmark, sendgrid) channel is not configured on this gateway"
    );
    assert_eq!(
        off(&none, "raw", &[]),
        "the email (raw) channel is not configured on this gateway"
    );
    // Half of the Basic-auth pair turns nothing on.
    let half = Config {
        inbound_password: None,
        ..config()
    };
    off(&half, "postmark", &[("authorization", BASIC)]);
    // Secrets without the gateway's address: nowhere to receive mail for.
    let nameless = Config {
        from: None,
        ..config()
    };
    for path in ["mailgun", "postmark", "sendgrid", "raw"] {
        off(&nameless, path, &form);
    }
}

#[tokio::test]
async fn raw_mail_is_refused_unread_without_a_signature_and_unstored_with_a_wrong_one() {
    let webhook = EmailWebhook::new(&config());
    for signature in [None, Some("sha256=abc"), Some("md5=00")] {
        let headers: Vec<(&str, &str)> = signature
            .map(|s| (raw::SIGNATURE_HEADER, s))
            .into_iter()
            .collect();
        let error = webhook.check(&post("raw", &headers)).unwrap_err();
        assert_eq!(
            (error.status, error.code, error.message.as_str()),
            (
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "the X-Switchboard-Signature header is missing or does not match the body"
            )
        );
    }
    let body = fixture("new_mail.eml");
    let inbox = inbox();
    let (status, code, _) = refused(call(&webhook, raw_post(&body, "guess"), body, &inbox).await);
    assert_eq!(
        (status, code),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    assert!(inbox.batches().is_empty());
}

#[tokio::test]
async fn raw_mail_is_handed_over_with_its_message_id_and_sender() {
    let webhook = EmailWebhook::new(&config());
    let body = fixture("new_mail.eml");
    assert_eq!(
        webhook.check(&raw_post(&body, RAW_SECRET)),
        Ok(BodyCheck::Unverified {
            max_bytes: Config::default().max_bytes
        })
    );
    let inbox = inbox();
    let answer = call(&webhook, raw_post(&body, RAW_SECRET), body, &inbox)
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({"status": "ok", "events": 1, "stored": 1, "duplicates": 0, "statuses": 0})
    );
    let batches = inbox.batches();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].1, None, "no checkpoint for the raw route");
    let [message] = inbox.messages().try_into().unwrap();
    assert_eq!(
        message.provider_message_id.as_deref(),
        Some("0e1d2c3b-4a59-4687-9a5b-4c3d2e1f0a9b@example.org")
    );
    assert_eq!(message.from.external_id, "ravi.patel@example.org");
    assert_eq!(message.account, "support@mail.example.com");

    // Something that is not a mail, signed: 400 with the parser's reason.
    let (status, code, message) =
        refused(call(&webhook, raw_post(b"", RAW_SECRET), Bytes::new(), &inbox).await);
    assert_eq!((status, code), (StatusCode::BAD_REQUEST, "invalid_payload"));
    assert_eq!(message, "not an e-mail: the body is empty");
}

#[tokio::test]
async fn automated_mail_is_acknowledged_and_not_ingested() {
    let webhook = EmailWebhook::new(&config());
    let inbox = inbox();
    for file in ["auto_reply.eml", "bounce.eml"] {
        let body = fixture(file);
        let answer = call(&webhook, raw_post(&body, RAW_SECRET), body, &inbox)
            .await
            .unwrap();
        assert_eq!(answer["status"], "ignored", "{file}: {answer}");
        assert!(answer["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
    assert!(inbox.batches().is_empty());
}

#[tokio::test]
async fn a_poller_moves_past_automated_mail_a_webhook_records_nothing() {
    let ours = config().reply_address().unwrap();
    let email = crate::parse_mime(&fixture("auto_reply.eml"), &ours).unwrap();
    let inbox = inbox();
    let cursor = Checkpoint::Cursor {
        name: "imap:u@h/INBOX".into(),
        value: "1:7".into(),
    };
    let received = receive(&inbox, &ours, 20, email.clone(), Some(cursor.clone()))
        .await
        .unwrap();
    assert!(matches!(received, Received::Ignored { .. }));
    assert_eq!(inbox.batches(), vec![(vec![], Some(cursor))]);

    let inbox = self::inbox();
    let once = Checkpoint::Once {
        scope: "mailgun".into(),
        token: "t".into(),
    };
    receive(&inbox, &ours, 20, email, Some(once)).await.unwrap();
    assert!(inbox.batches().is_empty());
}

/// A mail with `count` small PDF attachments.
fn mail_with_attachments(count: usize) -> Vec<u8> {
    let mut mail = String::from(
        "From: Kim Lee <kim@example.org>\r\nTo: support@mail.example.com\r\n\
         Subject: Papers\r\nMessage-ID: <papers@example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHere they are.\r\n",
    );
    for n in 1..=count {
        mail.push_str(&format!(
            "--b\r\nContent-Type: application/pdf; name=\"f{n}.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"f{n}.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
        ));
    }
    mail.push_str("--b--\r\n");
    mail.into_bytes()
}

#[tokio::test]
async fn attachments_travel_inline_up_to_max_attachments() {
    let webhook = EmailWebhook::new(&Config {
        max_attachments: 2,
        ..config()
    });
    let inbox = inbox();
    let body = mail_with_attachments(3);
    call(&webhook, raw_post(&body, RAW_SECRET), body, &inbox)
        .await
        .unwrap();
    let [message] = inbox.messages().try_into().unwrap();
    let names: Vec<_> = message
        .files
        .iter()
        .map(|f| f.filename.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["f1.pdf", "f2.pdf"], "the first ones are kept");
    assert_eq!(&message.files[0].bytes[..], b"%PDF-1.4\n");
    assert_eq!(message.metadata["attachments_dropped"], 1);
    let Content::Media {
        attachments,
        caption,
    } = &message.content
    else {
        panic!("not media: {:?}", message.content);
    };
    assert_eq!(caption.as_deref(), Some("Here they are."));
    let sources: Vec<Option<usize>> = attachments.iter().map(Attachment::inline_index).collect();
    assert_eq!(sources, [Some(0), Some(1)]);

    // Within the cap, nothing is said about dropping.
    let inbox = self::inbox();
    let body = mail_with_attachments(2);
    call(&webhook, raw_post(&body, RAW_SECRET), body, &inbox)
        .await
        .unwrap();
    let [message] = inbox.messages().try_into().unwrap();
    assert_eq!(message.files.len(), 2);
    assert!(!message.metadata.contains_key("attachments_dropped"));
}

#[tokio::test]
async fn the_inboxs_refusals_are_the_answer() {
    let webhook = EmailWebhook::new(&config());
    let inbox = inbox();
    inbox.fail_with(InboxError::TooLarge { limit: 1000 });
    let body = mail_with_attachments(1);
    let (status, code, _) =
        refused(call(&webhook, raw_post(&body, RAW_SECRET), body.clone(), &inbox).await);
    assert_eq!(
        (status, code),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    inbox.fail_with(InboxError::Unavailable("disk full".into()));
    let (status, _, message) =
        refused(call(&webhook, raw_post(&body, RAW_SECRET), body, &inbox).await);
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !message.contains("disk full"),
        "the gateway's trouble stays inside"
    );
}

/// The fields of `mailgun.json` signed at `timestamp` with `key`, URL-encoded.
fn mailgun_form(timestamp: i64, token: &str, key: &str) -> String {
    let request: Value = serde_json::from_slice(&fixture("mailgun.json")).unwrap();
    let mut fields: Vec<(String, String)> = request["fields"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let timestamp = timestamp.to_string();
    fields.push(("timestamp".into(), timestamp.clone()));
    fields.push(("token".into(), token.into()));
    fields.push(("signature".into(), mailgun::sign(key, &timestamp, token)));
    serde_urlencoded::to_string(fields).unwrap()
}

fn urlencoded() -> WebhookRequest {
    post(
        "mailgun",
        &[("content-type", "application/x-www-form-urlencoded")],
    )
}

#[tokio::test]
async fn mailgun_requests_must_be_signed_fresh_and_once() {
    let webhook = EmailWebhook::new(&config());
    assert_eq!(
        webhook.check(&urlencoded()),
        Ok(BodyCheck::Unverified {
            max_bytes: Config::default().max_bytes
        })
    );
    let inbox = inbox();
    let forged = mailgun_form(NOW, "forged-token", "not-the-key");
    let (status, code, message) = refused(call(&webhook, urlencoded(), forged, &inbox).await);
    assert_eq!(
        (status, code),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    assert_eq!(
        message,
        "the Mailgun signature is missing, wrong or too old"
    );
    let stale = mailgun_form(NOW - 600, "stale-token", MAILGUN_KEY);
    let (status, code, _) = refused(call(&webhook, urlencoded(), stale, &inbox).await);
    assert_eq!(
        (status, code),
        (StatusCode::UNAUTHORIZED, "stale_signature")
    );
    let unsigned = "from=kim%40example.org&body-plain=hi";
    let (status, code, _) = refused(call(&webhook, urlencoded(), unsigned, &inbox).await);
    assert_eq!(
        (status, code),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    assert!(
        inbox.batches().is_empty(),
        "refused requests change nothing"
    );

    let fresh = mailgun_form(NOW - 10, "fresh-token", MAILGUN_KEY);
    let answer = call(&webhook, urlencoded(), fresh.clone(), &inbox)
        .await
        .unwrap();
    assert_eq!(answer["stored"], 1, "{answer}");
    assert_eq!(
        inbox.batches()[0].1,
        Some(Checkpoint::Once {
            scope: "mailgun".into(),
            token: "fresh-token".into()
        })
    );
    let [message] = inbox.messages().try_into().unwrap();
    assert_eq!(message.from.external_id, "sheena@example.net");
    // The gateway refuses the token a second time.
    let (status, code, _) = refused(call(&webhook, urlencoded(), fresh, &inbox).await);
    assert_eq!((status, code), ("406".parse().unwrap(), "replayed"));
}

#[tokio::test]
async fn mailgun_takes_multipart_forms_with_files() {
    let webhook = EmailWebhook::new(&config());
    let timestamp = NOW.to_string();
    let signature = mailgun::sign(MAILGUN_KEY, &timestamp, "multipart-token");
    let mut body = Vec::new();
    for (name, value) in [
        ("from", "Kim Lee <kim@example.org>"),
        ("recipient", "support@mail.example.com"),
        ("subject", "The invoice"),
        ("body-plain", "Attached."),
        ("Message-Id", "<mg1@example.org>"),
        ("timestamp", &timestamp),
        ("token", "multipart-token"),
        ("signature", &signature),
    ] {
        body.extend_from_slice(
            format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        b"--XyZ\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"invoice.pdf\"\r\n\
          Content-Type: application/pdf\r\n\r\n%PDF-1.4 tiny\r\n--XyZ--\r\n",
    );
    let request = post(
        "mailgun",
        &[("content-type", "multipart/form-data; boundary=XyZ")],
    );
    let inbox = inbox();
    let answer = call(&webhook, request, body, &inbox).await.unwrap();
    assert_eq!(answer["stored"], 1, "{answer}");
    let [message] = inbox.messages().try_into().unwrap();
    assert_eq!(
        message.provider_message_id.as_deref(),
        Some("mg1@example.org")
    );
    let [file] = message.files.as_slice() else {
        panic!("{:?}", message.files);
    };
    assert_eq!(file.filename.as_deref(), Some("invoice.pdf"));
    assert_eq!(file.mime_type, "application/pdf");
    assert_eq!(&file.bytes[..], b"%PDF-1.4 tiny");
}

#[tokio::test]
async fn form_routes_refuse_other_content_types_unread() {
    let webhook = EmailWebhook::new(&config());
    for headers in [vec![("content-type", "application/json")], vec![]] {
        let error = webhook.check(&post("mailgun", &headers)).unwrap_err();
        assert_eq!(
            (error.status, error.code),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        );
        let mut headers = headers.clone();
        headers.push(("authorization", BASIC));
        let error = webhook.check(&post("sendgrid", &headers)).unwrap_err();
        assert_eq!(error.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    // Basic auth comes first: a stranger learns nothing about the route.
    let error = webhook
        .check(&post("sendgrid", &[("content-type", "text/plain")]))
        .unwrap_err();
    assert_eq!(error.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn postmark_needs_its_basic_auth() {
    let webhook = EmailWebhook::new(&config());
    let inbox = inbox();
    let body = fixture("postmark.json");
    let wrong = "Basic cG9zdG1hc3RlcjpndWVzcw=="; // postmaster:guess
    for headers in [vec![("authorization", wrong)], vec![]] {
        let mut headers = headers;
        headers.push(("content-type", "application/json"));
        let error = webhook.check(&post("postmark", &headers)).unwrap_err();
        assert_eq!(
            (error.status, error.code),
            (StatusCode::UNAUTHORIZED, "unauthenticated")
        );
        assert_eq!(error.header.as_ref().map(|h| h.0), Some("www-authenticate"));
        // Even handed the body, the route refuses it.
        let error = webhook
            .receive(post("postmark", &headers), body.clone().into(), &inbox)
            .await
            .unwrap_err();
        assert_eq!(error.status, StatusCode::UNAUTHORIZED);
    }
    assert!(inbox.batches().is_empty());

    let right = post(
        "postmark",
        &[
            ("authorization", BASIC),
            ("content-type", "application/json"),
        ],
    );
    assert_eq!(
        webhook.check(&right),
        Ok(BodyCheck::Trusted {
            max_bytes: Config::default().max_bytes
        })
    );
    let answer = call(&webhook, right, body, &inbox).await.unwrap();
    assert_eq!(answer["stored"], 1, "{answer}");
    let (status, code, _) = refused(
        call(
            &webhook,
            post("postmark", &[("authorization", BASIC)]),
            "[1, 2]",
            &inbox,
        )
        .await,
    );
    assert_eq!((status, code), (StatusCode::BAD_REQUEST, "invalid_payload"));
}

#[tokio::test]
async fn sendgrid_needs_its_basic_auth() {
    let webhook = EmailWebhook::new(&config());
    let request: Value = serde_json::from_slice(&fixture("sendgrid.json")).unwrap();
    let fields: Vec<(String, String)> = request["fields"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let body = crate::replay::multipart(&fields, "sendgrid-boundary");
    let content_type = "multipart/form-data; boundary=sendgrid-boundary";
    let inbox = inbox();
    let wrong = "Basic cG9zdG1hc3RlcjpndWVzcw==";
    let error = webhook
        .receive(
            post(
                "sendgrid",
                &[("authorization", wrong), ("content-type", content_type)],
            ),
            body.clone().into(),
            &inbox,
        )
        .await
        .unwrap_err();
    assert_eq!(error.status, StatusCode::UNAUTHORIZED);
    assert!(inbox.batches().is_empty());

    let right = post(
        "sendgrid",
        &[("authorization", BASIC), ("content-type", content_type)],
    );
    let answer = call(&webhook, right, body, &inbox).await.unwrap();
    assert_eq!(answer["stored"], 1, "{answer}");
    assert!(matches!(
        &inbox.batches()[0].0[0],
        InboundEvent::Message(m) if m.from.external_id.contains('@')
    ));
    // A broken form is the sender's fault.
    let right = post(
        "sendgrid",
        &[("authorization", BASIC), ("content-type", content_type)],
    );
    let (status, code, _) = refused(call(&webhook, right, "--nope", &inbox).await);
    assert_eq!((status, code), (StatusCode::BAD_REQUEST, "invalid_payload"));
}
