-- Shared sorted-set upkeep, concatenated in front of the scripts that keep
-- a per-user session index or the revocation set. Both are sorted sets
-- scored by the millisecond time their member may be forgotten, and both
-- expire with their last member, so an idle user leaves nothing behind.
-- Defines functions only; KEYS, ARGV and the reply are the script's own.

-- Drops the members of `key` whose score is at or before `now`.
local function prune(key, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
end

-- Expires `key` at its highest score (the set is gone with its last member).
local function expire_with_last(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', key, last[2]) end
end

-- Files `member` under `score` in the index `key`, prunes what is past at
-- `now` and moves the index's expiry to its last member.
local function index_add(key, score, member, now)
  redis.call('ZADD', key, score, member)
  prune(key, now)
  expire_with_last(key)
end
