//! Splitting long texts for channels that limit the length of one message.
//!
//! An agent's answer may be longer than a provider accepts (4,096 characters on WhatsApp and
//! Telegram). Rather than refusing it or cutting it off, a sender splits it into several messages,
//! at the most natural boundary that fits: a blank line, then a line break, then the end of a
//! sentence, then a space; only a single unbroken word longer than the limit is cut.

/// How a channel measures the length of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Unicode scalar values (WhatsApp).
    Chars,
    /// UTF-16 code units (Telegram counts these: an emoji outside the BMP counts twice).
    Utf16,
}

impl Measure {
    /// The length of `text`.
    pub fn len(self, text: &str) -> usize {
        match self {
            Measure::Chars => text.chars().count(),
            Measure::Utf16 => text.encode_utf16().count(),
        }
    }

    fn char_len(self, c: char) -> usize {
        match self {
            Measure::Chars => 1,
            Measure::Utf16 => c.len_utf16(),
        }
    }
}

/// Splits `text` into pieces of at most `max` (by `measure`), at natural boundaries, trimming the
/// whitespace at each cut. Joined with the whitespace that was cut, the pieces are the text again.
/// A text that fits is returned as it is, in one piece.
pub fn split_text(text: &str, max: usize, measure: Measure) -> Vec<String> {
    let max = max.max(1);
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while measure.len(rest) > max {
        // The longest prefix that fits, as a byte offset.
        let mut fits = 0;
        let mut used = 0;
        for (at, c) in rest.char_indices() {
            used += measure.char_len(c);
            if used > max {
                break;
            }
            fits = at + c.len_utf8();
        }
        let window = &rest[..fits];
        let cut = best_cut(window).unwrap_or(fits);
        let (piece, tail) = rest.split_at(cut);
        let piece = piece.trim_end();
        if !piece.is_empty() {
            pieces.push(piece.to_owned());
        }
        rest = tail.trim_start();
    }
    if !rest.is_empty() || pieces.is_empty() {
        pieces.push(rest.to_owned());
    }
    pieces
}

/// Where to cut a window that is too long: the end of its last paragraph, line, sentence or word.
fn best_cut(window: &str) -> Option<usize> {
    // A cut too close to the start would leave a tiny piece; prefer a coarser boundary only when
    // it keeps at least half of the window.
    let half = window.len() / 2;
    let paragraph = window.rfind("\n\n").filter(|&at| at >= half);
    let line = || window.rfind('\n').filter(|&at| at >= half);
    let sentence = || {
        window
            .rmatch_indices(['.', '!', '?'])
            .map(|(at, mark)| at + mark.len())
            .find(|&end| end >= half && window[end..].starts_with(char::is_whitespace))
    };
    let word = || window.rfind(char::is_whitespace).filter(|&at| at > 0);
    paragraph.or_else(line).or_else(sentence).or_else(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_stay_whole() {
        assert_eq!(split_text("hello", 10, Measure::Chars), vec!["hello"]);
        assert_eq!(split_text("", 10, Measure::Chars), vec![""]);
    }

    #[test]
    fn long_texts_split_at_paragraphs_then_sentences_then_words() {
        let text = format!("{}\n\n{}", "a".repeat(30), "b".repeat(30));
        assert_eq!(
            split_text(&text, 40, Measure::Chars),
            vec!["a".repeat(30), "b".repeat(30)]
        );

        let text = "One sentence here. Another one follows here and goes on.";
        let pieces = split_text(text, 30, Measure::Chars);
        assert_eq!(pieces[0], "One sentence here.");
        assert!(pieces.iter().all(|p| p.chars().count() <= 30), "{pieces:?}");
        assert_eq!(pieces.join(" "), text);

        let words = "word ".repeat(2000);
        let pieces = split_text(&words, 4096, Measure::Chars);
        assert_eq!(pieces.len(), 3);
        assert!(
            pieces
                .iter()
                .all(|p| p.len() <= 4096 && p.ends_with("word"))
        );
    }

    #[test]
    fn unbroken_text_is_cut_and_nothing_is_lost() {
        let text = "x".repeat(25);
        let pieces = split_text(&text, 10, Measure::Chars);
        assert_eq!(pieces, vec!["x".repeat(10), "x".repeat(10), "x".repeat(5)]);
    }

    #[test]
    fn lengths_are_measured_the_channels_way() {
        // Each emoji is one char but two UTF-16 units.
        let text = "😀".repeat(6);
        assert_eq!(split_text(&text, 6, Measure::Chars).len(), 1);
        let pieces = split_text(&text, 6, Measure::Utf16);
        assert_eq!(pieces, vec!["😀😀😀", "😀😀😀"]);
        assert_eq!(Measure::Utf16.len("😀a"), 3);
    }
}
