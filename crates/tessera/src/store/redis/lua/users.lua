-- Shared by the scripts that keep user indexes (see names.rs): a user's
-- sessions are filed in a bucket shared with other users, members the
-- 32-byte digest followed by the user id, scored by absolute deadline in
-- seconds; those filed by versions before 2026-12-06 are in the user's own
-- legacy set, members the digest in hex, scored in milliseconds, which is
-- read, pruned and removed from but never added to. Both are in the user's
-- slot. Defines functions only; KEYS, ARGV and the reply are the script's
-- own. Needs index.lua.

-- Drops the members of the user's indexes past `now` (milliseconds).
local function prune_user(bucket, legacy, now)
  prune(bucket, math.floor(tonumber(now) / 1000))
  prune(legacy, now)
end

-- The user's sessions after pruning: the digests from the bucket, then the
-- hex digests from the legacy set.
local function user_sessions(bucket, legacy, user, now)
  prune_user(bucket, legacy, now)
  local digests = {}
  for _, member in ipairs(redis.call('ZRANGE', bucket, 0, -1)) do
    if string.sub(member, 33) == user then digests[#digests + 1] = string.sub(member, 1, 32) end
  end
  return digests, redis.call('ZRANGE', legacy, 0, -1)
end

-- Adds a session to the bucket and moves the bucket's expiry to its last
-- member; pruning is the caller's (file_session, or a user_sessions right
-- after). A prune leaves that expiry right: it drops members at or before
-- now, never the last one while any member is still live.
local function add_session(bucket, digest, user, score)
  redis.call('ZADD', bucket, score, digest .. user)
  expire_with_last(bucket, 'EXPIREAT')
end

-- Files a session in the bucket and prunes it.
local function file_session(bucket, digest, user, score, now)
  add_session(bucket, digest, user, score)
  prune(bucket, math.floor(tonumber(now) / 1000))
end

-- Removes a session from both of the user's indexes.
local function unfile_session(bucket, legacy, digest, user)
  redis.call('ZREM', bucket, digest .. user)
  local hex = string.gsub(digest, '.', function(c) return string.format('%02x', string.byte(c)) end)
  redis.call('ZREM', legacy, hex)
end
