-- Count one hit in a fixed window, unless the window is full.
-- KEYS: [1] the bucket's hash (fields `start`, `hits`).
-- ARGV: [1] now (ms), [2] the window (ms), [3] the limit.
-- Returns 0 when counted, else the milliseconds until the window ends
-- (at least 1). The hash outlives its window by a minute.
local h = redis.call('HMGET', KEYS[1], 'start', 'hits')
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local start, hits = tonumber(h[1]), tonumber(h[2])
if not start or now - start >= window then start, hits = now, 0 end
if hits >= limit then return math.max(start + window - now, 1) end
redis.call('HSET', KEYS[1], 'start', start, 'hits', hits + 1)
redis.call('PEXPIRE', KEYS[1], start + window - now + 60000)
return 0
