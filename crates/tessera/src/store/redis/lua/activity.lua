-- Shared by save and touch: record activity on a decoded session and write
-- it back. Defines a function only; KEYS, ARGV and the reply are the
-- script's own.

-- Moves `s.l` (last seen) and `s.i` (idle deadline) forward, never back,
-- writes `s` to `key` and expires the key at the earlier of the idle and
-- absolute deadlines.
local function write_with_activity(key, s, last_seen, idle_deadline)
  if tonumber(last_seen) > s.l then s.l = tonumber(last_seen) end
  if tonumber(idle_deadline) > s.i then s.i = tonumber(idle_deadline) end
  redis.call('SET', key, cjson.encode(s))
  redis.call('PEXPIREAT', key, math.min(s.i, s.x))
end
