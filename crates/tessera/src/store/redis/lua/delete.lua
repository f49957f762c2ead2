-- Delete a session and announce it (also when it was already gone).
-- KEYS: [1] the session.
-- ARGV: [1] the invalidation channel.
-- Returns 1 if it existed, else 0.
local n = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], KEYS[1])
return n
