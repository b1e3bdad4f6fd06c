-- A node is its key: the fingerprint of the public key the cluster pinned
-- for it when it was admitted (or, for the node that created the cluster,
-- when it first registered). Only a certificate for that key passes as the
-- node on the cluster channel.
ALTER TABLE nodes ADD COLUMN cert_key TEXT;
CREATE UNIQUE INDEX nodes_cert_key ON nodes (cert_key) WHERE cert_key IS NOT NULL;

-- The keys of removed nodes: refused everywhere, and never admitted again.
CREATE TABLE revoked_node_keys (
    cert_key    TEXT PRIMARY KEY,
    raft_id     INTEGER NOT NULL,
    name        TEXT NOT NULL,
    revoked_at  TEXT NOT NULL
);
