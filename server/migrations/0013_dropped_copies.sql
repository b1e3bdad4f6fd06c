-- Copies the cluster took from a node (a volume deleted, a copy taken away
-- or rebuilt elsewhere), as this node applied them: the node concerned
-- removes their files once its engine has let go, even when it was down
-- while the change was made. This node's own table, not replicated.
CREATE TABLE dropped_copies (
    volume  TEXT    NOT NULL,
    node_id INTEGER NOT NULL,
    PRIMARY KEY (volume, node_id)
);
