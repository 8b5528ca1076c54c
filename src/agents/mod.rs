//! AI agents: what answers a conversation in AI mode.
//!
//! An agent receives the recent conversation and streams its reply as text deltas; it may also ask
//! to hand the conversation to a human ([`AgentEvent::Handoff`]). Agents do not store anything,
//! enforce timeouts or talk to channels: the pipeline does all of that around them, so an agent is
//! only its reasoning (or its API client).
//!
//! Visitors see the agents the operator marks `selectable` ([`catalogue`]), with whether their
//! calls work right now ([`availability`]), and may choose one of them for a message.

pub mod availability;
pub mod catalogue;
mod echo;
mod openai;
mod scripted;

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::stream::BoxStream;
use switchboard_channel::{Channel, Choice};

pub use availability::{AgentHealth, Availability};
pub use catalogue::{Catalogue, Chosen};
pub use echo::EchoAgent;
pub use openai::OpenAiAgent;
pub use scripted::ScriptedAgent;

use crate::{
    config::{AgentConfig, Config},
    store::messages::ContextLine,
};

/// What an agent is asked to answer.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    /// The conversation.
    pub conversation_id: crate::ids::ConversationId,
    /// The channel the user writes on (agents may adapt their style).
    pub channel: Channel,
    /// The most recent messages, oldest first; the last one is the message to answer.
    pub history: Vec<ContextLine>,
    /// The user has just opened the conversation (a `/start` command): greet them.
    pub opening: bool,
}

impl AgentRequest {
    /// The message to answer.
    pub fn message(&self) -> &str {
        self.history.last().map_or("", |line| line.content.as_str())
    }
}

/// A piece of an agent's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// More reply text, to append to what came before.
    Delta(String),
    /// The agent wants a human expert to take over the conversation.
    Handoff {
        /// Why, for the expert and the log.
        reason: String,
    },
    /// Answers the user can pick with a tap; channels that can show buttons do (inline keyboards,
    /// reply buttons), and a tap comes back as the choice's title.
    Choices(Vec<Choice>),
    /// What the reply used. An agent that sends none has its usage estimated by the pipeline.
    Usage(Usage),
    /// One raw event of the provider's stream, sent only by agents configured to keep them
    /// (`keep_raw_events`); the pipeline bounds how many are stored.
    Raw(String),
}

/// The tokens one reply used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The model, as the provider named it.
    pub model: String,
    /// Tokens of the prompt.
    pub tokens_in: u64,
    /// Tokens of the reply.
    pub tokens_out: u64,
    /// Not reported by the provider: estimated from the text ([`estimate_tokens`]).
    pub estimated: bool,
}

impl Usage {
    /// What the tokens cost in millionths of the currency, at `(input, output)` prices per 1,000
    /// tokens (rounded to the nearest millionth, so that sums are exact).
    pub fn cost_micros(&self, (input, output): (f64, f64)) -> i64 {
        // A price per 1,000 tokens is a thousand millionths per token per unit of price.
        let micros = (self.tokens_in as f64 * input + self.tokens_out as f64 * output) * 1_000.0;
        if micros.is_finite() && micros >= 0.0 {
            micros.round().min(i64::MAX as f64) as i64
        } else {
            0
        }
    }
}

/// A rough token count of a text for when a provider reports none: a token is about four
/// characters of English text (OpenAI's rule of thumb), and every started group counts.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Why an agent could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentError {
    /// The model API answered with an error status.
    #[error("the model API answered {status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's error message.
        message: String,
    },
    /// The model API could not be reached or the connection broke.
    #[error("the model API could not be reached: {0}")]
    Transport(String),
    /// The model API answered something that is not a chat completion stream.
    #[error("unexpected answer from the model API: {0}")]
    Protocol(String),
}

/// The reply stream of an agent.
pub type AgentStream = BoxStream<'static, Result<AgentEvent, AgentError>>;

/// Something that answers conversations.
pub trait Agent: Send + Sync + 'static {
    /// Starts answering. The stream ends when the reply is complete.
    fn respond(&self, request: AgentRequest) -> AgentStream;

    /// Whether the agent reads the conversation's history. Agents that only look at the message
    /// they answer say no, and are spared the query.
    fn needs_history(&self) -> bool {
        true
    }
}

/// An agent with the settings the pipeline applies around it.
#[derive(Clone)]
pub struct RegisteredAgent {
    /// The agent.
    pub agent: Arc<dyn Agent>,
    /// How long a conversation stays locked to it after its last answer.
    pub lock_ttl: Duration,
    /// What its usage is recorded under when it reports none: its model, or its kind.
    pub model: Arc<str>,
    /// Its prices per 1,000 tokens, input and output.
    pub prices: (f64, f64),
    /// Visitors may choose it (`selectable`).
    pub selectable: bool,
    /// What its calls showed so far; the pipeline records every call.
    pub availability: Arc<Availability>,
}

/// The configured agents, by name.
#[derive(Clone, Default)]
pub struct AgentRegistry {
    agents: HashMap<String, RegisteredAgent>,
}

impl AgentRegistry {
    /// Builds every agent of the configuration. `http` is shared by agents that call APIs.
    pub fn from_config(config: &Config, http: &reqwest::Client) -> Self {
        let mut registry = AgentRegistry::default();
        for (name, agent_config) in &config.agents {
            let agent: Arc<dyn Agent> = match agent_config {
                AgentConfig::Scripted(c) => Arc::new(ScriptedAgent::new(c)),
                AgentConfig::Echo(c) => Arc::new(EchoAgent::new(c)),
                AgentConfig::Openai(c) => Arc::new(OpenAiAgent::new(
                    c,
                    http.clone(),
                    std::env::var("OPENAI_API_KEY").ok(),
                )),
            };
            let lock_ttl = agent_config.lock_ttl().unwrap_or(config.routing.lock_ttl);
            let model = match agent_config {
                AgentConfig::Scripted(_) => "scripted",
                AgentConfig::Echo(_) => "echo",
                AgentConfig::Openai(c) => c.model.as_str(),
            };
            registry.agents.insert(
                name.clone(),
                RegisteredAgent {
                    agent,
                    lock_ttl,
                    model: model.into(),
                    prices: agent_config.prices(),
                    selectable: agent_config.listing().selectable,
                    availability: Arc::default(),
                },
            );
        }
        registry
    }

    /// Adds or replaces an agent (free of charge, its usage recorded under its name, not
    /// selectable).
    pub fn insert(&mut self, name: String, agent: Arc<dyn Agent>, lock_ttl: Duration) {
        let model = Arc::from(name.as_str());
        self.agents.insert(
            name,
            RegisteredAgent {
                agent,
                lock_ttl,
                model,
                prices: (0.0, 0.0),
                selectable: false,
                availability: Arc::default(),
            },
        );
    }

    /// The agent with this name.
    pub fn get(&self, name: &str) -> Option<&RegisteredAgent> {
        self.agents.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_by_prices_per_thousand_tokens_in_millionths() {
        let usage = |tokens_in, tokens_out| Usage {
            model: "m".into(),
            tokens_in,
            tokens_out,
            estimated: false,
        };
        // 1,200 tokens in at 0.5 and 300 out at 1.5 per 1,000: 0.6 + 0.45.
        assert_eq!(usage(1200, 300).cost_micros((0.5, 1.5)), 1_050_000);
        assert_eq!(
            usage(1, 0).cost_micros((0.0001, 0.0)),
            0,
            "rounded to millionths"
        );
        assert_eq!(usage(1, 1).cost_micros((0.0, 0.0)), 0);
        assert_eq!(
            usage(1, 1).cost_micros((f64::NAN, 1.0)),
            0,
            "no price, no cost"
        );
    }
}
