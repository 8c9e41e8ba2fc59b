//! Fixtures for end-to-end tests: a real Prosody, the gateway binary as the
//! end-to-end tests run it, and a runner for the
//! JavaScript client scenarios in `tests/e2e/js/`.
//!
//! Every fixture owns a temporary directory and its child process, and kills the
//! process on `Drop`, so a failing test leaves nothing running. Everything listens
//! on 127.0.0.1 only. Waiting is always "poll a condition until a deadline": no
//! fixed sleeps stand in for synchronisation, and every wait has a timeout.
//!
//! Certificates come from the one [`TestCa`].

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::process::GatewayProcess;
pub use super::TestCa;

/// The XMPP domain every end-to-end test uses.
pub const DOMAIN: &str = "e2e.test";

/// How long Prosody may take to start listening.
const PROSODY_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `prosodyctl` invocation may take.
const PROSODYCTL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the gateway may take to log its listening URL.
const GATEWAY_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Interval between polls of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Absolute path of a file below the crate root.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Polls `condition` every [`POLL_INTERVAL`] until it holds or `timeout` passes.
/// Returns whether it held. Bounded in time, and so in iterations.
pub fn poll_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// A free TCP port on 127.0.0.1, found by binding port 0 and releasing it.
///
/// Another process could take the port before the fixture binds it; fixtures
/// that use this detect a failed start and report it rather than hang.
pub fn free_loopback_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// What a finished child process produced.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout, lossily decoded.
    pub stdout: String,
    /// Everything written to stderr, lossily decoded.
    pub stderr: String,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
}

/// Runs `command` to completion with piped output, killing it if it is still
/// running after `timeout`. Errors name the command and, on timeout, include the
/// output seen so far.
pub fn run_with_timeout(mut command: Command, timeout: Duration) -> Result<Finished, String> {
    let description = format!("{command:?}");
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {description}: {e}"))?;
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let mut status = None;
    let exited = poll_until(timeout, || match child.try_wait() {
        Ok(Some(s)) => {
            status = Some(s);
            true
        }
        Ok(None) => false,
        Err(_) => true,
    });
    if !exited || status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Finished { status, stdout, stderr, elapsed: start.elapsed() }),
        None => Err(format!(
            "{description} did not finish within {timeout:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        )),
    }
}

/// Reads a pipe to its end on a thread; the pipe closes when the child exits or
/// is killed, so the thread always finishes.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
struct KillOnDrop(Child);

impl KillOnDrop {
    /// `Some(status)` if the process has already exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().ok().flatten()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------
// Prosody
// ---------------------------------------------------------------------------

/// An account on the Prosody fixture.
#[derive(Debug, Clone)]
pub struct Account {
    /// Localpart.
    pub user: String,
    /// Password.
    pub password: String,
}

impl Account {
    /// Bare JID on [`DOMAIN`].
    pub fn jid(&self) -> String {
        format!("{}@{DOMAIN}", self.user)
    }
}

/// Options for [`Prosody::start_with`].
#[derive(Debug, Clone, Default)]
pub struct ProsodyOptions {
    /// Also serve Prosody's own RFC 7395 endpoint (mod_websocket) on a loopback
    /// HTTP port, for comparison tests; see [`Prosody::websocket_url`].
    pub websocket: bool,
    /// Load mod_smacks (XEP-0198). Off by default: xmpp.js enables stream management whenever
    /// it is offered, and its close then races with acks (see the interop matrix).
    pub stream_management: bool,
}

/// A real Prosody (the Debian package) in the foreground, configured from
/// `tests/e2e/fixtures/prosody.cfg.lua.in`: VirtualHost [`DOMAIN`] with a
/// certificate from its own [`TestCa`], STARTTLS required on c2s, SCRAM-SHA-1
/// and PLAIN over TLS, no s2s, all state and the log in a temporary directory.
pub struct Prosody {
    process: KillOnDrop,
    ca: TestCa,
    c2s: SocketAddr,
    http: Option<SocketAddr>,
    config_path: PathBuf,
    log_path: PathBuf,
    dir: TempDir,
}

impl Prosody {
    /// Starts Prosody with the default options (no WebSocket endpoint).
    pub fn start() -> Self {
        Self::start_with(ProsodyOptions::default())
    }

    /// Starts Prosody and waits until it accepts connections; panics with the
    /// log if it does not within 20 s.
    pub fn start_with(options: ProsodyOptions) -> Self {
        let dir = tempfile::Builder::new().prefix("xmppgw-prosody-").tempdir().expect("temp dir");
        let ca = TestCa::new();
        let leaf = ca.issue(DOMAIN, &[DOMAIN]);
        fs::create_dir_all(dir.path().join("data")).expect("data dir");
        fs::create_dir_all(dir.path().join("certs")).expect("certs dir");

        let c2s_port = free_loopback_port();
        let http_port = options.websocket.then(free_loopback_port);
        let template = fs::read_to_string(repo_path("tests/e2e/fixtures/prosody.cfg.lua.in"))
            .expect("read tests/e2e/fixtures/prosody.cfg.lua.in");
        let config = fill_template(
            &template,
            &[
                ("DIR", &dir.path().display().to_string()),
                ("C2S_PORT", &c2s_port.to_string()),
                ("HTTP_PORT", &http_port.map(|p| p.to_string()).unwrap_or_default()),
                ("WEBSOCKET", if options.websocket { "websocket" } else { "ping" }),
                ("SMACKS", if options.stream_management { "smacks" } else { "ping" }),
                ("DOMAIN", DOMAIN),
                ("CERT", &leaf.cert_path.display().to_string()),
                ("KEY", &leaf.key_path.display().to_string()),
            ],
        );
        let config_path = dir.path().join("prosody.cfg.lua");
        fs::write(&config_path, config).expect("write prosody config");
        let log_path = dir.path().join("prosody.log");

        let console = fs::File::create(dir.path().join("prosody.console")).expect("console file");
        let child = Command::new(prosody_bin("PROSODY", "prosody"))
            .arg("--config")
            .arg(&config_path)
            .arg("-F")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("dup console file"))
            .stderr(console)
            .spawn()
            .expect("spawn prosody (is the Debian package installed? scripts/test.sh installs it)");
        let mut prosody = Self {
            process: KillOnDrop(child),
            ca,
            c2s: SocketAddr::from(([127, 0, 0, 1], c2s_port)),
            http: http_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
            config_path,
            log_path,
            dir,
        };
        prosody.wait_until_listening();
        prosody
    }

    /// Polls until every configured port accepts TCP connections, failing fast
    /// if Prosody exits.
    fn wait_until_listening(&mut self) {
        let ports: Vec<SocketAddr> = std::iter::once(self.c2s).chain(self.http).collect();
        let mut exited = None;
        let ready = poll_until(PROSODY_START_TIMEOUT, || {
            exited = self.process.exited();
            exited.is_some()
                || ports.iter().all(|addr| TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok())
        });
        if let Some(status) = exited {
            panic!("prosody exited during start ({status})\n{}", self.diagnostics());
        }
        assert!(ready, "prosody did not listen on {ports:?} within {PROSODY_START_TIMEOUT:?}\n{}", self.diagnostics());
    }

    /// The VirtualHost.
    pub fn domain(&self) -> &str {
        DOMAIN
    }

    /// The c2s (STARTTLS) listener on 127.0.0.1.
    pub fn c2s_addr(&self) -> SocketAddr {
        self.c2s
    }

    /// The CA that issued Prosody's certificate (PEM file).
    pub fn ca_pem_path(&self) -> &Path {
        self.ca.ca_pem_path()
    }

    /// The CA itself, to issue more certificates.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// Prosody's own WebSocket endpoint, if started with `websocket: true`.
    pub fn websocket_url(&self) -> Option<String> {
        self.http.map(|addr| format!("ws://{addr}/xmpp-websocket"))
    }

    /// Path of the generated configuration.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Path of the debug-level log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The log so far (empty if not yet written).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Polls the log until it contains `needle` or `timeout` passes.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        poll_until(timeout, || self.log().contains(needle))
    }

    /// Creates an account with `prosodyctl register` (same config file).
    pub fn register(&self, user: &str, password: &str) -> Account {
        let mut command = Command::new(prosody_bin("PROSODYCTL", "prosodyctl"));
        command
            .arg("--config")
            .arg(&self.config_path)
            .args(["register", user, DOMAIN, password])
            .current_dir(self.dir.path());
        let done = run_with_timeout(command, PROSODYCTL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            done.status.success(),
            "prosodyctl register {user} failed ({})\nstdout: {}\nstderr: {}",
            done.status,
            done.stdout,
            done.stderr
        );
        Account { user: user.to_owned(), password: password.to_owned() }
    }

    /// Registers `user` with a random password.
    pub fn register_random(&self, user: &str) -> Account {
        let password = format!("pw-{:016x}", rand::random::<u64>());
        self.register(user, &password)
    }

    /// Console output and the tail of the log, for failure messages.
    pub fn diagnostics(&self) -> String {
        let console = fs::read_to_string(self.dir.path().join("prosody.console")).unwrap_or_default();
        format!("--- prosody console ---\n{console}\n--- prosody log (tail) ---\n{}", tail(&self.log(), 60))
    }
}

/// Binary path from the environment variable `var`, else `default` from PATH.
fn prosody_bin(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default))
}

/// Replaces every `@NAME@` in `template`; panics if a placeholder is left over,
/// so the template and its fillers cannot drift apart silently.
pub fn fill_template(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    // A comment (Lua `--`, or a whole YAML/nginx `#` line) may mention placeholders; code may
    // not keep any.
    let leftover: Vec<&str> = text
        .lines()
        .filter(|line| {
            let code = if line.trim_start().starts_with('#') { "" } else { line.split("--").next().unwrap_or("") };
            code.split('@')
                .skip(1)
                .step_by(2)
                .any(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        })
        .collect();
    assert!(leftover.is_empty(), "unfilled template placeholders: {leftover:?}");
    text
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------
// Gateway
// ---------------------------------------------------------------------------

/// The gateway binary as the end-to-end tests run it: the one [`GatewayProcess`] fixture with
/// the configuration's own addresses, debug logs for the gateway's own events unless `env` sets
/// another level, and a log that is polled rather than waited on with a panic.
pub struct Gateway {
    process: GatewayProcess,
}

impl Gateway {
    /// Starts the gateway with `config_toml`; panics (with the log) if it does
    /// not report its URL within 20 s.
    pub fn start(config_toml: &str) -> Self {
        Self::try_start(config_toml, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the gateway with extra environment variables (e.g. `XMPPGW_LOG__LEVEL`).
    pub fn try_start(config_toml: &str, env: &[(&str, &str)]) -> Result<Self, String> {
        // Debug logs make e2e failures readable; an explicit level in `env` wins.
        let mut all = vec![("XMPPGW_LOG__LEVEL", "info,xmpp_ws_gateway=debug")];
        all.extend_from_slice(env);
        GatewayProcess::try_start(config_toml, &all).map(|process| Gateway { process })
    }

    /// A config TOML with one STARTTLS upstream pointing at `prosody`.
    pub fn config_for(prosody: &Prosody) -> String {
        let mut toml = String::new();
        let _ = write!(
            toml,
            "[listener]\naddress = \"127.0.0.1:0\"\npath = \"/xmpp-websocket\"\nallow_missing_origin = true\n\n\
             [admin]\naddress = \"127.0.0.1:0\"\n\n\
             [[upstream]]\ndomain = \"{domain}\"\naddress = \"{addr}\"\ntls = \"starttls\"\nca_file = \"{ca}\"\n",
            domain = prosody.domain(),
            addr = prosody.c2s_addr(),
            ca = prosody.ca_pem_path().display(),
        );
        toml
    }

    /// Like [`Self::config_for`], for a gateway behind a reverse proxy on loopback:
    /// `trusted_proxies = ["127.0.0.1"]`.
    pub fn config_behind_proxy(prosody: &Prosody) -> String {
        let toml = Self::config_for(prosody);
        let listener = "[listener]\n";
        assert!(toml.starts_with(listener), "{toml}");
        toml.replacen(listener, "[listener]\ntrusted_proxies = [\"127.0.0.1\"]\n", 1)
    }

    /// `host:port` of the WebSocket listener.
    pub fn listen_addr(&self) -> &str {
        self.url().split("://").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or_default()
    }

    /// `http://host:port` of the admin listener (`/metrics`), when enabled.
    pub fn admin_url(&self) -> Option<&str> {
        Some(self.process.admin.as_str()).filter(|admin| admin.starts_with("http://"))
    }

    /// The value of one series of the gateway's `/metrics` (0 when absent), e.g.
    /// `xmppgw_websocket_upgrades_total{http_version="2"}`; panics without an admin listener.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics_text();
        text.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
    }

    /// The sum of every series of metric `name` over its labels (0 when absent).
    pub fn metric_sum(&self, name: &str) -> f64 {
        let text = self.metrics_text();
        text.lines()
            .filter_map(|line| line.strip_prefix(name))
            .filter(|rest| rest.starts_with(['{', ' ']))
            .filter_map(|rest| rest.rsplit(' ').next().and_then(|value| value.parse::<f64>().ok()))
            .sum()
    }

    /// The admin listener's `/metrics` text; panics without an admin listener.
    fn metrics_text(&self) -> String {
        let admin = self.admin_url().expect("the gateway has an admin listener");
        let host = admin.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).expect("connect to the admin listener");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        std::io::Write::write_all(
            &mut stream,
            format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("write the metrics request");
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    }

    /// The WebSocket URL the gateway reported, e.g. `ws://127.0.0.1:40123/xmpp-websocket`.
    pub fn url(&self) -> &str {
        &self.process.url
    }

    /// The BOSH URL on the same listener (`[bosh]`'s default path), e.g.
    /// `http://127.0.0.1:40123/http-bind`.
    pub fn bosh_url(&self) -> String {
        format!("http://{}/http-bind", self.listen_addr())
    }

    /// Path of the config file the gateway was started with.
    pub fn config_path(&self) -> &Path {
        &self.process.config_path
    }

    /// All stderr lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.process.log.lock().expect("log lock").clone()
    }

    /// The log so far as one string.
    pub fn log(&self) -> String {
        self.log_lines().join("\n")
    }

    /// Polls the log until a line contains `needle` or `timeout` passes.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        poll_until(timeout, || self.process.log.lock().expect("log lock").iter().any(|l| l.contains(needle)))
    }

    /// The gateway's process id, to signal it (SIGTERM starts a drain).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `Some(status)` if the gateway has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }
}

// ---------------------------------------------------------------------------
// Node scenarios
// ---------------------------------------------------------------------------

/// Result of one `node tests/e2e/js/<script>.mjs` run.
#[derive(Debug)]
pub struct NodeRun {
    /// Exit status (0 when the scenario's expectation held).
    pub status: ExitStatus,
    /// The JSON object printed as the last stdout line.
    pub json: serde_json::Value,
    /// Full stdout.
    pub stdout: String,
    /// Full stderr (library logs, stack traces).
    pub stderr: String,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

impl NodeRun {
    /// The value at a `/`-separated JSON pointer, e.g. `"/message/body_received"`;
    /// `Null` if absent.
    pub fn at(&self, pointer: &str) -> &serde_json::Value {
        self.json.pointer(pointer).unwrap_or(&serde_json::Value::Null)
    }

    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status: {}\njson: {}\n--- stderr (tail) ---\n{}",
            self.status,
            serde_json::to_string_pretty(&self.json).unwrap_or_default(),
            tail(&self.stderr, 40)
        )
    }
}

/// Runs `node tests/e2e/js/<script>.mjs args…` with `env`, killing it after
/// `timeout`, and parses the last stdout line as JSON. Panics if node cannot run,
/// times out, or prints no JSON; a scenario failure is *not* a panic here (look
/// at `status` and `json`).
pub fn run_node(script: &str, args: &[String], env: &[(&str, &str)], timeout: Duration) -> NodeRun {
    let js_dir = repo_path("tests/e2e/js");
    assert!(
        js_dir.join("node_modules").is_dir(),
        "{}/node_modules is missing: run `npm ci` there (scripts/test.sh does)",
        js_dir.display()
    );
    let mut command = Command::new(std::env::var_os("NODE").unwrap_or_else(|| "node".into()));
    command.arg(js_dir.join(format!("{script}.mjs"))).args(args).current_dir(&js_dir);
    for (key, value) in env {
        command.env(key, value);
    }
    let done = run_with_timeout(command, timeout).unwrap_or_else(|e| panic!("{e}"));
    let last = done.stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let json = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "node {script}: last stdout line is not JSON ({e}); status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            done.status, done.stdout, done.stderr
        )
    });
    NodeRun { status: done.status, json, stdout: done.stdout, stderr: done.stderr, elapsed: done.elapsed }
}

/// Arguments for the chat scenario scripts (`strophe-chat`, `xmppjs-chat`).
pub fn chat_args(url: &str, a: &Account, b: &Account, mechanism: Option<&str>, body: &str) -> Vec<String> {
    let mut args = vec![
        "--url".into(),
        url.into(),
        "--domain".into(),
        DOMAIN.into(),
        "--user-a".into(),
        a.user.clone(),
        "--password-a".into(),
        a.password.clone(),
        "--user-b".into(),
        b.user.clone(),
        "--password-b".into(),
        b.password.clone(),
        "--body".into(),
        body.into(),
        "--timeout-ms".into(),
        "20000".into(),
    ];
    if let Some(m) = mechanism {
        args.extend(["--mechanism".into(), m.into()]);
    }
    args
}

/// Arguments for the wrong-password scripts.
pub fn wrong_password_args(url: &str, user: &str, password: &str, mechanism: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "--url".into(),
        url.into(),
        "--domain".into(),
        DOMAIN.into(),
        "--user".into(),
        user.into(),
        "--password".into(),
        password.into(),
        "--timeout-ms".into(),
        "15000".into(),
    ];
    if let Some(m) = mechanism {
        args.extend(["--mechanism".into(), m.into()]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_placeholders_must_all_be_filled() {
        assert_eq!(fill_template("a = @A@ -- @B@ in a comment", &[("A", "1")]), "a = 1 -- @B@ in a comment");
        let left = std::panic::catch_unwind(|| fill_template("x = @MISSING@", &[]));
        assert!(left.is_err());
    }
}
