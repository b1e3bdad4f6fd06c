-- What each node's engine could not bring up, and why, as the node itself
-- reported it (JSON array of {object, reason}): every node shows every
-- node's engine status.
ALTER TABLE nodes ADD COLUMN engine_problems TEXT NOT NULL DEFAULT '[]';
