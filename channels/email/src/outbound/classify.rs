//! How a failed SMTP delivery is reported to the gateway.
//!
//! SMTP says itself whether to retry: 4xx replies are transient, 5xx permanent (RFC 5321
//! §4.2.1), and lettre keeps that distinction ([`Error::is_transient`], [`Error::is_permanent`]).
//! Everything that is not a reply is ours to judge:
//!
//! - Connection trouble (refused, reset, DNS, a timeout) → transient: the server may be back soon.
//! - TLS failures (a certificate that does not verify, `smtps://` to a plain port, STARTTLS
//!   required but not offered) and refused credentials (535 and its relatives) → permanent, and
//!   worth an operator's attention: every mail fails the same way until the settings change.
//!   lettre reports a failed rustls handshake as a plain connection error, so it is recognised
//!   by the I/O error underneath it (`InvalidData`, which is how tokio-rustls reports TLS alerts
//!   and malformed records).
//! - Client-side refusals of lettre (the server lacks SMTPUTF8 for a non-ASCII address, or any
//!   authentication mechanism lettre knows) → permanent.
//!
//! A 5xx about the recipient (550 5.1.1 user unknown) stays a permanent failure of the message
//! and does not make the contact unreachable: the address may just be mistyped, and the user can
//! write again from a correct one.

use std::error::Error as _;

use lettre::transport::smtp::Error;
use switchboard_channel::{SendError, error_chain};

use super::compose::{REASON_LIMIT, cut};

/// Reply codes that mean our credentials (or the lack of them) are the problem: 530
/// authentication required, 534 mechanism too weak, 535 credentials invalid, 538 encryption
/// required for the mechanism (RFC 4954 §6).
const CREDENTIAL_CODES: [&str; 4] = ["530", "534", "535", "538"];

/// The code of TLS failures.
pub(super) const TLS: &str = "tls";

/// A failure, classified.
#[derive(Debug)]
pub(super) struct Failure {
    /// What the gateway is told.
    pub error: SendError,
    /// Set when the SMTP settings are at fault, so that every mail will fail alike: what the
    /// operator must look at, logged as an error.
    pub operator: Option<&'static str>,
}

impl Failure {
    fn transient(reason: String) -> Failure {
        Failure {
            error: SendError::transient(cut(reason, REASON_LIMIT)),
            operator: None,
        }
    }

    fn permanent(code: impl Into<String>, reason: String) -> Failure {
        Failure {
            error: SendError::permanent(code, cut(reason, REASON_LIMIT)),
            operator: None,
        }
    }

    fn alert(mut self, operator: &'static str) -> Failure {
        self.operator = Some(operator);
        self
    }
}

/// Classifies a failed delivery. Pure; [`super::SmtpSender`] does the logging. Reasons carry
/// the server's text or lettre's description, never the credentials (which lettre's errors do
/// not contain).
pub(super) fn classify(error: &Error) -> Failure {
    if let Some(code) = error.status() {
        let code = code.to_string();
        let text = server_text(error);
        if error.is_transient() {
            return Failure::transient(format!("the SMTP server answered {code}: {text}"));
        }
        let failure = Failure::permanent(code.as_str(), text);
        return if CREDENTIAL_CODES.contains(&code.as_str()) {
            failure.alert(
                "the SMTP server refused the credentials (or requires some the settings lack): \
                 check the user and password in the SMTP URL",
            )
        } else {
            failure
        };
    }
    let chain = error_chain(error);
    if error.is_timeout() {
        return Failure::transient(format!("the SMTP server did not answer in time: {chain}"));
    }
    if error.is_tls() || is_tls_handshake(error) || chain.contains("isn't a valid DNS name") {
        return Failure::permanent(TLS, format!("TLS with the SMTP server failed: {chain}")).alert(
            "TLS with the SMTP server failed: check the URL's scheme and port (smtps:// for \
             implicit TLS, usually 465; ?tls=required for STARTTLS, usually 587) and the \
             server's certificate",
        );
    }
    if error.is_client() {
        return client_refusal(&chain);
    }
    if error.is_response() {
        // A reply lettre could not read: a confused server or something in between; it may pass.
        return Failure::transient(format!("the SMTP server's answer is unreadable: {chain}"));
    }
    // Connection and network errors (lettre has no predicate for them), and a pool shut down.
    Failure::transient(format!("the SMTP server could not be reached: {chain}"))
}

/// A delivery lettre itself refused to attempt, or to continue.
fn client_refusal(chain: &str) -> Failure {
    if chain.contains("STARTTLS") {
        return Failure::permanent(TLS, chain.to_owned()).alert(
            "the SMTP URL requires STARTTLS (?tls=required) but the server does not offer it",
        );
    }
    if chain.contains("authentication mechanism") {
        return Failure::permanent("smtp_auth", chain.to_owned()).alert(
            "the SMTP server offers no authentication mechanism lettre supports (PLAIN, LOGIN)",
        );
    }
    if chain.contains("SMTPUTF8") {
        // The recipient's address has non-ASCII characters, which this server cannot take.
        return Failure::permanent("smtputf8", chain.to_owned());
    }
    Failure::permanent("smtp_client", chain.to_owned())
}

/// The text of the server's reply (lettre keeps it as the error's source), on one line.
fn server_text(error: &Error) -> String {
    let text = error
        .source()
        .map(|source| source.to_string())
        .unwrap_or_default();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        "(no text)".to_owned()
    } else {
        text
    }
}

/// Whether TLS failed underneath a connection or network error: tokio-rustls reports TLS alerts,
/// certificate errors and non-TLS answers as I/O errors of kind `InvalidData`. The one other
/// `InvalidData` error lettre can meet is a plain-text reply that is not UTF-8 (from its line
/// reader), which is left out by its message.
fn is_tls_handshake(error: &Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::InvalidData
                && !io.to_string().contains("UTF-8");
        }
        source = cause.source();
    }
    false
}
