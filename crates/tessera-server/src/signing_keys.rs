//! The signing-key file: created on first start, rotated by `tessera keys
//! rotate` or on a timer, and watched by every node that shares it.
//!
//! Every change happens under an exclusive lock on `<file>.lock` and lands
//! by an atomic rename, so nodes starting or rotating at the same moment
//! agree on one key set, and a reader never sees half a file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tessera::signed::{KeySet, SigningAlgorithm};
use tessera::{Clock, SignedTokens, Timestamp};
use tokio::task::JoinHandle;

use crate::configuration::TokenConfig;
use crate::metrics::Metrics;

/// How often a node looks at the key file.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// A key file and its lock.
#[derive(Debug, Clone)]
pub struct KeyFile {
    path: PathBuf,
}

impl KeyFile {
    /// The key file at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn locked<T>(&self, work: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let lock_path = self.path.with_extension("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        lock.lock().map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        work()
        // The lock goes with the file handle.
    }

    /// The key set, generated (with `alg`) if there is none yet.
    pub fn load_or_create(&self, alg: SigningAlgorithm, now: Timestamp) -> Result<KeySet, String> {
        self.locked(|| match KeySet::load(&self.path).map_err(|e| e.to_string())? {
            Some(set) => Ok(set),
            None => {
                let set = KeySet::generate(alg, now);
                set.save(&self.path).map_err(|e| e.to_string())?;
                tracing::info!(file = %self.path.display(), "signing keys generated");
                Ok(set)
            }
        })
    }

    /// Rotates now: next signs, current retires for `retired_for`.
    /// `alg` is the new keys' algorithm; `None` keeps the current key's
    /// (EdDSA for a file made now).
    pub fn rotate(
        &self,
        alg: Option<SigningAlgorithm>,
        now: Timestamp,
        retired_for: Duration,
    ) -> Result<KeySet, String> {
        self.locked(|| {
            let loaded = KeySet::load(&self.path).map_err(|e| e.to_string())?;
            let alg = alg
                .or_else(|| loaded.as_ref().and_then(|set| set.current().map(|k| k.alg)))
                .unwrap_or(SigningAlgorithm::EdDSA);
            let mut set = loaded.unwrap_or_else(|| KeySet::generate(alg, now));
            set.rotate(alg, now, retired_for);
            set.save(&self.path).map_err(|e| e.to_string())?;
            Ok(set)
        })
    }

    /// Rotates if the current key has signed for `interval`; checked again
    /// under the lock, so of several nodes only one rotates.
    pub fn rotate_if_due(
        &self,
        alg: SigningAlgorithm,
        now: Timestamp,
        interval: Duration,
        retired_for: Duration,
    ) -> Result<bool, String> {
        self.locked(|| {
            let Some(mut set) = KeySet::load(&self.path).map_err(|e| e.to_string())? else { return Ok(false) };
            if !set.rotation_due(now, interval) {
                return Ok(false);
            }
            set.rotate(alg, now, retired_for);
            set.save(&self.path).map_err(|e| e.to_string())?;
            Ok(true)
        })
    }
}

/// Keeps `tokens` on the file's keys: reloads when the file's content
/// changes, rotates when the interval is up, and drops retired keys whose
/// tokens have all expired; tells `metrics` when the signing key changes.
/// `in_use` is the set the node started with. File work (a lock may be
/// held by another node) runs on the blocking pool.
pub fn spawn_key_watcher(
    file: KeyFile,
    tokens: SignedTokens,
    config: TokenConfig,
    clock: Arc<dyn Clock>,
    in_use: KeySet,
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    let retired_for = config.settings.revocation_lifetime();
    if let Some(current) = in_use.current() {
        metrics.signing_key(current.created_at);
    }
    tokio::spawn(async move {
        // Nothing seen yet: the first look reloads, which also catches a
        // rotation by another node since this one read the file at start.
        let mut seen: Option<Vec<u8>> = None;
        let mut in_use = in_use;
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = clock.now();
            let (f, alg, interval) = (file.clone(), config.algorithm, config.rotation_interval);
            let read = tokio::task::spawn_blocking(move || {
                if let Some(interval) = interval {
                    match f.rotate_if_due(alg, now, interval, retired_for) {
                        Ok(true) => tracing::info!("signing key rotated (automatic interval)"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "automatic key rotation failed"),
                    }
                }
                std::fs::read(f.path())
            })
            .await;
            let changed = match read {
                Ok(Ok(bytes)) if Some(&bytes) != seen.as_ref() => {
                    let parsed = std::str::from_utf8(&bytes)
                        .map_err(|e| e.to_string())
                        .and_then(|text| KeySet::from_json(text).map_err(|e| e.to_string()));
                    match parsed {
                        Ok(set) => {
                            seen = Some(bytes);
                            in_use = set;
                            true
                        }
                        // A half-written file cannot be seen (atomic rename);
                        // anything else unusable is an operator's mistake.
                        Err(e) => {
                            tracing::error!(error = %e, "key file unusable; keeping the keys in memory");
                            false
                        }
                    }
                }
                Ok(Ok(_)) => false,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, file = %file.path().display(), "key file unreadable; keeping the keys in memory");
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "key watcher task failed");
                    false
                }
            };
            let pruned = in_use.prune(now);
            if changed || pruned {
                match tokens.set_keys(&in_use) {
                    Ok(()) => {
                        if let Some(current) = in_use.current() {
                            metrics.signing_key(current.created_at);
                        }
                        tracing::info!(current = ?in_use.current().map(|k| &k.kid), "signing keys in use updated")
                    }
                    Err(e) => tracing::error!(error = %e, "key file unusable; keeping the previous keys"),
                }
            }
        }
    })
}
