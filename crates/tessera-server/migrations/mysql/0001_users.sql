-- The course's user tables in MySQL / MariaDB (InnoDB, utf8mb4): the same
-- shape as the SQLite and PostgreSQL migrations. Integers are BIGINT so
-- every engine decodes them as i64; strings are VARCHAR, never TEXT, for
-- sqlx's Any driver reads MySQL TEXT columns as bytes, and an indexed
-- string needs a length (VARCHAR(32) for E.164 phones: 16 at most).
CREATE TABLE user_info (
    id             BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name           VARCHAR(255) NOT NULL,
    gender         BIGINT       NOT NULL,
    age            BIGINT       NOT NULL,
    telphone       VARCHAR(32)  NOT NULL,
    register_mode  VARCHAR(32)  NOT NULL DEFAULT 'byphone',
    third_party_id VARCHAR(255) NOT NULL DEFAULT '',
    UNIQUE KEY user_info_telphone (telphone)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- MySQL ignores a column-level REFERENCES: the key is declared on the table.
CREATE TABLE user_password (
    id              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    encrpt_password VARCHAR(255) NOT NULL,
    user_id         BIGINT       NOT NULL,
    UNIQUE KEY user_password_user_id (user_id),
    CONSTRAINT user_password_user FOREIGN KEY (user_id) REFERENCES user_info (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
