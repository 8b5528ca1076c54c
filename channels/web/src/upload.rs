//! What a visitor may upload from the widget, told from the file's own bytes.
//!
//! A browser's `Content-Type` for a file part is a guess from its name, and a script can send any
//! type at all: the gateway decides what a file is from its first bytes, and accepts only the
//! types a chat shows safely (pictures and PDFs). The visitor's file name is kept only to show.

/// How many leading bytes [`sniff`] needs at most.
pub const SNIFF_BYTES: usize = 12;

/// The longest display name kept, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// The MIME type of a file from its first bytes, when it is one of the accepted types: PNG,
/// JPEG, GIF, WebP or PDF.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    const SIGNATURES: [(&[u8], &str); 5] = [
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
    ];
    if let Some((_, mime)) = SIGNATURES.iter().find(|(magic, _)| head.starts_with(magic)) {
        return Some(mime);
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    None
}

/// The name to show for an uploaded file: the last component of what the browser sent, without
/// control characters, trimmed and shortened. `None` when nothing is left.
pub fn display_name(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last
        .chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .take(MAX_NAME_CHARS)
        .collect();
    let clean = clean.trim();
    (!clean.is_empty() && clean != "." && clean != "..").then(|| clean.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_content() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\0\x10JFIF"), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a\x01\0"), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"%PDF-1.7\n"), Some("application/pdf"));
        // Other RIFF files (audio, video) are not pictures.
        assert_eq!(sniff(b"RIFF\x24\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(b"<svg xmlns="), None);
        assert_eq!(sniff(b"<!doctype html>"), None);
        assert_eq!(sniff(b"\x89PN"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn names_are_only_shown() {
        assert_eq!(display_name("photo.png").as_deref(), Some("photo.png"));
        assert_eq!(
            display_name("C:\\Users\\me\\scan.pdf").as_deref(),
            Some("scan.pdf")
        );
        assert_eq!(display_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(
            display_name("a\r\nb\u{202e}gnp.exe").as_deref(),
            Some("abgnp.exe")
        );
        assert_eq!(display_name("dir/"), None);
        assert_eq!(display_name(" .. "), None);
        assert_eq!(display_name(&"x".repeat(500)).map(|n| n.len()), Some(200));
    }
}
