-- Retention and erasure delete rows of every table that refers to a contact, conversation or
-- message. A delete checks the foreign keys pointing at the row it removes; without an index on
-- the referring column that check reads the whole referring table, once per deleted row.

-- Every conversation of a contact, deleted ones too (erasure removes those as well). It replaces
-- the index of live conversations only: queries of live conversations use it just as well.
DROP INDEX conversations_by_contact;
CREATE INDEX conversations_by_contact ON conversations (contact_id);

-- Soft-deleted conversations, for the retention of deleted conversations; live ones cost nothing.
CREATE INDEX conversations_deleted ON conversations (deleted_at) WHERE deleted_at IS NOT NULL;

-- Idempotency keys of a message (its key is found by sender, not by message).
CREATE INDEX idempotency_keys_by_message ON idempotency_keys (message_id);

-- Whether a file is still somebody's: media rows share content-addressed files.
CREATE INDEX media_by_path ON media (path);
