-- Experts, continued: when an assignment was answered, a secret every instance shares, and the
-- indexes that the audit log and the review list read by.

-- Set when the assigned expert writes, cleared on every new assignment: an assignment still
-- unanswered after experts.assignment_timeout goes back to the queue. A column of the row itself,
-- so that the time-out and a reply that races it decide on the same row version.
ALTER TABLE conversations ADD COLUMN expert_answered_at BIGINT;
UPDATE conversations SET expert_answered_at = (
    SELECT MAX(m.created_at) FROM messages m
    WHERE m.conversation_id = conversations.id AND m.role = 'expert'
      AND m.created_at >= conversations.assigned_at)
WHERE expert_id IS NOT NULL;

-- Values the gateway generates once and every instance then uses (the staff token secret when
-- staff.jwt_secret is not configured).
CREATE TABLE settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE INDEX audit_log_by_actor ON audit_log (actor_id, created_at);
CREATE INDEX audit_log_by_conversation ON audit_log (conversation_id, created_at)
    WHERE conversation_id IS NOT NULL;
CREATE INDEX evaluations_by_time ON evaluations (created_at);
CREATE INDEX evaluations_failed ON evaluations (created_at) WHERE passed = 0;
