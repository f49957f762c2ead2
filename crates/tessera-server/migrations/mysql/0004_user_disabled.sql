-- Accounts an operator disabled (POST /admin/users/{id}/disable): 1 refuses
-- every login. BIGINT, not BOOLEAN (TINYINT), which sqlx's Any driver
-- cannot decode from MySQL.
ALTER TABLE user_info ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;
