//! What a chaos run records: every request a client made (who, where,
//! what, with which credential, when it was invoked and when it completed,
//! and how it ended), the faults injected and when they were active, and
//! the probes run after faults. The checker judges only this record, so it
//! can be tested on small hand-written histories.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A credential as the clients know it: one opaque session, or one token
/// family (its access token and refresh token change on refresh, its id
/// does not).
pub type CredId = u64;

/// What a request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `POST /user/login` (password, header carrier).
    Login,
    /// `GET /user/me`.
    Me,
    /// `POST /auth/refresh` with the current refresh token (token mode).
    Refresh,
    /// `POST /user/logout`.
    Logout,
    /// `POST /user/logout-everywhere`.
    LogoutEverywhere,
    /// `DELETE /user/sessions`.
    RevokeOthers,
    /// `POST /auth/refresh` with a refresh token already rotated away, past
    /// the grace window: a theft verdict, which revokes the family.
    Theft,
}

impl Op {
    /// Whether a 200 means the node took the credential as live. `logout` is
    /// idempotent (200 for an ended session too) and a theft is judged by
    /// its 401, so neither is.
    pub fn accepts_credential(self) -> bool {
        matches!(self, Op::Me | Op::Refresh | Op::LogoutEverywhere | Op::RevokeOthers)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Op::Login => "login",
            Op::Me => "me",
            Op::Refresh => "refresh",
            Op::Logout => "logout",
            Op::LogoutEverywhere => "logout-everywhere",
            Op::RevokeOthers => "revoke-others",
            Op::Theft => "theft-refresh",
        };
        f.write_str(name)
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer.
    Status {
        /// The status code.
        code: u16,
        /// Whether `Retry-After` was present.
        retry_after: bool,
        /// The envelope's `errCode`, for failures.
        err_code: Option<u64>,
    },
    /// No answer: connection refused or reset, or the client's own timeout.
    Transport(String),
}

impl Outcome {
    /// A plain status without `Retry-After` or `errCode`.
    pub fn status(code: u16) -> Self {
        Outcome::Status { code, retry_after: false, err_code: None }
    }

    /// The status code, if there was an answer.
    pub fn code(&self) -> Option<u16> {
        match self {
            Outcome::Status { code, .. } => Some(*code),
            Outcome::Transport(_) => None,
        }
    }

    /// Whether the answer was 200.
    pub fn ok(&self) -> bool {
        self.code() == Some(200)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Status { code, retry_after, err_code } => {
                write!(f, "{code}")?;
                if let Some(e) = err_code {
                    write!(f, "/{e}")?;
                }
                if *retry_after {
                    f.write_str(" (Retry-After)")?;
                }
                Ok(())
            }
            Outcome::Transport(e) => write!(f, "transport error: {e}"),
        }
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct Record {
    /// Which load client (or probe) made it.
    pub client: usize,
    /// Which node slot it went to (a restarted node keeps its slot).
    pub node: usize,
    /// What it did.
    pub op: Op,
    /// The user whose credential (or password) it used.
    pub user: usize,
    /// The credential it presented (none for a login).
    pub cred: Option<CredId>,
    /// The credential a successful login created.
    pub issued: Option<CredId>,
    /// When the client sent it, since the start of the run.
    pub invoked: Duration,
    /// When the client had the answer (or gave up).
    pub completed: Duration,
    /// The answer.
    pub outcome: Outcome,
}

/// What kind of fault, for the rules that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The node's proxy to Redis frozen (half-open partition).
    Partition,
    /// The node's connections to Redis reset.
    Reset,
    /// Latency on the node's link to Redis.
    Latency,
    /// Redis stopped with SIGSTOP (alive, silent).
    RedisPause,
    /// Redis killed and restarted with nothing (no persistence): every
    /// session and revocation in it is gone.
    RedisWipe,
    /// Redis killed and restarted from its append-only file.
    RedisCrash,
    /// A node killed with SIGKILL and restarted: transport errors to it are
    /// expected while it is down.
    NodeCrash,
    /// Slow partial requests held open against a node.
    Slowloris,
    /// A Sentinel failover (asked for, or forced by a frozen master).
    Failover,
}

/// One injected fault: active from `start` until `end`.
#[derive(Debug, Clone)]
pub struct Fault {
    /// What it was.
    pub kind: FaultKind,
    /// A readable description, e.g. "partition n0 1500ms".
    pub label: String,
    /// The node it concerned, if one.
    pub node: Option<usize>,
    /// When it was injected.
    pub start: Duration,
    /// When it was healed (the node is listening again, Redis answers PING…).
    pub end: Duration,
}

impl Fault {
    /// Whether it was active at `t`, with `margin` of slack after the heal.
    pub fn active_at(&self, t: Duration, margin: Duration) -> bool {
        self.start <= t && t <= self.end + margin
    }
}

/// A check run after a fault healed: did the node serve again (a fresh
/// login and `/user/me` both 200), and when.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The node slot.
    pub node: usize,
    /// The fault's label.
    pub fault: String,
    /// When the fault healed.
    pub healed: Duration,
    /// When the node first served again, if it did before the probe gave up.
    pub served: Option<Duration>,
    /// The last failed attempt's answer, to say why it did not.
    pub last_failure: Option<String>,
}

/// A credential acknowledged before a fault that must still be valid after
/// it (a node crash loses no session).
#[derive(Debug, Clone)]
pub struct Survival {
    /// The credential.
    pub cred: CredId,
    /// The node slot asked afterwards.
    pub node: usize,
    /// The fault's label.
    pub fault: String,
    /// When it was asked (the last attempt).
    pub at: Duration,
    /// The last answer (200 once it said 200).
    pub outcome: Outcome,
}

/// What became of a slowloris burst's connections.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Connections attempted.
    pub attempted: usize,
    /// Not accepted within a second (the listen backlog overflowed, or the
    /// node is at its connection cap).
    pub refused: usize,
    /// Closed (or answered) by the node before the burst ended.
    pub closed_by_server: usize,
    /// Still open, still dribbling, when the burst ended.
    pub held: usize,
}

/// A slowloris burst against one node.
#[derive(Debug, Clone)]
pub struct Burst {
    /// The node slot.
    pub node: usize,
    /// When it started.
    pub start: Duration,
    /// How long each connection dribbled.
    pub length: Duration,
    /// The node's `--header-read-timeout-ms`, when the suite set one.
    pub header_timeout: Option<Duration>,
    /// The connections' fates.
    pub tally: Tally,
}

/// One span of the run, reported as one row of the table.
#[derive(Debug, Clone)]
pub struct Phase {
    /// The scenario, e.g. "partition".
    pub name: String,
    /// Start of the phase.
    pub start: Duration,
    /// End of the phase.
    pub end: Duration,
}

/// Everything recorded in a run.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    /// Every request, in completion order.
    pub records: Vec<Record>,
    /// Faults injected.
    pub faults: Vec<Fault>,
    /// Post-fault recovery probes.
    pub recoveries: Vec<Recovery>,
    /// Post-crash survival checks.
    pub survivals: Vec<Survival>,
    /// Logout acknowledged → another node's first 401, as (acknowledged at, took).
    pub propagation: Vec<(Duration, Duration)>,
    /// Slowloris bursts.
    pub bursts: Vec<Burst>,
    /// Lines of node stderr that show a panic, as (node slot, line).
    pub panics: Vec<(usize, String)>,
    /// The phases, for the table.
    pub phases: Vec<Phase>,
    /// Notes printed under the table (slowloris counts, flags in use…).
    pub notes: Vec<String>,
}

/// The shared, append-only recorder every task writes to; times are taken
/// against one start instant.
#[derive(Debug, Clone)]
pub struct History {
    t0: Instant,
    inner: Arc<Mutex<Recorded>>,
}

impl History {
    /// A history starting now.
    pub fn new() -> Self {
        Self { t0: Instant::now(), inner: Arc::default() }
    }

    /// Time since the start.
    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Appends to the record under the lock.
    pub fn with<R>(&self, f: impl FnOnce(&mut Recorded) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Adds one request.
    pub fn record(&self, record: Record) {
        self.with(|r| r.records.push(record));
    }

    /// A copy of everything so far.
    pub fn snapshot(&self) -> Recorded {
        self.with(|r| r.clone())
    }
}

/// `12.345s`.
pub fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// `+412ms` / `-3ms`: `t` relative to `reference`.
pub fn relative(t: Duration, reference: Duration) -> String {
    if t >= reference {
        format!("+{}ms", (t - reference).as_millis())
    } else {
        format!("-{}ms", (reference - t).as_millis())
    }
}
