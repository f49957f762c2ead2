//! Server-side time, injectable so that tests can jump past a timeout
//! instead of sleeping through it.

use std::fmt;
use std::ops::{Add, Sub};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Wraps a count of milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch, rounded down.
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(millis(rhs)))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(millis(rhs)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(millis(since))
    }
}

/// A clock that only moves when told to. Clones share one time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.0)))
    }

    /// A clock stopped at the current system time.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(millis(by), Ordering::SeqCst);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: Timestamp) {
        self.0.store(to.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// One time read once, the first time it is asked for, and the same
/// after: a request's "now". An atomic with a sentinel rather than a
/// `OnceLock`, whose first `get_or_init` goes through `Once`'s general
/// slow path (some eighty instructions on every request that looks at its
/// session); two threads asking at once both read the clock and keep
/// whichever was stored first.
#[derive(Debug)]
pub(crate) struct TimeOnce(AtomicI64);

impl TimeOnce {
    /// Not read yet: no clock gives this time (292 million years BC).
    const UNREAD: i64 = i64::MIN;

    pub(crate) const fn new() -> Self {
        Self(AtomicI64::new(Self::UNREAD))
    }

    /// The time read first, reading it with `read` if none was yet.
    pub(crate) fn get_or_read(&self, read: impl FnOnce() -> Timestamp) -> Timestamp {
        let kept = self.0.load(Ordering::Acquire);
        if kept != Self::UNREAD {
            return Timestamp(kept);
        }
        let read = read().0.max(Self::UNREAD + 1);
        match self.0.compare_exchange(Self::UNREAD, read, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Timestamp(read),
            Err(first) => Timestamp(first),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_once_is_read_once_and_kept() {
        let clock = ManualClock::new(Timestamp::from_millis(5));
        let once = TimeOnce::new();
        assert_eq!(once.get_or_read(|| clock.now()), Timestamp::from_millis(5));
        clock.advance(Duration::from_secs(1));
        assert_eq!(once.get_or_read(|| clock.now()), Timestamp::from_millis(5), "kept, not read again");
        assert_eq!(once.get_or_read(|| unreachable!("read twice")), Timestamp::from_millis(5));
    }

    #[test]
    fn a_time_once_never_mistakes_a_reading_for_unread() {
        let once = TimeOnce::new();
        let earliest = once.get_or_read(|| Timestamp::from_millis(i64::MIN));
        assert_eq!(once.get_or_read(|| Timestamp::from_millis(0)), earliest);
    }

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let clock = ManualClock::new(Timestamp::from_millis(1_000));
        let other = clock.clone();
        assert_eq!(clock.now(), Timestamp::from_millis(1_000));
        other.advance(Duration::from_secs(2));
        assert_eq!(clock.now(), Timestamp::from_millis(3_000));
    }

    #[test]
    fn timestamp_arithmetic_saturates() {
        let t = Timestamp::from_millis(i64::MAX - 1);
        assert_eq!(t + Duration::from_secs(10), Timestamp::from_millis(i64::MAX));
        assert_eq!(Timestamp::from_millis(5).since(Timestamp::from_millis(9)), Duration::ZERO);
        assert_eq!(Timestamp::from_millis(-1).as_secs(), -1);
    }
}
