//! Reverse proxies from Debian (nginx, Caddy, HAProxy) in front of the gateway, each configured
//! from its file in `deploy/`, so what the tests run is what operators deploy.
//!
//! Every proxy is a foreground child of the test in its own process group, on a free loopback
//! port, speaking plain HTTP (TLS termination is not what these tests are about), with all its
//! files in a temporary directory. When the tests run as root (CI), the proxy runs as `nobody`.
//!
//! The deploy file is used as shipped except for a few exact strings swapped for test values
//! (the site's name or listening address, the gateway's address, and optionally the idle
//! timeout); each swapped string must occur exactly once, so the deploy file and this fixture
//! cannot drift apart silently.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::e2e::{fill_template, free_loopback_port, poll_until, repo_path, tail};
use super::ejabberd::{chown_tree, kill_group, system_user};

/// How long a proxy may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Starts tried before giving up (a free port can be taken again before the proxy binds it).
const START_ATTEMPTS: u32 = 3;

/// Which proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// nginx: deploy/nginx/xmpp-websocket.location.conf inside tests/e2e/fixtures/nginx.conf.in.
    Nginx,
    /// Caddy: deploy/caddy/Caddyfile after the global options of tests/e2e/fixtures/Caddyfile.in.
    Caddy,
    /// HAProxy: deploy/haproxy/xmpp-ws-gateway.cfg after the global and defaults sections of
    /// tests/e2e/fixtures/haproxy.cfg.in (Debian's defaults).
    Haproxy,
}

impl ProxyKind {
    /// Every proxy, in the order the interop matrix shows them.
    pub const ALL: [ProxyKind; 3] = [ProxyKind::Nginx, ProxyKind::Caddy, ProxyKind::Haproxy];

    /// Short lowercase name (the matrix's path column).
    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Nginx => "nginx",
            ProxyKind::Caddy => "caddy",
            ProxyKind::Haproxy => "haproxy",
        }
    }

    /// The deploy file this proxy runs.
    fn deploy_file(self) -> &'static str {
        match self {
            ProxyKind::Nginx => "deploy/nginx/xmpp-websocket.location.conf",
            ProxyKind::Caddy => "deploy/caddy/Caddyfile",
            ProxyKind::Haproxy => "deploy/haproxy/xmpp-ws-gateway.cfg",
        }
    }

    /// The idle-timeout lines of the deploy file, as a function of the timeout in seconds.
    fn idle_timeout_lines(self, secs: u64) -> Vec<String> {
        match self {
            ProxyKind::Nginx => vec![format!("proxy_read_timeout {secs}s;"), format!("proxy_send_timeout {secs}s;")],
            ProxyKind::Caddy => vec![format!("read_timeout {secs}s")],
            ProxyKind::Haproxy => vec![format!("timeout tunnel {secs}s")],
        }
    }

    /// What the fixture swaps in the deploy file: the site's address for `127.0.0.1:port` (plain
    /// http), the gateway's deployed address for `gateway`, and the idle timeout if given. (nginx's
    /// location block has neither address: the fixture's server block and upstream hold them.)
    fn swaps(self, port: u16, gateway: &str, idle_timeout: Option<Duration>) -> Vec<(String, String)> {
        let mut swaps: Vec<(String, String)> = match self {
            ProxyKind::Nginx => Vec::new(),
            ProxyKind::Caddy => vec![
                ("xmpp.example.com {".into(), format!("http://:{port} {{\n\tbind 127.0.0.1")),
                ("reverse_proxy @xmpp 127.0.0.1:5290 {".into(), format!("reverse_proxy @xmpp {gateway} {{")),
            ],
            ProxyKind::Haproxy => vec![
                (
                    "bind :443 ssl crt /etc/haproxy/certs/xmpp.example.com.pem alpn http/1.1".into(),
                    format!("bind 127.0.0.1:{port}"),
                ),
                ("server gateway 127.0.0.1:5290".into(), format!("server gateway {gateway}")),
            ],
        };
        if let Some(timeout) = idle_timeout {
            let deployed = self.idle_timeout_lines(DEPLOYED_IDLE_TIMEOUT_SECS);
            swaps.extend(deployed.into_iter().zip(self.idle_timeout_lines(timeout.as_secs().max(1))));
        }
        swaps
    }
}

/// The idle timeout every deploy file sets (seconds): above the gateway's 30 s ping interval.
pub const DEPLOYED_IDLE_TIMEOUT_SECS: u64 = 120;

/// The client address nginx's outer hop claims (TEST-NET-3, RFC 5737): never a loopback
/// address, so the gateway can only log it if it took the client from `X-Forwarded-For`.
pub const FORWARDED_CLIENT: &str = "203.0.113.9";

/// A running reverse proxy in front of one gateway.
pub struct ReverseProxy {
    kind: ProxyKind,
    process: Option<Child>,
    addr: SocketAddr,
    /// nginx only: the outer hop in front of the deployed site (see [`ReverseProxy::outer_url`]).
    outer: Option<SocketAddr>,
    dir: TempDir,
}

impl ReverseProxy {
    /// Starts `kind` with its deploy file as shipped, proxying to the gateway's listener at
    /// `gateway` (`host:port`).
    pub fn start(kind: ProxyKind, gateway: &str) -> Self {
        Self::start_with(kind, gateway, None)
    }

    /// Like [`Self::start`], with the deploy file's idle timeout replaced by `idle_timeout`
    /// (whole seconds) when given. Panics with the proxy's logs if it does not listen.
    pub fn start_with(kind: ProxyKind, gateway: &str, idle_timeout: Option<Duration>) -> Self {
        let dir = tempfile::Builder::new().prefix(&format!("xmppgw-{}-", kind.name())).tempdir().expect("temp dir");
        let mut proxy = Self { kind, process: None, addr: SocketAddr::from(([127, 0, 0, 1], 0)), outer: None, dir };
        let mut failures = String::new();
        for attempt in 1..=START_ATTEMPTS {
            match proxy.try_spawn(gateway, idle_timeout) {
                Ok(()) => return proxy,
                Err(why) => {
                    proxy.stop();
                    failures.push_str(&format!("--- attempt {attempt} ---\n{why}\n"));
                }
            }
        }
        panic!("{} did not start\n{failures}", kind.name())
    }

    fn try_spawn(&mut self, gateway: &str, idle_timeout: Option<Duration>) -> Result<(), String> {
        let port = free_loopback_port();
        self.addr = SocketAddr::from(([127, 0, 0, 1], port));
        self.outer = (self.kind == ProxyKind::Nginx).then(|| SocketAddr::from(([127, 0, 0, 1], free_loopback_port())));
        let command = self.configure(port, gateway, idle_timeout);
        self.spawn(command)?;
        let addr = self.addr;
        let addrs: Vec<SocketAddr> = std::iter::once(addr).chain(self.outer).collect();
        let mut exited = None;
        let ready = poll_until(START_TIMEOUT, || {
            exited = self.process.as_mut().and_then(|p| p.try_wait().ok().flatten());
            exited.is_some()
                || addrs.iter().all(|addr| TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok())
        });
        match (exited, ready) {
            (None, true) => Ok(()),
            (Some(status), _) => Err(format!("exited during start ({status})\n{}", self.diagnostics())),
            (None, false) => Err(format!("not listening on {addr} after {START_TIMEOUT:?}\n{}", self.diagnostics())),
        }
    }

    /// Writes this kind's configuration for `port` and returns the command that runs it.
    fn configure(&self, port: u16, gateway: &str, idle_timeout: Option<Duration>) -> Command {
        let d = self.dir.path();
        let deployed = fs::read_to_string(repo_path(self.kind.deploy_file())).expect("read the deploy file");
        let derived = derive(&deployed, self.kind.deploy_file(), &self.kind.swaps(port, gateway, idle_timeout));
        let site_values = |site: String| vec![("DIR", d.display().to_string()), ("SITE", site)];
        let (config_name, values, mut command) = match self.kind {
            ProxyKind::Nginx => {
                // The location block goes into the fixture's server {}; the upstream is there too.
                fs::write(d.join("xmpp-websocket.location.conf"), derived).expect("write the location block");
                let values = vec![
                    ("DIR", d.display().to_string()),
                    ("PORT", port.to_string()),
                    ("UPSTREAM", gateway.to_owned()),
                    ("SNIPPET", d.join("xmpp-websocket.location.conf").display().to_string()),
                    ("OUTER_PORT", self.outer.map_or(0, |outer| outer.port()).to_string()),
                    ("FORWARDED_CLIENT", FORWARDED_CLIENT.to_owned()),
                ];
                let mut command = Command::new(binary("NGINX", "/usr/sbin/nginx", "nginx"));
                command.arg("-p").arg(d).arg("-e").arg(d.join("error.log")).arg("-c").arg(d.join("nginx.conf"));
                ("nginx.conf", values, command)
            }
            ProxyKind::Caddy => {
                let mut command = Command::new(binary("CADDY", "/usr/bin/caddy", "caddy"));
                command.args(["run", "--adapter", "caddyfile", "--config"]).arg(d.join("Caddyfile"));
                // Caddy keeps state under $HOME / XDG directories: keep them in the fixture.
                for var in ["HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"] {
                    command.env(var, d);
                }
                ("Caddyfile", site_values(derived), command)
            }
            ProxyKind::Haproxy => {
                let mut command = Command::new(binary("HAPROXY", "/usr/sbin/haproxy", "haproxy"));
                command.arg("-db").arg("-f").arg(d.join("haproxy.cfg"));
                ("haproxy.cfg", site_values(derived), command)
            }
        };
        let fixture = format!("tests/e2e/fixtures/{config_name}.in");
        let template = fs::read_to_string(repo_path(&fixture)).unwrap_or_else(|e| panic!("read {fixture}: {e}"));
        let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        fs::write(d.join(config_name), fill_template(&template, &values)).expect("write the proxy config");
        if let Some((uid, gid)) = unprivileged_user() {
            chown_tree(d, uid, gid);
            command.uid(uid).gid(gid);
        }
        command.current_dir(d);
        command
    }

    fn spawn(&mut self, mut command: Command) -> Result<(), String> {
        let console = fs::File::create(self.dir.path().join("console.log")).expect("console file");
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("dup console"))
            .stderr(console)
            .spawn()
            .map_err(|e| {
                format!(
                    "spawn {} ({e}; is the Debian package installed? scripts/test.sh installs it)",
                    self.kind.name()
                )
            })?;
        self.process = Some(child);
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            kill_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Which proxy this is.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL through the proxy.
    pub fn url(&self) -> String {
        format!("ws://{}/xmpp-websocket", self.addr)
    }

    /// The BOSH URL through the proxy (the deploy files route `/http-bind` to the gateway).
    pub fn bosh_url(&self) -> String {
        format!("http://{}/http-bind", self.addr)
    }

    /// nginx only: the WebSocket URL through the outer hop, which claims the client is
    /// [`FORWARDED_CLIENT`] before the deployed site adds its own peer.
    pub fn outer_url(&self) -> Option<String> {
        self.outer.map(|outer| format!("ws://{outer}/xmpp-websocket"))
    }

    /// The proxy's console output and logs, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for name in ["console.log", "error.log", "access.log", "caddy.log"] {
            if let Ok(text) = fs::read_to_string(self.dir.path().join(name)) {
                out.push_str(&format!("--- {} {name} (tail) ---\n{}\n", self.kind.name(), tail(&text, 30)));
            }
        }
        out
    }
}

impl Drop for ReverseProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `text` with every `(from, to)` swapped; panics unless each `from` occurs exactly once in
/// `text`, naming `file`, so an edit of the deploy file cannot silently escape the tests.
pub fn derive(text: &str, file: &str, swaps: &[(String, String)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in swaps {
        let count = out.matches(from.as_str()).count();
        assert_eq!(
            count, 1,
            "{file} must contain {from:?} exactly once (found {count}); update tests/harness/proxy.rs"
        );
        out = out.replacen(from.as_str(), to, 1);
    }
    out
}

/// `nobody`'s uid and gid when the tests run as root (so the proxies do not), else `None`.
fn unprivileged_user() -> Option<(u32, u32)> {
    let euid = fs::metadata("/proc/self").map(|m| m.uid()).ok()?;
    (euid == 0).then(|| system_user("nobody"))
}

/// A binary from the environment variable `var`, else `debian` if it exists, else `name` on PATH.
pub fn binary(var: &str, debian: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    if Path::new(debian).is_file() {
        PathBuf::from(debian)
    } else {
        PathBuf::from(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_swaps_each_string_once_and_refuses_missing_or_repeated_ones() {
        let swap = |from: &str, to: &str| vec![(from.to_owned(), to.to_owned())];
        assert_eq!(derive("timeout tunnel 120s\n", "f", &swap("120s", "3s")), "timeout tunnel 3s\n");
        assert!(std::panic::catch_unwind(|| derive("a", "f", &swap("b", "c"))).is_err());
        assert!(std::panic::catch_unwind(|| derive("b b", "f", &swap("b", "c"))).is_err());
    }

    #[test]
    fn every_deploy_file_has_the_strings_the_fixture_swaps() {
        for kind in ProxyKind::ALL {
            let text = fs::read_to_string(repo_path(kind.deploy_file())).expect("deploy file");
            let swaps = kind.swaps(1234, "127.0.0.1:4321", Some(Duration::from_secs(3)));
            let derived = derive(&text, kind.deploy_file(), &swaps);
            assert!(!derived.contains("120s"), "{}: an idle timeout was not swapped", kind.name());
            // nginx's location block names the gateway only in a comment (its upstream is in the site).
            let code: String = derived.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
            assert!(!code.contains("5290"), "{}: the deployed gateway address is left", kind.name());
        }
    }
}
