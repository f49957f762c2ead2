-- Revocations kept beside Redis, which may lose its recent past: every node
-- merges these into its list at start and after each resubscription.
-- The embedded store's SqliteRevocations uses the same table and shape.
CREATE TABLE IF NOT EXISTS tessera_revocations (
    entry TEXT PRIMARY KEY NOT NULL,
    until INTEGER NOT NULL
) WITHOUT ROWID;
