-- Contacts that blocked us (Telegram's "bot was blocked by the user"): deliveries to them fail at
-- once instead of calling the provider, until they unblock us or write again.
ALTER TABLE contacts ADD COLUMN unreachable_since INTEGER;
ALTER TABLE contacts ADD COLUMN unreachable_reason TEXT;

-- Positions in providers' streams that the gateway pulls (Telegram's getUpdates offset, later
-- IMAP UIDs). A cursor moves in the transaction that stores what it covers, so a restart neither
-- loses nor repeats anything.
CREATE TABLE cursors (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
