-- Failover and failback (CLUSTER.md §3). A volume's preferred node is where
-- its primary returns once that node has been online and in sync for the
-- hold time, when auto_failback is on: the node it was created on, or the
-- one an operator or an initiator last moved it to.
ALTER TABLE volumes ADD COLUMN preferred_node_id INTEGER;
ALTER TABLE volumes ADD COLUMN auto_failback INTEGER NOT NULL DEFAULT 1 CHECK (auto_failback IN (0, 1));
UPDATE volumes SET preferred_node_id = node_id;

-- Every move of a volume's primary, as the cluster committed it: the
-- volume's timeline. Node names are kept as they were then.
CREATE TABLE volume_moves (
    id        INTEGER PRIMARY KEY,
    volume    TEXT    NOT NULL,
    at        TEXT    NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('failover', 'switchover', 'failback')),
    from_node TEXT    NOT NULL,
    to_node   TEXT    NOT NULL,
    epoch     INTEGER NOT NULL,
    cause     TEXT    NOT NULL
);
CREATE INDEX volume_moves_volume ON volume_moves (volume, at);
