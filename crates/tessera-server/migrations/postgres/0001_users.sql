-- The course's user tables, PostgreSQL types; the same shape as the
-- SQLite migration (integers are BIGINT so both decode as i64).
CREATE TABLE user_info (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT   NOT NULL,
    gender         BIGINT NOT NULL,
    age            BIGINT NOT NULL,
    telphone       TEXT   NOT NULL UNIQUE,
    register_mode  TEXT   NOT NULL DEFAULT 'byphone',
    third_party_id TEXT   NOT NULL DEFAULT ''
);

CREATE TABLE user_password (
    id              BIGSERIAL PRIMARY KEY,
    encrpt_password TEXT   NOT NULL,
    user_id         BIGINT NOT NULL UNIQUE REFERENCES user_info (id) ON DELETE CASCADE
);
