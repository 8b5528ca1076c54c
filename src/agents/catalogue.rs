//! The agents visitors may see and choose: the catalogue (`GET /v1/agents`), the choice of an
//! agent for one message or conversation, and the recommendation of one for a task.
//!
//! Only agents marked `selectable` in the configuration are in it. The others stay private to
//! the operator's routing: asking for one is refused exactly like asking for an agent that does
//! not exist, so the catalogue is also the only answer to "which agents are there".

use std::{cmp::Reverse, sync::Arc, time::Duration};

use serde::Serialize;

use super::{AgentRegistry, availability::AgentHealth, availability::Availability};
use crate::config::{AgentConfig, AgentListing, Config, is_tag};

/// What an agent can do beyond answering with text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Capabilities {
    /// The reply arrives piece by piece as it is written.
    pub streaming: bool,
    /// It may offer answers to tap (buttons).
    pub choices: bool,
    /// It may call tools.
    pub tools: bool,
}

/// Prices per 1,000 tokens.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Prices {
    /// Per 1,000 tokens of the conversation the agent reads.
    pub input: f64,
    /// Per 1,000 tokens it writes.
    pub output: f64,
    /// The currency (`quotas.currency`).
    pub currency: String,
}

/// One agent of the catalogue, as visitors see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CatalogueAgent {
    /// What to send as `agent` to choose it.
    pub id: String,
    /// Its name for people.
    pub name: String,
    /// What it is good at.
    pub description: String,
    /// What it is (`scripted`, `echo`, `openai`).
    pub kind: &'static str,
    /// The model behind it (built-in agents: their kind).
    pub model: String,
    /// What it can do besides text.
    pub capabilities: Capabilities,
    /// What it is for and best at (`general`, `code`, `speed`, `cost`…).
    pub tags: Vec<String>,
    /// What it costs.
    pub price_per_1k: Prices,
    /// How many tokens of conversation it reads at most, when known.
    pub context_tokens: Option<u32>,
    /// Whether its calls work right now.
    pub availability: AgentHealth,
}

/// A recommendation: the agent and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Recommendation {
    /// The agent recommended.
    pub agent: CatalogueAgent,
    /// Why this one, in a sentence.
    pub reason: String,
}

/// What a recommendation weighs most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A quick answer.
    Speed,
    /// The best answer.
    Quality,
    /// The cheapest answer.
    Cost,
}

impl Priority {
    /// Every priority, by name.
    pub const ALL: [(&'static str, Priority); 3] = [
        ("speed", Priority::Speed),
        ("quality", Priority::Quality),
        ("cost", Priority::Cost),
    ];

    /// The priority of this name.
    pub fn parse(name: &str) -> Option<Priority> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }

    fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("", |(n, _)| n)
    }
}

/// The task every catalogue knows: with no agent tagged for it, every agent is a candidate.
pub const GENERAL_TASK: &str = "general";

/// Why no recommendation was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecommendError {
    /// The task is not one the catalogue's agents are tagged for.
    #[error("task must be one of: {}", .known.join(", "))]
    InvalidTask {
        /// The tasks there are.
        known: Vec<String>,
    },
    /// The priority is not `speed`, `quality` or `cost`.
    #[error("priority must be one of: speed, quality, cost")]
    InvalidPriority,
    /// No agent is selectable.
    #[error("no agent is selectable")]
    NoSelectableAgent,
}

/// A selectable agent a visitor chose, by its name in the configuration. Only the catalogue makes
/// one, so holding one means the choice was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    name: String,
    lock_ttl: Duration,
}

impl Chosen {
    /// The agent's name in the configuration.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long a conversation stays with the agent after its last answer.
    pub fn lock_ttl(&self) -> Duration {
        self.lock_ttl
    }
}

/// The longest agent name looked up: longer ones cannot be configured agents' names worth a
/// lookup, and are refused like unknown ones.
pub const MAX_AGENT_ID_LEN: usize = 64;

struct Entry {
    id: String,
    listing: AgentListing,
    kind: &'static str,
    model: String,
    capabilities: Capabilities,
    prices: (f64, f64),
    lock_ttl: Duration,
    availability: Arc<Availability>,
}

/// The selectable agents, by name.
pub struct Catalogue {
    entries: Vec<Entry>,
    currency: String,
}

impl Catalogue {
    /// The catalogue of a configuration's selectable agents; their availability is the one the
    /// registry's agents record.
    pub fn new(config: &Config, registry: &AgentRegistry) -> Catalogue {
        let entries = config
            .agents
            .iter()
            .filter(|(_, agent)| agent.listing().selectable)
            .filter_map(|(id, agent)| {
                let registered = registry.get(id)?;
                Some(Entry {
                    id: id.clone(),
                    listing: agent.listing().clone(),
                    kind: kind(agent),
                    model: registered.model.to_string(),
                    capabilities: capabilities(agent),
                    prices: registered.prices,
                    lock_ttl: registered.lock_ttl,
                    availability: registered.availability.clone(),
                })
            })
            .collect();
        Catalogue {
            entries,
            currency: config.quotas.currency.clone(),
        }
    }

    /// Every selectable agent, by id.
    pub fn agents(&self) -> Vec<CatalogueAgent> {
        self.entries.iter().map(|e| self.view(e)).collect()
    }

    /// The agent `id`, if visitors may choose it. An agent that exists but is not selectable
    /// answers `None` like one that does not exist.
    pub fn choose(&self, id: &str) -> Option<Chosen> {
        if id.len() > MAX_AGENT_ID_LEN {
            return None;
        }
        self.entries.iter().find(|e| e.id == id).map(|e| Chosen {
            name: e.id.clone(),
            lock_ttl: e.lock_ttl,
        })
    }

    /// The agent for `task` when `priority` matters most: among the agents tagged for the task
    /// (every agent, for `general` when none is tagged for it), healthy ones first, then those
    /// tagged with the priority, then the best by it (cost: the cheapest; quality: the largest
    /// context; speed: a streaming one), then by id.
    pub fn recommend(&self, task: &str, priority: &str) -> Result<Recommendation, RecommendError> {
        let priority = Priority::parse(priority).ok_or(RecommendError::InvalidPriority)?;
        if !is_tag(task) || Priority::parse(task).is_some() {
            return Err(RecommendError::InvalidTask {
                known: self.tasks(),
            });
        }
        if self.entries.is_empty() {
            return Err(RecommendError::NoSelectableAgent);
        }
        let tagged: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.listing.tags.iter().any(|t| t == task))
            .collect();
        let candidates = match (tagged.is_empty(), task == GENERAL_TASK) {
            (false, _) => tagged,
            (true, true) => self.entries.iter().collect(),
            (true, false) => {
                return Err(RecommendError::InvalidTask {
                    known: self.tasks(),
                });
            }
        };
        let healths: Vec<AgentHealth> =
            candidates.iter().map(|e| e.availability.health()).collect();
        let best = (0..candidates.len())
            .min_by_key(|&i| {
                let e = candidates[i];
                (
                    Reverse(healths[i].is_healthy()),
                    Reverse(e.has_tag(priority.as_str())),
                    rank(e, priority),
                    e.id.clone(),
                )
            })
            .unwrap_or(0);
        let chosen = candidates[best];
        let reason = self.reason(
            chosen,
            &healths[best],
            task,
            priority,
            &candidates,
            &healths,
        );
        Ok(Recommendation {
            agent: self.view(chosen),
            reason,
        })
    }

    /// The tasks recommendations take: `general` and every tag of a selectable agent that is not
    /// a priority.
    fn tasks(&self) -> Vec<String> {
        let mut tasks: Vec<String> = self
            .entries
            .iter()
            .flat_map(|e| e.listing.tags.iter())
            .filter(|t| Priority::parse(t).is_none())
            .cloned()
            .chain([GENERAL_TASK.to_owned()])
            .collect();
        tasks.sort();
        tasks.dedup();
        tasks
    }

    fn reason(
        &self,
        chosen: &Entry,
        health: &AgentHealth,
        task: &str,
        priority: Priority,
        candidates: &[&Entry],
        healths: &[AgentHealth],
    ) -> String {
        let mut reason = if chosen.has_tag(task) {
            format!("{} is tagged for {task}", chosen.id)
        } else {
            format!("no agent is tagged for {task}, so every selectable agent was considered")
        };
        let others = candidates.len() - 1;
        if others > 0 {
            reason.push_str(&format!(
                " ({others} other{} considered)",
                if others == 1 { " was" } else { "s were" }
            ));
        }
        let priority_name = priority.as_str();
        if chosen.has_tag(priority_name) {
            reason.push_str(&format!(" and for {priority_name}"));
        }
        match priority {
            Priority::Cost if others > 0 => reason.push_str(&format!(
                "; it is the cheapest of them at {} in and {} out per 1,000 tokens ({})",
                chosen.prices.0, chosen.prices.1, self.currency
            )),
            Priority::Quality if others > 0 => {
                if let Some(tokens) = chosen.listing.context_tokens {
                    reason.push_str(&format!(
                        "; it reads the most context of them ({tokens} tokens)"
                    ));
                }
            }
            Priority::Speed if chosen.capabilities.streaming => {
                reason.push_str("; its replies stream as they are written");
            }
            _ => {}
        }
        if health.is_healthy() {
            if healths.iter().any(|h| !h.is_healthy()) {
                reason.push_str("; it is answering normally, unlike some of the others");
            } else {
                reason.push_str("; it is answering normally");
            }
        } else {
            reason
                .push_str("; every candidate is failing at the moment, so it is the best of them");
        }
        reason.push('.');
        reason
    }

    fn view(&self, e: &Entry) -> CatalogueAgent {
        CatalogueAgent {
            id: e.id.clone(),
            name: e.listing.name.clone(),
            description: e.listing.description.clone(),
            kind: e.kind,
            model: e.model.clone(),
            capabilities: e.capabilities,
            tags: e.listing.tags.clone(),
            price_per_1k: Prices {
                input: e.prices.0,
                output: e.prices.1,
                currency: self.currency.clone(),
            },
            context_tokens: e.listing.context_tokens,
            availability: e.availability.health(),
        }
    }
}

impl Entry {
    fn has_tag(&self, tag: &str) -> bool {
        self.listing.tags.iter().any(|t| t == tag)
    }
}

/// How an agent ranks by a priority (lower is better), once tags and health are equal.
fn rank(e: &Entry, priority: Priority) -> u64 {
    match priority {
        // Prices are bounded (0 to 1,000 per 1,000 tokens): millionths fit.
        Priority::Cost => ((e.prices.0 + e.prices.1) * 1e6) as u64,
        Priority::Quality => u64::MAX - u64::from(e.listing.context_tokens.unwrap_or(0)),
        Priority::Speed => u64::from(!e.capabilities.streaming),
    }
}

fn kind(agent: &AgentConfig) -> &'static str {
    match agent {
        AgentConfig::Scripted(_) => "scripted",
        AgentConfig::Echo(_) => "echo",
        AgentConfig::Openai(_) => "openai",
    }
}

fn capabilities(agent: &AgentConfig) -> Capabilities {
    match agent {
        // Word by word, with buttons on its greeting.
        AgentConfig::Scripted(_) => Capabilities {
            streaming: true,
            choices: true,
            tools: false,
        },
        // One piece, text only.
        AgentConfig::Echo(_) => Capabilities {
            streaming: false,
            choices: false,
            tools: false,
        },
        // Streamed chat completions; no tools are declared to the model.
        AgentConfig::Openai(_) => Capabilities {
            streaming: true,
            choices: false,
            tools: false,
        },
    }
}
