//! The chaos harness behind `tests/chaos.rs`: three `tessera` nodes on one
//! Redis, each through its own [`tessera_testkit::FaultProxy`], a load
//! generator that records every request, a fault schedule, and a checker
//! that judges the recorded history.
//!
//! Only `tests/chaos.rs` includes this module (by path), so the other
//! suites neither compile nor run it.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod load;
pub mod report;
pub mod scenario;
pub mod slowloris;

use std::time::Duration;

use checker::Bounds;

/// How long after a credential's end was acknowledged a node may still
/// accept it: the product's documented worst case (a node cut off from Redis
/// stops answering from memory within its 250 ms command deadline), plus
/// nothing. Adjust here.
pub const STALE_BOUND: Duration = Duration::from_millis(300);

/// After a Sentinel failover, until every node must have left the old
/// master: the sentinels may take a moment to agree, and a node asks them
/// once per lease (README "Guarantees under faults", Sentinel row).
pub const FAILOVER_SETTLE: Duration = Duration::from_millis(1500);

/// Every request must complete within this, whatever the fault.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// Every node must serve again this soon after a fault heals.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(2);

/// The node's per-command Redis deadline in every scenario.
pub const REDIS_TIMEOUT_MS: u64 = 250;

/// The header-read deadline nodes get (when the binary knows the flag), so
/// that the few seconds of a slowloris burst outlive it: the default (10 s)
/// would need a longer burst than this suite can afford.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(1000);

/// The bounds the checker applies.
pub const BOUNDS: Bounds = Bounds {
    stale: STALE_BOUND,
    deadline: REQUEST_DEADLINE,
    recovery: RECOVERY_BOUND,
    down_margin: Duration::from_millis(300),
    header_slack: Duration::from_secs(1),
    failover_settle: FAILOVER_SETTLE,
};
