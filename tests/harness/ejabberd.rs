//! A real ejabberd (the Debian package) as a foreground child of the test.
//!
//! How it runs, and why:
//! - `ejabberdctl --config-dir D --spool D/spool --logs D/logs --node N foreground`, started
//!   directly as the `ejabberd` system user (uid/gid set on the child), so the script takes its
//!   `as_current_user` path and execs Erlang itself instead of going through `su`.
//! - `HOME=D`: Erlang keeps its distribution cookie in `$HOME/.erlang.cookie`, so every fixture
//!   has its own cookie, shared by the server and the `ejabberdctl register` calls.
//! - `ERL_DIST_PORT=<free port>`: Erlang distribution on a fixed port with `-start_epmd false`,
//!   so no epmd daemon is started or shared with other tests or a system ejabberd.
//! - The child is the leader of its own process group (the script's shell, `erl` and `beam.smp`
//!   are all in it); `Drop` kills the whole group.
//!
//! Configuration: `tests/e2e/fixtures/ejabberd.yml.in` (STARTTLS required, certificate from the
//! test CA, SCRAM-SHA-1 and PLAIN, mod_stream_mgmt, mod_ping, mod_muc on conference.<domain>).

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::e2e::{
    fill_template, free_loopback_port, poll_until, repo_path, run_with_timeout, tail, Account, TestCa, DOMAIN,
};

/// How long ejabberd may take to listen on its c2s port (it usually takes about 2 s).
const START_TIMEOUT: Duration = Duration::from_secs(40);
/// How long one `ejabberdctl` command may take.
const CTL_TIMEOUT: Duration = Duration::from_secs(30);

/// A running ejabberd serving [`DOMAIN`] on a loopback c2s port.
pub struct Ejabberd {
    process: Option<Child>,
    ca: TestCa,
    c2s: SocketAddr,
    dist_port: u16,
    node: String,
    uid: u32,
    gid: u32,
    dir: TempDir,
}

/// uid and gid of a system user, from `getent passwd`.
pub fn system_user(name: &str) -> (u32, u32) {
    let mut command = Command::new("getent");
    command.args(["passwd", name]);
    let done = run_with_timeout(command, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    let fields: Vec<&str> = done.stdout.trim().split(':').collect();
    assert!(
        done.status.success() && fields.len() >= 4,
        "no system user {name:?} (is the Debian ejabberd package installed? scripts/test.sh installs it)"
    );
    (fields[2].parse().expect("uid"), fields[3].parse().expect("gid"))
}

impl Ejabberd {
    /// Starts ejabberd and waits until its c2s port accepts connections; panics with the logs if
    /// it exits or does not listen within 40 s.
    pub fn start() -> Self {
        let (uid, gid) = system_user("ejabberd");
        let dir = tempfile::Builder::new().prefix("xmppgw-ejabberd-").tempdir().expect("temp dir");
        let ca = TestCa::new();
        let leaf = ca.issue(DOMAIN, &[DOMAIN, &format!("conference.{DOMAIN}")]);
        // ejabberd wants certificate and key in one PEM file it can read as its own user.
        let certfile = dir.path().join("cert.pem");
        let pem = format!(
            "{}{}",
            fs::read_to_string(&leaf.cert_path).expect("leaf cert"),
            fs::read_to_string(&leaf.key_path).expect("leaf key")
        );
        fs::write(&certfile, pem).expect("write cert.pem");
        for sub in ["spool", "logs"] {
            fs::create_dir_all(dir.path().join(sub)).expect("fixture dir");
        }
        // ejabberdctl sources this file; ours is empty so /etc/default/ejabberd does not apply.
        fs::write(dir.path().join("ejabberdctl.cfg"), "").expect("write ejabberdctl.cfg");
        // Erlang's resolver configuration, as the package ships it (else an error is logged).
        let _ = fs::copy("/etc/ejabberd/inetrc", dir.path().join("inetrc"));
        chown_tree(dir.path(), uid, gid);

        let mut server = Self {
            process: None,
            ca,
            c2s: SocketAddr::from(([127, 0, 0, 1], 0)),
            dist_port: 0,
            node: String::new(),
            uid,
            gid,
            dir,
        };
        // A port found free can be taken again before ejabberd binds it (Erlang's distribution
        // listener is the usual victim): start again on fresh ports when that happens.
        for attempt in 1..=3 {
            server.use_fresh_ports(&certfile);
            match server.try_spawn() {
                Ok(()) => return server,
                Err(diagnostics) if attempt < 3 && diagnostics.contains("eaddrinuse") => server.kill(),
                Err(diagnostics) => panic!("{diagnostics}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Picks free ports and writes the configuration for them.
    fn use_fresh_ports(&mut self, certfile: &Path) {
        let c2s_port = free_loopback_port();
        let dist_port = free_loopback_port();
        let template = fs::read_to_string(repo_path("tests/e2e/fixtures/ejabberd.yml.in"))
            .expect("read tests/e2e/fixtures/ejabberd.yml.in");
        let config = fill_template(
            &template,
            &[
                ("DIR", &self.dir.path().display().to_string()),
                ("C2S_PORT", &c2s_port.to_string()),
                ("DOMAIN", DOMAIN),
                ("CERTFILE", &certfile.display().to_string()),
            ],
        );
        let path = self.dir.path().join("ejabberd.yml");
        fs::write(&path, config).expect("write ejabberd.yml");
        chown_tree(&path, self.uid, self.gid);
        self.c2s = SocketAddr::from(([127, 0, 0, 1], c2s_port));
        self.dist_port = dist_port;
        self.node = format!("ejabberd-{dist_port}@localhost");
    }

    /// Starts `ejabberdctl foreground` and waits until the c2s port listens; panics if not.
    fn spawn(&mut self) {
        if let Err(diagnostics) = self.try_spawn() {
            panic!("{diagnostics}");
        }
    }

    /// Starts `ejabberdctl foreground` and waits until the c2s port listens; the error carries
    /// the diagnostics.
    fn try_spawn(&mut self) -> Result<(), String> {
        let console = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("console.log"))
            .expect("console file");
        let mut command = Ejabberd::ctl_command(self.dir.path(), &self.node, self.dist_port, self.uid, self.gid);
        command
            .arg("foreground")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("dup console file"))
            .stderr(console);
        self.process = Some(command.spawn().expect("spawn ejabberdctl foreground (is ejabberd installed?)"));
        self.wait_until_listening()
    }

    /// Starts ejabberd again after [`Ejabberd::kill`], with the same config, ports and spool
    /// (so the accounts are still there).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Process group of the running server (`kill -KILL -<pgid>` ends all of it).
    pub fn pgid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// `ejabberdctl` with this fixture's directories, node name, distribution port and cookie,
    /// running as the ejabberd user.
    fn ctl_command(dir: &Path, node: &str, dist_port: u16, uid: u32, gid: u32) -> Command {
        let mut command = Command::new(std::env::var_os("EJABBERDCTL").unwrap_or_else(|| "ejabberdctl".into()));
        command
            .arg("--config-dir")
            .arg(dir)
            .arg("--spool")
            .arg(dir.join("spool"))
            .arg("--logs")
            .arg(dir.join("logs"))
            .arg("--node")
            .arg(node)
            .env("HOME", dir)
            .env("ERL_DIST_PORT", dist_port.to_string())
            .env("EJABBERD_BYPASS_WARNINGS", "true")
            .current_dir(dir)
            .uid(uid)
            .gid(gid);
        command
    }

    fn wait_until_listening(&mut self) -> Result<(), String> {
        let c2s = self.c2s;
        let mut exited = None;
        let ready = poll_until(START_TIMEOUT, || {
            exited = self.process.as_mut().and_then(|p| p.try_wait().ok().flatten());
            exited.is_some() || TcpStream::connect_timeout(&c2s, Duration::from_millis(200)).is_ok()
        });
        if let Some(status) = exited {
            return Err(format!("ejabberd exited during start ({status})\n{}", self.diagnostics()));
        }
        if !ready {
            return Err(format!("ejabberd did not listen on {c2s} within {START_TIMEOUT:?}\n{}", self.diagnostics()));
        }
        Ok(())
    }

    /// The c2s (STARTTLS) listener on 127.0.0.1.
    pub fn c2s_addr(&self) -> SocketAddr {
        self.c2s
    }

    /// The CA that issued ejabberd's certificate (PEM file).
    pub fn ca_pem_path(&self) -> &Path {
        self.ca.ca_pem_path()
    }

    /// Creates an account with `ejabberdctl register`.
    pub fn register(&self, user: &str, password: &str) -> Account {
        // ejabberd listens on c2s before its Mnesia tables exist: a registration right after
        // start (or restart) can abort with `no_exists`. Try again until the tables are there.
        let started = std::time::Instant::now();
        let done = loop {
            let mut command = Self::ctl_command(self.dir.path(), &self.node, self.dist_port, self.uid, self.gid);
            command.args(["register", user, DOMAIN, password]);
            let done = run_with_timeout(command, CTL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
            let tables_not_ready = !done.status.success() && done.stdout.contains("no_exists");
            if !tables_not_ready || started.elapsed() > CTL_TIMEOUT {
                break done;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            done.status.success(),
            "ejabberdctl register {user} failed ({})\nstdout: {}\nstderr: {}\n{}",
            done.status,
            done.stdout,
            done.stderr,
            self.diagnostics()
        );
        Account { user: user.to_owned(), password: password.to_owned() }
    }

    /// The main log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("logs/ejabberd.log")).unwrap_or_default()
    }

    /// Console output and the tail of the log, for failure messages.
    pub fn diagnostics(&self) -> String {
        let console = fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default();
        format!(
            "--- ejabberd console (tail) ---\n{}\n--- ejabberd log (tail) ---\n{}",
            tail(&console, 40),
            tail(&self.log(), 60)
        )
    }

    /// Kills the whole process group with SIGKILL and reaps the child. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            kill_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The fixture directory (config, spool, logs).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILL to every process in group `pgid` (the child was made a group leader).
pub fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `chown -R uid:gid dir`, and makes the directory itself reachable.
pub fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    let mut command = Command::new("chown");
    command.arg("-R").arg(format!("{uid}:{gid}")).arg(dir);
    let done = run_with_timeout(command, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    assert!(done.status.success(), "chown {}: {}", dir.display(), done.stderr);
}
