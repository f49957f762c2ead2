//! When a session expires and when it is worth writing that it was used.

use std::time::Duration;

use crate::clock::Timestamp;

/// Idle and absolute timeouts and the touch throttle.
///
/// All deadlines are computed from server-side time. Activity moves the idle
/// deadline forward but never past the absolute deadline, which is fixed
/// when the session is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryPolicy {
    idle: Duration,
    absolute: Duration,
    touch_interval: Duration,
}

/// Why an [`ExpiryPolicy`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A timeout of zero would expire every session at once.
    #[error("timeouts must be longer than zero")]
    Zero,
    /// The idle timeout cannot exceed the absolute timeout.
    #[error("the idle timeout must not exceed the absolute timeout")]
    IdleBeyondAbsolute,
    /// A touch interval of the idle timeout or more would let active sessions lapse.
    #[error("the touch interval must be shorter than the idle timeout")]
    TouchTooSlow,
}

impl Default for ExpiryPolicy {
    /// 30 minutes idle, 12 hours absolute, touch at most every 3 minutes.
    fn default() -> Self {
        Self::new(Duration::from_secs(30 * 60), Duration::from_secs(12 * 3600)).expect("the defaults are valid")
    }
}

impl ExpiryPolicy {
    /// A policy whose touch interval is one tenth of the idle timeout.
    pub fn new(idle: Duration, absolute: Duration) -> Result<Self, PolicyError> {
        Self::with_touch_interval(idle, absolute, idle / 10)
    }

    /// A policy with an explicit touch interval.
    pub fn with_touch_interval(
        idle: Duration,
        absolute: Duration,
        touch_interval: Duration,
    ) -> Result<Self, PolicyError> {
        if idle.is_zero() || absolute.is_zero() {
            return Err(PolicyError::Zero);
        }
        if idle > absolute {
            return Err(PolicyError::IdleBeyondAbsolute);
        }
        if touch_interval >= idle {
            return Err(PolicyError::TouchTooSlow);
        }
        Ok(Self { idle, absolute, touch_interval })
    }

    /// The idle timeout.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// The absolute timeout.
    pub fn absolute(&self) -> Duration {
        self.absolute
    }

    /// The least time between two touches of one session.
    pub fn touch_interval(&self) -> Duration {
        self.touch_interval
    }

    /// The absolute deadline of a session created at `created`.
    pub fn absolute_deadline(&self, created: Timestamp) -> Timestamp {
        created + self.absolute
    }

    /// The idle deadline after activity at `now`, capped by `absolute_deadline`.
    pub fn idle_deadline(&self, now: Timestamp, absolute_deadline: Timestamp) -> Timestamp {
        (now + self.idle).min(absolute_deadline)
    }

    /// Whether a session seen last at `last_seen` should be touched at `now`.
    pub fn touch_due(&self, last_seen: Timestamp, now: Timestamp) -> bool {
        now.since(last_seen) >= self.touch_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_millis(minutes * 60_000)
    }

    #[test]
    fn defaults_are_thirty_minutes_twelve_hours_and_a_tenth() {
        let p = ExpiryPolicy::default();
        assert_eq!(p.idle(), 30 * MIN);
        assert_eq!(p.absolute(), 12 * 60 * MIN);
        assert_eq!(p.touch_interval(), 3 * MIN);
    }

    #[test]
    fn idle_deadline_never_passes_the_absolute_deadline() {
        let p = ExpiryPolicy::new(30 * MIN, 60 * MIN).unwrap();
        let abs = p.absolute_deadline(at(0));
        assert_eq!(abs, at(60));
        assert_eq!(p.idle_deadline(at(10), abs), at(40));
        assert_eq!(p.idle_deadline(at(45), abs), at(60));
        assert_eq!(p.idle_deadline(at(59), abs), at(60));
    }

    #[test]
    fn touch_is_due_once_per_interval() {
        let p = ExpiryPolicy::new(30 * MIN, 60 * MIN).unwrap();
        assert!(!p.touch_due(at(0), at(0)));
        assert!(!p.touch_due(at(0), at(3) - Duration::from_millis(1)));
        assert!(p.touch_due(at(0), at(3)));
        // A clock that went backwards never makes a touch due.
        assert!(!p.touch_due(at(5), at(4)));
    }

    #[test]
    fn nonsense_policies_are_refused() {
        assert_eq!(ExpiryPolicy::new(Duration::ZERO, MIN), Err(PolicyError::Zero));
        assert_eq!(ExpiryPolicy::new(2 * MIN, MIN), Err(PolicyError::IdleBeyondAbsolute));
        assert_eq!(ExpiryPolicy::with_touch_interval(MIN, MIN, MIN), Err(PolicyError::TouchTooSlow));
    }
}
