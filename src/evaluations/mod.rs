//! Evaluations: every AI reply is checked after it is stored, by a background job, so checking
//! never delays an answer.
//!
//! The reply and its `evaluate` job are written in the same statement (see
//! `store::messages::append_reply`), so no reply escapes its check, not even across a crash. The
//! job runs the configured evaluators — [`rules`] (blocked words and patterns, empty or overlong
//! replies) and optionally the LLM [`judge`] — and [`job`] stores one result per evaluator and
//! reply, then applies `evaluations.action` to a failure: the reply is flagged for supervisors, or
//! the conversation also goes to the experts. The configured fallback (sent when the agent failed)
//! is not evaluated: it is the operator's own text.

pub mod job;
pub mod judge;
pub mod rules;

use crate::config::{AgentConfig, Config};
use judge::Judge;
use rules::Rules;

/// The configured evaluators.
pub struct Evaluators {
    /// The rule checks (always run).
    pub rules: Rules,
    /// The LLM judge, when configured.
    pub judge: Option<Judge>,
}

impl Evaluators {
    /// The evaluators of the configuration; `None` when evaluations are off.
    pub fn from_config(config: &Config, http: &reqwest::Client) -> anyhow::Result<Option<Self>> {
        let settings = &config.evaluations;
        if !settings.enabled {
            return Ok(None);
        }
        let judge = match &settings.judge {
            None => None,
            Some(judge) => match config.agents.get(&judge.agent) {
                Some(AgentConfig::Openai(agent)) => Some(Judge::new(
                    agent,
                    judge.min_score,
                    &config.quotas.currency,
                    http.clone(),
                    std::env::var("OPENAI_API_KEY").ok(),
                )),
                // Checked when the configuration is loaded.
                _ => anyhow::bail!(
                    "evaluations.judge.agent {:?} is not an openai agent",
                    judge.agent
                ),
            },
        };
        Ok(Some(Self {
            rules: Rules::new(settings)?,
            judge,
        }))
    }
}

/// A failed verdict in a few words, for experts, supervisors and the log: "safety (blocked
/// words: refund guaranteed)", "length (5000 characters)", "judge (score 0.20: off topic)".
pub fn describe(evaluator: &str, detail: &serde_json::Value, score: Option<f64>) -> String {
    let words = |value: &serde_json::Value| {
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    match evaluator {
        "safety" => {
            let keywords = words(&detail["blocked_keywords"]);
            let patterns = words(&detail["blocked_patterns"]);
            match (keywords.is_empty(), patterns.is_empty()) {
                (false, true) => format!("safety (blocked words: {keywords})"),
                (true, false) => format!("safety (blocked patterns: {patterns})"),
                _ => format!("safety (blocked words: {keywords}; patterns: {patterns})"),
            }
        }
        "length" => match detail["problem"].as_str() {
            Some("empty") => "length (empty)".to_owned(),
            _ => format!("length ({} characters)", detail["chars"]),
        },
        "judge" => format!(
            "judge (score {:.2}: {})",
            score.unwrap_or_default(),
            detail["reason"].as_str().unwrap_or_default()
        ),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::describe;

    #[test]
    fn failures_are_described_in_a_few_words() {
        let safety = json!({"blocked_keywords": ["refund guaranteed"], "blocked_patterns": []});
        assert_eq!(
            describe("safety", &safety, None),
            "safety (blocked words: refund guaranteed)"
        );
        let long = json!({"chars": 5000, "problem": "too_long"});
        assert_eq!(describe("length", &long, None), "length (5000 characters)");
        let judged = json!({"reason": "off topic"});
        assert_eq!(
            describe("judge", &judged, Some(0.2)),
            "judge (score 0.20: off topic)"
        );
    }
}
