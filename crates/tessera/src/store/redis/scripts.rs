//! The Lua scripts behind each store operation. Each runs atomically on the
//! server, so a version check and its write cannot be interleaved, and each
//! is one round trip. Every key a script touches shares the session's hash
//! tag, so they work unchanged on a Cluster.
//!
//! Session hash fields: `u` user, `c` created, `l` last seen, `i` idle
//! deadline, `x` absolute deadline, `ver` version, `m` client metadata,
//! `t` CSRF token, `a:<name>` attribute value, `v:<name>` the version that
//! last wrote it (a `v:` without `a:` is a removal's tombstone).

use std::sync::LazyLock;

use redis::Script;

/// Shared by save and touch: move `l` and `i` forward (never back) from
/// ARGV[2] and ARGV[3], and expire the key at the earlier deadline.
macro_rules! activity {
    () => {
        r#"
local l = tonumber(redis.call('HGET', KEYS[1], 'l'))
if tonumber(ARGV[2]) > l then redis.call('HSET', KEYS[1], 'l', ARGV[2]) end
local idle = tonumber(redis.call('HGET', KEYS[1], 'i'))
if tonumber(ARGV[3]) > idle then
  idle = tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'i', ARGV[3])
end
local x = tonumber(redis.call('HGET', KEYS[1], 'x'))
redis.call('PEXPIREAT', KEYS[1], math.min(idle, x))
"#
    };
}

/// Create (and with KEYS[3], replace an old session of the same slot).
/// KEYS: session, [user index, [old session]].
/// ARGV: pexpireat, index score, now, channel, index member of the new
/// session, index member of the old one (or ''), field/value pairs...
/// Returns 0 when the key exists (nothing written), 1 otherwise.
///
/// Index members are the 64-hex digests, not key names: at most 64 bytes,
/// so a small index stays a compact listpack instead of a skiplist.
pub static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
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
/// n set, (name, value)..., n removed, name...
/// Returns {version}, {-1, name} on conflict, {-2} when there is no session.
pub static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
local base = tonumber(ARGV[1])
local nset = tonumber(ARGV[5])
local rem = 6 + 2 * nset
local nrem = tonumber(ARGV[rem])
for k = 0, nset - 1 do
  local av = redis.call('HGET', KEYS[1], 'v:' .. ARGV[6 + 2 * k])
  if av and tonumber(av) > base then return {-1, ARGV[6 + 2 * k]} end
end
for k = 1, nrem do
  local av = redis.call('HGET', KEYS[1], 'v:' .. ARGV[rem + k])
  if av and tonumber(av) > base then return {-1, ARGV[rem + k]} end
end
local v = redis.call('HINCRBY', KEYS[1], 'ver', 1)
for k = 0, nset - 1 do
  local name = ARGV[6 + 2 * k]
  redis.call('HSET', KEYS[1], 'a:' .. name, ARGV[7 + 2 * k], 'v:' .. name, v)
end
for k = 1, nrem do
  local name = ARGV[rem + k]
  redis.call('HDEL', KEYS[1], 'a:' .. name)
  redis.call('HSET', KEYS[1], 'v:' .. name, v)
end
"#,
        activity!(),
        r#"
redis.call('PUBLISH', ARGV[4], KEYS[1])
return {v}
"#
    ))
});

/// Record activity. KEYS: session. ARGV: unused, last seen, idle deadline.
/// Returns 0 when there is no session.
pub static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!("if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n", activity!(), "return 1\n"))
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
