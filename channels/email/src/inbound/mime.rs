//! Raw MIME, and header blocks, read with mail-parser into a [`Draft`].
//!
//! mail-parser does the hard parts: folded and encoded-word headers, transfer encodings,
//! charsets, nested multiparts, and which parts are the body (`text_body`, `html_body`) and which
//! are attachments. What is left here is choosing among its answers.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use mail_parser::{
    HeaderValue, Message, MessageParser, MimeHeaders, PartType, parsers::MessageStream,
};

use super::{
    Address, Draft, EmailAttachment, InboundEmail, ParseError, normalize_newlines, not_an_email,
};
use crate::ReplyAddress;

/// Parses a raw mail; see [`parse_mime`](super::parse_mime).
pub(super) fn parse(raw: &[u8], ours: &ReplyAddress) -> Result<InboundEmail, ParseError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(not_an_email("the body is empty"));
    }
    let message = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| not_an_email("no mail headers"))?;
    let mut draft = Draft::default();
    read_headers(&message, &mut draft);
    // A body may come in several parts of the same type (Apple Mail splits the text around an
    // inline picture); they are read in order. mail-parser lists a lone text part as both the
    // text and the HTML body (converting on demand), so each list keeps only its own type.
    draft.plain = join(message.text_bodies().filter_map(|part| match &part.body {
        PartType::Text(text) => Some(plain_text(part, text)),
        _ => None,
    }));
    draft.html = join(message.html_bodies().filter_map(|part| match &part.body {
        PartType::Html(html) => Some(html.to_string()),
        _ => None,
    }));
    draft.attachments = message.attachments().filter_map(attachment).collect();
    draft.finish(raw, ours)
}

/// A draft with what a header block says (a provider's copy of the headers, without the body).
/// An unreadable block gives an empty draft: the provider's other fields may still do.
pub(crate) fn header_draft(block: &str) -> Draft {
    let mut draft = Draft::default();
    // The block must end with an empty line for mail-parser to see its end.
    let block = format!("{}\r\n\r\n", block.trim_end());
    if let Some(message) = MessageParser::default().parse_headers(block.as_bytes()) {
        read_headers(&message, &mut draft);
    }
    draft
}

/// The addresses of an address header's value (`Kim <kim@example.org>, bob@example.com`),
/// encoded words decoded; entries without an address (an empty group) are skipped.
pub(crate) fn addresses(value: &str) -> Vec<Address> {
    let value = one_line(value);
    match MessageStream::new(value.as_bytes()).parse_address() {
        HeaderValue::Address(list) => list
            .iter()
            .filter_map(|addr| Some(Address::new(addr.name(), addr.address()?)))
            .filter(|address| !address.address.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// The message ids of an id header's value (`<a@b> <c@d>`), without angle brackets.
pub(crate) fn ids(value: &str) -> Vec<String> {
    let value = one_line(value);
    id_list(&MessageStream::new(value.as_bytes()).parse_id())
}

/// An RFC 5322 date (`Tue, 11 Nov 2025 10:14:05 +0100`).
pub(crate) fn rfc822_date(value: &str) -> Option<DateTime<Utc>> {
    to_utc(&mail_parser::DateTime::parse_rfc822(value.trim())?)
}

/// Fills the draft from a message's top-level headers.
fn read_headers(message: &Message<'_>, draft: &mut Draft) {
    draft.headers = message
        .headers_raw()
        .map(|(name, value)| (name.to_owned(), unfold(value)))
        .collect();
    draft.message_id = message.message_id().map(str::to_owned);
    draft.from = message.from().and_then(|from| {
        from.iter()
            .find_map(|addr| Some(Address::new(addr.name(), addr.address()?)))
    });
    draft.to = message.all_to().flat_map(address_list).collect();
    draft.cc = message.all_cc().flat_map(address_list).collect();
    draft.subject = message.subject().unwrap_or_default().trim().to_owned();
    draft.in_reply_to = id_list(message.in_reply_to());
    draft.references = id_list(message.references());
    draft.date = message.date().and_then(to_utc);
    draft.content_type = message
        .content_type()
        .map(|ct| mime_type(ct.ctype(), ct.subtype()));
}

fn address_list(list: &mail_parser::Address<'_>) -> Vec<Address> {
    list.iter()
        .filter_map(|addr| Some(Address::new(addr.name(), addr.address()?)))
        .filter(|address| !address.address.is_empty())
        .collect()
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    let ids: Vec<&str> = match value {
        HeaderValue::Text(id) => vec![id.as_ref()],
        HeaderValue::TextList(ids) => ids.iter().map(Cow::as_ref).collect(),
        _ => Vec::new(),
    };
    ids.into_iter()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

fn to_utc(date: &mail_parser::DateTime) -> Option<DateTime<Utc>> {
    date.is_valid()
        .then(|| DateTime::from_timestamp(date.to_timestamp(), 0))
        .flatten()
}

/// A part mail-parser lists as an attachment, decoded; `None` for an inline image the HTML
/// refers to (`Content-ID`, no file name): part of the layout, not a file the sender attached.
fn attachment(part: &mail_parser::MessagePart<'_>) -> Option<EmailAttachment> {
    let filename = part
        .attachment_name()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    let attached = part
        .content_disposition()
        .is_some_and(|disposition| disposition.is_attachment());
    if filename.is_none() && part.content_id().is_some() && !attached {
        return None;
    }
    let bytes = match &part.body {
        PartType::Binary(bytes) | PartType::InlineBinary(bytes) => bytes.to_vec(),
        // A text attachment, already decoded from its charset to UTF-8.
        PartType::Text(text) | PartType::Html(text) => text.as_bytes().to_vec(),
        PartType::Message(message) => message.raw_message().to_vec(),
        PartType::Multipart(_) => return None,
    };
    let mime_type = match part.content_type() {
        Some(ct) => mime_type(ct.ctype(), ct.subtype()),
        None if matches!(part.body, PartType::Text(_)) => "text/plain".to_owned(),
        None if matches!(part.body, PartType::Message(_)) => "message/rfc822".to_owned(),
        None => "application/octet-stream".to_owned(),
    };
    Some(EmailAttachment {
        filename,
        mime_type,
        bytes,
    })
}

fn mime_type(ctype: &str, subtype: Option<&str>) -> String {
    match subtype {
        Some(subtype) => format!("{ctype}/{subtype}").to_ascii_lowercase(),
        None => ctype.to_ascii_lowercase(),
    }
}

/// The parts joined by a newline; `None` when there are none.
fn join(parts: impl Iterator<Item = String>) -> Option<String> {
    let parts: Vec<String> = parts.collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

/// The text of a `text/plain` part, its lines unwrapped when it is `format=flowed`.
fn plain_text(part: &mail_parser::MessagePart<'_>, text: &str) -> String {
    let attribute = |name: &str| {
        part.content_type()
            .and_then(|ct| ct.attribute(name))
            .is_some_and(|value| {
                value.eq_ignore_ascii_case(if name == "format" { "flowed" } else { "yes" })
            })
    };
    if attribute("format") {
        unflow(&normalize_newlines(text), attribute("delsp"))
    } else {
        text.to_owned()
    }
}

/// Undoes RFC 3676 `format=flowed`: a line ending in a space continues on the next line of the
/// same quote depth. Thunderbird and others wrap paragraphs this way; unwrapped, a sentence is
/// one line again, and space-stuffing (the space added before a line starting with `>`, `From `
/// or a space) is removed. With `delsp=yes` the space ending a flowed line was added by the
/// sender and goes too.
fn unflow(text: &str, delsp: bool) -> String {
    let mut lines: Vec<String> = Vec::new();
    // The paragraph being joined: its quote depth and its text so far.
    let mut open: Option<(usize, String)> = None;
    for line in text.split('\n') {
        let depth = line.bytes().take_while(|b| *b == b'>').count();
        let content = &line[depth..];
        let content = content.strip_prefix(' ').unwrap_or(content);
        // The signature delimiter ends in a space but is never flowed.
        let flowed = content.ends_with(' ') && content != "-- ";
        let piece = if flowed && delsp {
            &content[..content.len() - 1]
        } else {
            content
        };
        let mut paragraph = match open.take() {
            Some((open_depth, text)) if open_depth == depth => text,
            Some((open_depth, text)) => {
                lines.push(quoted(open_depth, &text));
                String::new()
            }
            None => String::new(),
        };
        paragraph.push_str(piece);
        if flowed {
            open = Some((depth, paragraph));
        } else {
            lines.push(quoted(depth, &paragraph));
        }
    }
    if let Some((depth, text)) = open {
        lines.push(quoted(depth, &text));
    }
    lines.join("\n")
}

/// A line at quote depth `depth`, written back with its quote marks.
fn quoted(depth: usize, text: &str) -> String {
    if depth == 0 {
        text.to_owned()
    } else {
        format!("{} {text}", ">".repeat(depth))
    }
}

/// A raw header value on one line: folding undone, surrounding space trimmed.
fn unfold(value: &str) -> String {
    normalize_newlines(value)
        .split('\n')
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A value handed in by a provider made safe for mail-parser's header parsers, which stop at the
/// end of the line.
fn one_line(value: &str) -> String {
    format!("{}\n", unfold(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unflows_paragraphs() {
        let text = "Hello,\n\nthis is a long line that \nwas wrapped by the \nclient.\n\nKim\n-- \nKim Lee";
        assert_eq!(
            unflow(text, false),
            "Hello,\n\nthis is a long line that was wrapped by the client.\n\nKim\n-- \nKim Lee"
        );
    }

    #[test]
    fn unflows_quotes_by_depth_and_removes_stuffing() {
        let text = "> quoted \n> text\n>> deeper \n>> still\n> back \nnot joined\n From the start";
        assert_eq!(
            unflow(text, false),
            "> quoted text\n>> deeper still\n> back \nnot joined\nFrom the start"
        );
    }

    #[test]
    fn delsp_removes_the_wrapping_space() {
        assert_eq!(
            unflow("Donau\u{00ad}dampf \nschiff", true),
            "Donau\u{00ad}dampfschiff"
        );
        assert_eq!(unflow("a \nb", false), "a b");
    }

    #[test]
    fn flowed_parts_are_unwrapped_in_mails() {
        let raw = b"From: kim@example.org\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\n\r\nThis sentence was \r\nwrapped.\r\n";
        let message = MessageParser::default().parse(&raw[..]).unwrap();
        let part = message.text_part(0).unwrap();
        let PartType::Text(text) = &part.body else {
            panic!("not text");
        };
        assert_eq!(
            plain_text(part, text).trim_end(),
            "This sentence was wrapped."
        );
    }
}
