//! Reading an inbound mail: from raw MIME or from a provider's pre-parsed fields to one
//! [`InboundEmail`], and from there to the normalized [`InboundMessage`].
//!
//! Mail reaches the gateway by several routes (raw MIME from a self-hosted MTA or a provider's raw
//! mode, or the fields Mailgun, Postmark and SendGrid pre-parse), but what makes a reply usable is
//! the same everywhere, so every route fills a [`Draft`] and [`Draft::finish`] applies the rules
//! once:
//!
//! - **Identity.** The sender's address (lowercased) is the contact. A mail without one cannot be
//!   answered nor attributed, and is refused ([`ParseError`]). A mail without a `Message-ID` gets
//!   `generated-<sha256 of what was received>`, so that a provider retrying the same delivery is
//!   still deduplicated by the pipeline.
//! - **Threading.** Replies carry the gateway's thread token in the plus-address they were sent to
//!   (`support+<token>@…`, see [`ReplyAddress`]), found in `To`, `Cc`, `Delivered-To`,
//!   `X-Original-To` or the envelope; and `In-Reply-To`/`References` name the messages replied
//!   to, which the pipeline matches against the Message-IDs it sent.
//! - **The new text.** People reply above (or below) the whole previous exchange and sign every
//!   mail; an agent answering the quote again, or a transcript repeating it ten times, is useless.
//!   The text is the plain part, or the HTML part turned into text when there is none, with the
//!   quoted reply and the signature cut off ([`strip`], [`html`]); the full text is kept as
//!   [`InboundEmail::original`] for people to check what was cut.
//! - **Automated mail.** Out-of-office replies, bounces and mailing lists must never be answered,
//!   or two robots answer each other forever ([`automated`], RFC 3834).

mod automated;
mod html;
mod mime;
mod strip;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use switchboard_channel::{
    Attachment, ContactRef, Content, ConversationRef, InboundMessage, InlineFile, MediaKind,
};

pub(crate) use mime::{addresses, header_draft, ids, rfc822_date};

use crate::ReplyAddress;

/// The largest HTML body kept in a message's metadata, in bytes. Newsletters-turned-replies can
/// carry megabytes of markup; the text is what matters, the HTML is only kept for display.
const MAX_HTML_METADATA: usize = 256 * 1024;

/// A mail address with its display name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    /// The display name (`Kim Lee` in `Kim Lee <kim@example.org>`), decoded; `None` when the
    /// header has none.
    pub name: Option<String>,
    /// The address, lowercased.
    pub address: String,
}

impl Address {
    /// An address with its name, normalized: the address trimmed and lowercased, an empty name
    /// dropped.
    pub(crate) fn new(name: Option<&str>, address: &str) -> Self {
        Self {
            name: name
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned),
            address: address.trim().to_lowercase(),
        }
    }
}

/// A file attached to a mail, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAttachment {
    /// The file name the sender gave (`Content-Disposition: filename`, or `Content-Type: name`).
    pub filename: Option<String>,
    /// The MIME type, lowercased `type/subtype` without parameters.
    pub mime_type: String,
    /// The content, transfer encoding removed.
    pub bytes: Vec<u8>,
}

impl EmailAttachment {
    /// What kind of file it is, from its MIME type: what the gateway stores in
    /// [`Attachment::kind`].
    pub fn media_kind(&self) -> MediaKind {
        MediaKind::of_mime_type(&self.mime_type)
    }
}

/// An inbound mail, read: who wrote, in which thread, the new text and the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundEmail {
    /// The `Message-ID` without angle brackets; `generated-<hex sha256>` of what was received when
    /// the mail has none.
    pub message_id: String,
    /// The sender (`From`).
    pub from: Address,
    /// The recipients (`To`).
    pub to: Vec<Address>,
    /// The copies (`Cc`).
    pub cc: Vec<Address>,
    /// The subject, decoded; empty when the mail has none.
    pub subject: String,
    /// The ids of `In-Reply-To`, without angle brackets: the message replied to.
    pub in_reply_to: Vec<String>,
    /// The ids of `References`, without angle brackets, in header order (oldest first).
    pub references: Vec<String>,
    /// When the sender says the mail was written (`Date`).
    pub date: Option<DateTime<Utc>>,
    /// The new text: quoted replies and signature removed, trimmed. Never empty when the mail has
    /// any text: when stripping leaves nothing, it is the original text.
    pub text: String,
    /// The full text before stripping (the HTML part turned into text when there is no plain
    /// part), trimmed.
    pub original: String,
    /// The HTML part, as sent.
    pub html: Option<String>,
    /// The attached files, in MIME order. Inline images referenced by the HTML part (a
    /// `Content-ID` and no file name) are left out.
    pub attachments: Vec<EmailAttachment>,
    /// Why the mail must never be answered (an auto-reply, a bounce, a mailing list), e.g.
    /// `auto-submitted: auto-replied`, `bounce`, `mailing list`, `no-reply sender`; `None` for
    /// a mail written by a person.
    pub automated: Option<String>,
    /// The gateway's thread token: from the first recipient address of ours that carries one
    /// (`To`, then `Cc`, `Delivered-To`, `X-Original-To`, the envelope).
    pub reply_token: Option<String>,
}

/// A request that does not carry a usable mail: the core [`ParseError`] with the subject
/// `not an e-mail`.
///
/// The gateway refuses it (a provider should not retry it). Its message says what is wrong, e.g.
/// `not an e-mail: no From address`; [`ParseError::reason`] is the part after the colon.
pub use switchboard_channel::ParseError;

/// A [`ParseError`] of this channel: `not an e-mail: {reason}`.
pub(crate) fn not_an_email(reason: impl Into<String>) -> ParseError {
    ParseError::new("not an e-mail", reason)
}

/// Parses a raw RFC 5322 mail (the body of a `message/rfc822` request, Mailgun's `body-mime`,
/// SendGrid's raw `email`).
///
/// Charsets and transfer encodings are decoded by mail-parser; `ours` is the gateway's reply
/// address, to find the thread token among the recipients. Fails only when the bytes are not a
/// mail or the mail has no sender address.
pub fn parse_mime(raw: &[u8], ours: &ReplyAddress) -> Result<InboundEmail, ParseError> {
    mime::parse(raw, ours)
}

impl InboundEmail {
    /// The normalized message of this mail, received on `account` (the gateway's inbound
    /// address).
    ///
    /// The attachments travel inside the message ([`InboundMessage::files`], in MIME order) and
    /// the content names them as [`Attachment::inline`]; the gateway stores the files and puts
    /// its copies in their place. Without attachments the content is the text, with some it is
    /// media captioned by the text (no caption when the mail has no text).
    ///
    /// The message's provider id is the mail's Message-ID and its sender the lowercased From
    /// address: what deduplicates a provider's retries and what the gateway compares with an
    /// expert's address when a reply to a staff notification comes in.
    pub fn into_message(self, account: &str) -> InboundMessage {
        let mut references = Vec::with_capacity(self.in_reply_to.len() + self.references.len());
        // Newest first: the message replied to, then the thread from its end back to the start.
        for id in self.in_reply_to.iter().chain(self.references.iter().rev()) {
            if !references.contains(id) {
                references.push(id.clone());
            }
        }
        let subject = thread_subject(&self.subject);
        let subject = (!subject.is_empty()).then(|| subject.to_owned());
        let stripped = self.text != tidy(&self.original);

        let mut metadata = Map::new();
        metadata.insert("subject".into(), json!(self.subject));
        metadata.insert("message_id".into(), json!(self.message_id));
        metadata.insert("to".into(), address_list(&self.to));
        metadata.insert("cc".into(), address_list(&self.cc));
        metadata.insert("original_text".into(), json!(self.original));
        if let Some(html) = &self.html {
            let kept = truncate(html, MAX_HTML_METADATA);
            if kept.len() < html.len() {
                metadata.insert("html_truncated".into(), Value::Bool(true));
            }
            metadata.insert("html".into(), json!(kept));
        }
        metadata.insert("stripped".into(), Value::Bool(stripped));
        if let Some(reason) = &self.automated {
            metadata.insert("automated".into(), json!(reason));
        }

        let files: Vec<InlineFile> = self
            .attachments
            .into_iter()
            .map(|file| InlineFile {
                bytes: file.bytes.into(),
                mime_type: file.mime_type,
                filename: file.filename,
            })
            .collect();
        let content = if files.is_empty() {
            Content::Text { body: self.text }
        } else {
            Content::Media {
                attachments: files
                    .iter()
                    .enumerate()
                    .map(|(index, file)| Attachment::inline(index, file))
                    .collect(),
                caption: (!self.text.is_empty()).then_some(self.text),
            }
        };
        InboundMessage {
            provider_message_id: Some(self.message_id),
            sender_key: None,
            account: account.to_owned(),
            from: ContactRef {
                external_id: self.from.address,
                display_name: self.from.name,
                username: None,
            },
            reply_to: self.in_reply_to.first().cloned(),
            conversation: ConversationRef::Thread {
                token: self.reply_token,
                references,
            },
            sent_at: self.date,
            content,
            subject,
            intent: None,
            metadata,
            files,
        }
    }
}

/// What every route knows about a mail before the common rules apply. Providers fill what they
/// have; [`Draft::finish`] does the rest.
#[derive(Debug, Default)]
pub(crate) struct Draft {
    /// Every header as `(name, unfolded value)`, in order: read for automated mail and the
    /// delivery addresses.
    pub headers: Vec<(String, String)>,
    /// `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
    pub from: Option<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    /// Addresses the mail was delivered to beyond the headers: the provider's envelope
    /// recipients.
    pub envelope_to: Vec<String>,
    pub subject: String,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub date: Option<DateTime<Utc>>,
    /// The `text/plain` body.
    pub plain: Option<String>,
    /// The `text/html` body.
    pub html: Option<String>,
    /// The new text as the provider stripped it (Mailgun's `stripped-text`, Postmark's
    /// `StrippedTextReply`), preferred over the gateway's own stripping.
    pub provider_stripped: Option<String>,
    pub attachments: Vec<EmailAttachment>,
    /// The top-level `Content-Type`, lowercased `type/subtype`.
    pub content_type: Option<String>,
    /// A thread token the provider extracted itself (Postmark's `MailboxHash`), used when no
    /// recipient address carries one.
    pub token_hint: Option<String>,
}

impl Draft {
    /// Applies the common rules (see the module documentation). `received` is what the gateway
    /// received, hashed into the Message-ID of a mail without one.
    pub(crate) fn finish(
        self,
        received: &[u8],
        ours: &ReplyAddress,
    ) -> Result<InboundEmail, ParseError> {
        let from = self
            .from
            .filter(|from| from.address.contains('@'))
            .ok_or_else(|| not_an_email("no From address"))?;
        let message_id = self
            .message_id
            .map(|id| {
                id.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("generated-{}", hex::encode(Sha256::digest(received))));
        let automated = automated::detect(
            &self.headers,
            &from.address,
            &self.subject,
            self.content_type.as_deref(),
        );
        let reply_token = reply_token(
            ours,
            &self.to,
            &self.cc,
            &self.headers,
            &self.envelope_to,
            self.token_hint.as_deref(),
        );
        let (original, text) = body_text(
            self.plain.as_deref(),
            self.html.as_deref(),
            self.provider_stripped.as_deref(),
        );
        Ok(InboundEmail {
            message_id,
            from,
            to: self.to,
            cc: self.cc,
            subject: self.subject.trim().to_owned(),
            in_reply_to: self.in_reply_to,
            references: self.references,
            date: self.date,
            text,
            original,
            html: self.html.filter(|html| !html.trim().is_empty()),
            attachments: self.attachments,
            automated,
            reply_token,
        })
    }
}

/// The full text and the new text of a mail: from the plain part when there is one with any
/// text, else from the HTML part (quote elements removed before conversion).
fn body_text(
    plain: Option<&str>,
    html: Option<&str>,
    provider_stripped: Option<&str>,
) -> (String, String) {
    let plain = plain
        .map(normalize_newlines)
        .filter(|plain| !plain.trim().is_empty());
    let (original, own) = match (plain, html) {
        (Some(plain), _) => {
            let own = strip::strip(&plain);
            (plain.trim().to_owned(), own)
        }
        (None, Some(html)) => {
            let original = html::to_text(html, false);
            let own = strip::strip(&html::to_text(html, true));
            (original, own)
        }
        (None, None) => (String::new(), String::new()),
    };
    // The provider's stripping is preferred, but it may miss a marker the gateway knows (a
    // localized attribution line), so the gateway's rules run over it too.
    let text = provider_stripped
        .map(normalize_newlines)
        .filter(|text| !text.trim().is_empty())
        .map(|text| strip::strip(&text))
        .filter(|text| !text.is_empty())
        .unwrap_or(own);
    let text = if text.is_empty() {
        tidy(&original)
    } else {
        text
    };
    (original, text)
}

/// The thread token of the first recipient address of ours that carries one: `To`, `Cc`,
/// `Delivered-To`, `X-Original-To`, the envelope; else the provider's own extraction, which only
/// counts when the mail was sent to an address of ours.
fn reply_token(
    ours: &ReplyAddress,
    to: &[Address],
    cc: &[Address],
    headers: &[(String, String)],
    envelope_to: &[String],
    hint: Option<&str>,
) -> Option<String> {
    let delivered = ["delivered-to", "x-original-to"]
        .into_iter()
        .flat_map(|name| {
            headers
                .iter()
                .filter(move |(header, _)| header.eq_ignore_ascii_case(name))
                .flat_map(|(_, value)| value.split(','))
                .map(bare_address)
        });
    let mut recipients = to
        .iter()
        .chain(cc)
        .map(|address| address.address.as_str())
        .chain(delivered)
        .chain(
            envelope_to
                .iter()
                .flat_map(|value| value.split(','))
                .map(bare_address),
        );
    if let Some(token) = recipients
        .clone()
        .find_map(|address| ours.token_of(address))
    {
        return Some(token);
    }
    let hint = hint.map(str::trim).filter(|hint| !hint.is_empty())?;
    recipients
        .any(|address| is_ours(ours, address))
        .then(|| hint.to_ascii_lowercase())
}

/// Whether `address` is one of the gateway's: `<local>@<domain>` or `<local>+…@<domain>`.
pub(crate) fn is_ours(ours: &ReplyAddress, address: &str) -> bool {
    let Some((local, domain)) = address.trim().rsplit_once('@') else {
        return false;
    };
    let base = local.split('+').next().unwrap_or(local);
    base.eq_ignore_ascii_case(&ours.local) && domain.eq_ignore_ascii_case(&ours.domain)
}

/// The address in a delivery header's value: `<a@b>` or `a@b`.
fn bare_address(value: &str) -> &str {
    let value = value.trim();
    match (value.find('<'), value.rfind('>')) {
        (Some(start), Some(end)) if start < end => value[start + 1..end].trim(),
        _ => value,
    }
}

/// Reply and forward prefixes, lowercase, in the languages mail clients write them: `Re:`,
/// `Fwd:`, German `AW:`/`WG:`, Nordic `SV:`/`VS:`, Dutch `Antw:`, French `TR:`, Spanish `RV:`,
/// Portuguese `RES:`/`ENC:`.
const SUBJECT_PREFIXES: &[&str] = &[
    "re", "fw", "fwd", "aw", "wg", "sv", "vs", "antw", "tr", "rv", "res", "enc",
];

/// The subject without its reply and forward prefixes (`Re: AW: Fwd[2]: Order` → `Order`): the
/// title of the conversation.
fn thread_subject(subject: &str) -> &str {
    let mut rest = subject.trim();
    while let Some((head, tail)) = rest.split_once(':') {
        // `Re`, `RE ` (French spacing), `Re[2]`, `Re(2)`.
        let head = head.trim();
        let word = head.trim_end_matches(|c: char| c.is_ascii_digit() || "[]()".contains(c));
        let counter = &head[word.len()..];
        let counter_ok = counter.is_empty()
            || (counter.len() > 2
                && (counter.starts_with('[') && counter.ends_with(']')
                    || counter.starts_with('(') && counter.ends_with(')')));
        if !counter_ok || !SUBJECT_PREFIXES.contains(&word.to_ascii_lowercase().as_str()) {
            break;
        }
        rest = tail.trim_start();
    }
    rest
}

fn address_list(addresses: &[Address]) -> Value {
    Value::Array(addresses.iter().map(|a| json!(a.address)).collect())
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// CRLF and lone CR as LF: mail bodies arrive with CRLF, webhook fields with either.
pub(crate) fn normalize_newlines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Trailing spaces of every line removed, and the whole trimmed: how the new text is laid out.
fn tidy(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}
