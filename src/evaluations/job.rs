//! The `evaluate` queue's handler: runs the evaluators on one reply, stores their verdicts and
//! applies the configured action, all in one transaction with the job's end — a verdict is
//! recorded, and acted on, exactly once.

use tracing::{error, warn};

use super::{Evaluators, judge::JudgeError};
use crate::{
    config::EvaluationAction,
    jobs::queue::{RetryPolicy, Wake},
    live::Hub,
    live::NoticeKind,
    pipeline::{Pipeline, handoff},
    store::{
        Store, StoreError,
        evaluations::{self, Verdict},
        jobs,
        messages::{self, Role},
    },
    time::Clock,
};

/// What the evaluation jobs work with.
pub struct Evaluations {
    /// The database.
    pub store: Store,
    /// The gateway's clock.
    pub clock: Clock,
    /// Announces flagged replies to the staff's dashboards.
    pub hub: Hub,
    /// Announces handoffs.
    pub pipeline: Pipeline,
    /// The evaluators.
    pub evaluators: Evaluators,
    /// What a failure causes.
    pub action: EvaluationAction,
    /// When to ask an unavailable judge again.
    pub policy: RetryPolicy,
    /// Wakes the queue.
    pub wake: Wake,
}

impl Evaluations {
    /// Evaluates the reply a job is about.
    pub async fn evaluate(&self, job: jobs::Job) -> Result<(), StoreError> {
        let mut reader = self.store.reader();
        let Some(reply) = messages::get(&mut reader, &job.subject)
            .await?
            .filter(|m| m.role == Role::Ai)
        else {
            return self.finish(&job).await;
        };
        let mut verdicts = self.evaluators.rules.check(&reply.content);
        if let Some(judge) = &self.evaluators.judge {
            let question = match &reply.reply_to {
                Some(id) => messages::get(&mut reader, id).await?.map(|m| m.content),
                None => None,
            };
            let judged = judge
                .judge(
                    reply.channel,
                    &reply.conversation_id,
                    question.as_deref().unwrap_or_default(),
                    &reply.content,
                )
                .await;
            match judged {
                Ok(verdict) => verdicts.push(verdict),
                Err(JudgeError::Transient(reason)) => {
                    if let Some(wait) = self.policy.next(job.attempts, None) {
                        warn!(%reason, retry_in = ?wait, message = %reply.id,
                            "the evaluation judge is unavailable; retrying");
                        jobs::retry_at(&self.store, &job.id, self.clock.now().plus(wait), &reason)
                            .await?;
                        self.wake.wake();
                        return Ok(());
                    }
                    error!(%reason, message = %reply.id,
                        "the evaluation judge stayed unavailable; the reply is recorded without its verdict");
                }
                Err(JudgeError::Permanent(reason)) => {
                    error!(%reason, message = %reply.id,
                        "the evaluation judge gave no verdict; the reply is recorded without it");
                }
            }
        }
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let mut failed = Vec::new();
        for verdict in &verdicts {
            if evaluations::record(&mut tx, &reply.id, verdict, now).await? && !verdict.passed {
                failed.push(verdict);
            }
        }
        let notice = if !failed.is_empty() && self.action == EvaluationAction::Handoff {
            let reason = format!("a reply failed its evaluation: {}", summary(&failed));
            handoff::to_expert(&mut tx, &reply.conversation_id, &reason, now).await?
        } else {
            None
        };
        jobs::finish(&mut tx, &job.id).await?;
        tx.commit().await?;
        if !failed.is_empty() {
            warn!(message = %reply.id, conversation = %reply.conversation_id,
                failed = %summary(&failed), "an AI reply failed its evaluation");
            self.hub
                .staff_notice(NoticeKind::Flagged, &reply.conversation_id, None);
        }
        if let Some(notice) = notice {
            self.pipeline.announce_handoff(&notice);
        }
        Ok(())
    }

    async fn finish(&self, job: &jobs::Job) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        jobs::finish(&mut tx, &job.id).await?;
        tx.commit().await
    }
}

/// What failed, in a few words for the expert and the log.
fn summary(failed: &[&Verdict]) -> String {
    failed
        .iter()
        .map(|v| super::describe(v.evaluator, &v.detail, v.score))
        .collect::<Vec<_>>()
        .join("; ")
}

#[async_trait::async_trait]
impl crate::jobs::QueueHandler for Evaluations {
    fn queue(&self) -> &'static str {
        jobs::EVALUATE
    }

    fn wake(&self) -> &Wake {
        &self.wake
    }

    async fn handle(&self, job: jobs::Job) -> Result<(), StoreError> {
        self.evaluate(job).await
    }
}
