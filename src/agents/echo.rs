//! The echo agent: repeats the user's message. For tests and benchmarks, where the agent must be
//! instant and predictable.

use futures::StreamExt;

use super::{Agent, AgentEvent, AgentRequest, AgentStream};
use crate::config::EchoConfig;

/// Answers with the user's own message, after a configured prefix, in one piece.
pub struct EchoAgent {
    prefix: String,
}

impl EchoAgent {
    /// An echo agent.
    pub fn new(config: &EchoConfig) -> Self {
        Self {
            prefix: config.prefix.clone(),
        }
    }
}

impl Agent for EchoAgent {
    fn needs_history(&self) -> bool {
        false
    }

    fn respond(&self, request: AgentRequest) -> AgentStream {
        let reply = format!("{}{}", self.prefix, request.message());
        futures::stream::once(async move { Ok(AgentEvent::Delta(reply)) }).boxed()
    }
}
