//! Replies by e-mail: [`SmtpSender`] sends each outbound message as one mail over SMTP.
//!
//! E-mail carries its conversation in every message, so the sender asks the gateway for the
//! thread ([`Sender::wants_thread`]) and composes ([`compose`]) a mail that mail clients file
//! under the right thread and that brings the user's answer back to the right conversation:
//! `In-Reply-To` and `References` from the thread's provider ids, a `Reply-To` plus-address with
//! the thread's token, a Message-ID the gateway recognises as its own, `Re:` once in the
//! subject, and the recent thread quoted below the reply in both a text and an HTML part. Mail
//! has no practical length limit ([`Sender::text_limit`] is `None`) and no service window.
//!
//! Three things shape the sending beyond lettre's defaults:
//!
//! - **One attempt, bounded.** A [`Sender`] must not retry: the gateway retries transient
//!   failures from its job queue. lettre's tokio transport applies its timeout to connecting
//!   only (a server that accepts and then stays silent would hold the job forever), so the
//!   whole delivery — connect, TLS, authentication, the transaction — runs under
//!   [`SmtpSettings::timeout`] as a deadline.
//! - **A connection per mail.** lettre's connection pool is not enabled: it would spawn a task
//!   at construction and keep idle connections that servers drop anyway; a gateway's reply rate
//!   does not need it. Nothing connects before the first send.
//! - **Classified failures.** Every lettre error becomes a [`SendError`] in [`classify`]: 4xx
//!   replies and connection trouble are transient, 5xx replies permanent with the reply code as
//!   the failure's code, and TLS or credential failures permanent *and* logged as errors, since
//!   every mail fails until an operator fixes the settings. The password is never logged: only
//!   the URL without its user information appears in logs.
//!
//! # SMTP URLs
//!
//! [`SmtpSettings::url`] is read by lettre's `AsyncSmtpTransport::from_url`:
//!
//! | URL | connection | default port |
//! |---|---|---|
//! | `smtps://user:pass@host:port` | implicit TLS (recommended) | 465 |
//! | `smtp://user:pass@host:port?tls=required` | STARTTLS, refused if the server does not offer it | 587 |
//! | `smtp://user:pass@host:port?tls=opportunistic` | STARTTLS when offered, else plain (no protection against an active attacker) | 587 |
//! | `smtp://host:port` | plain text, never STARTTLS (a local relay, tests) | 25 |
//!
//! User and password are optional and must be percent-encoded; a path (`smtps://host/name`)
//! sets the EHLO name. Anything else (`?tls=none`, other schemes) is refused by
//! [`SmtpSender::new`].

mod classify;
mod compose;

#[cfg(test)]
mod tests;

use std::{fmt, time::Duration};

use async_trait::async_trait;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor, message::Mailbox};
use switchboard_channel::{OutboundMessage, SendError, Sender, Sent, text::Measure};

use crate::SmtpSettings;
use compose::{Composed, Identity};

/// The code of every configuration problem found by [`SmtpSender::new`].
const INVALID_SETTINGS: &str = "invalid_smtp_settings";

/// Sends the gateway's messages as e-mail replies over SMTP.
///
/// Cheap to share: it holds the parsed settings only and connects for each mail.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    identity: Identity,
    /// The deadline of one delivery.
    timeout: Duration,
    /// The SMTP URL without user information, for logs.
    server: String,
}

// By hand: the settings' URL may hold a password.
impl fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSender")
            .field("server", &self.server)
            .field("from", &self.identity.from.to_string())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// A sender for `settings`. Checks them without connecting: an SMTP URL lettre cannot use
    /// (see [`SmtpSettings::url`] for the forms), a `from` that is not a mailbox
    /// (`Support <support@example.com>` or a bare address), a reply address or Message-ID
    /// domain that cannot form addresses, or a zero timeout fail with the permanent code
    /// `invalid_smtp_settings`.
    pub fn new(settings: SmtpSettings) -> Result<Self, SendError> {
        let invalid = |reason: String| SendError::permanent(INVALID_SETTINGS, reason);
        let server = without_user_info(settings.url.trim());
        if settings.timeout.is_zero() {
            return Err(invalid("the SMTP timeout must be longer than zero".into()));
        }
        let from: Mailbox = settings.from.trim().parse().map_err(|err| {
            invalid(format!(
                "the sender {:?} is not a mailbox like \"Support <support@example.com>\": {err}",
                settings.from
            ))
        })?;
        let reply_to = &settings.reply_to;
        for address in [
            format!("{}@{}", reply_to.local, reply_to.domain),
            // Thread tokens are lowercase hex; any such token must make an address too.
            reply_to.with_token("0123456789abcdef"),
        ] {
            address.parse::<Address>().map_err(|err| {
                invalid(format!(
                    "the reply address {address:?} is not an address: {err}"
                ))
            })?;
        }
        let message_id_domain = settings.message_id_domain.trim().to_owned();
        if !compose::valid_domain(&message_id_domain) {
            return Err(invalid(format!(
                "the Message-ID domain {:?} is not a domain name",
                settings.message_id_domain
            )));
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(settings.url.trim())
            .map_err(|err| {
                // lettre's errors describe the problem without repeating the URL.
                invalid(format!("the SMTP URL {server:?} is not usable: {err}"))
            })?
            .timeout(Some(settings.timeout))
            .build();
        if sends_credentials_in_clear(settings.url.trim()) {
            tracing::warn!(
                server = %server,
                "the SMTP URL has credentials but no TLS: the password crosses the network \
                 unencrypted (use smtps:// or ?tls=required)"
            );
        }
        if plain_on_implicit_tls_port(settings.url.trim()) {
            tracing::warn!(
                server = %server,
                "port 465 expects TLS from the first byte: use smtps:// (smtp:// would wait for a \
                 greeting that never comes)"
            );
        }
        Ok(SmtpSender {
            transport,
            identity: Identity {
                from,
                reply_to: settings.reply_to,
                message_id_domain,
            },
            timeout: settings.timeout,
            server,
        })
    }

    /// Connects to the SMTP server and greets it (authenticating when the URL has credentials),
    /// for the health report. The error says what failed, with the server's address but never its
    /// credentials.
    pub async fn check(&self) -> Result<(), String> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("{} did not accept a connection", self.server)),
            Err(e) => Err(format!("{}: {}", self.server, classify::classify(&e).error)),
        }
    }

    /// Logs a failed delivery and says what the gateway should do.
    fn failure(&self, message_id: &str, error: &lettre::transport::smtp::Error) -> SendError {
        let classify::Failure { error, operator } = classify::classify(error);
        match (&error, operator) {
            (SendError::Permanent { code, reason }, Some(operator)) => tracing::error!(
                server = %self.server,
                message_id,
                %code,
                %reason,
                "{operator}; every e-mail fails until the SMTP settings are fixed"
            ),
            (SendError::Transient { reason, .. }, _) => tracing::warn!(
                server = %self.server,
                message_id,
                %reason,
                "an e-mail could not be sent; it may succeed later"
            ),
            (SendError::Permanent { code, reason }, None) => tracing::warn!(
                server = %self.server,
                message_id,
                %code,
                %reason,
                "the SMTP server refused an e-mail"
            ),
            (SendError::Unreachable { reason }, _) => tracing::info!(
                server = %self.server,
                message_id,
                %reason,
                "the e-mail recipient cannot be reached"
            ),
        }
        error
    }
}

#[async_trait]
impl Sender for SmtpSender {
    /// Sends `message` to the address `message.to` as one mail (see the module documentation).
    /// The [`Sent::provider_message_id`] is the mail's Message-ID without angle brackets.
    async fn send(&self, message: &OutboundMessage) -> Result<Sent, SendError> {
        let Composed { mail, message_id } = compose::compose(&self.identity, message)?;
        match tokio::time::timeout(self.timeout, self.transport.send(mail)).await {
            Ok(Ok(response)) => {
                tracing::debug!(
                    server = %self.server,
                    message_id,
                    code = %response.code(),
                    answer = response.first_line().unwrap_or_default(),
                    "e-mail accepted by the SMTP server"
                );
                Ok(Sent {
                    provider_message_id: message_id,
                    substituted: None,
                })
            }
            Ok(Err(err)) => Err(self.failure(&message_id, &err)),
            Err(_elapsed) => {
                let reason = format!("the SMTP delivery took longer than {:?}", self.timeout);
                tracing::warn!(
                    server = %self.server,
                    message_id,
                    %reason,
                    "an e-mail could not be sent; it may succeed later"
                );
                Err(SendError::transient(reason))
            }
        }
    }

    /// Mail has no practical length limit: a reply is never split.
    fn text_limit(&self) -> Option<(usize, Measure)> {
        None
    }

    /// Mail can be sent at any time.
    fn service_window(&self) -> Option<Duration> {
        None
    }

    /// Every mail carries its thread: subject, threading headers, reply token and history.
    fn wants_thread(&self) -> bool {
        true
    }
}

/// The parts of an SMTP URL the sender looks at itself (lettre parses it for real): enough to
/// log it without its password and to warn about risky set-ups.
struct UrlParts<'a> {
    scheme: &'a str,
    has_user_info: bool,
    host: &'a str,
    port: Option<&'a str>,
    /// Path, query and fragment, as written.
    tail: &'a str,
}

impl<'a> UrlParts<'a> {
    fn of(url: &'a str) -> Option<UrlParts<'a>> {
        let (scheme, rest) = url.split_once("://")?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (has_user_info, host_port) = match authority.rsplit_once('@') {
            Some((_, host_port)) => (true, host_port),
            None => (false, authority),
        };
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') && !port.contains(']') => (host, Some(port)),
            _ => (host_port, None),
        };
        Some(UrlParts {
            scheme,
            has_user_info,
            host,
            port,
            tail,
        })
    }

    /// Whether the URL asks for STARTTLS (`?tls=required` or `?tls=opportunistic`).
    fn has_tls_parameter(&self) -> bool {
        self.tail
            .split_once('?')
            .is_some_and(|(_, query)| query.split(['&', '#']).any(|pair| pair.starts_with("tls=")))
    }
}

/// The URL without its user information (`smtps://user:pass@host` → `smtps://host`), for logs
/// (and [`SmtpSettings`]'s `Debug`).
pub(crate) fn without_user_info(url: &str) -> String {
    match UrlParts::of(url) {
        Some(parts) => {
            let port = parts
                .port
                .map(|port| format!(":{port}"))
                .unwrap_or_default();
            format!("{}://{}{port}{}", parts.scheme, parts.host, parts.tail)
        }
        // Not a URL at all: nothing of it is safe to show.
        None => "(not a URL)".to_owned(),
    }
}

/// Whether a URL has user information but sends it without TLS to another machine.
fn sends_credentials_in_clear(url: &str) -> bool {
    UrlParts::of(url).is_some_and(|parts| {
        parts.scheme == "smtp"
            && parts.has_user_info
            && !parts.has_tls_parameter()
            && !matches!(parts.host, "localhost" | "127.0.0.1" | "[::1]")
    })
}

/// Whether a URL speaks plain SMTP to port 465, where servers expect implicit TLS and stay silent
/// until the handshake: every delivery would time out.
fn plain_on_implicit_tls_port(url: &str) -> bool {
    UrlParts::of(url).is_some_and(|parts| parts.scheme == "smtp" && parts.port == Some("465"))
}
