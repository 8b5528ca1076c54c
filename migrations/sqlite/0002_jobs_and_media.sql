-- Background work that must survive restarts: delivering outbound messages, downloading inbound
-- media. A job is written in the same transaction as the message it is about, so a stored reply
-- always has its delivery job and nothing is lost between the two.

CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    -- Which worker runs it: deliver, fetch_media.
    queue        TEXT NOT NULL,
    -- What it is about (a message id, a message id and attachment index); one job per subject.
    subject      TEXT NOT NULL,
    -- Jobs of one lane run one at a time, in lane_seq order (the deliveries of a conversation).
    lane         TEXT,
    lane_seq     INTEGER,
    payload      TEXT NOT NULL DEFAULT '{}',
    -- When it may run next (retries move it forward).
    run_at       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    -- Claimed by a worker until then; a crashed worker's claim runs out.
    lease_until  INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    UNIQUE (queue, subject)
) STRICT;

CREATE INDEX jobs_due ON jobs (queue, run_at);
CREATE INDEX jobs_by_lane ON jobs (queue, lane, lane_seq) WHERE lane IS NOT NULL;

-- A long outbound text goes out as several provider messages. The first part's id is the message's
-- provider_message_id; every part is listed here, so status updates of any part find the message and
-- a retried delivery resumes after the parts already sent.
CREATE TABLE message_parts (
    channel              TEXT NOT NULL,
    provider_message_id  TEXT NOT NULL,
    message_id           TEXT NOT NULL REFERENCES messages (id),
    part                 INTEGER NOT NULL,
    PRIMARY KEY (channel, provider_message_id),
    UNIQUE (message_id, part)
) STRICT;

-- Providers may report a status before the gateway has recorded the id it got back for the message
-- (the webhook overtakes the API response). Such statuses wait here and are applied when the id is
-- recorded.
CREATE TABLE early_statuses (
    channel              TEXT NOT NULL,
    provider_message_id  TEXT NOT NULL,
    status               TEXT NOT NULL,
    status_at            INTEGER NOT NULL,
    error                TEXT,
    created_at           INTEGER NOT NULL,
    PRIMARY KEY (channel, provider_message_id, status)
) STRICT;

-- Files the gateway keeps: downloaded inbound media, content-addressed on disk.
CREATE TABLE media (
    id           TEXT PRIMARY KEY,
    message_id   TEXT NOT NULL REFERENCES messages (id),
    -- Position of the attachment in the message.
    attachment   INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    mime_type    TEXT NOT NULL,
    size         INTEGER NOT NULL,
    filename     TEXT,
    -- Relative to the media directory.
    path         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (message_id, attachment)
) STRICT;
