-- Identities the cluster hands out once and never again: a target's port
-- group and relative target port (persistent reservations name them, so a
-- deleted target's number is not given to a new one). `value` is the last
-- one handed out.
CREATE TABLE counters (
    name   TEXT    PRIMARY KEY,
    value  INTEGER NOT NULL
);
INSERT INTO counters (name, value) SELECT 'target_port', COALESCE(MAX(tpg), 0) FROM targets;
