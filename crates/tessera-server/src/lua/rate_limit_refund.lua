-- Take one hit back, never below zero.
-- KEYS: [1] the bucket's hash.
-- ARGV: none.
-- Returns 0.
local hits = tonumber(redis.call('HGET', KEYS[1], 'hits'))
if hits and hits > 0 then redis.call('HINCRBY', KEYS[1], 'hits', -1) end
return 0
