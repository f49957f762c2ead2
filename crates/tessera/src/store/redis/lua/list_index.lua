-- The members of a user index, after dropping those past their absolute
-- deadline.
-- KEYS: [1] the user index.
-- ARGV: [1] now.
-- Returns the remaining members (64-hex session digests), lowest score first.
-- Needs index.lua.
prune(KEYS[1], ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
