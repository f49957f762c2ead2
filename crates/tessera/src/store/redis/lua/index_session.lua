-- Index a session whose key lives in another Cluster slot than the index.
-- KEYS: [1] the user index.
-- ARGV: [1] the session's index member, [2] its score (absolute deadline),
--       [3] now.
-- Returns nothing.
-- Needs index.lua.
index_add(KEYS[1], ARGV[2], ARGV[1], ARGV[3])
