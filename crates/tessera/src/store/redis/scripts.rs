//! The Lua scripts behind each store operation. Each runs atomically on the
//! server, so a version check and its write cannot be interleaved, and each
//! is one round trip. Every key a script touches shares the session's hash
//! tag, so they work unchanged on a Cluster.
//!
//! A session is one JSON value (see `codec`); scripts that change it decode
//! it with `cjson`, edit versions, deadlines and attribute *strings*, and
//! write it back. Numbers are milliseconds (13 digits, exact under cjson's
//! 14-digit formatting) and small versions.

use std::sync::LazyLock;

use redis::Script;

/// Shared by save and touch: move `l` and `i` forward (never back) from
/// ARGV[2] and ARGV[3], write the value back and expire the key at the
/// earlier deadline. Expects the decoded value in `s`.
macro_rules! activity_and_write {
    () => {
        r#"
if tonumber(ARGV[2]) > s.l then s.l = tonumber(ARGV[2]) end
if tonumber(ARGV[3]) > s.i then s.i = tonumber(ARGV[3]) end
redis.call('SET', KEYS[1], cjson.encode(s))
redis.call('PEXPIREAT', KEYS[1], math.min(s.i, s.x))
"#
    };
}

/// Create (and with KEYS[3], replace an old session of the same slot).
/// KEYS: session, [user index, [old session]].
/// ARGV: pexpireat, index score, now, channel, index member of the new
/// session, index member of the old one (or ''), the value.
/// Returns 0 when the key exists (nothing written), else 1 + the number of
/// sessions in the user index afterwards.
///
/// Index members are the 64-hex digests, not key names: at most 64 bytes,
/// so a small index stays a compact listpack instead of a skiplist.
pub static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if not redis.call('SET', KEYS[1], ARGV[7], 'NX') then return 0 end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
if KEYS[2] then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', KEYS[2], last[2]) end
end
if KEYS[3] then
  redis.call('DEL', KEYS[3])
  redis.call('ZREM', KEYS[2], ARGV[6])
  redis.call('PUBLISH', ARGV[4], KEYS[3])
end
if KEYS[2] then return 1 + redis.call('ZCARD', KEYS[2]) end
return 1
"#,
    )
});

/// Index a session whose key lives in another Cluster slot than the index.
/// KEYS: user index. ARGV: index member, index score, now.
pub static INDEX: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
"#,
    )
});

/// Save changed attributes with the per-attribute version check.
/// KEYS: session. ARGV: base version, last seen, idle deadline, channel,
/// n set, (name, JSON text)..., n removed, name...
/// Returns {version}, {-1, name} on conflict, {-2} when there is no session.
pub static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return {-2} end
local s = cjson.decode(raw)
if type(s.a) ~= 'table' or next(s.a) == nil then s.a = {} end
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
for k = 1, nrem do s.a[ARGV[rem + k]] = {s.v, cjson.null} end
"#,
        activity_and_write!(),
        r#"
redis.call('PUBLISH', ARGV[4], KEYS[1])
return {s.v}
"#
    ))
});

/// Record activity. KEYS: session. ARGV: unused, last seen, idle deadline.
/// Returns 0 when there is no session.
pub static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local s = cjson.decode(raw)
"#,
        activity_and_write!(),
        "return 1\n"
    ))
});

/// Delete and announce. KEYS: session. ARGV: channel. Returns 1 if it existed.
pub static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], KEYS[1])
return n
"#,
    )
});

/// The members of a user index, after dropping those past their absolute
/// deadline. KEYS: user index. ARGV: now.
pub static LIST_INDEX: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"#,
    )
});

/// End sessions of one user atomically. KEYS: user index, then the
/// sessions to end (all in the index's slot). ARGV: channel, then the
/// index members of those sessions, in the same order.
/// Returns how many existed.
pub static DELETE_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = 0
for k = 2, #KEYS do
  n = n + redis.call('DEL', KEYS[k])
  redis.call('ZREM', KEYS[1], ARGV[k])
end
if #KEYS > 1 then redis.call('PUBLISH', ARGV[1], table.concat(KEYS, ' ', 2)) end
return n
"#,
    )
});

/// Record revocations and tell every node.
/// KEYS: the revocation set. ARGV: now, channel, then (until, entry) pairs.
/// Entries past their time are dropped on the way; the set expires with
/// its last entry.
pub static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local entries = {}
for i = 3, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
  entries[#entries + 1] = ARGV[i + 1]
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
redis.call('PUBLISH', ARGV[2], table.concat(entries, '\n'))
return #entries
"#,
    )
});
