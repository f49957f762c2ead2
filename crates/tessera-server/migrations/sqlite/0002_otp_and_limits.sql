-- One pending OTP challenge per phone, filed under the phone's keyed
-- pseudonym (never the number itself); the code is kept only as an HMAC.
CREATE TABLE otp_challenge (
    subject    TEXT    PRIMARY KEY NOT NULL,
    code_mac   BLOB    NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Fixed-window counters for send and login throttles (bucket names hold
-- pseudonyms of phones and addresses, not the values).
CREATE TABLE rate_limit (
    bucket       TEXT    PRIMARY KEY NOT NULL,
    window_start INTEGER NOT NULL,
    hits         INTEGER NOT NULL
) WITHOUT ROWID;
