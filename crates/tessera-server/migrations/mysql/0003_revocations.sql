-- Revocations kept beside Redis, which may lose its recent past: every node
-- merges these into its list at start and after each resubscription.
-- An entry is one encoded revocation (at most about 210 characters: a sid
-- and a user id of at most 128 bytes). `until` is a reserved word in
-- MySQL, hence the backticks (the queries quote it too).
CREATE TABLE IF NOT EXISTS tessera_revocations (
    entry   VARCHAR(512) NOT NULL PRIMARY KEY,
    `until` BIGINT       NOT NULL,
    KEY tessera_revocations_until (`until`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
