-- Who decides whether a volume caches writes: write-through (the default,
-- durable before GOOD), write-back (durable on FUA or SYNCHRONIZE CACHE) or
-- initiator (the initiator sets WCE with MODE SELECT). Existing volumes
-- become write-through: durable by default.
ALTER TABLE volumes ADD COLUMN write_cache TEXT NOT NULL DEFAULT 'write-through'
    CHECK (write_cache IN ('write-through', 'write-back', 'initiator'));
