//! A slowloris burst: many loopback connections that each send a request
//! line and headers one byte at a time, slowly, never finishing. A server
//! without a header-read deadline keeps every one of them (and a task, a
//! buffer and a file descriptor each) for as long as the client likes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::history::Tally;

enum Fate {
    Refused,
    Closed,
    Held,
}

/// Opens `connections` connections to `addr` (`host:port`) and dribbles one
/// byte per `every` on each for `duration`; then closes them all.
pub async fn burst(addr: String, connections: usize, duration: Duration, every: Duration) -> Tally {
    let until = Instant::now() + duration;
    let tasks: Vec<_> = (0..connections).map(|_| tokio::spawn(dribble(addr.clone(), until, every))).collect();
    let mut tally = Tally { attempted: connections, ..Tally::default() };
    for task in tasks {
        match task.await {
            Ok(Fate::Refused) | Err(_) => tally.refused += 1,
            Ok(Fate::Closed) => tally.closed_by_server += 1,
            Ok(Fate::Held) => tally.held += 1,
        }
    }
    tally
}

async fn dribble(addr: String, until: Instant, every: Duration) -> Fate {
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&addr)).await else {
        return Fate::Refused;
    };
    let head = format!("GET /user/me HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ");
    let mut bytes = head.bytes().chain(std::iter::repeat(b'a'));
    let mut buf = [0u8; 256];
    while Instant::now() < until {
        let byte = bytes.next().unwrap_or(b'a');
        if stream.write_all(&[byte]).await.is_err() {
            return Fate::Closed;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            // Any answer (a 408, a close, a reset) means the server let go.
            _ = stream.read(&mut buf) => return Fate::Closed,
        }
    }
    Fate::Held
}
