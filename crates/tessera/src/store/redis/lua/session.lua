-- Shared by save and touch: the session value's shape (see codec.rs) and
-- the activity write. Defines functions only; KEYS, ARGV and the reply are
-- the script's own.

-- Positions in the value: MessagePack [user, created, last seen, idle
-- deadline, absolute deadline, version, user agent, address, attributes].
local U, C, L, I, X, V, UA, IP, A = 1, 2, 3, 4, 5, 6, 7, 8, 9

-- Decodes a value of either shape: MessagePack, or the JSON object of
-- earlier versions (converted, so it is written back as MessagePack).
-- Attributes map a name to {version, JSON text}, or {version} once removed.
local function decode_session(raw)
  if string.sub(raw, 1, 1) ~= '{' then
    local s = cmsgpack.unpack(raw)
    if type(s[A]) ~= 'table' then s[A] = {} end
    return s
  end
  local j = cjson.decode(raw)
  local function text(v) if type(v) == 'string' then return v end return '' end
  local m = type(j.m) == 'table' and j.m or {}
  local a = {}
  if type(j.a) == 'table' then
    for name, e in pairs(j.a) do
      if type(e[2]) == 'string' then a[name] = {e[1], e[2]} else a[name] = {e[1]} end
    end
  end
  return {text(j.u), j.c, j.l, j.i, j.x, j.v, text(m.user_agent), text(m.ip), a}
end

-- Moves last seen and the idle deadline forward, never back, writes `s`
-- to `key` and expires the key at the earlier of the idle and absolute
-- deadlines.
local function write_with_activity(key, s, last_seen, idle_deadline)
  if tonumber(last_seen) > s[L] then s[L] = tonumber(last_seen) end
  if tonumber(idle_deadline) > s[I] then s[I] = tonumber(idle_deadline) end
  redis.call('SET', key, cmsgpack.pack(s))
  redis.call('PEXPIREAT', key, math.min(s[I], s[X]))
end
