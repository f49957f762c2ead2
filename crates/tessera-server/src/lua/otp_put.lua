-- Store a challenge, replacing any pending one and its attempt count.
-- KEYS: [1] the challenge's hash (fields `mac`, `exp`, `attempts`).
-- ARGV: [1] the code's MAC, [2] when it expires (ms since the epoch),
--       [3] the key's time to live (ms; cleanup only, expiry is `exp`).
-- Returns nothing.
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'mac', ARGV[1], 'exp', ARGV[2], 'attempts', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
