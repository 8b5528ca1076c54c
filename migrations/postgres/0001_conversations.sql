-- The conversation store. Times are microseconds since the Unix epoch (UTC); ids are UUIDv7 text.

-- People who write to the gateway, one row per channel identity.
CREATE TABLE contacts (
    id            TEXT PRIMARY KEY,
    channel       TEXT NOT NULL,
    -- The channel's id of the person: phone number, Telegram user id, e-mail address, web device/user.
    external_id   TEXT NOT NULL,
    display_name  TEXT,
    metadata      JSONB NOT NULL DEFAULT '{}',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (channel, external_id)
);

CREATE TABLE conversations (
    id             TEXT PRIMARY KEY,
    channel        TEXT NOT NULL,
    -- Which of our identities the conversation runs through (WhatsApp number id, bot name…).
    account        TEXT NOT NULL DEFAULT '',
    contact_id     TEXT NOT NULL REFERENCES contacts (id),
    -- Who answers: the AI, an expert, or nobody.
    mode           TEXT NOT NULL DEFAULT 'ai' CHECK (mode IN ('ai', 'expert', 'closed')),
    -- The session lock: the agent answering this conversation, since when, for how long when idle.
    active_agent   TEXT,
    locked_at      BIGINT,
    lock_ttl_secs  BIGINT,
    title          TEXT,
    -- The seq of the newest message; each new message takes last_seq + 1.
    last_seq       BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    deleted_at     BIGINT,
    metadata       JSONB NOT NULL DEFAULT '{}',
    CHECK ((active_agent IS NULL) = (locked_at IS NULL) AND (locked_at IS NULL) = (lock_ttl_secs IS NULL))
);

-- Not on updated_at: that changes with every message, and an index on it would turn each of those
-- updates into index maintenance. A contact has few conversations; they are sorted after lookup.
CREATE INDEX conversations_by_contact ON conversations (contact_id) WHERE deleted_at IS NULL;
-- The lock sweeper's query uses exactly this expression.
CREATE INDEX conversations_by_lock_expiry ON conversations ((locked_at + lock_ttl_secs * 1000000))
    WHERE active_agent IS NOT NULL;

CREATE TABLE messages (
    id                   TEXT PRIMARY KEY,
    conversation_id      TEXT NOT NULL REFERENCES conversations (id),
    -- Position in the conversation, from 1; also the id of the message's event on event streams.
    seq                  BIGINT NOT NULL,
    channel              TEXT NOT NULL,
    direction            TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    role                 TEXT NOT NULL CHECK (role IN ('user', 'ai', 'expert', 'system')),
    -- The agent name or expert id that wrote an outbound message.
    author               TEXT,
    -- text, media, location, contacts, interactive, reaction, unsupported
    kind                 TEXT NOT NULL,
    content              TEXT NOT NULL,
    attachments          JSONB NOT NULL DEFAULT '[]',
    -- The provider's id; retried deliveries of the same id are stored once (see the index below).
    provider_message_id  TEXT,
    -- The message this one answers or replies to.
    reply_to             TEXT,
    -- received | pending | sent | delivered | read | failed
    status               TEXT NOT NULL,
    status_at            BIGINT NOT NULL,
    error                TEXT,
    created_at           BIGINT NOT NULL,
    metadata             JSONB NOT NULL DEFAULT '{}',
    UNIQUE (conversation_id, seq)
);

-- Partial: replies and web messages have no provider id and cost no entry here.
CREATE UNIQUE INDEX messages_by_provider_id ON messages (channel, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- The pipeline's work list: inbound messages that still need a turn (an answer, or a decision not to
-- answer). A message is added in the transaction that stores it and removed in the one that stores
-- its answer, so after a crash this table says exactly what to resume. It also says which message of
-- a conversation comes next: the lowest seq. Messages themselves stay append-only on the way from a
-- message to its reply.
CREATE TABLE pending_turns (
    conversation_id  TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    message_id       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    -- Clustered by conversation and seq: adding, finding the next and removing a turn each touch
    -- one b-tree.
    PRIMARY KEY (conversation_id, seq)
);
