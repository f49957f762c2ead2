//! A real nginx (Debian's package; `scripts/test` installs it) for tests
//! that put Tessera behind a reverse proxy.

use std::path::Path;
use std::time::{Duration, Instant};

/// An nginx process on a free loopback port, killed (and its directory
/// removed) when dropped.
pub struct Nginx {
    child: std::process::Child,
    /// The port it listens on.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx with `site(port)`: the `server { … }` blocks of the
    /// `http` context, listening on `port` (free, on 127.0.0.1).
    pub async fn start(site: impl FnOnce(u16) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.path().display();
        let config = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
             http {{\naccess_log off;\ninclude /etc/nginx/mime.types;\nclient_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fastcgi;\nuwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n{}\n}}\n",
            site(port)
        );
        std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
        // Debian puts it in /usr/sbin, which is not on every user's PATH.
        let program = if Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" };
        let child = std::process::Command::new(program)
            .args(["-p", &d.to_string(), "-c", "nginx.conf"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx is installed (scripts/test installs it)");
        let nginx = Self { child, port, _dir: dir };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            let log = std::fs::read_to_string(nginx._dir.path().join("error.log")).unwrap_or_default();
            assert!(started.elapsed() < Duration::from_secs(10), "nginx did not start: {log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nginx
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
