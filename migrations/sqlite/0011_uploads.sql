-- Files a website visitor uploads (POST /v1/uploads) are stored before any message names them:
-- the row records whose upload it is, so only that visitor can attach or fetch it, and uploads
-- no message came to use can be told apart and removed.
ALTER TABLE media ADD COLUMN uploaded_by TEXT;
CREATE INDEX media_uploads ON media (uploaded_by, created_at) WHERE uploaded_by IS NOT NULL;
