//! Polling a mailbox over IMAP, against a real dovecot: new mail is read (with IDLE, within
//! moments) and answered by mail; mail that was there before polling began is left alone; a
//! restart neither misses nor repeats a mail.

use std::time::Duration;

use crate::{
    both_backends,
    helpers::{Backend, TestApp, dovecot::Dovecot, smtp::FakeSmtp},
};

both_backends!(new_mail_in_the_mailbox_is_answered_and_old_mail_left_alone);

fn mail(message_id: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Ravi Patel <ravi.patel@example.org>\r\nTo: support@mail.example.com\r\n\
         Subject: {subject}\r\nMessage-ID: <{message_id}>\r\nDate: Tue, 11 Nov 2025 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn on_imap<'a>(
    dovecot: &'a Dovecot,
    smtp: &'a FakeSmtp,
) -> impl FnOnce(&mut switchboard::config::Config) + 'a {
    move |config| {
        config.set(
            "email.from",
            "Switchboard Support <support@mail.example.com>",
        );
        config.set("email.smtp_url", smtp.url());
        config.set("email.imap.url", dovecot.url());
        // Long enough that only IDLE can explain a prompt answer.
        config.set("email.imap.poll_interval", "120s");
    }
}

async fn new_mail_in_the_mailbox_is_answered_and_old_mail_left_alone(backend: Backend) {
    let Some(dovecot) = Dovecot::start().await else {
        return;
    };
    let smtp = FakeSmtp::start().await;
    dovecot
        .deliver(&mail("old@example.org", "An old question", "Anyone there?"))
        .await;
    let app = TestApp::spawn_with(&backend, on_imap(&dovecot, &smtp)).await;
    // The poller has looked at the mailbox once it stored its starting position.
    app.eventually(Duration::from_secs(20), "the poller to start", || async {
        let position =
            switchboard::store::cursors::get(&mut app.store.reader(), "imap:test@127.0.0.1/INBOX")
                .await
                .unwrap();
        position.map(|_| ())
    })
    .await;

    dovecot
        .deliver(&mail(
            "new@example.org",
            "Opening hours",
            "What are your opening hours?",
        ))
        .await;
    let answers = tokio::time::timeout(Duration::from_secs(20), smtp.wait_for(1))
        .await
        .unwrap_or_else(|_| panic!("no answer; dovecot said: {}", dovecot.log()));
    assert_eq!(answers[0].to, ["ravi.patel@example.org"]);
    assert_eq!(
        answers[0].header("Subject").as_deref(),
        Some("Re: Opening hours")
    );
    assert!(answers[0].data.contains("We're open Monday to Friday"));
    app.all_delivered().await;
    assert_eq!(
        app.count("messages").await,
        2,
        "the old mail was left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_resumes_after_a_restart_without_repeats() {
    let Some(dovecot) = Dovecot::start().await else {
        return;
    };
    let smtp = FakeSmtp::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_imap(&dovecot, &smtp)).await;
    app.eventually(Duration::from_secs(20), "the poller to start", || async {
        switchboard::store::cursors::get(&mut app.store.reader(), "imap:test@127.0.0.1/INBOX")
            .await
            .unwrap()
            .map(|_| ())
    })
    .await;
    dovecot
        .deliver(&mail("first@example.org", "First", "What are your hours?"))
        .await;
    smtp.wait_for(1).await;
    app.all_delivered().await;

    let config = app.config.clone();
    let db = app.stop().await;
    dovecot
        .deliver(&mail("second@example.org", "Second", "And your prices?"))
        .await;
    let mut again = TestApp::start(config, switchboard::time::Clock::system()).await;
    again.keep(db);
    let answers = smtp.wait_for(2).await;
    again.all_delivered().await;
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[1].header("Subject").as_deref(), Some("Re: Second"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.received().len(), 2, "nothing was answered twice");
    assert_eq!(again.count("messages").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reply_to_an_experts_notification_is_passed_over() {
    let Some(dovecot) = Dovecot::start().await else {
        return;
    };
    let smtp = FakeSmtp::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, on_imap(&dovecot, &smtp)).await;
    let cursor = || async {
        switchboard::store::cursors::get(&mut app.store.reader(), "imap:test@127.0.0.1/INBOX")
            .await
            .unwrap()
    };
    let start = app
        .eventually(Duration::from_secs(20), "the poller to start", cursor)
        .await;
    // A visitor's conversation goes to Ana, who is mailed about it.
    let (_, ana) = app.staff_token("ana@example.com", "expert").await;
    app.staff_call(
        reqwest::Method::PUT,
        "/v1/expert/me/availability",
        &ana,
        Some(serde_json::json!({"available": true})),
    )
    .await;
    let (_, sent) = app
        .send("v-imap", serde_json::json!({"content": "hello"}))
        .await;
    let id = sent["conversation_id"].as_str().unwrap().to_owned();
    app.handoff("v-imap", &id).await;
    let notification = smtp.wait_for(1).await.remove(0);
    let reply_to = notification.header("Reply-To").unwrap();
    let address = reply_to
        .rsplit('<')
        .next()
        .unwrap_or(&reply_to)
        .trim_end_matches('>')
        .to_owned();

    // Someone else answers it: refused, and the mailbox position moves past it all the same,
    // so a restart does not read (and refuse) it again.
    let mut stranger = mail("m1@example.net", "Re: hello", "Give me your data");
    let text = String::from_utf8(stranger)
        .unwrap()
        .replace("To: support@mail.example.com", &format!("To: {address}"));
    stranger = text.into_bytes();
    dovecot.deliver(&stranger).await;
    app.eventually(Duration::from_secs(20), "the position to move", || async {
        cursor().await.filter(|now| *now != start).map(|_| ())
    })
    .await;
    let (_, visitor) = app
        .get("v-imap", &format!("/v1/conversations/{id}/messages"))
        .await;
    assert!(
        !visitor.to_string().contains("Give me your data"),
        "{visitor}"
    );
}
