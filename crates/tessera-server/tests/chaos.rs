//! Chaos: three `tessera` nodes on one Redis, each through its own fault
//! proxy, under a recorded load while faults are injected one after another
//! (node↔Redis partition, connection resets, latency, Redis SIGSTOP, Redis
//! killed and restarted empty or from its append-only file, a node killed
//! and restarted, a slowloris burst). A checker then judges the history:
//! no ended credential accepted after `STALE_BOUND`, no 5xx but 503 with
//! `Retry-After`, no request past the deadline, no node silent while up,
//! every node serving again soon after each heal, no session lost to a
//! crash, no panic. The bounds are constants at the top of
//! `tests/support/chaos/mod.rs`.
//!
//! Runs opaque sessions and `--tokens signed`, each over a Redis without
//! persistence (every fault) and over one with `--appendfsync always` (a
//! crash and a partition), in about a minute. `TESSERA_CHAOS_SOAK_SECS=N`
//! repeats each run's schedule until N seconds have passed;
//! `TESSERA_CHAOS_SEED` changes the load's seed; `TESSERA_CHAOS_NODE_FLAGS`
//! adds flags to every node; `TESSERA_CHAOS_ONLY=opaque,signed` runs only
//! the named flavors; `TESSERA_CHAOS_BIN` runs another `tessera` build (an
//! older commit's, say) under the same checker. The table and every violation are printed and
//! written to `target/tmp/chaos-report.txt`, with each run's history and
//! its nodes' logs (`chaos-logs-<flavor>/`) beside it; `TESSERA_LOG` (e.g.
//! `info,tessera=debug`) sets what the nodes log.
//!
//! `cargo test -p tessera-server --test chaos -- --nocapture`

mod support;

#[path = "support/chaos/mod.rs"]
mod chaos;

use std::time::Duration;

use chaos::checker::check;
use chaos::cluster::{known_hardening_flags, Flavor};
use chaos::report::{details, history_dump, table, RunResult};
use chaos::{scenario, BOUNDS};

const FLAVORS: [Flavor; 5] = [
    Flavor { name: "opaque", signed: false, aof: false, sentinel: false },
    Flavor { name: "signed", signed: true, aof: false, sentinel: false },
    Flavor { name: "opaque+aof", signed: false, aof: true, sentinel: false },
    Flavor { name: "signed+aof", signed: true, aof: true, sentinel: false },
    Flavor { name: "signed+sentinel", signed: true, aof: false, sentinel: true },
];

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

/// Prints the report and keeps a copy under `target/tmp`, with every run's
/// full history (one request per line) beside it.
fn publish(report: &str, results: &[RunResult]) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("chaos-report.txt");
    let _ = std::fs::write(&path, report);
    for result in results {
        let _ = std::fs::write(dir.join(format!("chaos-history-{}.txt", result.mode)), history_dump(&result.recorded));
    }
    eprintln!("{report}\n(written to {}, histories and node logs beside it)", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_under_faults_keep_their_promises() {
    let soak = env_number("TESSERA_CHAOS_SOAK_SECS").map(Duration::from_secs);
    let seed = env_number("TESSERA_CHAOS_SEED").unwrap_or(0x07e5_5e4a);
    let mut results = Vec::new();
    let only = std::env::var("TESSERA_CHAOS_ONLY").ok();
    for flavor in FLAVORS.into_iter().filter(|f| only.as_deref().is_none_or(|o| o.split(',').any(|o| o == f.name))) {
        let recorded = scenario::run(flavor, seed, soak).await;
        let violations = check(&recorded, &BOUNDS);
        results.push(RunResult { mode: flavor.name.into(), seed, recorded, violations });
    }
    let flags = known_hardening_flags();
    let report = format!(
        "stale bound {:?}, request deadline {:?}, recovery bound {:?}; \
         hardening flags the binary knows: {flags:?}\n\n{}\n{}",
        BOUNDS.stale,
        BOUNDS.deadline,
        BOUNDS.recovery,
        table(&results),
        details(&results)
    );
    publish(&report, &results);
    let total: usize = results.iter().map(|r| r.violations.len()).sum();
    assert_eq!(total, 0, "the chaos checker found violations (table and details above)");
}
