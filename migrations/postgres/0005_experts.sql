-- The human side: staff accounts, who owns a conversation, the audit trail, evaluations.

-- Experts, supervisors and admins log in; end users never do (they are contacts).
CREATE TABLE users (
    id                TEXT PRIMARY KEY,
    -- Login name and notification address, lowercased.
    email             TEXT NOT NULL UNIQUE,
    display_name      TEXT NOT NULL,
    role              TEXT NOT NULL CHECK (role IN ('expert', 'supervisor', 'admin')),
    -- argon2id, PHC string format.
    password_hash     TEXT NOT NULL,
    -- Experts: taking conversations now, and how many open ones at most.
    available         BIGINT NOT NULL DEFAULT 0,
    capacity          BIGINT NOT NULL DEFAULT 5,
    -- When the expert last got a conversation (the longest idle expert wins a tie).
    last_assigned_at  BIGINT,
    disabled_at       BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

-- Dashboard sessions: the cookie holds a random token whose SHA-256 is the id.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    csrf_token  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Who owns a conversation in expert mode: waiting in the queue since queued_at, or assigned to an
-- expert since assigned_at. expert_seen_seq is how far the expert has read (unread counts).
ALTER TABLE conversations ADD COLUMN expert_id TEXT REFERENCES users (id);
ALTER TABLE conversations ADD COLUMN queued_at BIGINT;
ALTER TABLE conversations ADD COLUMN assigned_at BIGINT;
ALTER TABLE conversations ADD COLUMN expert_seen_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX conversations_in_queue ON conversations (queued_at) WHERE queued_at IS NOT NULL;
CREATE INDEX conversations_by_expert ON conversations (expert_id) WHERE expert_id IS NOT NULL;

-- A thread token may also be bound to an expert: the notification mail an expert answers.
ALTER TABLE thread_tokens ADD COLUMN expert_id TEXT REFERENCES users (id);
DROP INDEX thread_tokens_by_conversation;
CREATE UNIQUE INDEX thread_tokens_by_owner ON thread_tokens (conversation_id, COALESCE(expert_id, ''));

-- A contact's public handle on its channel (Telegram's @username), for staff searching contacts.
ALTER TABLE contacts ADD COLUMN username TEXT;

-- Every access of staff to a conversation: who, what, when, from where.
CREATE TABLE audit_log (
    id               TEXT PRIMARY KEY,
    actor_id         TEXT NOT NULL,
    actor_role       TEXT NOT NULL,
    action           TEXT NOT NULL,
    conversation_id  TEXT,
    detail           JSONB NOT NULL DEFAULT '{}',
    remote_addr      TEXT,
    user_agent       TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX audit_log_by_time ON audit_log (created_at);

-- What the evaluators said about each AI reply.
CREATE TABLE evaluations (
    id          TEXT PRIMARY KEY,
    message_id  TEXT NOT NULL REFERENCES messages (id),
    evaluator   TEXT NOT NULL,
    passed      BIGINT NOT NULL,
    score       DOUBLE PRECISION,
    detail      JSONB NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    UNIQUE (message_id, evaluator)
);
