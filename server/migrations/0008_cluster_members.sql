-- Joining the cluster. A join token is kept as the SHA-256 of its secret;
-- it expires, and once a node has joined with it, it is spent.
CREATE TABLE join_tokens (
    id           TEXT PRIMARY KEY,   -- 16 hex digits, the token's public part
    secret_hash  TEXT NOT NULL,      -- SHA-256 of the secret, hex
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    used_at      TEXT,
    used_by      TEXT                -- the name of the node that joined with it
);

-- A node's place in the cluster: its Raft id (handed out once, from the
-- log) and the address it serves the cluster channel on.
ALTER TABLE nodes ADD COLUMN raft_id INTEGER;
ALTER TABLE nodes ADD COLUMN cluster_addr TEXT;
CREATE UNIQUE INDEX nodes_raft_id ON nodes (raft_id) WHERE raft_id IS NOT NULL;

-- The first node of every cluster is Raft node 1.
INSERT INTO counters (name, value) VALUES ('raft_node', 1);
UPDATE nodes SET raft_id = 1 WHERE id = (SELECT MIN(id) FROM nodes);
