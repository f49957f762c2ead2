//! The table printed at the end of the suite, and the violation listing
//! grouped by kind.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::checker::Violation;
use super::history::{secs, Phase, Recorded};

/// At most this many violations of one kind are printed in full per run.
const SHOWN_PER_KIND: usize = 12;

/// One run's record and verdict.
pub struct RunResult {
    /// The flavor's name.
    pub mode: String,
    /// The seed its load used.
    pub seed: u64,
    /// What was recorded.
    pub recorded: Recorded,
    /// What the checker found.
    pub violations: Vec<Violation>,
}

fn in_phase(t: Duration, phase: &Phase) -> bool {
    phase.start <= t && t < phase.end
}

/// (p50, p99, max) of `samples`, in milliseconds.
pub fn percentiles(samples: &mut [Duration]) -> Option<(f64, f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    Some((at(0.5), at(0.99), at(1.0)))
}

fn kinds<'a>(violations: impl Iterator<Item = &'a Violation>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in violations {
        *counts.entry(v.kind()).or_default() += 1;
    }
    counts.iter().map(|(k, n)| format!("{k}×{n}")).collect::<Vec<_>>().join(" ")
}

fn row(
    out: &mut String,
    mode: &str,
    scenario: &str,
    requests: usize,
    faults: usize,
    violations: &[&Violation],
    prop: &mut [Duration],
) {
    let prop = match percentiles(prop) {
        Some((p50, p99, max)) => format!("{p50:.1} / {p99:.1} / {max:.1} (n={})", prop.len()),
        None => "-".into(),
    };
    let counted = format!("{} {}", violations.len(), kinds(violations.iter().copied()));
    let _ = writeln!(out, "| {mode:<12} | {scenario:<22} | {requests:>8} | {faults:>6} | {counted:<40} | {prop:<32} |");
}

/// The table: one row per phase of every run, then a total per run.
pub fn table(results: &[RunResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {:<12} | {:<22} | {:>8} | {:>6} | {:<40} | {:<32} |",
        "mode", "scenario", "requests", "faults", "violations", "logout→401 elsewhere p50/p99/max ms"
    );
    let _ = writeln!(out, "|{}|", ["-"; 6].map(|_| "-".repeat(12)).join("|"));
    for result in results {
        let r = &result.recorded;
        for phase in &r.phases {
            let requests = r.records.iter().filter(|x| in_phase(x.invoked, phase)).count();
            let faults = r.faults.iter().filter(|f| in_phase(f.start, phase)).count();
            let violations: Vec<&Violation> =
                result.violations.iter().filter(|v| v.at().is_some_and(|t| in_phase(t, phase))).collect();
            let mut prop: Vec<Duration> =
                r.propagation.iter().filter(|(at, _)| in_phase(*at, phase)).map(|(_, took)| *took).collect();
            row(&mut out, &result.mode, &phase.name, requests, faults, &violations, &mut prop);
        }
        let all: Vec<&Violation> = result.violations.iter().collect();
        let mut prop: Vec<Duration> = r.propagation.iter().map(|(_, took)| *took).collect();
        row(&mut out, &result.mode, "TOTAL", r.records.len(), r.faults.len(), &all, &mut prop);
    }
    out
}

/// Every run's violations, grouped by kind, the first few of each in full.
pub fn details(results: &[RunResult]) -> String {
    let mut out = String::new();
    for result in results {
        let _ = writeln!(out, "== {} (seed {:#x}): {} violations", result.mode, result.seed, result.violations.len());
        for note in &result.recorded.notes {
            let _ = writeln!(out, "   note: {note}");
        }
        for b in &result.recorded.bursts {
            let t = &b.tally;
            let _ = writeln!(
                out,
                "   slowloris on n{} for {}ms (header-read deadline {:?}): {} attempted, {} not accepted within 1 s, \
                 {} closed by the node, {} still held at the end",
                b.node,
                b.length.as_millis(),
                b.header_timeout,
                t.attempted,
                t.refused,
                t.closed_by_server,
                t.held
            );
        }
        let mut by_kind: BTreeMap<&str, Vec<&Violation>> = BTreeMap::new();
        for v in &result.violations {
            by_kind.entry(v.kind()).or_default().push(v);
        }
        for (kind, list) in by_kind {
            let _ = writeln!(out, "-- {kind}: {}", list.len());
            for v in list.iter().take(SHOWN_PER_KIND) {
                let _ = writeln!(out, "   {v}");
            }
            if list.len() > SHOWN_PER_KIND {
                let _ = writeln!(out, "   … and {} more", list.len() - SHOWN_PER_KIND);
            }
        }
    }
    out
}

/// Faults, phases and every request of a run, one per line, in time order:
/// the raw material behind a violation.
pub fn history_dump(r: &Recorded) -> String {
    let mut out = String::new();
    for note in &r.notes {
        let _ = writeln!(out, "note {note}");
    }
    for f in &r.faults {
        let _ = writeln!(out, "fault {} .. {} {}", secs(f.start), secs(f.end), f.label);
    }
    for p in &r.phases {
        let _ = writeln!(out, "phase {} .. {} {}", secs(p.start), secs(p.end), p.name);
    }
    for x in &r.recoveries {
        let served = x.served.map_or("never".into(), |s| format!("+{}ms", s.saturating_sub(x.healed).as_millis()));
        let last = x.last_failure.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "recovery n{} healed {} served {served} last failure {last}: {}",
            x.node,
            secs(x.healed),
            x.fault
        );
    }
    let mut records: Vec<_> = r.records.iter().collect();
    records.sort_by_key(|x| x.invoked);
    for x in records {
        let cred = x.cred.map_or("-".into(), |c| c.to_string());
        let issued = x.issued.map_or(String::new(), |c| format!(" issued={c}"));
        let _ = writeln!(
            out,
            "req {} {} client={} user={} n{} {} cred={cred}{issued} → {}",
            secs(x.invoked),
            secs(x.completed),
            x.client,
            x.user,
            x.node,
            x.op,
            x.outcome
        );
    }
    out
}
