-- Check a code against the live challenge: consume it when right, count a
-- wrong try, and delete it at the limit of wrong tries.
-- KEYS: [1] the challenge's hash.
-- ARGV: [1] the code's MAC, [2] now (ms since the epoch), [3] max attempts.
-- Returns 0: no live challenge, 1: verified, 2: mismatch.
local h = redis.call('HMGET', KEYS[1], 'mac', 'exp', 'attempts')
if not h[1] then return 0 end
if tonumber(h[2]) <= tonumber(ARGV[2]) or tonumber(h[3]) >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  return 0
end
if h[1] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
if redis.call('HINCRBY', KEYS[1], 'attempts', 1) >= tonumber(ARGV[3]) then redis.call('DEL', KEYS[1]) end
return 2
