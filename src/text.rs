//! Small text rules shared by routing and agents: whole-word keyword matching and titles.

/// Matches messages containing any of a set of words or phrases, case-insensitively and on word
/// boundaries ("hi" matches "Hi there" but not "this").
#[derive(Debug, Clone, Default)]
pub struct Keywords {
    /// Each keyword normalised to ` word word ` so a substring test finds whole words only.
    needles: Vec<String>,
}

impl Keywords {
    /// Builds a matcher from keywords; empty keywords are ignored.
    pub fn new<S: AsRef<str>>(keywords: &[S]) -> Self {
        Self {
            needles: keywords
                .iter()
                .map(|k| normalise(k.as_ref()))
                .filter(|k| !k.trim().is_empty())
                .collect(),
        }
    }

    /// Whether there are no keywords.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Whether the (normalised) text contains one of the keywords.
    pub fn matches(&self, text: &Normalised) -> bool {
        self.needles.iter().any(|n| text.0.contains(n.as_str()))
    }
}

/// Text prepared for keyword matching: lowercase words separated by single spaces, padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised(String);

impl Normalised {
    /// Normalises a message once, to match it against many keyword sets.
    pub fn new(text: &str) -> Self {
        Normalised(normalise(text))
    }
}

fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push(' ');
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        for c in word.chars().flat_map(char::to_lowercase) {
            out.push(c);
        }
        out.push(' ');
    }
    if out.len() == 1 {
        out.push(' ');
    }
    out
}

/// The longest title, in characters.
pub const TITLE_MAX_CHARS: usize = 50;

/// A conversation title from its first message: whitespace collapsed, at most
/// [`TITLE_MAX_CHARS`] characters, cut at a word boundary with an ellipsis when too long.
pub fn title(text: &str) -> Option<String> {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return None;
    }
    if collapsed.chars().count() <= TITLE_MAX_CHARS {
        return Some(collapsed);
    }
    let room = TITLE_MAX_CHARS - 1;
    let cut: String = collapsed.chars().take(room).collect();
    let at_word = match cut.rfind(' ') {
        Some(space) if space >= room / 2 => &cut[..space],
        _ => cut.as_str(),
    };
    Some(format!("{}…", at_word.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_match_whole_words_case_insensitively() {
        let greetings = Keywords::new(&["hi", "good morning"]);
        assert!(greetings.matches(&Normalised::new("Hi there!")));
        assert!(greetings.matches(&Normalised::new("well, GOOD   Morning to you")));
        assert!(!greetings.matches(&Normalised::new("this is it")));
        assert!(!greetings.matches(&Normalised::new("good mornings")));
        assert!(Keywords::new(&["", " "]).is_empty());
        assert!(Keywords::new(&["Größe"]).matches(&Normalised::new("welche GRÖSSE? größe!")));
    }

    #[test]
    fn titles_are_short_and_cut_at_words() {
        assert_eq!(
            title("  Where is\n my order?  ").as_deref(),
            Some("Where is my order?")
        );
        assert_eq!(title(" \n "), None);
        let long = "I would like to know whether you ship to Iceland and how long it takes";
        let t = title(long).unwrap();
        assert!(t.chars().count() <= TITLE_MAX_CHARS, "{t}");
        assert_eq!(t, "I would like to know whether you ship to Iceland…");
        let one_word = "x".repeat(80);
        assert_eq!(title(&one_word).unwrap().chars().count(), TITLE_MAX_CHARS);
    }
}
