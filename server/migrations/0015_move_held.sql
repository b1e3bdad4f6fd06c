-- How long I/O was held for each move of a volume's primary, as the
-- controller measured it when it proposed the move: from the old primary's
-- demotion (a hand-over), or from the last time the leader heard from the
-- failed node (a failover). Absent for moves recorded before.
ALTER TABLE volume_moves ADD COLUMN held_ms INTEGER;
