-- End sessions of one user atomically, and announce them in one message.
-- KEYS: [1] the user index, then the sessions to end (all in its slot).
-- ARGV: [1] the invalidation channel, then the index members of those
--       sessions in the same order (ARGV[k] belongs to KEYS[k]).
-- Returns how many of the sessions existed.
local n = 0
for k = 2, #KEYS do
  n = n + redis.call('DEL', KEYS[k])
  redis.call('ZREM', KEYS[1], ARGV[k])
end
if #KEYS > 1 then redis.call('PUBLISH', ARGV[1], table.concat(KEYS, ' ', 2)) end
return n
