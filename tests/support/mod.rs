//! Fixtures for end-to-end tests: a test CA, a real Prosody, the gateway binary
//! as a child process, and a runner for the JavaScript client scenarios in
//! `tests/e2e/js/`.
//!
//! Every fixture owns a temporary directory and its child process, and kills the
//! process on `Drop`, so a failing test leaves nothing running. Everything listens
//! on 127.0.0.1 only. Waiting is always "poll a condition until a deadline": no
//! fixed sleeps stand in for synchronisation, and every wait has a timeout.
//!
//! Integration tests include it with `mod support;`. Each test binary uses a
//! subset, hence the `dead_code` allowance.

#![allow(dead_code)]

pub mod ejabberd;
pub mod proxy;

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tempfile::TempDir;

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
// Test CA
// ---------------------------------------------------------------------------

/// A throw-away certificate authority whose certificates are PEM files in its
/// own temporary directory.
pub struct TestCa {
    dir: TempDir,
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    ca_pem_path: PathBuf,
}

/// A leaf certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct LeafCert {
    /// The certificate (leaf only).
    pub cert_path: PathBuf,
    /// The PKCS#8 private key.
    pub key_path: PathBuf,
    /// The certificate followed by the CA certificate.
    pub chain_path: PathBuf,
}

impl TestCa {
    /// A new CA (ECDSA P-256) with its certificate written to `ca.pem`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("xmppgw-ca-").tempdir().expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, "xmpp-ws-gateway test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        let ca_pem = cert.pem();
        let ca_pem_path = dir.path().join("ca.pem");
        fs::write(&ca_pem_path, &ca_pem).expect("write ca.pem");
        let issuer = Issuer::new(params, key);
        Self { dir, issuer, ca_pem, ca_pem_path }
    }

    /// Path of the CA certificate (PEM), for `ca_file` settings.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// The CA certificate as PEM text.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Issues a server certificate for `dns_names` (the first is also the common
    /// name), written as `<name>.crt`, `<name>.key` and `<name>.chain.pem`.
    pub fn issue(&self, name: &str, dns_names: &[&str]) -> LeafCert {
        let sans: Vec<String> = dns_names.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        if let Some(first) = dns_names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        // rcgen's default validity ends in year 4096 (GeneralizedTime); ejabberd's certificate
        // loader silently ignores such a certificate ("TLS failed: no_certfile"), so stay within
        // UTCTime.
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let cert_path = self.dir.path().join(format!("{name}.crt"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        let chain_path = self.dir.path().join(format!("{name}.chain.pem"));
        fs::write(&cert_path, cert.pem()).expect("write leaf cert");
        fs::write(&key_path, key.serialize_pem()).expect("write leaf key");
        fs::write(&chain_path, format!("{}{}", cert.pem(), self.ca_pem)).expect("write chain");
        LeafCert { cert_path, key_path, chain_path }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
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

/// The gateway binary running as a child process with a TOML config file.
///
/// Its stderr (tracing text format) is read on a thread; every line is kept
/// for assertions. Ready means a line containing `url=ws://` (or `wss://`) was logged.
pub struct Gateway {
    process: KillOnDrop,
    url: String,
    /// `http://host:port` of the admin listener, when it is enabled.
    admin: Option<String>,
    lines: Arc<Mutex<Vec<String>>>,
    config_path: PathBuf,
    _dir: TempDir,
}

impl Gateway {
    /// Starts the gateway with `config_toml`; panics (with the log) if it does
    /// not report its URL within 20 s.
    pub fn start(config_toml: &str) -> Self {
        Self::try_start(config_toml, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the gateway with extra environment variables (e.g. `XMPPGW_LOG__LEVEL`).
    pub fn try_start(config_toml: &str, env: &[(&str, &str)]) -> Result<Self, String> {
        let dir = tempfile::Builder::new().prefix("xmppgw-gateway-").tempdir().expect("temp dir");
        let config_path = dir.path().join("gateway.toml");
        fs::write(&config_path, config_toml).expect("write gateway config");

        let mut command = Command::new(env!("CARGO_BIN_EXE_xmpp-ws-gateway"));
        command.arg("--config").arg(&config_path);
        // Debug logs make e2e failures readable; an explicit level in `env` wins.
        command.env("XMPPGW_LOG__LEVEL", "info,xmpp_ws_gateway=debug");
        for (key, value) in env {
            command.env(key, value);
        }
        Self::spawn_and_wait(command, GATEWAY_START_TIMEOUT, config_path, dir)
    }

    /// Spawns `command` (stderr piped, colours off), collects its stderr lines
    /// and waits up to `timeout` for one containing `url=ws://` (or `wss://`).
    fn spawn_and_wait(
        mut command: Command,
        timeout: Duration,
        config_path: PathBuf,
        dir: TempDir,
    ) -> Result<Self, String> {
        command.env("NO_COLOR", "1").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| format!("spawn gateway: {e}"))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let mut process = KillOnDrop(child);

        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let collected = Arc::clone(&lines);
        // Ends when stderr closes, i.e. when the gateway exits or is killed.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                collected.lock().expect("log lock").push(line.clone());
                let _ = tx.send(line);
            }
        });

        let deadline = Instant::now() + timeout;
        let (url, admin) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = ws_url_in(&line) {
                        break (url, admin_url_in(&line));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "gateway logged no url=ws:// within {timeout:?}\n{}",
                        lines.lock().expect("log lock").join("\n")
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stderr closed: the process is gone (or about to be).
                    let status = poll_until(Duration::from_secs(5), || process.exited().is_some())
                        .then(|| process.exited())
                        .flatten();
                    return Err(format!(
                        "gateway exited before it was ready ({status:?})\n{}",
                        lines.lock().expect("log lock").join("\n")
                    ));
                }
            }
        };
        Ok(Self { process, url, admin, lines, config_path, _dir: dir })
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
        self.url.split("://").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or_default()
    }

    /// `http://host:port` of the admin listener (`/metrics`), when enabled.
    pub fn admin_url(&self) -> Option<&str> {
        self.admin.as_deref()
    }

    /// The value of one series of the gateway's `/metrics` (0 when absent), e.g.
    /// `xmppgw_websocket_upgrades_total{http_version="2"}`; panics without an admin listener.
    pub fn metric(&self, series: &str) -> f64 {
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
        text.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
    }

    /// The WebSocket URL the gateway reported, e.g. `ws://127.0.0.1:40123/xmpp-websocket`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Path of the config file the gateway was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// All stderr lines so far (ANSI colours stripped).
    pub fn log_lines(&self) -> Vec<String> {
        self.lines.lock().expect("log lock").clone()
    }

    /// The log so far as one string.
    pub fn log(&self) -> String {
        self.log_lines().join("\n")
    }

    /// Polls the log until a line contains `needle` or `timeout` passes.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        poll_until(timeout, || self.lines.lock().expect("log lock").iter().any(|l| l.contains(needle)))
    }

    /// The gateway's process id, to signal it (SIGTERM starts a drain).
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// `Some(status)` if the gateway has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }
}

/// The `ws://…` or `wss://…` URL in a log line containing `url=ws://` (quoted or not).
fn ws_url_in(line: &str) -> Option<String> {
    let start = line.find("url=")? + "url=".len();
    let rest = line[start..].trim_start_matches('"');
    if !rest.starts_with("ws://") && !rest.starts_with("wss://") {
        return None;
    }
    let end = rest.find(|c: char| c.is_whitespace() || c == '"' || c == ',').unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// The `http://…` admin URL in the gateway's ready line (`admin=http://…`), if enabled.
fn admin_url_in(line: &str) -> Option<String> {
    let start = line.find("admin=")? + "admin=".len();
    let rest = line[start..].trim_start_matches('"');
    let end = rest.find(|c: char| c.is_whitespace() || c == '"' || c == ',').unwrap_or(rest.len());
    rest[..end].starts_with("http://").then(|| rest[..end].to_owned())
}

/// Removes ANSI escape sequences (colour codes) from a log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte(@..~)
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------

/// How long nginx may take to listen.
const NGINX_START_TIMEOUT: Duration = Duration::from_secs(20);

/// The client address the outer nginx hop claims (TEST-NET-3, RFC 5737): never a loopback
/// address, so the gateway can only log it if it took the client from `X-Forwarded-For`.
pub const FORWARDED_CLIENT: &str = "203.0.113.9";

/// A real nginx (the Debian package) in the foreground, in front of the gateway, using
/// `deploy/nginx/xmpp-websocket.location.conf` as deployed.
///
/// Two `server {}` blocks on free loopback ports in one nginx process:
/// - the *deployed* one: `include`s the deploy snippet as is, with an `upstream
///   xmpp_ws_gateway` pointing at the test gateway (plain http instead of the site's TLS);
/// - an *outer hop* in front of it that sets `X-Forwarded-For: 203.0.113.9`, standing for
///   the real client that everything-on-loopback cannot provide. The deployed nginx appends
///   its peer (127.0.0.1), so the gateway gets `203.0.113.9, 127.0.0.1` from 127.0.0.1 and,
///   trusting only 127.0.0.1, must log 203.0.113.9, never nginx's address.
///
/// Clients connect to the outer hop ([`Nginx::url`]).
pub struct Nginx {
    process: KillOnDrop,
    outer: SocketAddr,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx proxying to the gateway listening on `gateway` (`host:port`); panics with
    /// nginx's error log if it does not listen within 20 s.
    pub fn start(gateway: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("xmppgw-nginx-").tempdir().expect("temp dir");
        let snippet = repo_path("deploy/nginx/xmpp-websocket.location.conf");
        assert!(snippet.is_file(), "{} is missing", snippet.display());
        let inner_port = free_loopback_port();
        let outer_port = free_loopback_port();
        let d = dir.path().display().to_string();
        let config = format!(
            "daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             \x20   access_log {d}/access.log;\n\
             \x20   client_body_temp_path {d}/client_body;\n\
             \x20   proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/uwsgi;\n\
             \x20   scgi_temp_path {d}/scgi;\n\
             \x20   map $http_upgrade $connection_upgrade {{\n\
             \x20       default upgrade;\n\
             \x20       ''      close;\n\
             \x20   }}\n\
             \x20   upstream xmpp_ws_gateway {{\n\
             \x20       server {gateway};\n\
             \x20   }}\n\
             \x20   # The deployed configuration: deploy's location block, unchanged.\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{inner_port};\n\
             \x20       server_name localhost;\n\
             \x20       include {snippet};\n\
             \x20   }}\n\
             \x20   # The outer hop: claims the client is {FORWARDED_CLIENT}.\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{outer_port};\n\
             \x20       server_name localhost;\n\
             \x20       location / {{\n\
             \x20           proxy_pass http://127.0.0.1:{inner_port};\n\
             \x20           proxy_http_version 1.1;\n\
             \x20           proxy_set_header Upgrade $http_upgrade;\n\
             \x20           proxy_set_header Connection $connection_upgrade;\n\
             \x20           proxy_set_header Host $host;\n\
             \x20           proxy_set_header X-Forwarded-For {FORWARDED_CLIENT};\n\
             \x20           proxy_buffering off;\n\
             \x20       }}\n\
             \x20   }}\n\
             }}\n",
            snippet = snippet.display(),
        );
        let config_path = dir.path().join("nginx.conf");
        fs::write(&config_path, config).expect("write nginx.conf");
        let console = fs::File::create(dir.path().join("nginx.console")).expect("console file");
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("dup console file"))
            .stderr(console)
            .spawn()
            .expect("spawn nginx (is the Debian package installed? scripts/test.sh installs it)");
        let mut nginx = Self { process: KillOnDrop(child), outer: SocketAddr::from(([127, 0, 0, 1], outer_port)), dir };
        let ports = [nginx.outer, SocketAddr::from(([127, 0, 0, 1], inner_port))];
        let mut exited = None;
        let ready = poll_until(NGINX_START_TIMEOUT, || {
            exited = nginx.process.exited();
            exited.is_some()
                || ports.iter().all(|addr| TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok())
        });
        if let Some(status) = exited {
            panic!("nginx exited during start ({status})\n{}", nginx.diagnostics());
        }
        assert!(ready, "nginx did not listen on {ports:?} within {NGINX_START_TIMEOUT:?}\n{}", nginx.diagnostics());
        nginx
    }

    /// The WebSocket URL clients use (through both hops).
    pub fn url(&self) -> String {
        format!("ws://{}/xmpp-websocket", self.outer)
    }

    /// Console output, error log and access log, for failure messages.
    pub fn diagnostics(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- nginx console ---\n{}\n--- nginx error.log (tail) ---\n{}\n--- nginx access.log (tail) ---\n{}",
            read("nginx.console"),
            tail(&read("error.log"), 30),
            tail(&read("access.log"), 30)
        )
    }
}

/// nginx from `NGINX`, else Debian's /usr/sbin/nginx, else `nginx` from PATH.
fn nginx_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("NGINX") {
        return PathBuf::from(path);
    }
    let debian = Path::new("/usr/sbin/nginx");
    if debian.is_file() {
        debian.to_path_buf()
    } else {
        PathBuf::from("nginx")
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
    fn finds_ws_url_plain_and_quoted() {
        let line = "2025-01-01T00:00:00Z  INFO xmpp_ws_gateway::server: listening url=ws://127.0.0.1:4321/xmpp-websocket admin=127.0.0.1:9";
        assert_eq!(ws_url_in(line).as_deref(), Some("ws://127.0.0.1:4321/xmpp-websocket"));
        let quoted = r#"INFO listening url="ws://127.0.0.1:1/x""#;
        assert_eq!(ws_url_in(quoted).as_deref(), Some("ws://127.0.0.1:1/x"));
        assert_eq!(ws_url_in("INFO admin url=http://127.0.0.1:9/"), None);
        let secure =
            "INFO websocket listener ready url=wss://127.0.0.1:5/x admin=http://127.0.0.1:6 public_connections=9";
        assert_eq!(ws_url_in(secure).as_deref(), Some("wss://127.0.0.1:5/x"));
        assert_eq!(admin_url_in(secure).as_deref(), Some("http://127.0.0.1:6"));
        assert_eq!(admin_url_in("INFO ready url=ws://127.0.0.1:5/x admin=disabled"), None);
    }

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    fn temp() -> (PathBuf, TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        (dir.path().join("unused.toml"), dir)
    }

    #[test]
    fn gateway_fixture_waits_for_the_url_and_keeps_the_log() {
        let (config, dir) = temp();
        let script = "echo starting >&2; echo 'INFO ready url=ws://127.0.0.1:9/x' >&2; \
                      echo after >&2; exec sleep 30";
        let mut gw = Gateway::spawn_and_wait(shell(script), Duration::from_secs(10), config, dir).expect("ready");
        assert_eq!(gw.url(), "ws://127.0.0.1:9/x");
        assert!(gw.wait_for_log("after", Duration::from_secs(5)), "{:?}", gw.log_lines());
        assert_eq!(gw.log_lines()[0], "starting");
        assert!(gw.exited().is_none());
        let started = Instant::now();
        drop(gw); // must kill `sleep 30`, not wait for it
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn gateway_fixture_reports_early_exit_and_silence() {
        let (config, dir) = temp();
        let err = Gateway::spawn_and_wait(shell("echo boom >&2; exit 3"), Duration::from_secs(10), config, dir)
            .err()
            .expect("must fail");
        assert!(err.contains("exited before it was ready") && err.contains("boom"), "{err}");

        let (config, dir) = temp();
        let started = Instant::now();
        let err = Gateway::spawn_and_wait(shell("exec sleep 30"), Duration::from_millis(300), config, dir)
            .err()
            .expect("must time out");
        assert!(err.contains("no url=ws://"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn strips_colour_codes() {
        assert_eq!(strip_ansi("\u{1b}[3murl\u{1b}[0m\u{1b}[2m=\u{1b}[0mws://x"), "url=ws://x");
    }

    #[test]
    fn template_placeholders_must_all_be_filled() {
        assert_eq!(fill_template("a = @A@ -- @B@ in a comment", &[("A", "1")]), "a = 1 -- @B@ in a comment");
        let left = std::panic::catch_unwind(|| fill_template("x = @MISSING@", &[]));
        assert!(left.is_err());
    }
}
