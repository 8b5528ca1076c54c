//! The `[email]` section of the gateway's configuration: the channel's addresses, its SMTP
//! server, the secrets of its inbound routes and the IMAP mailbox it may poll.
//!
//! It lives here rather than in the gateway so that everything about mail — which keys exist,
//! their defaults, what combinations make sense — is decided by the crate that reads mail. The
//! gateway hands the section over as it found it (TOML and environment merged, see
//! [`ENV`]); [`Config::validate`] refuses what cannot work before anything starts.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_channel::Secret;

use crate::{ReplyAddress, SmtpSettings, imap::MailboxUrl};

/// Environment variables that set keys of the section, relative to it: `(variable, key)`.
pub const ENV: &[(&str, &str)] = &[
    ("EMAIL_FROM", "from"),
    ("EMAIL_REPLY_DOMAIN", "reply_domain"),
    ("SMTP_URL", "smtp_url"),
    ("MAILGUN_SIGNING_KEY", "mailgun_signing_key"),
    ("EMAIL_INBOUND_USER", "inbound_user"),
    ("EMAIL_INBOUND_PASSWORD", "inbound_password"),
    ("EMAIL_RAW_SECRET", "raw_secret"),
    ("EMAIL_IMAP_URL", "imap.url"),
];

/// Mailgun's one-time tokens are remembered for 7 days: a signature must go stale long before
/// its token is forgotten, or a captured request could be replayed once the token is.
const MAX_SIGNATURE_AGE: Duration = Duration::from_secs(24 * 3600);

/// The e-mail channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The gateway's address, e.g. `Support <support@mail.example.com>`: the sender of replies,
    /// and (its local part and domain) the address mail to the gateway goes to. Required for the
    /// channel.
    pub from: Option<String>,
    /// The domain of reply addresses (`<local>+<token>@<domain>`) and of the gateway's Message-IDs.
    /// Default: the domain of `from`.
    pub reply_domain: Option<String>,
    /// The SMTP server replies go through, read by lettre:
    ///
    /// - `smtps://user:password@host` — implicit TLS from the first byte (port 465 by default);
    ///   the recommended form;
    /// - `smtp://user:password@host:587?tls=required` — STARTTLS, and the mail is not sent when
    ///   the server does not offer it (port 587 by default);
    /// - `smtp://host:587?tls=opportunistic` — STARTTLS when the server offers it, plain text
    ///   otherwise (no protection against an active attacker);
    /// - `smtp://host:port` — **plain text, never STARTTLS**, whatever the port (25 by default):
    ///   `smtp://host:587` does *not* upgrade the connection, so user, password and mail cross
    ///   the network readable. Only for a relay on the same machine or a trusted network.
    ///
    /// User and password are percent-encoded. Unset: mail is received but not answered by mail.
    #[serde(deserialize_with = "Secret::optional")]
    pub smtp_url: Option<Secret>,
    /// Longest time for one SMTP delivery.
    #[serde(with = "humantime_serde")]
    pub smtp_timeout: Duration,
    /// Mailgun's webhook signing key: turns on `POST /webhooks/email/mailgun`.
    #[serde(deserialize_with = "Secret::optional")]
    pub mailgun_signing_key: Option<Secret>,
    /// Basic-auth user and password of `POST /webhooks/email/postmark` and `…/sendgrid` (set the
    /// same in the provider's webhook URL). Both needed to turn those routes on.
    #[serde(deserialize_with = "Secret::optional")]
    pub inbound_user: Option<Secret>,
    /// See `inbound_user`.
    #[serde(deserialize_with = "Secret::optional")]
    pub inbound_password: Option<Secret>,
    /// Secret of `POST /webhooks/email/raw` (self-hosted MTAs): the body's HMAC-SHA256 in
    /// `X-Switchboard-Signature: sha256=<hex>`.
    #[serde(deserialize_with = "Secret::optional")]
    pub raw_secret: Option<Secret>,
    /// Oldest Mailgun signature accepted (at most 24h).
    #[serde(with = "humantime_serde")]
    pub signature_max_age: Duration,
    /// Largest inbound mail (request body), in bytes.
    pub max_bytes: usize,
    /// Attachments kept of one mail at most; further ones are dropped (and counted in the
    /// message's metadata as `attachments_dropped`).
    pub max_attachments: usize,
    /// Mails of one sender answered per hour at most; further ones are stored unanswered (a
    /// guard against mail loops and floods).
    pub max_answers_per_hour: u32,
    /// Polling a mailbox over IMAP, for deployments without an inbound mail provider.
    pub imap: ImapConfig,
}

/// Polling a mailbox over IMAP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapConfig {
    /// The mailbox: `imaps://user:password@host:993/INBOX` (TLS), or `imap://…:143/INBOX`
    /// (plain, for a server on a trusted network). Unset: no polling.
    #[serde(deserialize_with = "Secret::optional")]
    pub url: Option<Secret>,
    /// How often the mailbox is checked when the server cannot notify (no IDLE).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Mark fetched mails read in the mailbox.
    pub mark_seen: bool,
}

impl Default for ImapConfig {
    fn default() -> Self {
        Self {
            url: None,
            poll_interval: Duration::from_secs(60),
            mark_seen: true,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            from: None,
            reply_domain: None,
            smtp_url: None,
            smtp_timeout: Duration::from_secs(30),
            mailgun_signing_key: None,
            inbound_user: None,
            inbound_password: None,
            raw_secret: None,
            signature_max_age: Duration::from_secs(300),
            max_bytes: 25 * 1024 * 1024,
            max_attachments: 20,
            max_answers_per_hour: 10,
            imap: ImapConfig::default(),
        }
    }
}

impl Config {
    /// The gateway's reply address: the local part of `from` and the reply domain. `None` when
    /// `from` is unset or not an address.
    pub fn reply_address(&self) -> Option<ReplyAddress> {
        let from = self.from.as_deref()?;
        let address = from
            .rsplit_once('<')
            .map_or(from, |(_, rest)| rest.trim_end_matches('>'))
            .trim();
        let (local, domain) = address.rsplit_once('@')?;
        let domain = self.reply_domain.as_deref().unwrap_or(domain);
        (!local.is_empty() && !domain.is_empty()).then(|| ReplyAddress {
            local: local.to_ascii_lowercase(),
            domain: domain.to_ascii_lowercase(),
        })
    }

    /// The SMTP sender's settings, when replies can be mailed.
    pub fn smtp(&self) -> Option<SmtpSettings> {
        let reply_to = self.reply_address()?;
        Some(SmtpSettings {
            url: self.smtp_url.as_deref()?.to_owned(),
            from: self.from.clone()?,
            message_id_domain: reply_to.domain.clone(),
            reply_to,
            timeout: self.smtp_timeout,
        })
    }

    /// Whether anything of the channel is configured: a way in or out besides `from`.
    pub fn wants_channel(&self) -> bool {
        self.mailgun_signing_key.is_some()
            || self.inbound_user.is_some()
            || self.raw_secret.is_some()
            || self.smtp_url.is_some()
            || self.imap.url.is_some()
    }

    /// Whether the channel runs: it has the gateway's address and a way in or out.
    pub fn is_on(&self) -> bool {
        self.from.is_some() && self.wants_channel()
    }

    /// Refuses settings that cannot work: a way in or out without the gateway's address, half of
    /// the Basic-auth pair, an IMAP URL that is not one, a Mailgun signature window longer than
    /// its tokens are remembered, no room for a single attachment.
    pub fn validate(&self) -> Result<(), String> {
        if self.wants_channel() && self.reply_address().is_none() {
            return Err(
                "email.from (EMAIL_FROM) must be the gateway's address, like \
                 \"Support <support@mail.example.com>\", for the e-mail channel"
                    .into(),
            );
        }
        if self.inbound_user.is_some() != self.inbound_password.is_some() {
            return Err("email.inbound_user and email.inbound_password go together".into());
        }
        if let Some(url) = &self.imap.url {
            MailboxUrl::parse(url).map_err(|e| e.to_string())?;
        }
        if self.signature_max_age > MAX_SIGNATURE_AGE {
            return Err("email.signature_max_age must be at most 24h".into());
        }
        if self.max_attachments == 0 {
            return Err("email.max_attachments must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(section: serde_json::Value) -> Config {
        serde_json::from_value(section).unwrap()
    }

    #[test]
    fn defaults() {
        let config = Config::default();
        assert_eq!(config.smtp_timeout, Duration::from_secs(30));
        assert_eq!(config.signature_max_age, Duration::from_secs(300));
        assert_eq!(config.max_bytes, 25 * 1024 * 1024);
        assert_eq!(config.max_attachments, 20);
        assert_eq!(config.max_answers_per_hour, 10);
        assert_eq!(config.imap.poll_interval, Duration::from_secs(60));
        assert!(config.imap.mark_seen);
        assert!(!config.is_on());
        assert_eq!(config.validate(), Ok(()));
        // The section round-trips, durations as humantime strings.
        let section = serde_json::to_value(&config).unwrap();
        assert_eq!(section["smtp_timeout"], "30s");
        assert_eq!(section["imap"]["poll_interval"], "1m");
        let again = parse(section);
        assert_eq!(again.signature_max_age, config.signature_max_age);
        // An empty section is the defaults.
        assert_eq!(parse(json!({})).max_attachments, 20);
    }

    #[test]
    fn unknown_keys_and_empty_secrets() {
        assert!(serde_json::from_value::<Config>(json!({"smtp": "x"})).is_err());
        assert!(serde_json::from_value::<Config>(json!({"imap": {"host": "x"}})).is_err());
        let config = parse(json!({"from": "s@x.test", "raw_secret": "  ", "imap": {"url": ""}}));
        assert!(config.raw_secret.is_none() && config.imap.url.is_none());
        assert!(!config.is_on(), "an empty secret turns nothing on");
    }

    #[test]
    fn reply_address_and_smtp() {
        let config = parse(json!({
            "from": "Support <Support@Mail.Example.com>",
            "smtp_url": "smtps://u:p@smtp.example.com",
            "smtp_timeout": "10s",
        }));
        let ours = config.reply_address().unwrap();
        assert_eq!(
            (ours.local.as_str(), ours.domain.as_str()),
            ("support", "mail.example.com")
        );
        let smtp = config.smtp().unwrap();
        assert_eq!(smtp.message_id_domain, "mail.example.com");
        assert_eq!(smtp.timeout, Duration::from_secs(10));
        assert_eq!(smtp.from, "Support <Support@Mail.Example.com>");
        let other = parse(json!({"from": "s@x.test", "reply_domain": "Reply.Test"}));
        assert_eq!(other.reply_address().unwrap().domain, "reply.test");
        assert!(other.smtp().is_none(), "no SMTP URL, no sender");
        assert!(parse(json!({"from": "nobody"})).reply_address().is_none());
    }

    #[test]
    fn validation() {
        let error = |section: serde_json::Value| parse(section).validate().unwrap_err();
        assert!(
            error(json!({"raw_secret": "s"})).starts_with("email.from (EMAIL_FROM) must be"),
            "a route without the gateway's address"
        );
        assert!(
            error(json!({"from": "no address", "smtp_url": "smtp://x"})).contains("EMAIL_FROM")
        );
        assert_eq!(
            error(json!({"from": "s@x.test", "inbound_user": "u"})),
            "email.inbound_user and email.inbound_password go together"
        );
        assert!(
            error(json!({"from": "s@x.test", "imap": {"url": "pop3://u:p@host"}}))
                .contains("imaps://")
        );
        assert!(
            error(json!({"from": "s@x.test", "imap": {"url": "not a url"}}))
                .starts_with("email.imap.url is not a URL")
        );
        assert_eq!(
            error(json!({"signature_max_age": "25h"})),
            "email.signature_max_age must be at most 24h"
        );
        assert_eq!(
            error(json!({"max_attachments": 0})),
            "email.max_attachments must be at least 1"
        );
        let full = parse(json!({
            "from": "S <s@x.test>",
            "reply_domain": "x.test",
            "smtp_url": "smtp://x",
            "mailgun_signing_key": "k",
            "inbound_user": "u",
            "inbound_password": "p",
            "raw_secret": "r",
            "signature_max_age": "24h",
            "imap": {"url": "imaps://u:p@x/INBOX"},
        }));
        assert_eq!(full.validate(), Ok(()));
        assert!(full.is_on());
        assert!(
            !parse(json!({"from": "s@x.test"})).is_on(),
            "an address alone is no channel"
        );
    }

    #[test]
    fn every_variable_names_a_key() {
        let section = serde_json::to_value(Config::default()).unwrap();
        for (variable, key) in ENV {
            let mut value = &section;
            for part in key.split('.') {
                value = value
                    .get(part)
                    .unwrap_or_else(|| panic!("{variable}: no key {key}"));
            }
        }
    }
}
