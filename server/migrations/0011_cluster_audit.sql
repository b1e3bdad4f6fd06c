-- The cluster's audit log: every node's records, shared through the
-- cluster in the order each node wrote them. `origin` is the writing
-- node's Raft id (never reused), `seq` the record's id in that node's own
-- audit_log, which keeps what it wrote until the cluster has it.
CREATE TABLE cluster_audit (
    origin    INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    node      TEXT    NOT NULL,
    time      TEXT    NOT NULL,
    username  TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    object    TEXT    NOT NULL,
    result    TEXT    NOT NULL CHECK (result IN ('success', 'failure', 'denied')),
    source    TEXT,
    detail    TEXT,
    PRIMARY KEY (origin, seq)
);
CREATE INDEX cluster_audit_time ON cluster_audit (time);
