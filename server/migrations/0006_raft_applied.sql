-- The last Raft entry applied to the tables of this database and the
-- cluster membership as of that entry: written in the same transaction as
-- the entry's own rows, so the state and its place in the log never part.
CREATE TABLE raft_applied (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    log_id      TEXT,           -- JSON of openraft's LogId
    membership  TEXT NOT NULL   -- JSON of openraft's StoredMembership
);
