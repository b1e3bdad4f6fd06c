-- The replicated tables hold nothing that differs between nodes: which
-- node is "this node" is the node's own knowledge (its id, kept in its data
-- directory), not a row of the shared state.
ALTER TABLE nodes DROP COLUMN is_local;
