-- Shared by save and touch: the session value in each of its shapes (see
-- codec.rs) and the activity write. Defines functions only; KEYS, ARGV and
-- the reply are the script's own.

-- A decoded session is a table: `t`, the MessagePack array as read;
-- `shape`, 2 for the current one, 1 for that of versions before
-- 2026-12-06 (JSON of older versions is converted to it); and the fields
-- the scripts edit, with absolute times: `v` version, `l` last seen, `i`
-- idle deadline, `x` absolute deadline, `a` attributes (a name maps to
-- {version, JSON text}, or {version} once removed).

-- The JSON object of older versions, as shape 1.
local function from_json(raw)
  local j = cjson.decode(raw)
  local function text(v) if type(v) == 'string' then return v end return '' end
  local m = type(j.m) == 'table' and j.m or {}
  local a = {}
  if type(j.a) == 'table' then
    for name, e in pairs(j.a) do
      if type(e[2]) == 'string' then a[name] = {e[1], e[2]} else a[name] = {e[1]} end
    end
  end
  local t = {text(j.u), j.c, j.l, j.i, j.x, j.v, text(m.user_agent), text(m.ip), a}
  return {t = t, shape = 1, v = j.v, l = j.l, i = j.i, x = j.x, a = a}
end

local function decode_session(raw)
  if string.sub(raw, 1, 1) == '{' then return from_json(raw) end
  local t = cmsgpack.unpack(raw)
  local a = type(t[9]) == 'table' and t[9] or {}
  if type(t[1]) == 'number' then
    -- [version, user, created, absolute - created, last seen - created,
    --  idle - last seen, user agent, address, attributes (if any)]
    local l = t[3] + t[5]
    return {t = t, shape = 2, v = t[1], l = l, i = l + t[6], x = t[3] + t[4], a = a}
  end
  -- [user, created, last seen, idle, absolute, version, user agent, address, attributes]
  return {t = t, shape = 1, v = t[6], l = t[3], i = t[4], x = t[5], a = a}
end

-- The value of `s`, in the shape it was read in: nodes of the previous
-- version read what they wrote while a rolling upgrade lasts.
local function encode_session(s)
  local t = s.t
  if s.shape == 2 then
    t[1], t[5], t[6] = s.v, s.l - t[3], s.i - s.l
    if next(s.a) then t[9] = s.a else t[9] = nil end
  else
    t[3], t[4], t[5], t[6], t[9] = s.l, s.i, s.x, s.v, s.a
  end
  return cmsgpack.pack(t)
end

-- Moves last seen and the idle deadline forward, never back, writes `s`
-- to `key` and expires the key at the earlier of the idle and absolute
-- deadlines.
local function write_with_activity(key, s, last_seen, idle_deadline)
  if tonumber(last_seen) > s.l then s.l = tonumber(last_seen) end
  if tonumber(idle_deadline) > s.i then s.i = tonumber(idle_deadline) end
  redis.call('SET', key, encode_session(s))
  redis.call('PEXPIREAT', key, math.min(s.i, s.x))
end
