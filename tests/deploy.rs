//! deploy/ checked by the tools that will read it: `promtool` (Debian's prometheus package)
//! accepts the gateway's `/metrics` output after real sessions, the alert rules and the scrape
//! configuration, and the alert rules only name metrics the gateway has; `nginx -t`,
//! `caddy validate` and `haproxy -c` accept the proxy configurations as shipped.
//!
//! The tests that need those tools are ignored by a bare `cargo test`; scripts/test.sh installs
//! the Debian packages and runs them.

#![allow(clippy::unwrap_used)]

mod harness;

use std::io::Write;
use std::process::{Command, Stdio};

use harness::fake_server::FakeServer;
use harness::gateway::TestGateway;
use harness::setup::{exchange_and_close, open_session};
use harness::ws_client::{raw_http, upgrade_request, WsClient, WsEvent};
use harness::xmpp::{DOMAIN, OPEN, PLAIN_FEATURES as FEATURES};
use harness::TestCa;

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `promtool args…` with `stdin`; returns (success, stdout + stderr).
fn promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package prometheus; scripts/test.sh installs it)");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Drives a gateway through the outcomes that create series: a clean session with stanzas both
/// ways, a refused handshake, an unknown domain and an unreachable upstream. Returns the text
/// scraped from the admin listener.
async fn metrics_after_sessions() -> String {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gateway = TestGateway::start(&format!(
        "[[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\nca_file = \"{}\"\n\
         [[upstream]]\ndomain = \"dead.example\"\naddress = \"{dead}\"\nca_file = \"{}\"\n",
        server.addr(),
        ca.ca_file().display(),
        ca.ca_file().display()
    ))
    .await;

    let (mut client, mut conn) = open_session(&gateway.url, &server, FEATURES).await;
    exchange_and_close(&mut client, &mut conn).await;
    client.close().await;

    let host = gateway.url.trim_start_matches("ws://").split('/').next().unwrap().to_string();
    assert_eq!(raw_http(&host, &upgrade_request(&host, "/xmpp-websocket", "")).await.0, 400);

    for to in ["nowhere.example", "dead.example"] {
        let mut doomed = WsClient::connect(&gateway.url).await;
        doomed.send(&OPEN.replace(DOMAIN, to)).await;
        while !matches!(doomed.next_event().await, WsEvent::Close(..) | WsEvent::Gone) {}
        doomed.close().await;
    }
    gateway.wait_metric("xmppgw_sessions_active", 0.0).await;
    gateway.wait_metric("xmppgw_sessions_ended_total{outcome=\"upstream_failed\"}", 1.0).await;

    let admin = gateway.admin.clone().unwrap();
    let admin_host = admin.trim_start_matches("http://");
    let (status, response) =
        raw_http(admin_host, &format!("GET /metrics HTTP/1.1\r\nHost: {admin_host}\r\nConnection: close\r\n\r\n"))
            .await;
    assert_eq!(status, 200, "{response}");
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap();
    for family in [
        "xmppgw_sessions_active",
        "xmppgw_sessions_ended_total",
        "xmppgw_websocket_handshakes_rejected_total",
        "xmppgw_upstream_connect_duration_seconds",
        "xmppgw_upstream_connect_failures_total",
        "xmppgw_stanzas_total",
        "xmppgw_bytes_total",
        "xmppgw_stream_errors_total",
        "xmppgw_build_info",
        // The process collector's standard families (Linux), used by the alert rules.
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
    ] {
        assert!(body.contains(&format!("# TYPE {family} ")), "{family} missing:\n{body}");
    }
    body
}

#[tokio::test]
#[ignore = "needs promtool; run scripts/test.sh"]
async fn promtool_check_metrics_accepts_the_scraped_output() {
    let body = metrics_after_sessions().await;
    let (ok, report) = promtool(&["check", "metrics"], &body);
    assert!(ok && report.trim().is_empty(), "promtool check metrics:\n{report}\n--- input ---\n{body}");
}

#[test]
#[ignore = "needs promtool; run scripts/test.sh"]
fn promtool_check_rules_accepts_the_alert_rules() {
    let (ok, report) = promtool(&["check", "rules", &repo("deploy/prometheus/alerts.yml")], "");
    assert!(ok && report.contains("SUCCESS"), "{report}");
}

/// deploy/prometheus/alerts_test.yml: each alert fires on the series it is about and stays
/// quiet on look-alikes (promtool's rule unit tests).
#[test]
#[ignore = "needs promtool; run scripts/test.sh"]
fn promtool_rule_tests_pass() {
    let (ok, report) = promtool(&["test", "rules", &repo("deploy/prometheus/alerts_test.yml")], "");
    assert!(ok && report.contains("SUCCESS"), "{report}");
}

#[test]
#[ignore = "needs promtool; run scripts/test.sh"]
fn promtool_check_config_accepts_the_scrape_config_and_its_rules() {
    let (ok, report) = promtool(&["check", "config", &repo("deploy/prometheus/scrape.yml")], "");
    assert!(ok && report.contains("SUCCESS"), "{report}");
    // The scrape config loads the rules file: both must be checked, not just found.
    assert!(report.contains("alerts.yml"), "{report}");
}

/// Every `xmppgw_*` and `process_*` name an alert uses is a metric the gateway exports (a
/// renamed metric would silently turn an alert into one that never fires; promtool cannot see
/// that).
#[test]
fn alert_rules_only_use_metrics_the_gateway_defines() {
    let rules = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap();
    let defined = xmpp_ws_gateway::metrics::Metrics::new();
    // Every family, with each vector touched once so that it is rendered.
    defined.sessions_ended.with_label_values(&["clean"]).inc();
    defined.handshakes_rejected.with_label_values(&["draining"]).inc();
    defined.observe_connect_phase("tcp", std::time::Duration::from_millis(1));
    defined.connect_failures.with_label_values(&["connect-refused"]).inc();
    defined.relayed(xmpp_ws_gateway::metrics::Direction::ToClient, 1, 1);
    defined.stream_errors.with_label_values(&["policy-violation", "gateway"]).inc();
    defined.client_refused.with_label_values(&["too-big"]).inc();
    defined.dns_lookups.with_label_values(&["ok"]).inc();
    let rendered = defined.render();
    let families: Vec<&str> =
        rendered.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    let mut used = Vec::new();
    for prefix in ["xmppgw_", "process_"] {
        let mut rest = rules.as_str();
        while let Some(start) = rest.find(prefix) {
            let tail = &rest[start..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            // A metric name starts a word (not `..._process_x`).
            if !rest[..start].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                used.push(&tail[..end]);
            }
            rest = &tail[end..];
        }
    }
    assert!(used.iter().any(|name| name.starts_with("xmppgw_")), "no gateway metric in the rules?");
    assert!(used.iter().any(|name| name.starts_with("process_")), "no process metric in the rules?");
    for name in used {
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(name);
        assert!(families.contains(&family), "alerts.yml uses {name}, which the gateway does not export: {families:?}");
    }
}

/// `nginx -t` accepts the site file as shipped, with the location snippet where the site file
/// expects it (`snippets/` next to nginx.conf) and only the certificate paths swapped for test
/// files.
#[test]
#[ignore = "needs nginx; run scripts/test.sh"]
fn nginx_accepts_the_site_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("snippets")).unwrap();
    std::fs::copy(
        repo("deploy/nginx/xmpp-websocket.location.conf"),
        root.join("snippets/xmpp-websocket.location.conf"),
    )
    .unwrap();
    let ca = TestCa::new();
    let (cert, key) = ca.leaf_pem(&["xmpp.example.com"]);
    std::fs::write(root.join("cert.pem"), cert).unwrap();
    std::fs::write(root.join("key.pem"), key).unwrap();
    let site = std::fs::read_to_string(repo("deploy/nginx/xmpp-ws-gateway.conf")).unwrap();
    for path in ["/etc/ssl/certs/xmpp.example.com.pem", "/etc/ssl/private/xmpp.example.com.key"] {
        assert!(site.contains(path), "the site file no longer names {path}");
    }
    let site = site
        .replace("/etc/ssl/certs/xmpp.example.com.pem", &root.join("cert.pem").display().to_string())
        .replace("/etc/ssl/private/xmpp.example.com.key", &root.join("key.pem").display().to_string());
    std::fs::write(root.join("site.conf"), site).unwrap();
    let d = root.display();
    std::fs::write(
        root.join("nginx.conf"),
        format!("pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n    include {d}/site.conf;\n}}\n"),
    )
    .unwrap();
    let output = Command::new(harness::proxy::binary("NGINX", "/usr/sbin/nginx", "nginx"))
        .arg("-t")
        .arg("-p")
        .arg(root)
        .arg("-c")
        .arg(root.join("nginx.conf"))
        .arg("-e")
        .arg(root.join("error.log"))
        .output()
        .expect("run nginx (Debian package nginx; scripts/test.sh installs it)");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && report.contains("test is successful"), "{report}");
}

/// `caddy validate` accepts the Caddyfile as shipped (site name, automatic HTTPS and all); Caddy's
/// state goes to a temporary directory.
#[test]
#[ignore = "needs caddy; run scripts/test.sh"]
fn caddy_accepts_the_caddyfile() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(std::env::var_os("CADDY").unwrap_or_else(|| "caddy".into()))
        .args(["validate", "--adapter", "caddyfile", "--config", &repo("deploy/caddy/Caddyfile")])
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .expect("run caddy (Debian package caddy; scripts/test.sh installs it)");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && report.contains("Valid configuration"), "{report}");
    // No warnings either (a deprecated directive, say, which a later Caddy would refuse).
    assert!(!report.to_lowercase().contains("warn"), "caddy warns about the Caddyfile:\n{report}");
}

/// `haproxy -c` accepts the deploy sections appended to Debian's default global and defaults
/// sections (as the install note says), with only the certificate path swapped for a test PEM.
#[test]
#[ignore = "needs haproxy; run scripts/test.sh"]
fn haproxy_accepts_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (cert, key) = ca.leaf_pem(&["xmpp.example.com"]);
    let pem = dir.path().join("xmpp.example.com.pem");
    std::fs::write(&pem, format!("{cert}{key}")).unwrap();
    let deployed = std::fs::read_to_string(repo("deploy/haproxy/xmpp-ws-gateway.cfg")).unwrap();
    let shipped_pem = "/etc/haproxy/certs/xmpp.example.com.pem";
    assert!(deployed.contains(shipped_pem), "the HAProxy file no longer names {shipped_pem}");
    let defaults = "global\n    log stdout format raw local0\n\ndefaults\n    log global\n    mode http\n    \
                    option httplog\n    timeout connect 5000\n    timeout client 50000\n    timeout server 50000\n\n";
    let config = dir.path().join("haproxy.cfg");
    std::fs::write(&config, format!("{defaults}{}", deployed.replace(shipped_pem, &pem.display().to_string())))
        .unwrap();
    let output = Command::new(std::env::var_os("HAPROXY").unwrap_or_else(|| "haproxy".into()))
        .arg("-c")
        .arg("-f")
        .arg(&config)
        .output()
        .expect("run haproxy (Debian package haproxy; scripts/test.sh installs it)");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && report.contains("Configuration file is valid"), "{report}");
    assert!(!report.contains("[WARNING]"), "haproxy warns about the config:\n{report}");
}
