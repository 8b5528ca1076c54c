//! The real [`SmtpSender`] (lettre included) against a fake SMTP server.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use lettre::{Message as Mail, message::Mailbox};
use mail_parser::{MessageParser, MimeHeaders};
use switchboard_channel::{Attachment, Choice, MediaKind, OutboundContent, Thread, ThreadLine};

use super::*;
use crate::ReplyAddress;
use crate::testing::{FakeSmtp, Received, Stage};

const TOKEN: &str = "5f0c2a9e8d7b4c3a9e1f2d3c4b5a6978";
const USER: &str = "ada@example.org";
const PARENT: &str = "CAF=x7Yq+abc@mail.gmail.com";

fn settings(url: &str) -> SmtpSettings {
    SmtpSettings {
        url: url.to_owned(),
        from: "Acme Support <support@example.com>".into(),
        reply_to: ReplyAddress {
            local: "reply".into(),
            domain: "in.example.com".into(),
        },
        message_id_domain: "mail.example.com".into(),
        timeout: Duration::from_secs(5),
    }
}

fn sender(fake: &FakeSmtp) -> SmtpSender {
    SmtpSender::new(settings(&fake.url())).unwrap()
}

fn at(minute: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 3, 14, minute, 0).unwrap()
}

fn thread() -> Thread {
    Thread {
        subject: Some("Order 42".into()),
        in_reply_to: Some(PARENT.into()),
        // The parent is not last: the sender must move it there.
        references: vec![
            "first@mail.gmail.com".into(),
            PARENT.into(),
            "sb.m-0.0a1b2c3d@mail.example.com".into(),
        ],
        token: TOKEN.into(),
        history: vec![
            ThreadLine {
                role: "user".into(),
                author: Some("Ada".into()),
                text: "Where is my order?\nIt was due Monday.".into(),
                at: at(0),
            },
            ThreadLine {
                role: "ai".into(),
                author: None,
                text: "Let me check that for you.".into(),
                at: at(1),
            },
            ThreadLine {
                role: "expert".into(),
                author: Some("Grace".into()),
                text: "I'm looking into it.".into(),
                at: at(2),
            },
        ],
    }
}

fn message(content: OutboundContent) -> OutboundMessage {
    OutboundMessage {
        message_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        account: "support".into(),
        to: USER.into(),
        reply_to: None,
        content,
        service_window_open: true,
        thread: Some(thread()),
    }
}

fn text(body: &str) -> OutboundContent {
    OutboundContent::Text { body: body.into() }
}

fn permanent_code(error: &SendError) -> &str {
    match error {
        SendError::Permanent { code, .. } => code,
        other => panic!("not permanent: {other:?}"),
    }
}

fn assert_transient(error: &SendError) {
    assert!(
        matches!(error, SendError::Transient { .. }),
        "not transient: {error:?}"
    );
}

/// The text and HTML parts of a received message, decoded.
fn parts(received: &Received) -> (String, String) {
    let parsed = MessageParser::default()
        .parse(received.data.as_bytes())
        .unwrap();
    assert_eq!(parsed.text_body.len(), 1);
    assert_eq!(parsed.html_body.len(), 1);
    assert!(parsed.attachments.is_empty());
    let types: Vec<_> = parsed
        .parts
        .iter()
        .map(|part| {
            let ct = part.content_type().unwrap();
            format!(
                "{}/{} {}",
                ct.ctype(),
                ct.subtype().unwrap_or_default(),
                ct.attribute("charset").unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            "multipart/alternative ",
            "text/plain utf-8",
            "text/html utf-8"
        ]
    );
    (
        parsed.body_text(0).unwrap().replace("\r\n", "\n"),
        parsed.body_html(0).unwrap().replace("\r\n", "\n"),
    )
}

#[tokio::test]
async fn sends_a_threaded_reply() {
    let fake = FakeSmtp::start().await;
    let sent = sender(&fake)
        .send(&message(text(
            "It ships today.\nTracking follows. <script>alert(1)</script>",
        )))
        .await
        .unwrap();
    assert_eq!(sent.substituted, None);

    let received = fake.only_message();
    assert_eq!(received.from, "support@example.com");
    assert_eq!(received.to, [USER]);
    assert_eq!(received.auth, None);
    assert_eq!(fake.connections(), 1);
    assert!(received.data.is_ascii(), "lettre encodes everything");

    let header = |name: &str| {
        received
            .header(name)
            .unwrap_or_else(|| panic!("no {name} in {}", received.data))
    };
    assert_eq!(header("From"), "\"Acme Support\" <support@example.com>");
    assert_eq!(header("To"), USER);
    assert_eq!(
        header("Reply-To"),
        format!("\"Acme Support\" <reply+{TOKEN}@in.example.com>")
    );
    assert_eq!(header("Subject"), "Re: Order 42");
    assert_eq!(header("In-Reply-To"), format!("<{PARENT}>"));
    assert_eq!(
        header("References"),
        format!("<first@mail.gmail.com> <sb.m-0.0a1b2c3d@mail.example.com> <{PARENT}>")
    );
    assert_eq!(header("X-Auto-Response-Suppress"), "All");
    assert_eq!(header("MIME-Version"), "1.0");
    assert!(header("Content-Type").starts_with("multipart/alternative;"));
    assert!(
        chrono::DateTime::parse_from_rfc2822(&header("Date")).is_ok(),
        "{}",
        header("Date")
    );

    // Our Message-ID, and what the gateway stores.
    let message_id = header("Message-ID");
    let bare = message_id
        .strip_prefix('<')
        .and_then(|id| id.strip_suffix('>'))
        .unwrap();
    assert_eq!(sent.provider_message_id, bare);
    let random = bare
        .strip_prefix("sb.0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b.")
        .and_then(|rest| rest.strip_suffix("@mail.example.com"))
        .unwrap();
    assert_eq!(random.len(), 8);
    assert!(random.chars().all(|c| c.is_ascii_hexdigit()));

    let (text, html) = parts(&received);
    assert!(
        text.starts_with(
            "It ships today.\nTracking follows. <script>alert(1)</script>\n\n----\n\
             Earlier in this conversation, newest first:\n\n\
             On 3 Mar 2025, 14:02 UTC, Grace wrote:\n> I'm looking into it.\n\n\
             On 3 Mar 2025, 14:01 UTC, Assistant wrote:\n> Let me check that for you.\n\n\
             On 3 Mar 2025, 14:00 UTC, You wrote:\n> Where is my order?\n> It was due Monday.\n\n\
             -- \nReply to this e-mail to continue the conversation."
        ),
        "{text}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("It ships today.<br/>Tracking follows. &#60;script&#62;"),
        "{html}"
    );
    assert!(html.contains("border-left"), "{html}");
    assert!(html.contains("<strong>Grace</strong>"), "{html}");
    assert!(
        html.contains("Where is my order?<br/>It was due Monday."),
        "{html}"
    );
    assert!(html.contains("Reply to this e-mail to continue the conversation."));
}

#[tokio::test]
async fn a_subject_with_a_reply_prefix_keeps_it() {
    let fake = FakeSmtp::start().await;
    let mut message = message(text("Hi"));
    if let Some(thread) = message.thread.as_mut() {
        thread.subject = Some("AW: Bestellung".into());
    }
    sender(&fake).send(&message).await.unwrap();
    assert_eq!(
        fake.only_message().header("Subject").as_deref(),
        Some("AW: Bestellung")
    );
}

#[tokio::test]
async fn non_ascii_text_and_names_arrive_intact() {
    let fake = FakeSmtp::start().await;
    let mut settings = settings(&fake.url());
    settings.from = "Jürgen's Laden <laden@example.com>".into();
    let mut message = message(text("Grüße aus Köln 👋\nBis bald."));
    if let Some(thread) = message.thread.as_mut() {
        thread.subject = Some("Bestellung für Jürgen".into());
        thread.history.clear();
    }
    SmtpSender::new(settings)
        .unwrap()
        .send(&message)
        .await
        .unwrap();
    let received = fake.only_message();
    assert!(received.data.is_ascii());
    let parsed = MessageParser::default()
        .parse(received.data.as_bytes())
        .unwrap();
    assert_eq!(parsed.subject(), Some("Re: Bestellung für Jürgen"));
    assert_eq!(
        parsed.from().unwrap().first().unwrap().name(),
        Some("Jürgen's Laden")
    );
    let (text, html) = parts(&received);
    assert!(
        text.starts_with("Grüße aus Köln 👋\nBis bald.\n\n-- \nReply"),
        "{text}"
    );
    assert!(html.contains("Grüße aus Köln 👋<br/>Bis bald."), "{html}");
}

#[tokio::test]
async fn without_a_thread_replies_go_to_the_plain_address() {
    let fake = FakeSmtp::start().await;
    let mut message = message(text("Hello"));
    message.thread = None;
    sender(&fake).send(&message).await.unwrap();
    let received = fake.only_message();
    assert_eq!(
        received.header("Reply-To").as_deref(),
        Some("\"Acme Support\" <reply@in.example.com>")
    );
    assert_eq!(
        received.header("Subject").as_deref(),
        Some("A message from Acme Support")
    );
    assert_eq!(received.header("In-Reply-To"), None);
    assert_eq!(received.header("References"), None);
    let (text, _) = parts(&received);
    assert!(!text.contains("Earlier in this conversation"), "{text}");
}

#[tokio::test]
async fn choices_are_listed() {
    let fake = FakeSmtp::start().await;
    let content = OutboundContent::Choices {
        body: "How can we help?".into(),
        choices: vec![
            Choice {
                id: "billing".into(),
                title: "Billing question".into(),
            },
            Choice {
                id: "agent".into(),
                title: "Talk to a person".into(),
            },
        ],
    };
    sender(&fake).send(&message(content)).await.unwrap();
    let (text, html) = parts(&fake.only_message());
    assert!(
        text.starts_with(
            "How can we help?\n\nReply with one of:\n- Billing question\n- Talk to a person\n\n----\n"
        ),
        "{text}"
    );
    assert!(
        html.contains("<li dir=\"auto\">Talk to a person</li>"),
        "{html}"
    );
}

#[tokio::test]
async fn files_are_linked_not_attached() {
    let fake = FakeSmtp::start().await;
    let content = OutboundContent::Media {
        attachment: Attachment {
            kind: MediaKind::Document,
            source: "https://files.example.com/r.pdf?sig=a&x=1".into(),
            mime_type: Some("application/pdf".into()),
            filename: Some("report.pdf".into()),
            size: None,
            sha256: None,
            media_id: None,
        },
        caption: Some("Your invoice".into()),
    };
    sender(&fake).send(&message(content)).await.unwrap();
    let (text, html) = parts(&fake.only_message());
    assert!(
        text.starts_with(
            "Your invoice\n\nDocument (report.pdf): https://files.example.com/r.pdf?sig=a&x=1\n\n"
        ),
        "{text}"
    );
    assert!(
        html.contains(r#"<a href="https://files.example.com/r.pdf?sig=a&#38;x=1""#),
        "{html}"
    );
}

#[tokio::test]
async fn a_4xx_answer_to_the_data_is_transient() {
    let fake = FakeSmtp::start().await;
    fake.script(
        Stage::Message,
        "451 4.3.0 Temporary local problem, try later",
    );
    let error = sender(&fake).send(&message(text("Hi"))).await.unwrap_err();
    assert_transient(&error);
    assert!(error.to_string().contains("451"), "{error}");
    assert!(
        error.to_string().contains("Temporary local problem"),
        "{error}"
    );
    // The server had the whole message; it refused it.
    assert!(fake.only_message().answer.starts_with("451"));
    assert!(fake.received().is_empty(), "offered, not accepted");
}

#[tokio::test]
async fn a_refused_mail_sent_again_is_accepted_once() {
    let fake = FakeSmtp::start().await;
    fake.answer_next(["451 4.3.0 Try later"]);
    let sender = sender(&fake);
    assert_transient(&sender.send(&message(text("Hi"))).await.unwrap_err());
    sender.send(&message(text("Hi"))).await.unwrap();
    let accepted = fake.wait_for(1).await;
    assert_eq!(accepted.len(), 1);
    assert!(accepted[0].accepted());
    assert_eq!(fake.attempts(), 2);
    assert_eq!(fake.offered().len(), 2);
}

#[tokio::test]
async fn an_unknown_recipient_is_permanent_with_the_smtp_code() {
    let fake = FakeSmtp::start().await;
    fake.script(
        Stage::RcptTo,
        "550 5.1.1 <ada@example.org>: Recipient address rejected: User unknown",
    );
    let error = sender(&fake).send(&message(text("Hi"))).await.unwrap_err();
    assert_eq!(
        error,
        SendError::permanent(
            "550",
            "5.1.1 <ada@example.org>: Recipient address rejected: User unknown"
        )
    );
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn a_busy_server_is_transient() {
    let fake = FakeSmtp::start().await;
    fake.script(
        Stage::Greeting,
        "421 4.3.2 Service not available, closing channel",
    );
    let error = sender(&fake).send(&message(text("Hi"))).await.unwrap_err();
    assert_transient(&error);
    assert!(error.to_string().contains("421"), "{error}");
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let error = SmtpSender::new(settings(&format!("smtp://127.0.0.1:{port}")))
        .unwrap()
        .send(&message(text("Hi")))
        .await
        .unwrap_err();
    assert_transient(&error);
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let fake = FakeSmtp::silent().await;
    let mut settings = settings(&fake.url());
    settings.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let error = SmtpSender::new(settings)
        .unwrap()
        .send(&message(text("Hi")))
        .await
        .unwrap_err();
    assert_transient(&error);
    assert!(error.to_string().contains("longer than"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(fake.connections(), 1);
}

#[tokio::test]
async fn an_invalid_recipient_fails_without_connecting() {
    let fake = FakeSmtp::start().await;
    let sender = sender(&fake);
    for to in [
        "",
        "ada",
        "ada@",
        "Ada Lovelace <ada@example.org>",
        "+16505551234",
    ] {
        let mut message = message(text("Hi"));
        message.to = to.into();
        let error = sender.send(&message).await.unwrap_err();
        assert_eq!(permanent_code(&error), "invalid_address", "{to}");
    }
    assert_eq!(fake.connections(), 0);
}

#[tokio::test]
async fn templates_are_unsupported() {
    let fake = FakeSmtp::start().await;
    let content = OutboundContent::Template {
        name: "welcome".into(),
        language: "en_US".into(),
        components: serde_json::json!([]),
    };
    let error = sender(&fake).send(&message(content)).await.unwrap_err();
    assert_eq!(permanent_code(&error), "unsupported");
    assert_eq!(fake.connections(), 0);
}

#[tokio::test]
async fn authenticates_with_the_urls_credentials() {
    let fake = FakeSmtp::start().await;
    let url = format!("smtp://mailer:s3cr%40t@127.0.0.1:{}", fake.port());
    SmtpSender::new(settings(&url))
        .unwrap()
        .send(&message(text("Hi")))
        .await
        .unwrap();
    let auth = fake.only_message().auth.unwrap();
    // AUTH PLAIN with "\0mailer\0s3cr@t", the password percent-decoded.
    assert_eq!(auth, "AUTH PLAIN AG1haWxlcgBzM2NyQHQ=");
}

#[tokio::test]
async fn refused_credentials_are_permanent_and_not_logged() {
    let fake = FakeSmtp::start().await;
    fake.script(Stage::Auth, "535 5.7.8 Authentication credentials invalid");
    let url = format!("smtp://mailer:s3cret@127.0.0.1:{}", fake.port());
    let sender = SmtpSender::new(settings(&url)).unwrap();
    let error = sender.send(&message(text("Hi"))).await.unwrap_err();
    assert_eq!(
        error,
        SendError::permanent("535", "5.7.8 Authentication credentials invalid")
    );
    assert!(fake.received().is_empty());
    // Nothing that is logged or stored holds the password.
    assert!(!format!("{sender:?}").contains("s3cret"), "{sender:?}");
    let settings = format!("{:?}", settings(&url));
    assert!(!settings.contains("s3cret"), "{settings}");
    assert!(
        settings.contains(&format!("smtp://127.0.0.1:{}", fake.port())),
        "{settings}"
    );
    assert!(!error.to_string().contains("s3cret"));
}

#[tokio::test]
async fn tls_failures_are_permanent() {
    let fake = FakeSmtp::start().await;
    // Implicit TLS against a plain server: the handshake reads "220 …".
    let smtps = format!("smtps://127.0.0.1:{}", fake.port());
    // STARTTLS required, but the fake does not offer it.
    let starttls = format!("smtp://127.0.0.1:{}?tls=required", fake.port());
    for url in [smtps, starttls] {
        let error = SmtpSender::new(settings(&url))
            .unwrap()
            .send(&message(text("Hi")))
            .await
            .unwrap_err();
        assert_eq!(permanent_code(&error), classify::TLS, "{url}: {error:?}");
    }
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn one_sender_sends_many() {
    let fake = FakeSmtp::start().await;
    let sender = sender(&fake);
    let first = sender.send(&message(text("One"))).await.unwrap();
    let second = sender.send(&message(text("Two"))).await.unwrap();
    // Same gateway message (a retry, or two parts): two different mails.
    assert_ne!(first.provider_message_id, second.provider_message_id);
    assert_eq!(fake.received().len(), 2);
    assert_eq!(fake.connections(), 2, "a connection per mail, no pool");
    // Each session ends with QUIT.
    assert_eq!(
        fake.commands()
            .iter()
            .filter(|command| *command == "QUIT")
            .count(),
        2
    );
}

#[test]
fn what_the_gateway_asks() {
    let sender = SmtpSender::new(settings("smtp://127.0.0.1:2525")).unwrap();
    assert!(sender.wants_thread());
    assert_eq!(sender.text_limit(), None);
    assert_eq!(sender.service_window(), None);
}

/// Construction checks the settings and needs neither a runtime nor a server.
#[test]
fn settings_are_checked_without_connecting() {
    for url in [
        "smtp://localhost",
        "smtp://user:pass@smtp.example.com:587?tls=required",
        "smtp://smtp.example.com?tls=opportunistic",
        "smtps://user:pass@smtp.example.com",
        "smtps://smtp.example.com:465/ehlo.example.com",
    ] {
        assert!(SmtpSender::new(settings(url)).is_ok(), "{url}");
    }
    let invalid = |settings: SmtpSettings| {
        let error = SmtpSender::new(settings).unwrap_err();
        assert_eq!(permanent_code(&error), "invalid_smtp_settings", "{error:?}");
        error
    };
    for url in [
        "",
        "smtp.example.com:25",
        "http://smtp.example.com",
        "smtp://smtp.example.com?tls=none",
        "smtp://",
    ] {
        invalid(settings(url));
    }
    // lettre's complaint about the URL is kept, the password is not.
    let error = invalid(settings("smtpx://user:hunter2@smtp.example.com"));
    assert!(!error.to_string().contains("hunter2"), "{error}");
    assert!(
        error.to_string().contains("smtpx://smtp.example.com"),
        "{error}"
    );

    for from in ["", "support", "Support <support>", "a@b@c"] {
        let mut settings = settings("smtp://localhost");
        settings.from = from.into();
        invalid(settings);
    }
    let mut bad_reply = settings("smtp://localhost");
    bad_reply.reply_to.local = "re ply".into();
    invalid(bad_reply);
    let mut bad_domain = settings("smtp://localhost");
    bad_domain.message_id_domain = "mail example".into();
    invalid(bad_domain);
    let mut no_time = settings("smtp://localhost");
    no_time.timeout = Duration::ZERO;
    invalid(no_time);

    // A bare address is a mailbox too.
    let mut bare = settings("smtp://localhost");
    bare.from = "support@example.com".into();
    assert!(SmtpSender::new(bare).is_ok());
}

#[test]
fn urls_lose_their_credentials_in_logs() {
    assert_eq!(
        without_user_info("smtps://user:p%40ss@smtp.example.com:465/ehlo?x=1"),
        "smtps://smtp.example.com:465/ehlo?x=1"
    );
    assert_eq!(
        without_user_info("smtp://smtp.example.com"),
        "smtp://smtp.example.com"
    );
    assert_eq!(without_user_info("user:pass@host"), "(not a URL)");
    assert_eq!(
        without_user_info("smtp://u:p@[::1]:2525?tls=required"),
        "smtp://[::1]:2525?tls=required"
    );
}

#[test]
fn risky_urls_are_noticed() {
    assert!(plain_on_implicit_tls_port(
        "smtp://u:p@smtp.example.com:465"
    ));
    assert!(!plain_on_implicit_tls_port("smtps://smtp.example.com:465"));
    assert!(!plain_on_implicit_tls_port("smtp://smtp.example.com:4650"));
    assert!(!plain_on_implicit_tls_port("smtp://smtp.example.com"));
}

#[test]
fn plain_credentials_are_noticed() {
    assert!(sends_credentials_in_clear("smtp://u:p@smtp.example.com"));
    assert!(sends_credentials_in_clear(
        "smtp://u:p@smtp.example.com:25/ehlo"
    ));
    assert!(!sends_credentials_in_clear(
        "smtp://u:p@smtp.example.com?tls=required"
    ));
    assert!(!sends_credentials_in_clear("smtps://u:p@smtp.example.com"));
    assert!(!sends_credentials_in_clear("smtp://smtp.example.com"));
    assert!(!sends_credentials_in_clear("smtp://u:p@localhost:25"));
    assert!(!sends_credentials_in_clear("smtp://u:p@127.0.0.1:2525"));
    assert!(!sends_credentials_in_clear("smtp://u:p@[::1]:2525"));
    assert!(!sends_credentials_in_clear("smtp://u:p@[::1]"));
}

/// The error lettre reports for one delivery through a bare transport to `url`.
async fn lettre_error(url: &str) -> lettre::transport::smtp::Error {
    let mail = Mail::builder()
        .from("support@example.com".parse::<Mailbox>().unwrap())
        .to("ada@example.org".parse::<Mailbox>().unwrap())
        .subject("Hi")
        .body("Hi".to_owned())
        .unwrap();
    AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .unwrap()
        .timeout(Some(Duration::from_secs(5)))
        .build()
        .send(mail)
        .await
        .unwrap_err()
}

/// The classification of a delivery to a fake answering `reply` at `stage`.
async fn classified(stage: Stage, reply: &str) -> classify::Failure {
    let fake = FakeSmtp::start().await;
    fake.script(stage, reply);
    classify::classify(&lettre_error(&fake.url()).await)
}

#[tokio::test]
async fn classify_4xx_is_transient() {
    for (stage, reply) in [
        (Stage::Greeting, "421 4.7.0 Too many connections"),
        (
            Stage::MailFrom,
            "451 4.7.1 Greylisted, try again in 5 minutes",
        ),
        (Stage::RcptTo, "450 4.2.1 Mailbox busy"),
        (Stage::RcptTo, "452 4.5.3 Too many recipients"),
        (Stage::Data, "451 4.3.0 Queue full"),
        (Stage::Message, "452 4.3.1 Insufficient system storage"),
    ] {
        let failure = classified(stage, reply).await;
        let SendError::Transient {
            retry_after,
            reason,
        } = &failure.error
        else {
            panic!("{reply}: {failure:?}");
        };
        assert_eq!(*retry_after, None);
        assert!(
            reason.contains(&reply[..3]) && reason.contains(&reply[4..]),
            "{reason}"
        );
        assert_eq!(failure.operator, None);
    }
}

#[tokio::test]
async fn classify_5xx_is_permanent_with_its_code() {
    for (stage, reply) in [
        (Stage::RcptTo, "550 5.1.1 User unknown"),
        (Stage::RcptTo, "553 5.1.3 Bad recipient address syntax"),
        (Stage::Message, "552 5.3.4 Message size exceeds fixed limit"),
        (Stage::Message, "554 5.7.1 Message rejected as spam"),
        (
            Stage::MailFrom,
            "550 5.7.1 Sender address rejected: not owned by user",
        ),
    ] {
        let failure = classified(stage, reply).await;
        assert_eq!(
            failure.error,
            SendError::permanent(&reply[..3], &reply[4..]),
            "{reply}"
        );
        // A recipient's trouble: not the operator's, and not "unreachable".
        assert_eq!(failure.operator, None);
    }
}

#[tokio::test]
async fn classify_multi_line_replies_keep_every_line() {
    let failure = classified(
        Stage::RcptTo,
        "550-5.1.1 The email account that you tried to reach does not exist.\r\n\
         550 5.1.1 Please check the address.",
    )
    .await;
    let SendError::Permanent { code, reason } = failure.error else {
        panic!("{failure:?}");
    };
    assert_eq!(code, "550");
    assert!(reason.contains("does not exist"), "{reason}");
    assert!(reason.contains("Please check the address."), "{reason}");
}

#[tokio::test]
async fn classify_credential_trouble_alerts_the_operator() {
    let fake = FakeSmtp::start().await;
    fake.script(Stage::Auth, "535 5.7.8 Username and Password not accepted");
    let url = format!("smtp://u:p@127.0.0.1:{}", fake.port());
    let failure = classify::classify(&lettre_error(&url).await);
    assert_eq!(
        failure.error,
        SendError::permanent("535", "5.7.8 Username and Password not accepted")
    );
    assert!(failure.operator.unwrap().contains("credentials"));

    // Authentication required, but the URL has no credentials.
    let failure = classified(Stage::MailFrom, "530 5.7.0 Authentication required").await;
    assert_eq!(permanent_code(&failure.error), "530");
    assert!(failure.operator.is_some());
}

#[tokio::test]
async fn classify_connection_trouble_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let failure = classify::classify(&lettre_error(&format!("smtp://127.0.0.1:{port}")).await);
    assert_transient(&failure.error);
    assert!(
        failure.error.to_string().contains("could not be reached"),
        "{:?}",
        failure.error
    );
    assert_eq!(failure.operator, None);

    // A reply that is not SMTP (an empty line) from something between us and the server.
    let failure = classified(Stage::Data, "").await;
    assert_transient(&failure.error);
}

#[tokio::test]
async fn classify_tls_trouble_alerts_the_operator() {
    let fake = FakeSmtp::start().await;
    for url in [
        format!("smtps://127.0.0.1:{}", fake.port()),
        format!("smtp://127.0.0.1:{}?tls=required", fake.port()),
    ] {
        let failure = classify::classify(&lettre_error(&url).await);
        assert_eq!(
            permanent_code(&failure.error),
            classify::TLS,
            "{url}: {failure:?}"
        );
        assert!(failure.operator.is_some());
    }
}

#[tokio::test]
async fn classify_a_reply_that_is_not_utf8_is_not_tls_trouble() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(b"220 \xff\xfe garbage\r\n").await.unwrap();
        std::future::pending::<()>().await;
    });
    let failure = classify::classify(&lettre_error(&format!("smtp://127.0.0.1:{port}")).await);
    assert_transient(&failure.error);
    assert_eq!(failure.operator, None);
}
