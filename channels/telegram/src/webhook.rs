//! `POST /webhooks/telegram/{bot}`: updates Telegram posts for a bot in webhook mode, each with
//! the secret given to `setWebhook` in `X-Telegram-Bot-Api-Secret-Token`.
//!
//! The path below `/webhooks/telegram` is the bot's name. The secret is in the head, so it is
//! checked before the body is read ([`Webhook::check`]): a forged update costs the gateway no
//! more than its headers. A bot that polls has no webhook (its path is as unknown as a bot that
//! does not exist), which keeps a forgotten webhook from feeding a bot twice.

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use switchboard_channel::{BodyCheck, Inbox, Webhook, WebhookAnswer, WebhookError, WebhookRequest};

use crate::{MAX_UPDATE_BYTES, SECRET_HEADER, bots::Telegram, decode, verify_secret};

impl Telegram {
    /// The bot a webhook request is for, with its secret.
    fn webhook_bot<'a>(
        &'a self,
        request: &'a WebhookRequest,
    ) -> Result<(&'a str, &'a str), WebhookError> {
        let bot = request.path.as_str();
        if bot.is_empty() || bot.contains('/') {
            return Err(WebhookError::not_found("route"));
        }
        if request.method != Method::POST {
            return Err(WebhookError::method_not_allowed());
        }
        let secret = self
            .webhook_secret(bot)
            .ok_or_else(|| WebhookError::not_found("telegram bot"))?;
        Ok((bot, secret))
    }
}

#[async_trait]
impl Webhook for Telegram {
    fn check(&self, request: &WebhookRequest) -> Result<BodyCheck, WebhookError> {
        let (bot, secret) = self.webhook_bot(request)?;
        if verify_secret(request.header(SECRET_HEADER), secret).is_err() {
            tracing::warn!(%bot, "refused a Telegram webhook without the right secret");
            return Err(WebhookError::unauthorized(
                "invalid_secret",
                "the X-Telegram-Bot-Api-Secret-Token header is missing or wrong",
            ));
        }
        // Authenticated: now the body is worth reading.
        Ok(BodyCheck::Trusted {
            max_bytes: MAX_UPDATE_BYTES,
        })
    }

    async fn receive(
        &self,
        request: WebhookRequest,
        body: Bytes,
        inbox: &dyn Inbox,
    ) -> Result<WebhookAnswer, WebhookError> {
        // The gateway calls this only after `check` accepted the head; checking again costs
        // nothing and keeps an unchecked call from ever storing a forged update.
        self.check(&request)?;
        let bot = request.path.as_str();
        let update = decode(&body).map_err(WebhookError::invalid)?;
        let delivered = self.deliver(bot, vec![update], None, inbox).await?;
        let mut answer = delivered.ingested.summary();
        if let Some(reason) = delivered.ignored.first() {
            answer["ignored"] = (*reason).into();
        }
        Ok(WebhookAnswer::Json(answer))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::{HeaderMap, StatusCode};
    use serde_json::json;
    use switchboard_channel::{Checkpoint, InboundEvent, testing::FakeInbox};

    use super::*;

    /// A recorded update of `webhooks/telegram/`.
    fn fixture(name: &str) -> Vec<u8> {
        switchboard_channel::testing::fixture("telegram", name)
    }

    const SECRET: &str = "test-webhook-secret";

    /// The status a refusal is answered with.
    fn status(result: &Result<BodyCheck, WebhookError>) -> Option<StatusCode> {
        result.as_ref().err().map(|e| e.status)
    }

    /// Bot `support` in webhook mode and `sales` polling, on a Bot API nobody answers at (button
    /// presses are answered best effort).
    fn telegram() -> Telegram {
        let config: crate::Config = serde_json::from_value(json!({
            "api_url": "http://127.0.0.1:9",
            "token": "123:abc",
            "name": "support",
            "webhook_secret": SECRET,
            "bots": [{"name": "sales", "token": "456:def", "mode": "polling", "webhook_secret": SECRET}]
        }))
        .unwrap();
        Telegram::from_config(&config).unwrap().unwrap()
    }

    fn request(method: Method, path: &str, secret: Option<&str>) -> WebhookRequest {
        let mut headers = HeaderMap::new();
        if let Some(secret) = secret {
            headers.insert(SECRET_HEADER, secret.parse().unwrap());
        }
        WebhookRequest {
            method,
            path: path.into(),
            query: None,
            headers,
        }
    }

    fn post(path: &str, secret: Option<&str>) -> WebhookRequest {
        request(Method::POST, path, secret)
    }

    #[tokio::test]
    async fn the_right_secret_lets_the_body_in() {
        let telegram = telegram();
        assert_eq!(
            telegram.check(&post("support", Some(SECRET))),
            Ok(BodyCheck::Trusted {
                max_bytes: MAX_UPDATE_BYTES
            })
        );
    }

    #[tokio::test]
    async fn a_wrong_or_missing_secret_is_refused_and_changes_nothing() {
        let telegram = telegram();
        let inbox = FakeInbox::default();
        for secret in [None, Some("guess"), Some("")] {
            let refused = telegram.check(&post("support", secret)).unwrap_err();
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
            assert_eq!(refused.code, "invalid_secret");
            assert_eq!(
                refused.message,
                "the X-Telegram-Bot-Api-Secret-Token header is missing or wrong"
            );
            assert!(!format!("{refused:?}").contains(SECRET));
            // Even if the gateway did call `receive`, nothing would be stored.
            let refused = telegram
                .receive(
                    post("support", secret),
                    Bytes::from(fixture("text.json")),
                    &inbox,
                )
                .await
                .unwrap_err();
            assert_eq!(refused.code, "invalid_secret");
        }
        assert!(inbox.batches().is_empty());
    }

    #[tokio::test]
    async fn unknown_and_polling_bots_have_no_webhook() {
        let telegram = telegram();
        for path in ["another-bot", "sales"] {
            let refused = telegram.check(&post(path, Some(SECRET))).unwrap_err();
            assert_eq!(
                (refused.status, refused.code, refused.message.as_str()),
                (StatusCode::NOT_FOUND, "not_found", "telegram bot not found"),
                "{path}"
            );
        }
        for path in ["", "support/extra"] {
            let result = telegram.check(&post(path, Some(SECRET)));
            assert_eq!(status(&result), Some(StatusCode::NOT_FOUND), "{path:?}");
        }
        let result = telegram.check(&request(Method::GET, "support", Some(SECRET)));
        assert_eq!(status(&result), Some(StatusCode::METHOD_NOT_ALLOWED));
    }

    #[tokio::test]
    async fn an_update_is_ingested_and_answered_with_the_summary() {
        let telegram = telegram();
        let inbox = FakeInbox::default();
        let answer = telegram
            .receive(
                post("support", Some(SECRET)),
                Bytes::from(fixture("text.json")),
                &inbox,
            )
            .await
            .unwrap();
        assert_eq!(
            answer,
            WebhookAnswer::Json(json!({
                "status": "ok", "events": 1, "stored": 1, "duplicates": 0, "statuses": 0
            }))
        );
        let batches = inbox.batches();
        assert_eq!(batches.len(), 1);
        let (events, checkpoint) = &batches[0];
        assert_eq!(checkpoint, &None::<Checkpoint>);
        match events.as_slice() {
            [InboundEvent::Message(message)] => assert_eq!(message.account, "support"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_group_message_for_someone_else_is_answered_as_ignored() {
        let telegram = telegram();
        let inbox = FakeInbox::default();
        let answer = telegram
            .receive(
                post("support", Some(SECRET)),
                Bytes::from(fixture("group_other.json")),
                &inbox,
            )
            .await
            .unwrap();
        assert_eq!(
            answer,
            WebhookAnswer::Json(json!({
                "status": "ok", "events": 0, "stored": 0, "duplicates": 0, "statuses": 0,
                "ignored": "group message not addressed to the bot"
            }))
        );
        assert!(inbox.batches().is_empty(), "nothing to store");
    }

    #[tokio::test]
    async fn a_body_that_is_no_update_is_refused() {
        let telegram = telegram();
        let inbox = FakeInbox::default();
        let refused = telegram
            .receive(
                post("support", Some(SECRET)),
                Bytes::from(fixture("not_telegram.json")),
                &inbox,
            )
            .await
            .unwrap_err();
        assert_eq!(
            (refused.status, refused.code),
            (StatusCode::BAD_REQUEST, "invalid_payload")
        );
        assert!(
            refused.message.starts_with("not a Telegram update: "),
            "{}",
            refused.message
        );
        assert!(inbox.batches().is_empty());
    }

    #[tokio::test]
    async fn a_failed_ingest_is_answered_with_the_inbox_error() {
        let telegram = Arc::new(telegram());
        let inbox = FakeInbox::default();
        inbox.fail_next(1);
        let refused = telegram
            .receive(
                post("support", Some(SECRET)),
                Bytes::from(fixture("text.json")),
                &inbox,
            )
            .await
            .unwrap_err();
        assert_eq!(
            (refused.status, refused.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert!(inbox.batches().is_empty());
    }
}
