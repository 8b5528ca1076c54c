//! What a reply looks like: its threading headers, subject, Message-ID and text and HTML bodies.
//!
//! Everything here is pure (apart from the random part of the Message-ID), so that the rules can
//! be tested without an SMTP server:
//!
//! - **Threading.** `In-Reply-To` names the message answered; `References` lists the thread's
//!   earlier messages, oldest first, and ends with that same id (RFC 5322 §3.6.4), which is how
//!   mail clients draw the thread. Ids come from the gateway without angle brackets and are
//!   checked before they go into a header: an id with spaces or non-ASCII characters would be
//!   encoded by lettre (RFC 2047) and match nothing, so it is left out.
//! - **Subject.** `Re: <conversation subject>`, unless the subject already carries a reply prefix
//!   (`Re:`, `AW:`, `SV:`… in any case), so that a long thread does not become `Re: Re: Re:`.
//!   A message that answers nothing (the first of a thread) gets the subject as it is.
//! - **Message-ID.** `sb.<gateway message id>.<8 random hex digits>@<message_id_domain>`: the
//!   prefix and domain let the gateway recognise its own mail when a reply names it in
//!   `In-Reply-To`, and the random part makes every attempt and every part of a message unique
//!   (parts of one message share the gateway's id; a retry is a new mail).
//! - **Bodies.** `multipart/alternative` with a text and an HTML part, both rendered from
//!   `templates/email/reply.{txt,html}`: the reply, then the recent thread, newest first (like
//!   the nested quotes of a mail client, so the message being answered sits right below the
//!   answer; `> ` lines in the text, left-bordered blocks in the HTML), then a closing line
//!   (after the signature delimiter `-- ` in the text, so clients leave it out of quotes). The
//!   closing says how to continue and why the mail came; it promises no automatic "stop"
//!   keyword, because the gateway has none: a reply asking to stop reaches the conversation
//!   like any other.

use askama::Template;
use chrono::{DateTime, SecondsFormat, Utc};
use lettre::{
    Address, Message,
    message::{
        Mailbox, MultiPart,
        header::{HeaderName, HeaderValue},
    },
};
use switchboard_channel::{MediaKind, OutboundContent, OutboundMessage, SendError, Thread};
use uuid::Uuid;

use crate::ReplyAddress;

/// Reply prefixes of mail clients (lowercase, without the colon): English `Re`, German `AW`,
/// Scandinavian `SV`, Finnish `VS`, Dutch `Antw`, Polish `Odp`, Portuguese `RES`.
const REPLY_PREFIXES: [&str; 7] = ["re", "aw", "sv", "vs", "antw", "odp", "res"];

/// The subject of a reply to a conversation without one.
const NO_SUBJECT_REPLY: &str = "Re: your message";

/// The subject of a first message of a conversation without one, when the sender has no name.
const NO_SUBJECT_FIRST: &str = "A message for you";

/// The most characters of one earlier message quoted below a reply; a longer one is cut (the
/// whole thread is in the recipient's mailbox anyway).
const QUOTE_LIMIT: usize = 2000;

/// The most characters of a server or template error kept in a failure's reason.
pub(super) const REASON_LIMIT: usize = 500;

/// The header that asks Exchange and Outlook not to answer with out-of-office and other
/// automatic replies, which would come back to the gateway as new messages.
const AUTO_RESPONSE_SUPPRESS: &str = "X-Auto-Response-Suppress";

/// The sender's fixed parts, checked once by [`super::SmtpSender::new`].
#[derive(Debug, Clone)]
pub(super) struct Identity {
    /// `From`; its display name is reused for `Reply-To`.
    pub from: Mailbox,
    /// Where replies go.
    pub reply_to: ReplyAddress,
    /// The domain of our Message-IDs.
    pub message_id_domain: String,
}

/// A composed mail and its Message-ID (without angle brackets).
#[derive(Debug)]
pub(super) struct Composed {
    pub mail: Message,
    pub message_id: String,
}

/// Builds the mail for `message`. Fails (permanently) for content e-mail cannot carry and for a
/// recipient that is not an address; nothing here is worth retrying.
pub(super) fn compose(
    identity: &Identity,
    message: &OutboundMessage,
) -> Result<Composed, SendError> {
    let to = recipient(&message.to)?;
    let content = Content::of(&message.content)?;
    let thread = message.thread.as_ref();
    let subject = subject(thread, identity.from.name.as_deref());
    let threading = Threading::of(thread, message.reply_to.as_deref());
    let message_id = message_id(&message.message_id, &identity.message_id_domain);
    let view = Reply {
        subject: &subject,
        content,
        history: history(thread),
    };
    let text = view.text()?;
    let html = view.html()?;

    let mut builder = Message::builder()
        .from(identity.from.clone())
        .to(Mailbox::new(None, to))
        .reply_to(reply_mailbox(identity, thread))
        .subject(subject.as_str())
        .message_id(Some(format!("<{message_id}>")))
        .date_now()
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(AUTO_RESPONSE_SUPPRESS),
            "All".to_owned(),
        ));
    if let Some(parent) = threading.in_reply_to_header() {
        builder = builder.in_reply_to(parent);
    }
    if let Some(references) = threading.references_header() {
        builder = builder.references(references);
    }
    let mail = builder
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|err| {
            SendError::permanent("invalid_message", format!("cannot build the mail: {err}"))
        })?;
    Ok(Composed { mail, message_id })
}

/// The recipient, which must be a bare address (the contact's external id).
pub(super) fn recipient(to: &str) -> Result<Address, SendError> {
    to.trim().parse::<Address>().map_err(|err| {
        SendError::permanent(
            "invalid_address",
            format!("{to:?} is not an e-mail address: {err}"),
        )
    })
}

/// `Reply-To`: our address with the thread's token, under the sender's display name. Without a
/// usable token (no thread, or a token that cannot be part of an address) replies still reach
/// the gateway at the plain address, and `In-Reply-To` may still bring them to the conversation.
fn reply_mailbox(identity: &Identity, thread: Option<&Thread>) -> Mailbox {
    let name = identity.from.name.clone();
    let plain = || {
        // Checked by `SmtpSender::new`: the plain address parses.
        format!("{}@{}", identity.reply_to.local, identity.reply_to.domain)
            .parse::<Address>()
            .unwrap_or_else(|_| identity.from.email.clone())
    };
    let token = thread.map(|thread| thread.token.trim()).unwrap_or_default();
    if token.is_empty() {
        return Mailbox::new(name, plain());
    }
    match identity.reply_to.with_token(token).parse::<Address>() {
        Ok(address) => Mailbox::new(name, address),
        Err(err) => {
            tracing::warn!(
                %err,
                "the thread token cannot be part of an address; replies go to the plain address"
            );
            Mailbox::new(name, plain())
        }
    }
}

/// The subject of a message of `thread`; `sender_name` names us when there is no subject to
/// continue.
///
/// | conversation subject | answers a message | subject |
/// |---|---|---|
/// | `Order 42` | yes | `Re: Order 42` |
/// | `RE: Order 42`, `AW: Order 42`, `Re[2]: Order 42` | yes | unchanged |
/// | `Order 42` | no (first message of the thread) | `Order 42` |
/// | none or blank | yes | `Re: your message` |
/// | none or blank | no | `A message from <sender name>` (`A message for you` without one) |
///
/// A message answers something when it has an `In-Reply-To` or earlier references. Line breaks
/// and runs of spaces in the subject become single spaces.
pub(super) fn subject(thread: Option<&Thread>, sender_name: Option<&str>) -> String {
    let answers = thread.is_some_and(|thread| {
        thread.in_reply_to.as_deref().and_then(clean_id).is_some()
            || thread.references.iter().any(|id| clean_id(id).is_some())
    });
    let title = thread
        .and_then(|thread| thread.subject.as_deref())
        .map(one_line)
        .filter(|title| !title.is_empty());
    match (title, answers) {
        (Some(title), true) if has_reply_prefix(&title) => title,
        (Some(title), true) => format!("Re: {title}"),
        (Some(title), false) => title,
        (None, true) => NO_SUBJECT_REPLY.to_owned(),
        (None, false) => match sender_name.map(one_line).filter(|name| !name.is_empty()) {
            Some(name) => format!("A message from {name}"),
            None => NO_SUBJECT_FIRST.to_owned(),
        },
    }
}

/// Whether a subject starts with a reply prefix: a word of [`REPLY_PREFIXES`] in any case,
/// optionally followed by a counter (`Re[2]:`, `Re(2):`) and spaces, then a colon.
fn has_reply_prefix(subject: &str) -> bool {
    let Some((head, _)) = subject.split_once(':') else {
        return false;
    };
    let word = head
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_digit() || matches!(c, '[' | ']' | '(' | ')'))
        .trim_end();
    REPLY_PREFIXES
        .iter()
        .any(|prefix| word.eq_ignore_ascii_case(prefix))
}

/// Text on one line, with runs of whitespace (line breaks included) as single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The threading headers of a message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Threading {
    /// The id answered (`In-Reply-To`), without angle brackets.
    pub in_reply_to: Option<String>,
    /// The thread's ids, oldest first, ending with [`Threading::in_reply_to`] when there is one
    /// (`References`); without angle brackets.
    pub references: Vec<String>,
}

impl Threading {
    /// The headers for `thread`. `reply_to` (the message's own pointer to what it answers) stands
    /// in when the thread names no parent. Unusable ids are dropped, repeated ones kept once
    /// (where they first appear), and the parent moves to the end of the references.
    pub(super) fn of(thread: Option<&Thread>, reply_to: Option<&str>) -> Threading {
        let parent = thread
            .and_then(|thread| thread.in_reply_to.as_deref())
            .and_then(clean_id)
            .or_else(|| reply_to.and_then(clean_id));
        let mut references: Vec<String> = Vec::new();
        for id in thread
            .map(|thread| thread.references.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|id| clean_id(id))
        {
            if Some(id) != parent && !references.iter().any(|seen| seen == id) {
                references.push(id.to_owned());
            }
        }
        if let Some(parent) = parent {
            references.push(parent.to_owned());
        }
        Threading {
            in_reply_to: parent.map(str::to_owned),
            references,
        }
    }

    /// `<id>`, for `In-Reply-To`.
    pub(super) fn in_reply_to_header(&self) -> Option<String> {
        self.in_reply_to.as_ref().map(|id| format!("<{id}>"))
    }

    /// `<id1> <id2> …`, for `References` (lettre folds long values at the spaces).
    pub(super) fn references_header(&self) -> Option<String> {
        if self.references.is_empty() {
            return None;
        }
        Some(
            self.references
                .iter()
                .map(|id| format!("<{id}>"))
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}

/// A message id as it can go into a header: trimmed, without angle brackets (tolerated around
/// it), and only printable ASCII without spaces or brackets inside; `None` otherwise.
fn clean_id(id: &str) -> Option<&str> {
    let id = id.trim();
    let id = id.strip_prefix('<').unwrap_or(id);
    let id = id.strip_suffix('>').unwrap_or(id);
    let printable = |c: char| c.is_ascii_graphic() && c != '<' && c != '>';
    (!id.is_empty() && id.chars().all(printable)).then_some(id)
}

/// Our Message-ID for a message, without angle brackets:
/// `sb.<gateway id>.<8 random hex digits>@<domain>`. Characters of the gateway id that may not
/// appear in a dot-atom (and dots, which would make the three fields ambiguous) become `_`.
///
/// The random part is the low 32 bits of a version 7 UUID, which uuid fills from its random
/// source (its monotonic counter sits in the bits above them).
pub(super) fn message_id(gateway_id: &str, domain: &str) -> String {
    let id: String = gateway_id
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let id = if id.is_empty() { "_".to_owned() } else { id };
    let random = &Uuid::now_v7().simple().to_string()[24..];
    format!("sb.{id}.{random}@{domain}")
}

/// Whether `domain` can follow the `@` of a Message-ID we write: dot-separated labels of ASCII
/// letters, digits and hyphens.
pub(super) fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// What the message says, ready for the templates.
#[derive(Debug)]
pub(super) struct Content<'a> {
    /// The text (a file's caption), line breaks as `\n`; may be empty for a file.
    pub body: String,
    /// Titles of the choices offered.
    pub choices: Vec<&'a str>,
    /// A file, linked rather than attached.
    pub file: Option<FileLink<'a>>,
}

/// A file the message points to.
#[derive(Debug)]
pub(super) struct FileLink<'a> {
    /// What it is: `Image`, `Document`…
    pub kind: &'static str,
    /// Its name, when known.
    pub name: Option<&'a str>,
    /// Where to get it.
    pub url: &'a str,
}

impl<'a> Content<'a> {
    /// The content of a message. Templates are WhatsApp's and have no e-mail form; a file is
    /// linked, not downloaded and attached (the gateway sends files as URLs, and mail size limits
    /// make attaching large ones unreliable), so only http(s) URLs will do.
    pub(super) fn of(content: &'a OutboundContent) -> Result<Content<'a>, SendError> {
        let content = match content {
            OutboundContent::Text { body } => Content {
                body: paragraphs(body),
                choices: Vec::new(),
                file: None,
            },
            OutboundContent::Choices { body, choices } => Content {
                body: paragraphs(body),
                choices: choices
                    .iter()
                    .map(|choice| choice.title.trim())
                    .filter(|title| !title.is_empty())
                    .collect(),
                file: None,
            },
            OutboundContent::Media {
                attachment,
                caption,
            } => Content {
                body: caption.as_deref().map(paragraphs).unwrap_or_default(),
                choices: Vec::new(),
                file: Some(FileLink {
                    kind: kind_name(attachment.kind),
                    name: attachment
                        .filename
                        .as_deref()
                        .map(str::trim)
                        .filter(|name| !name.is_empty()),
                    url: file_url(&attachment.source)?,
                }),
            },
            OutboundContent::Template { name, .. } => {
                return Err(SendError::permanent(
                    "unsupported",
                    format!("e-mail has no message templates (template {name:?})"),
                ));
            }
        };
        if content.body.is_empty() && content.file.is_none() {
            return Err(SendError::permanent(
                "empty_message",
                "the message has no text to send",
            ));
        }
        Ok(content)
    }
}

/// Text with `\n` line breaks and without surrounding blank lines or trailing spaces.
fn paragraphs(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_matches('\n')
        .to_owned()
}

/// The word shown before a file's link.
fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "Image",
        MediaKind::Audio => "Audio",
        MediaKind::Voice => "Voice message",
        MediaKind::Video => "Video",
        MediaKind::Document => "Document",
        MediaKind::Sticker => "Sticker",
    }
}

/// A file's URL, if it is one a mail can link to: http(s), with a host, and nothing a mail
/// client could misread (spaces, control characters, quotes).
fn file_url(source: &str) -> Result<&str, SendError> {
    let url = source.trim();
    let rest = url
        .get(..8)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
        .map(|_| &url[8..])
        .or_else(|| {
            url.get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
                .map(|_| &url[7..])
        });
    let usable = rest.is_some_and(|rest| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '<' && c != '>')
    });
    if usable {
        Ok(url)
    } else {
        Err(SendError::permanent(
            "invalid_media_url",
            format!("e-mail links files by http(s) URL; {source:?} is none"),
        ))
    }
}

/// An earlier message of the thread, as quoted below a reply.
#[derive(Debug)]
pub(super) struct Quote<'a> {
    /// Who wrote it, from the recipient's point of view.
    pub who: &'a str,
    /// When, for people: `3 Mar 2025, 14:02 UTC` (the recipient's time zone is unknown).
    pub when: String,
    /// When, for machines (RFC 3339).
    pub at: String,
    /// The text, `\n` line breaks, cut at [`QUOTE_LIMIT`] characters.
    pub text: String,
}

impl Quote<'_> {
    /// The text's lines, for the `> ` quoting of the text part.
    pub(super) fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.split('\n')
    }
}

/// The thread's recent messages, newest first, without empty ones.
fn history(thread: Option<&Thread>) -> Vec<Quote<'_>> {
    let Some(thread) = thread else {
        return Vec::new();
    };
    thread
        .history
        .iter()
        .rev()
        .filter_map(|line| {
            let text = paragraphs(&line.text);
            if text.is_empty() {
                return None;
            }
            Some(Quote {
                who: author(&line.role, line.author.as_deref()),
                when: human_time(line.at),
                at: line.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                text: cut(text, QUOTE_LIMIT),
            })
        })
        .collect()
}

/// Who wrote a message of the thread, as the recipient sees it: `user` is the recipient
/// ("You"), `ai` the assistant, `expert` a person of ours (by name when known), `system` a notice
/// of the gateway. An unknown role shows the author, or "Notice".
pub(super) fn author<'a>(role: &str, author: Option<&'a str>) -> &'a str {
    let named = author.map(str::trim).filter(|name| !name.is_empty());
    match role {
        "user" => "You",
        "ai" => "Assistant",
        "expert" => named.unwrap_or("Expert"),
        "system" => "Notice",
        _ => named.unwrap_or("Notice"),
    }
}

/// `3 Mar 2025, 14:02 UTC`.
fn human_time(at: DateTime<Utc>) -> String {
    at.format("%-d %b %Y, %H:%M UTC").to_string()
}

/// `text`, cut to at most `limit` characters (then ending with `…`).
pub(super) fn cut(text: String, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}…", text[..end].trim_end()),
        None => text,
    }
}

/// Everything the templates show.
#[derive(Debug)]
struct Reply<'a> {
    subject: &'a str,
    content: Content<'a>,
    history: Vec<Quote<'a>>,
}

/// The text part (`templates/email/reply.txt`; not escaped).
#[derive(Template)]
#[template(path = "email/reply.txt")]
struct ReplyText<'a> {
    reply: &'a Reply<'a>,
}

/// The HTML part (`templates/email/reply.html`; everything escaped).
#[derive(Template)]
#[template(path = "email/reply.html")]
struct ReplyHtml<'a> {
    reply: &'a Reply<'a>,
}

impl Reply<'_> {
    fn text(&self) -> Result<String, SendError> {
        let text = ReplyText { reply: self }.render().map_err(template_error)?;
        // The template starts with the body, which a file may not have.
        Ok(format!("{}\n", text.trim_matches('\n')))
    }

    fn html(&self) -> Result<String, SendError> {
        ReplyHtml { reply: self }.render().map_err(template_error)
    }
}

/// A template that cannot be rendered is a bug; retrying will not fix it.
fn template_error(err: askama::Error) -> SendError {
    SendError::permanent(
        "template",
        cut(format!("cannot render the e-mail: {err}"), REASON_LIMIT),
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use switchboard_channel::{Attachment, Choice, ThreadLine};

    use super::*;

    fn thread(subject: Option<&str>, in_reply_to: Option<&str>, references: &[&str]) -> Thread {
        Thread {
            subject: subject.map(str::to_owned),
            in_reply_to: in_reply_to.map(str::to_owned),
            references: references.iter().map(|id| (*id).to_owned()).collect(),
            token: "0123abcd".into(),
            history: Vec::new(),
        }
    }

    fn line(role: &str, author: Option<&str>, text: &str, minute: u32) -> ThreadLine {
        ThreadLine {
            role: role.into(),
            author: author.map(str::to_owned),
            text: text.into(),
            at: Utc.with_ymd_and_hms(2025, 3, 3, 14, minute, 0).unwrap(),
        }
    }

    fn reply<'a>(content: Content<'a>, history: Vec<Quote<'a>>) -> Reply<'a> {
        Reply {
            subject: "Re: Order 42",
            content,
            history,
        }
    }

    fn text(body: &str) -> Content<'_> {
        Content {
            body: paragraphs(body),
            choices: Vec::new(),
            file: None,
        }
    }

    #[test]
    fn a_reply_gets_re_once() {
        let answering = |subject: &str| {
            super::subject(
                Some(&thread(Some(subject), Some("a@b"), &[])),
                Some("Support"),
            )
        };
        assert_eq!(answering("Order 42"), "Re: Order 42");
        for already in [
            "Re: Order 42",
            "RE: Order 42",
            "re:Order 42",
            "AW: Bestellung 42",
            "SV: Ordre 42",
            "Re[2]: Order 42",
            "Re (3): Order 42",
            "  Re : Order 42",
            "Antw: Bestelling",
        ] {
            assert_eq!(answering(already), already.trim(), "{already}");
        }
        // Not prefixes.
        assert_eq!(answering("Reading: list"), "Re: Reading: list");
        assert_eq!(answering("Fwd: Order 42"), "Re: Fwd: Order 42");
        assert_eq!(answering("Order: 42"), "Re: Order: 42");
        // Line breaks (a folded header the inbound side kept) become spaces.
        assert_eq!(answering("Order\r\n  42\tnow"), "Re: Order 42 now");
    }

    #[test]
    fn references_alone_make_a_reply() {
        let thread = thread(Some("Order 42"), None, &["a@b"]);
        assert_eq!(subject(Some(&thread), None), "Re: Order 42");
    }

    #[test]
    fn the_first_message_of_a_thread_keeps_its_subject() {
        assert_eq!(
            subject(Some(&thread(Some("Welcome"), None, &[])), Some("Support")),
            "Welcome"
        );
        // Unusable ids do not count.
        assert_eq!(
            subject(Some(&thread(Some("Welcome"), Some(" "), &["a b"])), None),
            "Welcome"
        );
    }

    #[test]
    fn no_subject() {
        assert_eq!(
            subject(Some(&thread(None, Some("a@b"), &[])), Some("Support")),
            "Re: your message"
        );
        assert_eq!(
            subject(Some(&thread(Some("  \r\n"), Some("a@b"), &[])), None),
            "Re: your message"
        );
        assert_eq!(
            subject(Some(&thread(None, None, &[])), Some("Acme Support")),
            "A message from Acme Support"
        );
        assert_eq!(subject(None, None), "A message for you");
        assert_eq!(subject(None, Some(" ")), "A message for you");
    }

    #[test]
    fn references_end_with_the_parent() {
        let thread = thread(
            None,
            Some("c@x"),
            &["a@x", "c@x", "b@x", "<d@x>", "a@x", "bad id", "", "ü@x"],
        );
        let threading = Threading::of(Some(&thread), None);
        assert_eq!(threading.in_reply_to.as_deref(), Some("c@x"));
        assert_eq!(threading.references, ["a@x", "b@x", "d@x", "c@x"]);
        assert_eq!(threading.in_reply_to_header().as_deref(), Some("<c@x>"));
        assert_eq!(
            threading.references_header().as_deref(),
            Some("<a@x> <b@x> <d@x> <c@x>")
        );
    }

    #[test]
    fn the_parent_is_referenced_even_when_the_thread_forgot_it() {
        let thread = thread(None, Some("<p@x>"), &["a@x"]);
        let threading = Threading::of(Some(&thread), None);
        assert_eq!(threading.references, ["a@x", "p@x"]);
        assert_eq!(threading.in_reply_to.as_deref(), Some("p@x"));
    }

    #[test]
    fn without_a_parent_the_references_stay_in_order() {
        let thread = thread(None, None, &["a@x", "b@x"]);
        let threading = Threading::of(Some(&thread), None);
        assert_eq!(threading.in_reply_to, None);
        assert_eq!(threading.in_reply_to_header(), None);
        assert_eq!(threading.references, ["a@x", "b@x"]);
    }

    #[test]
    fn the_messages_reply_to_stands_in_for_a_missing_parent() {
        let threading = Threading::of(Some(&thread(None, None, &["a@x"])), Some("r@x"));
        assert_eq!(threading.in_reply_to.as_deref(), Some("r@x"));
        assert_eq!(threading.references, ["a@x", "r@x"]);
        // The thread's own parent wins.
        let threading = Threading::of(Some(&thread(None, Some("p@x"), &[])), Some("r@x"));
        assert_eq!(threading.in_reply_to.as_deref(), Some("p@x"));
    }

    #[test]
    fn no_thread_no_threading() {
        let threading = Threading::of(None, None);
        assert_eq!(threading, Threading::default());
        assert_eq!(threading.references_header(), None);
    }

    #[test]
    fn message_ids_are_ours_and_unique() {
        let id = message_id("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "mail.example.com");
        let rest = id
            .strip_prefix("sb.0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b.")
            .unwrap();
        let (random, domain) = rest.split_once('@').unwrap();
        assert_eq!(domain, "mail.example.com");
        assert_eq!(random.len(), 8);
        assert!(random.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(
            message_id("m", "example.com"),
            message_id("m", "example.com")
        );
        // Nothing of the gateway id can break the format.
        let odd = message_id("a.b@c <d>", "example.com");
        assert!(odd.starts_with("sb.a_b_c__d_."), "{odd}");
        assert!(message_id("", "example.com").starts_with("sb._."));
    }

    #[test]
    fn domains() {
        assert!(valid_domain("mail.example.com"));
        assert!(valid_domain("localhost"));
        assert!(valid_domain("xn--bcher-kva.example"));
        for bad in [
            "",
            "a..b",
            "-a.com",
            "a b.com",
            "a@b.com",
            "ex_ample.com",
            "bücher.de",
        ] {
            assert!(!valid_domain(bad), "{bad}");
        }
    }

    #[test]
    fn recipients_must_be_addresses() {
        assert_eq!(
            recipient(" ada@example.com ").unwrap().to_string(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "Ada <ada@example.com>",
            "a b@c.d",
        ] {
            let error = recipient(bad).unwrap_err();
            assert!(
                matches!(&error, SendError::Permanent { code, .. } if code == "invalid_address"),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn authors() {
        assert_eq!(author("user", Some("Ada")), "You");
        assert_eq!(author("ai", Some("assistant")), "Assistant");
        assert_eq!(author("expert", Some(" Grace ")), "Grace");
        assert_eq!(author("expert", Some("")), "Expert");
        assert_eq!(author("expert", None), "Expert");
        assert_eq!(author("system", Some("gateway")), "Notice");
        assert_eq!(author("bot", Some("Helper")), "Helper");
        assert_eq!(author("bot", None), "Notice");
    }

    #[test]
    fn content_kinds() {
        let choices = OutboundContent::Choices {
            body: "How can we help?\r\n".into(),
            choices: vec![
                Choice {
                    id: "billing".into(),
                    title: "Billing question".into(),
                },
                Choice {
                    id: "blank".into(),
                    title: " ".into(),
                },
            ],
        };
        let content = Content::of(&choices).unwrap();
        assert_eq!(content.body, "How can we help?");
        assert_eq!(content.choices, ["Billing question"]);

        let template = OutboundContent::Template {
            name: "welcome".into(),
            language: "en_US".into(),
            components: serde_json::Value::Null,
        };
        assert!(matches!(
            Content::of(&template),
            Err(SendError::Permanent { code, .. }) if code == "unsupported"
        ));

        let empty = OutboundContent::Text {
            body: " \n ".into(),
        };
        assert!(matches!(
            Content::of(&empty),
            Err(SendError::Permanent { code, .. }) if code == "empty_message"
        ));
    }

    fn media(source: &str) -> OutboundContent {
        OutboundContent::Media {
            attachment: Attachment {
                kind: MediaKind::Document,
                source: source.into(),
                mime_type: None,
                filename: Some("report.pdf".into()),
                size: None,
                sha256: None,
                media_id: None,
            },
            caption: None,
        }
    }

    #[test]
    fn files_are_linked_by_http_url_only() {
        for good in [
            "https://files.example.com/r.pdf?sig=a&b=c",
            "HTTP://example.com",
        ] {
            let content = media(good);
            let content = Content::of(&content).unwrap();
            let file = content.file.unwrap();
            assert_eq!(file.url, good);
            assert_eq!(file.kind, "Document");
            assert_eq!(file.name, Some("report.pdf"));
            assert_eq!(content.body, "");
        }
        for bad in [
            "javascript:alert(1)",
            "file:///etc/passwd",
            "wamid.HBgLMTY1",
            "https://",
            "https:///path",
            "https://example.com/a b",
            "https://example.com/\"onmouseover=",
        ] {
            let content = media(bad);
            assert!(
                matches!(
                    Content::of(&content),
                    Err(SendError::Permanent { code, .. }) if code == "invalid_media_url"
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn history_is_quoted_newest_first() {
        let mut thread = thread(Some("Order 42"), Some("a@b"), &[]);
        thread.history = vec![
            line("user", Some("Ada"), "Where is my order?\r\nIt is late.", 0),
            line("system", None, "   ", 1),
            line("expert", Some("Grace"), "Let me check.", 2),
        ];
        let quotes = history(Some(&thread));
        let shown: Vec<_> = quotes
            .iter()
            .map(|quote| (quote.who, quote.when.as_str(), quote.text.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("Grace", "3 Mar 2025, 14:02 UTC", "Let me check."),
                (
                    "You",
                    "3 Mar 2025, 14:00 UTC",
                    "Where is my order?\nIt is late."
                ),
            ]
        );
        assert_eq!(quotes[0].at, "2025-03-03T14:02:00Z");
        assert_eq!(
            quotes[1].lines().collect::<Vec<_>>(),
            ["Where is my order?", "It is late."]
        );
    }

    #[test]
    fn long_quotes_are_cut() {
        assert_eq!(cut("abcdef".into(), 3), "abc…");
        assert_eq!(cut("abc".into(), 3), "abc");
        assert_eq!(cut("ab cd".into(), 3), "ab…");
        assert_eq!(cut("ééé".into(), 2), "éé…");
    }

    #[test]
    fn text_part_layout() {
        let mut thread = thread(Some("Order 42"), Some("a@b"), &[]);
        thread.history = vec![
            line("user", None, "Where is my order?\n\nIt is late.", 0),
            line("ai", None, "Checking.", 1),
        ];
        let view = reply(text("It ships today.\n\nThanks!"), history(Some(&thread)));
        assert_eq!(
            view.text().unwrap(),
            "It ships today.\n\
             \n\
             Thanks!\n\
             \n\
             ----\n\
             Earlier in this conversation, newest first:\n\
             \n\
             On 3 Mar 2025, 14:01 UTC, Assistant wrote:\n\
             > Checking.\n\
             \n\
             On 3 Mar 2025, 14:00 UTC, You wrote:\n\
             > Where is my order?\n\
             >\n\
             > It is late.\n\
             \n\
             -- \n\
             Reply to this e-mail to continue the conversation. You are receiving it because you \
             wrote to us; it is not a newsletter. If you would rather not receive further replies, \
             just say so in your reply.\n"
        );
    }

    #[test]
    fn text_part_with_choices_and_a_file() {
        let content = Content {
            body: "Pick one:".into(),
            choices: vec!["Billing", "Talk to a person"],
            file: None,
        };
        let text = reply(content, Vec::new()).text().unwrap();
        assert!(
            text.starts_with(
                "Pick one:\n\nReply with one of:\n- Billing\n- Talk to a person\n\n-- \nReply to this"
            ),
            "{text}"
        );

        let content = Content {
            body: String::new(),
            choices: Vec::new(),
            file: Some(FileLink {
                kind: "Image",
                name: None,
                url: "https://example.com/a.png",
            }),
        };
        let text = reply(content, Vec::new()).text().unwrap();
        assert!(
            text.starts_with("Image: https://example.com/a.png\n\n-- \nReply to this"),
            "{text}"
        );
    }

    #[test]
    fn html_part_escapes_everything_and_keeps_line_breaks() {
        let mut thread = thread(Some("Order 42"), Some("a@b"), &[]);
        thread.history = vec![line("expert", Some("<b>Grace</b>"), "a < b\n& \"c\"", 0)];
        let content = Content {
            body: "<script>alert(1)</script>\nline two".into(),
            choices: vec!["<i>A</i>"],
            file: Some(FileLink {
                kind: "Document",
                name: Some("r&d.pdf"),
                url: "https://example.com/r.pdf?a=1&b=2",
            }),
        };
        let html = reply(content, history(Some(&thread))).html().unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;<br/>line two"),
            "{html}"
        );
        assert!(html.contains("&#60;i&#62;A&#60;/i&#62;"), "{html}");
        assert!(!html.contains("<b>Grace"), "{html}");
        assert!(html.contains("a &#60; b<br/>&#38; &#34;c&#34;"), "{html}");
        assert!(
            html.contains(r#"href="https://example.com/r.pdf?a=1&#38;b=2""#),
            "{html}"
        );
        assert!(html.contains("r&#38;d.pdf"), "{html}");
        assert!(html.contains("border-left"), "{html}");
        assert!(
            html.contains(r#"<time datetime="2025-03-03T14:00:00Z">"#),
            "{html}"
        );
        assert!(html.contains("Reply to this e-mail to continue the conversation."));
        // Simple markup only: no tables, no scripts, no external resources.
        for absent in ["<table", "<script", "<img", "<link", "src="] {
            assert!(!html.contains(absent), "{absent} in {html}");
        }
    }
}
