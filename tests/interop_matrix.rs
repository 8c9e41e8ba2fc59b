//! The interop matrix: every client library × every server × every path, each cell running
//! the scenarios of `tests/e2e/js/matrix-cell.mjs` (SCRAM-SHA-1 and PLAIN logins, roster,
//! presence, message with receipt, ping, MUC, clean logout, XEP-0198 resume after the
//! WebSocket is killed, wrong password) for two accounts in one client process.
//!
//! Clients: Strophe.js, @xmpp/client and StanzaJS under Node (`matrix-cell.mjs`), and Converse.js
//! in Debian's headless Chromium (DevTools protocol) and Firefox ESR (WebDriver BiDi), both driven
//! by puppeteer-core (`converse-cell.mjs`: login, roster, chat, MUC, reconnect, logout, PLAIN
//! login, wrong password). One browser process runs all of its cells in turn, each in a browser
//! context of its own (Firefox alone takes seconds to start).
//!
//! Servers: Debian's Prosody and ejabberd, STARTTLS required, certificates from a test CA,
//! accounts made with `prosodyctl` / `ejabberdctl`. Paths: straight to the gateway, through
//! nginx, Caddy and HAProxy, each running its deploy/ file (tests/harness/proxy.rs), and `h2`:
//! the gateway's own `wss://` listener with a certificate from a test CA the browsers trust,
//! offering HTTP/2 (RFC 8441) and HTTP/1.1 by ALPN. On `h2` the browsers' WebSockets must run
//! over HTTP/2 (Chromium's connection and handshakes as the DevTools protocol reports them, and
//! the gateway's `xmppgw_websocket_upgrades_total{http_version}` for both browsers), and the
//! Node clients, whose `ws` library speaks WebSocket over HTTP/1.1 only, over HTTP/1.1 on the
//! same port. `bosh`: BOSH (XEP-0124/XEP-0206) at the plain gateway's `/http-bind`, for the
//! libraries that have it (Strophe.js, StanzaJS, Converse.js; not @xmpp/client), and through each
//! proxy's deploy file (`bosh-nginx`, `bosh-caddy`, `bosh-haproxy`, with Strophe.js); such a cell
//! must have made BOSH requests and no WebSocket. One server of each kind, two gateways (plain, and `wss://`) and one proxy of each
//! kind per server serve every cell.
//!
//! The table is printed (run with `--nocapture` to see it; scripts/test.sh does), and the test
//! fails if any cell is red. Ignored by a bare `cargo test`: run it with scripts/test.sh.
#![allow(clippy::unwrap_used)]

mod harness;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use harness::e2e::{run_node, Account, Gateway, NodeRun, Prosody, ProsodyOptions, DOMAIN};
use harness::ejabberd::Ejabberd;
use harness::proxy::{ProxyKind, ReverseProxy};
use harness::{LeafCert, TestCa};

/// Upper bound for one cell (the cell's own deadline is 30 steps of 10 s; cells take ~1-15 s).
const CELL_TIMEOUT: Duration = Duration::from_secs(120);
/// Client libraries (as `matrix-cell.mjs --client` names them, or Converse.js) and what runs
/// them: Node, or the browser `converse-cell.mjs --browser` drives.
const CLIENTS: [(&str, &str); 5] =
    [("strophe", "node"), ("xmppjs", "node"), ("stanza", "node"), ("converse", "chromium"), ("converse", "firefox")];
/// Paths from the client to the gateway: straight, through a proxy of [`ProxyKind::ALL`], to
/// the gateway's own `wss://` listener with HTTP/2 offered ([`H2`]), or over BOSH ([`BOSH`]),
/// straight or through each proxy (`bosh-nginx`…: Strophe.js only, which keeps the run short).
const PATHS: [&str; 9] = ["direct", "nginx", "caddy", "haproxy", H2, BOSH, "bosh-nginx", "bosh-caddy", "bosh-haproxy"];
/// The path to the `wss://` listener that offers HTTP/2.
const H2: &str = "h2";
/// BOSH (XEP-0124/XEP-0206) straight to the plain gateway's `/http-bind`.
const BOSH: &str = "bosh";
/// The client libraries without BOSH: @xmpp/client dropped it.
const WEBSOCKET_ONLY: [&str; 1] = ["xmppjs"];
/// The gateway's answered BOSH requests (`xmppgw_bosh_requests_total`, all labels).
const BOSH_REQUESTS: &str = "xmppgw_bosh_requests_total";
/// The gateway's upgrades by HTTP version (`xmppgw_websocket_upgrades_total`).
const UPGRADES_H1: &str = "xmppgw_websocket_upgrades_total{http_version=\"1.1\"}";
const UPGRADES_H2: &str = "xmppgw_websocket_upgrades_total{http_version=\"2\"}";

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

/// The same gateway serving `wss://` itself with `cert` (HTTP/2 and HTTP/1.1 offered by ALPN,
/// the default): the [`H2`] path.
pub fn secure_gateway_config(c2s: SocketAddr, ca: &Path, page_origin: &str, cert: &LeafCert) -> String {
    let tls = format!(
        "[listener]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.cert_path.display(),
        cert.key_path.display()
    );
    gateway_config(c2s, ca, page_origin).replacen("[listener]\n", &tls, 1)
}

/// One server kind with its gateways (plain behind the proxies, and `wss://` for [`H2`]) and
/// one proxy of each kind in front of the plain one.
struct Column {
    server: &'static str,
    alice: Account,
    bob: Account,
    gateway: Gateway,
    secure: Gateway,
    proxies: Vec<ReverseProxy>,
    diagnostics: Box<dyn Fn() -> String>,
}

impl Column {
    fn new(
        server: &'static str,
        gateways: (Gateway, Gateway),
        accounts: (Account, Account),
        log: std::path::PathBuf,
    ) -> Self {
        let (gateway, secure) = gateways;
        let proxies = ProxyKind::ALL.iter().map(|kind| ReverseProxy::start(*kind, gateway.listen_addr())).collect();
        Column {
            server,
            alice: accounts.0,
            bob: accounts.1,
            gateway,
            secure,
            proxies,
            diagnostics: Box::new(move || harness::e2e::tail(&std::fs::read_to_string(&log).unwrap_or_default(), 60)),
        }
    }

    fn proxy(&self, path: &str) -> Option<&ReverseProxy> {
        let kind = path.strip_prefix("bosh-").unwrap_or(path);
        self.proxies.iter().find(|p| p.kind().name() == kind)
    }

    /// The gateway a path ends at.
    fn gateway_for(&self, path: &str) -> &Gateway {
        if path == H2 {
            &self.secure
        } else {
            &self.gateway
        }
    }
}

/// One finished cell.
struct Cell {
    client: &'static str,
    runtime: &'static str,
    server: &'static str,
    path: &'static str,
    /// The cell's result object: `ok`, `error`, `scenarios`.
    result: serde_json::Value,
    elapsed: Duration,
    green: bool,
    /// The process that ran it (one Converse process runs every cell of its browser).
    run: Rc<NodeRun>,
    /// What the table says about the cell besides its scenarios.
    note: Option<String>,
}

/// The arguments naming a target's URL and accounts, for `matrix-cell.mjs`.
fn target_url(column: &Column, path: &str) -> String {
    if path == BOSH {
        return column.gateway.bosh_url();
    }
    if let Some(proxy) = path.strip_prefix("bosh-") {
        return column.proxy(proxy).expect("a proxy of that kind").bosh_url();
    }
    match column.proxy(path) {
        Some(proxy) => proxy.url(),
        None => column.gateway_for(path).url().to_owned(),
    }
}

/// One Node library's cell: a process of its own. On [`H2`] the cell must have run over
/// HTTP/1.1 on the port that offers HTTP/2 (its library has no RFC 8441), which the gateway's
/// upgrade counts by HTTP version show; `ca` is the CA of the `wss://` listener's certificate.
fn run_node_cell(client: &'static str, column: &Column, path: &'static str, ca: &Path) -> Cell {
    let url = target_url(column, path);
    let room = format!("matrix@conference.{DOMAIN}");
    let args: Vec<String> = [
        ("--client", client),
        ("--url", url.as_str()),
        ("--domain", DOMAIN),
        ("--user-a", &column.alice.user),
        ("--password-a", &column.alice.password),
        ("--user-b", &column.bob.user),
        ("--password-b", &column.bob.password),
        ("--room", &room),
    ]
    .iter()
    .flat_map(|(k, v)| [(*k).to_owned(), (*v).to_owned()])
    .collect();
    let gateway = column.gateway_for(path);
    let before = (gateway.metric(UPGRADES_H1), gateway.metric(UPGRADES_H2), gateway.metric_sum(BOSH_REQUESTS));
    let env = [("NODE_EXTRA_CA_CERTS", ca.to_str().unwrap())];
    let run = Rc::new(run_node("matrix-cell", &args, &env, CELL_TIMEOUT));
    let mut green = run.status.success() && run.at("/ok") == true;
    let mut note = None;
    if path == H2 {
        let (h1, h2) = (gateway.metric(UPGRADES_H1) - before.0, gateway.metric(UPGRADES_H2) - before.1);
        green &= h1 > 0.0 && h2 == 0.0;
        note = Some(format!("HTTP/1.1 on the h2 port ({h1} upgrades over 1.1, {h2} over 2): ws has no RFC 8441"));
    }
    if path.starts_with(BOSH) {
        // Both accounts ran over BOSH: the gateway answered its requests and upgraded nothing.
        let upgrades = gateway.metric(UPGRADES_H1) - before.0 + gateway.metric(UPGRADES_H2) - before.1;
        let requests = gateway.metric_sum(BOSH_REQUESTS) - before.2;
        green &= upgrades == 0.0 && requests > 0.0;
        note = Some(format!("{requests} BOSH requests, {upgrades} WebSocket upgrades"));
    }
    Cell {
        client,
        runtime: "node",
        server: column.server,
        path,
        result: run.json.clone(),
        elapsed: run.elapsed,
        green,
        run,
        note,
    }
}

/// Every Converse.js cell of one browser: one process and one browser for all `targets`, each
/// target in its own browser context, on a page served on `page_port`. The browser trusts `ca`
/// (the `wss://` listener's); on [`H2`] the cell checks its WebSockets ran over HTTP/2.
fn run_converse_cells(
    browser: &'static str,
    targets: &[(&Column, &'static str)],
    page_port: u16,
    ca: &Path,
) -> Vec<Cell> {
    let list: Vec<serde_json::Value> = targets
        .iter()
        .map(|(column, path)| {
            serde_json::json!({
                "name": format!("{}/{path}", column.server),
                // Over BOSH, Converse uses "bosh"; its peer B (xmpp.js) the WebSocket at "url".
                "url": if *path == BOSH { column.gateway.url().to_owned() } else { target_url(column, path) },
                "bosh": (*path == BOSH).then(|| column.gateway.bosh_url()),
                "userA": column.alice.user, "passwordA": column.alice.password,
                "userB": column.bob.user, "passwordB": column.bob.password,
                "room": format!("matrix@conference.{DOMAIN}"),
                "http2": *path == H2,
                "metrics": column.gateway_for(path).admin_url().map(|admin| format!("{admin}/metrics")),
            })
        })
        .collect();
    let args: Vec<String> = [
        ("--browser", browser.to_owned()),
        ("--domain", DOMAIN.to_owned()),
        ("--page-port", page_port.to_string()),
        ("--ca-file", ca.display().to_string()),
        ("--targets", serde_json::Value::from(list).to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_owned(), v])
    .collect();
    let timeout = CELL_TIMEOUT * u32::try_from(targets.len()).unwrap_or(1).max(1);
    let env = [("NODE_EXTRA_CA_CERTS", ca.to_str().unwrap())];
    let run = Rc::new(run_node("converse-cell", &args, &env, timeout));
    println!("{browser}: {} started in {} ms", run.at("/browser_version"), run.at("/browser_launch_ms"));
    targets
        .iter()
        .enumerate()
        .map(|(i, (column, path))| {
            let result = run.at(&format!("/cells/{i}")).clone();
            let result = if result.is_null() {
                serde_json::json!({ "ok": false, "error": run.at("/error"), "scenarios": [] })
            } else {
                result
            };
            let elapsed = Duration::from_secs_f64(result["ms"].as_f64().unwrap_or(0.0) / 1000.0);
            let green = result["ok"] == true && !run.at("/browser_version").is_null();
            // On h2, what the HTTP/2 check found (the evidence, in the table).
            let note = result["scenarios"].as_array().and_then(|scenarios| {
                scenarios
                    .iter()
                    .find(|s| {
                        s["name"]
                            .as_str()
                            .is_some_and(|name| name.starts_with("WebSockets over HTTP/2") || name == "over BOSH only")
                    })
                    .and_then(|s| s["detail"].as_str())
                    .map(str::to_owned)
            });
            Cell {
                client: "converse",
                runtime: browser,
                server: column.server,
                path,
                result,
                elapsed,
                green,
                run: Rc::clone(&run),
                note,
            }
        })
        .collect()
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
        let scenarios = c.result["scenarios"].as_array().cloned().unwrap_or_default();
        let passed = scenarios.iter().filter(|s| s["ok"] == true && s["skipped"] == false).count();
        let mut notes = vec![format!("{passed}/{} scenarios", scenarios.len())];
        notes.extend(c.note.clone());
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
            notes.push(format!("error: {}", c.result["error"]));
        }
        let _ = writeln!(
            out,
            "{:<9} {:<9} {:<9} {:<8} {:<5} {:>7.2}s  {}",
            c.client,
            c.runtime,
            c.server,
            c.path,
            if c.green { "pass" } else { "FAIL" },
            c.elapsed.as_secs_f64(),
            notes.join("; ")
        );
    }
    let green = cells.iter().filter(|c| c.green).count();
    let _ = writeln!(out, "{}", "-".repeat(96));
    let _ = writeln!(out, "cells: {green} passed, {} failed", cells.len() - green);
    out
}

/// Scenario names and timings of every cell, one line each, for the log.
fn scenario_lines(cells: &[Cell]) -> String {
    let mut out = String::new();
    for c in cells {
        let scenarios = c.result["scenarios"].as_array().cloned().unwrap_or_default();
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
    let page_port = harness::e2e::free_loopback_port();
    let page_origin = format!("http://127.0.0.1:{page_port}");
    // The `wss://` listeners' CA, which the browsers and Node trust; certificates for 127.0.0.1.
    let listener_ca = TestCa::new();
    let listener_cert = listener_ca.issue("gateway", &["127.0.0.1"]);
    let gateways = |c2s: SocketAddr, ca: &Path| {
        (
            Gateway::start(&gateway_config(c2s, ca, &page_origin)),
            Gateway::start(&secure_gateway_config(c2s, ca, &page_origin, &listener_cert)),
        )
    };

    let mut columns = Vec::new();
    {
        let gateways = gateways(prosody.c2s_addr(), prosody.ca_pem_path());
        let accounts = (prosody.register_random("alice"), prosody.register_random("bob"));
        columns.push(Column::new("prosody", gateways, accounts, prosody.log_path().to_path_buf()));
    }
    {
        let gateways = gateways(ejabberd.c2s_addr(), ejabberd.ca_pem_path());
        let password = || format!("pw-{:016x}", rand::random::<u64>());
        let accounts = (ejabberd.register("alice", &password()), ejabberd.register("bob", &password()));
        columns.push(Column::new("ejabberd", gateways, accounts, ejabberd.dir().join("logs/ejabberd.log")));
    }
    let ca = listener_ca.ca_pem_path();
    let setup = started.elapsed();

    // MATRIX_ONLY=strophe,ejabberd (client, runtime, server or path names) narrows the run while
    // debugging: a dimension none of whose names is listed keeps all of them. CI runs everything.
    let only = std::env::var("MATRIX_ONLY").unwrap_or_default();
    let only: Vec<&str> = only.split(',').filter(|w| !w.is_empty()).collect();
    let pick = |all: &[&str], name: &str| !all.iter().any(|a| only.contains(a)) || only.contains(&name);
    let servers: Vec<&str> = columns.iter().map(|c| c.server).collect();
    let (libraries, runtimes): (Vec<&str>, Vec<&str>) = CLIENTS.iter().copied().unzip();
    let mut cells = Vec::new();
    for (client, runtime) in CLIENTS.into_iter().filter(|(c, r)| pick(&libraries, c) && pick(&runtimes, r)) {
        let targets: Vec<(&Column, &'static str)> = columns
            .iter()
            .filter(|c| pick(&servers, c.server))
            .flat_map(|column| PATHS.into_iter().filter(|p| pick(&PATHS, p)).map(move |path| (column, path)))
            .filter(|(_, path)| !path.starts_with(BOSH) || !WEBSOCKET_ONLY.contains(&client))
            .filter(|(_, path)| !path.starts_with("bosh-") || client == "strophe")
            .collect();
        if runtime == "node" {
            cells.extend(targets.iter().map(|(column, path)| run_node_cell(client, column, path, ca)));
        } else {
            // Converse.js: one browser for all of them (Firefox takes seconds to start).
            let started = Instant::now();
            cells.extend(run_converse_cells(runtime, &targets, page_port, ca));
            println!("converse in {runtime}: {} cells in {:.1}s", targets.len(), started.elapsed().as_secs_f64());
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

    let red: Vec<&Cell> = cells.iter().filter(|c| !c.green).collect();
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
                harness::e2e::tail(&column.gateway_for(c.path).log(), 40),
                column.proxy(c.path).map(ReverseProxy::diagnostics).unwrap_or_default(),
                c.server,
                (column.diagnostics)()
            );
        }
        panic!("{} red cell(s)\n{why}{}", red.len(), table(&cells));
    }
}
