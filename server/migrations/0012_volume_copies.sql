-- Replicated volumes (CLUSTER.md §2). A volume's primary copy is on
-- volumes.node_id; each other copy is a row of volume_copies. The epoch
-- goes up whenever the primary or the set of copies changes, and a copy is
-- marked out of or back in sync only at the epoch it was seen at.
ALTER TABLE volumes ADD COLUMN epoch INTEGER NOT NULL DEFAULT 1;
CREATE TABLE volume_copies (
    volume_id INTEGER NOT NULL REFERENCES volumes (id) ON DELETE CASCADE,
    node_id   INTEGER NOT NULL REFERENCES nodes (id),
    in_sync   INTEGER NOT NULL DEFAULT 1 CHECK (in_sync IN (0, 1)),
    PRIMARY KEY (volume_id, node_id)
);
CREATE INDEX volume_copies_node ON volume_copies (node_id);

-- Where a node takes replication streams from primaries (IP:PORT).
ALTER TABLE nodes ADD COLUMN replication_addr TEXT;
