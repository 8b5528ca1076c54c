-- The gateway processes sharing this database. Each says it is alive every few seconds; work in
-- progress names the instance doing it (a job's lease, a message's turn), so that the work of an
-- instance that stopped saying so is taken over by the others, and an instance that restarts
-- takes its own back at once.
CREATE TABLE instances (
    name          TEXT PRIMARY KEY,
    -- Tells one run of an instance from the next: a restart finds its previous run's row.
    boot_id       TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL
);

-- Who holds a claimed job's lease. No index: only claimed jobs have one, and the few claimed
-- jobs of a dead instance are found by a scan of a small table, once.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;

-- Which instance runs a message's turn (set when the message is stored, changed when another
-- instance takes the turn over). The work list only holds unanswered messages: scanned, not indexed.
ALTER TABLE pending_turns ADD COLUMN owner TEXT;
