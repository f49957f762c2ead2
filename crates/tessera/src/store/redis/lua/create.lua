-- Create a session, file it in its user's index, and (with KEYS[4])
-- replace an old session of the same slot: login and rotation in one step.
-- KEYS: [1] the session; with a user: [2] their bucket and [3] their legacy
--       index; with those, optionally: [4] the old session and [5] its
--       legacy name.
-- ARGV: [1] pexpireat of the session, [2] its index score (absolute
--       deadline, seconds), [3] now (ms), [4] the invalidation channel,
--       [5] the new session's digest, [6] the old one's (or ''), [7] the
--       value, [8] the user id (or '').
-- Returns 0 when the key exists (nothing written), else 1 + the number of
-- the user's sessions afterwards (1 without a user).
-- Needs find.lua, index.lua, users.lua.
if not redis.call('SET', KEYS[1], ARGV[7], 'NX') then return 0 end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
if not KEYS[2] then return 1 end
-- Filed without a prune of its own: user_sessions below prunes the bucket.
add_session(KEYS[2], ARGV[5], ARGV[8], ARGV[2])
if KEYS[4] then
  local _, announce = delete_session(KEYS[4], KEYS[5])
  unfile_session(KEYS[2], KEYS[3], ARGV[6], ARGV[8])
  redis.call('PUBLISH', ARGV[4], announce)
end
local filed, legacy = user_sessions(KEYS[2], KEYS[3], ARGV[8], ARGV[3])
return 1 + #filed + #legacy
