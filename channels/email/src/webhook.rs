//! Inbound mail over HTTP, one route below `/webhooks/email` per way mail reaches the gateway:
//!
//! - `POST /webhooks/email/mailgun`: Mailgun's "forward" route (URL-encoded or multipart form),
//!   signed with the webhook signing key over `timestamp ‖ token`; signatures older than
//!   `email.signature_max_age` are refused, and each token is accepted once (recorded by the
//!   gateway in the transaction that stores the mail, so a Mailgun retry after a failure still
//!   gets through).
//! - `POST /webhooks/email/postmark`: Postmark's inbound JSON, behind Basic auth.
//! - `POST /webhooks/email/sendgrid`: SendGrid's Inbound Parse (multipart), behind Basic auth.
//! - `POST /webhooks/email/raw`: a `message/rfc822` body from a self-hosted MTA, with the body's
//!   HMAC in `X-Switchboard-Signature`.
//!
//! Each route is off (404) until its secret and `email.from` are configured. What the head can
//! prove is checked before the body is read ([`Webhook::check`]): Basic auth, the presence and
//! form of the raw route's signature, a form route's content type; the signed routes' bodies
//! are read within the gateway's budget for unproven bodies. Every route then ends in
//! [`receive`](crate::receive): automated mail is acknowledged with
//! `{"status": "ignored", "reason": …}`, anything else goes to the gateway's inbox.

use std::{convert::Infallible, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use switchboard_channel::{
    BodyCheck, Checkpoint, Inbox, Secret, Webhook, WebhookAnswer, WebhookError, WebhookRequest,
    signature, webhook::require_basic,
};

use crate::{
    Config, ReplyAddress, parse_mime,
    providers::{
        mailgun::{self, MailgunError},
        postmark, raw, sendgrid,
    },
    receive::receive,
};

/// The content types the form routes read.
const URLENCODED: &str = "application/x-www-form-urlencoded";
const MULTIPART: &str = "multipart/form-data";

/// The e-mail channel's webhooks.
pub struct EmailWebhook {
    /// The gateway's address; every route is off without it.
    ours: Option<ReplyAddress>,
    mailgun_signing_key: Option<Secret>,
    /// Basic-auth user and password of the Postmark and SendGrid routes.
    basic: Option<(Secret, Secret)>,
    raw_secret: Option<Secret>,
    max_bytes: usize,
    signature_max_age: Duration,
    max_attachments: usize,
}

// By hand: which routes are on is worth seeing, the secrets (even masked) are not.
impl std::fmt::Debug for EmailWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailWebhook")
            .field("ours", &self.ours)
            .field("mailgun", &self.mailgun_signing_key.is_some())
            .field("postmark_sendgrid", &self.basic.is_some())
            .field("raw", &self.raw_secret.is_some())
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// A route below `/webhooks/email`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Mailgun,
    Postmark,
    Sendgrid,
    Raw,
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        match path {
            "mailgun" => Some(Route::Mailgun),
            "postmark" => Some(Route::Postmark),
            "sendgrid" => Some(Route::Sendgrid),
            "raw" => Some(Route::Raw),
            _ => None,
        }
    }
}

/// What a request may use once its head passed: the route and the gateway's address.
struct Passed<'a> {
    route: Route,
    ours: &'a ReplyAddress,
}

impl EmailWebhook {
    /// The routes `config` turns on.
    pub fn new(config: &Config) -> EmailWebhook {
        EmailWebhook {
            ours: config.reply_address(),
            mailgun_signing_key: config.mailgun_signing_key.clone(),
            basic: config
                .inbound_user
                .clone()
                .zip(config.inbound_password.clone()),
            raw_secret: config.raw_secret.clone(),
            max_bytes: config.max_bytes,
            signature_max_age: config.signature_max_age,
            max_attachments: config.max_attachments,
        }
    }

    /// Everything [`Webhook::check`] checks, with what the body's reader needs.
    fn pass<'a>(
        &'a self,
        request: &WebhookRequest,
    ) -> Result<(Passed<'a>, BodyCheck), WebhookError> {
        let route = Route::of(&request.path).ok_or_else(|| WebhookError::not_found("route"))?;
        if request.method != Method::POST {
            return Err(WebhookError::method_not_allowed());
        }
        let max_bytes = self.max_bytes;
        match route {
            Route::Mailgun => {
                let (Some(ours), Some(_)) = (&self.ours, &self.mailgun_signing_key) else {
                    return Err(WebhookError::off("email (mailgun)"));
                };
                form_type(request)?;
                // The proof of origin is inside the body.
                Ok((Passed { route, ours }, BodyCheck::Unverified { max_bytes }))
            }
            Route::Postmark | Route::Sendgrid => {
                let (Some(ours), Some((user, password))) = (&self.ours, &self.basic) else {
                    return Err(WebhookError::off("email (postmark, sendgrid)"));
                };
                require_basic(request, user, password)?;
                if route == Route::Sendgrid {
                    form_type(request)?;
                }
                Ok((Passed { route, ours }, BodyCheck::Trusted { max_bytes }))
            }
            Route::Raw => {
                let (Some(ours), Some(_)) = (&self.ours, &self.raw_secret) else {
                    return Err(WebhookError::off("email (raw)"));
                };
                // Not signed: refused unread.
                if let Err(e) =
                    signature::check_sha256_format(request.header(raw::SIGNATURE_HEADER))
                {
                    tracing::warn!(reason = %e, "refused a raw mail without a signature");
                    return Err(bad_raw_signature());
                }
                Ok((Passed { route, ours }, BodyCheck::Unverified { max_bytes }))
            }
        }
    }

    async fn mailgun(
        &self,
        request: &WebhookRequest,
        body: Bytes,
        ours: &ReplyAddress,
        inbox: &dyn Inbox,
    ) -> Result<WebhookAnswer, WebhookError> {
        let key = self
            .mailgun_signing_key
            .as_ref()
            .ok_or_else(|| WebhookError::off("email (mailgun)"))?;
        let fields = form_fields(request, body).await?;
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let (timestamp, token, signature) =
            (field("timestamp"), field("token"), field("signature"));
        let checked = mailgun::verify(
            key,
            &timestamp,
            &token,
            &signature,
            inbox.now(),
            self.signature_max_age,
        );
        if let Err(e) = checked {
            tracing::warn!(reason = %e, "refused a Mailgun webhook");
            let code = match e {
                MailgunError::Stale => "stale_signature",
                MailgunError::Invalid => "invalid_signature",
            };
            return Err(WebhookError::unauthorized(
                code,
                "the Mailgun signature is missing, wrong or too old",
            ));
        }
        let email = mailgun::parse(&fields, ours).map_err(WebhookError::invalid)?;
        let once = Checkpoint::Once {
            scope: "mailgun".into(),
            token,
        };
        Ok(
            receive(inbox, ours, self.max_attachments, email, Some(once))
                .await?
                .into(),
        )
    }

    async fn raw(
        &self,
        request: &WebhookRequest,
        body: Bytes,
        ours: &ReplyAddress,
        inbox: &dyn Inbox,
    ) -> Result<WebhookAnswer, WebhookError> {
        let secret = self
            .raw_secret
            .as_ref()
            .ok_or_else(|| WebhookError::off("email (raw)"))?;
        if raw::verify(request.header(raw::SIGNATURE_HEADER), &body, secret).is_err() {
            tracing::warn!("refused a raw mail with a bad signature");
            return Err(bad_raw_signature());
        }
        let email = parse_mime(&body, ours).map_err(WebhookError::invalid)?;
        Ok(receive(inbox, ours, self.max_attachments, email, None)
            .await?
            .into())
    }
}

#[async_trait]
impl Webhook for EmailWebhook {
    fn check(&self, request: &WebhookRequest) -> Result<BodyCheck, WebhookError> {
        self.pass(request).map(|(_, check)| check)
    }

    async fn receive(
        &self,
        request: WebhookRequest,
        body: Bytes,
        inbox: &dyn Inbox,
    ) -> Result<WebhookAnswer, WebhookError> {
        // Checked again: a body is never read for a request whose head would be refused.
        let (Passed { route, ours }, _) = self.pass(&request)?;
        match route {
            Route::Mailgun => self.mailgun(&request, body, ours, inbox).await,
            Route::Postmark => {
                let email = postmark::parse(&body, ours).map_err(WebhookError::invalid)?;
                Ok(receive(inbox, ours, self.max_attachments, email, None)
                    .await?
                    .into())
            }
            Route::Sendgrid => {
                let fields = form_fields(&request, body).await?;
                let email = sendgrid::parse(&fields, ours).map_err(WebhookError::invalid)?;
                Ok(receive(inbox, ours, self.max_attachments, email, None)
                    .await?
                    .into())
            }
            Route::Raw => self.raw(&request, body, ours, inbox).await,
        }
    }
}

fn bad_raw_signature() -> WebhookError {
    WebhookError::unauthorized(
        "invalid_signature",
        "the X-Switchboard-Signature header is missing or does not match the body",
    )
}

/// 415 unless the request is a form the routes can read.
fn form_type(request: &WebhookRequest) -> Result<(), WebhookError> {
    match request.content_type().as_str() {
        URLENCODED | MULTIPART => Ok(()),
        _ => Err(WebhookError::unsupported_type(
            "send the mail as multipart/form-data or application/x-www-form-urlencoded",
        )),
    }
}

/// The fields of a form, URL-encoded or multipart, as `(name, value)` pairs in the order
/// received. A multipart file part's name and type travel beside it as `{name}.filename` and
/// `{name}.content-type` (Mailgun's and SendGrid's parsed modes need them).
pub(crate) async fn form_fields(
    request: &WebhookRequest,
    body: Bytes,
) -> Result<Vec<(String, Vec<u8>)>, WebhookError> {
    form_type(request)?;
    if request.content_type() == URLENCODED {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&body).map_err(WebhookError::invalid)?;
        return Ok(pairs
            .into_iter()
            .map(|(name, value)| (name, value.into_bytes()))
            .collect());
    }
    let boundary = multer::parse_boundary(request.header("content-type").unwrap_or_default())
        .map_err(WebhookError::invalid)?;
    let stream = futures::stream::once(async move { Ok::<Bytes, Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut fields = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(WebhookError::invalid)?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if let Some(filename) = field.file_name() {
            fields.push((format!("{name}.filename"), filename.as_bytes().to_vec()));
        }
        if let Some(content_type) = field.content_type() {
            fields.push((
                format!("{name}.content-type"),
                content_type.to_string().into_bytes(),
            ));
        }
        let value = field.bytes().await.map_err(WebhookError::invalid)?;
        fields.push((name, value.to_vec()));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests;
