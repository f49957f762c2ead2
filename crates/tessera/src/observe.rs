//! What happens to sessions, told to an observer the application installs
//! ([`SessionLayerBuilder::observer`](crate::SessionLayerBuilder::observer)):
//! for metrics, audit logs or notifications, without the library depending
//! on any of them.
//!
//! The observer is called inline, on the request's task, after the store
//! has done what the event reports: it must be quick and must not block
//! (count, or hand the event to a bounded queue).

use std::fmt;
use std::sync::Arc;

use crate::carrier::CarrierKind;
use crate::record::{ClientMeta, UserId};
use crate::token::SessionKey;

/// Why sessions ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// The holder logged out.
    Logout,
    /// The holder logged in again: the session it had was replaced by the
    /// new one (token rotation on login).
    Replaced,
    /// Ended by its user from another session (one device, or "end my
    /// other sessions").
    Revoked,
    /// "Log out everywhere".
    Everywhere,
    /// The oldest session beyond the per-user cap.
    Capped,
    /// Token mode: a refresh token was presented after it had been rotated
    /// away (one of its holders is a thief); the whole family ended.
    RefreshReuse,
}

impl EndReason {
    /// Every reason, in a fixed order.
    pub const ALL: [EndReason; 6] = [
        EndReason::Logout,
        EndReason::Replaced,
        EndReason::Revoked,
        EndReason::Everywhere,
        EndReason::Capped,
        EndReason::RefreshReuse,
    ];

    /// A stable lower-case name (`logout`, `replaced`, `revoked`,
    /// `everywhere`, `capped`, `refresh_reuse`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Replaced => "replaced",
            Self::Revoked => "revoked",
            Self::Everywhere => "everywhere",
            Self::Capped => "capped",
            Self::RefreshReuse => "refresh_reuse",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened to sessions during a request.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum SessionEvent<'a> {
    /// A session was written for the first time: a login (`user` set) or
    /// a new anonymous session (`user` is `None`).
    Created {
        /// The new session (in token mode, the family).
        session: &'a SessionKey,
        /// Who logged in, if anyone.
        user: Option<&'a UserId>,
        /// The client that opened it (user agent, address).
        client: &'a ClientMeta,
        /// The carrier its credentials go back in.
        carrier: CarrierKind,
    },
    /// Sessions ended, `count` of them (0 when the store had none to end).
    /// A session that merely times out is not reported: it lapses in the
    /// store without a request deciding it.
    Ended {
        /// Why.
        reason: EndReason,
        /// Whose, when the request knew.
        user: Option<&'a UserId>,
        /// The session ended, when exactly one is named.
        session: Option<&'a SessionKey>,
        /// How many ended.
        count: u64,
    },
}

/// Told every [`SessionEvent`]. Implemented for any
/// `Fn(&SessionEvent) + Send + Sync`.
pub trait SessionObserver: Send + Sync + 'static {
    /// Called after the store did what `event` reports.
    fn observe(&self, event: &SessionEvent<'_>);
}

impl<F> SessionObserver for F
where
    F: Fn(&SessionEvent<'_>) + Send + Sync + 'static,
{
    fn observe(&self, event: &SessionEvent<'_>) {
        self(event)
    }
}

/// An installed observer (or none).
#[derive(Clone, Default)]
pub(crate) struct Observer(Option<Arc<dyn SessionObserver>>);

impl Observer {
    pub(crate) fn new(observer: Arc<dyn SessionObserver>) -> Self {
        Self(Some(observer))
    }

    pub(crate) fn tell(&self, event: SessionEvent<'_>) {
        if let Some(observer) = &self.0 {
            observer.observe(&event);
        }
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Observer(installed)" } else { "Observer(none)" })
    }
}
