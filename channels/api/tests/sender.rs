//! Callbacks against a fake integration on 127.0.0.1: what it receives (signed, verifiable with
//! the secret) and how its answers are classified.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use switchboard_api::{
    DELIVERY_HEADER, KIND, SIGNATURE_HEADER, TIMESTAMP_HEADER, is_fresh,
    testing::{FakeIntegration, Reply},
    verify,
};
use switchboard_channel::{
    ChannelKind, OutboundContent, OutboundMessage, SendError, Sender, Sent, Thread, TypingTarget,
};

const SECRET: &str = "crm-secret";

/// The channel's sender, with `crm` calling back to `fake` and `quiet` (no typing) too.
fn sender(fake: &FakeIntegration, timeout: &str) -> Arc<dyn Sender> {
    let section = json!({"integrations": [
        {"name": "crm", "secret": SECRET, "callback_url": fake.url("/crm/callback?token=t0k"), "timeout": timeout},
        {"name": "quiet", "secret": "q", "callback_url": fake.url("/quiet"), "typing": false}
    ]});
    KIND.build(section)
        .unwrap()
        .expect("the channel is on")
        .sender()
        .expect("the channel sends")
}

fn text(body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: "0190f0c2-msg".into(),
        account: "crm".into(),
        to: "crm:42".into(),
        reply_to: Some("crm:m-1".into()),
        content: OutboundContent::Text { body: body.into() },
        service_window_open: true,
        thread: Some(Thread {
            token: "tok-9".into(),
            ..Thread::default()
        }),
    }
}

#[tokio::test]
async fn a_reply_is_posted_signed_and_the_integration_names_it() {
    let fake = FakeIntegration::start().await;
    let sender = sender(&fake, "5s");
    assert!(sender.wants_thread());
    assert_eq!(sender.text_limit(), None);
    let sent = sender.send(&text("We open at 9.")).await.unwrap();
    assert_eq!(
        sent,
        Sent {
            provider_message_id: "crm:out-1".into(),
            substituted: None
        }
    );
    let requests = fake.callbacks();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/crm/callback?token=t0k");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header(DELIVERY_HEADER), Some("0190f0c2-msg"));
    let timestamp: i64 = request.header(TIMESTAMP_HEADER).unwrap().parse().unwrap();
    assert!(is_fresh(timestamp, chrono::Utc::now()));
    let signature = request.header(SIGNATURE_HEADER).unwrap();
    assert_eq!(verify(SECRET, timestamp, &request.body, signature), Ok(()));
    assert!(verify("other", timestamp, &request.body, signature).is_err());
    assert!(request.is_signed_with(SECRET) && !request.is_signed_with("other"));
    assert_eq!(request.kind().as_deref(), Some("message"));
    assert_eq!(
        request.json(),
        json!({
            "type": "message",
            "id": "0190f0c2-msg",
            "delivery": "0190f0c2-msg",
            "conversation": "tok-9",
            "to": "42",
            "reply_to": "m-1",
            "text": "We open at 9.",
            "attachments": [],
            "choices": []
        })
    );
}

#[tokio::test]
async fn without_an_id_in_the_answer_the_delivery_names_the_message() {
    let fake = FakeIntegration::start().await;
    let sender = sender(&fake, "5s");
    for reply in [
        Reply::new(200, "OK"),
        Reply::new(204, ""),
        Reply::new(202, r#"{"queued": true}"#),
    ] {
        fake.reply(reply);
        let sent = sender.send(&text("Hi")).await.unwrap();
        assert_eq!(sent.provider_message_id, "crm:0190f0c2-msg");
    }
    fake.reply(Reply::new(201, r#"{"id": 777}"#));
    let sent = sender.send(&text("Hi")).await.unwrap();
    assert_eq!(sent.provider_message_id, "crm:777");
}

#[tokio::test]
async fn retries_carry_the_same_ids_and_a_fresh_signature() {
    let fake = FakeIntegration::start().await;
    let sender = sender(&fake, "5s");
    fake.reply(Reply::new(503, "maintenance"));
    let message = text("Hi");
    assert!(matches!(
        sender.send(&message).await,
        Err(SendError::Transient { .. })
    ));
    sender.send(&message).await.unwrap();
    let requests = fake.callbacks();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].json(), requests[1].json());
    assert_eq!(
        requests[0].header(DELIVERY_HEADER),
        requests[1].header(DELIVERY_HEADER)
    );
    for request in &requests {
        let timestamp: i64 = request.header(TIMESTAMP_HEADER).unwrap().parse().unwrap();
        let signature = request.header(SIGNATURE_HEADER).unwrap();
        assert_eq!(verify(SECRET, timestamp, &request.body, signature), Ok(()));
    }
}

#[tokio::test]
async fn server_errors_are_transient() {
    let fake = FakeIntegration::start().await;
    let sender = sender(&fake, "5s");
    for status in [500, 502, 503, 504, 408] {
        fake.reply(Reply::new(status, "try later"));
        match sender.send(&text("Hi")).await {
            Err(SendError::Transient {
                retry_after: None,
                reason,
            }) => assert!(reason.starts_with(&format!("HTTP {status}")), "{reason}"),
            other => panic!("{status}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn client_errors_are_permanent_with_the_status_as_code() {
    let fake = FakeIntegration::start().await;
    let sender = sender(&fake, "5s");
    fake.reply(Reply::new(400, r#"{"error": "unknown user 42"}"#));
    assert_eq!(
        sender.send(&text("Hi")).await,
        Err(SendError::permanent(
            "400",
            r#"HTTP 400 Bad Request: {"error": "unknown user 42"}"#
        ))
    );
    fake.reply(Reply::new(404, ""));
    assert_eq!(
        sender.send(&text("Hi")).await,
        Err(SendError::permanent("404", "HTTP 404 Not Found"))
    );
}

#[tokio::test]
async fn rate_limits_honour_retry_after() {
    let fake = FakeIntegration::start().await;
    let sender = sender(&fake, "5s");
    fake.reply(Reply::new(429, "slow down").header("retry-after", "30"));
    assert_eq!(
        sender.send(&text("Hi")).await,
        Err(SendError::Transient {
            retry_after: Some(Duration::from_secs(30)),
            reason: "HTTP 429 Too Many Requests: slow down".into()
        })
    );
    fake.reply(Reply::new(503, "").header("retry-after", "120"));
    assert!(matches!(
        sender.send(&text("Hi")).await,
        Err(SendError::Transient { retry_after: Some(wait), .. }) if wait == Duration::from_secs(120)
    ));
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let fake = FakeIntegration::start().await;
    let sender = sender(&fake, "5s");
    fake.reply(Reply::new(302, "").header("location", "/elsewhere"));
    assert_eq!(
        sender.send(&text("Hi")).await,
        Err(SendError::permanent("302", "HTTP 302 Found"))
    );
    assert_eq!(fake.callbacks().len(), 1);
}

#[tokio::test]
async fn a_slow_integration_times_out_transiently() {
    let fake = FakeIntegration::start().await;
    let sender = sender(&fake, "200ms");
    fake.reply(Reply::new(200, r#"{"id": "late"}"#).delayed(Duration::from_secs(5)));
    match sender.send(&text("Hi")).await {
        Err(SendError::Transient { reason, .. }) => {
            assert!(reason.contains("did not answer in time"), "{reason}");
            assert!(
                !reason.contains("t0k"),
                "the URL stays out of reasons: {reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_integration_is_transient() {
    // A port that was free a moment ago: nothing listens there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let section = json!({"integrations": [
        {"name": "crm", "secret": SECRET, "callback_url": format!("http://{address}/cb?token=t0k")}
    ]});
    let sender = KIND.build(section).unwrap().unwrap().sender().unwrap();
    match sender.send(&text("Hi")).await {
        Err(SendError::Transient { reason, .. }) => {
            assert!(reason.contains("could not be reached"), "{reason}");
            assert!(!reason.contains("t0k"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn files_come_first_each_with_its_own_delivery() {
    let fake = FakeIntegration::start().await;
    let sender = sender(&fake, "5s");
    let mut file = text("");
    file.content = OutboundContent::Media {
        attachment: switchboard_channel::Attachment {
            kind: switchboard_channel::MediaKind::Document,
            source: "https://files.example.com/price-list.pdf".into(),
            mime_type: Some("application/pdf".into()),
            filename: Some("price-list.pdf".into()),
            size: None,
            sha256: None,
            media_id: None,
        },
        caption: None,
    };
    fake.reply(Reply::new(200, ""));
    let sent = sender.send(&file).await.unwrap();
    let request = &fake.callbacks()[0];
    let delivery = request.header(DELIVERY_HEADER).unwrap().to_owned();
    assert!(delivery.starts_with("0190f0c2-msg.file-"), "{delivery}");
    assert_eq!(sent.provider_message_id, format!("crm:{delivery}"));
    let body = request.json();
    assert_eq!(body["id"], "0190f0c2-msg");
    assert_eq!(body["delivery"], delivery.as_str());
    assert_eq!(body["text"], "");
    assert_eq!(
        body["attachments"],
        json!([{"kind": "document", "url": "https://files.example.com/price-list.pdf",
            "mime_type": "application/pdf", "filename": "price-list.pdf", "size": null}])
    );
}

#[tokio::test]
async fn typing_is_posted_signed_unless_turned_off() {
    let fake = FakeIntegration::start().await;
    let sender = sender(&fake, "5s");
    sender
        .typing(&TypingTarget {
            account: "crm".into(),
            to: "crm:42".into(),
            message_provider_id: Some("crm:m-1".into()),
        })
        .await
        .unwrap();
    sender
        .typing(&TypingTarget {
            account: "quiet".into(),
            to: "quiet:42".into(),
            message_provider_id: None,
        })
        .await
        .unwrap();
    let requests = fake.callbacks();
    assert_eq!(requests.len(), 1, "the quiet integration takes no typing");
    let request = &requests[0];
    assert_eq!(
        request.json(),
        json!({"type": "typing", "to": "42", "reply_to": "m-1"})
    );
    assert_eq!(request.header(DELIVERY_HEADER), None);
    let timestamp: i64 = request.header(TIMESTAMP_HEADER).unwrap().parse().unwrap();
    assert_eq!(
        verify(
            SECRET,
            timestamp,
            &request.body,
            request.header(SIGNATURE_HEADER).unwrap()
        ),
        Ok(())
    );
    fake.reply(Reply::new(500, ""));
    assert!(matches!(
        sender
            .typing(&TypingTarget {
                account: "crm".into(),
                to: "crm:42".into(),
                message_provider_id: None,
            })
            .await,
        Err(SendError::Transient { .. })
    ));
}

#[tokio::test]
async fn messages_for_unknown_integrations_or_users_are_not_sent() {
    let fake = FakeIntegration::start().await;
    let sender = sender(&fake, "5s");
    let mut gone = text("Hi");
    gone.account = "removed".into();
    assert!(matches!(
        sender.send(&gone).await,
        Err(SendError::Permanent { code, .. }) if code == "unknown_integration"
    ));
    let mut stranger = text("Hi");
    stranger.to = "quiet:42".into();
    assert!(matches!(
        sender.send(&stranger).await,
        Err(SendError::Permanent { code, .. }) if code == "invalid_recipient"
    ));
    assert!(fake.callbacks().is_empty());
}
