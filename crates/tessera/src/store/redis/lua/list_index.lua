-- A user's sessions, after dropping those past their absolute deadline.
-- KEYS: [1] the user's bucket, [2] their legacy index.
-- ARGV: [1] now (ms), [2] the user id.
-- Returns {digests (32 bytes) from the bucket, hex digests from the legacy
-- index}.
-- Needs index.lua, users.lua.
local filed, legacy = user_sessions(KEYS[1], KEYS[2], ARGV[2], ARGV[1])
return {filed, legacy}
