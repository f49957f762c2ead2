//! The store conformance suite against every store shipped in this crate.

mod memory {
    use std::sync::Arc;
    tessera::store_conformance_tests!(async { Arc::new(tessera::MemoryStore::new()) });
}

mod sqlite {
    use std::sync::Arc;
    tessera::store_conformance_tests!(async {
        // The directory is kept for the life of the test process; the OS
        // temp cleaner owns it afterwards.
        let dir = tempfile::tempdir().unwrap().keep();
        Arc::new(tessera::SqliteStore::open(dir.join("sessions.db")).await.unwrap())
    });
}

mod sqlite_with_cache {
    use std::sync::Arc;
    tessera::store_conformance_tests!(async {
        let dir = tempfile::tempdir().unwrap().keep();
        Arc::new(tessera::SqliteStore::open(dir.join("sessions.db")).await.unwrap().with_cache(1000))
    });
}

/// The embedded store keeps sessions across a process restart: a second
/// store opened on the same file sees what the first one wrote.
#[tokio::test]
async fn sqlite_sessions_survive_reopening_the_file() {
    use tessera::store::conformance::record_for;
    use tessera::{SessionStore, SessionToken, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let key = SessionToken::generate().key();
    let record = record_for(Some("alice"));
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.create(&key, &record).await.unwrap();
        store.close().await;
    }
    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(reopened.load(&key).await.unwrap().as_deref(), Some(&record));
}

/// A closed store's file is at rest: the last connection has closed, so
/// the write-ahead log is copied in and its `-wal` and `-shm` files are
/// gone. (sqlx's own `Pool::close` returned before that in about one close
/// in five; forty closes in a row caught it every time.)
#[tokio::test]
async fn a_closed_sqlite_store_leaves_the_file_at_rest() {
    use tessera::store::conformance::record_for;
    use tessera::{SessionStore, SessionToken, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    for round in 0..40 {
        let store = SqliteStore::open(&path).await.unwrap();
        store.create(&SessionToken::generate().key(), &record_for(Some("alice"))).await.unwrap();
        store.close().await;
        let mut files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        files.sort();
        assert_eq!(files, ["sessions.db"], "round {round}: files left open after close");
    }
}

/// Nothing in the file holds the token itself, only its digest.
#[tokio::test]
async fn sqlite_file_never_holds_the_token() {
    use tessera::store::conformance::record_for;
    use tessera::{SessionStore, SessionToken, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let token = SessionToken::generate();
    let store = SqliteStore::open(&path).await.unwrap();
    store.create(&token.key(), &record_for(Some("alice"))).await.unwrap();
    store.close().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let needle = token.expose();
    assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "token text found at rest");
    let raw = {
        // The raw 32 token bytes must not be there either.
        let mut b = [0u8; 32];
        base64_decode(&needle, &mut b);
        b
    };
    assert!(!bytes.windows(32).any(|w| w == raw), "token bytes found at rest");
    assert!(bytes.windows(32).any(|w| w == token.key().as_bytes()), "the digest is the key");
}

fn base64_decode(text: &str, out: &mut [u8; 32]) {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(text, out).unwrap();
}

/// A closed (lost) database answers Unavailable, never "no session".
#[tokio::test]
async fn a_closed_sqlite_store_is_unavailable() {
    use tessera::{SessionStore, SessionToken, SqliteStore, StoreError};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
    store.close().await;
    let err = store.load(&SessionToken::generate().key()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

/// The purger removes lapsed sessions without anyone asking.
#[tokio::test]
async fn the_purger_runs_by_itself() {
    use std::sync::Arc;
    use std::time::Duration;
    use tessera::store::conformance::record_for;
    use tessera::{ManualClock, MemoryStore, SessionStore, SessionToken};
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::starting_now();
    let key = SessionToken::generate().key();
    store.create(&key, &record_for(Some("alice"))).await.unwrap();
    clock.advance(Duration::from_secs(13 * 3600));
    let task = tessera::store::spawn_purger(store.clone(), Arc::new(clock), Duration::from_millis(10));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.load(&key).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "purger never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
}
