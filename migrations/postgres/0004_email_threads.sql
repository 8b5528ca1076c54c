-- Threads of channels that reply by reference (e-mail): an unguessable token per conversation,
-- carried in the Reply-To plus-address, brings replies back to their conversation. (Tokens bound to
-- an expert as well come with the experts.)
CREATE TABLE thread_tokens (
    token            TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id),
    created_at       BIGINT NOT NULL
);
CREATE UNIQUE INDEX thread_tokens_by_conversation ON thread_tokens (conversation_id);

-- One-time values of signed webhooks (Mailgun's token): a request whose token was seen is a replay.
CREATE TABLE seen_tokens (
    scope       TEXT NOT NULL,
    token       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (scope, token)
);

-- E-mail attachments arrive inside the request, so they are stored before their message exists:
-- a media row no longer needs its message.
ALTER TABLE media ALTER COLUMN message_id DROP NOT NULL;
ALTER TABLE media ALTER COLUMN attachment DROP NOT NULL;
