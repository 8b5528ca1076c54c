//! Error messages with their causes, for logs and stored failure reasons: a connection error's
//! `Display` says only "error sending request", its sources say why (refused, timed out, TLS).

/// An error and its sources, joined with `: `.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source in their own message.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A payload that is not what the provider sends. Its message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct ParseError {
    what: &'static str,
    reason: String,
}

impl ParseError {
    /// `what` is not readable, because of `reason` (`not a WhatsApp webhook: missing entry`).
    pub fn new(what: &'static str, reason: impl Into<String>) -> ParseError {
        ParseError {
            what,
            reason: reason.into(),
        }
    }

    /// Why it is not readable.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}
