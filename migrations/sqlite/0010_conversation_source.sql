-- Where a conversation was started from, as the client said when it created it (web, mobile, a
-- partner's app): shown with the conversation and kept for reporting.
ALTER TABLE conversations ADD COLUMN source TEXT;
