//! SQL that states a rule of the Rust code, written once and built from the Rust definitions it
//! depends on — so that the two dialects, and the SQL and the Rust, cannot drift apart:
//!
//! - which messages need a delivery job (every channel but the web chat, [`needs_delivery`]),
//!   and the names of the queues their jobs go to;
//! - when a session lock is renewed (once more than half of it has passed, [`renew_lock`]);
//! - the order of delivery statuses ([`DeliveryStatus::rank`], [`status_rank`]).
//!
//! A statement that uses them is a [`super::statement::Sql`]: built on first use, then kept for
//! the process.
//!
//! [`needs_delivery`]: super::messages::needs_delivery

use switchboard_channel::{Channel, DeliveryStatus};

use super::jobs;

/// How much of a session lock must have passed before an answer renews it: a half. Renewing
/// less often leaves the (indexed) lock columns alone on most answers; more than half keeps an
/// active conversation with its agent.
pub const RENEW_LOCK_AFTER_HALF: i64 = 500_000;

/// The assignments that lock a conversation to `agent` at `now` (placeholders): the lock is
/// renewed when another agent held it, or once more than half of it has passed.
pub fn renew_lock(agent: &str, now: &str) -> String {
    format!(
        "active_agent = {agent}, locked_at = CASE WHEN active_agent = {agent} \
         AND locked_at + lock_ttl_secs * {RENEW_LOCK_AFTER_HALF} > {now} \
         THEN locked_at ELSE {now} END"
    )
}

/// The rank of a message's stored `status`, as [`DeliveryStatus::rank`] defines it.
pub fn status_rank() -> String {
    status_rank_of("status")
}

/// The rank of the status in `column` (a qualified name where `status` would be ambiguous).
pub fn status_rank_of(column: &str) -> String {
    let cases: Vec<String> = DeliveryStatus::ALL
        .iter()
        .map(|s| format!("WHEN '{}' THEN {}", s.as_str(), s.rank()))
        .collect();
    format!("(CASE {column} {} ELSE 0 END)", cases.join(" "))
}

/// `channel <> 'web'`: the messages a delivery job sends (the web chat's are delivered by being
/// stored).
pub fn delivered_by_job() -> String {
    format!("channel <> '{}'", Channel::WEB.as_str())
}

/// Adds a delivery job (id `id`) for each message selected `FROM {from}` (`WHERE {filter} AND`
/// the channel needs one), in the message's lane, due at `$1`.
pub fn delivery_job(id: &str, from: &str, filter: &str) -> String {
    format!(
        "INSERT INTO jobs (id, queue, subject, lane, lane_seq, run_at, created_at) \
         SELECT {id}, '{queue}', id, conversation_id, seq, $1, $1 FROM {from} \
         WHERE {filter} AND {delivered}",
        queue = jobs::DELIVER,
        delivered = delivered_by_job(),
    )
}

/// Whether the message `{m}` (an alias of `messages`) needs a delivery job that would head its
/// lane: no delivery of its conversation before it is queued.
fn heads_delivery_lane(m: &str) -> String {
    format!(
        "({m}.{delivered} AND NOT EXISTS (SELECT 1 FROM jobs AS e WHERE e.queue = '{queue}' \
         AND e.lane = {m}.conversation_id AND e.lane_seq < {m}.seq))",
        queue = jobs::DELIVER,
        delivered = delivered_by_job(),
    )
}

/// Adds the delivery job (id `id`) of the message `WHERE id = {message}`, on SQLite, claimed at
/// once until `lease_until` for `owner` (one attempt counted) when it heads its lane (see
/// [`heads_delivery_lane`]) — as [`jobs::claim`] would claim it: the writer runs one write at a
/// time, so no other write can change the lane in between. Due at `$1`.
pub fn claimed_delivery_job(id: &str, message: &str, lease_until: &str, owner: &str) -> String {
    format!(
        "INSERT INTO jobs (id, queue, subject, lane, lane_seq, run_at, created_at, lease_until, \
         lease_owner, attempts) \
         SELECT {id}, '{queue}', id, conversation_id, seq, $1, $1, \
         CASE WHEN heads THEN {lease_until} END, CASE WHEN heads THEN {owner} END, heads \
         FROM (SELECT m.id, m.conversation_id, m.seq, {heads} AS heads \
         FROM messages AS m WHERE m.id = {message} AND m.{delivered})",
        queue = jobs::DELIVER,
        heads = heads_delivery_lane("m"),
        delivered = delivered_by_job(),
    )
}

/// Adds an evaluation job (id `id`) for each message selected `FROM {from} WHERE {filter}`,
/// due at `$1`.
pub fn evaluation_job(id: &str, from: &str, filter: &str) -> String {
    format!(
        "INSERT INTO jobs (id, queue, subject, run_at, created_at) \
         SELECT {id}, '{queue}', id, $1, $1 FROM {from} WHERE {filter}",
        queue = jobs::EVALUATE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rank_in_sql_is_the_rank_in_rust() {
        let sql = status_rank();
        for status in DeliveryStatus::ALL {
            assert!(
                sql.contains(&format!(
                    "WHEN '{}' THEN {}",
                    status.as_str(),
                    status.rank()
                )),
                "{sql}"
            );
        }
    }

    #[test]
    fn fragments_name_the_rust_constants() {
        assert!(delivery_job("$9", "reply", "TRUE").contains("'deliver'"));
        assert!(delivery_job("$9", "reply", "TRUE").contains("channel <> 'web'"));
        assert!(evaluation_job("$9", "reply", "TRUE").contains("'evaluate'"));
        assert_eq!(
            RENEW_LOCK_AFTER_HALF * 2,
            1_000_000,
            "microseconds per second, halved"
        );
    }
}
