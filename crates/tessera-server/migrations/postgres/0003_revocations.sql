-- Revocations kept beside Redis, which may lose its recent past: every node
-- merges these into its list at start and after each resubscription.
CREATE TABLE IF NOT EXISTS tessera_revocations (
    entry TEXT PRIMARY KEY NOT NULL,
    until BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS tessera_revocations_until ON tessera_revocations (until);
