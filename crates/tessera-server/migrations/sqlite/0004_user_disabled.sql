-- Accounts an operator disabled (POST /admin/users/{id}/disable): 1 refuses
-- every login.
ALTER TABLE user_info ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
