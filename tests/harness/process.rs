//! The gateway as a real process (the built binary), for signals, exit codes and logs: the one
//! gateway-process fixture, used directly by the process and hostile tests and through
//! [`super::e2e::Gateway`] by the end-to-end tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the gateway may take to log that its listener is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The log line the gateway writes once it listens, with its `url=` and `admin=` fields.
const READY_LINE: &str = "websocket listener ready";

/// A running gateway process; killed when dropped.
pub struct GatewayProcess {
    child: Child,
    /// Every stderr line so far.
    pub log: Arc<Mutex<Vec<String>>>,
    /// `ws://127.0.0.1:PORT/xmpp-websocket`.
    pub url: String,
    /// `http://127.0.0.1:PORT` of the admin listener (`disabled` without one).
    pub admin: String,
    _dir: tempfile::TempDir,
    /// The configuration file (rewrite it and send SIGHUP to reload).
    pub config_path: PathBuf,
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
        command.env("XMPPGW_LISTENER__ADDRESS", "127.0.0.1:0").env("XMPPGW_ADMIN__ADDRESS", "127.0.0.1:0");
        Self::try_start_command(toml, command).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Starts the binary with `toml` as written (its addresses included) and the environment
    /// `env`; an error with the log if it exits or is not ready within 20 s.
    pub fn try_start(toml: &str, env: &[(&str, &str)]) -> Result<GatewayProcess, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xmpp-ws-gateway"));
        command.envs(env.iter().copied());
        Self::try_start_command(toml, command)
    }

    fn try_start_command(toml: &str, mut command: Command) -> Result<GatewayProcess, String> {
        let dir = tempfile::Builder::new().prefix("xmppgw-gateway-").tempdir().expect("temp dir");
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, toml).expect("write config");
        command.arg("--config").arg(&config_path);
        Self::spawn_and_wait(command, READY_TIMEOUT, config_path, dir)
    }

    /// Spawns `command` (stderr piped, colours off), collects its stderr lines and waits up to
    /// `timeout` for the ready line.
    fn spawn_and_wait(
        mut command: Command,
        timeout: Duration,
        config_path: PathBuf,
        dir: tempfile::TempDir,
    ) -> Result<GatewayProcess, String> {
        command.env("NO_COLOR", "1").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| format!("spawn the gateway: {e}"))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let lines = log.clone();
        // Ends when stderr closes, i.e. when the gateway exits or is killed.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains(READY_LINE) {
                    let _ = ready_tx.send(line.clone());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let ready = match ready_rx.recv_timeout(timeout) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the gateway was not ready within {timeout:?}; log:\n{}",
                    log.lock().unwrap().join("\n")
                ));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stderr closed: the process is gone.
                let status = child.wait().ok();
                return Err(format!(
                    "the gateway exited before it was ready ({status:?}); log:\n{}",
                    log.lock().unwrap().join("\n")
                ));
            }
        };
        let (Some(url), Some(admin)) = (field(&ready, "url="), field(&ready, "admin=")) else {
            let _ = child.kill();
            return Err(format!("no url= and admin= in {ready:?}"));
        };
        Ok(GatewayProcess { child, log, url, admin, _dir: dir, config_path })
    }

    /// `Some(status)` if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
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

    /// Waits (polling, up to [`super::STEP`]) until the process holds at most `limit`
    /// descriptors, so that connections being closed are not counted; the last count.
    pub async fn descriptors_settle(&self, limit: usize) -> usize {
        let deadline = Instant::now() + super::STEP;
        loop {
            let open = self.open_descriptors();
            if open <= limit || Instant::now() > deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

    /// Waits (polling `/metrics`, up to `within`) until `series` satisfies `settled`; its last
    /// value, settled or not (the caller asserts).
    pub async fn metric_settles(&self, series: &str, within: Duration, settled: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + within;
        loop {
            let value = self.metric(series).await;
            if settled(value) || Instant::now() > deadline {
                return value;
            }
            tokio::task::yield_now().await;
        }
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

/// CPU time of each thread of process `pid` (nanoseconds, /proc/PID/task/TID/schedstat). A
/// thread's counter is brought up to date whenever it stops running, so it is exact for threads
/// that are idle when it is read: the tests read it after waiting for the gateway's answers.
pub fn threads_cpu(pid: u32) -> HashMap<u32, u64> {
    let mut threads = HashMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        // A thread may end between the listing and the read.
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("schedstat")) {
            threads.insert(tid, stat.split_whitespace().next().unwrap().parse().unwrap());
        }
    }
    threads
}

/// The CPU time the process's threads used since `before` was read (threads started since
/// count from zero).
pub fn cpu_since(pid: u32, before: &HashMap<u32, u64>) -> Duration {
    let now = threads_cpu(pid);
    Duration::from_nanos(now.iter().map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0))).sum())
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

/// The value of a `name=` field of a log line, quoted or not.
fn field(line: &str, name: &str) -> Option<String> {
    let start = line.find(name)? + name.len();
    let rest = line[start..].trim_start_matches('"');
    let end = rest.find(|c: char| c.is_whitespace() || c == '"' || c == ',').unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    fn spawn(script: &str, timeout: Duration) -> Result<GatewayProcess, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        GatewayProcess::spawn_and_wait(shell(script), timeout, dir.path().join("unused.toml"), dir)
    }

    #[test]
    fn fields_are_read_plain_and_quoted() {
        let line = "INFO xmpp_ws_gateway::run: websocket listener ready url=ws://127.0.0.1:4321/xmpp-websocket admin=http://127.0.0.1:9";
        assert_eq!(field(line, "url=").as_deref(), Some("ws://127.0.0.1:4321/xmpp-websocket"));
        assert_eq!(field(line, "admin=").as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(field(r#"INFO ready url="ws://127.0.0.1:1/x""#, "url=").as_deref(), Some("ws://127.0.0.1:1/x"));
    }

    #[test]
    fn the_fixture_waits_for_the_ready_line_and_keeps_the_log() {
        let script =
            "echo starting >&2; echo 'INFO websocket listener ready url=ws://127.0.0.1:9/x admin=disabled' >&2; \
                      echo after >&2; exec sleep 30";
        let mut gateway = spawn(script, Duration::from_secs(10)).expect("ready");
        assert_eq!(gateway.url, "ws://127.0.0.1:9/x");
        gateway.wait_for_log("after", Duration::from_secs(5));
        assert_eq!(gateway.log.lock().unwrap()[0], "starting");
        assert!(gateway.exited().is_none());
        let started = Instant::now();
        drop(gateway); // must kill `sleep 30`, not wait for it
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn the_fixture_reports_early_exit_and_silence() {
        let error = spawn("echo boom >&2; exit 3", Duration::from_secs(10)).err().expect("must fail");
        assert!(error.contains("exited before it was ready") && error.contains("boom"), "{error}");
        let started = Instant::now();
        let error = spawn("exec sleep 30", Duration::from_millis(300)).err().expect("must time out");
        assert!(error.contains("not ready within"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
