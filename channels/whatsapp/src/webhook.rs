//! `/webhooks/whatsapp`: Meta's subscription handshake (`GET`) and its signed deliveries of
//! messages and statuses (`POST`).
//!
//! The callback URL is public, so a delivery is believed only once its `X-Hub-Signature-256`
//! matches the body under the app secret. The signature is inside the request's proof, not its
//! head, so the body must be read before it can be trusted: a delivery without a well-formed
//! signature header is refused before that ([`BodyCheck::Unverified`] only for the others), and
//! the body is verified byte for byte before anything of it is parsed.
//!
//! Meta retries a delivery until it gets a `2xx`, for days; a retry goes to the inbox like the
//! first delivery did, and the gateway recognises the messages it already stored by their ids.

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, StatusCode};
use switchboard_channel::{
    BodyCheck, Inbox, Ingested, Secret, Webhook, WebhookAnswer, WebhookError, WebhookRequest,
    signature,
};

use crate::{MAX_WEBHOOK_BYTES, SIGNATURE_HEADER, parse, verify_signature, verify_subscription};

/// The WhatsApp channel's webhook: answers the handshake with the verify token, and hands
/// deliveries signed with the app secret to the inbox.
pub struct WhatsappWebhook {
    app_secret: Secret,
    verify_token: Secret,
}

impl std::fmt::Debug for WhatsappWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The fields are secrets (masked by `Secret` too); nothing else is worth showing.
        f.debug_struct("WhatsappWebhook").finish_non_exhaustive()
    }
}

/// What a request to `/webhooks/whatsapp` is.
enum Route {
    /// `GET` (or `HEAD`): Meta checks that the URL is ours before it subscribes it.
    Handshake,
    /// `POST`: a signed batch of messages and statuses.
    Delivery,
}

impl WhatsappWebhook {
    /// A webhook whose deliveries are signed with `app_secret` and whose handshake carries
    /// `verify_token`.
    pub fn new(app_secret: Secret, verify_token: Secret) -> Self {
        Self {
            app_secret,
            verify_token,
        }
    }

    /// Answers the handshake: the challenge when the token is ours, `403` otherwise.
    fn handshake(&self, request: &WebhookRequest) -> Result<String, WebhookError> {
        let params = request.query_pairs();
        // A name given twice counts with its last value, as it always did.
        let param = |name: &str| {
            params
                .iter()
                .rev()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        verify_subscription(
            param("hub.mode"),
            param("hub.verify_token"),
            param("hub.challenge"),
            &self.verify_token,
        )
        .map(str::to_owned)
        .ok_or_else(|| {
            WebhookError::new(
                StatusCode::FORBIDDEN,
                "verification_failed",
                "hub.mode must be subscribe and hub.verify_token must match",
            )
        })
    }

    /// Verifies a delivery's body, parses it, and hands its events to the inbox.
    async fn deliver(
        &self,
        request: &WebhookRequest,
        body: &[u8],
        inbox: &dyn Inbox,
    ) -> Result<WebhookAnswer, WebhookError> {
        // The gateway reads no more than `check` allowed; this only keeps the promise without it.
        if body.len() > MAX_WEBHOOK_BYTES {
            return Err(WebhookError::too_large(MAX_WEBHOOK_BYTES));
        }
        if let Err(e) = verify_signature(request.header(SIGNATURE_HEADER), body, &self.app_secret) {
            tracing::warn!(reason = %e, "refused a WhatsApp webhook with a bad signature");
            return Err(bad_signature());
        }
        let events = parse(body).map_err(WebhookError::invalid)?;
        let received = events.len();
        // A body without messages (an account update) is acknowledged without touching storage.
        let ingested = if received > 0 {
            inbox.ingest(events, None).await?
        } else {
            Ingested::default()
        };
        Ok(Ingested {
            events: received,
            ..ingested
        }
        .into())
    }
}

/// Which route a request is for; `404` or `405` for anything else.
fn route(request: &WebhookRequest) -> Result<Route, WebhookError> {
    if !request.path.is_empty() {
        return Err(WebhookError::not_found("webhook route"));
    }
    match request.method {
        Method::GET | Method::HEAD => Ok(Route::Handshake),
        Method::POST => Ok(Route::Delivery),
        _ => Err(WebhookError::method_not_allowed()),
    }
}

/// The one answer to every signature problem: saying which one it was would help a forger.
fn bad_signature() -> WebhookError {
    WebhookError::unauthorized(
        "invalid_signature",
        "the X-Hub-Signature-256 header is missing or does not match the body",
    )
}

#[async_trait]
impl Webhook for WhatsappWebhook {
    fn check(&self, request: &WebhookRequest) -> Result<BodyCheck, WebhookError> {
        match route(request)? {
            Route::Handshake => self
                .handshake(request)
                .map(|challenge| BodyCheck::Answer(WebhookAnswer::Text(challenge))),
            Route::Delivery => {
                // A request that is not signed is refused before its body is read.
                if let Err(e) = signature::check_sha256_format(request.header(SIGNATURE_HEADER)) {
                    tracing::warn!(reason = %e, "refused a WhatsApp webhook without a signature");
                    return Err(bad_signature());
                }
                Ok(BodyCheck::Unverified {
                    max_bytes: MAX_WEBHOOK_BYTES,
                })
            }
        }
    }

    async fn receive(
        &self,
        request: WebhookRequest,
        body: Bytes,
        inbox: &dyn Inbox,
    ) -> Result<WebhookAnswer, WebhookError> {
        match route(&request)? {
            Route::Handshake => self.handshake(&request).map(WebhookAnswer::Text),
            Route::Delivery => self.deliver(&request, &body, inbox).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::{HeaderMap, HeaderValue};
    use serde_json::json;
    use switchboard_channel::{InboundEvent, InboxError, testing::FakeInbox};

    use super::*;
    use crate::sign;

    const SECRET: &str = "app-secret";
    const TOKEN: &str = "verify-token";

    fn webhook() -> WhatsappWebhook {
        WhatsappWebhook::new(SECRET.into(), TOKEN.into())
    }

    fn request(method: Method, path: &str, query: Option<&str>) -> WebhookRequest {
        WebhookRequest {
            method,
            path: path.into(),
            query: query.map(str::to_owned),
            headers: HeaderMap::new(),
        }
    }

    /// A delivery carrying `signature`.
    fn signed(signature: &str) -> WebhookRequest {
        let mut request = request(Method::POST, "", None);
        request
            .headers
            .insert("content-type", HeaderValue::from_static("application/json"));
        request
            .headers
            .insert(SIGNATURE_HEADER, HeaderValue::from_str(signature).unwrap());
        request
    }

    fn fixture(name: &str) -> Vec<u8> {
        switchboard_channel::testing::fixture("whatsapp", name)
    }

    /// Runs a request through both steps, as the gateway does.
    async fn deliver(
        webhook: &WhatsappWebhook,
        request: WebhookRequest,
        body: &[u8],
        inbox: &FakeInbox,
    ) -> Result<WebhookAnswer, WebhookError> {
        match webhook.check(&request)? {
            BodyCheck::Answer(answer) => Ok(answer),
            BodyCheck::Unverified { max_bytes } => {
                assert_eq!(max_bytes, MAX_WEBHOOK_BYTES);
                webhook
                    .receive(request, Bytes::copy_from_slice(body), inbox)
                    .await
            }
            BodyCheck::Trusted { .. } => panic!("a WhatsApp body is never trusted unread"),
        }
    }

    #[test]
    fn the_handshake_answers_our_token() {
        let query = "hub.mode=subscribe&hub.verify_token=verify-token&hub.challenge=1158201444";
        let answer = webhook().check(&request(Method::GET, "", Some(query)));
        assert_eq!(
            answer,
            Ok(BodyCheck::Answer(WebhookAnswer::Text("1158201444".into())))
        );
    }

    #[test]
    fn the_handshake_refuses_anything_else() {
        for query in [
            Some("hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1"),
            Some("hub.mode=unsubscribe&hub.verify_token=verify-token&hub.challenge=1"),
            Some("hub.mode=subscribe&hub.verify_token=verify-token"),
            Some("hub.mode=subscribe&hub.verify_token=&hub.challenge=1"),
            None,
        ] {
            let error = webhook()
                .check(&request(Method::GET, "", query))
                .unwrap_err();
            assert_eq!(error.status, StatusCode::FORBIDDEN, "{query:?}");
            assert_eq!(error.code, "verification_failed", "{query:?}");
        }
    }

    #[test]
    fn an_unsigned_delivery_is_refused_before_its_body() {
        let webhook = webhook();
        let unsigned = request(Method::POST, "", None);
        for request in [unsigned, signed("sha256=123"), signed("sha1=abc")] {
            let error = webhook.check(&request).unwrap_err();
            assert_eq!(error.status, StatusCode::UNAUTHORIZED);
            assert_eq!(error.code, "invalid_signature");
            assert_eq!(
                error.message,
                "the X-Hub-Signature-256 header is missing or does not match the body"
            );
        }
        let body = fixture("text.json");
        assert_eq!(
            webhook.check(&signed(&sign(&body, SECRET))),
            Ok(BodyCheck::Unverified {
                max_bytes: MAX_WEBHOOK_BYTES
            })
        );
    }

    #[test]
    fn other_routes_and_methods_are_not_ours() {
        let webhook = webhook();
        let error = webhook
            .check(&request(Method::POST, "anything", None))
            .unwrap_err();
        assert_eq!(
            (error.status, error.code),
            (StatusCode::NOT_FOUND, "not_found")
        );
        let error = webhook.check(&request(Method::PUT, "", None)).unwrap_err();
        assert_eq!(
            (error.status, error.code),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
        );
    }

    #[tokio::test]
    async fn a_delivery_reaches_the_inbox_and_its_retry_too() {
        let webhook = webhook();
        let inbox = FakeInbox::default();
        let body = fixture("text.json");
        let answer = deliver(&webhook, signed(&sign(&body, SECRET)), &body, &inbox).await;
        assert_eq!(
            answer,
            Ok(WebhookAnswer::Json(json!({
                "status": "ok", "events": 1, "stored": 1, "duplicates": 0, "statuses": 0
            })))
        );
        // Meta retries what it thinks was lost: the inbox sees it again and tells.
        let answer = deliver(&webhook, signed(&sign(&body, SECRET)), &body, &inbox).await;
        assert_eq!(
            answer,
            Ok(WebhookAnswer::Json(json!({
                "status": "ok", "events": 1, "stored": 0, "duplicates": 1, "statuses": 0
            })))
        );
        let batches = inbox.batches();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0], batches[1]);
        assert_eq!(batches[0].1, None, "a WhatsApp delivery has no checkpoint");
        assert!(matches!(
            batches[0].0.as_slice(),
            [InboundEvent::Message(m)] if m.account == "106540352242922"
        ));
    }

    #[tokio::test]
    async fn a_batch_goes_to_the_inbox_in_one_piece() {
        let inbox = FakeInbox::default();
        let body = fixture("statuses.json");
        let answer = deliver(&webhook(), signed(&sign(&body, SECRET)), &body, &inbox)
            .await
            .unwrap();
        let WebhookAnswer::Json(answer) = answer else {
            panic!("{answer:?}")
        };
        let batches = inbox.batches();
        assert_eq!(batches.len(), 1);
        assert_eq!(answer["events"], batches[0].0.len());
        assert_eq!(answer["statuses"], batches[0].0.len());
    }

    #[tokio::test]
    async fn a_bad_signature_changes_nothing() {
        let webhook = webhook();
        let inbox = FakeInbox::default();
        let body = fixture("text.json");
        let mut tampered = body.clone();
        let at = tampered.len() / 2;
        tampered[at] ^= 1;
        for (payload, signature) in [
            (body.clone(), sign(&body, "guess")),
            (tampered, sign(&body, SECRET)),
        ] {
            let error = deliver(&webhook, signed(&signature), &payload, &inbox)
                .await
                .unwrap_err();
            assert_eq!(
                (error.status, error.code),
                (StatusCode::UNAUTHORIZED, "invalid_signature")
            );
            assert!(!error.message.contains(&sign(&body, SECRET)[7..]));
        }
        assert!(inbox.batches().is_empty());
    }

    #[tokio::test]
    async fn a_signed_body_that_is_not_whatsapp_is_invalid() {
        let webhook = webhook();
        let inbox = FakeInbox::default();
        for body in [fixture("not_whatsapp.json"), b"hello".to_vec()] {
            let error = deliver(&webhook, signed(&sign(&body, SECRET)), &body, &inbox)
                .await
                .unwrap_err();
            assert_eq!(
                (error.status, error.code),
                (StatusCode::BAD_REQUEST, "invalid_payload")
            );
            assert!(
                error
                    .message
                    .starts_with("not a WhatsApp Business Account webhook: "),
                "{}",
                error.message
            );
        }
        assert!(inbox.batches().is_empty());
    }

    #[tokio::test]
    async fn a_delivery_without_events_is_acknowledged_without_the_inbox() {
        let inbox = FakeInbox::new();
        // Would fail the delivery if it were called.
        inbox.fail_with(InboxError::Unavailable("down".into()));
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let answer = deliver(&webhook(), signed(&sign(body, SECRET)), body, &inbox).await;
        assert_eq!(
            answer,
            Ok(WebhookAnswer::Json(json!({
                "status": "ok", "events": 0, "stored": 0, "duplicates": 0, "statuses": 0
            })))
        );
    }

    #[tokio::test]
    async fn an_inbox_failure_is_the_answer() {
        let inbox = FakeInbox::new();
        inbox.fail_with(InboxError::Unavailable("database is down".into()));
        let body = fixture("text.json");
        let error = deliver(&webhook(), signed(&sign(&body, SECRET)), &body, &inbox)
            .await
            .unwrap_err();
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!error.message.contains("database"), "{}", error.message);
    }

    #[tokio::test]
    async fn the_plugin_offers_this_webhook() {
        let plugin = crate::plugin::build(
            crate::Config::from_section(json!({"app_secret": SECRET, "verify_token": TOKEN}))
                .unwrap(),
        )
        .unwrap()
        .unwrap();
        let webhook = plugin.webhook().unwrap();
        let inbox = Arc::new(FakeInbox::default());
        let body = fixture("text.json");
        let request = signed(&sign(&body, SECRET));
        assert!(matches!(
            webhook.check(&request),
            Ok(BodyCheck::Unverified { .. })
        ));
        webhook
            .receive(request, Bytes::from(body), inbox.as_ref())
            .await
            .unwrap();
        assert_eq!(inbox.batches().len(), 1);
    }
}
