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
