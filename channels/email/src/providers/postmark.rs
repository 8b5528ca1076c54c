//! Postmark's inbound webhook: every mail to the inbound address (or a custom domain forwarded
//! to it) is posted as JSON.
//!
//! Postmark parses the mail itself and sends no raw MIME, so the mail is rebuilt from its fields.
//! Two of them need care: `MessageID` is Postmark's own id, not the mail's (that is the
//! `Message-ID` among `Headers`, needed to deduplicate and thread); and `MailboxHash` is the part
//! after `+` of the address the mail was sent to, which is the thread token when that address is
//! the gateway's.
//!
//! Postmark does not sign its requests: the route is protected with Basic auth (in the
//! webhook URL Postmark is given).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;

use crate::inbound::{Address, addresses, header_draft, not_an_email, rfc822_date};
use crate::{EmailAttachment, InboundEmail, ParseError, ReplyAddress};

use super::form::header_block;

/// Reads a Postmark inbound webhook body.
///
/// The sender is `FromFull` (else `From`), the recipients `ToFull`/`CcFull` (else `To`/`Cc`);
/// `Subject`, `Date`, `TextBody`, `HtmlBody` and `StrippedTextReply` (preferred for the new
/// text when not empty) are read as such, the Message-ID, threading and automated-mail headers
/// from `Headers`, and the base64 `Attachments` are decoded (one that does not decode is
/// skipped, with a warning). A mail without a `Message-ID` header is identified by the hash of
/// the body.
pub fn parse(json: &[u8], ours: &ReplyAddress) -> Result<InboundEmail, ParseError> {
    let value: Value =
        serde_json::from_slice(json).map_err(|err| not_an_email(format!("invalid JSON: {err}")))?;
    let Value::Object(object) = &value else {
        return Err(not_an_email("the body is not a JSON object"));
    };
    if !["From", "FromFull", "MessageID"]
        .iter()
        .any(|key| object.contains_key(*key))
    {
        return Err(not_an_email(
            "not a Postmark inbound message: no From, FromFull or MessageID",
        ));
    }
    let inbound = Inbound::deserialize(&value)
        .map_err(|err| not_an_email(format!("not a Postmark inbound message: {err}")))?;

    let headers = inbound.headers.unwrap_or_default();
    let mut draft = header_draft(&header_block(headers.iter().map(|header| {
        (
            header.name.as_deref().unwrap_or_default(),
            header.value.as_deref().unwrap_or_default(),
        )
    })));
    let from = inbound
        .from_full
        .and_then(Contact::into_address)
        .or_else(|| addresses(inbound.from.as_deref()?).into_iter().next());
    if from.is_some() {
        draft.from = from;
    }
    draft.to = contacts(inbound.to_full, inbound.to.as_deref());
    draft.cc = contacts(inbound.cc_full, inbound.cc.as_deref());
    if let Some(subject) = inbound.subject {
        draft.subject = subject.trim().to_owned();
    }
    if let Some(date) = inbound.date.as_deref().and_then(date) {
        draft.date = Some(date);
    }
    draft.envelope_to = inbound.original_recipient.into_iter().collect();
    draft.token_hint = inbound.mailbox_hash;
    draft.plain = inbound.text_body;
    draft.html = inbound.html_body;
    draft.provider_stripped = inbound.stripped_text_reply;
    draft.attachments = inbound
        .attachments
        .unwrap_or_default()
        .into_iter()
        .filter_map(PostmarkAttachment::decode)
        .collect();
    draft.finish(json, ours)
}

/// Postmark writes some dates with a colon in the zone (`-04:00`), which RFC 5322 does not.
fn date(value: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    rfc822_date(value).or_else(|| {
        let value = value.trim();
        let (head, zone) = value.split_at_checked(value.len().checked_sub(6)?)?;
        let (hours, minutes) = zone.strip_prefix(['+', '-'])?.split_once(':')?;
        let sign = &zone[..1];
        rfc822_date(&format!("{head}{sign}{hours}{minutes}"))
    })
}

/// The recipients of a `…Full` list, else of the plain header value.
fn contacts(full: Option<Vec<Contact>>, plain: Option<&str>) -> Vec<Address> {
    let full: Vec<Address> = full
        .unwrap_or_default()
        .into_iter()
        .filter_map(Contact::into_address)
        .collect();
    if full.is_empty() {
        plain.map(addresses).unwrap_or_default()
    } else {
        full
    }
}

// The wire format: every field optional (Postmark sends `null` as readily as leaving a field
// out), unknown fields ignored.

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inbound {
    from: Option<String>,
    from_full: Option<Contact>,
    to: Option<String>,
    to_full: Option<Vec<Contact>>,
    cc: Option<String>,
    cc_full: Option<Vec<Contact>>,
    original_recipient: Option<String>,
    subject: Option<String>,
    date: Option<String>,
    mailbox_hash: Option<String>,
    text_body: Option<String>,
    html_body: Option<String>,
    stripped_text_reply: Option<String>,
    headers: Option<Vec<Header>>,
    attachments: Option<Vec<PostmarkAttachment>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Contact {
    email: Option<String>,
    name: Option<String>,
}

impl Contact {
    fn into_address(self) -> Option<Address> {
        let email = self.email.filter(|email| email.contains('@'))?;
        Some(Address::new(self.name.as_deref(), &email))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Header {
    name: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PostmarkAttachment {
    name: Option<String>,
    content: Option<String>,
    content_type: Option<String>,
    #[serde(rename = "ContentID")]
    content_id: Option<String>,
}

impl PostmarkAttachment {
    /// The decoded file; `None` for an inline image the HTML refers to without a file name, and
    /// for content that is not base64.
    fn decode(self) -> Option<EmailAttachment> {
        let filename = self
            .name
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty());
        if filename.is_none() && self.content_id.is_some_and(|id| !id.trim().is_empty()) {
            return None;
        }
        let content = self.content.unwrap_or_default();
        let bytes = STANDARD.decode(content.trim()).or_else(|_| {
            let compact: String = content.split_whitespace().collect();
            STANDARD.decode(compact)
        });
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::warn!(filename, %err, "Postmark attachment is not base64; skipped");
                return None;
            }
        };
        let mime_type = self
            .content_type
            .as_deref()
            .and_then(|ct| ct.split(';').next())
            .map(|ct| ct.trim().to_ascii_lowercase())
            .filter(|ct| ct.contains('/'))
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        Some(EmailAttachment {
            filename,
            mime_type,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ours() -> ReplyAddress {
        ReplyAddress {
            local: "support".into(),
            domain: "mail.example.com".into(),
        }
    }

    fn parsed(value: Value) -> Result<InboundEmail, ParseError> {
        parse(value.to_string().as_bytes(), &ours())
    }

    fn minimal() -> Value {
        json!({
            "From": "kim@example.org",
            "FromFull": {"Email": "Kim@Example.org", "Name": "Kim Lee", "MailboxHash": ""},
            "To": "support@mail.example.com",
            "Subject": "Hello",
            "MessageID": "73e6d360-66eb-11e1-8e72-a8904824019b",
            "TextBody": "Are you open on Sunday?",
        })
    }

    #[test]
    fn reads_a_minimal_message() {
        let email = parsed(minimal()).unwrap();
        assert_eq!(email.from.address, "kim@example.org");
        assert_eq!(email.from.name.as_deref(), Some("Kim Lee"));
        assert_eq!(email.to[0].address, "support@mail.example.com");
        assert_eq!(email.text, "Are you open on Sunday?");
        // No Message-ID header: Postmark's own id is not the mail's.
        assert!(email.message_id.starts_with("generated-"));
        assert_eq!(email.reply_token, None);
    }

    #[test]
    fn nulls_are_missing_fields() {
        let mut value = minimal();
        for key in [
            "Cc",
            "CcFull",
            "StrippedTextReply",
            "Headers",
            "Attachments",
            "HtmlBody",
            "Date",
        ] {
            value[key] = Value::Null;
        }
        let email = parsed(value).unwrap();
        assert_eq!(email.text, "Are you open on Sunday?");
        assert!(email.cc.is_empty());
    }

    #[test]
    fn the_mailbox_hash_is_a_token_for_our_addresses_only() {
        let mut value = minimal();
        value["MailboxHash"] = json!("AB12CD");
        value["OriginalRecipient"] = json!("support@mail.example.com");
        assert_eq!(
            parsed(value.clone()).unwrap().reply_token.as_deref(),
            Some("ab12cd")
        );
        // Sent to someone else's address: the hash means nothing to the gateway.
        value["OriginalRecipient"] = json!("sales+AB12CD@other.example");
        value["To"] = json!("sales+AB12CD@other.example");
        assert_eq!(parsed(value).unwrap().reply_token, None);
    }

    #[test]
    fn from_falls_back_on_the_plain_field() {
        let mut value = minimal();
        value["FromFull"] = Value::Null;
        value["From"] = json!("\"Lee, Kim\" <kim@example.org>");
        let email = parsed(value).unwrap();
        assert_eq!(email.from.address, "kim@example.org");
        assert_eq!(email.from.name.as_deref(), Some("Lee, Kim"));
    }

    #[test]
    fn dates_with_a_colon_in_the_zone() {
        assert_eq!(
            date("Fri, 1 Aug 2014 16:45:32 -04:00").map(|d| d.timestamp()),
            Some(1_406_925_932)
        );
        assert_eq!(
            date("Fri, 1 Aug 2014 16:45:32 -0400").map(|d| d.timestamp()),
            Some(1_406_925_932)
        );
        assert_eq!(date("soon"), None);
        assert_eq!(date("é"), None);
    }

    #[test]
    fn attachments_decode_or_are_skipped() {
        let mut value = minimal();
        value["Attachments"] = json!([
            {"Name": "note.txt", "Content": "aGVsbG8=", "ContentType": "text/plain; charset=utf-8", "ContentLength": 5},
            {"Name": "broken.bin", "Content": "not base64!", "ContentType": "application/octet-stream"},
            {"Name": "", "Content": "aGk=", "ContentType": "image/png", "ContentID": "image001.png@01DC52"},
            {"Name": "wrapped.txt", "Content": "aGVs\r\nbG8=", "ContentType": "text/plain"}
        ]);
        let email = parsed(value).unwrap();
        assert_eq!(email.attachments.len(), 2);
        assert_eq!(email.attachments[0].filename.as_deref(), Some("note.txt"));
        assert_eq!(email.attachments[0].mime_type, "text/plain");
        assert_eq!(email.attachments[0].bytes, b"hello");
        assert_eq!(email.attachments[1].bytes, b"hello");
    }

    #[test]
    fn refuses_what_is_not_a_postmark_message() {
        assert!(
            parse(b"not json", &ours())
                .unwrap_err()
                .reason()
                .starts_with("invalid JSON")
        );
        assert_eq!(
            parse(b"[1]", &ours()).unwrap_err().reason(),
            "the body is not a JSON object"
        );
        assert!(
            parsed(json!({"object": "whatsapp_business_account"}))
                .unwrap_err()
                .reason()
                .starts_with("not a Postmark inbound message")
        );
        assert!(
            parsed(json!({"From": 42}))
                .unwrap_err()
                .reason()
                .starts_with("not a Postmark inbound message")
        );
        assert_eq!(
            parsed(json!({"MessageID": "x", "TextBody": "hi"}))
                .unwrap_err()
                .reason(),
            "no From address"
        );
    }
}
