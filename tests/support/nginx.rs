//! nginx (the Debian package) as a reverse proxy in front of the gateway, a foreground child of
//! the test in its own process group, configured from `tests/e2e/fixtures/nginx.conf.in`, which
//! includes deploy's location block (`deploy/nginx/xmpp-websocket.location.conf`) unchanged, on
//! plain HTTP on loopback.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::ejabberd::kill_group;
use super::{fill_template, free_loopback_port, poll_until, repo_path, tail};

/// How long nginx may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running nginx proxying `/xmpp-websocket` to one upstream.
pub struct Nginx {
    process: Option<Child>,
    addr: SocketAddr,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx proxying to `upstream` (`host:port` of the gateway's listener).
    pub fn start(upstream: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("xmppgw-nginx-").tempdir().expect("temp dir");
        let port = free_loopback_port();
        let template = fs::read_to_string(repo_path("tests/e2e/fixtures/nginx.conf.in")).expect("read nginx.conf.in");
        let config = fill_template(
            &template,
            &[
                ("DIR", &dir.path().display().to_string()),
                ("PORT", &port.to_string()),
                ("UPSTREAM", upstream),
                ("SNIPPET", &repo_path("deploy/nginx/xmpp-websocket.location.conf").display().to_string()),
            ],
        );
        let config_path = dir.path().join("nginx.conf");
        fs::write(&config_path, config).expect("write nginx.conf");
        let console = fs::File::create(dir.path().join("console.log")).expect("console file");
        let child = Command::new(std::env::var_os("NGINX").unwrap_or_else(|| "nginx".into()))
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&config_path)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("dup console"))
            .stderr(console)
            .spawn()
            .expect("spawn nginx (is the Debian package installed? scripts/test.sh installs it)");
        let mut nginx = Self { process: Some(child), addr: SocketAddr::from(([127, 0, 0, 1], port)), dir };
        let addr = nginx.addr;
        let mut exited = None;
        let ready = poll_until(START_TIMEOUT, || {
            exited = nginx.process.as_mut().and_then(|p| p.try_wait().ok().flatten());
            exited.is_some() || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        assert!(exited.is_none() && ready, "nginx did not start ({exited:?})\n{}", nginx.diagnostics());
        nginx
    }

    /// The WebSocket URL through nginx.
    pub fn url(&self) -> String {
        format!("ws://{}/xmpp-websocket", self.addr)
    }

    /// Console and error log, for failure messages.
    pub fn diagnostics(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- nginx console ---\n{}\n--- nginx error.log (tail) ---\n{}",
            read("console.log"),
            tail(&read("error.log"), 30)
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            kill_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
