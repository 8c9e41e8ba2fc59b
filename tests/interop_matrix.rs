//! The interop matrix: every client library × every server × every path, each cell running
//! the scenarios of `tests/e2e/js/matrix-cell.mjs` (SCRAM-SHA-1 and PLAIN logins, roster,
//! presence, message with receipt, ping, MUC, clean logout, XEP-0198 resume after the
//! WebSocket is killed, wrong password) for two accounts in one client process.
//!
//! Servers: Debian's Prosody and ejabberd, STARTTLS required, certificates from a test CA,
//! accounts made with `prosodyctl` / `ejabberdctl`. Paths: straight to the gateway, and through
//! nginx (the location block of deploy/nginx). One server of each kind, one gateway and one
//! nginx per server serve every cell.
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
use support::nginx::Nginx;
use support::{run_node, Account, Gateway, NodeRun, Prosody, ProsodyOptions, DOMAIN};

/// Upper bound for one cell (the cell's own deadline is 30 steps of 10 s; cells take ~1-3 s).
const CELL_TIMEOUT: Duration = Duration::from_secs(120);
/// Client libraries, as `matrix-cell.mjs --client` names them.
const CLIENTS: [&str; 4] = ["strophe", "xmppjs", "stanza", "converse"];
/// Paths from the client to the gateway.
const PATHS: [&str; 2] = ["direct", "nginx"];

/// Gateway configuration for one STARTTLS upstream at `c2s`, trusting nginx on loopback, and
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

/// One server kind with its gateway and nginx.
struct Column {
    server: &'static str,
    alice: Account,
    bob: Account,
    gateway: Gateway,
    nginx: Nginx,
    diagnostics: Box<dyn Fn() -> String>,
}

/// One finished cell.
struct Cell {
    client: &'static str,
    server: &'static str,
    path: &'static str,
    run: NodeRun,
}

impl Cell {
    fn green(&self) -> bool {
        self.run.status.success() && self.run.at("/ok") == true
    }
}

fn run_cell(client: &'static str, column: &Column, path: &'static str, page_port: u16) -> Cell {
    let url = match path {
        "direct" => column.gateway.url().to_owned(),
        _ => column.nginx.url(),
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
        // Converse.js in headless Chromium: its own driver, on a page served on `page_port`.
        let mut args: Vec<String> =
            args.into_iter().skip(2).filter(|a| a != "--room" && !a.starts_with("matrix@")).collect();
        args.extend(["--page-port".to_owned(), page_port.to_string()]);
        run_node("converse-cell", &args, &[], CELL_TIMEOUT)
    } else {
        run_node("matrix-cell", &args, &[], CELL_TIMEOUT)
    };
    Cell { client, server: column.server, path, run }
}

/// The table: one row per cell, with time and the scenarios that failed or were skipped.
fn table(cells: &[Cell]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\ninterop matrix (client x server x path)");
    let _ = writeln!(out, "{:<9} {:<9} {:<7} {:<5} {:>8}  notes", "client", "server", "path", "cell", "time");
    let _ = writeln!(out, "{}", "-".repeat(78));
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
            "{:<9} {:<9} {:<7} {:<5} {:>7.2}s  {}",
            c.client,
            c.server,
            c.path,
            if c.green() { "pass" } else { "FAIL" },
            c.run.elapsed.as_secs_f64(),
            notes.join("; ")
        );
    }
    let green = cells.iter().filter(|c| c.green()).count();
    let _ = writeln!(out, "{}", "-".repeat(78));
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
        let _ =
            writeln!(out, "{}/{}/{} {}: {}", c.client, c.server, c.path, c.run.at("/library_version"), parts.join(" "));
    }
    out
}

#[test]
#[ignore = "end-to-end: needs prosody, ejabberd, nginx and node; run scripts/test.sh"]
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
        let nginx = Nginx::start(gateway.url().trim_start_matches("ws://").split('/').next().unwrap());
        let alice = prosody.register_random("alice");
        let bob = prosody.register_random("bob");
        let log = prosody.log_path().to_path_buf();
        columns.push(Column {
            server: "prosody",
            alice,
            bob,
            gateway,
            nginx,
            diagnostics: Box::new(move || support::tail(&std::fs::read_to_string(&log).unwrap_or_default(), 60)),
        });
    }
    {
        let gateway = Gateway::start(&gateway_config(ejabberd.c2s_addr(), ejabberd.ca_pem_path(), &page_origin));
        let nginx = Nginx::start(gateway.url().trim_start_matches("ws://").split('/').next().unwrap());
        let alice = ejabberd.register("alice", &format!("pw-{:016x}", rand::random::<u64>()));
        let bob = ejabberd.register("bob", &format!("pw-{:016x}", rand::random::<u64>()));
        let log = ejabberd.dir().join("logs/ejabberd.log");
        columns.push(Column {
            server: "ejabberd",
            alice,
            bob,
            gateway,
            nginx,
            diagnostics: Box::new(move || support::tail(&std::fs::read_to_string(&log).unwrap_or_default(), 60)),
        });
    }
    let setup = started.elapsed();

    // MATRIX_ONLY=strophe,ejabberd (client, server or path names) narrows the run while
    // debugging: a dimension none of whose names is listed keeps all of them. CI runs everything.
    let only = std::env::var("MATRIX_ONLY").unwrap_or_default();
    let only: Vec<&str> = only.split(',').filter(|w| !w.is_empty()).collect();
    let pick = |all: &[&str], name: &str| !all.iter().any(|a| only.contains(a)) || only.contains(&name);
    let servers: Vec<&str> = columns.iter().map(|c| c.server).collect();
    let mut cells = Vec::new();
    for client in CLIENTS.into_iter().filter(|c| pick(&CLIENTS, c)) {
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
                "=== {} / {} / {} ===\n{}\n--- gateway log (tail) ---\n{}\n--- nginx ---\n{}\n--- {} log (tail) ---\n{}",
                c.client,
                c.server,
                c.path,
                c.run.describe(),
                support::tail(&column.gateway.log(), 40),
                column.nginx.diagnostics(),
                c.server,
                (column.diagnostics)()
            );
        }
        panic!("{} red cell(s)\n{why}{}", red.len(), table(&cells));
    }
}
