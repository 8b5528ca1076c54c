//! `POST /webhooks/api/{integration}`: where integrations deliver their users' messages and the
//! statuses of the gateway's replies.
//!
//! The head is checked before anything is read: the route must name a configured integration,
//! and the request must carry a well-formed signature and timestamp. The body is then read within
//! the configured limit (as unproven: the proof is a signature over it), verified, checked for
//! freshness against the gateway's clock, parsed, and handed to the inbox in one batch. Repeats
//! are not refused here: an integration that retries a delivery it is unsure of gets the same
//! answer again, and the gateway recognises the messages by their ids.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use switchboard_channel::{
    BodyCheck, Inbox, Ingested, Webhook, WebhookAnswer, WebhookError, WebhookRequest,
    signature::check_sha256_format,
};

use crate::{
    config::{Integration, Integrations},
    inbound::parse,
    signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, is_fresh, parse_timestamp, verify_text},
};

/// The channel's webhook.
pub(crate) struct ApiWebhook {
    integrations: Arc<Integrations>,
}

/// What the head of a request says, once checked.
struct Head<'a> {
    integration: &'a Integration,
    signature: &'a str,
    timestamp_text: &'a str,
    timestamp: i64,
}

impl ApiWebhook {
    pub(crate) fn new(integrations: Arc<Integrations>) -> Self {
        Self { integrations }
    }

    /// Checks the route, the method, the type and the presence and form of the proof.
    fn head<'a>(&'a self, request: &'a WebhookRequest) -> Result<Head<'a>, WebhookError> {
        let integration = self
            .integrations
            .get(&request.path)
            .ok_or_else(|| WebhookError::not_found("integration"))?;
        if request.method != Method::POST {
            return Err(WebhookError::method_not_allowed());
        }
        // An integration that says what it sends must send JSON; one that says nothing is read
        // as JSON all the same.
        let content_type = request.content_type();
        if !content_type.is_empty()
            && content_type != "application/json"
            && !content_type.ends_with("+json")
        {
            return Err(WebhookError::unsupported_type(
                "the request body must be JSON (Content-Type: application/json)",
            ));
        }
        let signature = request.header(SIGNATURE_HEADER);
        if let Err(e) = check_sha256_format(signature) {
            tracing::warn!(integration = %integration.name, reason = %e, "refused an API request without a valid signature header");
            return Err(bad_signature());
        }
        let timestamp_text = request.header(TIMESTAMP_HEADER).unwrap_or_default();
        let Some(timestamp) = parse_timestamp(timestamp_text) else {
            tracing::warn!(integration = %integration.name, "refused an API request without a valid timestamp header");
            return Err(bad_signature());
        };
        Ok(Head {
            integration,
            signature: signature.unwrap_or_default(),
            timestamp_text,
            timestamp,
        })
    }
}

#[async_trait]
impl Webhook for ApiWebhook {
    fn check(&self, request: &WebhookRequest) -> Result<BodyCheck, WebhookError> {
        self.head(request)?;
        Ok(BodyCheck::Unverified {
            max_bytes: self.integrations.max_body_bytes,
        })
    }

    async fn receive(
        &self,
        request: WebhookRequest,
        body: Bytes,
        inbox: &dyn Inbox,
    ) -> Result<WebhookAnswer, WebhookError> {
        let head = self.head(&request)?;
        let integration = head.integration;
        let secret = integration.secret.expose();
        if let Err(e) = verify_text(secret, head.timestamp_text, &body, head.signature) {
            tracing::warn!(integration = %integration.name, reason = %e, "refused an API request with a bad signature");
            return Err(bad_signature());
        }
        // Checked after the signature, so that the answer tells a correctly signed old request
        // (a replay, or a clock that is off) from a forged one.
        if !is_fresh(head.timestamp, inbox.now()) {
            tracing::warn!(
                integration = %integration.name,
                timestamp = head.timestamp,
                now = inbox.now().timestamp(),
                "refused an API request signed too long ago (or in the future)"
            );
            return Err(WebhookError::unauthorized(
                "stale_signature",
                "X-Switchboard-Timestamp is more than 5 minutes away from the gateway's clock; \
                 sign every request (and every retry) when it is sent",
            ));
        }
        let events = parse(&body, &integration.name).map_err(WebhookError::invalid)?;
        if events.is_empty() {
            return Ok(Ingested::default().into());
        }
        let received = events.len();
        let ingested = inbox.ingest(events, None).await.map_err(|e| {
            tracing::warn!(integration = %integration.name, received, reason = %e, "an API request was not stored");
            WebhookError::from(e)
        })?;
        Ok(ingested.into())
    }
}

fn bad_signature() -> WebhookError {
    WebhookError::unauthorized(
        "invalid_signature",
        "X-Switchboard-Signature must be sha256=<hex HMAC-SHA256 of \"{timestamp}.{body}\"> under \
         the integration's secret, with the timestamp in X-Switchboard-Timestamp",
    )
}
