-- Hardening for the public internet.

-- Idempotency keys of website visitors, scoped to the visitor by the key's structure: the same key
-- from two visitors names two messages. (They used to be the provider id "<visitor>/<key>", which
-- two visitors could make collide: "user:acme" + "alice/k42" = "user:acme/alice" + "k42".)
CREATE TABLE idempotency_keys (
    channel      TEXT NOT NULL,
    -- The sender's channel identity (the visitor's contact id).
    external_id  TEXT NOT NULL,
    key          TEXT NOT NULL,
    message_id   TEXT NOT NULL REFERENCES messages (id),
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (channel, external_id, key)
) STRICT, WITHOUT ROWID;

-- Keys stored the old way move over, split at the owner's own identity (which is unambiguous).
INSERT INTO idempotency_keys (channel, external_id, key, message_id, created_at)
SELECT m.channel, ct.external_id, substr(m.provider_message_id, length(ct.external_id) + 2),
       m.id, m.created_at
FROM messages m
JOIN conversations c ON c.id = m.conversation_id
JOIN contacts ct ON ct.id = c.contact_id
WHERE m.channel = 'web' AND m.provider_message_id IS NOT NULL
  AND substr(m.provider_message_id, 1, length(ct.external_id) + 1) = ct.external_id || '/'
ON CONFLICT DO NOTHING;
UPDATE messages SET provider_message_id = NULL
WHERE channel = 'web' AND id IN (SELECT message_id FROM idempotency_keys);

-- The sweep forgets one-time webhook tokens once they are too old to be accepted anyway.
CREATE INDEX seen_tokens_by_time ON seen_tokens (created_at);
