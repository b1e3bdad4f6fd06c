-- The state of a target group's paths other than each LUN's
-- Active/Optimized one: standby (they refuse I/O until they take over), or
-- active-non-optimized (they serve it by sending each command to the node
-- of the Active/Optimized path).
ALTER TABLE target_groups ADD COLUMN other_paths TEXT NOT NULL DEFAULT 'standby'
    CHECK (other_paths IN ('standby', 'active-non-optimized'));
