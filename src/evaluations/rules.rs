//! The rule checks: blocked words and patterns (`safety`), and an empty or overlong reply
//! (`length`). They need nothing but the reply's text, so they run in microseconds.

use regex::Regex;
use serde_json::json;

use crate::{config::EvaluationsConfig, store::evaluations::Verdict};

/// The compiled rules.
#[derive(Debug)]
pub struct Rules {
    /// One case-insensitive alternation of every blocked keyword; `None` when there are none.
    keywords: Option<Regex>,
    /// The blocked patterns, with their text for the record.
    patterns: Vec<(String, Regex)>,
    max_chars: usize,
}

impl Rules {
    /// Compiles the configured rules (validated with the configuration, so errors are unexpected).
    pub fn new(config: &EvaluationsConfig) -> Result<Self, regex::Error> {
        let keywords = if config.blocked_keywords.is_empty() {
            None
        } else {
            let alternatives: Vec<String> = config
                .blocked_keywords
                .iter()
                .map(|k| whole_word(k.trim()))
                .collect();
            Some(Regex::new(&format!("(?i){}", alternatives.join("|")))?)
        };
        let patterns = config
            .blocked_patterns
            .iter()
            .map(|p| Regex::new(p).map(|r| (p.clone(), r)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            keywords,
            patterns,
            max_chars: config.max_chars,
        })
    }

    /// The verdicts of every rule on a reply. `safety` is only checked when something is blocked.
    pub fn check(&self, text: &str) -> Vec<Verdict> {
        let mut verdicts = Vec::with_capacity(2);
        if self.keywords.is_some() || !self.patterns.is_empty() {
            verdicts.push(self.safety(text));
        }
        verdicts.push(self.length(text));
        verdicts
    }

    fn safety(&self, text: &str) -> Verdict {
        let mut words: Vec<String> = self
            .keywords
            .iter()
            .flat_map(|k| k.find_iter(text))
            .map(|m| m.as_str().to_lowercase())
            .collect();
        words.sort();
        words.dedup();
        let patterns: Vec<&str> = self
            .patterns
            .iter()
            .filter(|(_, regex)| regex.is_match(text))
            .map(|(source, _)| source.as_str())
            .collect();
        Verdict {
            evaluator: "safety",
            passed: words.is_empty() && patterns.is_empty(),
            score: None,
            detail: json!({"blocked_keywords": words, "blocked_patterns": patterns}),
        }
    }

    fn length(&self, text: &str) -> Verdict {
        let chars = text.chars().count();
        let problem = if text.trim().is_empty() {
            Some("empty")
        } else if chars > self.max_chars {
            Some("too_long")
        } else {
            None
        };
        Verdict {
            evaluator: "length",
            passed: problem.is_none(),
            score: None,
            detail: json!({"chars": chars, "max_chars": self.max_chars, "problem": problem}),
        }
    }
}

/// A keyword as a pattern that matches it as a whole word: "ass" must not flag "class". Word
/// boundaries only make sense next to word characters, so a keyword like "$$$" matches anywhere.
fn whole_word(keyword: &str) -> String {
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let start = if is_word(keyword.chars().next()) {
        r"\b"
    } else {
        ""
    };
    let end = if is_word(keyword.chars().last()) {
        r"\b"
    } else {
        ""
    };
    format!("{start}{}{end}", regex::escape(keyword))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(keywords: &[&str], patterns: &[&str], max_chars: usize) -> Rules {
        Rules::new(&EvaluationsConfig {
            blocked_keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
            blocked_patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
            max_chars,
            ..EvaluationsConfig::default()
        })
        .unwrap()
    }

    fn verdict<'a>(verdicts: &'a [Verdict], evaluator: &str) -> &'a Verdict {
        verdicts.iter().find(|v| v.evaluator == evaluator).unwrap()
    }

    #[test]
    fn blocked_keywords_match_whole_words_in_any_case() {
        let rules = rules(&["refund guaranteed", "ass", "$$$"], &[], 100);
        let bad = rules.check("Your REFUND Guaranteed, no $$$ needed");
        let safety = verdict(&bad, "safety");
        assert!(!safety.passed);
        assert_eq!(
            safety.detail["blocked_keywords"],
            json!(["$$$", "refund guaranteed"])
        );
        assert!(verdict(&rules.check("A first-class answer."), "safety").passed);
    }

    #[test]
    fn blocked_patterns_are_reported_by_their_text() {
        let rules = rules(&[], &[r"\b(?:\d[ -]?){13,16}\b"], 100);
        let bad = rules.check("Card: 4111 1111 1111 1111");
        assert_eq!(
            verdict(&bad, "safety").detail["blocked_patterns"],
            json!([r"\b(?:\d[ -]?){13,16}\b"])
        );
        assert!(verdict(&rules.check("Order 12345 shipped"), "safety").passed);
    }

    #[test]
    fn empty_and_overlong_replies_fail_the_length_check() {
        let rules = rules(&[], &[], 5);
        assert_eq!(
            rules.check("hello").len(),
            1,
            "no safety check without rules"
        );
        assert!(verdict(&rules.check("héllo"), "length").passed);
        let long = rules.check("hello!");
        assert_eq!(verdict(&long, "length").detail["problem"], "too_long");
        let empty = rules.check(" \n ");
        assert_eq!(verdict(&empty, "length").detail["problem"], "empty");
    }
}
