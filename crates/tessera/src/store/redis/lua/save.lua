-- Save changed attributes with the per-attribute version check.
-- KEYS: [1] the session, [2] its legacy name.
-- ARGV: [1] base version, [2] last seen, [3] idle deadline, [4] the
--       invalidation channel, [5] n set, then n (name, JSON text) pairs,
--       then n removed, then that many names.
-- Returns {version} when saved, {-1, name} on a conflict over `name`,
-- {-2} when there is no session.
-- Needs find.lua, session.lua.
local key, raw = find_session(KEYS[1], KEYS[2])
if not raw then return {-2} end
local s = decode_session(raw)
local base = tonumber(ARGV[1])
local nset = tonumber(ARGV[5])
local rem = 6 + 2 * nset
local nrem = tonumber(ARGV[rem])
local function stale(name)
  local a = s.a[name]
  return a and a[1] > base
end
for k = 0, nset - 1 do
  if stale(ARGV[6 + 2 * k]) then return {-1, ARGV[6 + 2 * k]} end
end
for k = 1, nrem do
  if stale(ARGV[rem + k]) then return {-1, ARGV[rem + k]} end
end
s.v = s.v + 1
for k = 0, nset - 1 do s.a[ARGV[6 + 2 * k]] = {s.v, ARGV[7 + 2 * k]} end
for k = 1, nrem do s.a[ARGV[rem + k]] = {s.v} end
write_with_activity(key, s, ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], key)
return {s.v}
