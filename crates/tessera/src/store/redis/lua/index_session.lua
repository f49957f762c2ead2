-- File a session whose key lives in another Cluster slot than its user's
-- index.
-- KEYS: [1] the user's bucket.
-- ARGV: [1] the session's digest, [2] its score (absolute deadline,
--       seconds), [3] now (ms), [4] the user id.
-- Returns nothing.
-- Needs index.lua, users.lua.
file_session(KEYS[1], ARGV[1], ARGV[4], ARGV[2], ARGV[3])
