-- The course's user tables, with SQLite types. `telphone` keeps the
-- course's spelling so its queries and pages keep working.
CREATE TABLE user_info (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL,
    gender         INTEGER NOT NULL,
    age            INTEGER NOT NULL,
    telphone       TEXT    NOT NULL UNIQUE,
    register_mode  TEXT    NOT NULL DEFAULT 'byphone',
    third_party_id TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE user_password (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    encrpt_password TEXT    NOT NULL,
    user_id         INTEGER NOT NULL UNIQUE REFERENCES user_info (id) ON DELETE CASCADE
);
