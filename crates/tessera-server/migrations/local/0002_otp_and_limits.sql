-- One pending OTP challenge per phone; the code is kept only as an HMAC.
CREATE TABLE otp_challenge (
    telephone  TEXT    PRIMARY KEY NOT NULL,
    code_mac   BLOB    NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Fixed-window counters for send and login throttles.
CREATE TABLE rate_limit (
    bucket       TEXT    PRIMARY KEY NOT NULL,
    window_start INTEGER NOT NULL,
    hits         INTEGER NOT NULL
) WITHOUT ROWID;
