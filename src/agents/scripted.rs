//! The scripted agent: the offline default. It answers from rules in the configuration (greeting,
//! keyword answers, fallback) and hands the conversation to a human when the user asks for one,
//! streaming its answer word by word like a model would.

use std::time::Duration;

use futures::StreamExt;

use switchboard_channel::Choice;

use super::{Agent, AgentEvent, AgentRequest, AgentStream};
use crate::{
    config::ScriptedConfig,
    text::{Keywords, Normalised},
};

/// Answers from configured rules.
pub struct ScriptedAgent {
    word_delay: Duration,
    greeting_words: Keywords,
    greeting: String,
    greeting_choices: Vec<Choice>,
    answers: Vec<(Keywords, String)>,
    handoff_phrases: Keywords,
    handoff_reply: String,
    fallback: String,
}

impl ScriptedAgent {
    /// A scripted agent following `config`.
    pub fn new(config: &ScriptedConfig) -> Self {
        Self {
            word_delay: config.word_delay,
            greeting_words: Keywords::new(&config.greeting_words),
            greeting: config.greeting.clone(),
            greeting_choices: config
                .greeting_choices
                .iter()
                .map(|title| Choice {
                    id: title.clone(),
                    title: title.clone(),
                })
                .collect(),
            answers: config
                .answers
                .iter()
                .map(|a| (Keywords::new(&a.keywords), a.reply.clone()))
                .collect(),
            handoff_phrases: Keywords::new(&config.handoff_phrases),
            handoff_reply: config.handoff_reply.clone(),
            fallback: config.fallback.clone(),
        }
    }

    /// Picks the answer: a request for a human first, then keyword answers, then a greeting,
    /// then the fallback.
    fn decide(&self, message: &str) -> (&str, bool) {
        let text = Normalised::new(message);
        if self.handoff_phrases.matches(&text) {
            return (&self.handoff_reply, true);
        }
        if let Some((_, reply)) = self.answers.iter().find(|(keys, _)| keys.matches(&text)) {
            return (reply, false);
        }
        if self.greeting_words.matches(&text) {
            return (&self.greeting, false);
        }
        (&self.fallback, false)
    }
}

impl Agent for ScriptedAgent {
    fn needs_history(&self) -> bool {
        false
    }

    fn respond(&self, request: AgentRequest) -> AgentStream {
        let (reply, handoff) = if request.opening {
            (self.greeting.as_str(), false)
        } else {
            self.decide(request.message())
        };
        let choices = if reply == self.greeting && !self.greeting_choices.is_empty() {
            Some(self.greeting_choices.clone())
        } else {
            None
        };
        let words: Vec<String> = reply.split_inclusive(' ').map(str::to_owned).collect();
        let delay = self.word_delay;
        async_stream::stream! {
            for (i, word) in words.into_iter().enumerate() {
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                yield Ok(AgentEvent::Delta(word));
            }
            if let Some(choices) = choices {
                yield Ok(AgentEvent::Choices(choices));
            }
            if handoff {
                yield Ok(AgentEvent::Handoff { reason: "the user asked for a human".into() });
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::messages::{ContextLine, Role};
    use switchboard_channel::Channel;

    async fn ask(agent: &ScriptedAgent, message: &str) -> (String, bool) {
        let request = AgentRequest {
            conversation_id: "c".into(),
            channel: Channel::WEB,
            history: vec![ContextLine {
                role: Role::User,
                content: message.into(),
            }],
            opening: false,
        };
        let (text, handoff, _) = answer(agent, request).await;
        (text, handoff)
    }

    /// An agent's whole answer: text, whether it hands over, the choices it offers.
    async fn answer(agent: &ScriptedAgent, request: AgentRequest) -> (String, bool, Vec<String>) {
        let events: Vec<_> = agent.respond(request).collect().await;
        let mut text = String::new();
        let mut handoff = false;
        let mut choices = Vec::new();
        for event in events {
            match event.unwrap() {
                AgentEvent::Delta(d) => text.push_str(&d),
                AgentEvent::Handoff { .. } => handoff = true,
                AgentEvent::Choices(offered) => {
                    choices = offered.into_iter().map(|c| c.title).collect()
                }
                // Its usage is estimated by the pipeline.
                AgentEvent::Usage(_) | AgentEvent::Raw(_) => {}
            }
        }
        (text, handoff, choices)
    }

    #[tokio::test]
    async fn the_greeting_offers_its_topics_and_opens_conversations() {
        let agent = agent();
        let opening = AgentRequest {
            conversation_id: "c".into(),
            channel: Channel::named("chat"),
            history: vec![ContextLine {
                role: Role::User,
                content: "/start".into(),
            }],
            opening: true,
        };
        let (text, handoff, choices) = answer(&agent, opening).await;
        assert_eq!(text, ScriptedConfig::default().greeting);
        assert!(!handoff);
        assert_eq!(choices, ["Opening hours", "Pricing", "Talk to a human"]);
        // Each choice, tapped, is understood.
        for (choice, expected_handoff) in [
            ("Opening hours", false),
            ("Pricing", false),
            ("Talk to a human", true),
        ] {
            let (text, handoff) = ask(&agent, choice).await;
            assert_ne!(text, ScriptedConfig::default().fallback, "{choice}");
            assert_eq!(handoff, expected_handoff, "{choice}");
        }
    }

    fn agent() -> ScriptedAgent {
        ScriptedAgent::new(&ScriptedConfig {
            word_delay: Duration::ZERO,
            ..ScriptedConfig::default()
        })
    }

    #[tokio::test]
    async fn answers_by_rule_priority() {
        let agent = agent();
        let defaults = ScriptedConfig::default();
        assert_eq!(
            ask(&agent, "Hello!").await,
            (defaults.greeting.clone(), false)
        );
        assert_eq!(
            ask(&agent, "hi, what are your opening hours?").await.0,
            defaults.answers[0].reply
        );
        assert_eq!(ask(&agent, "quantum?").await.0, defaults.fallback);
        assert_eq!(
            ask(&agent, "Can I TALK TO A HUMAN please").await,
            (defaults.handoff_reply.clone(), true)
        );
    }

    #[tokio::test]
    async fn replies_stream_word_by_word() {
        let agent = agent();
        let request = AgentRequest {
            conversation_id: "c".into(),
            channel: Channel::WEB,
            history: vec![ContextLine {
                role: Role::User,
                content: "hello".into(),
            }],
            opening: false,
        };
        let deltas = agent.respond(request).count().await;
        assert!(deltas > 5, "expected many deltas, got {deltas}");
    }
}
