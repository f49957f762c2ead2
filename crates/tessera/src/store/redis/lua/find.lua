-- Shared by the scripts that act on one session. A session may exist under
-- two names: its current one, or the one versions before 2026-12-06 gave
-- it (digest in hex, see names.rs). It exists under at most one of them;
-- both share a hash tag. Defines functions only; KEYS, ARGV and the reply
-- are the script's own.

-- The name the session exists under and its value, or nothing.
local function find_session(name, legacy)
  local raw = redis.call('GET', name)
  if raw then return name, raw end
  raw = redis.call('GET', legacy)
  if raw then return legacy, raw end
end

-- Deletes the session under whichever name it has. Returns 1 if it
-- existed (else 0) and what to announce: the name it had (a node of the
-- earlier version understands only the legacy one), or both when it was
-- already gone, as a copy may still be cached.
local function delete_session(name, legacy)
  if redis.call('DEL', name) == 1 then return 1, name end
  if redis.call('DEL', legacy) == 1 then return 1, legacy end
  return 0, name .. ' ' .. legacy
end
