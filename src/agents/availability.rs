//! Whether an agent works right now, as its own calls show: the catalogue tells visitors (and
//! the recommendation prefers) agents whose last call succeeded.
//!
//! Nothing probes the agents: probing a paid API would cost money and prove less than the real
//! calls do. Every agent call of the pipeline records its outcome here; a failure keeps a short
//! description of what went wrong (never the provider's own message, which may quote the request
//! or a key) and when the agent started failing. The state is this process's view: instances
//! sharing a database each see the calls they made.

use std::sync::Mutex;

use serde::Serialize;

use super::AgentError;
use crate::time::Timestamp;

/// The longest failure description kept, in characters.
const MAX_ERROR_CHARS: usize = 200;

/// What the calls of one agent showed so far.
#[derive(Debug, Default)]
pub struct Availability {
    state: Mutex<AgentHealth>,
}

/// An agent's health, as the catalogue shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum AgentHealth {
    /// Its last call succeeded (or it has not been called yet).
    #[default]
    Healthy,
    /// Its calls fail.
    Failing {
        /// What went wrong on the last call, in a few words.
        last_error: String,
        /// When its calls started failing (the first failure after a success).
        #[schema(value_type = String, format = DateTime)]
        since: Timestamp,
    },
}

impl AgentHealth {
    /// Whether the agent's last call succeeded.
    pub fn is_healthy(&self) -> bool {
        matches!(self, AgentHealth::Healthy)
    }
}

impl Availability {
    /// The agent answered.
    pub fn succeeded(&self) {
        *self.lock() = AgentHealth::Healthy;
    }

    /// The agent failed at `now`, for the reason `error` (see [`failure`]). A failure after
    /// failures keeps the time the agent started failing.
    pub fn failed(&self, error: &str, now: Timestamp) {
        let last_error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        let mut state = self.lock();
        let since = match &*state {
            AgentHealth::Failing { since, .. } => *since,
            AgentHealth::Healthy => now,
        };
        *state = AgentHealth::Failing { last_error, since };
    }

    /// The agent's health now.
    pub fn health(&self) -> AgentHealth {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AgentHealth> {
        // The state is replaced whole: a panic elsewhere cannot leave it half-written.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A short description of an agent error that is safe to show anyone: its kind and the status,
/// without the provider's message.
pub fn failure(error: &AgentError) -> String {
    match error {
        AgentError::Api { status, .. } => format!("the model API answered {status}"),
        AgentError::Transport(_) => "the model API could not be reached".into(),
        AgentError::Protocol(_) => "the model API answered something unexpected".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_keeps_its_start_until_a_success() {
        let availability = Availability::default();
        assert_eq!(availability.health(), AgentHealth::Healthy);
        availability.failed("the model API answered 500", Timestamp(10));
        availability.failed("the model API could not be reached", Timestamp(20));
        assert_eq!(
            availability.health(),
            AgentHealth::Failing {
                last_error: "the model API could not be reached".into(),
                since: Timestamp(10),
            }
        );
        availability.succeeded();
        assert!(availability.health().is_healthy());
        availability.failed("x", Timestamp(30));
        assert!(matches!(
            availability.health(),
            AgentHealth::Failing {
                since: Timestamp(30),
                ..
            }
        ));
    }

    #[test]
    fn descriptions_leave_the_providers_message_out() {
        let error = AgentError::Api {
            status: 401,
            message: "Incorrect API key provided: sk-secret".into(),
        };
        assert_eq!(failure(&error), "the model API answered 401");
    }
}
