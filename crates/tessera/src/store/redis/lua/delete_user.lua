-- End sessions of one user atomically, and announce them in one message.
-- KEYS: [1] the user's bucket, [2] their legacy index, then for each
--       session to end its name and its legacy name (all in one slot).
-- ARGV: [1] the invalidation channel, [2] the user id, then the digests of
--       those sessions in the same order.
-- Returns how many of the sessions existed.
-- Needs find.lua, users.lua.
local n, announced = 0, {}
for k = 3, #ARGV do
  local existed, announce = delete_session(KEYS[2 * k - 3], KEYS[2 * k - 2])
  n = n + existed
  announced[#announced + 1] = announce
  unfile_session(KEYS[1], KEYS[2], ARGV[k], ARGV[2])
end
if #announced > 0 then redis.call('PUBLISH', ARGV[1], table.concat(announced, ' ')) end
return n
