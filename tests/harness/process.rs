//! The gateway as a real process (the built binary), for signals, exit codes and logs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running gateway process; killed when dropped.
pub struct GatewayProcess {
    child: Child,
    /// Every stderr line so far.
    pub log: Arc<Mutex<Vec<String>>>,
    /// `ws://127.0.0.1:PORT/xmpp-websocket`.
    pub url: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin: String,
    _dir: tempfile::TempDir,
    /// The configuration file (rewrite it and send SIGHUP to reload).
    pub config_path: std::path::PathBuf,
}

impl GatewayProcess {
    /// Starts the binary with `toml` as its configuration; listener and admin on port 0.
    pub fn start(toml: &str) -> GatewayProcess {
        Self::start_command(toml, Command::new(env!("CARGO_BIN_EXE_xmpp-ws-gateway")))
    }

    /// Like [`Self::start`], with the descriptor limit (RLIMIT_NOFILE) set by the shell first:
    /// `ulimit` is e.g. `-n 256` (soft and hard) or `-Sn 256` (soft only).
    pub fn start_with_ulimit(toml: &str, ulimit: &str) -> GatewayProcess {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit {ulimit} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_xmpp-ws-gateway"));
        Self::start_command(toml, command)
    }

    fn start_command(toml: &str, mut command: Command) -> GatewayProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, toml).expect("write config");
        let mut child = command
            .arg("--config")
            .arg(&config_path)
            .env("XMPPGW_LISTENER__ADDRESS", "127.0.0.1:0")
            .env("XMPPGW_ADMIN__ADDRESS", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gateway binary");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("websocket listener ready") {
                    let _ = ready_tx.send(line.clone());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let ready = ready_rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("gateway did not become ready; log: {:?}", log.lock().unwrap())
        });
        let field = |name: &str| {
            ready
                .split_whitespace()
                .find_map(|token| token.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {ready}"))
                .trim_matches('"')
                .to_string()
        };
        let url = field("url=");
        let admin = field("admin=");
        GatewayProcess { child, log, url, admin, _dir: dir, config_path }
    }

    /// The process id (for /proc/<pid>/status).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `Vm...:` value of /proc/<pid>/status in KiB (`"VmRSS:"`, `"VmHWM:"`).
    pub fn status_kib(&self, key: &str) -> u64 {
        proc_status_kib(self.pid(), key)
    }

    /// How many descriptors the process has open (entries of /proc/<pid>/fd).
    pub fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("/proc/<pid>/fd").count()
    }

    /// The address of the public listener (`127.0.0.1:PORT`).
    pub fn listener_addr(&self) -> std::net::SocketAddr {
        let rest = self.url.split("://").nth(1).expect("scheme://");
        rest.split('/').next().expect("host:port").parse().expect("listener address")
    }

    /// CPU time the process has used so far, user and system, all threads (/proc/<pid>/stat).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("/proc/<pid>/stat");
        // Fields after the command name (which may contain spaces): state is the first, utime
        // the 12th and stime the 13th (man 5 proc).
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .expect("(comm)")
            .1
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let ticks = fields.iter().sum::<u64>();
        Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64)
    }

    /// The value of one series of the process's `/metrics` (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let host = self.admin_addr();
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (_, text) = super::ws_client::raw_http(&host, &request).await;
        text.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
    }

    /// The address of the admin listener.
    pub fn admin_addr(&self) -> String {
        self.admin.trim_start_matches("http://").to_string()
    }

    /// The collected stderr as one string.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends a signal by name (`TERM`, `HUP`, ...) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(status.map(|s| s.success()).unwrap_or(false), "kill -{name} failed");
    }

    /// Waits for the process to exit, up to `limit`; returns its exit code and the time taken.
    pub fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status.code(), started.elapsed());
            }
            assert!(started.elapsed() < limit, "the gateway did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a log line contains `needle`, up to `limit`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|line| line.contains(needle)) {
                return line.clone();
            }
            assert!(started.elapsed() < limit, "no log line with {needle:?}; log: {}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 when that cannot run).
fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// A `Vm...:` value of /proc/<pid>/status in KiB.
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
