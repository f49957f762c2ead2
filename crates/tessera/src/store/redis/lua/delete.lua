-- Delete a session and announce it (also when it was already gone).
-- KEYS: [1] the session, [2] its legacy name.
-- ARGV: [1] the invalidation channel.
-- Returns 1 if it existed, else 0.
-- Needs find.lua.
local n, announce = delete_session(KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[1], announce)
return n
