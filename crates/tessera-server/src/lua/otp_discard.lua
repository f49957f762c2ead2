-- Delete the challenge if it is still the one with this MAC.
-- KEYS: [1] the challenge's hash.
-- ARGV: [1] the code's MAC.
-- Returns nothing.
if redis.call('HGET', KEYS[1], 'mac') == ARGV[1] then redis.call('DEL', KEYS[1]) end
