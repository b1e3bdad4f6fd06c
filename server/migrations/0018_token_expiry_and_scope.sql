-- An API token may expire (none: it lasts until revoked), and may be
-- read-only: it then acts as a viewer, whatever its owner's role.
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
ALTER TABLE api_tokens ADD COLUMN read_only INTEGER NOT NULL DEFAULT 0;
