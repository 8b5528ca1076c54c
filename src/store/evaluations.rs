//! Evaluation results: one row per AI reply and evaluator, so a job that runs twice (a retry, a
//! crash before it finished) records each result once.

use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

use super::{Db, Flag, StoreError, Tx, query};
use crate::time::Timestamp;

/// A stored result, with the reply it judges.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct Evaluation {
    /// Its id.
    pub id: String,
    /// The reply evaluated.
    pub message_id: String,
    /// The reply's conversation.
    pub conversation_id: String,
    /// The reply's text.
    pub content: String,
    /// Which evaluator: `safety`, `length` or `judge`.
    pub evaluator: String,
    /// Whether the reply passed.
    #[sqlx(try_from = "i64")]
    #[schema(value_type = bool)]
    pub passed: Flag,
    /// The judge's lowest score (0 to 1); none for rule checks.
    pub score: Option<f64>,
    /// What was found: the matched words, the length, the judge's scores and reason.
    #[schema(value_type = Object)]
    pub detail: Json<serde_json::Value>,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// One evaluator's verdict on a reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Which evaluator.
    pub evaluator: &'static str,
    /// Whether the reply passed.
    pub passed: bool,
    /// A score from 0 to 1, for evaluators that score.
    pub score: Option<f64>,
    /// What was found.
    pub detail: serde_json::Value,
}

/// Records a verdict unless this evaluator's verdict on the reply is already stored. Returns
/// whether it was recorded now.
pub async fn record(
    tx: &mut Tx,
    message_id: &str,
    verdict: &Verdict,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let inserted = tx
        .execute(
            query(
                "INSERT INTO evaluations (id, message_id, evaluator, passed, score, detail, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (message_id, evaluator) DO NOTHING",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(message_id)
            .bind(verdict.evaluator)
            .bind(i64::from(verdict.passed))
            .bind(verdict.score)
            .bind(verdict.detail.clone())
            .bind(now),
        )
        .await?;
    Ok(inserted == 1)
}

/// The newest failed verdicts (the review list), and how many there are in all. Its own
/// statements, so that both backends read only the index of failures.
pub async fn failed(db: &mut impl Db, limit: i64) -> Result<(Vec<Evaluation>, i64), StoreError> {
    let (total,): (i64,) = db
        .fetch_one(query("SELECT COUNT(*) FROM evaluations WHERE passed = 0"))
        .await?;
    let items = db
        .fetch_all(
            query(
                "SELECT e.id, e.message_id, m.conversation_id, m.content, e.evaluator, e.passed, \
                 e.score, e.detail, e.created_at FROM evaluations e \
                 JOIN messages m ON m.id = e.message_id WHERE e.passed = 0 \
                 ORDER BY e.created_at DESC, e.id DESC LIMIT $1",
            )
            .bind(limit),
        )
        .await?;
    Ok((items, total))
}

/// Which results to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter<'a> {
    /// Only failed (`Some(false)`) or passed (`Some(true)`) ones.
    pub passed: Option<bool>,
    /// Only those of one conversation.
    pub conversation_id: Option<&'a str>,
    /// Only those of one reply.
    pub message_id: Option<&'a str>,
}

macro_rules! filter_clause {
    () => {
        "WHERE ($1 IS NULL OR e.passed = $1) AND ($2 IS NULL OR m.conversation_id = $2) \
         AND ($3 IS NULL OR e.message_id = $3)"
    };
}

/// A page of results, newest first, and how many match in all.
pub async fn page(
    db: &mut impl Db,
    filter: Filter<'_>,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Evaluation>, i64), StoreError> {
    let passed = filter.passed.map(i64::from);
    let (total,): (i64,) = db
        .fetch_one(
            query(concat!(
                "SELECT COUNT(*) FROM evaluations e JOIN messages m ON m.id = e.message_id ",
                filter_clause!()
            ))
            .bind(passed)
            .bind(filter.conversation_id)
            .bind(filter.message_id),
        )
        .await?;
    let items = db
        .fetch_all(
            query(concat!(
                "SELECT e.id, e.message_id, m.conversation_id, m.content, e.evaluator, e.passed, \
                 e.score, e.detail, e.created_at FROM evaluations e \
                 JOIN messages m ON m.id = e.message_id ",
                filter_clause!(),
                " ORDER BY e.created_at DESC, e.id DESC LIMIT $4 OFFSET $5"
            ))
            .bind(passed)
            .bind(filter.conversation_id)
            .bind(filter.message_id)
            .bind(limit)
            .bind(offset),
        )
        .await?;
    Ok((items, total))
}
