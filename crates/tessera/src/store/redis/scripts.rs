//! The Lua scripts behind each store operation. Each runs atomically on the
//! server, so a version check and its write cannot be interleaved, and each
//! is one round trip. Every key a script touches shares the session's hash
//! tag, so they work unchanged on a Cluster.
//!
//! A session is one MessagePack value (see `codec`); scripts that change it
//! decode it with `cmsgpack` (or, for a value of an earlier version, `cjson`),
//! edit versions, deadlines and attribute *strings*, and write it back.
//! Numbers are milliseconds (seconds for user index scores) and small
//! versions: integers, exact in Lua's doubles.
//!
//! The scripts are the `.lua` files in `lua/`, each opening with its KEYS,
//! ARGV and reply. Code that several scripts share is a fragment of Lua
//! functions (`lua/index.lua`: sorted-set upkeep; `lua/users.lua`: user
//! indexes; `lua/session.lua`: the value's shapes and the activity write;
//! `lua/find.lua`: a session under its current or legacy name) placed in
//! front of the scripts that call it, so it exists once.

use std::sync::LazyLock;

use redis::Script;

/// A script of `lua/<name>.lua`, after the fragments it needs.
macro_rules! lua {
    ($($file:literal),+) => {
        LazyLock::new(|| Script::new(concat!($(include_str!(concat!("lua/", $file, ".lua"))),+)))
    };
}

/// Create, index, and replace an old session of the same slot.
pub static CREATE: LazyLock<Script> = lua!("find", "index", "users", "create");

/// File a session whose key lives in another Cluster slot than its user's index.
pub static INDEX: LazyLock<Script> = lua!("index", "users", "index_session");

/// Save changed attributes with the per-attribute version check.
pub static SAVE: LazyLock<Script> = lua!("find", "session", "save");

/// Record activity (not published).
pub static TOUCH: LazyLock<Script> = lua!("find", "session", "touch");

/// Delete and announce.
pub static DELETE: LazyLock<Script> = lua!("find", "delete");

/// A user's sessions, after pruning by absolute deadline.
pub static LIST_INDEX: LazyLock<Script> = lua!("index", "users", "list_index");

/// Remove sessions from a user's indexes.
pub static UNINDEX: LazyLock<Script> = lua!("index", "users", "unindex");

/// End sessions of one user atomically.
pub static DELETE_USER: LazyLock<Script> = lua!("find", "index", "users", "delete_user");

/// Record revocations and tell every node.
pub static REVOKE: LazyLock<Script> = lua!("index", "revoke");
