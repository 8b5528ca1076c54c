//! Routing: which agent answers a conversation.
//!
//! A conversation locked to an agent (the session lock, valid until `locked_at + TTL`) stays with
//! that agent. Otherwise the configured rules are tried in order on the message (keywords, then
//! regular expressions, per rule) and the first match wins; no match means the default agent. The
//! chosen agent is then locked in. Answers renew the lock once more than half of it has passed, so
//! a conversation keeps its agent for as long as it stays active, and renewing costs an index
//! update only now and then.

use regex::Regex;

use crate::{
    config::RoutingConfig,
    text::{Keywords, Normalised},
};

struct Rule {
    agent: String,
    keywords: Keywords,
    pattern: Option<Regex>,
}

/// The routing rules of the configuration.
pub struct Router {
    rules: Vec<Rule>,
    default_agent: String,
}

/// Why an agent was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutedBy {
    /// The conversation's lock is still valid.
    Locked,
    /// A routing rule matched.
    Rule(usize),
    /// Nothing matched.
    Default,
}

impl Router {
    /// The router for a (validated) configuration.
    pub fn new(config: &RoutingConfig) -> Self {
        let rules = config
            .rules
            .iter()
            .map(|rule| Rule {
                agent: rule.agent.clone(),
                keywords: Keywords::new(&rule.keywords),
                // Validated when the configuration was loaded.
                pattern: rule.pattern.as_deref().and_then(|p| Regex::new(p).ok()),
            })
            .collect();
        Self {
            rules,
            default_agent: config.default_agent.clone(),
        }
    }

    /// The agent for a message of a conversation whose valid lock (if any) is `locked`.
    pub fn route<'a>(&'a self, locked: Option<&'a str>, message: &str) -> (&'a str, RoutedBy) {
        if let Some(agent) = locked {
            return (agent, RoutedBy::Locked);
        }
        let normalised = Normalised::new(message);
        for (i, rule) in self.rules.iter().enumerate() {
            let matched = rule.keywords.matches(&normalised)
                || rule.pattern.as_ref().is_some_and(|p| p.is_match(message));
            if matched {
                return (&rule.agent, RoutedBy::Rule(i));
            }
        }
        (&self.default_agent, RoutedBy::Default)
    }
}

/// The scheduled clearing of expired agent locks (`routing.lock_sweep_schedule`), so that
/// conversations show who answers them now. Routing already ignores an expired lock; this keeps
/// the stored state truthful.
pub struct ExpireLocks {
    /// The database.
    pub store: crate::store::Store,
    /// The gateway's clock.
    pub clock: crate::time::Clock,
    /// When.
    pub schedule: String,
}

#[async_trait::async_trait]
impl crate::jobs::ScheduledTask for ExpireLocks {
    fn name(&self) -> &'static str {
        "expire-locks"
    }

    fn once_per_deployment(&self) -> bool {
        true
    }

    fn schedule(&self) -> &str {
        &self.schedule
    }

    async fn tick(&self) -> Result<(), apalis::prelude::BoxDynError> {
        let mut tx = self.store.begin().await?;
        let cleared =
            crate::store::conversations::clear_expired_locks(&mut tx, self.clock.now()).await?;
        tx.commit().await?;
        if cleared > 0 {
            tracing::info!(cleared, "cleared expired agent locks");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoutingRule;

    fn router() -> Router {
        Router::new(&RoutingConfig {
            default_agent: "assistant".into(),
            rules: vec![
                RoutingRule {
                    agent: "billing".into(),
                    keywords: vec!["invoice".into(), "refund".into()],
                    pattern: None,
                },
                RoutingRule {
                    agent: "orders".into(),
                    keywords: vec![],
                    pattern: Some(r"(?i)order\s+#?\d+".into()),
                },
            ],
            ..RoutingConfig::default()
        })
    }

    #[test]
    fn rules_then_default() {
        let r = router();
        assert_eq!(
            r.route(None, "I want a REFUND"),
            ("billing", RoutedBy::Rule(0))
        );
        assert_eq!(
            r.route(None, "where is Order #123?"),
            ("orders", RoutedBy::Rule(1))
        );
        assert_eq!(r.route(None, "hello"), ("assistant", RoutedBy::Default));
    }

    #[test]
    fn a_valid_lock_wins_over_rules() {
        let r = router();
        assert_eq!(
            r.route(Some("orders"), "refund please"),
            ("orders", RoutedBy::Locked)
        );
    }
}
