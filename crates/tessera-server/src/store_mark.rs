//! Which session store the node serving from a data directory uses,
//! written down in the directory (`<data-dir>/session-store`).
//!
//! Every node has a data directory and a SQLite file in it, Redis or not.
//! So an operator command run without the node's `--redis` would open
//! that file, find no sessions in it, and report "0 sessions ended" while
//! the user's sessions stay live in Redis. The node writes which store it
//! uses when it starts; the operator CLI reads it and refuses to act on
//! the other one.

use std::path::{Path, PathBuf};

/// Where a node keeps its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStoreKind {
    /// The data directory's SQLite file.
    Embedded,
    /// Redis (`--redis`).
    Redis,
}

impl SessionStoreKind {
    /// The kind a node with (`true`) or without `--redis` uses.
    pub fn of(redis: bool) -> Self {
        if redis {
            Self::Redis
        } else {
            Self::Embedded
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Redis => "redis",
        }
    }
}

fn mark_path(data_dir: &Path) -> PathBuf {
    data_dir.join("session-store")
}

/// Records that the node serving from `data_dir` keeps its sessions in
/// `kind` (at every start: a node restarted with `--redis` rewrites it).
pub fn record(data_dir: &Path, kind: SessionStoreKind) -> std::io::Result<()> {
    std::fs::write(mark_path(data_dir), format!("{}\n", kind.word()))
}

/// What the last node serving from `data_dir` recorded; `None` when no
/// node has started there (or one older than this mark), or the file holds
/// something else.
pub fn recorded(data_dir: &Path) -> Option<SessionStoreKind> {
    let text = std::fs::read_to_string(mark_path(data_dir)).ok()?;
    [SessionStoreKind::Embedded, SessionStoreKind::Redis].into_iter().find(|k| k.word() == text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_recorded_kind_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recorded(dir.path()), None, "no node has started here");
        record(dir.path(), SessionStoreKind::Embedded).unwrap();
        assert_eq!(recorded(dir.path()), Some(SessionStoreKind::Embedded));
        record(dir.path(), SessionStoreKind::of(true)).unwrap();
        assert_eq!(recorded(dir.path()), Some(SessionStoreKind::Redis), "a restart with --redis rewrites it");
    }

    #[test]
    fn a_mark_it_does_not_know_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("session-store"), "memcached\n").unwrap();
        assert_eq!(recorded(dir.path()), None);
    }
}
