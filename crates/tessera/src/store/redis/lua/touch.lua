-- Record activity. Not published: a touch only moves the idle deadline
-- forward, and cached copies have a maximum age instead.
-- KEYS: [1] the session, [2] its legacy name.
-- ARGV: [1] unused, [2] last seen, [3] idle deadline.
-- Returns 1, or 0 when there is no session.
-- Needs find.lua, session.lua.
local key, raw = find_session(KEYS[1], KEYS[2])
if not raw then return 0 end
local s = decode_session(raw)
write_with_activity(key, s, ARGV[2], ARGV[3])
return 1
