//! Mail no person wrote, which must never be answered.
//!
//! Answering an out-of-office reply gets another out-of-office reply, and so on until a mailbox
//! fills up; answering a bounce sends mail to an address known not to exist; answering a mailing
//! list writes to everyone on it. RFC 3834 asks automatic responders to mark what they send
//! (`Auto-Submitted`) and not to answer marked mail; older and sloppier software is recognised by
//! the headers it sets, the addresses it sends from and the subjects it writes.
//!
//! `X-Auto-Response-Suppress` is deliberately not a sign: Exchange sets it on ordinary mail to ask
//! *other* responders not to answer.

/// The reason for a delivery report or a mail from a mailer daemon.
const BOUNCE: &str = "bounce";
/// The reason for a mail with `X-Autoreply`/`X-Autorespond`, or an auto-reply's subject.
const AUTO_REPLY: &str = "auto-reply";
/// The reason for a mail with mailing-list headers.
const MAILING_LIST: &str = "mailing list";
/// The reason for a mail from an address that says not to reply to it.
const NO_REPLY: &str = "no-reply sender";

/// Local parts of the senders of delivery reports.
const DAEMONS: &[&str] = &["mailer-daemon", "postmaster"];

/// How addresses nobody reads begin (`noreply@`, `no-reply-billing@`…).
const NO_REPLY_PREFIXES: &[&str] = &[
    "noreply",
    "no-reply",
    "no_reply",
    "donotreply",
    "do-not-reply",
    "do_not_reply",
];

/// Headers only auto-responders set.
const AUTO_REPLY_HEADERS: &[&str] = &["x-autoreply", "x-autorespond", "x-autoresponder"];

/// `Precedence` values of mail not to be answered (`auto_reply` is what some responders write).
const BULK_PRECEDENCE: &[&str] = &["bulk", "junk", "list", "auto_reply"];

/// Headers of mail sent through a mailing list (RFC 2369, RFC 2919).
const LIST_HEADERS: &[&str] = &["list-id", "list-unsubscribe"];

/// How the subjects of delivery reports begin, lowercase.
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliverable:",
    "undelivered mail returned to sender",
    "delivery status notification",
    "mail delivery failed",
    "delivery failure",
    "returned mail:",
    "unzustellbar:",
    "non remis :",
    "non remis:",
];

/// How the subjects of auto-replies begin, lowercase.
const AUTO_REPLY_SUBJECTS: &[&str] = &[
    "automatic reply:",
    "auto-reply:",
    "autoreply:",
    "auto reply:",
    "out of office",
    "automatische antwort:",
    "abwesenheitsnotiz",
    "réponse automatique",
    "respuesta automática:",
];

/// Why a mail must not be answered, `None` when a person wrote it. `headers` are the top-level
/// headers (`(name, unfolded value)`), `from` the sender's lowercased address, `content_type` the
/// top-level lowercased `type/subtype`.
pub(crate) fn detect(
    headers: &[(String, String)],
    from: &str,
    subject: &str,
    content_type: Option<&str>,
) -> Option<String> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    };
    let local = from
        .rsplit_once('@')
        .map_or(from, |(local, _)| local)
        .split('+')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let subject = subject.trim().to_lowercase();

    // Bounces first: they also carry `Auto-Submitted`, and "bounce" says more.
    if content_type == Some("multipart/report")
        || DAEMONS.contains(&local.as_str())
        || header("return-path").is_some_and(|path| path.replace(' ', "") == "<>")
        || BOUNCE_SUBJECTS
            .iter()
            .any(|start| subject.starts_with(start))
    {
        return Some(BOUNCE.to_owned());
    }
    if let Some(value) = header("auto-submitted") {
        // RFC 3834: `no` is the only value of a mail a person wrote; parameters may follow a `;`.
        let value = value.split(';').next().unwrap_or_default().trim();
        if !value.is_empty() && !value.eq_ignore_ascii_case("no") {
            return Some(format!("auto-submitted: {}", value.to_ascii_lowercase()));
        }
    }
    if AUTO_REPLY_HEADERS.iter().any(|name| header(name).is_some()) {
        return Some(AUTO_REPLY.to_owned());
    }
    if let Some(value) = header("precedence") {
        let value = value.to_ascii_lowercase();
        if BULK_PRECEDENCE.contains(&value.as_str()) {
            return Some(format!("precedence: {value}"));
        }
    }
    if LIST_HEADERS.iter().any(|name| header(name).is_some()) {
        return Some(MAILING_LIST.to_owned());
    }
    if NO_REPLY_PREFIXES
        .iter()
        .any(|prefix| local.starts_with(prefix))
    {
        return Some(NO_REPLY.to_owned());
    }
    if AUTO_REPLY_SUBJECTS
        .iter()
        .any(|start| subject.starts_with(start))
    {
        return Some(AUTO_REPLY.to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERSON: &str = "kim.lee@example.org";

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    /// The reason for a mail from a person with these extra headers.
    fn with_headers(pairs: &[(&str, &str)]) -> Option<String> {
        detect(
            &headers(pairs),
            PERSON,
            "Re: Your order",
            Some("text/plain"),
        )
    }

    #[test]
    fn a_normal_mail_is_not_automated() {
        let ordinary = headers(&[
            ("From", "Kim Lee <kim.lee@example.org>"),
            ("Subject", "Re: Your order"),
            ("Message-ID", "<abc@example.org>"),
            ("Return-Path", "<kim.lee@example.org>"),
            ("Content-Type", "multipart/alternative; boundary=x"),
        ]);
        assert_eq!(
            detect(
                &ordinary,
                PERSON,
                "Re: Your order",
                Some("multipart/alternative")
            ),
            None
        );
        assert_eq!(detect(&[], PERSON, "", None), None);
    }

    #[test]
    fn auto_submitted_other_than_no() {
        assert_eq!(
            with_headers(&[("Auto-Submitted", "auto-replied")]),
            Some("auto-submitted: auto-replied".into())
        );
        assert_eq!(
            with_headers(&[("auto-submitted", "Auto-Generated; owner-email=\"x@y\"")]),
            Some("auto-submitted: auto-generated".into())
        );
        assert_eq!(with_headers(&[("Auto-Submitted", "no")]), None);
        assert_eq!(with_headers(&[("Auto-Submitted", "No ")]), None);
        assert_eq!(with_headers(&[("Auto-Submitted", "")]), None);
    }

    #[test]
    fn auto_reply_headers() {
        assert_eq!(
            with_headers(&[("X-Autoreply", "yes")]),
            Some("auto-reply".into())
        );
        assert_eq!(
            with_headers(&[("X-Autorespond", "Out of office")]),
            Some("auto-reply".into())
        );
    }

    #[test]
    fn auto_response_suppress_is_not_a_sign() {
        // Exchange sets it on mail written by people, asking responders not to answer them.
        assert_eq!(with_headers(&[("X-Auto-Response-Suppress", "All")]), None);
        assert_eq!(
            with_headers(&[("X-Auto-Response-Suppress", "DR, OOF, AutoReply")]),
            None
        );
    }

    #[test]
    fn bulk_precedence() {
        for value in ["bulk", "junk", "list", "Bulk"] {
            assert_eq!(
                with_headers(&[("Precedence", value)]),
                Some(format!("precedence: {}", value.to_ascii_lowercase())),
                "{value}"
            );
        }
        assert_eq!(with_headers(&[("Precedence", "first-class")]), None);
    }

    #[test]
    fn mailing_lists() {
        assert_eq!(
            with_headers(&[("List-Id", "Announcements <announce.example.org>")]),
            Some("mailing list".into())
        );
        assert_eq!(
            with_headers(&[("List-Unsubscribe", "<mailto:leave@example.org>")]),
            Some("mailing list".into())
        );
    }

    #[test]
    fn senders_of_bounces_and_no_reply_addresses() {
        let from = |address: &str| detect(&[], address, "Hello", Some("text/plain"));
        assert_eq!(from("mailer-daemon@googlemail.com"), Some("bounce".into()));
        assert_eq!(from("MAILER-DAEMON@example.org"), Some("bounce".into()));
        assert_eq!(from("postmaster@example.org"), Some("bounce".into()));
        for address in [
            "no-reply@example.com",
            "noreply@example.com",
            "do-not-reply@example.com",
            "donotreply@example.com",
            "noreply-billing@example.com",
            "no-reply+tag@example.com",
        ] {
            assert_eq!(from(address), Some("no-reply sender".into()), "{address}");
        }
        // An address merely containing the words is a person's.
        assert_eq!(from("reply.noreply.fan@example.com"), None);
        assert_eq!(from("norene@example.com"), None);
    }

    #[test]
    fn delivery_reports() {
        assert_eq!(
            detect(&[], PERSON, "Hello", Some("multipart/report")),
            Some("bounce".into())
        );
        assert_eq!(
            detect(
                &headers(&[("Return-Path", "<>")]),
                PERSON,
                "Hello",
                Some("text/plain")
            ),
            Some("bounce".into())
        );
        // A bounce is a bounce even when it also says Auto-Submitted.
        assert_eq!(
            detect(
                &headers(&[("Auto-Submitted", "auto-replied")]),
                "mailer-daemon@example.org",
                "Delivery Status Notification (Failure)",
                Some("multipart/report")
            ),
            Some("bounce".into())
        );
    }

    #[test]
    fn subjects_of_auto_replies_and_bounces() {
        let subject = |subject: &str| detect(&[], PERSON, subject, Some("text/plain"));
        for auto in [
            "Automatic reply: Your order",
            "Out of Office: Your order",
            "Out of office until Monday",
            "Automatische Antwort: Ihre Bestellung",
        ] {
            assert_eq!(subject(auto), Some("auto-reply".into()), "{auto}");
        }
        for bounce in [
            "Undeliverable: Your order",
            "Delivery Status Notification (Failure)",
            "Mail delivery failed: returning message to sender",
            "Undelivered Mail Returned to Sender",
        ] {
            assert_eq!(subject(bounce), Some("bounce".into()), "{bounce}");
        }
        // A person asking about the office is not out of it.
        assert_eq!(subject("Re: Out of office hours?"), None);
        assert_eq!(subject("Question about out of office hours"), None);
    }
}
