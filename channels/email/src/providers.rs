//! The routes mail takes into the gateway, and how each proves where it comes from.
//!
//! Every provider delivers inbound mail as an HTTP POST to the gateway, in its own shape:
//!
//! - [`mailgun`]: a form, signed with the webhook signing key (HMAC of a timestamp and a one-time
//!   token); the raw mail in `body-mime` in "mime" mode, pre-parsed fields otherwise;
//! - [`postmark`]: JSON, unsigned (the route is protected with Basic auth);
//! - [`sendgrid`]: a multipart form, the raw mail in `email` in raw mode, pre-parsed fields
//!   otherwise; unsigned (Basic auth in the URL SendGrid is given);
//! - [`raw`]: the gateway's own route for a self-hosted MTA piping the mail as `message/rfc822`,
//!   signed with the gateway's secret.
//!
//! The functions here are pure, so they can be tested (and used) without any HTTP: the crate's
//! [`EmailWebhook`](crate::EmailWebhook) checks Basic auth, decodes the form into name and value
//! pairs and calls them; the gateway remembers Mailgun's tokens to refuse replays.
//! Whatever the route, the result is an [`InboundEmail`](crate::InboundEmail) read by the same
//! rules; raw MIME is always preferred when a provider offers it, because the provider's
//! pre-parsed fields lose headers and attachment details.

mod form;
pub mod mailgun;
pub mod postmark;
pub mod raw;
pub mod sendgrid;
