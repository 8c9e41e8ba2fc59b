//! Faults with real clients and servers, and what the client sees (spec/DECISIONS.md):
//! - the server killed mid-session: WebSocket close 1014, no `<close/>` (D5), and the client can
//!   log in again once the server is back;
//! - the DNS server down while a client connects: `<remote-connection-failed/>` with a `dns-*`
//!   class (D6), promptly, no hang.
//!
//! Each prints its counts and timings. Ignored by a bare `cargo test`: run scripts/test.sh.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::ejabberd::Ejabberd;
use support::{free_loopback_port, run_node, Gateway, NodeRun, DOMAIN};

/// Upper bound for one probe process (its own deadline is 15 s).
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

fn probe(mode: &str, url: &str, extra: &[(&str, String)]) -> NodeRun {
    let mut args =
        vec!["--mode".to_owned(), mode.to_owned(), "--url".into(), url.into(), "--domain".into(), DOMAIN.into()];
    for (k, v) in extra {
        args.push((*k).to_owned());
        args.push(v.clone());
    }
    run_node("fault-probe", &args, &[], PROBE_TIMEOUT)
}

#[test]
#[ignore = "end-to-end: needs ejabberd and node; run scripts/test.sh"]
fn fault_server_killed_mid_session_closes_1014_and_client_reconnects() {
    let mut ejabberd = Ejabberd::start();
    let alice = ejabberd.register("alice", &format!("pw-{:016x}", rand::random::<u64>()));
    let gateway = Gateway::start(&format!(
        "[listener]\naddress = \"127.0.0.1:0\"\npath = \"/xmpp-websocket\"\nallow_missing_origin = true\n\n\
         [admin]\naddress = \"127.0.0.1:0\"\n\n\
         [[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\ntls = \"starttls\"\nca_file = \"{}\"\n",
        ejabberd.c2s_addr(),
        ejabberd.ca_pem_path().display()
    ));
    let creds = [("--user", alice.user.clone()), ("--password", alice.password.clone())];
    let mut extra = creds.to_vec();
    extra.push(("--kill-pgid", ejabberd.pgid().unwrap().to_string()));
    let run = probe("server-kill", gateway.url(), &extra);
    let why = format!("{}\n--- gateway ---\n{}", run.describe(), support::tail(&gateway.log(), 40));
    println!(
        "server killed mid-session: close code {} reason {:?} after {} ms; <close/> seen: {}; stream error seen: {}",
        run.at("/close_code"),
        run.at("/close_reason"),
        run.at("/close_ms_after_kill"),
        run.at("/close_element_seen"),
        run.at("/stream_error_seen")
    );
    assert_eq!(run.at("/ok"), true, "{why}");
    assert_eq!(run.at("/close_code"), 1014, "D5: WebSocket close 1014\n{why}");
    assert_eq!(run.at("/close_element_seen"), false, "D5: no <close/> after an abrupt upstream loss\n{why}");
    assert!(run.at("/close_ms_after_kill").as_f64().unwrap() < 5000.0, "{why}");

    // The server comes back (same ports and spool) and a client logs in again through the same
    // gateway. A fresh account: SIGKILL can cost ejabberd (mnesia) the account registered just
    // before the kill, which is the server's business, not the gateway's.
    ejabberd.restart();
    let carol = ejabberd.register("carol", &format!("pw-{:016x}", rand::random::<u64>()));
    let again =
        probe("login", gateway.url(), &[("--user", carol.user.clone()), ("--password", carol.password.clone())]);
    println!("after the server restarted: login ok {}, clean logout {}", again.at("/ok"), again.at("/logout/clean"));
    assert_eq!(again.at("/ok"), true, "{}\n{}", again.describe(), ejabberd.diagnostics());
}

#[test]
#[ignore = "end-to-end: needs node; run scripts/test.sh"]
fn fault_dns_down_fails_promptly_with_remote_connection_failed() {
    // A nameserver address where nothing listens (UDP and TCP both refused).
    let dead = format!("127.0.0.1:{}", free_loopback_port());
    let gateway = Gateway::start(&format!(
        "[listener]\naddress = \"127.0.0.1:0\"\npath = \"/xmpp-websocket\"\nallow_missing_origin = true\n\n\
         [admin]\naddress = \"127.0.0.1:0\"\n\n\
         [domains]\nallow = [\"{DOMAIN}\"]\n\n\
         [dns]\nnameservers = [\"{dead}\"]\ntimeout_ms = 500\nattempts = 1\n"
    ));
    // Several clients at once, as when a DNS outage meets a wave of reconnects.
    let runs: Vec<NodeRun> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(|| probe("open", gateway.url(), &[]))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        let why = format!("{}\n--- gateway ---\n{}", run.describe(), support::tail(&gateway.log(), 40));
        let messages: Vec<String> =
            run.at("/messages").as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect();
        let reason = run.at("/close_reason").as_str().unwrap_or("").to_owned();
        println!(
            "DNS down: close {} reason {reason:?} after {} ms; messages: {messages:?}",
            run.at("/close_code"),
            run.at("/elapsed_ms")
        );
        assert_eq!(run.at("/ok"), true, "{why}");
        assert!(messages.iter().any(|m| m.contains("<remote-connection-failed")), "{why}");
        assert!(messages.last().is_some_and(|m| m.starts_with("<close")), "{why}");
        assert_eq!(run.at("/close_code"), 1000, "D6\n{why}");
        assert!(reason.starts_with("dns-"), "D6: the close reason names a dns-* class, got {reason:?}\n{why}");
        assert!(
            messages.iter().any(|m| m.contains(&format!(">{reason}</text>"))),
            "the stream error's text carries the same class\n{why}"
        );
        assert!(run.at("/elapsed_ms").as_f64().unwrap() < 5000.0, "no hang\n{why}");
    }
}
