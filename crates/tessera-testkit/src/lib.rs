//! Starts real `redis-server` processes on free loopback ports for tests:
//! a standalone server, a master with a replica and three sentinels, and a
//! three-master Cluster. Each process is killed by pid when its handle is
//! dropped, and a watchdog kills it (and removes its directory) when the
//! test process exits, so nothing outlives a test run.
//!
//! Needs `redis-server` and `redis-cli` on the PATH (`scripts/test`
//! installs them).
//!
//! [`FaultProxy`] sits between a client and one of these servers and
//! freezes, delays or resets the traffic on demand.
//!
//! Beside Redis, what the tests of both the library and the service share:
//! [`http`] (a client aimed at one test server, cookie parsing) and
//! [`store`] (a session store that counts its calls).

pub mod http;
pub mod proxy;
pub mod store;

pub use proxy::FaultProxy;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One `redis-server` process.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

/// Where test servers' ports start and end: below Linux's ephemeral range
/// (32768 and up by default), cluster bus ports (port + 10000) included, so
/// that no outgoing connection's local port or `127.0.0.1:0` listener (a
/// node under test, a proxy) can take a port between the check here and
/// the server's bind, or between a kill and a restart on the same port.
const PORTS: std::ops::Range<u16> = 10000..22760;

fn free_port() -> u16 {
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    // Test binaries running at once start apart (ten ports per pid); past
    // the end the count wraps to the start, where the check below skips
    // ports still held by this process's servers.
    let seed = (std::process::id() % 1200) * 10;
    let span = u32::from(PORTS.end - PORTS.start);
    for _ in 0..span {
        let offset = (seed + TAKEN.fetch_add(1, Ordering::Relaxed)) % span;
        let port = PORTS.start + u16::try_from(offset).expect("offset < span");
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10000) {
            return port;
        }
    }
    panic!("no free test port in {PORTS:?}");
}

/// Sends one inline command and returns the raw reply (enough for tests).
pub fn command(port: u16, cmd: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut parts = String::new();
    let words: Vec<&str> = cmd.split_whitespace().collect();
    parts.push_str(&format!("*{}\r\n", words.len()));
    for w in &words {
        parts.push_str(&format!("${}\r\n{}\r\n", w.len(), w));
    }
    stream.write_all(parts.as_bytes())?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 65536];
    // Read until the reply looks complete: good enough for INFO and PING.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if complete(&reply) {
                    break;
                }
            }
            Err(e) if Instant::now() < deadline && e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

fn complete(reply: &[u8]) -> bool {
    parse_end(reply, 0) == Some(reply.len())
}

/// Where the RESP value starting at `pos` ends, if it is all there.
fn parse_end(reply: &[u8], pos: usize) -> Option<usize> {
    let line_end = pos + reply.get(pos..)?.windows(2).position(|w| w == b"\r\n")?;
    let header = std::str::from_utf8(&reply[pos + 1..line_end]).ok()?;
    let after = line_end + 2;
    match reply.get(pos)? {
        b'+' | b'-' | b':' => Some(after),
        b'$' => match header.parse::<i64>().ok()? {
            n if n < 0 => Some(after),
            n => (reply.len() >= after + n as usize + 2).then_some(after + n as usize + 2),
        },
        b'*' => {
            let mut at = after;
            for _ in 0..header.parse::<i64>().ok()?.max(0) {
                at = parse_end(reply, at)?;
            }
            Some(at)
        }
        _ => None,
    }
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills `pid` and removes `dir` once this test process has exited.
fn watchdog(pid: u32, dir: &std::path::Path) {
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; kill -9 {pid} 2>/dev/null; rm -rf '{dir}'",
        me = std::process::id(),
        dir = dir.display()
    );
    let _ = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

impl RedisServer {
    /// A standalone server with persistence off.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("tessera-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut args: Vec<String> =
            ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        args.extend(["--dir".to_string(), dir.display().to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut server = Self { port, dir, args, child: None };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        watchdog(child.id(), &self.dir);
        let pid = child.id();
        self.child = Some(child);
        let port = self.port;
        wait_until("redis-server to answer PING", Duration::from_secs(10), || {
            if let Some(exit) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server on port {port} exited at start ({exit}); was the port taken?");
            }
            command(port, "PING").map(|r| r.starts_with("+PONG")).unwrap_or(false)
        });
        // The answer came from this process, not from a server of someone
        // else's that got the port first.
        let info = command(port, "INFO server").unwrap_or_default();
        assert!(info.contains(&format!("process_id:{pid}\r")), "port {port} is answered by another redis-server");
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id while it runs, for tests that signal it themselves
    /// (`kill -STOP` / `kill -CONT` to freeze it in place).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The directory given as `--dir` (where an append-only file lives); it
    /// is kept across [`RedisServer::restart`].
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Kills the process (as a crash would: SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port after [`RedisServer::kill`].
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends a command, panicking on I/O errors.
    pub fn cmd(&self, cmd: &str) -> String {
        command(self.port, cmd).expect("redis answers")
    }

    /// `INFO commandstats` as command name → calls.
    pub fn commandstats(&self) -> HashMap<String, u64> {
        commandstats(self.port)
    }
}

/// `INFO commandstats` of the server on `port`, as command name → calls.
pub fn commandstats(port: u16) -> HashMap<String, u64> {
    let info = command(port, "INFO commandstats").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A master, one replica and three sentinels watching them.
#[derive(Debug)]
pub struct SentinelSetup {
    /// The master at start (it may be killed by a failover test).
    pub master: RedisServer,
    /// The replica at start.
    pub replica: RedisServer,
    /// The sentinels.
    pub sentinels: Vec<RedisServer>,
    /// The monitored name.
    pub name: String,
}

impl SentinelSetup {
    /// Starts the five processes and waits until the sentinels agree.
    pub fn start() -> Self {
        let master = RedisServer::start();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port().to_string()]);
        let name = "tessera-test".to_string();
        let sentinels: Vec<RedisServer> = (0..3)
            .map(|_| {
                let port = free_port();
                let dir = std::env::temp_dir().join(format!("tessera-sentinel-{}-{port}", std::process::id()));
                std::fs::create_dir_all(&dir).expect("temp dir");
                let conf = dir.join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel monitor {name} 127.0.0.1 {m} 2\n\
                         sentinel down-after-milliseconds {name} 1000\nsentinel failover-timeout {name} 5000\n\
                         sentinel parallel-syncs {name} 1\n",
                        dir = dir.display(),
                        m = master.port()
                    ),
                )
                .expect("sentinel.conf");
                let mut server =
                    RedisServer { port, dir, args: vec![conf.display().to_string(), "--sentinel".into()], child: None };
                server.spawn();
                server
            })
            .collect();
        let setup = Self { master, replica, sentinels, name };
        let replica_port = setup.replica.port();
        wait_until("the replica to sync", Duration::from_secs(20), || {
            command(replica_port, "INFO replication").map(|r| r.contains("master_link_status:up")).unwrap_or(false)
        });
        for s in &setup.sentinels {
            let port = s.port();
            let name = setup.name.clone();
            wait_until("sentinels to see the replica and each other", Duration::from_secs(20), || {
                command(port, &format!("SENTINEL MASTER {name}"))
                    .map(|r| {
                        let lines: Vec<&str> = r.lines().collect();
                        let value = |key: &str| {
                            lines.iter().position(|l| *l == key).and_then(|i| lines.get(i + 2)).map(|v| v.to_string())
                        };
                        value("num-slaves").as_deref() == Some("1")
                            && value("num-other-sentinels").as_deref() == Some("2")
                    })
                    .unwrap_or(false)
            });
        }
        setup
    }

    /// `redis+sentinel://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c/<name>`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port())).collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), self.name)
    }

    /// The port the sentinels currently name as master.
    pub fn current_master_port(&self) -> Option<u16> {
        let reply =
            command(self.sentinels[0].port(), &format!("SENTINEL get-master-addr-by-name {}", self.name)).ok()?;
        reply.lines().filter(|l| !l.starts_with('*') && !l.starts_with('$')).nth(1)?.parse().ok()
    }
}

/// A Cluster of three masters, no replicas.
#[derive(Debug)]
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes, creates the cluster and waits until it is ok.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed");
        assert!(status.success(), "redis-cli --cluster create failed");
        for node in &nodes {
            let port = node.port();
            wait_until("the cluster to be ok", Duration::from_secs(20), || {
                command(port, "CLUSTER INFO").map(|r| r.contains("cluster_state:ok")).unwrap_or(false)
            });
        }
        Self { nodes }
    }

    /// `redis+cluster://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Calls of `command` summed over all nodes.
    pub fn calls(&self, command: &str) -> u64 {
        self.nodes.iter().map(|n| n.commandstats().get(command).copied().unwrap_or(0)).sum()
    }
}

/// Watches a server with `MONITOR` and counts the commands clients send
/// (commands that Lua scripts run on the server are listed by `MONITOR`
/// as `[.. lua]` and not counted: they are not round trips).
#[derive(Debug)]
pub struct Monitor {
    port: u16,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    /// Starts watching the server on `port`.
    pub fn start(port: u16) -> Self {
        use std::io::BufRead;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("redis answers");
        stream.write_all(b"MONITOR\r\n").expect("MONITOR");
        stream.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        let mut reader = std::io::BufReader::new(stream);
        let mut first = String::new();
        reader.read_line(&mut first).ok(); // +OK
        let (out, flag) = (lines.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut line = String::new();
            while !flag.load(Ordering::Relaxed) {
                match reader.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        out.lock().unwrap().push(std::mem::take(&mut line));
                    }
                    Err(_) => {} // timeout: look at the flag again
                }
            }
        });
        Self { port, lines, stop, thread: Some(thread) }
    }

    /// Commands sent by clients so far. Subscription heartbeats (a
    /// `PUBLISH` on a `…:heartbeat:…` channel, or a bare `PING`) are not
    /// counted: they are the listeners' own, not requests'.
    ///
    /// "So far" is marked on the server itself: an `ECHO` of a fresh marker
    /// is sent and the count taken once `MONITOR` has listed it, so every
    /// command the server ran before it is in, however late its line is read.
    pub fn client_commands(&self) -> usize {
        static MARKS: AtomicU64 = AtomicU64::new(0);
        let mark = format!("{MONITOR_MARK}{}", MARKS.fetch_add(1, Ordering::Relaxed));
        command(self.port, &format!("ECHO {mark}")).expect("redis answers");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let lines = self.lines.lock().unwrap();
                if let Some(at) = lines.iter().position(|l| l.contains(&mark)) {
                    let heartbeat = |l: &str| l.contains(":heartbeat:") || l.trim_end().ends_with("\"PING\"");
                    let counted = |l: &&String| !l.contains(" lua]") && !heartbeat(l) && !l.contains(MONITOR_MARK);
                    return lines[..at].iter().filter(counted).count();
                }
            }
            assert!(Instant::now() < deadline, "MONITOR never listed {mark}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// What [`Monitor::client_commands`]'s own `ECHO`s carry, so that they are
/// not counted.
const MONITOR_MARK: &str = "tessera-testkit-monitor-mark-";

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
