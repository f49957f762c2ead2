-- Accounts an operator disabled (POST /admin/users/{id}/disable): 1 refuses
-- every login. BIGINT like every integer here, so all engines decode it as
-- i64 through sqlx's Any driver.
ALTER TABLE user_info ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;
