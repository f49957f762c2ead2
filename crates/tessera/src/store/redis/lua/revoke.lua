-- Record revocations and tell every node.
-- KEYS: [1] the revocation set.
-- ARGV: [1] now, [2] the channel, then (until, entry) pairs.
-- Returns how many entries were given. Prunes what is past, then adds
-- (an entry given already past stays until the next revocation; loads skip
-- it); the set expires with its last entry. The message published is the
-- entries, one per line.
-- Needs index.lua.
prune(KEYS[1], ARGV[1])
local entries = {}
for i = 3, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
  entries[#entries + 1] = ARGV[i + 1]
end
expire_with_last(KEYS[1], 'PEXPIREAT')
redis.call('PUBLISH', ARGV[2], table.concat(entries, '\n'))
return #entries
