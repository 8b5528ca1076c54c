//! What the channel needs to know: the gateway's addresses and its SMTP server.

use std::{fmt, time::Duration};

/// The address replies go to: `<local>+<token>@<domain>`. Mail to any `<local>+…@<domain>` (or
/// plain `<local>@<domain>`) is mail to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyAddress {
    /// The local part before the `+`, e.g. `support`.
    pub local: String,
    /// The domain, e.g. `mail.example.com`.
    pub domain: String,
}

impl ReplyAddress {
    /// The address carrying a thread token.
    pub fn with_token(&self, token: &str) -> String {
        format!("{}+{token}@{}", self.local, self.domain)
    }

    /// The token of an address of ours (`<local>+<token>@<domain>`, compared case-insensitively),
    /// if it is one and carries a token.
    pub fn token_of(&self, address: &str) -> Option<String> {
        let (local, domain) = address.trim().rsplit_once('@')?;
        if !domain.eq_ignore_ascii_case(&self.domain) {
            return None;
        }
        let (base, token) = local.split_once('+')?;
        (base.eq_ignore_ascii_case(&self.local) && !token.is_empty())
            .then(|| token.to_ascii_lowercase())
    }
}

/// The SMTP side.
///
/// `Debug` leaves out the URL's user information, which holds the SMTP password.
#[derive(Clone)]
pub struct SmtpSettings {
    /// Read by lettre: `smtps://host:port` (implicit TLS, default port 465),
    /// `smtp://host:port?tls=required` (STARTTLS, refused when the server does not offer it; 587),
    /// `smtp://host:port?tls=opportunistic` (STARTTLS when offered, else plain; 587), or
    /// `smtp://host:port` (always plain, never STARTTLS; 25). Credentials as
    /// `smtps://user:pass@host`, percent-encoded.
    pub url: String,
    /// The sender, e.g. `Support <support@example.com>`.
    pub from: String,
    /// Where replies go.
    pub reply_to: ReplyAddress,
    /// The domain of the Message-IDs the gateway writes (its own, so replies are recognised).
    pub message_id_domain: String,
    /// Longest time for one SMTP delivery.
    pub timeout: Duration,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("url", &crate::outbound::without_user_info(&self.url))
            .field("from", &self.from)
            .field("reply_to", &self.reply_to)
            .field("message_id_domain", &self.message_id_domain)
            .field("timeout", &self.timeout)
            .finish()
    }
}
