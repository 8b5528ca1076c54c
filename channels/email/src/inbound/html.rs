//! The text of an HTML-only mail, with the quoted reply removed first.
//!
//! In HTML the quote is marked up, which is more reliable than any text rule: Gmail wraps it in
//! `div.gmail_quote` (and older versions in `div.gmail_extra`), Apple Mail and Thunderbird in
//! `blockquote`, Yahoo in `div.yahoo_quoted`; Outlook marks where the previous message starts
//! (`div#appendonsend`, `div#divRplyFwdMsg`, `hr#stopSpelling`, the new Outlook's
//! `#mail-editor-reference-message-container`) and everything after that point is the quote. So
//! those elements are dropped before conversion, and the text rules then catch what is left
//! (an Outlook desktop header block, a signature).
//!
//! The conversion is a small tokenizer rather than mail-parser's `html_to_text`, which only
//! breaks lines at `<br>` and `</p>`: Gmail and Apple Mail put every line in its own `<div>`, so
//! the text would run together. Character references are decoded with mail-parser's entity
//! table.

use mail_parser::decoders::html::add_html_token;

/// Elements dropped with their content when quotes are removed, by class.
const QUOTE_CLASSES: &[&str] = &[
    "gmail_quote",
    "gmail_extra",
    "gmail_signature",
    "gmail_signature_prefix",
    "yahoo_quoted",
];

/// Elements from which on everything is the quote, by id.
const CUT_IDS: &[&str] = &[
    "appendonsend",
    "divrplyfwdmsg",
    "stopspelling",
    "mail-editor-reference-message-container",
];

/// Elements whose boundaries break the line.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "center",
    "dd",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tr",
    "ul",
];

/// Elements whose content is not text, skipped whole.
const RAW: &[&str] = &["script", "style", "title", "textarea", "template"];

/// Elements that have no closing tag.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// The text of an HTML body; with `without_quotes`, the quote elements removed first (see the
/// module documentation). Lines are trimmed at the end, runs of blank lines collapsed to one,
/// and the whole trimmed.
pub(crate) fn to_text(html: &str, without_quotes: bool) -> String {
    let mut writer = Writer::default();
    // The element being dropped, and how deep inside nested elements of the same name.
    let mut dropping: Option<(String, usize)> = None;
    let mut rest = html;
    while !rest.is_empty() {
        if let Some(comment) = rest.strip_prefix("<!--") {
            // Outlook's conditional comments (`<!--[if mso]>…<![endif]-->`) included.
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let Some(tag_source) = rest.strip_prefix('<') else {
            let end = rest.find('<').unwrap_or(rest.len());
            if dropping.is_none() {
                writer.text(&rest[..end]);
            }
            rest = &rest[end..];
            continue;
        };
        let Some(end) = tag_end(tag_source) else {
            // An unterminated tag: nothing readable follows.
            break;
        };
        let tag = Tag::parse(&tag_source[..end]);
        rest = &tag_source[end + 1..];
        let Some(tag) = tag else {
            // `<!DOCTYPE>`, `<?xml?>`, or a `<` that starts no tag (already lost: rare in
            // mail, and never in the text a client writes, which escapes it).
            continue;
        };

        if let Some((name, depth)) = &mut dropping {
            if tag.name == *name && !tag.self_closing && !VOID.contains(&tag.name.as_str()) {
                if tag.closing {
                    *depth -= 1;
                } else {
                    *depth += 1;
                }
            }
            // Leaving `<head>` without its end tag: the body starts anyway.
            let head_ends = name == "head" && tag.name == "body" && !tag.closing;
            if *depth == 0 || head_ends {
                dropping = None;
                writer.block();
            }
            continue;
        }
        if tag.closing {
            writer.close(&tag.name);
            continue;
        }
        if RAW.contains(&tag.name.as_str()) {
            rest = skip_raw(rest, &tag.name);
            continue;
        }
        if without_quotes && tag.is_cut() {
            break;
        }
        let drop = tag.name == "head" || (without_quotes && tag.is_quote());
        if drop {
            if !tag.self_closing && !VOID.contains(&tag.name.as_str()) {
                dropping = Some((tag.name, 1));
            }
            continue;
        }
        writer.open(&tag);
    }
    writer.finish()
}

/// The position of the `>` ending a tag, quotes in attribute values respected.
fn tag_end(source: &str) -> Option<usize> {
    let mut quote = None;
    for (index, c) in source.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            (None, '>') => return Some(index),
            _ => {}
        }
    }
    None
}

/// What follows the raw-text element `name`: its content and end tag skipped. The end tag is
/// searched without copying the rest of the document, which a mail with many `<style>`
/// elements would make quadratic.
fn skip_raw<'a>(rest: &'a str, name: &str) -> &'a str {
    let bytes = rest.as_bytes();
    let mut from = 0;
    while let Some(found) = rest[from..].find("</") {
        let start = from + found;
        let name_start = start + 2;
        let matches = bytes
            .get(name_start..name_start + name.len())
            .is_some_and(|candidate| candidate.eq_ignore_ascii_case(name.as_bytes()));
        if matches {
            return rest[start..]
                .find('>')
                .map_or("", |end| &rest[start + end + 1..]);
        }
        from = name_start;
    }
    ""
}

/// A start or end tag.
struct Tag {
    /// Lowercase.
    name: String,
    closing: bool,
    self_closing: bool,
    /// The `class` attribute's names, lowercase.
    classes: Vec<String>,
    /// The `id` attribute, lowercase.
    id: Option<String>,
}

impl Tag {
    /// Reads what is between `<` and `>`; `None` for what is not an element's tag.
    fn parse(source: &str) -> Option<Self> {
        let (closing, source) = match source.strip_prefix('/') {
            Some(rest) => (true, rest),
            None => (false, source),
        };
        let name_end = source
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == ':'))
            .unwrap_or(source.len());
        let name = source[..name_end].to_ascii_lowercase();
        if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return None;
        }
        let attributes = &source[name_end..];
        Some(Self {
            name,
            closing,
            self_closing: attributes.trim_end().ends_with('/'),
            classes: attribute(attributes, "class")
                .map(|value| {
                    value
                        .split_whitespace()
                        .map(str::to_ascii_lowercase)
                        .collect()
                })
                .unwrap_or_default(),
            id: attribute(attributes, "id").map(|value| value.trim().to_ascii_lowercase()),
        })
    }

    fn is_quote(&self) -> bool {
        self.name == "blockquote"
            || self
                .classes
                .iter()
                .any(|class| QUOTE_CLASSES.contains(&class.as_str()))
    }

    fn is_cut(&self) -> bool {
        self.id.as_deref().is_some_and(|id| CUT_IDS.contains(&id))
    }
}

/// The value of attribute `name` in a tag's attribute text (`class="a b" id=x`).
fn attribute<'a>(attributes: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = attributes;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if rest.is_empty() {
            return None;
        }
        let key_end = rest
            .find(|c: char| c.is_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        rest = rest[key_end..].trim_start();
        let value = if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let (value, remaining) = match after.chars().next() {
                Some(quote @ ('"' | '\'')) => {
                    let inner = &after[1..];
                    let end = inner.find(quote).unwrap_or(inner.len());
                    (&inner[..end], inner.get(end + 1..).unwrap_or(""))
                }
                _ => {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            rest = remaining;
            Some(value)
        } else {
            None
        };
        // Every round consumes the key, or (when the key is empty) the `=` that stopped it.
        if key.eq_ignore_ascii_case(name) {
            return value;
        }
    }
}

/// The text being written, with HTML's whitespace rules.
#[derive(Default)]
struct Writer {
    out: String,
    /// Whitespace was seen since the last word: one space goes before the next.
    pending_space: bool,
    /// Inside `<pre>`, whitespace is kept.
    pre: usize,
    /// The current `<p>` is one of Outlook's lines rather than a paragraph.
    line_paragraphs: bool,
}

impl Writer {
    /// Character data: references decoded, whitespace collapsed (outside `<pre>`).
    fn text(&mut self, raw: &str) {
        let text = decode_references(raw);
        for c in text.chars() {
            if self.pre > 0 {
                self.out.push(c);
                continue;
            }
            // HTML collapses ASCII whitespace only: a no-break space is a character.
            if c.is_ascii_whitespace() {
                self.pending_space = true;
                continue;
            }
            if self.pending_space && !self.at_line_start() {
                self.out.push(' ');
            }
            self.pending_space = false;
            self.out.push(c);
        }
    }

    fn open(&mut self, tag: &Tag) {
        let name = tag.name.as_str();
        if name == "p" {
            // Outlook writes every line as a margin-less `<p class=MsoNormal>`, and blank lines
            // as paragraphs of a no-break space; elsewhere a paragraph stands apart.
            self.line_paragraphs = tag.classes.iter().any(|class| class == "msonormal");
        }
        match name {
            "br" => {
                self.out.push('\n');
                self.pending_space = false;
            }
            "pre" => {
                self.block();
                self.pre += 1;
            }
            "li" => {
                self.block();
                self.out.push_str("- ");
            }
            // Table cells of a row side by side.
            "td" | "th" => self.pending_space = true,
            "p" => self.paragraph(),
            _ if BLOCKS.contains(&name) => self.block(),
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        match name {
            "pre" => {
                self.pre = self.pre.saturating_sub(1);
                self.block();
            }
            "p" => self.paragraph(),
            _ if BLOCKS.contains(&name) => self.block(),
            _ => {}
        }
    }

    /// Makes sure what follows starts a paragraph: after a blank line, unless paragraphs are
    /// lines (Outlook).
    fn paragraph(&mut self) {
        self.block();
        if !self.line_paragraphs && !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    /// Makes sure what follows starts a line.
    fn block(&mut self) {
        if !self.at_line_start() {
            self.out.push('\n');
        }
        self.pending_space = false;
    }

    fn at_line_start(&self) -> bool {
        self.out.is_empty() || self.out.ends_with('\n')
    }

    fn finish(self) -> String {
        let mut text = String::with_capacity(self.out.len());
        let mut blank_lines = 0;
        for line in self.out.lines() {
            // No-break spaces pad empty paragraphs (`<p>&nbsp;</p>`) and indent.
            let line = line.trim_end().replace('\u{a0}', " ");
            let line = line.trim_end();
            if line.trim().is_empty() {
                blank_lines += 1;
                continue;
            }
            if !text.is_empty() {
                text.push_str(if blank_lines > 0 { "\n\n" } else { "\n" });
            }
            blank_lines = 0;
            text.push_str(line);
        }
        text
    }
}

/// Character references (`&amp;`, `&#233;`, `&#x20AC;`) decoded with mail-parser's entity table;
/// an unknown or unterminated one is kept as written.
fn decode_references(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let candidate = &rest[start..];
        // Named references are at most 32 characters, and `;` ends them; a space or another `&`
        // first means a bare ampersand.
        let end = candidate
            .char_indices()
            .skip(1)
            .take(33)
            .take_while(|(_, c)| *c != '&' && *c != '<' && !c.is_whitespace())
            .find(|(_, c)| *c == ';')
            .map(|(index, _)| index);
        match end {
            Some(end) => {
                add_html_token(&mut out, &candidate.as_bytes()[..=end], false);
                rest = &candidate[end + 1..];
            }
            None => {
                out.push('&');
                rest = &candidate[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divs_and_breaks_make_lines() {
        let html = r#"<div dir="ltr"><div>Hi,</div><div><br></div><div>Line two &amp; more</div><div>Line three</div></div>"#;
        assert_eq!(to_text(html, false), "Hi,\n\nLine two & more\nLine three");
    }

    #[test]
    fn whitespace_collapses_and_references_decode() {
        let html = "<p>\n  Caf&eacute;   &#233;t&#xE9;\n  &lt;b&gt; &euro;5 &unknown; a&b\n</p>";
        assert_eq!(to_text(html, false), "Café été <b> €5 &unknown; a&b");
    }

    #[test]
    fn head_style_script_and_comments_are_skipped() {
        let html = "<html><head><title>Reply</title><style>p { color: red; }</style></head><body><!--[if mso]><p>Outlook only</p><![endif]--><p>Hello</p><script>var a = '<p>';</script><p>World</p></body></html>";
        assert_eq!(to_text(html, false), "Hello\n\nWorld");
    }

    #[test]
    fn paragraphs_stand_apart() {
        let html = "<p>Hello,</p>\n<p>the invoice is attached.<br>Thanks</p><p>Noah</p>";
        assert_eq!(
            to_text(html, false),
            "Hello,\n\nthe invoice is attached.\nThanks\n\nNoah"
        );
    }

    #[test]
    fn outlook_paragraphs_are_lines() {
        let html = "<p class=MsoNormal>Hello Ada,<o:p></o:p></p><p class=MsoNormal><o:p>&nbsp;</o:p></p><p class=MsoNormal>Thursday works.<o:p></o:p></p>";
        assert_eq!(to_text(html, false), "Hello Ada,\n\nThursday works.");
    }

    #[test]
    fn lists_tables_and_pre() {
        let html = "<ul><li>one</li><li>two</li></ul><table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table><pre>  x\n  y</pre>";
        assert_eq!(to_text(html, false), "- one\n- two\na b\nc\n  x\n  y");
    }

    #[test]
    fn removes_gmail_quotes() {
        let html = r#"<div dir="ltr">Thanks!<div><br></div><div>Kim</div></div><br><div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">On Tue, 11 Nov 2025 at 10:02, Support &lt;<a href="mailto:support@mail.example.com">support@mail.example.com</a>&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex"><div>Hello <div>nested</div> Kim</div></blockquote></div>"#;
        assert_eq!(to_text(html, true), "Thanks!\n\nKim");
        // Without removal, everything is there.
        assert_eq!(
            to_text(html, false),
            "Thanks!\n\nKim\n\nOn Tue, 11 Nov 2025 at 10:02, Support <support@mail.example.com> wrote:\nHello\nnested\nKim"
        );
    }

    #[test]
    fn removes_gmail_extra_and_signatures() {
        let html = r#"<div>Thanks!</div><div><br clear="all"><div><br></div><span class="gmail_signature_prefix">-- </span><br><div dir="ltr" class="gmail_signature">Kim Lee<br>Example Corp</div></div><div class="gmail_extra"><br><div class="gmail_quote">On Mon wrote:</div></div>"#;
        assert_eq!(to_text(html, true), "Thanks!");
    }

    #[test]
    fn removes_blockquotes_and_what_they_nest() {
        let html = "<div>Answer above</div><blockquote type=\"cite\"><div>Level one</div><blockquote><div>Level two</div></blockquote><div>Still one</div></blockquote><div>Answer below</div>";
        assert_eq!(to_text(html, true), "Answer above\nAnswer below");
    }

    #[test]
    fn cuts_at_outlooks_reply_markers() {
        let web = r#"<div style="font-family: Aptos">Yes, Thursday works.</div><div id="appendonsend"></div><hr style="display:inline-block;width:98%" tabindex="-1"><div id="divRplyFwdMsg" dir="ltr"><font face="Calibri"><b>From:</b> Switchboard Support</font></div><div>Hello Ada,</div>"#;
        assert_eq!(to_text(web, true), "Yes, Thursday works.");
        let reply_marker =
            r#"<p>Yes.</p><div id="divRplyFwdMsg"><b>From:</b> Support</div><p>Quoted</p>"#;
        assert_eq!(to_text(reply_marker, true), "Yes.");
        let old = r#"<div>Yes.</div><hr id="stopSpelling">Quoted"#;
        assert_eq!(to_text(old, true), "Yes.");
        // Kept when quotes are not removed.
        assert!(to_text(web, false).contains("Hello Ada,"));
    }

    #[test]
    fn attributes_are_read_with_any_quoting() {
        let tag =
            Tag::parse(r#"div  ID = 'AppendOnSend' class=gmail_quote data-x="a > b""#).unwrap();
        assert_eq!(tag.id.as_deref(), Some("appendonsend"));
        assert_eq!(tag.classes, ["gmail_quote"]);
        let closing = Tag::parse("/DIV").unwrap();
        assert!(closing.closing);
        assert_eq!(closing.name, "div");
        assert!(Tag::parse("!DOCTYPE html").is_none());
        assert!(Tag::parse(" 3").is_none());
        assert_eq!(to_text(r#"<div title="a > b">text</div>"#, false), "text");
    }

    #[test]
    fn malformed_html_does_not_panic() {
        for html in [
            "<div",
            "<",
            "<div class=\"gmail_quote\">never closed",
            "</div></div>text",
            "&",
            "&#xZZ;",
            "&#1114112;",
            "<!-- unterminated",
            "<script>never closed",
            "<head><title>x</title><body>Body without head end",
            "é<é>ü",
            "<div =\"x\"class=a ='' = id>",
            "<style>a</sty</STYLE >after",
        ] {
            let _ = to_text(html, true);
            let _ = to_text(html, false);
        }
        assert_eq!(
            to_text("<head><title>x</title><body>Body without head end", false),
            "Body without head end"
        );
        assert_eq!(to_text("</div></div>text", false), "text");
        assert_eq!(to_text("<style>a</sty</STYLE >after", false), "after");
    }
}
