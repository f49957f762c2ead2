//! A fault-injecting TCP proxy: a test puts it between a client (a
//! `tessera` node) and a server (a `redis-server`) and then, at any moment,
//! freezes, slows down or resets the traffic — the network faults a real
//! deployment meets and a local test cannot otherwise produce.
//!
//! The proxy runs its own single-threaded tokio runtime on its own thread,
//! so it works the same from synchronous tests and from async tests (whose
//! runtime it never blocks). Every control method only publishes the new
//! mode; connections pick it up at their next chunk.
//!
//! What each mode means on the wire:
//!
//! - [`FaultProxy::pass`] (the default): bytes flow both ways.
//! - [`FaultProxy::freeze`]: a silent, half-open partition. Every connection
//!   stays open on both sides, but no byte moves in either direction: the
//!   proxy stops reading (so the kernel buffers fill up, as behind a dead
//!   link) and holds what it has already read. New connections are accepted
//!   but not connected upstream until the partition heals, so a client sees
//!   neither data nor a close.
//! - [`FaultProxy::delay`]: each chunk is forwarded `d` after the proxy read
//!   it, in each direction (a request/response round trip gains `2d`).
//!   Chunks keep their order and are scheduled by deadline, so the delay is
//!   latency, not a bandwidth cap.
//! - [`FaultProxy::reset`]: every current connection is aborted on both sides
//!   with `SO_LINGER` 0 (an RST, no FIN); the mode does not change and new
//!   connections are accepted as before.
//! - [`FaultProxy::heal`]: back to pass. **Bytes held during a freeze are
//!   delivered late, in order**, on the same connections — what TCP
//!   retransmission does when a real partition heals before the peers give
//!   up. A client that wants the connections gone calls `reset` as well.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How long the proxy tries to reach its target for one new connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the proxy does with bytes right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward at once.
    Pass,
    /// Forward nothing, close nothing.
    Freeze,
    /// Forward each chunk this long after it was read.
    Delay(Duration),
}

/// The state every connection watches.
#[derive(Debug, Clone, Copy)]
struct Control {
    mode: Mode,
    /// Bumped by `reset`: connections opened under an older generation abort.
    generation: u64,
    /// Set when the proxy is dropped.
    shutdown: bool,
}

impl Control {
    fn flowing(&self) -> bool {
        self.mode != Mode::Freeze || self.shutdown
    }

    fn delay(&self) -> Duration {
        match self.mode {
            Mode::Delay(d) => d,
            _ => Duration::ZERO,
        }
    }
}

/// A TCP proxy on a free `127.0.0.1` port in front of `127.0.0.1:<target>`.
/// Dropping it stops it and closes every connection it holds.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    target: u16,
    control: watch::Sender<Control>,
    open: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts forwarding to `127.0.0.1:<target_port>`, in pass mode.
    pub fn start(target_port: u16) -> Self {
        let listener = StdListener::bind("127.0.0.1:0").expect("a free loopback port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("bound").port();
        let (control, watcher) = watch::channel(Control { mode: Mode::Pass, generation: 0, shutdown: false });
        let open = Arc::new(AtomicUsize::new(0));
        let counter = open.clone();
        let target = SocketAddr::from(([127, 0, 0, 1], target_port));
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(accept_loop(listener, target, watcher, counter));
                // Dropping the runtime cancels every connection task, which
                // closes their sockets.
            })
            .expect("proxy thread");
        Self { port, target: target_port, control, open, thread: Some(thread) }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port forwarded to.
    pub fn target_port(&self) -> u16 {
        self.target
    }

    /// `redis://127.0.0.1:<port>`: the proxy as a Redis URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Connections currently held (client side accepted and not yet closed).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.control.borrow().mode
    }

    /// Normal forwarding.
    pub fn pass(&self) {
        self.set_mode(Mode::Pass);
    }

    /// A silent half-open partition (see the module documentation).
    pub fn freeze(&self) {
        self.set_mode(Mode::Freeze);
    }

    /// Adds `latency` to every chunk in each direction.
    pub fn delay(&self, latency: Duration) {
        self.set_mode(Mode::Delay(latency));
    }

    /// Aborts every current connection (RST on both sides); keeps the mode.
    pub fn reset(&self) {
        self.control.send_modify(|c| c.generation += 1);
    }

    /// Ends a freeze or a delay: back to pass. Held bytes are delivered late.
    pub fn heal(&self) {
        self.pass();
    }

    fn set_mode(&self, mode: Mode) {
        self.control.send_modify(|c| c.mode = mode);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.control.send_modify(|c| c.shutdown = true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: StdListener,
    target: SocketAddr,
    control: watch::Receiver<Control>,
    open: Arc<AtomicUsize>,
) {
    let listener = TcpListener::from_std(listener).expect("tokio listener");
    let mut stop = control.clone();
    let stopped = async move {
        let _ = stop.wait_for(|c| c.shutdown).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    let _ = client.set_nodelay(true);
                    tokio::spawn(serve(client, target, control.clone(), OpenGuard::new(open.clone())));
                }
            }
            _ = &mut stopped => return,
        }
    }
}

/// Counts a connection as open for as long as it lives.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One client connection: wait out a freeze, connect upstream, pump both
/// ways until either side closes or a reset aborts it.
async fn serve(mut client: TcpStream, target: SocketAddr, mut control: watch::Receiver<Control>, _open: OpenGuard) {
    let generation = control.borrow().generation;
    let upstream = tokio::select! {
        connected = connect_when_flowing(target, control.clone()) => connected,
        _ = aborted(&mut control, generation) => None,
    };
    let Some(mut upstream) = upstream else {
        abort(&client);
        return;
    };
    let reset = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        tokio::select! {
            _ = pump(client_read, upstream_write, control.clone()) => false,
            _ = pump(upstream_read, client_write, control.clone()) => false,
            _ = aborted(&mut control, generation) => true,
        }
    };
    if reset {
        abort(&client);
        abort(&upstream);
    }
}

async fn connect_when_flowing(target: SocketAddr, mut control: watch::Receiver<Control>) -> Option<TcpStream> {
    control.wait_for(Control::flowing).await.ok()?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await.ok()?.ok()?;
    let _ = stream.set_nodelay(true);
    Some(stream)
}

/// Resolves once a reset (a newer generation) or the shutdown concerns a
/// connection opened under `generation`.
async fn aborted(control: &mut watch::Receiver<Control>, generation: u64) {
    let _ = control.wait_for(|c| c.generation != generation || c.shutdown).await;
}

/// Makes the coming close an RST: that is what a reset means to the peer.
fn abort(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Copies `from` to `to` under the current mode until `from` closes (after
/// forwarding what was read) or an I/O error. The reader stamps each chunk
/// with the instant it was read; the writer forwards it at that instant plus
/// the delay then in force, and neither moves while frozen.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    control: watch::Receiver<Control>,
) -> io::Result<()> {
    let (chunks, mut pending) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let mut read_control = control.clone();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if read_control.wait_for(Control::flowing).await.is_err() {
                return Ok::<_, io::Error>(());
            }
            let n = from.read(&mut buf).await?;
            if n == 0 || chunks.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                return Ok(());
            }
        }
    };
    let mut write_control = control;
    let write = async move {
        while let Some((read_at, bytes)) = pending.recv().await {
            wait_until_due(&mut write_control, read_at).await;
            to.write_all(&bytes).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}

/// Waits until a chunk read at `read_at` may go out: not frozen, and its
/// delay (re-read whenever the mode changes) has passed.
async fn wait_until_due(control: &mut watch::Receiver<Control>, read_at: Instant) {
    loop {
        if control.wait_for(Control::flowing).await.is_err() {
            return;
        }
        let due = read_at + control.borrow().delay();
        if Instant::now() >= due {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            changed = control.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream as StdStream;
    use std::time::Instant as StdInstant;

    use super::*;
    use crate::RedisServer;

    /// A blocking client connection through the proxy with a read deadline.
    fn connect(proxy: &FaultProxy, read_timeout: Duration) -> StdStream {
        let stream = StdStream::connect(("127.0.0.1", proxy.port())).expect("the proxy accepts");
        stream.set_read_timeout(Some(read_timeout)).unwrap();
        stream
    }

    /// Sends PING and reads what comes back within the read deadline.
    fn ping(stream: &mut StdStream) -> io::Result<String> {
        stream.write_all(b"PING\r\n")?;
        read_reply(stream)
    }

    fn read_reply(stream: &mut StdStream) -> io::Result<String> {
        let mut buf = [0u8; 64];
        match stream.read(&mut buf)? {
            0 => Err(io::Error::new(ErrorKind::UnexpectedEof, "closed")),
            n => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
        }
    }

    fn is_timeout(e: &io::Error) -> bool {
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    }

    fn wait_for_connections(proxy: &FaultProxy, n: usize) {
        let deadline = StdInstant::now() + Duration::from_secs(2);
        while proxy.open_connections() != n {
            assert!(StdInstant::now() < deadline, "{} connections, not {n}", proxy.open_connections());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn forwards_in_pass_mode() {
        let redis = RedisServer::start();
        let proxy = FaultProxy::start(redis.port());
        assert_eq!(proxy.url(), format!("redis://127.0.0.1:{}", proxy.port()));
        let mut stream = connect(&proxy, Duration::from_secs(2));
        for _ in 0..3 {
            assert_eq!(ping(&mut stream).unwrap(), "+PONG\r\n");
        }
    }

    #[test]
    fn freeze_holds_connections_open_and_silent_until_healed() {
        let redis = RedisServer::start();
        let proxy = FaultProxy::start(redis.port());
        let mut old = connect(&proxy, Duration::from_millis(400));
        assert_eq!(ping(&mut old).unwrap(), "+PONG\r\n");

        proxy.freeze();
        let err = ping(&mut old).expect_err("nothing is forwarded while frozen");
        assert!(is_timeout(&err), "a timeout, not a close: {err:?}");
        // A connection opened during the partition is accepted and stays silent.
        let mut new = connect(&proxy, Duration::from_millis(300));
        let err = ping(&mut new).expect_err("nothing is forwarded while frozen");
        assert!(is_timeout(&err), "a timeout, not a close: {err:?}");
        let err = read_reply(&mut old).expect_err("still nothing");
        assert!(is_timeout(&err), "still open: {err:?}");
        assert_eq!(proxy.open_connections(), 2, "both connections are held open");

        proxy.heal();
        // What was held is delivered late, on the same connections.
        old.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        new.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert!(read_reply(&mut old).unwrap().starts_with("+PONG"));
        assert_eq!(read_reply(&mut new).unwrap(), "+PONG\r\n");
        assert!(ping(&mut new).unwrap().starts_with("+PONG"));
    }

    #[test]
    fn reset_aborts_current_connections_and_keeps_accepting() {
        let redis = RedisServer::start();
        let proxy = FaultProxy::start(redis.port());
        let mut stream = connect(&proxy, Duration::from_secs(2));
        assert_eq!(ping(&mut stream).unwrap(), "+PONG\r\n");
        wait_for_connections(&proxy, 1);

        proxy.reset();
        let err = read_reply(&mut stream).expect_err("the connection is gone");
        assert!(!is_timeout(&err), "closed at once, not silent: {err:?}");
        wait_for_connections(&proxy, 0);
        assert!(ping(&mut stream).and_then(|_| ping(&mut stream)).is_err(), "no answer on a reset connection");

        let mut fresh = connect(&proxy, Duration::from_secs(2));
        assert_eq!(ping(&mut fresh).unwrap(), "+PONG\r\n");
    }

    #[test]
    fn reset_during_a_freeze_closes_the_held_connections() {
        let redis = RedisServer::start();
        let proxy = FaultProxy::start(redis.port());
        proxy.freeze();
        let mut stream = connect(&proxy, Duration::from_secs(2));
        wait_for_connections(&proxy, 1);
        proxy.reset();
        let err = ping(&mut stream).expect_err("aborted");
        assert!(!is_timeout(&err), "closed, not silent: {err:?}");
        assert_eq!(proxy.mode(), Mode::Freeze, "a reset keeps the mode");
    }

    #[test]
    fn delay_adds_latency_each_way_until_healed() {
        let redis = RedisServer::start();
        let proxy = FaultProxy::start(redis.port());
        let mut stream = connect(&proxy, Duration::from_secs(3));
        assert_eq!(ping(&mut stream).unwrap(), "+PONG\r\n");

        proxy.delay(Duration::from_millis(150));
        let started = StdInstant::now();
        assert_eq!(ping(&mut stream).unwrap(), "+PONG\r\n");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "150 ms each way: {took:?}");
        assert!(took < Duration::from_secs(2), "bounded: {took:?}");

        proxy.heal();
        let started = StdInstant::now();
        assert_eq!(ping(&mut stream).unwrap(), "+PONG\r\n");
        assert!(started.elapsed() < Duration::from_millis(150), "healed: {:?}", started.elapsed());
    }

    #[test]
    fn a_dead_target_closes_the_client_and_drop_stops_the_proxy() {
        let mut redis = RedisServer::start();
        let proxy = FaultProxy::start(redis.port());
        redis.kill();
        let mut stream = connect(&proxy, Duration::from_secs(3));
        let err = ping(&mut stream).expect_err("nothing to forward to");
        assert!(!is_timeout(&err), "closed, not silent: {err:?}");

        let port = proxy.port();
        drop(proxy);
        assert!(StdStream::connect(("127.0.0.1", port)).is_err(), "the port is closed");
    }
}
