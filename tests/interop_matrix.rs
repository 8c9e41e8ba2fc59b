//! The interop matrix: every client library × every server × every path, each cell running
//! the scenarios of `tests/e2e/js/matrix-cell.mjs` (SCRAM-SHA-1 and PLAIN logins, roster,
//! presence, message with receipt, ping, MUC, clean logout, XEP-0198 resume after the
//! WebSocket is killed, wrong password) for two accounts in one client process.
//!
//! Clients: Strophe.js, @xmpp/client and StanzaJS under Node (`matrix-cell.mjs`), and Converse.js
//! in Debian's headless Chromium (DevTools protocol) and Firefox ESR (WebDriver BiDi), both driven
//! by puppeteer-core (`converse-cell.mjs`: login, roster, chat, MUC, reconnect, logout, PLAIN
//! login, wrong password).
//!
//! Servers: Debian's Prosody and ejabberd, STARTTLS required, certificates from a test CA,
//! accounts made with `prosodyctl` / `ejabberdctl`. Paths: straight to the gateway, and through
//! nginx, Caddy and HAProxy, each running its deploy/ file (tests/support/proxy.rs). One server
//! of each kind, one gateway and one proxy of each kind per server serve every cell.
//!
//! The table is printed (run with `--nocapture` to see it; scripts/test.sh does), and the test
//! fails if any cell is red. Ignored by a bare `cargo test`: run it with scripts/test.sh.
#![allow(clippy::unwrap_used)]

mod support;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use support::ejabberd::Ejabberd;
use support::proxy::{ProxyKind, ReverseProxy};
use support::{run_node, Account, Gateway, NodeRun, Prosody, ProsodyOptions, DOMAIN};

/// Upper bound for one cell (the cell's own deadline is 30 steps of 10 s; cells take ~1-15 s).
const CELL_TIMEOUT: Duration = Duration::from_secs(120);
/// Client libraries (as `matrix-cell.mjs --client` names them, or Converse.js) and what runs
/// them: Node, or the browser `converse-cell.mjs --browser` drives.
const CLIENTS: [(&str, &str); 5] =
    [("strophe", "node"), ("xmppjs", "node"), ("stanza", "node"), ("converse", "chromium"), ("converse", "firefox")];
/// Paths from the client to the gateway: straight, or through a proxy of [`ProxyKind::ALL`].
const PATHS: [&str; 4] = ["direct", "nginx", "caddy", "haproxy"];

/// Gateway configuration for one STARTTLS upstream at `c2s`, trusting the proxies on loopback, and
/// allowing the Converse.js page's origin (browsers always send one; Node clients send none).
pub fn gateway_config(c2s: SocketAddr, ca: &Path, page_origin: &str) -> String {
    format!(
        "[listener]\naddress = \"127.0.0.1:0\"\npath = \"/xmpp-websocket\"\nallow_missing_origin = true\n\
         trusted_proxies = [\"127.0.0.1\"]\nallowed_origins = [\"{page_origin}\"]\n\n\
         [admin]\naddress = \"127.0.0.1:0\"\n\n\
         [[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{c2s}\"\ntls = \"starttls\"\nca_file = \"{}\"\n",
        ca.display()
    )
}

/// One server kind with its gateway and one proxy of each kind in front of it.
struct Column {
    server: &'static str,
    alice: Account,
    bob: Account,
    gateway: Gateway,
    proxies: Vec<ReverseProxy>,
    diagnostics: Box<dyn Fn() -> String>,
}

impl Column {
    fn new(server: &'static str, gateway: Gateway, accounts: (Account, Account), log: std::path::PathBuf) -> Self {
        let proxies = ProxyKind::ALL.iter().map(|kind| ReverseProxy::start(*kind, gateway.listen_addr())).collect();
        Column {
            server,
            alice: accounts.0,
            bob: accounts.1,
            gateway,
            proxies,
            diagnostics: Box::new(move || support::tail(&std::fs::read_to_string(&log).unwrap_or_default(), 60)),
        }
    }

    fn proxy(&self, path: &str) -> Option<&ReverseProxy> {
        self.proxies.iter().find(|p| p.kind().name() == path)
    }
}

/// One finished cell.
struct Cell {
    client: &'static str,
    runtime: &'static str,
    server: &'static str,
    path: &'static str,
    run: NodeRun,
}

impl Cell {
    fn green(&self) -> bool {
        self.run.status.success() && self.run.at("/ok") == true
    }
}

fn run_cell(client: (&'static str, &'static str), column: &Column, path: &'static str, page_port: u16) -> Cell {
    let (client, runtime) = client;
    let url = match column.proxy(path) {
        Some(proxy) => proxy.url(),
        None => column.gateway.url().to_owned(),
    };
    let args: Vec<String> = [
        ("--client", client),
        ("--url", &url),
        ("--domain", DOMAIN),
        ("--user-a", &column.alice.user),
        ("--password-a", &column.alice.password),
        ("--user-b", &column.bob.user),
        ("--password-b", &column.bob.password),
        ("--room", &format!("matrix@conference.{DOMAIN}")),
    ]
    .iter()
    .flat_map(|(k, v)| [(*k).to_owned(), (*v).to_owned()])
    .collect();
    let run = if client == "converse" {
        // Converse.js in a headless browser: its own driver, on a page served on `page_port`.
        let mut args: Vec<String> = args.into_iter().skip(2).collect();
        args.extend(["--page-port".to_owned(), page_port.to_string(), "--browser".to_owned(), runtime.to_owned()]);
        run_node("converse-cell", &args, &[], CELL_TIMEOUT)
    } else {
        run_node("matrix-cell", &args, &[], CELL_TIMEOUT)
    };
    Cell { client, runtime, server: column.server, path, run }
}

/// The table: one row per cell, with time and the scenarios that failed or were skipped.
fn table(cells: &[Cell]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\ninterop matrix (client x server x path)");
    let _ = writeln!(
        out,
        "{:<9} {:<9} {:<9} {:<8} {:<5} {:>8}  notes",
        "client", "runs in", "server", "path", "cell", "time"
    );
    let _ = writeln!(out, "{}", "-".repeat(96));
    for c in cells {
        let scenarios = c.run.at("/scenarios").as_array().cloned().unwrap_or_default();
        let passed = scenarios.iter().filter(|s| s["ok"] == true && s["skipped"] == false).count();
        let mut notes = vec![format!("{passed}/{} scenarios", scenarios.len())];
        for s in &scenarios {
            if s["skipped"] == true {
                notes.push(format!(
                    "skipped {} ({})",
                    s["name"].as_str().unwrap_or("?"),
                    s["detail"].as_str().unwrap_or("")
                ));
            } else if s["ok"] != true {
                notes.push(format!(
                    "FAILED {}: {}",
                    s["name"].as_str().unwrap_or("?"),
                    s["error"].as_str().unwrap_or("")
                ));
            }
        }
        if scenarios.is_empty() {
            notes.push(format!("error: {}", c.run.at("/error")));
        }
        let _ = writeln!(
            out,
            "{:<9} {:<9} {:<9} {:<8} {:<5} {:>7.2}s  {}",
            c.client,
            c.runtime,
            c.server,
            c.path,
            if c.green() { "pass" } else { "FAIL" },
            c.run.elapsed.as_secs_f64(),
            notes.join("; ")
        );
    }
    let green = cells.iter().filter(|c| c.green()).count();
    let _ = writeln!(out, "{}", "-".repeat(96));
    let _ = writeln!(out, "cells: {green} passed, {} failed", cells.len() - green);
    out
}

/// Scenario names and timings of every cell, one line each, for the log.
fn scenario_lines(cells: &[Cell]) -> String {
    let mut out = String::new();
    for c in cells {
        let scenarios = c.run.at("/scenarios").as_array().cloned().unwrap_or_default();
        let parts: Vec<String> = scenarios
            .iter()
            .map(|s| {
                let mark = if s["skipped"] == true {
                    "skip"
                } else if s["ok"] == true {
                    "ok"
                } else {
                    "FAIL"
                };
                format!("{}={mark}({}ms)", s["name"].as_str().unwrap_or("?"), s["ms"])
            })
            .collect();
        let _ = writeln!(
            out,
            "{}/{}/{}/{} {} {}: {}",
            c.client,
            c.runtime,
            c.server,
            c.path,
            c.run.at("/library_version"),
            c.run.at("/browser_version").as_str().unwrap_or(""),
            parts.join(" ")
        );
    }
    out
}

#[test]
#[ignore = "end-to-end: needs prosody, ejabberd, nginx, caddy, haproxy, chromium, firefox-esr and node; run scripts/test.sh"]
fn interop_matrix() {
    let started = Instant::now();
    let prosody = Prosody::start_with(ProsodyOptions { stream_management: true, ..ProsodyOptions::default() });
    let ejabberd = Ejabberd::start();
    let setup_servers = started.elapsed();
    // The Converse.js page is served from this port; its origin is allowed by both gateways.
    let page_port = support::free_loopback_port();
    let page_origin = format!("http://127.0.0.1:{page_port}");

    let mut columns = Vec::new();
    {
        let gateway = Gateway::start(&gateway_config(prosody.c2s_addr(), prosody.ca_pem_path(), &page_origin));
        let accounts = (prosody.register_random("alice"), prosody.register_random("bob"));
        columns.push(Column::new("prosody", gateway, accounts, prosody.log_path().to_path_buf()));
    }
    {
        let gateway = Gateway::start(&gateway_config(ejabberd.c2s_addr(), ejabberd.ca_pem_path(), &page_origin));
        let password = || format!("pw-{:016x}", rand::random::<u64>());
        let accounts = (ejabberd.register("alice", &password()), ejabberd.register("bob", &password()));
        columns.push(Column::new("ejabberd", gateway, accounts, ejabberd.dir().join("logs/ejabberd.log")));
    }
    let setup = started.elapsed();

    // MATRIX_ONLY=strophe,ejabberd (client, runtime, server or path names) narrows the run while
    // debugging: a dimension none of whose names is listed keeps all of them. CI runs everything.
    let only = std::env::var("MATRIX_ONLY").unwrap_or_default();
    let only: Vec<&str> = only.split(',').filter(|w| !w.is_empty()).collect();
    let pick = |all: &[&str], name: &str| !all.iter().any(|a| only.contains(a)) || only.contains(&name);
    let servers: Vec<&str> = columns.iter().map(|c| c.server).collect();
    let (libraries, runtimes): (Vec<&str>, Vec<&str>) = CLIENTS.iter().copied().unzip();
    let mut cells = Vec::new();
    for client in CLIENTS.into_iter().filter(|(c, r)| pick(&libraries, c) && pick(&runtimes, r)) {
        for column in columns.iter().filter(|c| pick(&servers, c.server)) {
            for path in PATHS.into_iter().filter(|p| pick(&PATHS, p)) {
                cells.push(run_cell(client, column, path, page_port));
            }
        }
    }
    println!("{}", table(&cells));
    println!("{}", scenario_lines(&cells));
    println!(
        "matrix time: servers up in {:.1}s, setup {:.1}s, total {:.1}s",
        setup_servers.as_secs_f64(),
        setup.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let red: Vec<&Cell> = cells.iter().filter(|c| !c.green()).collect();
    if !red.is_empty() {
        let mut why = String::new();
        for c in &red {
            let column = columns.iter().find(|col| col.server == c.server).unwrap();
            let _ = writeln!(
                why,
                "=== {} / {} / {} / {} ===\n{}\n--- gateway log (tail) ---\n{}\n{}\n--- {} log (tail) ---\n{}",
                c.client,
                c.runtime,
                c.server,
                c.path,
                c.run.describe(),
                support::tail(&column.gateway.log(), 40),
                column.proxy(c.path).map(ReverseProxy::diagnostics).unwrap_or_default(),
                c.server,
                (column.diagnostics)()
            );
        }
        panic!("{} red cell(s)\n{why}{}", red.len(), table(&cells));
    }
}
