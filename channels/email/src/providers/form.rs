//! What the form-posting providers (Mailgun, SendGrid) have in common once they pre-parse a mail:
//! looking fields up, rebuilding the headers, collecting the attached files.

use crate::inbound::{Draft, addresses, ids, rfc822_date};
use crate::{EmailAttachment, InboundEmail, ReplyAddress};

/// The most attachments read from one request: a bound on work for a hostile request.
const MAX_ATTACHMENTS: usize = 100;

/// A decoded form: `(name, value)` pairs in the order received.
pub(super) struct Form<'a> {
    fields: &'a [(String, Vec<u8>)],
}

impl<'a> Form<'a> {
    pub(super) fn new(fields: &'a [(String, Vec<u8>)]) -> Self {
        Self { fields }
    }

    /// The first field named `name` (in any case: providers are not consistent, `Message-Id`
    /// next to `message-headers`).
    pub(super) fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.fields
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    /// A field as text (invalid UTF-8 replaced), `None` when absent or blank.
    pub(super) fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|value| String::from_utf8_lossy(value).into_owned())
            .filter(|value| !value.trim().is_empty())
    }

    /// Every field except `skip` (the per-delivery signature fields), encoded unambiguously
    /// (lengths before bytes): what a mail without a Message-ID is identified by, the same on
    /// every retry of the delivery.
    pub(super) fn fingerprint(&self, skip: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in self.fields {
            if skip.iter().any(|skip| name.eq_ignore_ascii_case(skip)) {
                continue;
            }
            out.extend_from_slice(&(name.len() as u64).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u64).to_be_bytes());
            out.extend_from_slice(value);
        }
        out
    }

    /// The file fields `<prefix><n>` (`attachment-1`, `attachment1`…) in the order of `n`, with
    /// their names: for each, the bytes, the file name and the MIME type the webhook's form
    /// decoder passed along as `<field>.filename` and `<field>.content-type`, if it did.
    pub(super) fn files(&self, prefix: &str) -> Vec<FormFile<'a>> {
        let mut files: Vec<(u32, FormFile<'a>)> = self
            .fields
            .iter()
            .filter_map(|(name, value)| {
                let number = name
                    .get(..prefix.len())
                    .filter(|start| start.eq_ignore_ascii_case(prefix))
                    .and_then(|_| name[prefix.len()..].parse::<u32>().ok())?;
                let text = |suffix: &str| self.text(&format!("{name}.{suffix}"));
                Some((
                    number,
                    FormFile {
                        field: name.as_str(),
                        bytes: value.as_slice(),
                        filename: text("filename"),
                        content_type: text("content-type"),
                    },
                ))
            })
            .collect();
        files.sort_by_key(|(number, _)| *number);
        files.dedup_by_key(|(number, _)| *number);
        files
            .into_iter()
            .take(MAX_ATTACHMENTS)
            .map(|(_, file)| file)
            .collect()
    }
}

/// A file field of a form.
pub(super) struct FormFile<'a> {
    /// The field's name (`attachment-1`).
    pub field: &'a str,
    pub bytes: &'a [u8],
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

impl FormFile<'_> {
    /// The attachment, its MIME type sniffed from the content when nobody said.
    pub(super) fn into_attachment(self) -> EmailAttachment {
        let mime_type = self
            .content_type
            .as_deref()
            .and_then(|ct| ct.split(';').next())
            .map(|ct| ct.trim().to_ascii_lowercase())
            .filter(|ct| ct.contains('/'))
            .unwrap_or_else(|| sniff(self.bytes).to_owned());
        EmailAttachment {
            filename: self.filename.map(|name| name.trim().to_owned()),
            mime_type,
            bytes: self.bytes.to_vec(),
        }
    }
}

/// A file's MIME type from its first bytes, for the common types of attachments.
pub(super) fn sniff(bytes: &[u8]) -> &'static str {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"%PDF-", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"PK\x03\x04", "application/zip"),
    ];
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return "image/webp";
    }
    SIGNATURES
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
        .map_or("application/octet-stream", |(_, mime_type)| mime_type)
}

/// A header block (`Name: value` lines) from a provider's list of headers, to be read by the same
/// code as a mail's. Values are put on one line; names that are not header names are skipped.
pub(super) fn header_block<'h>(headers: impl IntoIterator<Item = (&'h str, &'h str)>) -> String {
    let mut block = String::new();
    for (name, value) in headers {
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            continue;
        }
        let value = value.replace(['\r', '\n'], " ");
        block.push_str(name);
        block.push_str(": ");
        block.push_str(value.trim());
        block.push_str("\r\n");
    }
    block
}

/// Sets the thread token of a mail read from raw MIME from the provider's envelope recipients,
/// when no address in the headers carries one: a reply sent as a blind copy has the gateway's
/// address only in the envelope.
pub(super) fn token_from_envelope<'r>(
    email: &mut InboundEmail,
    recipients: impl IntoIterator<Item = &'r str>,
    ours: &ReplyAddress,
) {
    if email.reply_token.is_none() {
        email.reply_token = recipients
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(|address| address.trim().trim_start_matches('<').trim_end_matches('>'))
            .find_map(|address| ours.token_of(address));
    }
}

/// Fills what the headers did not give from top-level fields of the same names, which Mailgun
/// posts next to (or instead of) `message-headers`.
pub(super) fn fill_from_header_fields(draft: &mut Draft, form: &Form<'_>) {
    if draft.message_id.is_none()
        && let Some(value) = form.text("Message-Id")
    {
        draft.message_id = ids(&value).into_iter().next();
    }
    if draft.in_reply_to.is_empty()
        && let Some(value) = form.text("In-Reply-To")
    {
        draft.in_reply_to = ids(&value);
    }
    if draft.references.is_empty()
        && let Some(value) = form.text("References")
    {
        draft.references = ids(&value);
    }
    if draft.date.is_none() {
        draft.date = form.text("Date").and_then(|value| rfc822_date(&value));
    }
    if draft.to.is_empty()
        && let Some(value) = form.text("To")
    {
        draft.to = addresses(&value);
    }
    if draft.cc.is_empty()
        && let Some(value) = form.text("Cc")
    {
        draft.cc = addresses(&value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_vec()))
            .collect()
    }

    #[test]
    fn fields_are_found_in_any_case() {
        let fields = fields(&[
            ("Subject", b"Hello"),
            ("blank", b"  "),
            ("subject", b"Second"),
        ]);
        let form = Form::new(&fields);
        assert_eq!(form.text("subject").as_deref(), Some("Hello"));
        assert_eq!(form.text("blank"), None);
        assert_eq!(form.get("blank"), Some(&b"  "[..]));
        assert_eq!(form.text("missing"), None);
    }

    #[test]
    fn files_come_in_numeric_order_with_their_details() {
        let fields = fields(&[
            ("attachment-10", b"ten"),
            ("attachment-2", b"%PDF-1.4"),
            ("attachment-2.filename", b"invoice.pdf"),
            ("attachment-1", b"\x89PNG\r\n\x1a\nrest"),
            ("attachment-1.content-type", b"image/png; name=x.png"),
            ("attachment-count", b"3"),
            ("attachment-x", b"not a file"),
        ]);
        let form = Form::new(&fields);
        let files: Vec<EmailAttachment> = form
            .files("attachment-")
            .into_iter()
            .map(FormFile::into_attachment)
            .collect();
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].mime_type, "image/png");
        assert_eq!(files[0].filename, None);
        assert_eq!(files[1].mime_type, "application/pdf");
        assert_eq!(files[1].filename.as_deref(), Some("invoice.pdf"));
        assert_eq!(files[2].bytes, b"ten");
        assert_eq!(files[2].mime_type, "application/octet-stream");
    }

    #[test]
    fn sniffs_common_types() {
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(sniff(b"\xff\xd8\xff\xe0"), "image/jpeg");
        assert_eq!(sniff(b"GIF89a..."), "image/gif");
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(sniff(b"PK\x03\x04"), "application/zip");
        assert_eq!(sniff(b""), "application/octet-stream");
    }

    #[test]
    fn fingerprints_ignore_the_skipped_fields_only() {
        let first = fields(&[("from", b"a"), ("token", b"1"), ("body", b"x")]);
        let retry = fields(&[("from", b"a"), ("token", b"2"), ("body", b"x")]);
        let other = fields(&[("from", b"a"), ("token", b"1"), ("body", b"y")]);
        let print = |fields| Form::new(fields).fingerprint(&["token"]);
        assert_eq!(print(&first), print(&retry));
        assert_ne!(print(&first), print(&other));
        // Lengths keep `ab`+`c` apart from `a`+`bc`.
        let split_one = fields(&[("ab", b"c")]);
        let split_two = fields(&[("a", b"bc")]);
        assert_ne!(print(&split_one), print(&split_two));
    }

    #[test]
    fn header_blocks_skip_bad_names_and_unfold_values() {
        let block = header_block([
            ("Message-Id", "<a@b>"),
            ("Bad Name", "x"),
            ("", "y"),
            ("Subject", "two\r\n lines"),
        ]);
        assert_eq!(block, "Message-Id: <a@b>\r\nSubject: two   lines\r\n");
    }
}
