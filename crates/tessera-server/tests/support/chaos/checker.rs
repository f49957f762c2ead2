//! Judges a recorded chaos run. Every rule reads only the [`Recorded`]
//! history, so each is tested below on hand-made histories that must pass
//! and ones that must fail.
//!
//! The rules:
//! - **stale accept**: once a credential's end (logout, logout everywhere,
//!   revoke others, theft verdict) was acknowledged at `T`, no node may
//!   accept it (200 on an operation that needs a live credential) for a
//!   request invoked after `T + stale bound`;
//! - **server error**: no 5xx but 503, and every 503 carries `Retry-After`;
//! - **slow**: every request completes within the deadline;
//! - **transport error**: a node that is up answers (errors are expected
//!   only while the node is deliberately down);
//! - **no recovery**: every node serves again within the recovery bound
//!   after a fault heals;
//! - **lost**: credentials acknowledged before a crash are valid after it;
//! - **slowloris held**: a node given a header-read deadline drops
//!   connections that dribble their headers for longer than that;
//! - **panic**: no node panicked.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use super::history::{relative, secs, Burst, CredId, Fault, FaultKind, Op, Outcome, Record, Recorded};

/// The limits the rules apply.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// How long after an acknowledged end a node may still accept.
    pub stale: Duration,
    /// How long any request may take.
    pub deadline: Duration,
    /// How long after a heal a node may take to serve again.
    pub recovery: Duration,
    /// Slack after a node's restart during which errors to it are expected.
    pub down_margin: Duration,
    /// Slack past a header-read deadline before a held slowloris connection
    /// counts.
    pub header_slack: Duration,
    /// After a Sentinel failover, how long until every node must have left
    /// the old master (the sentinels agree, the node asks them once per
    /// lease): an end acknowledged before then may be honoured until then
    /// plus `stale` (the README's documented Sentinel bound).
    pub failover_settle: Duration,
}

/// How a credential came to be ended.
#[derive(Debug, Clone)]
pub struct End {
    /// When the end was acknowledged (the answer's completion).
    pub at: Duration,
    /// The node that acknowledged it.
    pub node: usize,
    /// The operation that ended it.
    pub op: Op,
    /// The credential the ending request presented.
    pub by: CredId,
}

/// A broken rule, with what is needed to find the cause.
#[derive(Debug, Clone)]
pub enum Violation {
    /// An ended credential accepted after the bound.
    StaleAccept { record: Record, end: End, faults_at_end: Vec<String>, faults_since_end: Vec<String> },
    /// A 5xx other than 503, or a 503 without `Retry-After`.
    ServerError { record: Record, faults: Vec<String> },
    /// A request that took longer than the deadline.
    Slow { record: Record, faults: Vec<String> },
    /// No answer from a node that was up.
    TransportError { record: Record, faults: Vec<String> },
    /// A node that did not serve again in time after a fault healed.
    NoRecovery { node: usize, fault: String, healed: Duration, served: Option<Duration>, last: Option<String> },
    /// A credential acknowledged before a crash, refused after it.
    Lost { cred: CredId, node: usize, fault: String, at: Duration, outcome: Outcome },
    /// Slowloris connections a node kept past its header-read deadline.
    SlowlorisHeld { burst: Burst },
    /// A panic in a node's stderr.
    Panic { node: usize, line: String },
}

impl Violation {
    /// A short name, for counting by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Violation::StaleAccept { .. } => "stale-accept",
            Violation::ServerError { record, .. } if record.outcome.code() == Some(503) => "503-without-retry-after",
            Violation::ServerError { .. } => "server-error",
            Violation::Slow { .. } => "slow",
            Violation::TransportError { .. } => "transport-error",
            Violation::NoRecovery { .. } => "no-recovery",
            Violation::Lost { .. } => "lost-credential",
            Violation::SlowlorisHeld { .. } => "slowloris-held",
            Violation::Panic { .. } => "panic",
        }
    }

    /// When it happened, to place it in a phase (panics have no time: `None`).
    pub fn at(&self) -> Option<Duration> {
        match self {
            Violation::StaleAccept { record, .. }
            | Violation::ServerError { record, .. }
            | Violation::Slow { record, .. }
            | Violation::TransportError { record, .. } => Some(record.invoked),
            Violation::NoRecovery { healed, .. } => Some(*healed),
            Violation::Lost { at, .. } => Some(*at),
            Violation::SlowlorisHeld { burst } => Some(burst.start),
            Violation::Panic { .. } => None,
        }
    }
}

fn request(r: &Record) -> String {
    format!(
        "client {} {} on n{} cred {} invoked {} completed {} ({}ms) → {}",
        r.client,
        r.op,
        r.node,
        r.cred.map_or("-".into(), |c| c.to_string()),
        secs(r.invoked),
        secs(r.completed),
        (r.completed - r.invoked).as_millis(),
        r.outcome
    )
}

fn faults_text(faults: &[String]) -> String {
    if faults.is_empty() {
        "none".into()
    } else {
        faults.join(", ")
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::StaleAccept { record, end, faults_at_end, faults_since_end } => write!(
                f,
                "cred {} accepted by n{} ({} → {}) invoked {} after its end ({} by cred {}) was acknowledged \
                 by n{} at {} (request invoked {}, completed {}); faults active at the end: {}; from the end \
                 to the request: {}",
                record.cred.unwrap_or_default(),
                record.node,
                record.op,
                record.outcome,
                relative(record.invoked, end.at),
                end.op,
                end.by,
                end.node,
                secs(end.at),
                secs(record.invoked),
                secs(record.completed),
                faults_text(faults_at_end),
                faults_text(faults_since_end)
            ),
            Violation::ServerError { record, faults }
            | Violation::Slow { record, faults }
            | Violation::TransportError { record, faults } => {
                write!(f, "{}; faults: {}", request(record), faults_text(faults))
            }
            Violation::NoRecovery { node, fault, healed, served, last } => write!(
                f,
                "n{node} did not serve within the bound after `{fault}` healed at {}: {}; last failure: {}",
                secs(*healed),
                served.map_or("never served while probed".into(), |s| format!("served at {}", relative(s, *healed))),
                last.as_deref().unwrap_or("-")
            ),
            Violation::Lost { cred, node, fault, at, outcome } => {
                write!(f, "cred {cred} acknowledged before `{fault}` refused by n{node} at {}: {outcome}", secs(*at))
            }
            Violation::SlowlorisHeld { burst } => write!(
                f,
                "n{} still held {} of {} slowloris connections {}ms after they started, with a header-read \
                 deadline of {:?} ({} closed by the node, {} not accepted within 1 s)",
                burst.node,
                burst.tally.held,
                burst.tally.attempted,
                burst.length.as_millis(),
                burst.header_timeout.unwrap_or_default(),
                burst.tally.closed_by_server,
                burst.tally.refused
            ),
            Violation::Panic { node, line } => write!(f, "n{node}: {line}"),
        }
    }
}

/// Applies every rule to `recorded`.
pub fn check(recorded: &Recorded, bounds: &Bounds) -> Vec<Violation> {
    let mut violations = stale_accepts(recorded, bounds);
    for record in &recorded.records {
        violations.extend(request_violation(record, &recorded.faults, bounds));
    }
    violations.extend(recoveries(recorded, bounds));
    violations.extend(recorded.survivals.iter().filter(|s| !s.outcome.ok()).map(|s| Violation::Lost {
        cred: s.cred,
        node: s.node,
        fault: s.fault.clone(),
        at: s.at,
        outcome: s.outcome.clone(),
    }));
    violations.extend(
        recorded
            .bursts
            .iter()
            .filter(|b| slowloris_held(b, bounds))
            .map(|b| Violation::SlowlorisHeld { burst: b.clone() }),
    );
    violations.extend(recorded.panics.iter().map(|(node, line)| Violation::Panic { node: *node, line: line.clone() }));
    violations
}

/// Whether a burst outlived the node's header-read deadline (plus slack)
/// and the node still held some of its connections.
fn slowloris_held(burst: &Burst, bounds: &Bounds) -> bool {
    burst.header_timeout.is_some_and(|t| t + bounds.header_slack <= burst.length) && burst.tally.held > 0
}

/// Labels of the faults active at `t`.
pub fn active(faults: &[Fault], t: Duration) -> Vec<String> {
    faults.iter().filter(|f| f.active_at(t, Duration::ZERO)).map(|f| f.label.clone()).collect()
}

/// Labels of the faults active at some point of `from..=to`.
pub fn overlapping(faults: &[Fault], from: Duration, to: Duration) -> Vec<String> {
    faults.iter().filter(|f| f.start <= to && f.end >= from).map(|f| f.label.clone()).collect()
}

/// When each credential's end was first acknowledged.
pub fn ends(recorded: &Recorded) -> HashMap<CredId, End> {
    let logins = logins_by_user(&recorded.records);
    let mut ends: HashMap<CredId, End> = HashMap::new();
    for r in &recorded.records {
        let Some(by) = r.cred else { continue };
        let end = End { at: r.completed, node: r.node, op: r.op, by };
        for cred in ended_by(r, by, &logins, recorded) {
            match ends.get(&cred) {
                Some(known) if known.at <= end.at => {}
                _ => {
                    ends.insert(cred, end.clone());
                }
            }
        }
    }
    ends
}

/// (credential, login completed) per user, for the operations that end
/// all of a user's credentials.
fn logins_by_user(records: &[Record]) -> HashMap<usize, Vec<(CredId, Duration)>> {
    let mut logins: HashMap<usize, Vec<(CredId, Duration)>> = HashMap::new();
    for r in records.iter().filter(|r| r.op == Op::Login && r.outcome.ok()) {
        if let Some(cred) = r.issued {
            logins.entry(r.user).or_default().push((cred, r.completed));
        }
    }
    logins
}

/// The credentials request `r` (presenting `by`) ended, if it was
/// acknowledged. "Everywhere" and "others" end the user's credentials whose
/// login had completed before the request was invoked; logins racing it
/// are not judged.
fn ended_by(
    r: &Record,
    by: CredId,
    logins: &HashMap<usize, Vec<(CredId, Duration)>>,
    recorded: &Recorded,
) -> Vec<CredId> {
    let before = || logins.get(&r.user).into_iter().flatten().filter(|(_, done)| *done < r.invoked).map(|(c, _)| *c);
    match r.op {
        Op::Logout if r.outcome.ok() => vec![by],
        Op::LogoutEverywhere if r.outcome.ok() => before().chain([by]).collect(),
        Op::RevokeOthers if r.outcome.ok() => before().filter(|c| *c != by).collect(),
        Op::Theft if theft_verdict(r) && !wiped_since_confirmed(r, by, recorded) => vec![by],
        _ => Vec::new(),
    }
}

/// 401 with REFRESH_TOKEN_INVALID: the family is revoked.
fn theft_verdict(r: &Record) -> bool {
    matches!(r.outcome, Outcome::Status { code: 401, err_code: Some(20009), .. })
}

/// Whether Redis lost everything between the last time the store confirmed
/// credential `by` (a login or refresh answered 200) and theft request `r`:
/// then the refusal is "unknown token", not a revocation.
fn wiped_since_confirmed(r: &Record, by: CredId, recorded: &Recorded) -> bool {
    let confirmed = recorded
        .records
        .iter()
        .filter(|x| {
            x.outcome.ok()
                && ((x.op == Op::Login && x.issued == Some(by)) || (x.op == Op::Refresh && x.cred == Some(by)))
        })
        .map(|x| x.invoked)
        .filter(|t| *t < r.invoked)
        .max()
        .unwrap_or_default();
    // A failover loses what the old master had not yet replicated (Redis
    // replication is asynchronous): a just-rotated token may be unknown.
    recorded.faults.iter().any(|f| {
        matches!(f.kind, FaultKind::RedisWipe | FaultKind::Failover) && f.end >= confirmed && f.start <= r.completed
    })
}

/// Until when an end acknowledged at `at` may still be honoured: `stale`
/// after it, or, if a Sentinel failover was under way or had just healed,
/// `stale` after every node must have left the old master.
fn honoured_until(at: Duration, faults: &[Fault], bounds: &Bounds) -> Duration {
    let settling = faults
        .iter()
        .filter(|f| f.kind == FaultKind::Failover && f.start <= at && at <= f.end + bounds.failover_settle)
        .map(|f| f.end + bounds.failover_settle)
        .max();
    settling.map_or(at, |settled| settled.max(at)) + bounds.stale
}

fn stale_accepts(recorded: &Recorded, bounds: &Bounds) -> Vec<Violation> {
    let ends = ends(recorded);
    recorded
        .records
        .iter()
        .filter(|r| r.op.accepts_credential() && r.outcome.ok())
        .filter_map(|r| {
            let end = ends.get(&r.cred?)?;
            (r.invoked > honoured_until(end.at, &recorded.faults, bounds)).then(|| Violation::StaleAccept {
                record: r.clone(),
                end: end.clone(),
                faults_at_end: active(&recorded.faults, end.at),
                faults_since_end: overlapping(&recorded.faults, end.at, r.invoked),
            })
        })
        .collect()
}

/// The per-request rules: status, deadline, transport errors.
fn request_violation(r: &Record, faults: &[Fault], bounds: &Bounds) -> Option<Violation> {
    let context = || active(faults, r.invoked);
    let node_down = || {
        faults.iter().any(|f| {
            f.kind == FaultKind::NodeCrash
                && f.node == Some(r.node)
                && (f.active_at(r.invoked, bounds.down_margin) || f.active_at(r.completed, bounds.down_margin))
        })
    };
    match &r.outcome {
        Outcome::Transport(_) if node_down() => None,
        Outcome::Transport(_) => Some(Violation::TransportError { record: r.clone(), faults: context() }),
        Outcome::Status { code: 503, retry_after: false, .. } => {
            Some(Violation::ServerError { record: r.clone(), faults: context() })
        }
        Outcome::Status { code, .. } if *code >= 500 && *code != 503 => {
            Some(Violation::ServerError { record: r.clone(), faults: context() })
        }
        _ if r.completed - r.invoked > bounds.deadline => {
            Some(Violation::Slow { record: r.clone(), faults: context() })
        }
        _ => None,
    }
}

fn recoveries(recorded: &Recorded, bounds: &Bounds) -> Vec<Violation> {
    recorded
        .recoveries
        .iter()
        .filter(|r| r.served.is_none_or(|s| s > r.healed + bounds.recovery))
        .map(|r| Violation::NoRecovery {
            node: r.node,
            fault: r.fault.clone(),
            healed: r.healed,
            served: r.served,
            last: r.last_failure.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::history::{Recovery, Survival, Tally};
    use super::*;

    const BOUNDS: Bounds = Bounds {
        stale: Duration::from_millis(300),
        deadline: Duration::from_secs(2),
        recovery: Duration::from_secs(2),
        down_margin: Duration::from_millis(300),
        header_slack: Duration::from_secs(1),
        failover_settle: Duration::from_millis(1500),
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A request by client 0 of user 0 taking 5 ms.
    fn req(op: Op, node: usize, cred: Option<CredId>, invoked: u64, outcome: Outcome) -> Record {
        Record {
            client: 0,
            node,
            op,
            user: 0,
            cred,
            issued: None,
            invoked: ms(invoked),
            completed: ms(invoked + 5),
            outcome,
        }
    }

    fn login(cred: CredId, at: u64) -> Record {
        Record { issued: Some(cred), ..req(Op::Login, 0, None, at, Outcome::status(200)) }
    }

    fn history(records: Vec<Record>) -> Recorded {
        Recorded { records, ..Default::default() }
    }

    fn kinds(recorded: &Recorded) -> Vec<&'static str> {
        check(recorded, &BOUNDS).iter().map(Violation::kind).collect()
    }

    fn fault(kind: FaultKind, node: Option<usize>, start: u64, end: u64) -> Fault {
        Fault { kind, label: format!("{kind:?}"), node, start: ms(start), end: ms(end) }
    }

    #[test]
    fn a_clean_history_passes() {
        let unavailable = Outcome::Status { code: 503, retry_after: true, err_code: Some(10004) };
        let recorded = history(vec![
            login(1, 0),
            req(Op::Me, 1, Some(1), 20, Outcome::status(200)),
            req(Op::Me, 2, Some(1), 40, unavailable),
            req(Op::Logout, 0, Some(1), 100, Outcome::status(200)),
            // Within the bound a stale 200 is allowed ...
            req(Op::Me, 1, Some(1), 300, Outcome::status(200)),
            // ... after it, refusals are what we want; logout stays idempotent.
            req(Op::Me, 2, Some(1), 900, Outcome::status(401)),
            req(Op::Logout, 2, Some(1), 950, Outcome::status(200)),
        ]);
        assert_eq!(kinds(&recorded), Vec::<&str>::new());
    }

    #[test]
    fn an_ended_credential_accepted_after_the_bound_is_reported_with_its_context() {
        let mut recorded = history(vec![
            login(1, 0),
            req(Op::Logout, 0, Some(1), 100, Outcome::status(200)),
            req(Op::Me, 2, Some(1), 500, Outcome::status(200)),
        ]);
        recorded.faults.push(fault(FaultKind::Partition, Some(2), 50, 1500));
        let violations = check(&recorded, &BOUNDS);
        assert_eq!(violations.len(), 1, "{violations:?}");
        let Violation::StaleAccept { record, end, faults_at_end, .. } = &violations[0] else {
            panic!("{violations:?}")
        };
        assert_eq!((record.cred, record.node, end.at, end.node), (Some(1), 2, ms(105), 0));
        assert_eq!(faults_at_end, &["Partition".to_string()]);
        let text = violations[0].to_string();
        assert!(text.contains("cred 1 accepted by n2") && text.contains("+395ms"), "{text}");
    }

    #[test]
    fn a_failover_extends_the_bound_until_the_nodes_must_have_left_the_old_master() {
        let mut recorded = history(vec![
            login(1, 0),
            login(2, 0),
            req(Op::Logout, 0, Some(1), 1000, Outcome::status(200)),
            req(Op::Me, 2, Some(1), 2500, Outcome::status(200)), // settling: allowed
            req(Op::Me, 2, Some(1), 2900, Outcome::status(200)), // past settle + stale: stale
            req(Op::Logout, 0, Some(2), 5000, Outcome::status(200)),
            req(Op::Me, 2, Some(2), 5400, Outcome::status(200)), // long after the failover: stale
        ]);
        recorded.faults.push(fault(FaultKind::Failover, None, 500, 900));
        let stale: Vec<_> = check(&recorded, &BOUNDS)
            .into_iter()
            .map(|v| match v {
                Violation::StaleAccept { record, .. } => (record.cred.unwrap(), record.invoked),
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(stale, vec![(1, ms(2900)), (2, ms(5400))]);
    }

    #[test]
    fn everywhere_and_others_end_earlier_logins_only() {
        let records = vec![
            login(1, 0),
            login(2, 10),
            req(Op::RevokeOthers, 0, Some(2), 100, Outcome::status(200)),
            login(3, 200),
            req(Op::Me, 1, Some(2), 600, Outcome::status(200)), // the caller's own: fine
            req(Op::Me, 1, Some(1), 600, Outcome::status(200)), // revoked: stale
            req(Op::Me, 1, Some(3), 600, Outcome::status(200)), // later login: fine
            req(Op::LogoutEverywhere, 2, Some(3), 700, Outcome::status(200)),
            login(4, 702),                                            // racing the end: not judged
            req(Op::Me, 0, Some(2), 1100, Outcome::status(200)),      // ended by everywhere: stale
            req(Op::Refresh, 0, Some(3), 1100, Outcome::status(200)), // the caller's own: stale
            req(Op::Me, 0, Some(4), 1100, Outcome::status(200)),
        ];
        let recorded = history(records);
        let stale: Vec<_> = check(&recorded, &BOUNDS)
            .into_iter()
            .map(|v| match v {
                Violation::StaleAccept { record, .. } => record.cred.unwrap(),
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(stale, [1, 2, 3]);
    }

    #[test]
    fn a_theft_verdict_ends_the_family_unless_redis_forgot_it() {
        let theft = Outcome::Status { code: 401, retry_after: false, err_code: Some(20009) };
        let mut recorded = history(vec![
            login(1, 0),
            req(Op::Theft, 0, Some(1), 100, theft.clone()),
            req(Op::Me, 1, Some(1), 600, Outcome::status(200)),
        ]);
        assert_eq!(kinds(&recorded), ["stale-accept"]);
        recorded.faults.push(fault(FaultKind::RedisWipe, None, 50, 60));
        assert_eq!(kinds(&recorded), Vec::<&str>::new(), "an unknown token is refused without a revocation");
        recorded.records.insert(1, req(Op::Refresh, 0, Some(1), 70, Outcome::status(200)));
        assert_eq!(kinds(&recorded), ["stale-accept"], "refreshed after the wipe: known again");
    }

    #[test]
    fn server_errors_and_503_without_retry_after_are_reported() {
        let recorded = history(vec![
            req(Op::Me, 0, Some(1), 0, Outcome::status(500)),
            req(Op::Me, 0, Some(1), 10, Outcome::status(502)),
            req(Op::Me, 0, Some(1), 20, Outcome::status(503)),
            req(Op::Me, 0, Some(1), 30, Outcome::Status { code: 503, retry_after: true, err_code: None }),
        ]);
        assert_eq!(kinds(&recorded), ["server-error", "server-error", "503-without-retry-after"]);
    }

    #[test]
    fn transport_errors_count_only_while_the_node_is_up_and_slow_requests_always() {
        let mut recorded = history(vec![
            req(Op::Me, 1, Some(1), 100, Outcome::Transport("refused".into())),
            req(Op::Me, 1, Some(1), 1400, Outcome::Transport("refused".into())),
            req(Op::Me, 0, Some(1), 100, Outcome::Transport("refused".into())),
        ]);
        let mut slow = req(Op::Me, 2, Some(1), 0, Outcome::status(200));
        slow.completed = ms(2500);
        recorded.records.push(slow);
        recorded.faults.push(fault(FaultKind::NodeCrash, Some(1), 50, 1000));
        assert_eq!(kinds(&recorded), ["transport-error", "transport-error", "slow"]);
    }

    #[test]
    fn late_recovery_lost_credentials_and_panics_are_reported() {
        let mut recorded = Recorded::default();
        let recovery = |served: Option<u64>| Recovery {
            node: 0,
            fault: "partition".into(),
            healed: ms(1000),
            served: served.map(ms),
            last_failure: Some("503".into()),
        };
        recorded.recoveries = vec![recovery(Some(1500)), recovery(Some(3500)), recovery(None)];
        let survival =
            |code| Survival { cred: 7, node: 2, fault: "crash".into(), at: ms(10), outcome: Outcome::status(code) };
        recorded.survivals = vec![survival(200), survival(401)];
        recorded.panics = vec![(1, "thread 'tokio-runtime-worker' panicked at src/x.rs:1:1".into())];
        assert_eq!(kinds(&recorded), ["no-recovery", "no-recovery", "lost-credential", "panic"]);
    }

    #[test]
    fn slowloris_connections_held_past_the_header_deadline_are_reported() {
        let burst = |header_timeout: Option<u64>, held| Burst {
            node: 0,
            start: ms(0),
            length: ms(3000),
            header_timeout: header_timeout.map(ms),
            tally: Tally { attempted: 300, refused: 0, closed_by_server: 300 - held, held },
        };
        let bursts = vec![burst(Some(1000), 0), burst(None, 300), burst(Some(10_000), 300), burst(Some(1000), 2)];
        let recorded = Recorded { bursts, ..Default::default() };
        assert_eq!(kinds(&recorded), ["slowloris-held"], "only a deadline the burst outlived is judged");
    }
}
