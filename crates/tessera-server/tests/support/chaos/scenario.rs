//! One chaos run: start a cluster, put it under load, inject the faults of
//! the schedule one phase at a time (each healed, then probed, then left
//! quiet for a moment), stop, and hand back the recorded history.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tessera_testkit::{command, SentinelSetup};
use tokio::task::JoinHandle;

use super::cluster::{Cluster, Flavor, NODES};
use super::history::{Burst, CredId, Fault, FaultKind, History, Op, Outcome, Phase, Recorded, Recovery, Survival};
use super::load::{self, Shared, PROBE_CLIENT};
use super::slowloris;
use super::RECOVERY_BOUND;

/// Users the load clients share (several clients per user, so one client's
/// "logout everywhere" ends credentials another client holds).
const USERS: usize = 3;
/// Load clients.
const CLIENTS: usize = 6;
/// Each client stops after this many operations even if the run goes on.
const MAX_OPS_PER_CLIENT: usize = 50_000;

/// What is running during one flavor's run.
pub struct Run {
    cluster: Cluster,
    shared: Arc<Shared>,
    clients: Vec<JoinHandle<()>>,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs `flavor`'s schedule (repeated until `soak` has passed, if given)
/// and returns everything recorded.
pub async fn run(flavor: Flavor, seed: u64, soak: Option<Duration>) -> Recorded {
    let cluster = Cluster::start(flavor, USERS).await;
    let history = History::new();
    let shared = Shared::new(history.clone(), cluster.view.clone(), cluster.phones.clone(), flavor.signed);
    let note = cluster.describe();
    history.with(|r| r.notes.push(note));
    // The nodes' logs carry wall-clock times; this lines them up with the history's.
    let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    history.with(|r| r.notes.push(format!("time 0 is {:.3} s after the Unix epoch", t0.as_secs_f64())));
    let mut run = Run { cluster, shared, clients: Vec::new() };
    run.start_load(seed);
    run.quiet("baseline", ms(1500)).await;
    loop {
        match (flavor.sentinel, flavor.aof) {
            (true, _) => run.sentinel_schedule().await,
            (false, true) => run.aof_schedule().await,
            (false, false) => run.main_schedule().await,
        }
        if soak.is_none_or(|s| history.now() >= s) {
            break;
        }
    }
    run.stop_load().await;
    let logs = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-logs-{}", flavor.name));
    run.cluster.keep_logs(&logs);
    let panics = run.cluster.panics();
    history.with(|r| r.panics = panics);
    history.snapshot()
}

impl Run {
    fn now(&self) -> Duration {
        self.shared.history.now()
    }

    fn start_load(&mut self, seed: u64) {
        self.clients = (0..CLIENTS)
            .map(|client| {
                let shared = self.shared.clone();
                let seed = seed ^ (client as u64).wrapping_mul(0x9E37_79B9);
                tokio::spawn(load::client(shared, client, client % USERS, seed, MAX_OPS_PER_CLIENT))
            })
            .collect();
    }

    async fn stop_load(&mut self) {
        self.shared.stop();
        for client in self.clients.drain(..) {
            client.await.unwrap();
        }
    }

    /// Every fault the suite knows, on opaque sessions or signed tokens
    /// over a Redis without persistence.
    async fn main_schedule(&mut self) {
        self.partition(0, ms(1500)).await;
        self.resets().await;
        self.latency().await;
        self.redis_pause(ms(1200)).await;
        self.redis_wipe().await;
        self.node_crash(2).await;
        self.slowloris(0, 300, ms(3000)).await;
    }

    /// Over a Redis that fsyncs its append-only file on every write: a crash
    /// must lose no session and no revocation.
    async fn aof_schedule(&mut self) {
        self.redis_crash_from_aof().await;
        self.partition(1, ms(1000)).await;
    }

    fn phase(&self, name: &str, start: Duration) {
        let phase = Phase { name: name.into(), start, end: self.now() };
        self.shared.history.with(|r| r.phases.push(phase));
    }

    fn fault(&self, kind: FaultKind, label: String, node: Option<usize>, start: Duration) -> String {
        let fault = Fault { kind, label: label.clone(), node, start, end: self.now() };
        self.shared.history.with(|r| r.faults.push(fault));
        label
    }

    async fn quiet(&self, name: &str, length: Duration) {
        let start = self.now();
        tokio::time::sleep(length).await;
        self.phase(name, start);
    }

    /// Node `slot` cut off from Redis (its proxy frozen), then healed.
    async fn partition(&self, slot: usize, length: Duration) {
        let start = self.now();
        self.cluster.proxies[slot].freeze();
        tokio::time::sleep(length).await;
        self.cluster.proxies[slot].heal();
        let label =
            self.fault(FaultKind::Partition, format!("partition n{slot} {}ms", length.as_millis()), Some(slot), start);
        self.after_heal(&label, "partition", start, ms(1000)).await;
    }

    /// Each node's Redis connections reset in turn, then all at once.
    async fn resets(&self) {
        let start = self.now();
        for proxy in &self.cluster.proxies {
            proxy.reset();
            tokio::time::sleep(ms(300)).await;
        }
        self.cluster.proxies.iter().for_each(|p| p.reset());
        let label = self.fault(FaultKind::Reset, "reset n0,n1,n2 then all".into(), None, start);
        self.after_heal(&label, "proxy reset", start, ms(1000)).await;
    }

    /// Latency to Redis: n1 below the command deadline, n2 beyond it.
    async fn latency(&self) {
        let start = self.now();
        self.cluster.proxies[1].delay(ms(100));
        self.cluster.proxies[2].delay(ms(300));
        tokio::time::sleep(ms(2000)).await;
        self.cluster.proxies[1].heal();
        self.cluster.proxies[2].heal();
        let label = self.fault(FaultKind::Latency, "latency n1 +100ms, n2 +300ms each way".into(), None, start);
        self.after_heal(&label, "latency", start, ms(800)).await;
    }

    /// Redis frozen in place with SIGSTOP, then SIGCONT.
    async fn redis_pause(&self, length: Duration) {
        let pid = self.cluster.redis_pid().expect("redis runs").to_string();
        let start = self.now();
        signal("-STOP", &pid);
        tokio::time::sleep(length).await;
        signal("-CONT", &pid);
        let label = self.fault(FaultKind::RedisPause, format!("redis SIGSTOP {}ms", length.as_millis()), None, start);
        self.after_heal(&label, "redis pause", start, ms(1000)).await;
    }

    /// Redis killed and restarted with nothing: every session and
    /// revocation it held is gone.
    async fn redis_wipe(&mut self) {
        let start = self.now();
        self.restart_redis().await;
        let label = self.fault(FaultKind::RedisWipe, "redis kill -9, restart empty".into(), None, start);
        self.after_heal(&label, "redis restart empty", start, ms(1500)).await;
    }

    /// Redis killed and restarted from its append-only file: credentials
    /// acknowledged before must still work, ended ones stay ended.
    async fn redis_crash_from_aof(&mut self) {
        let witnesses = self.witnesses().await;
        let start = self.now();
        self.restart_redis().await;
        let label = self.fault(FaultKind::RedisCrash, "redis kill -9, restart from AOF".into(), None, start);
        self.survivors(&witnesses, &label).await;
        self.after_heal(&label, "redis restart from AOF", start, ms(1500)).await;
    }

    async fn restart_redis(&mut self) {
        let redis = self.cluster.redis();
        tokio::task::block_in_place(|| redis.kill());
        tokio::time::sleep(ms(300)).await;
        let redis = self.cluster.redis();
        tokio::task::block_in_place(|| redis.restart());
    }

    /// Under Sentinel: a failover asked of the sentinels, then one forced by
    /// freezing the master (SIGSTOP) until the sentinels promote the replica.
    async fn sentinel_schedule(&mut self) {
        self.asked_failover().await;
        self.frozen_master().await;
    }

    fn setup(&self) -> &SentinelSetup {
        self.cluster.sentinel.as_ref().expect("a Sentinel flavor")
    }

    /// The master's port as the sentinels name it now.
    fn master_port(&self) -> Option<u16> {
        tokio::task::block_in_place(|| self.setup().current_master_port())
    }

    /// Waits (at most 15 s) until the sentinels name a master other than `old`.
    async fn until_master_changes(&self, old: Option<u16>) {
        let give_up = self.now() + Duration::from_secs(15);
        while self.master_port() == old && self.now() < give_up {
            tokio::time::sleep(ms(50)).await;
        }
    }

    /// `SENTINEL FAILOVER`: the sentinels promote the replica in good order.
    async fn asked_failover(&self) {
        let old = self.master_port();
        let start = self.now();
        let (port, name) = (self.setup().sentinels[0].port(), self.setup().name.clone());
        let reply = tokio::task::block_in_place(|| command(port, &format!("SENTINEL FAILOVER {name}")));
        assert!(reply.is_ok_and(|r| r.starts_with("+OK")), "SENTINEL FAILOVER");
        self.until_master_changes(old).await;
        let label = self.fault(FaultKind::Failover, "SENTINEL FAILOVER".into(), None, start);
        self.after_heal(&label, "sentinel failover", start, ms(1000)).await;
    }

    /// The master frozen with SIGSTOP until the sentinels give up on it and
    /// promote the replica; then thawed (it rejoins as a replica).
    async fn frozen_master(&self) {
        let old = self.master_port();
        let setup = self.setup();
        let master = [&setup.master, &setup.replica].into_iter().find(|s| Some(s.port()) == old).expect("a master");
        let pid = master.pid().expect("the master runs").to_string();
        let start = self.now();
        signal("-STOP", &pid);
        self.until_master_changes(old).await;
        signal("-CONT", &pid);
        let label = self.fault(FaultKind::Failover, "master SIGSTOP until the sentinels fail over".into(), None, start);
        self.after_heal(&label, "frozen master failover", start, ms(1500)).await;
    }

    /// Node `slot` killed with SIGKILL and started again (on a new port):
    /// every credential acknowledged before is still valid everywhere.
    async fn node_crash(&mut self, slot: usize) {
        let witnesses = self.witnesses().await;
        let start = self.now();
        self.cluster.kill_node(slot).await;
        tokio::time::sleep(ms(500)).await;
        self.cluster.start_node(slot).await;
        let label = self.fault(FaultKind::NodeCrash, format!("n{slot} kill -9, restart"), Some(slot), start);
        self.survivors(&witnesses, &label).await;
        self.after_heal(&label, "node crash", start, ms(1000)).await;
    }

    /// A slowloris burst against node `slot` while the load goes on.
    async fn slowloris(&self, slot: usize, connections: usize, length: Duration) {
        let addr = self.cluster.view.base(slot).trim_start_matches("http://").to_owned();
        let start = self.now();
        let tally = slowloris::burst(addr, connections, length, ms(100)).await;
        let label = self.fault(
            FaultKind::Slowloris,
            format!("slowloris n{slot} {connections} conns {}ms", length.as_millis()),
            Some(slot),
            start,
        );
        let burst = Burst { node: slot, start, length, header_timeout: self.cluster.header_timeout, tally };
        self.shared.history.with(|r| r.bursts.push(burst));
        self.after_heal(&label, "slowloris", start, ms(500)).await;
    }

    /// Probes every node until it serves again, then leaves the load alone
    /// for `quiet`, and closes the phase.
    async fn after_heal(&self, label: &str, phase: &str, start: Duration, quiet: Duration) {
        let healed = self.now();
        let probes: Vec<_> = (0..NODES)
            .map(|node| tokio::spawn(probe_recovery(self.shared.clone(), node, label.to_owned(), healed)))
            .collect();
        for probe in probes {
            let recovery = probe.await.unwrap();
            self.shared.history.with(|r| r.recoveries.push(recovery));
        }
        tokio::time::sleep(quiet).await;
        self.phase(phase, start);
    }

    /// The probe user's user index (the last registered phone).
    fn probe_user(&self) -> usize {
        self.shared.phones.len() - 1
    }

    /// One fresh login per node for the probe user (whom no load client
    /// logs out), each confirmed on every node.
    async fn witnesses(&self) -> Vec<CredId> {
        let mut witnesses = Vec::new();
        for node in 0..NODES {
            let Some(id) = self.shared.call(PROBE_CLIENT, node, Op::Login, self.probe_user(), None).await.issued else {
                continue;
            };
            let c = self.shared.credential(id);
            let mut confirmed = true;
            for other in 0..NODES {
                confirmed &= self.shared.call(PROBE_CLIENT, other, Op::Me, c.user, Some(&c)).await.outcome.ok();
            }
            if confirmed {
                witnesses.push(id);
            }
        }
        witnesses
    }

    /// Asks every node about every witness (retrying 503s and transport
    /// errors for the recovery bound) and records the verdicts.
    async fn survivors(&self, witnesses: &[CredId], fault: &str) {
        for &id in witnesses {
            let c = self.shared.credential(id);
            for node in 0..NODES {
                let give_up = self.now() + RECOVERY_BOUND;
                let outcome = loop {
                    let ex = self.shared.call(PROBE_CLIENT, node, Op::Me, c.user, Some(&c)).await;
                    let settled = matches!(ex.outcome, Outcome::Status { code, .. } if code != 503);
                    if settled || self.now() >= give_up {
                        break ex.outcome;
                    }
                    tokio::time::sleep(ms(50)).await;
                };
                let survival = Survival { cred: id, node, fault: fault.into(), at: self.now(), outcome };
                self.shared.history.with(|r| r.survivals.push(survival));
            }
        }
    }
}

fn signal(which: &str, pid: &str) {
    let status = Command::new("kill").args([which, pid]).status().expect("kill runs");
    assert!(status.success(), "kill {which} {pid}");
}

/// Polls node `node` (a fresh login of the probe user, then `/user/me`
/// with it) until it serves, or twice the recovery bound has passed.
async fn probe_recovery(shared: Arc<Shared>, node: usize, fault: String, healed: Duration) -> Recovery {
    let give_up = healed + RECOVERY_BOUND * 2;
    let mut last_failure = None;
    loop {
        match serves(&shared, node).await {
            Ok(at) => return Recovery { node, fault, healed, served: Some(at), last_failure },
            Err(why) => last_failure = Some(why),
        }
        if shared.history.now() >= give_up {
            return Recovery { node, fault, healed, served: None, last_failure };
        }
        tokio::time::sleep(ms(50)).await;
    }
}

/// A fresh login on `node` and `/user/me` with it: when it answered.
async fn serves(shared: &Shared, node: usize) -> Result<Duration, String> {
    let user = shared.phones.len() - 1;
    let client = PROBE_CLIENT + 1 + node;
    let login = shared.call(client, node, Op::Login, user, None).await;
    let id = login.issued.ok_or_else(|| format!("login: {}", login.outcome))?;
    let c = shared.credential(id);
    let me = shared.call(client, node, Op::Me, user, Some(&c)).await;
    me.outcome.ok().then_some(me.completed).ok_or_else(|| format!("me: {}", me.outcome))
}
