-- SqliteRevocations' table. IF NOT EXISTS: earlier versions created it ad
-- hoc, and the tessera server's own SQLite migration 0003 creates the same
-- table with the same shape for its revocation archive.
CREATE TABLE IF NOT EXISTS tessera_revocations (
    entry TEXT PRIMARY KEY NOT NULL,
    until INTEGER NOT NULL
) WITHOUT ROWID;
