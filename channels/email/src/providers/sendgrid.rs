//! SendGrid's Inbound Parse webhook: every mail to the parse domain is posted as a multipart form.
//!
//! With "POST the raw, full MIME message" checked, the mail is in the field `email` and is read
//! like any raw mail. Otherwise SendGrid posts its own parse: `headers` (the raw header block),
//! `text`, `html`, `from`, `to`, `cc`, `subject`, `envelope` (JSON: the SMTP recipients and
//! sender), `charsets` (JSON: the charset each text field is in — SendGrid does not convert them
//! to UTF-8), `attachments` (how many), `attachment-info` (JSON: each file's name and type) and
//! the files `attachment1`…`attachmentN`.
//!
//! SendGrid does not sign inbound posts: the route is protected with Basic auth (in the
//! URL SendGrid is given).

use std::collections::HashMap;

use mail_parser::decoders::charsets::map::charset_decoder;
use serde::Deserialize;

use super::form::{Form, FormFile, token_from_envelope};
use crate::inbound::{addresses, header_draft, not_an_email};
use crate::{InboundEmail, ParseError, ReplyAddress, parse_mime};

/// Reads the mail of a SendGrid Inbound Parse request: `fields` are the multipart form's
/// `(name, value)` pairs, decoded by the webhook.
///
/// `email` (raw mode) is read as raw MIME. Otherwise the mail is rebuilt from the parsed fields:
/// the headers from `headers`, then `from`, `to`, `cc`, `subject` over them; the envelope
/// recipients (for the thread token) from `envelope`; `text` and `html` decoded from the
/// charsets `charsets` names; the files `attachment1`… with their names and types from
/// `attachment-info`.
pub fn parse(
    fields: &[(String, Vec<u8>)],
    ours: &ReplyAddress,
) -> Result<InboundEmail, ParseError> {
    let form = Form::new(fields);
    if let Some(mime) = form.get("email") {
        let mut email = parse_mime(mime, ours)?;
        let envelope: Envelope = json_field(&form, "envelope").unwrap_or_default();
        token_from_envelope(&mut email, envelope.to.iter().map(String::as_str), ours);
        return Ok(email);
    }
    if ["from", "headers", "envelope"]
        .iter()
        .all(|name| form.get(name).is_none())
    {
        return Err(not_an_email(
            "not a SendGrid Inbound Parse request: no email, from, headers or envelope",
        ));
    }
    let charsets: HashMap<String, String> = json_field(&form, "charsets").unwrap_or_default();
    let text = |name: &str| decoded(&form, &charsets, name);

    let mut draft = text("headers")
        .map(|block| header_draft(&block))
        .unwrap_or_default();
    let envelope: Envelope = json_field(&form, "envelope").unwrap_or_default();
    if let Some(from) = text("from").and_then(|from| addresses(&from).into_iter().next()) {
        draft.from = Some(from);
    }
    if draft.from.is_none() {
        draft.from = envelope
            .from
            .as_deref()
            .and_then(|from| addresses(from).into_iter().next());
    }
    if let Some(to) = text("to")
        .map(|to| addresses(&to))
        .filter(|to| !to.is_empty())
    {
        draft.to = to;
    }
    if let Some(cc) = text("cc")
        .map(|cc| addresses(&cc))
        .filter(|cc| !cc.is_empty())
    {
        draft.cc = cc;
    }
    if let Some(subject) = text("subject") {
        draft.subject = subject.trim().to_owned();
    }
    draft.envelope_to = envelope.to;
    draft.plain = text("text");
    draft.html = text("html");

    let info: HashMap<String, AttachmentInfo> =
        json_field(&form, "attachment-info").unwrap_or_default();
    draft.attachments = form
        .files("attachment")
        .into_iter()
        .map(|mut file| {
            if let Some(info) = info.get(file.field) {
                file.filename = file
                    .filename
                    .or_else(|| info.filename.clone())
                    .or_else(|| info.name.clone());
                file.content_type = file.content_type.or_else(|| info.kind.clone());
            }
            FormFile::into_attachment(file)
        })
        .collect();
    draft.finish(&form.fingerprint(&[]), ours)
}

/// A text field decoded from the charset `charsets` names for it (UTF-8 when it names none or
/// one mail-parser does not know).
fn decoded(form: &Form<'_>, charsets: &HashMap<String, String>, name: &str) -> Option<String> {
    let bytes = form.get(name)?;
    let text = charsets
        .get(name)
        .and_then(|charset| charset_decoder(charset.trim().as_bytes()))
        .map_or_else(
            || String::from_utf8_lossy(bytes).into_owned(),
            |decode| decode(bytes),
        );
    (!text.trim().is_empty()).then_some(text)
}

/// A JSON field, `None` when absent or unreadable (the other fields may still do).
fn json_field<T: for<'de> Deserialize<'de>>(form: &Form<'_>, name: &str) -> Option<T> {
    let value = form.get(name)?;
    match serde_json::from_slice(value) {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::warn!(field = name, %err, "unreadable SendGrid field; ignored");
            None
        }
    }
}

/// The SMTP envelope: who the mail was delivered to, and the bounce address.
#[derive(Default, Deserialize)]
struct Envelope {
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    from: Option<String>,
}

/// What `attachment-info` says about one file.
#[derive(Deserialize)]
struct AttachmentInfo {
    filename: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> ReplyAddress {
        ReplyAddress {
            local: "support".into(),
            domain: "mail.example.com".into(),
        }
    }

    fn fields(pairs: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_vec()))
            .collect()
    }

    #[test]
    fn parses_raw_mode() {
        let email = parse(
            &fields(&[
                ("email", b"From: kim@example.org\r\nTo: support@mail.example.com\r\nMessage-ID: <r1@example.org>\r\n\r\nHello\r\n"),
                ("to", b"support@mail.example.com"),
            ]),
            &ours(),
        )
        .unwrap();
        assert_eq!(email.message_id, "r1@example.org");
        assert_eq!(email.text, "Hello");
        // Sent to our plain address; the envelope says which thread.
        assert_eq!(email.reply_token, None);
        let email = parse(
            &fields(&[
                (
                    "email",
                    b"From: kim@example.org\r\nTo: team@example.org\r\n\r\nHello\r\n",
                ),
                (
                    "envelope",
                    br#"{"to":["support+ab12@mail.example.com"],"from":"kim@example.org"}"#,
                ),
            ]),
            &ours(),
        )
        .unwrap();
        assert_eq!(email.reply_token.as_deref(), Some("ab12"));
    }

    #[test]
    fn rebuilds_a_mail_from_parsed_fields() {
        let headers = b"Received: by mx.sendgrid.net\nMessage-ID: <p1@example.de>\nIn-Reply-To: <sb.1@mail.example.com>\nReferences: <sb.1@mail.example.com>\nDate: Tue, 11 Nov 2025 10:14:05 +0100\nFrom: =?ISO-8859-1?Q?J=FCrgen?= <juergen@example.de>\nTo: support@mail.example.com\nSubject: AW: Bestellung\n";
        let email = parse(
            &fields(&[
                ("headers", headers),
                ("from", b"J\xfcrgen <juergen@example.de>"),
                ("to", b"support@mail.example.com"),
                ("subject", b"AW: Bestellung"),
                ("text", b"Gr\xfc\xdfe aus K\xf6ln\n\nAm 11.11.2025 um 10:02 schrieb Support <support@mail.example.com>:\n> Hallo\n"),
                ("html", b"<p>Gr&uuml;&szlig;e</p>"),
                ("envelope", br#"{"to":["support+ab12@mail.example.com"],"from":"bounce@example.de"}"#),
                ("charsets", br#"{"to":"UTF-8","from":"iso-8859-1","subject":"UTF-8","text":"iso-8859-1","html":"UTF-8"}"#),
                ("attachments", b"1"),
                ("attachment-info", br#"{"attachment1":{"filename":"lieferschein.pdf","name":"lieferschein.pdf","type":"application/pdf"}}"#),
                ("attachment1", b"%PDF-1.4 tiny"),
                ("SPF", b"pass"),
            ]),
            &ours(),
        )
        .unwrap();
        assert_eq!(email.message_id, "p1@example.de");
        assert_eq!(email.from.address, "juergen@example.de");
        assert_eq!(email.from.name.as_deref(), Some("Jürgen"));
        assert_eq!(email.subject, "AW: Bestellung");
        assert_eq!(email.in_reply_to, ["sb.1@mail.example.com"]);
        assert_eq!(email.text, "Grüße aus Köln");
        assert_eq!(email.reply_token.as_deref(), Some("ab12"));
        assert_eq!(email.attachments.len(), 1);
        assert_eq!(
            email.attachments[0].filename.as_deref(),
            Some("lieferschein.pdf")
        );
        assert_eq!(email.attachments[0].mime_type, "application/pdf");
    }

    #[test]
    fn the_envelope_sender_is_the_last_resort() {
        let email = parse(
            &fields(&[
                (
                    "envelope",
                    br#"{"to":["support@mail.example.com"],"from":"kim@example.org"}"#,
                ),
                ("text", b"Hi"),
            ]),
            &ours(),
        )
        .unwrap();
        assert_eq!(email.from.address, "kim@example.org");
        assert!(email.message_id.starts_with("generated-"));
    }

    #[test]
    fn refuses_what_is_not_a_sendgrid_request() {
        let error = parse(&fields(&[("text", b"hi")]), &ours()).unwrap_err();
        assert!(
            error
                .reason()
                .contains("not a SendGrid Inbound Parse request"),
            "{error}"
        );
        let error = parse(
            &fields(&[("from", b"nobody"), ("envelope", b"{bad")]),
            &ours(),
        )
        .unwrap_err();
        assert_eq!(error.reason(), "no From address");
    }
}
