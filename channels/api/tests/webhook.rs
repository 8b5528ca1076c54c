//! `POST /webhooks/api/{integration}` as the gateway drives it: `check` with the head, then
//! `receive` with the body and an inbox — here an in-memory one that records every batch.

use std::sync::Arc;

use bytes::Bytes;
use chrono::DateTime;
use http::{HeaderValue, Method, StatusCode};
use serde_json::json;
use switchboard_api::{KIND, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use switchboard_channel::{
    BodyCheck, ChannelKind, InboundEvent, InboxError, Webhook, WebhookAnswer, WebhookError,
    WebhookRequest,
    testing::{FakeInbox, webhook_request as request},
};

const NOW: i64 = 1_700_000_000;
const SECRET: &str = "crm-secret";

/// The gateway's inbox in memory, on the clock of [`NOW`].
fn inbox() -> FakeInbox {
    FakeInbox::at(DateTime::from_timestamp(NOW, 0).unwrap())
}

/// The events of every batch the inbox stored; repeats are the gateway's to recognise, so no
/// batch comes with a checkpoint.
fn batches(inbox: &FakeInbox) -> Vec<Vec<InboundEvent>> {
    inbox
        .batches()
        .into_iter()
        .map(|(events, checkpoint)| {
            assert_eq!(checkpoint, None, "repeats are the gateway's to recognise");
            events
        })
        .collect()
}

fn webhook() -> Arc<dyn Webhook> {
    let section = json!({"integrations": [
        {"name": "crm", "secret": SECRET, "callback_url": "https://crm.example.com/cb"},
        {"name": "sms", "secret": "sms-secret", "callback_url": "https://sms.example.com/cb"}
    ]});
    KIND.build(section)
        .unwrap()
        .expect("the channel is on")
        .webhook()
        .expect("the channel has a webhook")
}

fn body() -> Vec<u8> {
    json!({
        "messages": [{"id": "m-1", "from": {"id": "42", "name": "Ada"}, "text": "Hello"}],
        "statuses": [{"id": "out-1", "status": "read"}]
    })
    .to_string()
    .into_bytes()
}

/// A request signed by `crm` at `timestamp`.
fn signed(body: &[u8], timestamp: i64) -> WebhookRequest {
    request(
        Method::POST,
        "crm",
        &[
            ("content-type", "application/json".into()),
            (TIMESTAMP_HEADER, timestamp.to_string()),
            (SIGNATURE_HEADER, sign(SECRET, timestamp, body)),
        ],
    )
}

/// What the gateway does: check the head, then hand over the body.
async fn deliver(
    webhook: &dyn Webhook,
    request: WebhookRequest,
    body: &[u8],
    inbox: &FakeInbox,
) -> Result<WebhookAnswer, WebhookError> {
    match webhook.check(&request)? {
        BodyCheck::Unverified { max_bytes } => assert_eq!(max_bytes, 256 * 1024),
        other => panic!("the proof is in the body, yet check said {other:?}"),
    }
    webhook
        .receive(request, Bytes::copy_from_slice(body), inbox)
        .await
}

fn refused(result: Result<WebhookAnswer, WebhookError>) -> (StatusCode, &'static str) {
    let error = result.expect_err("the request should have been refused");
    (error.status, error.code)
}

#[tokio::test]
async fn a_signed_request_is_ingested_and_answered_with_the_summary() {
    let (webhook, inbox) = (webhook(), inbox());
    let answer = deliver(&*webhook, signed(&body(), NOW), &body(), &inbox)
        .await
        .unwrap();
    assert_eq!(
        answer,
        WebhookAnswer::Json(json!({
            "status": "ok", "events": 2, "stored": 1, "duplicates": 0, "statuses": 1
        }))
    );
    let batches = batches(&inbox);
    assert_eq!(batches.len(), 1);
    let InboundEvent::Message(message) = &batches[0][0] else {
        panic!("{batches:?}")
    };
    assert_eq!(message.provider_message_id.as_deref(), Some("crm:m-1"));
    assert_eq!(message.account, "crm");
    assert_eq!(message.from.external_id, "crm:42");
    let InboundEvent::Status(status) = &batches[0][1] else {
        panic!("{batches:?}")
    };
    assert_eq!(status.provider_message_id, "crm:out-1");
}

#[tokio::test]
async fn a_retried_delivery_goes_to_the_inbox_again() {
    let (webhook, inbox) = (webhook(), inbox());
    deliver(&*webhook, signed(&body(), NOW - 10), &body(), &inbox)
        .await
        .unwrap();
    // The same request again, as it was (within the five minutes), and signed anew.
    deliver(&*webhook, signed(&body(), NOW - 10), &body(), &inbox)
        .await
        .unwrap();
    deliver(&*webhook, signed(&body(), NOW), &body(), &inbox)
        .await
        .unwrap();
    let batches = batches(&inbox);
    assert_eq!(batches.len(), 3);
    assert!(
        batches.iter().all(|batch| batch == &batches[0]),
        "the same ids each time, for the gateway to recognise"
    );
}

#[tokio::test]
async fn a_bad_signature_changes_nothing() {
    let (webhook, inbox) = (webhook(), inbox());
    let body = body();
    // Signed for another body, with another secret, or for another time.
    let mut tampered = signed(b"{}", NOW);
    assert_eq!(
        refused(deliver(&*webhook, tampered.clone(), &body, &inbox).await),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    tampered.headers.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&sign("sms-secret", NOW, &body)).unwrap(),
    );
    assert_eq!(
        refused(deliver(&*webhook, tampered.clone(), &body, &inbox).await),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    tampered.headers.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&sign(SECRET, NOW, &body)).unwrap(),
    );
    tampered
        .headers
        .insert(TIMESTAMP_HEADER, HeaderValue::from_static("1700000001"));
    assert_eq!(
        refused(deliver(&*webhook, tampered, &body, &inbox).await),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    // Another integration's correct signature does not open this one's route.
    let sms = request(
        Method::POST,
        "crm",
        &[
            (TIMESTAMP_HEADER, NOW.to_string()),
            (SIGNATURE_HEADER, sign("sms-secret", NOW, &body)),
        ],
    );
    assert_eq!(
        refused(deliver(&*webhook, sms, &body, &inbox).await),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    assert!(batches(&inbox).is_empty());
}

#[tokio::test]
async fn missing_or_malformed_proofs_are_refused_before_the_body() {
    let webhook = webhook();
    let signature = sign(SECRET, NOW, &body());
    let cases = [
        vec![(TIMESTAMP_HEADER, NOW.to_string())],
        vec![(SIGNATURE_HEADER, signature.clone())],
        vec![
            (TIMESTAMP_HEADER, NOW.to_string()),
            (SIGNATURE_HEADER, "sha256=abc".into()),
        ],
        vec![
            (TIMESTAMP_HEADER, NOW.to_string()),
            (SIGNATURE_HEADER, signature.replace("sha256=", "sha1=")),
        ],
        vec![
            (TIMESTAMP_HEADER, "yesterday".into()),
            (SIGNATURE_HEADER, signature.clone()),
        ],
        vec![
            (TIMESTAMP_HEADER, "-1700000000".into()),
            (SIGNATURE_HEADER, signature),
        ],
    ];
    for headers in cases {
        let error = webhook
            .check(&request(Method::POST, "crm", &headers))
            .expect_err("refused from the head alone");
        assert_eq!(
            (error.status, error.code),
            (StatusCode::UNAUTHORIZED, "invalid_signature"),
            "{headers:?}"
        );
    }
}

#[tokio::test]
async fn old_and_future_timestamps_are_stale() {
    let (webhook, inbox) = (webhook(), inbox());
    for timestamp in [NOW - 301, NOW + 301, 0] {
        assert_eq!(
            refused(deliver(&*webhook, signed(&body(), timestamp), &body(), &inbox).await),
            (StatusCode::UNAUTHORIZED, "stale_signature"),
            "{timestamp}"
        );
    }
    for timestamp in [NOW - 300, NOW + 300] {
        deliver(&*webhook, signed(&body(), timestamp), &body(), &inbox)
            .await
            .unwrap();
    }
    assert_eq!(batches(&inbox).len(), 2);
}

#[tokio::test]
async fn routes_methods_and_types_are_checked() {
    let webhook = webhook();
    let headers = [
        (TIMESTAMP_HEADER, NOW.to_string()),
        (SIGNATURE_HEADER, sign(SECRET, NOW, &body())),
    ];
    for path in ["", "nobody", "crm/extra", "CRM"] {
        let error = webhook
            .check(&request(Method::POST, path, &headers))
            .unwrap_err();
        assert_eq!(
            (error.status, error.code, error.message.as_str()),
            (StatusCode::NOT_FOUND, "not_found", "integration not found"),
            "{path:?}"
        );
    }
    let error = webhook
        .check(&request(Method::GET, "crm", &headers))
        .unwrap_err();
    assert_eq!(error.status, StatusCode::METHOD_NOT_ALLOWED);
    let mut typed = headers.to_vec();
    typed.push(("content-type", "text/plain".into()));
    let error = webhook
        .check(&request(Method::POST, "crm", &typed))
        .unwrap_err();
    assert_eq!(
        (error.status, error.code),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    // No type at all, or a JSON type with parameters, is read as JSON.
    assert!(
        webhook
            .check(&request(Method::POST, "crm", &headers))
            .is_ok()
    );
    let mut typed = headers.to_vec();
    typed.push(("content-type", "application/json; charset=utf-8".into()));
    assert!(webhook.check(&request(Method::POST, "crm", &typed)).is_ok());
}

#[tokio::test]
async fn bad_payloads_are_refused_with_a_reason() {
    let (webhook, inbox) = (webhook(), inbox());
    let cases: [(&[u8], &str); 3] = [
        (
            b"{\"messages\": [",
            "invalid API request: EOF while parsing a list",
        ),
        (
            br#"{"messages": [{"id": "m", "from": {"id": "u"}, "txt": "hi"}]}"#,
            "invalid API request: unknown field `txt`",
        ),
        (
            br#"{"messages": [{"id": "", "from": {"id": "u"}, "text": "hi"}]}"#,
            "invalid API request: messages[0].id must not be empty",
        ),
    ];
    for (body, expected) in cases {
        let error = deliver(&*webhook, signed(body, NOW), body, &inbox)
            .await
            .unwrap_err();
        assert_eq!(
            (error.status, error.code),
            (StatusCode::BAD_REQUEST, "invalid_payload")
        );
        assert!(error.message.starts_with(expected), "{}", error.message);
    }
    assert!(batches(&inbox).is_empty());
}

#[tokio::test]
async fn an_empty_request_checks_the_signature_and_stores_nothing() {
    let (webhook, inbox) = (webhook(), inbox());
    let answer = deliver(&*webhook, signed(b"{}", NOW), b"{}", &inbox)
        .await
        .unwrap();
    assert_eq!(
        answer,
        WebhookAnswer::Json(json!({
            "status": "ok", "events": 0, "stored": 0, "duplicates": 0, "statuses": 0
        }))
    );
    assert!(batches(&inbox).is_empty());
}

#[tokio::test]
async fn inbox_failures_are_answered_for_the_integration_to_retry() {
    let (webhook, inbox) = (webhook(), inbox());
    inbox.fail_once(InboxError::Unavailable("disk full".into()));
    let error = deliver(&*webhook, signed(&body(), NOW), &body(), &inbox)
        .await
        .unwrap_err();
    assert_eq!(
        (error.status, error.code),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal")
    );
    assert!(
        !error.message.contains("disk"),
        "the gateway's trouble stays inside"
    );
    inbox.fail_once(InboxError::Limited {
        reason: "too many messages".into(),
        retry_after: 30,
    });
    let error = deliver(&*webhook, signed(&body(), NOW), &body(), &inbox)
        .await
        .unwrap_err();
    assert_eq!(error.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error.header, Some(("retry-after", "30".into())));
    // Then it goes through.
    deliver(&*webhook, signed(&body(), NOW), &body(), &inbox)
        .await
        .unwrap();
    assert_eq!(batches(&inbox).len(), 1);
}

#[tokio::test]
async fn the_other_integration_has_its_own_route_and_ids() {
    let (webhook, inbox) = (webhook(), inbox());
    let body = body();
    let request = request(
        Method::POST,
        "sms",
        &[
            (TIMESTAMP_HEADER, NOW.to_string()),
            (SIGNATURE_HEADER, sign("sms-secret", NOW, &body)),
        ],
    );
    deliver(&*webhook, request, &body, &inbox).await.unwrap();
    let batches = batches(&inbox);
    let InboundEvent::Message(message) = &batches[0][0] else {
        panic!("{batches:?}")
    };
    assert_eq!(message.provider_message_id.as_deref(), Some("sms:m-1"));
    assert_eq!(message.account, "sms");
}
