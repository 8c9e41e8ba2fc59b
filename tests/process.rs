//! The built binary as operators run it: configuration checks, SIGTERM drain and exit code,
//! SIGHUP reload, and logs that never contain credentials.

#![allow(clippy::unwrap_used)]

mod harness;

use std::process::Command;
use std::time::Duration;

use harness::fake_server::FakeServer;
use harness::process::GatewayProcess;
use harness::raw_ws::RawWs;
use harness::setup::{connecting, open_session};
use harness::ws_client::{raw_http, upgrade_request};
use harness::xmpp::{CLOSE, DOMAIN, OPEN, PLAIN_FEATURES as FEATURES};
use harness::TestCa;

/// base64("\0juliet\0r0m30myr0m30").
const PLAIN_PAYLOAD: &str = "AGp1bGlldAByMG0zMG15cjBtMzA=";

fn config(server: &FakeServer, ca: &TestCa, extra: &str) -> String {
    format!(
        "[listener]\nallow_missing_origin = true\n{extra}\n[[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\nca_file = \"{}\"\n",
        server.addr(),
        ca.ca_file().display()
    )
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xmpp-ws-gateway"))
}

#[test]
fn check_config_accepts_the_shipped_file_and_names_the_bad_key() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/gateway.toml");
    let output = binary().arg("--check-config").arg(shipped).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[limits]\nmax_element_bytes = 512\n").unwrap();
    let output = binary().arg("--check-config").arg(&bad).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("limits.max_element_bytes") && message.contains("10000"), "{message}");

    std::fs::write(&bad, "[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\ntls = \"plaintext\"\n")
        .unwrap();
    let output = binary().arg("--config").arg(&bad).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "an invalid config must stop the gateway at start");
    assert!(String::from_utf8_lossy(&output.stderr).contains("plaintext"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_live_sessions_and_exits_zero_within_the_grace_period() {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let mut gateway = GatewayProcess::start(&config(&server, &ca, "[shutdown]\ngrace_period_secs = 5\n"));
    let (mut client, mut conn) = connecting(&gateway.url, &server).await;
    conn.open_with_starttls(DOMAIN, FEATURES).await;
    assert!(client.recv_text().await.starts_with("<open "));
    client.recv_text().await;

    gateway.signal("TERM");
    let error = client.recv_text().await;
    assert!(error.contains("<system-shutdown"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1001);
    let (code, elapsed) = tokio::task::block_in_place(|| gateway.wait_exit(Duration::from_secs(10)));
    assert_eq!(code, Some(0), "log: {}", gateway.log_text());
    assert!(elapsed < Duration::from_secs(5), "exit took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_payload_never_appears_in_logs_even_at_trace() {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = GatewayProcess::start(&config(&server, &ca, "[log]\nlevel = \"trace,tungstenite=trace\"\n"));
    let (mut client, mut conn) = open_session(&gateway.url, &server, FEATURES).await;
    client
        .send(&format!(r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">{PLAIN_PAYLOAD}</auth>"#))
        .await;
    conn.read_until("</auth>").await;
    conn.write("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>").await;
    assert!(client.recv_text().await.contains("not-authorized"));
    client.send(CLOSE).await;
    conn.read_until("</stream:stream>").await;
    conn.write("</stream:stream>").await;
    client.recv_text().await;
    client.expect_close().await;
    gateway.wait_for_log("session ended", Duration::from_secs(5));
    let log = gateway.log_text();
    assert!(log.lines().count() > 10, "trace logging should be verbose: {log}");
    for secret in [PLAIN_PAYLOAD, "r0m30myr0m30", "AGp1bGll"] {
        let leaks: Vec<&str> = log.lines().filter(|line| line.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} leaked into the log: {leaks:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_limits_without_dropping_live_sessions() {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = GatewayProcess::start(&config(&server, &ca, ""));
    let (mut client, mut conn) = open_session(&gateway.url, &server, FEATURES).await;

    // New configuration: Origin now required from a listed page.
    std::fs::write(
        &gateway.config_path,
        config(&server, &ca, "").replace("allow_missing_origin = true", "allow_missing_origin = false"),
    )
    .unwrap();
    gateway.signal("HUP");
    gateway.wait_for_log("configuration reloaded", Duration::from_secs(5));
    let host = gateway.url.trim_start_matches("ws://").split('/').next().unwrap().to_string();
    let (status, _) =
        raw_http(&host, &upgrade_request(&host, "/xmpp-websocket", "Sec-WebSocket-Protocol: xmpp\r\n")).await;
    assert_eq!(status, 403, "the reloaded Origin rule applies to new sessions");

    // The live session still relays.
    client.send(r#"<presence xmlns="jabber:client"/>"#).await;
    conn.read_until("<presence").await;
    conn.write("<presence from='juliet@example.com/x'/>").await;
    assert!(client.recv_text().await.starts_with("<presence"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_client_is_logged_without_a_port_a_direct_one_with_its_port() {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = GatewayProcess::start(&config(&server, &ca, "trusted_proxies = [\"127.0.0.1\"]\n"));
    let unknown = OPEN.replace(DOMAIN, "unknown.example");
    let mut forwarded =
        RawWs::connect_with_headers(&gateway.url, "Sec-WebSocket-Protocol: xmpp\r\nX-Forwarded-For: 203.0.113.77\r\n")
            .await;
    forwarded.send_text(&unknown).await;
    forwarded.until_close().await;
    let line = gateway.wait_for_log("client=203.0.113.77", Duration::from_secs(5));
    assert!(line.contains("client=203.0.113.77}"), "a forwarded address has no port: {line}");
    let mut direct = RawWs::connect(&gateway.url).await;
    direct.send_text(&unknown).await;
    direct.until_close().await;
    let line = gateway.wait_for_log("client=127.0.0.1:", Duration::from_secs(5));
    assert!(line.contains("session ended"), "{line}");
}

/// The shipped configuration cut short before its `[[upstream]]` table, as a truncated copy or
/// an interrupted write would leave it.
fn truncated_shipped_config() -> String {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/gateway.toml")).unwrap();
    let cut = shipped.find("[[upstream]]").expect("the shipped file has an [[upstream]] table");
    shipped[..cut].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_serving_no_domain_is_refused_at_start_check_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    for (what, text) in [("empty", String::new()), ("truncated", truncated_shipped_config())] {
        std::fs::write(&path, &text).unwrap();
        for flag in ["--check-config", "--config"] {
            let output = binary().arg(flag).arg(&path).output().unwrap();
            let message = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{flag} with an {what} file: {message}");
            assert!(message.contains("serves no domain"), "{flag} with an {what} file: {message}");
        }
    }

    // A reload to a file that serves nothing is refused; the running configuration stays.
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = GatewayProcess::start(&config(&server, &ca, ""));
    std::fs::write(&gateway.config_path, truncated_shipped_config()).unwrap();
    gateway.signal("HUP");
    let line = gateway.wait_for_log("reload failed", Duration::from_secs(5));
    assert!(line.contains("serves no domain"), "{line}");
    let (mut client, mut conn) = connecting(&gateway.url, &server).await;
    conn.open_with_starttls(DOMAIN, FEATURES).await;
    assert!(client.recv_text().await.starts_with("<open "), "still serving {DOMAIN} after the refused reload");
}

#[test]
fn a_broken_reload_keeps_the_running_configuration() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca = TestCa::new();
    let server = rt.block_on(FakeServer::start(ca.leaf(&[DOMAIN])));
    let gateway = GatewayProcess::start(&config(&server, &ca, ""));
    std::fs::write(&gateway.config_path, "[limits]\nmax_element_bytes = 1\n").unwrap();
    gateway.signal("HUP");
    let line = gateway.wait_for_log("reload failed", Duration::from_secs(5));
    assert!(line.contains("limits.max_element_bytes"), "{line}");
    assert!(line.contains(&gateway.config_path.display().to_string()), "the file is named: {line}");
    let (status, _) = rt.block_on(raw_http(
        gateway.url.trim_start_matches("ws://").split('/').next().unwrap(),
        &upgrade_request("x", "/xmpp-websocket", "Sec-WebSocket-Protocol: xmpp\r\n"),
    ));
    assert_eq!(status, 101, "still serving with the old configuration");
}

#[test]
fn json_log_format_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "[log]\nformat = \"json\"\n[domains]\nallow = [\"example.com\"]\n").unwrap();
    let mut child = binary()
        .arg("--config")
        .arg(&config)
        .env("XMPPGW_LISTENER__ADDRESS", "127.0.0.1:0")
        .env("XMPPGW_ADMIN__ADDRESS", "127.0.0.1:0")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    // Other lines may come first (a warning about the descriptor limit, say): every one must be
    // JSON; the ready line is checked in detail.
    let line = loop {
        let line = receiver.recv_timeout(Duration::from_secs(20)).expect("a log line");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if event["fields"]["message"] == "websocket listener ready" {
            break line;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(event["level"], "INFO", "{line}");
    assert_eq!(event["fields"]["message"], "websocket listener ready", "{line}");
    assert!(event["fields"]["url"].as_str().unwrap().starts_with("ws://127.0.0.1:"), "{line}");
}
