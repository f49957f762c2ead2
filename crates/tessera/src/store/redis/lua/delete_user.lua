-- End sessions of one user atomically, and announce them in one message.
-- KEYS: [1] the user index, then for each session to end its name and its
--       legacy name (all in the index's slot).
-- ARGV: [1] the invalidation channel, then the index members of those
--       sessions in the same order.
-- Returns how many of the sessions existed.
-- Needs find.lua.
local n, announced = 0, {}
for k = 2, #ARGV do
  local existed, announce = delete_session(KEYS[2 * k - 2], KEYS[2 * k - 1])
  n = n + existed
  announced[#announced + 1] = announce
  redis.call('ZREM', KEYS[1], ARGV[k])
end
if #announced > 0 then redis.call('PUBLISH', ARGV[1], table.concat(announced, ' ')) end
return n
