-- Remove sessions from a user's indexes (those found gone, or ended one by
-- one where they live in other Cluster slots).
-- KEYS: [1] the user's bucket, [2] their legacy index.
-- ARGV: [1] the user id, then the sessions' digests.
-- Returns nothing.
-- Needs users.lua.
for k = 2, #ARGV do unfile_session(KEYS[1], KEYS[2], ARGV[k], ARGV[1]) end
