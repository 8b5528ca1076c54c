//! Mailgun's inbound routes: `forward("https://…")` posts every mail to the gateway as a form.
//!
//! With a route URL ending in `mime`, the form carries the raw mail in `body-mime`, which is
//! read like any raw mail; otherwise Mailgun posts its own parse of the mail (`from`, `subject`,
//! `body-plain`, `stripped-text`, `message-headers`, `attachment-1`…), from which the mail is
//! rebuilt as well as it can be.
//!
//! Every request is signed: `signature` is the hex HMAC-SHA256 of `timestamp` followed by
//! `token`, keyed with the webhook signing key. [`verify`] checks it and refuses old (or future)
//! timestamps, so a captured request cannot be replayed later; the gateway also remembers the
//! tokens it saw (each is handed over as a one-time checkpoint with the mail) and refuses them a
//! second time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use switchboard_channel::signature;

use super::form::{Form, FormFile, fill_from_header_fields, header_block, token_from_envelope};
use crate::inbound::{addresses, header_draft, not_an_email};
use crate::{InboundEmail, ParseError, ReplyAddress, parse_mime};

/// The form fields that differ between deliveries of the same mail, left out of the
/// fingerprint of a mail without a Message-ID.
const SIGNATURE_FIELDS: &[&str] = &["timestamp", "token", "signature"];

/// Why a Mailgun request is refused.
///
/// The messages describe the request, never the expected signature: they may end up in logs or
/// in the answer to whoever forged the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MailgunError {
    /// The signature is missing, malformed, or does not match the timestamp, the token and the
    /// signing key (or no signing key is configured).
    #[error("Mailgun signature does not match")]
    Invalid,
    /// The signature matches, but the timestamp is further from now than allowed: a replay.
    #[error("Mailgun timestamp is too old or in the future")]
    Stale,
}

/// Checks a Mailgun request's `timestamp`, `token` and `signature` fields.
///
/// The signature is compared in constant time. A request whose `timestamp` (Unix seconds) is more
/// than `max_age` before or after `now` is [`MailgunError::Stale`], checked only once the
/// signature is good. An empty `signing_key` never matches. Checking that the token was not seen
/// before is the gateway's part.
pub fn verify(
    signing_key: &str,
    timestamp: &str,
    token: &str,
    signature: &str,
    now: DateTime<Utc>,
    max_age: Duration,
) -> Result<(), MailgunError> {
    let signed = [timestamp.as_bytes(), token.as_bytes()].concat();
    signature::verify_hex_mac(signature, &signed, signing_key.as_bytes())
        .map_err(|_| MailgunError::Invalid)?;
    // Signed but unreadable: Mailgun always sends seconds, so this is not Mailgun.
    let sent = timestamp
        .trim()
        .parse::<i64>()
        .map_err(|_| MailgunError::Invalid)?;
    let age = now.timestamp().abs_diff(sent);
    if age > max_age.as_secs() {
        return Err(MailgunError::Stale);
    }
    Ok(())
}

/// The `signature` Mailgun sends with `timestamp` and `token`: lowercase hex HMAC-SHA256.
///
/// Used to replay recorded requests against a running gateway, and by tests.
pub fn sign(signing_key: &str, timestamp: &str, token: &str) -> String {
    let signed = [timestamp.as_bytes(), token.as_bytes()].concat();
    hex::encode(signature::hmac_sha256(signing_key.as_bytes(), &signed))
}

/// Reads the mail of a Mailgun forward request: `fields` are the form's `(name, value)` pairs,
/// decoded by the webhook (URL-encoded or multipart alike).
///
/// `body-mime` (a route URL ending in `mime`) is read as raw MIME. Otherwise the mail is rebuilt
/// from the parsed fields: `from` (else the `From` of `message-headers`, else `sender`),
/// `subject`, `recipient` (the envelope), `body-plain`, `stripped-text` (preferred for the new
/// text), `body-html`, `message-headers` (a JSON list of `[name, value]`: Message-Id, threading,
/// `Auto-Submitted`…) and the files `attachment-1`…`attachment-<attachment-count>`. A form
/// decoder that knows a file part's name and type may pass them as `attachment-1.filename` and
/// `attachment-1.content-type`; otherwise the type is guessed from the content.
pub fn parse(
    fields: &[(String, Vec<u8>)],
    ours: &ReplyAddress,
) -> Result<InboundEmail, ParseError> {
    let form = Form::new(fields);
    if let Some(mime) = form.get("body-mime") {
        let mut email = parse_mime(mime, ours)?;
        token_from_envelope(&mut email, form.text("recipient").as_deref(), ours);
        return Ok(email);
    }
    if ["from", "sender", "message-headers"]
        .iter()
        .all(|name| form.get(name).is_none())
    {
        return Err(not_an_email(
            "not a Mailgun inbound request: no body-mime, from, sender or message-headers",
        ));
    }

    let headers = form
        .text("message-headers")
        .map(|json| header_pairs(&json))
        .unwrap_or_default();
    let mut draft = header_draft(&header_block(
        headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    ));
    fill_from_header_fields(&mut draft, &form);
    if let Some(from) = form
        .text("from")
        .and_then(|from| addresses(&from).into_iter().next())
    {
        draft.from = Some(from);
    }
    if draft.from.is_none() {
        draft.from = form
            .text("sender")
            .and_then(|sender| addresses(&sender).into_iter().next());
    }
    if let Some(subject) = form.text("subject") {
        draft.subject = subject.trim().to_owned();
    }
    draft.envelope_to = form.text("recipient").into_iter().collect();
    draft.plain = form.text("body-plain");
    draft.provider_stripped = form.text("stripped-text");
    draft.html = form.text("body-html");
    draft.attachments = form
        .files("attachment-")
        .into_iter()
        .map(FormFile::into_attachment)
        .collect();
    draft.finish(&form.fingerprint(SIGNATURE_FIELDS), ours)
}

/// The `[name, value]` pairs of `message-headers`; an unreadable list is no headers (the other
/// fields may still do).
fn header_pairs(json: &str) -> Vec<(String, String)> {
    let Ok(Value::Array(pairs)) = serde_json::from_str::<Value>(json) else {
        tracing::warn!("Mailgun message-headers is not a JSON list; ignored");
        return Vec::new();
    };
    pairs
        .iter()
        .filter_map(|pair| match pair.as_array()?.as_slice() {
            [Value::String(name), Value::String(value)] => Some((name.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
    const TIMESTAMP: &str = "1762852462";
    const TOKEN: &str = "c7f6a1e0b2d94e5f8a3b6c9d0e1f2a3b4c5d6e7f8a9b0c1d2e";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_762_852_462 + 30, 0).unwrap()
    }

    const WINDOW: Duration = Duration::from_secs(300);

    fn ours() -> ReplyAddress {
        ReplyAddress {
            local: "support".into(),
            domain: "mail.example.com".into(),
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn accepts_a_good_signature() {
        let signature = sign(KEY, TIMESTAMP, TOKEN);
        assert_eq!(signature.len(), 64);
        assert_eq!(signature, signature.to_ascii_lowercase());
        assert_eq!(
            verify(KEY, TIMESTAMP, TOKEN, &signature, now(), WINDOW),
            Ok(())
        );
        // Upper-case hex is the same signature.
        assert_eq!(
            verify(
                KEY,
                TIMESTAMP,
                TOKEN,
                &signature.to_ascii_uppercase(),
                now(),
                WINDOW
            ),
            Ok(())
        );
    }

    #[test]
    fn sign_matches_an_independent_computation() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), the published
        // reference value, split between timestamp and token as Mailgun concatenates them.
        assert_eq!(
            sign("key", "The quick brown fox ", "jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn refuses_a_wrong_signature() {
        let mut signature = sign(KEY, TIMESTAMP, TOKEN).into_bytes();
        signature[10] = if signature[10] == b'0' { b'1' } else { b'0' };
        let signature = String::from_utf8(signature).unwrap();
        assert_eq!(
            verify(KEY, TIMESTAMP, TOKEN, &signature, now(), WINDOW),
            Err(MailgunError::Invalid)
        );
        for malformed in ["", "zz", &"ab".repeat(31), &"ab".repeat(33)] {
            assert_eq!(
                verify(KEY, TIMESTAMP, TOKEN, malformed, now(), WINDOW),
                Err(MailgunError::Invalid),
                "{malformed}"
            );
        }
    }

    #[test]
    fn refuses_a_wrong_key_or_other_fields() {
        let signature = sign("another-key", TIMESTAMP, TOKEN);
        assert_eq!(
            verify(KEY, TIMESTAMP, TOKEN, &signature, now(), WINDOW),
            Err(MailgunError::Invalid)
        );
        let signature = sign(KEY, TIMESTAMP, TOKEN);
        assert_eq!(
            verify(KEY, TIMESTAMP, "another-token", &signature, now(), WINDOW),
            Err(MailgunError::Invalid)
        );
        assert_eq!(
            verify(KEY, "1762852463", TOKEN, &signature, now(), WINDOW),
            Err(MailgunError::Invalid)
        );
    }

    #[test]
    fn an_empty_key_never_matches() {
        let signature = sign("", TIMESTAMP, TOKEN);
        assert_eq!(
            verify("", TIMESTAMP, TOKEN, &signature, now(), WINDOW),
            Err(MailgunError::Invalid)
        );
    }

    #[test]
    fn refuses_stale_and_future_timestamps() {
        let signature = sign(KEY, TIMESTAMP, TOKEN);
        let sent = DateTime::from_timestamp(1_762_852_462, 0).unwrap();
        let at = |seconds: i64| sent + chrono::Duration::seconds(seconds);
        assert_eq!(
            verify(KEY, TIMESTAMP, TOKEN, &signature, at(300), WINDOW),
            Ok(())
        );
        assert_eq!(
            verify(KEY, TIMESTAMP, TOKEN, &signature, at(301), WINDOW),
            Err(MailgunError::Stale)
        );
        assert_eq!(
            verify(KEY, TIMESTAMP, TOKEN, &signature, at(-300), WINDOW),
            Ok(())
        );
        assert_eq!(
            verify(KEY, TIMESTAMP, TOKEN, &signature, at(-301), WINDOW),
            Err(MailgunError::Stale)
        );
        // Staleness is only reported for a genuine signature.
        assert_eq!(
            verify(KEY, TIMESTAMP, TOKEN, "00", at(3600), WINDOW),
            Err(MailgunError::Invalid)
        );
        // A signed timestamp that is not a number.
        let odd = sign(KEY, "yesterday", TOKEN);
        assert_eq!(
            verify(KEY, "yesterday", TOKEN, &odd, now(), WINDOW),
            Err(MailgunError::Invalid)
        );
    }

    #[test]
    fn errors_do_not_reveal_the_expected_signature() {
        let expected = sign(KEY, TIMESTAMP, TOKEN);
        for error in [MailgunError::Invalid, MailgunError::Stale] {
            let message = format!("{error} {error:?}");
            assert!(!message.contains(&expected), "{message}");
            assert!(!message.contains(KEY), "{message}");
        }
    }

    #[test]
    fn parses_body_mime() {
        let mime = "From: Kim Lee <kim@example.org>\r\nTo: support+abc123@mail.example.com\r\nSubject: Hi\r\nMessage-ID: <m1@example.org>\r\n\r\nHello\r\n";
        let email = parse(
            &fields(&[
                ("recipient", "support+abc123@mail.example.com"),
                ("body-mime", mime),
                ("timestamp", TIMESTAMP),
            ]),
            &ours(),
        )
        .unwrap();
        assert_eq!(email.message_id, "m1@example.org");
        assert_eq!(email.text, "Hello");
        assert_eq!(email.reply_token.as_deref(), Some("abc123"));
    }

    #[test]
    fn body_mime_of_a_blind_copy_takes_the_token_from_the_envelope() {
        let mime = "From: Kim Lee <kim@example.org>\r\nTo: team@example.org\r\nMessage-ID: <m2@example.org>\r\n\r\nHello\r\n";
        let form = |recipient: &str| fields(&[("recipient", recipient), ("body-mime", mime)]);
        let email = parse(&form("support+abc123@mail.example.com"), &ours()).unwrap();
        assert_eq!(email.reply_token.as_deref(), Some("abc123"));
        let email = parse(&form("team@example.org"), &ours()).unwrap();
        assert_eq!(email.reply_token, None);
    }

    #[test]
    fn rebuilds_a_mail_from_parsed_fields() {
        let headers = r#"[["Received", "by mxa.mailgun.org"], ["Message-Id", "<CAF=x@mail.gmail.com>"], ["In-Reply-To", "<sb.1@mail.example.com>"], ["References", "<sb.0@mail.example.com> <sb.1@mail.example.com>"], ["Date", "Tue, 11 Nov 2025 10:14:05 +0100"], ["To", "Support <support@mail.example.com>"], ["Cc", "boss@example.org"], ["From", "Kim Lee <kim@example.org>"]]"#;
        let form = fields(&[
            ("recipient", "support+abc123@mail.example.com"),
            ("sender", "bounces+kim=example.org@example.org"),
            ("from", "Kim Lee <Kim@Example.org>"),
            ("subject", "Re: Your order"),
            (
                "body-plain",
                "Thanks!\r\n\r\nOn Tue, 11 Nov 2025 at 10:02, Support <support@mail.example.com> wrote:\r\n> Hello\r\n",
            ),
            ("stripped-text", "Thanks!"),
            ("body-html", "<div>Thanks!</div>"),
            ("message-headers", headers),
            ("attachment-count", "1"),
            ("attachment-1", "%PDF-1.4 tiny"),
            ("attachment-1.filename", "order.pdf"),
            ("timestamp", TIMESTAMP),
            ("token", TOKEN),
            ("signature", "00"),
        ]);
        let email = parse(&form, &ours()).unwrap();
        assert_eq!(email.message_id, "CAF=x@mail.gmail.com");
        assert_eq!(email.from.address, "kim@example.org");
        assert_eq!(email.from.name.as_deref(), Some("Kim Lee"));
        assert_eq!(email.subject, "Re: Your order");
        assert_eq!(email.in_reply_to, ["sb.1@mail.example.com"]);
        assert_eq!(
            email.references,
            ["sb.0@mail.example.com", "sb.1@mail.example.com"]
        );
        assert_eq!(email.date.unwrap().timestamp(), 1_762_852_445);
        assert_eq!(email.to[0].address, "support@mail.example.com");
        assert_eq!(email.cc[0].address, "boss@example.org");
        // The envelope recipient carries the token the headers lack.
        assert_eq!(email.reply_token.as_deref(), Some("abc123"));
        assert_eq!(email.text, "Thanks!");
        assert!(email.original.starts_with("Thanks!\n\nOn Tue"));
        assert_eq!(email.html.as_deref(), Some("<div>Thanks!</div>"));
        assert_eq!(email.attachments.len(), 1);
        assert_eq!(email.attachments[0].filename.as_deref(), Some("order.pdf"));
        assert_eq!(email.attachments[0].mime_type, "application/pdf");
        assert_eq!(email.automated, None);
    }

    #[test]
    fn parsed_fields_without_headers_or_message_id() {
        let form = |token: &str| {
            fields(&[
                ("sender", "kim@example.org"),
                ("subject", "Hello"),
                ("body-plain", "Are you open on Sunday?"),
                ("token", token),
            ])
        };
        let email = parse(&form("t1"), &ours()).unwrap();
        assert_eq!(email.from.address, "kim@example.org");
        assert_eq!(email.text, "Are you open on Sunday?");
        assert!(
            email.message_id.starts_with("generated-"),
            "{}",
            email.message_id
        );
        assert_eq!(email.message_id.len(), "generated-".len() + 64);
        // A retry of the same delivery (new token) gets the same id.
        assert_eq!(
            parse(&form("t2"), &ours()).unwrap().message_id,
            email.message_id
        );
    }

    #[test]
    fn automated_headers_count_in_parsed_fields() {
        let form = fields(&[
            ("from", "Kim Lee <kim@example.org>"),
            ("subject", "Out of Office: Your order"),
            ("body-plain", "I am away."),
            (
                "message-headers",
                r#"[["Auto-Submitted", "auto-replied"], ["Message-Id", "<ooo@example.org>"]]"#,
            ),
        ]);
        let email = parse(&form, &ours()).unwrap();
        assert_eq!(
            email.automated.as_deref(),
            Some("auto-submitted: auto-replied")
        );
    }

    #[test]
    fn refuses_what_is_not_a_mailgun_request() {
        let error = parse(&fields(&[("hello", "world")]), &ours()).unwrap_err();
        assert!(
            error.reason().contains("not a Mailgun inbound request"),
            "{error}"
        );
        // Fields, but no sender address anywhere.
        let error = parse(
            &fields(&[("from", "Kim Lee"), ("body-plain", "x")]),
            &ours(),
        )
        .unwrap_err();
        assert_eq!(error.reason(), "no From address");
        // Unreadable message-headers do not stop the rest.
        let email = parse(
            &fields(&[("from", "kim@example.org"), ("message-headers", "{oops")]),
            &ours(),
        )
        .unwrap();
        assert_eq!(email.from.address, "kim@example.org");
    }
}
