-- Shared sorted-set upkeep, concatenated in front of the scripts that keep
-- user indexes (users.lua) or the revocation set. Both are sorted sets
-- scored by the time their member may be forgotten, and both expire with
-- their last member, so idleness leaves nothing behind.
-- Defines functions only; KEYS, ARGV and the reply are the script's own.

-- Drops the members of `key` whose score is at or before `now`.
local function prune(key, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
end

-- Expires `key` at its highest score (the set is gone with its last
-- member), with `command`: PEXPIREAT for scores in milliseconds, EXPIREAT
-- for seconds.
local function expire_with_last(key, command)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call(command, key, last[2]) end
end
