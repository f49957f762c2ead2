//! A `tessera` server process, for tests that need real separate nodes.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The secret every test node shares (as operators would set TESSERA_SECRET).
pub const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub struct Node {
    pub child: Child,
    pub base: String,
}

impl Node {
    /// Starts a node on `data` that sends codes to `sink`, with `extra` flags.
    pub async fn start(data: &Path, sink: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["serve", "--dev", "--bind", "127.0.0.1:0", "--log", "warn", "--otp-sender", "webhook"])
            .args(["--otp-webhook", sink])
            .args(extra)
            .arg("--data-dir")
            .arg(data)
            .env("TESSERA_SECRET", SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), out.next_line()).await.unwrap().unwrap().unwrap();
        let base = line.strip_prefix("tessera listening on ").expect("start-up line").to_owned();
        Self { child, base }
    }

    /// The URL of `path` on this node.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}
