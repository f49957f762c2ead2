-- SqliteStore's sessions. IF NOT EXISTS: before this migration the store
-- created the same table ad hoc, so files written by those versions
-- already hold it (with this very shape) and only gain the history row.
CREATE TABLE IF NOT EXISTS tessera_sessions (
    key               BLOB PRIMARY KEY NOT NULL,
    user_id           TEXT,
    created_at        INTEGER NOT NULL,
    last_seen         INTEGER NOT NULL,
    idle_deadline     INTEGER NOT NULL,
    absolute_deadline INTEGER NOT NULL,
    version           INTEGER NOT NULL,
    attributes        TEXT NOT NULL,
    client            TEXT NOT NULL,
    csrf_token        TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tessera_sessions_by_user ON tessera_sessions (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS tessera_sessions_by_idle ON tessera_sessions (idle_deadline);
CREATE INDEX IF NOT EXISTS tessera_sessions_by_absolute ON tessera_sessions (absolute_deadline);
