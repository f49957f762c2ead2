-- Create a session, index it, and (with KEYS[3]) replace an old session of
-- the same slot: login and rotation in one step.
-- KEYS: [1] the session, [2] the user index (optional), [3] the old session
--       and [4] its legacy name (optional, only with [2]).
-- ARGV: [1] pexpireat of the session, [2] its index score (absolute
--       deadline), [3] now, [4] the invalidation channel, [5] the new
--       session's index member, [6] the old one's (or ''), [7] the value.
-- Returns 0 when the key exists (nothing written), else 1 + the number of
-- sessions in the user index afterwards (1 without an index).
-- Needs find.lua, index.lua.
if not redis.call('SET', KEYS[1], ARGV[7], 'NX') then return 0 end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
if KEYS[2] then index_add(KEYS[2], ARGV[2], ARGV[5], ARGV[3]) end
if KEYS[3] then
  local _, announce = delete_session(KEYS[3], KEYS[4])
  redis.call('ZREM', KEYS[2], ARGV[6])
  redis.call('PUBLISH', ARGV[4], announce)
end
if KEYS[2] then return 1 + redis.call('ZCARD', KEYS[2]) end
return 1
