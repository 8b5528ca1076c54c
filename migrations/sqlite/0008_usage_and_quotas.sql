-- Usage per AI reply, and quotas per contact.

-- One row per stored AI reply, written in the statement that stores the reply: totals are sums
-- over this table, exact and cheap. (The reply's metadata carries the same facts for staff.)
CREATE TABLE usage (
    message_id        TEXT PRIMARY KEY,
    conversation_id   TEXT NOT NULL,
    contact_id        TEXT NOT NULL,
    agent             TEXT NOT NULL,
    model             TEXT NOT NULL,
    tokens_in         INTEGER NOT NULL,
    tokens_out        INTEGER NOT NULL,
    -- 1 when the provider reported no usage and the tokens were estimated.
    estimated         INTEGER NOT NULL,
    -- Millionths of the configured currency, so that sums are exact.
    cost_micros       INTEGER NOT NULL,
    response_time_ms  INTEGER NOT NULL,
    created_at        INTEGER NOT NULL
) STRICT;

CREATE INDEX usage_by_time ON usage (created_at);
CREATE INDEX usage_by_contact ON usage (contact_id, created_at);

-- A contact's plan (a name of [quotas.plans]; NULL: the default plan) and prepaid credits: the
-- balance set by an admin at credit_set_at, in millionths of the currency. What is left is the
-- balance minus the cost of the replies since then (NULL: no credit limit).
ALTER TABLE contacts ADD COLUMN plan TEXT;
ALTER TABLE contacts ADD COLUMN credit_micros INTEGER;
ALTER TABLE contacts ADD COLUMN credit_set_at INTEGER;
