//! Three `tessera` nodes on one Redis, each reaching it through its own
//! fault proxy, sharing one data directory (the users' SQLite file, the
//! secret and the signing keys) as in `tests/multi_node.rs`.

use std::fs::File;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::json;
use tessera_testkit::{FaultProxy, RedisServer, SentinelSetup};

use super::{HEADER_READ_TIMEOUT, REDIS_TIMEOUT_MS};
use crate::support::node::{Node, BIN};
use crate::support::{e164, Sink, PASSWORD};

/// How many nodes a cluster runs.
pub const NODES: usize = 3;

/// Which product configuration a run exercises.
#[derive(Debug, Clone, Copy)]
pub struct Flavor {
    /// Shown in the table.
    pub name: &'static str,
    /// `--tokens signed` instead of opaque sessions.
    pub signed: bool,
    /// Redis with `--appendonly yes --appendfsync always`.
    pub aof: bool,
    /// A master, a replica and three sentinels instead of one Redis, with
    /// no proxy (the sentinels hand out the real master's address).
    pub sentinel: bool,
}

/// The current base URL of every node slot: a restarted node comes back on
/// another port, and clients must follow it.
#[derive(Debug, Clone, Default)]
pub struct NodeView(Arc<RwLock<Vec<String>>>);

impl NodeView {
    /// `http://127.0.0.1:<port>` of slot `node`.
    pub fn base(&self, node: usize) -> String {
        self.0.read().unwrap_or_else(|e| e.into_inner())[node].clone()
    }

    /// The URL of `path` on slot `node`.
    pub fn url(&self, node: usize, path: &str) -> String {
        format!("{}{path}", self.base(node))
    }

    fn set(&self, node: usize, base: String) {
        let mut bases = self.0.write().unwrap_or_else(|e| e.into_inner());
        if bases.len() <= node {
            bases.resize(node + 1, String::new());
        }
        bases[node] = base;
    }
}

/// The processes of one run.
pub struct Cluster {
    /// The one Redis (none under Sentinel).
    redis: Option<RedisServer>,
    /// Master, replica and sentinels (Sentinel flavors only).
    pub sentinel: Option<SentinelSetup>,
    /// Node slot i reaches Redis through `proxies[i]` (none under Sentinel).
    pub proxies: Vec<FaultProxy>,
    /// Where clients find the nodes.
    pub view: NodeView,
    /// The registered users' phones; the last one is the probes' own.
    pub phones: Vec<String>,
    /// The nodes' header-read deadline, when the suite set or knows it.
    pub header_timeout: Option<Duration>,
    nodes: Vec<Option<Node>>,
    flags: Vec<String>,
    sink: Sink,
    sink_url: String,
    logs: Vec<(usize, PathBuf)>,
    data: tempfile::TempDir,
}

/// The `tessera` binary the nodes run: this build, or `TESSERA_CHAOS_BIN`
/// (another build, e.g. an older commit's, to see what the checker finds
/// there).
pub fn program() -> String {
    std::env::var("TESSERA_CHAOS_BIN").unwrap_or_else(|_| BIN.to_owned())
}

/// Which of the flags the product is growing `tessera serve --help` knows.
pub fn known_hardening_flags() -> Vec<&'static str> {
    let help =
        std::process::Command::new(program()).args(["serve", "--help"]).output().map(|o| o.stdout).unwrap_or_default();
    let help = String::from_utf8_lossy(&help);
    ["--header-read-timeout-ms", "--keep-alive-timeout-ms", "--max-connections", "--cache-lease-ms"]
        .into_iter()
        .filter(|f| help.contains(f))
        .collect()
}

/// Flags every node gets: the proxy as Redis, the 250 ms deadline, no
/// throttle or session cap that the load would trip over (they are not
/// what this suite tests), and a short header-read deadline when the binary
/// has one. `TESSERA_CHAOS_NODE_FLAGS` adds more, split on whitespace.
/// Also returns the header-read deadline in force, if the suite knows it.
fn node_flags(flavor: Flavor) -> (Vec<String>, Option<Duration>) {
    let mut flags: Vec<String> = [
        "--redis-timeout-ms",
        &REDIS_TIMEOUT_MS.to_string(),
        "--max-sessions-per-user",
        "0",
        "--login-limit-per-phone",
        "1000000",
        "--login-limit-per-ip",
        "1000000",
        "--otp-limit-per-ip",
        "1000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if flavor.signed {
        // A one-second grace window so a theft can be staged quickly.
        flags.extend(["--tokens", "signed", "--refresh-grace", "1"].map(String::from));
    }
    let extra: Vec<String> =
        std::env::var("TESSERA_CHAOS_NODE_FLAGS").unwrap_or_default().split_whitespace().map(String::from).collect();
    let header_flag = "--header-read-timeout-ms";
    let mut header_timeout = None;
    if let Some(i) = extra.iter().position(|f| f == header_flag) {
        header_timeout = extra.get(i + 1).and_then(|v| v.parse().ok()).map(Duration::from_millis);
    } else if known_hardening_flags().contains(&header_flag) {
        flags.extend([header_flag.to_owned(), HEADER_READ_TIMEOUT.as_millis().to_string()]);
        header_timeout = Some(HEADER_READ_TIMEOUT);
    }
    flags.extend(extra);
    (flags, header_timeout)
}

impl Cluster {
    /// Starts Redis, the proxies and the nodes, and registers `users` users
    /// plus one for the probes.
    pub async fn start(flavor: Flavor, users: usize) -> Self {
        let (redis, sentinel) = match (flavor.sentinel, flavor.aof) {
            (true, _) => (None, Some(tokio::task::block_in_place(SentinelSetup::start))),
            (false, true) => (Some(RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])), None),
            (false, false) => (Some(RedisServer::start()), None),
        };
        let proxies: Vec<FaultProxy> =
            redis.iter().flat_map(|r| (0..NODES).map(|_| FaultProxy::start(r.port()))).collect();
        let (sink, sink_addr) = Sink::start().await;
        let phones = (0..=users).map(|i| format!("139000001{i:02}")).collect();
        let (flags, header_timeout) = node_flags(flavor);
        let mut cluster = Cluster {
            redis,
            sentinel,
            proxies,
            view: NodeView::default(),
            phones,
            nodes: (0..NODES).map(|_| None).collect(),
            header_timeout,
            flags,
            sink,
            sink_url: format!("http://{sink_addr}/sms"),
            logs: Vec::new(),
            data: tempfile::tempdir().unwrap(),
        };
        for slot in 0..NODES {
            cluster.start_node(slot).await;
        }
        cluster.register_all().await;
        cluster
    }

    /// Starts (or restarts) the node of `slot`, its stderr in a file of the
    /// data directory, and points the view at it.
    pub async fn start_node(&mut self, slot: usize) {
        let log = self.data.path().join(format!("node{slot}-{}.stderr", self.logs.len()));
        let stderr = Stdio::from(File::create(&log).unwrap());
        self.logs.push((slot, log));
        let redis = match &self.sentinel {
            Some(setup) => setup.url(),
            None => self.proxies[slot].url(),
        };
        let mut extra: Vec<&str> = vec!["--redis", &redis];
        extra.extend(self.flags.iter().map(String::as_str));
        let node = Node::start_program(&program(), self.data.path(), &self.sink_url, &extra, stderr).await;
        self.view.set(slot, node.base.clone());
        self.nodes[slot] = Some(node);
    }

    /// The standalone Redis (not under Sentinel).
    pub fn redis(&mut self) -> &mut RedisServer {
        self.redis.as_mut().expect("a standalone flavor")
    }

    /// The standalone Redis's process id.
    pub fn redis_pid(&self) -> Option<u32> {
        self.redis.as_ref()?.pid()
    }

    /// SIGKILL to the node of `slot`; waits until it is gone.
    pub async fn kill_node(&mut self, slot: usize) {
        if let Some(mut node) = self.nodes[slot].take() {
            node.child.start_kill().unwrap();
            node.child.wait().await.unwrap();
        }
    }

    async fn register_all(&self) {
        let http = reqwest::Client::new();
        for phone in &self.phones {
            let r =
                http.post(self.view.url(1, "/user/getotp")).json(&json!({"telephone": phone})).send().await.unwrap();
            assert_eq!(r.status(), 200, "getotp for {phone}");
            let code = self.sink.last_code(&e164(phone));
            let body =
                json!({"telephone": phone, "otpCode": code, "name": "c", "gender": 1, "age": 30, "password": PASSWORD});
            let r = http.post(self.view.url(0, "/user/register")).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200, "register {phone}");
        }
    }

    /// What the nodes run: the binary and its flags.
    pub fn describe(&self) -> String {
        format!("nodes run {} with {}", program(), self.flags.join(" "))
    }

    /// Copies every node's stderr so far into `dir` (created if missing),
    /// as `node{slot}-{start}.stderr`, so a failed run can be read after
    /// its data directory is gone.
    pub fn keep_logs(&self, dir: &std::path::Path) {
        let _ = std::fs::create_dir_all(dir);
        for (_, path) in &self.logs {
            if let Some(name) = path.file_name() {
                let _ = std::fs::copy(path, dir.join(name));
            }
        }
    }

    /// Lines of every node's stderr so far that report a panic.
    pub fn panics(&self) -> Vec<(usize, String)> {
        self.logs
            .iter()
            .flat_map(|(slot, path)| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                text.lines().filter(|l| l.contains("panicked")).map(|l| (*slot, l.to_owned())).collect::<Vec<_>>()
            })
            .collect()
    }
}
