//! The HTTP front under slow, idle and too many connections, oversized
//! headers, and a SIGTERM the moment the node says it listens. Real sockets.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::node::Node;
use support::TestServer;

async fn server_with(header_ms: u64, keep_alive_ms: u64, max_connections: usize) -> TestServer {
    TestServer::spawn_with(|s| {
        s.http.header_read_timeout = Duration::from_millis(header_ms);
        s.http.keep_alive_timeout = Duration::from_millis(keep_alive_ms);
        s.http.max_connections = max_connections;
    })
    .await
}

/// Reads until the peer closes (or `limit` passes); returns how long it took.
fn time_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(started.elapsed()),
            Err(_) => return None,
        }
    }
}

/// One `GET /healthz` on a fresh connection; its status line and latency.
fn get_healthz(addr: SocketAddr) -> (String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    (answer.lines().next().unwrap_or("").to_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_at_the_deadline_while_others_are_served() {
    let app = server_with(600, 5_000, 10_000).await;
    let addr = app.addr;
    tokio::task::spawn_blocking(move || {
        // 200 slowloris connections, each trickling a header line every 150 ms.
        let mut slow: Vec<TcpStream> = (0..200)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n").unwrap();
                s
            })
            .collect();
        let started = Instant::now();
        let mut open = slow.len();
        while open > 0 && started.elapsed() < Duration::from_secs(5) {
            open = 0;
            for s in &mut slow {
                if s.write_all(b"X-Slow: 1\r\n").is_ok() {
                    open += 1;
                }
            }
            let (status, took) = get_healthz(addr);
            assert_eq!(status, "HTTP/1.1 200 OK", "a normal request is served meanwhile");
            assert!(took < Duration::from_secs(2), "and promptly: {took:?}");
            std::thread::sleep(Duration::from_millis(150));
        }
        assert_eq!(open, 0, "every slow connection was closed");
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(3), "closed near the 600 ms deadline, not later: {elapsed:?}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed() {
    let app = server_with(500, 1_500, 10_000).await;
    let addr = app.addr;
    tokio::task::spawn_blocking(move || {
        // Connected, never a byte: the header deadline applies.
        let mut silent = TcpStream::connect(addr).unwrap();
        let took = time_until_closed(&mut silent, Duration::from_secs(5)).expect("closed");
        assert!(took < Duration::from_millis(1_400), "silent connection closed after {took:?}");

        // One request answered, then idle: the keep-alive timeout applies,
        // and a second request inside it is served on the same connection.
        let mut kept = TcpStream::connect(addr).unwrap();
        kept.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 1024];
        for _ in 0..2 {
            kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            let n = kept.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            std::thread::sleep(Duration::from_millis(800));
        }
        let took = time_until_closed(&mut kept, Duration::from_secs(5)).expect("closed");
        assert!(took < Duration::from_millis(1_500), "idle connection closed {took:?} after its last check");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_the_listener_keeps_serving() {
    let app = server_with(700, 5_000, 20).await;
    let addr = app.addr;
    tokio::task::spawn_blocking(move || {
        // Fill the cap with silent connections, and some more beyond it.
        let hogs: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));
        // A normal request waits in the backlog until the hogs are cut off,
        // then is served: the listener never died.
        let (status, took) = get_healthz(addr);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(took < Duration::from_secs(4), "served once slots freed: {took:?}");
        drop(hogs);
        let (status, took) = get_healthz(addr);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(took < Duration::from_secs(2), "{took:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431() {
    let app = TestServer::spawn().await;
    let many: Vec<(String, String)> = (0..100).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let mut request = app.http.get(app.url("/healthz"));
    for (k, v) in &many {
        request = request.header(k, v);
    }
    assert_eq!(request.send().await.unwrap().status(), 431);
    // Past the limit (64) but under hyper's own ceiling (100): the front
    // counts, and answers as hyper does.
    let mut request = app.http.get(app.url("/healthz"));
    for (k, v) in many.iter().take(70) {
        request = request.header(k, v);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 431);
    assert_eq!(r.headers()["connection"], "close");
    let mut request = app.http.get(app.url("/healthz"));
    for (k, v) in many.iter().take(50) {
        request = request.header(k, v);
    }
    assert_eq!(request.send().await.unwrap().status(), 200, "under the limit");
    let huge = "a".repeat(20 * 1024);
    let r = app.http.get(app.url("/healthz")).header("x-big", huge).send().await.unwrap();
    assert_eq!(r.status(), 431);
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the server is fine afterwards");
}

#[tokio::test]
async fn sigterm_right_after_listening_is_a_clean_stop() {
    // The handler must be in place before the start-up line is printed:
    // stop each node the instant it says it listens.
    for _ in 0..5 {
        let data = tempfile::tempdir().unwrap();
        let node = Node::launch([std::ffi::OsStr::new("--data-dir"), data.path().as_os_str()], &[]).await;
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_open_file_limit_a_flood_neither_kills_the_listener_nor_spins() {
    // The node runs with 256 descriptors; 400 silent connections would
    // exhaust them without the cap (which the node lowers to 256 - 128).
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("stderr.log");
    let script = format!(
        "ulimit -n 256 && exec {} serve --dev --bind 127.0.0.1:0 --log warn --header-read-timeout-ms 700 --data-dir {}",
        support::node::BIN,
        data.path().join("d").display()
    );
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let addr: SocketAddr = loop {
        let mut line = String::new();
        let n =
            tokio::time::timeout(Duration::from_secs(30), tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line))
                .await
                .unwrap()
                .unwrap();
        assert!(n > 0, "the node exited");
        if let Some(url) = line.trim().strip_prefix("tessera listening on http://") {
            break url.parse().unwrap();
        }
    };
    tokio::task::spawn_blocking(move || {
        let flood: Vec<TcpStream> = (0..400).filter_map(|_| TcpStream::connect(addr).ok()).collect();
        assert!(flood.len() >= 300, "the backlog takes what the cap holds back");
        std::thread::sleep(Duration::from_millis(200));
        let (status, took) = get_healthz(addr);
        assert_eq!(status, "HTTP/1.1 200 OK", "served once the flood is cut off");
        assert!(took < Duration::from_secs(5), "{took:?}");
        drop(flood);
        let (status, took) = get_healthz(addr);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(took < Duration::from_secs(2), "{took:?}");
    })
    .await
    .unwrap();
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let errors = std::fs::read_to_string(&log).unwrap();
    assert!(!errors.contains("Too many open files"), "{errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_a_new_connection_takes_the_place_of_a_waiting_one() {
    // Header deadline 10 s: the hogs would hold their slots that long.
    let app = server_with(10_000, 60_000, 20).await;
    let addr = app.addr;
    tokio::task::spawn_blocking(move || {
        let _hogs: Vec<TcpStream> = (0..40)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\n");
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..3 {
            let (status, took) = get_healthz(addr);
            assert_eq!(status, "HTTP/1.1 200 OK");
            assert!(took < Duration::from_secs(2), "served without waiting for the header deadline: {took:?}");
        }
    })
    .await
    .unwrap();
}
