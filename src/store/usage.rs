//! Usage of AI replies, and what quotas need from the database.
//!
//! Every stored AI reply has one `usage` row, written by the statement that stores the reply (see
//! [`super::messages::append_reply`], or [`insert`] in a turn's transaction): the totals staff ask
//! for are sums over this table, and they cannot disagree with the replies. Quotas keep their
//! counters in memory; [`quota_accounts`] is how they are rebuilt from the database at start and
//! when an admin changes a contact's plan.

use switchboard_channel::Channel;

use super::{Db, StoreError, Tx, query};
use crate::{
    ids::{ContactId, ConversationId, MessageId},
    time::Timestamp,
};

/// A reply's usage, as stored.
#[derive(Debug, Clone)]
pub struct NewUsage {
    /// The model.
    pub model: String,
    /// Tokens of the prompt.
    pub tokens_in: i64,
    /// Tokens of the reply.
    pub tokens_out: i64,
    /// Estimated rather than reported by the provider.
    pub estimated: bool,
    /// Millionths of the configured currency.
    pub cost_micros: i64,
    /// From the start of the agent call to the stored reply.
    pub response_time_ms: i64,
}

impl NewUsage {
    /// Tokens in and out: what token quotas count.
    pub fn tokens(&self) -> u64 {
        u64::try_from(self.tokens_in.saturating_add(self.tokens_out)).unwrap_or(0)
    }
}

/// Stores the usage of a reply stored in the same transaction.
pub async fn insert(
    tx: &mut Tx,
    reply: &MessageId,
    conversation_id: &ConversationId,
    contact_id: &ContactId,
    agent: &str,
    usage: &NewUsage,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        query(
            "INSERT INTO usage (message_id, conversation_id, contact_id, agent, model, tokens_in, \
             tokens_out, estimated, cost_micros, response_time_ms, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(reply)
        .bind(conversation_id)
        .bind(contact_id)
        .bind(agent)
        .bind(&usage.model)
        .bind(usage.tokens_in)
        .bind(usage.tokens_out)
        .bind(i64::from(usage.estimated))
        .bind(usage.cost_micros)
        .bind(usage.response_time_ms)
        .bind(now),
    )
    .await?;
    Ok(())
}

/// What the totals are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// UTC days.
    Day,
    /// Agents.
    Agent,
    /// Contacts.
    Contact,
}

/// The most groups one answer holds (a year of days; the contacts that cost most).
pub const MAX_GROUPS: i64 = 1000;

/// The totals of one group.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Total {
    /// The day (days since 1970-01-01), the agent's name or the contact's id.
    pub key: String,
    /// Replies.
    pub replies: i64,
    /// Replies whose tokens were estimated.
    pub estimated_replies: i64,
    /// Tokens of the prompts.
    pub tokens_in: i64,
    /// Tokens of the replies.
    pub tokens_out: i64,
    /// Millionths of the currency.
    pub cost_micros: i64,
    /// The sum of the response times, in milliseconds.
    pub response_time_ms: i64,
}

/// Totals of the replies stored in `[from, to)`, by group: days in order, agents by name,
/// contacts by cost (the [`MAX_GROUPS`] that cost most); without a group, one total (key `all`,
/// none when there were no replies).
pub async fn totals(
    db: &mut impl Db,
    from: Timestamp,
    to: Timestamp,
    group_by: Option<GroupBy>,
) -> Result<Vec<Total>, StoreError> {
    // Sums are cast: PostgreSQL sums BIGINTs into NUMERIC.
    macro_rules! totals {
        ($key:literal, $order:literal) => {
            concat!(
                "SELECT ",
                $key,
                " AS key, COUNT(*) AS replies, CAST(SUM(estimated) AS BIGINT) AS estimated_replies, \
                 CAST(SUM(tokens_in) AS BIGINT) AS tokens_in, \
                 CAST(SUM(tokens_out) AS BIGINT) AS tokens_out, \
                 CAST(SUM(cost_micros) AS BIGINT) AS cost_micros, \
                 CAST(SUM(response_time_ms) AS BIGINT) AS response_time_ms \
                 FROM usage WHERE created_at >= $1 AND created_at < $2 GROUP BY 1 ORDER BY ",
                $order,
                " LIMIT $3"
            )
        };
    }
    let sql = match group_by {
        Some(GroupBy::Day) => totals!(
            "CAST(CAST(created_at / 86400000000 AS BIGINT) AS TEXT)",
            "MIN(created_at)"
        ),
        Some(GroupBy::Agent) => totals!("agent", "1"),
        Some(GroupBy::Contact) => totals!("contact_id", "6 DESC, 2 DESC, 1"),
        None => totals!("'all'", "1"),
    };
    db.fetch_all(query(sql).bind(from).bind(to).bind(MAX_GROUPS))
        .await
}

/// A contact's standing as quotas see it: their plan and credits, and what they used in the
/// current day and month.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QuotaAccount {
    /// The contact.
    pub id: ContactId,
    /// Their channel.
    #[sqlx(try_from = "String")]
    pub channel: Channel,
    /// Their identity on it.
    pub external_id: String,
    /// The plan an admin gave them.
    pub plan: Option<String>,
    /// What is left of their credits (millionths of the currency), if they have any.
    pub credits_left: Option<i64>,
    /// Messages they sent since the start of the day.
    pub messages_day: i64,
    /// … of the month.
    pub messages_month: i64,
    /// Tokens their replies used since the start of the day.
    pub tokens_day: i64,
    /// … of the month.
    pub tokens_month: i64,
}

/// The standing of contacts that have a plan or credits, and — when `everyone` (the default plan
/// limits something) — of every contact that wrote since `month`; or of one contact. `day` and
/// `month` are the starts of the current UTC day and month.
pub async fn quota_accounts(
    db: &mut impl Db,
    day: Timestamp,
    month: Timestamp,
    everyone: bool,
    only: Option<&ContactId>,
) -> Result<Vec<QuotaAccount>, StoreError> {
    db.fetch_all(
        query(
            "SELECT ct.id, ct.channel, ct.external_id, ct.plan, \
             ct.credit_micros - CAST((SELECT COALESCE(SUM(u.cost_micros), 0) FROM usage u \
               WHERE u.contact_id = ct.id AND u.created_at >= ct.credit_set_at) AS BIGINT) \
               AS credits_left, \
             (SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
               WHERE c.contact_id = ct.id AND m.direction = 'inbound' AND m.created_at >= $1) \
               AS messages_day, \
             (SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
               WHERE c.contact_id = ct.id AND m.direction = 'inbound' AND m.created_at >= $2) \
               AS messages_month, \
             CAST((SELECT COALESCE(SUM(u.tokens_in + u.tokens_out), 0) FROM usage u \
               WHERE u.contact_id = ct.id AND u.created_at >= $1) AS BIGINT) AS tokens_day, \
             CAST((SELECT COALESCE(SUM(u.tokens_in + u.tokens_out), 0) FROM usage u \
               WHERE u.contact_id = ct.id AND u.created_at >= $2) AS BIGINT) AS tokens_month \
             FROM contacts ct \
             WHERE ($4 IS NULL OR ct.id = $4) AND ($4 IS NOT NULL OR ct.plan IS NOT NULL \
               OR ct.credit_micros IS NOT NULL OR ($3 = 1 AND EXISTS ( \
               SELECT 1 FROM conversations c WHERE c.contact_id = ct.id AND c.updated_at >= $2)))",
        )
        .bind(day)
        .bind(month)
        .bind(i64::from(everyone))
        .bind(only.map(ContactId::as_str)),
    )
    .await
}

/// A change of a contact's plan or credits; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct PlanChange {
    /// The new plan (`Some(None)`: back to the default plan).
    pub plan: Option<Option<String>>,
    /// The new balance in millionths (`Some(None)`: no credit limit).
    pub credit_micros: Option<Option<i64>>,
}

/// Sets a contact's plan and/or credits. Setting credits starts counting their cost anew. Returns
/// whether the contact exists.
pub async fn set_plan(
    tx: &mut Tx,
    contact_id: &ContactId,
    change: &PlanChange,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let (set_plan, plan) = match &change.plan {
        Some(plan) => (1i64, plan.clone()),
        None => (0, None),
    };
    let (set_credits, credits) = match change.credit_micros {
        Some(credits) => (1i64, credits),
        None => (0, None),
    };
    let updated = tx
        .execute(
            query(
                "UPDATE contacts SET \
                 plan = CASE WHEN $2 = 1 THEN $3 ELSE plan END, \
                 credit_micros = CASE WHEN $4 = 1 THEN $5 ELSE credit_micros END, \
                 credit_set_at = CASE WHEN $4 = 1 THEN $6 ELSE credit_set_at END, \
                 updated_at = $6 WHERE id = $1",
            )
            .bind(contact_id)
            .bind(set_plan)
            .bind(plan)
            .bind(set_credits)
            .bind(credits)
            .bind(now),
        )
        .await?;
    Ok(updated == 1)
}
