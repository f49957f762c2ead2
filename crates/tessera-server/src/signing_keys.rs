//! The signing-key file: created on first start, rotated by `tessera keys
//! rotate` or on a timer, and watched by every node that shares it.
//!
//! Every change happens under an exclusive lock on `<file>.lock` and lands
//! by an atomic rename, so nodes starting or rotating at the same moment
//! agree on one key set, and a reader never sees half a file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tessera::signed::{KeySet, SigningAlgorithm};
use tessera::{Clock, SignedTokens, Timestamp};
use tokio::task::JoinHandle;

use crate::configuration::TokenConfig;

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
    pub fn rotate(&self, alg: SigningAlgorithm, now: Timestamp, retired_for: Duration) -> Result<KeySet, String> {
        self.locked(|| {
            let mut set =
                KeySet::load(&self.path).map_err(|e| e.to_string())?.unwrap_or_else(|| KeySet::generate(alg, now));
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

    fn modified(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.path).and_then(|m| m.modified()).ok()
    }
}

/// Keeps `tokens` on the file's keys: reloads when the file changes,
/// rotates when the interval is up, and drops retired keys whose tokens
/// have all expired.
pub fn spawn_key_watcher(
    file: KeyFile,
    tokens: SignedTokens,
    config: TokenConfig,
    clock: Arc<dyn Clock>,
) -> JoinHandle<()> {
    let retired_for = config.settings.revocation_lifetime();
    tokio::spawn(async move {
        let mut seen = file.modified();
        let mut in_use: Option<KeySet> = KeySet::load(file.path()).ok().flatten();
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = clock.now();
            if let Some(interval) = config.rotation_interval {
                match file.rotate_if_due(config.algorithm, now, interval, retired_for) {
                    Ok(true) => tracing::info!("signing key rotated (automatic interval)"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "automatic key rotation failed"),
                }
            }
            let modified = file.modified();
            if modified != seen {
                match KeySet::load(file.path()) {
                    Ok(Some(set)) => {
                        seen = modified;
                        in_use = Some(set);
                    }
                    Ok(None) => {
                        tracing::warn!(file = %file.path().display(), "key file missing; keeping the keys in memory")
                    }
                    Err(e) => tracing::warn!(error = %e, "key file unreadable; keeping the keys in memory"),
                }
                if seen != modified {
                    continue;
                }
            } else if !in_use.as_mut().is_some_and(|set| set.prune(now)) {
                continue;
            }
            let Some(set) = in_use.as_mut() else { continue };
            set.prune(now);
            match tokens.set_keys(set) {
                Ok(()) => tracing::info!(current = ?set.current().map(|k| &k.kid), "signing keys in use updated"),
                Err(e) => tracing::error!(error = %e, "key file unusable; keeping the previous keys"),
            }
        }
    })
}
