-- Threads of channels that reply by reference (e-mail): an unguessable token per conversation,
-- carried in the Reply-To plus-address, brings replies back to their conversation. (Tokens bound to
-- an expert as well come with the experts.)
CREATE TABLE thread_tokens (
    token            TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id),
    created_at       INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX thread_tokens_by_conversation ON thread_tokens (conversation_id);

-- One-time values of signed webhooks (Mailgun's token): a request whose token was seen is a replay.
CREATE TABLE seen_tokens (
    scope       TEXT NOT NULL,
    token       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, token)
) STRICT, WITHOUT ROWID;

-- E-mail attachments arrive inside the request, so they are stored before their message exists:
-- a media row no longer needs its message. (SQLite cannot drop NOT NULL in place.)
CREATE TABLE media_new (
    id           TEXT PRIMARY KEY,
    message_id   TEXT REFERENCES messages (id),
    attachment   INTEGER,
    sha256       TEXT NOT NULL,
    mime_type    TEXT NOT NULL,
    size         INTEGER NOT NULL,
    filename     TEXT,
    path         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (message_id, attachment)
) STRICT;
INSERT INTO media_new SELECT id, message_id, attachment, sha256, mime_type, size, filename, path,
    created_at FROM media;
DROP TABLE media;
ALTER TABLE media_new RENAME TO media;
