//! A real `tessera` server process, for tests that need the binary itself
//! or several separate nodes.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// The secret every webhook test node shares (as operators would set TESSERA_SECRET).
pub const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub struct Node {
    pub child: Child,
    pub base: String,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Node {
    /// Runs `tessera serve --dev --bind 127.0.0.1:0 --log warn ARGS` with
    /// `env`, and waits for its start-up line.
    pub async fn launch<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>, env: &[(&str, &str)]) -> Self {
        Self::launch_program(BIN, args, env, Stdio::null()).await
    }

    /// [`Node::launch`] of `program` (another build of `tessera`, to compare
    /// against), with the process's stderr (its log, and any panic message)
    /// going to `stderr` instead of nowhere. The node logs warnings, or
    /// what the test run's `TESSERA_LOG` asks for (to read a failure).
    pub async fn launch_program<S: AsRef<OsStr>>(
        program: &str,
        args: impl IntoIterator<Item = S>,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Self {
        let log = std::env::var("TESSERA_LOG").unwrap_or_else(|_| "warn".to_owned());
        Self::launch_logged(program, &log, args, env, stderr).await
    }

    /// [`Node::launch_program`] with the log filter `log`.
    pub async fn launch_logged<S: AsRef<OsStr>>(
        program: &str,
        log: &str,
        args: impl IntoIterator<Item = S>,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Self {
        let mut child = Command::new(program)
            .args(["serve", "--dev", "--bind", "127.0.0.1:0", "--log", log])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (tx, mut lines) = mpsc::unbounded_channel();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                let _ = tx.send(line);
            }
        });
        let base = loop {
            let line =
                tokio::time::timeout(Duration::from_secs(30), lines.recv()).await.unwrap().expect("start-up line");
            if let Some(url) = line.strip_prefix("tessera listening on ") {
                break url.to_owned();
            }
        };
        Self { child, base, lines }
    }

    /// A node on `data` that sends codes to `sink`, with `extra` flags.
    pub async fn start(data: &Path, sink: &str, extra: &[&str]) -> Self {
        Self::start_program(BIN, data, sink, extra, Stdio::null()).await
    }

    /// [`Node::start`] of `program`, with the node's stderr going to
    /// `stderr` (a file, so that a test can look for panics afterwards).
    pub async fn start_program(program: &str, data: &Path, sink: &str, extra: &[&str], stderr: Stdio) -> Self {
        let mut args: Vec<&OsStr> = ["--otp-sender", "webhook", "--otp-webhook", sink].map(OsStr::new).to_vec();
        args.extend(extra.iter().map(OsStr::new));
        args.extend([OsStr::new("--data-dir"), data.as_os_str()]);
        Self::launch_program(program, args, &[("TESSERA_SECRET", SECRET)], stderr).await
    }

    /// The URL of `path` on this node.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The next code the console OTP sender prints.
    pub async fn code(&mut self) -> String {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), self.lines.recv()).await.unwrap().unwrap();
            if let Some(rest) = line.strip_prefix("code ") {
                return rest.split(' ').next().unwrap().to_owned();
            }
        }
    }

    /// SIGTERM, and insists on a clean exit.
    pub async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "SIGTERM is a clean shutdown: {status}");
    }
}

impl Node {
    /// The status `GET /user/me` answers with `token` (a session or access token).
    pub async fn me_status(&self, http: &reqwest::Client, token: &str) -> u16 {
        http.get(self.url("/user/me")).bearer_auth(token).send().await.unwrap().status().as_u16()
    }

    /// Polls (bounded) until `GET /user/me` answers `want`; returns how long it took.
    pub async fn until_status(&self, http: &reqwest::Client, token: &str, want: u16) -> Duration {
        let started = Instant::now();
        loop {
            if self.me_status(http, token).await == want {
                return started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{} never answered {want}", self.base);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A header client's password login of [`super::PHONE`]: the answer's `data`.
    pub async fn login_header(&self, http: &reqwest::Client) -> Value {
        super::password_login_header(http, &self.url("/user/login"), super::PHONE).await
    }
}
