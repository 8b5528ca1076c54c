//! The e-mail channel end to end: mail in through the providers' webhooks and the raw route,
//! answers out over SMTP to a fake server, threads kept by reply token and Message-ID, quotes
//! stripped, and the guards: automated mail, forged and replayed webhooks, floods, size, SMTP
//! failures.

use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use switchboard::{
    config::Config,
    media_dir::MediaDir,
    retention::{Swept, UnlinkedFiles},
    store::{Db, conversations, messages, query},
    time::Clock,
};
use switchboard_channel::DeliveryStatus;
use switchboard_email::providers;

use crate::{
    both_backends,
    helpers::{Backend, TestApp, smtp::FakeSmtp},
};

both_backends!(
    a_mail_is_answered_by_mail_in_its_thread,
    a_reply_continues_its_conversation_with_only_the_new_text,
    mailgun_requests_must_be_signed_fresh_and_once,
    a_mails_file_is_linked_late_and_a_resent_mails_copy_removed,
);

const RAW_SECRET: &str = "raw-secret";
const MAILGUN_KEY: &str = "mailgun-signing-key";
const OPERATOR: &str = "operator-token";

/// Points the e-mail channel at the fake SMTP server, with every inbound route on.
fn on_email(smtp: &FakeSmtp) -> impl FnOnce(&mut Config) + '_ {
    move |config: &mut Config| {
        config.set(
            "email.from",
            "Switchboard Support <support@mail.example.com>",
        );
        config.set("email.smtp_url", smtp.url());
        config.set("email.raw_secret", RAW_SECRET);
        config.set("email.mailgun_signing_key", MAILGUN_KEY);
        config.set("email.inbound_user", "postmaster");
        config.set("email.inbound_password", "inbound-password");
        config.server.admin_token = Some(OPERATOR.into());
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/webhooks/email/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A plain mail from Ravi, with optional threading headers.
fn mail(
    message_id: &str,
    to: &str,
    subject: &str,
    body: &str,
    in_reply_to: Option<&str>,
) -> Vec<u8> {
    let threading = in_reply_to
        .map(|id| format!("In-Reply-To: <{id}>\r\nReferences: <{id}>\r\n"))
        .unwrap_or_default();
    format!(
        "From: Ravi Patel <ravi.patel@example.org>\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Tue, 11 Nov 2025 10:00:00 +0000\r\n{threading}\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// The token of a reply address `support+<token>@mail.example.com`.
fn token_of(reply_to: &str) -> String {
    reply_to
        .split('+')
        .nth(1)
        .and_then(|rest| rest.split('@').next())
        .unwrap_or_default()
        .to_owned()
}

async fn a_mail_is_answered_by_mail_in_its_thread(backend: Backend) {
    let smtp = FakeSmtp::start().await;
    let app = TestApp::spawn_with(&backend, on_email(&smtp)).await;
    let (status, body) = app.email(&fixture("new_mail.eml")).await;
    assert_eq!((status, &body["stored"]), (200, &json!(1)), "{body}");

    let sent = smtp.wait_for(1).await;
    let answer = &sent[0];
    assert_eq!(answer.to, ["ravi.patel@example.org"]);
    assert_eq!(answer.from, "support@mail.example.com");
    assert_eq!(
        answer.header("Subject").as_deref(),
        Some("Re: Opening hours")
    );
    let original = "<0e1d2c3b-4a59-4687-9a5b-4c3d2e1f0a9b@example.org>";
    assert_eq!(answer.header("In-Reply-To").as_deref(), Some(original));
    assert!(answer.header("References").unwrap().ends_with(original));
    let reply_to = answer.header("Reply-To").unwrap();
    let token = token_of(&reply_to);
    assert!(
        reply_to.contains("support+") && reply_to.ends_with("@mail.example.com>")
            || reply_to.ends_with("@mail.example.com"),
        "{reply_to}"
    );
    assert!(
        token.len() >= 32 && token.chars().all(|c| c.is_ascii_hexdigit()),
        "{token}"
    );
    let message_id = answer.header("Message-ID").unwrap();
    assert!(message_id.starts_with("<sb.") && message_id.ends_with("@mail.example.com>"));
    assert!(
        answer.data.contains("We're open Monday to Friday"),
        "{}",
        answer.data
    );
    assert!(
        answer.data.contains("text/html"),
        "multipart with an HTML part"
    );

    app.all_delivered().await;
    // The provider delivers the same mail again: it is recognised by its Message-ID.
    let (status, body) = app.email(&fixture("new_mail.eml")).await;
    assert_eq!((status, &body["duplicates"]), (200, &json!(1)), "{body}");
    app.all_answered().await;
    app.all_delivered().await;
    assert_eq!(smtp.received().len(), 1, "answered once");
    assert_eq!(app.count("messages").await, 2);
    let stored = messages::find_quoted(
        &mut app.store.reader(),
        switchboard_email::CHANNEL,
        message_id.trim_matches(['<', '>']),
    )
    .await
    .unwrap()
    .expect("the answer is known by its Message-ID");
    assert_eq!(stored.status, DeliveryStatus::Sent);
    let (title,): (Option<String>,) = app
        .store
        .reader()
        .fetch_one(query("SELECT title FROM conversations"))
        .await
        .unwrap();
    assert_eq!(
        title.as_deref(),
        Some("Opening hours"),
        "titled by the subject"
    );
}

async fn a_reply_continues_its_conversation_with_only_the_new_text(backend: Backend) {
    let smtp = FakeSmtp::start().await;
    let app = TestApp::spawn_with(&backend, |config| {
        on_email(&smtp)(config);
        config.routing.default_agent = "echo".into();
    })
    .await;
    app.email(&mail(
        "first@example.org",
        "support@mail.example.com",
        "Sunday hours",
        "Are you open on Sunday?",
        None,
    ))
    .await;
    let answer = smtp.wait_for(1).await.remove(0);
    let ours = answer.header("Message-ID").unwrap();
    let ours = ours.trim_matches(['<', '>']);
    let token = token_of(&answer.header("Reply-To").unwrap());

    // A Gmail-style reply: new text on top, the quoted mail below.
    let quoted = String::from(
        "Thanks! And on Monday?\r\n\r\nOn Tue, 11 Nov 2025 at 10:02, Switchboard Support \
         <support@mail.example.com> wrote:\r\n> Are you open on Sunday?\r\n> \r\n> -- \r\n> Reply to \
         this e-mail to continue the conversation.",
    );
    let reply = mail(
        "second@example.org",
        &format!("Switchboard Support <support+{token}@mail.example.com>"),
        "Re: Sunday hours",
        &quoted,
        Some(ours),
    );
    let (status, body) = app.email(&reply).await;
    assert_eq!((status, &body["stored"]), (200, &json!(1)), "{body}");
    let second = smtp.wait_for(2).await.remove(1);
    // The echo agent repeats what it was given: only the new text.
    assert!(
        second.data.starts_with_body("Thanks! And on Monday?"),
        "{}",
        second.data
    );
    assert_eq!(app.count("conversations").await, 1, "the same conversation");
    let stored = messages::find_by_provider_id(
        &mut app.store.reader(),
        switchboard_email::CHANNEL,
        "second@example.org",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(stored.content, "Thanks! And on Monday?");
    assert!(
        stored.metadata.to_map()["original_text"]
            .as_str()
            .unwrap()
            .contains("> Are you open on Sunday?"),
        "the full original is kept"
    );

    // The token alone (a reply without threading headers) finds the conversation too; another
    // sender with the same token does not get into it.
    app.email(&mail(
        "third@example.org",
        &format!("support+{token}@mail.example.com"),
        "one more thing",
        "And holidays?",
        None,
    ))
    .await;
    smtp.wait_for(3).await;
    assert_eq!(app.count("conversations").await, 1);
    let stranger = String::from_utf8(mail(
        "fourth@example.org",
        &format!("support+{token}@mail.example.com"),
        "Re: Sunday hours",
        "Let me in",
        Some(ours),
    ))
    .unwrap()
    .replace(
        "Ravi Patel <ravi.patel@example.org>",
        "Mallory <mallory@example.net>",
    );
    app.email(stranger.as_bytes()).await;
    smtp.wait_for(4).await;
    assert_eq!(
        app.count("conversations").await,
        2,
        "a stranger starts their own"
    );
}

/// The body of a received mail's text part starts with the text (after the headers).
trait BodyStart {
    fn starts_with_body(&self, text: &str) -> bool;
}

impl BodyStart for String {
    fn starts_with_body(&self, text: &str) -> bool {
        self.split("\r\n\r\n")
            .skip(1)
            .any(|part| part.trim_start().starts_with(text))
    }
}

fn mailgun_fields(timestamp: i64, token: &str, key: &str) -> Vec<(String, String)> {
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
    fields.push((
        "signature".into(),
        providers::mailgun::sign(key, &timestamp, token),
    ));
    fields
}

async fn mailgun_requests_must_be_signed_fresh_and_once(backend: Backend) {
    let smtp = FakeSmtp::start().await;
    let app = TestApp::spawn_with(&backend, on_email(&smtp)).await;
    let post = |fields: Vec<(String, String)>| {
        let request = app
            .client
            .post(app.url("/webhooks/email/mailgun"))
            .form(&fields);
        async move { crate::helpers::json_response(request.send().await.unwrap()).await }
    };
    let now = chrono::Utc::now().timestamp();
    let (status, body) = post(mailgun_fields(now, "forged-token-1", "not-the-key")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_signature")),
        "{body}"
    );
    let (status, body) = post(mailgun_fields(now - 600, "stale-token-1", MAILGUN_KEY)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("stale_signature")),
        "{body}"
    );
    assert_eq!(app.count("messages").await, 0);

    let fresh = mailgun_fields(now, "fresh-token-1", MAILGUN_KEY);
    let (status, body) = post(fresh.clone()).await;
    assert_eq!((status, &body["stored"]), (200, &json!(1)), "{body}");
    // The same request again is a replay: refused with 406, which tells Mailgun not to retry.
    let (status, body) = post(fresh).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (406, &json!("replayed")),
        "{body}"
    );
    smtp.wait_for(1).await;
    app.all_delivered().await;
    assert_eq!(app.count("messages").await, 2, "one mail, one answer");
    assert_eq!(smtp.received()[0].to, ["sheena@example.net"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automated_mail_is_never_answered() {
    let smtp = FakeSmtp::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_email(&smtp)).await;
    for file in ["auto_reply.eml", "bounce.eml"] {
        let (status, body) = app.email(&fixture(file)).await;
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("ignored")),
            "{file}: {body}"
        );
    }
    assert_eq!(app.count("messages").await, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(smtp.attempts(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_signature_stores_nothing() {
    let smtp = FakeSmtp::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_email(&smtp)).await;
    let body = fixture("new_mail.eml");
    let response = app
        .client
        .post(app.url("/webhooks/email/raw"))
        .header(
            "x-switchboard-signature",
            providers::raw::sign(&body, "guess"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, reply) = crate::helpers::json_response(response).await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (401, &json!("invalid_signature"))
    );
    assert_eq!(app.count("messages").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_trouble_is_retried_and_delivered_once() {
    let smtp = FakeSmtp::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_email(&smtp)).await;
    smtp.answer_next(["451 4.3.0 mailbox busy, try again later"]);
    app.email(&fixture("new_mail.eml")).await;
    smtp.wait_for(1).await;
    app.all_delivered().await;
    assert_eq!(smtp.attempts(), 2, "refused once, then accepted");
    assert_eq!(smtp.received().len(), 1, "delivered once");

    // A permanent refusal fails the message with the server's reason.
    smtp.answer_next(["550 5.1.1 user unknown"]);
    app.email(&mail(
        "x1@example.org",
        "support@mail.example.com",
        "Hi",
        "Hello there",
        None,
    ))
    .await;
    app.all_answered().await;
    app.all_delivered().await;
    let (status, error): (String, Option<String>) = app
        .store
        .reader()
        .fetch_one(query(
            "SELECT status, error FROM messages WHERE direction = 'outbound' ORDER BY created_at DESC LIMIT 1",
        ))
        .await
        .unwrap();
    assert_eq!(status, "failed");
    assert!(error.unwrap().starts_with("550"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmark_and_sendgrid_need_their_basic_auth() {
    let smtp = FakeSmtp::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_email(&smtp)).await;
    let postmark = fixture("postmark.json");
    let wrong = app
        .client
        .post(app.url("/webhooks/email/postmark"))
        .basic_auth("postmaster", Some("guess"))
        .header("content-type", "application/json")
        .body(postmark.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));
    let right = app
        .client
        .post(app.url("/webhooks/email/postmark"))
        .basic_auth("postmaster", Some("inbound-password"))
        .header("content-type", "application/json")
        .body(postmark)
        .send()
        .await
        .unwrap();
    let (status, body) = crate::helpers::json_response(right).await;
    assert_eq!((status, &body["stored"]), (200, &json!(1)), "{body}");

    let request: Value = serde_json::from_slice(&fixture("sendgrid.json")).unwrap();
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in request["fields"].as_object().unwrap() {
        form = form.text(name.clone(), value.as_str().unwrap().to_owned());
    }
    let sendgrid = app
        .client
        .post(app.url("/webhooks/email/sendgrid"))
        .basic_auth("postmaster", Some("inbound-password"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, body) = crate::helpers::json_response(sendgrid).await;
    assert_eq!((status, &body["stored"]), (200, &json!(1)), "{body}");
    smtp.wait_for(2).await;
}

/// The mail of `attachment.eml`, as stored.
async fn attachment_mail(app: &TestApp) -> messages::Message {
    messages::find_by_provider_id(
        &mut app.store.reader(),
        switchboard_email::CHANNEL,
        "b8f2c1d4-3e5a-4f6b-9c7d-8e9f0a1b2c3d@example.com",
    )
    .await
    .unwrap()
    .expect("the mail is stored")
}

/// `GET /v1/media/{id}` as the operator.
async fn fetched_by_operator(app: &TestApp, media_id: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/v1/media/{media_id}")))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
}

/// An admin erases the contact who wrote `mail`.
async fn erase_sender(app: &TestApp, mail: &messages::Message) {
    let conversation = conversations::get(&mut app.store.reader(), &mail.conversation_id)
        .await
        .unwrap()
        .unwrap();
    let (_, admin) = app.staff_token("adm@example.com", "admin").await;
    let (status, body) = app
        .staff_call(
            Method::DELETE,
            &format!("/v1/admin/contacts/{}", conversation.contact_id),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_are_kept_served_to_the_operator_and_erased_with_their_sender() {
    let smtp = FakeSmtp::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_email(&smtp)).await;
    let (status, body) = app.email(&fixture("attachment.eml")).await;
    assert_eq!(status, 200, "{body}");
    let stored = attachment_mail(&app).await;
    let attachment = &stored.attachments[0];
    assert_eq!(attachment.mime_type.as_deref(), Some("application/pdf"));
    let media_id = attachment.media_id.clone().expect("stored with the mail");
    let served = fetched_by_operator(&app, &media_id).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "application/pdf");
    let bytes = served.bytes().await.unwrap();
    assert!(
        bytes.starts_with(b"%PDF"),
        "{:?}",
        &bytes[..bytes.len().min(16)]
    );
    assert_eq!(Some(bytes.len() as u64), attachment.size);

    // Erasing the sender takes the file along with their messages.
    erase_sender(&app, &stored).await;
    assert_eq!(app.count("media").await, 0, "the mail's file is erased");
    let served = fetched_by_operator(&app, &media_id).await;
    assert_eq!(served.status(), 404);
}

async fn a_mails_file_is_linked_late_and_a_resent_mails_copy_removed(backend: Backend) {
    let smtp = FakeSmtp::start().await;
    let clock = Clock::system();
    let app = TestApp::spawn_with_clock(&backend, clock.clone(), on_email(&smtp)).await;
    let (status, body) = app.email(&fixture("attachment.eml")).await;
    assert_eq!(status, 200, "{body}");
    // The provider sends it again: the message is a resend, its file was kept once more.
    let (status, body) = app.email(&fixture("attachment.eml")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicates"], 1, "{body}");
    assert_eq!(body["stored"], 0, "{body}");
    assert_eq!(
        app.count("media").await,
        2,
        "the file, and the resend's copy"
    );
    let stored = attachment_mail(&app).await;
    let media_id = stored.attachments[0].media_id.clone().expect("kept");
    // A stop came between the mail's write and its file's link.
    app.store
        .execute(
            query("UPDATE media SET message_id = NULL, attachment = NULL WHERE id = $1")
                .bind(&media_id),
        )
        .await
        .unwrap();

    let sweep = UnlinkedFiles::new(
        app.store.clone(),
        clock.clone(),
        MediaDir::new(&app.config.media.dir),
        app.config.web.unused_upload_ttl,
    );
    assert_eq!(sweep.sweep().await.unwrap(), Swept::default(), "too early");
    clock.advance(app.config.web.unused_upload_ttl + Duration::from_secs(60));
    assert_eq!(
        sweep.sweep().await.unwrap(),
        Swept {
            linked: 1,
            removed: 1
        }
    );
    assert_eq!(app.count("media").await, 1);
    // The copy shared the file (same content): the file stays for the mail's row.
    assert_eq!(crate::uploads::files_in(&app.config.media.dir).len(), 1);
    let served = fetched_by_operator(&app, &media_id).await;
    assert_eq!(served.status(), 200);

    // Linked now, the file goes when its sender is erased.
    erase_sender(&app, &stored).await;
    assert_eq!(app.count("media").await, 0);
    let left = crate::uploads::files_in(&app.config.media.dir);
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_mail_is_answered_only_up_to_the_hourly_limit() {
    let smtp = FakeSmtp::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |config| {
        on_email(&smtp)(config);
        config.set("email.max_answers_per_hour", 2_i64);
    })
    .await;
    for n in 0..3 {
        app.email(&mail(
            &format!("flood-{n}@example.org"),
            "support@mail.example.com",
            &format!("Question {n}"),
            "What are your hours?",
            None,
        ))
        .await;
    }
    app.all_answered().await;
    app.all_delivered().await;
    assert_eq!(smtp.received().len(), 2);
    let last = messages::find_by_provider_id(
        &mut app.store.reader(),
        switchboard_email::CHANNEL,
        "flood-2@example.org",
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        last.metadata.to_map()["unanswered"]
            .as_str()
            .unwrap()
            .contains("within an hour"),
        "{:?}",
        last.metadata
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_mail_is_refused_clearly() {
    let smtp = FakeSmtp::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |config| {
        on_email(&smtp)(config);
        config.set("email.max_bytes", 10_000_i64);
    })
    .await;
    let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 20_000]);
    let (status, body) = app
        .email(&mail(
            "big@example.org",
            "support@mail.example.com",
            "Big",
            &big,
            None,
        ))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!("body_too_large")),
        "{body}"
    );
    assert_eq!(app.count("messages").await, 0);
}
