//! The configuration's parsing and checks, through `Config::from_toml` and `Config::load`.

use std::collections::HashMap;

use super::*;

fn texts<T: std::fmt::Display>(values: &[T]) -> Vec<String> {
    values.iter().map(T::to_string).collect()
}

fn err(text: &str) -> String {
    Config::from_toml(text).expect_err("config should be refused").to_string()
}

/// The smallest valid configuration: one domain served through DNS, everything else default.
const MINIMAL: &str = "[domains]\nallow = [\"example.com\"]\n";

#[test]
fn defaults_are_valid() {
    let config = Config::from_toml(MINIMAL).expect("defaults are valid");
    assert_eq!(config.listener.path.as_str(), "/xmpp-websocket");
    assert_eq!(config.limits.max_element_bytes, 262_144);
    assert_eq!(config.connect.attempt_timeout, Duration::from_secs(10));
    assert_eq!(config.connect.overall_timeout, Duration::from_secs(30));
    assert_eq!(config.limits.handshake_timeout, Duration::from_secs(10));
    assert_eq!(config.limits.max_header_bytes, 16_384);
    assert!(config.upstream.is_empty());
}

#[test]
fn a_configuration_serving_no_domain_is_refused() {
    for text in ["", "[listener]\naddress = \"127.0.0.1:5290\"\n", "[domains]\nallow = []\n"] {
        let message = err(text);
        assert!(message.starts_with("upstream:") && message.contains("serves no domain"), "{message}");
    }
    assert!(Config::from_toml("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\n").is_ok());
}

#[test]
fn an_upstream_may_set_its_own_element_limit() {
    let config = Config::from_toml(
        "[limits]\nmax_element_bytes = 100000\n\
         [[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\nmax_element_bytes = 65535\n\
         [[upstream]]\ndomain = \"b.example\"\naddress = \"127.0.0.1:5223\"\n\
         [[upstream]]\ndomain = \"c.example\"\naddress = \"127.0.0.1:5224\"\nmax_element_bytes = 300000\n",
    )
    .unwrap();
    assert_eq!(config.upstream[0].element_limit(100_000), 65_535);
    assert_eq!(config.upstream[1].element_limit(100_000), 100_000);
    assert_eq!(config.largest_element_limit(), 300_000);
    let message = err("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\nmax_element_bytes = 9999\n");
    assert!(message.starts_with("upstream[0].max_element_bytes:") && message.contains("10000"), "{message}");
}

#[test]
fn pre_upgrade_limits_are_checked() {
    let with = |line: &str| format!("{MINIMAL}[limits]\n{line}\n");
    assert!(err(&with("max_header_bytes = 4096")).starts_with("limits.max_header_bytes:"));
    assert!(err(&with("handshake_timeout_secs = 0")).starts_with("limits.handshake_timeout_secs:"));
    assert!(err(&with("max_pending_connections = 0")).starts_with("limits.max_pending_connections:"));
    assert!(err(&with("max_pending_connections_per_address = 0"))
        .starts_with("limits.max_pending_connections_per_address:"));
}

#[test]
fn listener_path_may_be_the_root_but_not_malformed() {
    for path in ["/", "/xmpp-websocket", "/chat/ws", "/ws.v1~x"] {
        let config = Config::from_toml(&format!("{MINIMAL}[listener]\npath = {path:?}\n"));
        assert_eq!(config.expect("path accepted").listener.path.as_str(), path);
    }
    for path in ["", "ws", "/ws/", "//", "/a//b", "/a/../b", "/a b", "/{x}", "/%41", "/.well-known/host-meta"] {
        let message = err(&format!("{MINIMAL}[listener]\npath = {path:?}\n"));
        assert!(message.starts_with("listener.path:"), "{path:?}: {message}");
    }
}

#[test]
fn list_keys_can_be_set_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, format!("{MINIMAL}[listener]\nallowed_origins = [\"https://old.example\"]\n")).unwrap();
    let env = HashMap::from([
        ("XMPPGW_LISTENER__ALLOWED_ORIGINS".to_string(), "http://127.0.0.1:8290,http://localhost:8290".to_string()),
        ("XMPPGW_LISTENER__TRUSTED_PROXIES".to_string(), "127.0.0.1".to_string()),
        ("XMPPGW_DNS__NAMESERVERS".to_string(), String::new()),
    ]);
    let config = Config::load(&path, env).unwrap();
    assert_eq!(texts(&config.listener.allowed_origins), ["http://127.0.0.1:8290", "http://localhost:8290"]);
    assert_eq!(texts(&config.listener.trusted_proxies), ["127.0.0.1/32"]);
    assert!(config.dns.nameservers.is_empty());
    // Each item is still parsed.
    let env = HashMap::from([("XMPPGW_LISTENER__ALLOWED_ORIGINS".to_string(), "chat.example".to_string())]);
    let message = Config::load(&path, env).unwrap_err().to_string();
    assert!(message.starts_with("listener.allowed_origins[0]:"), "{message}");
}

#[test]
fn upstream_tls_defaults_to_starttls() {
    let config = Config::from_toml("[[upstream]]\ndomain = \"example.com\"\naddress = \"127.0.0.1:5222\"\n").unwrap();
    assert_eq!(config.upstream[0].tls, UpstreamTls::Starttls);
}

#[test]
fn element_limit_below_rfc_minimum_names_the_key() {
    let message = err("[limits]\nmax_element_bytes = 9999\n");
    assert!(message.starts_with("limits.max_element_bytes:"), "{message}");
    assert!(message.contains("10000"), "{message}");
}

#[test]
fn attribute_and_declaration_caps_default_and_minimum() {
    // A served domain, so that the config is valid whatever else loading requires.
    let upstream = "[[upstream]]\ndomain = \"example.com\"\naddress = \"127.0.0.1:5222\"\n";
    let config = Config::from_toml(upstream).expect("valid");
    assert_eq!(config.limits.max_attributes_per_element, 64);
    assert_eq!(config.limits.max_namespace_declarations_per_element, 32);
    let message = err(&format!("[limits]\nmax_attributes_per_element = 15\n{upstream}"));
    assert!(message.starts_with("limits.max_attributes_per_element:") && message.contains("16"), "{message}");
    let message = err(&format!("[limits]\nmax_namespace_declarations_per_element = 3\n{upstream}"));
    assert!(message.starts_with("limits.max_namespace_declarations_per_element:"), "{message}");
    let config = Config::from_toml(&format!(
        "[limits]\nmax_attributes_per_element = 16\nmax_namespace_declarations_per_element = 4\n{upstream}"
    ))
    .expect("the minimum is valid");
    assert_eq!(config.limits.max_attributes_per_element, 16);
}

#[test]
fn bad_listener_address_names_the_key() {
    let message = err("[listener]\naddress = \"localhost\"\n");
    assert!(message.starts_with("listener.address:"), "{message}");
}

#[test]
fn unknown_tls_mode_is_refused() {
    let message = err("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\ntls = \"maybe\"\n");
    assert!(message.contains("maybe"), "{message}");
}

#[test]
fn unknown_key_is_refused() {
    let message = err("[limits]\nmax_elemnt_bytes = 20000\n");
    assert!(message.contains("max_elemnt_bytes"), "{message}");
}

#[test]
fn duplicate_domain_is_refused() {
    let message = err("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\n\
         [[upstream]]\ndomain = \"A.example.\"\naddress = \"127.0.0.1:5223\"\n");
    assert!(message.starts_with("upstream[1].domain:"), "{message}");
}

#[test]
fn missing_ca_file_is_refused() {
    let message = err("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\n\
         ca_file = \"/nonexistent/ca.pem\"\n");
    assert!(message.starts_with("upstream[0].ca_file:"), "{message}");
}

#[test]
fn upstream_address_needs_a_port() {
    let message = err("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1\"\n");
    assert!(message.starts_with("upstream[0].address:"), "{message}");
}

#[test]
fn operations_settings_are_checked() {
    assert!(err("[listener]\ntrusted_proxies = [\"10.0.0.0/33\"]\n").starts_with("listener.trusted_proxies[0]:"));
    assert!(err("[listener]\nallowed_origins = [\"chat.example.com\"]\n").starts_with("listener.allowed_origins[0]:"));
    assert!(err("[shutdown]\nredirect_uri = \"ws://gw2.example.net/x\"\n").starts_with("shutdown.redirect_uri:"));
    assert!(err("[host_meta]\nwebsocket_url = \"http://x\"\n").starts_with("host_meta.websocket_url:"));
    assert!(err("[listener]\ntls_cert_file = \"/etc/hostname\"\n").starts_with("listener.tls_key_file:"));
    assert!(err("[limits]\nmax_sessions = 0\n").starts_with("limits.max_sessions:"));
    assert!(err("[admin]\naddress = \"nowhere\"\n").starts_with("admin.address:"));
    let config = Config::from_toml(
        &format!("{MINIMAL}[listener]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\nallowed_origins = [\"https://chat.example.com\"]\n"),
    )
    .unwrap();
    assert_eq!(config.listener.trusted_proxies.len(), 2);
}

#[test]
fn discovery_defaults() {
    let config = Config::from_toml("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\n").unwrap();
    assert!(config.domains.allow.is_empty());
    assert!(config.dns.nameservers.is_empty());
    assert_eq!(config.dns.prefer, PreferTls::Mixed);
    assert_eq!(config.connect.happy_eyeballs_delay, Duration::from_millis(250));
}

#[test]
fn discovery_settings_parse() {
    let config = Config::from_toml(
        "[domains]\nallow = [\"example.com\", \"*.chat.example\"]\nspecial_addresses = [\"example.com\"]\n\
         [dns]\nnameservers = [\"127.0.0.1:5353\", \"[::1]:53\"]\nprefer = \"direct-tls\"\n",
    )
    .unwrap();
    assert_eq!(config.domains.allow.len(), 2);
    assert_eq!(config.dns.prefer, PreferTls::DirectTls);
}

#[test]
fn bad_discovery_settings_name_the_key() {
    assert!(err("[domains]\nallow = [\"*\"]\n").starts_with("domains.allow[0]:"));
    assert!(err("[domains]\nallow = [\"10.0.0.1\"]\n").starts_with("domains.allow[0]:"));
    assert!(err("[domains]\nspecial_addresses = [\"a.example\"]\n").starts_with("domains.special_addresses[0]:"));
    assert!(err("[dns]\nnameservers = [\"localhost\"]\n").starts_with("dns.nameservers[0]:"));
    assert!(err("[dns]\nprefer = \"xmpps\"\n").contains("xmpps"));
    assert!(err("[connect]\nhappy_eyeballs_delay_ms = 0\n").starts_with("connect.happy_eyeballs_delay_ms:"));
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, format!("{MINIMAL}[listener]\naddress = \"127.0.0.1:5280\"\n")).unwrap();
    let env = HashMap::from([
        ("XMPPGW_LISTENER__ADDRESS".to_string(), "127.0.0.1:6000".to_string()),
        ("XMPPGW_LIMITS__OPEN_TIMEOUT_SECS".to_string(), "3".to_string()),
        ("UNRELATED".to_string(), "x".to_string()),
    ]);
    let config = Config::load(&path, env).unwrap();
    assert_eq!(config.listener.address.to_string(), "127.0.0.1:6000");
    assert_eq!(config.limits.open_timeout, Duration::from_secs(3));
}

#[test]
fn every_refused_value_is_named_by_its_key() {
    for (text, key) in [
        ("[limits]\nmax_sessions = \"many\"\n", "limits.max_sessions:"),
        ("[limits]\nopen_timeout_secs = 0\n", "limits.open_timeout_secs:"),
        ("[limits]\nmax_header_bytes = 2000000\n", "limits.max_header_bytes:"),
        ("[dns]\ntimeout_ms = 0\n", "dns.timeout_ms:"),
        ("[log]\nlevel = \"info,[\"\n", "log.level:"),
        ("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\n[[upstream]]\ndomain = \"b.example\"\naddress = \"b.example\"\n", "upstream[1].address:"),
        ("[host_meta]\ndomains = [\"a.example\", \"10.0.0.1\"]\n", "host_meta.domains[1]:"),
        ("[host_meta]\nbosh_url = \"http://a.example/http-bind\"\n", "host_meta.bosh_url:"),
        ("[bosh]\nmax_hold = 11\n", "bosh.max_hold:"),
        ("[bosh]\npath = \"/xmpp-websocket\"\n", "bosh.path:"),
        ("[bosh]\npath = \"/.well-known/host-meta\"\n", "bosh.path:"),
    ] {
        let message = err(&format!("{MINIMAL}{text}"));
        assert!(message.starts_with(key), "{text:?} gave {message:?}");
    }
}

#[test]
fn websocket_read_buffer_defaults_to_one_kib_within_its_bounds() {
    let upstream = "[[upstream]]\ndomain = \"example.com\"\naddress = \"127.0.0.1:5222\"\n";
    let config = Config::from_toml(upstream).expect("valid");
    assert_eq!(config.limits.websocket_read_buffer_bytes, 1024);
    for refused in [255, 131_073] {
        let message = err(&format!("[limits]\nwebsocket_read_buffer_bytes = {refused}\n{upstream}"));
        assert!(message.starts_with("limits.websocket_read_buffer_bytes:"), "{message}");
    }
    let config =
        Config::from_toml(&format!("[limits]\nwebsocket_read_buffer_bytes = 4096\n{upstream}")).expect("in bounds");
    assert_eq!(config.limits.websocket_read_buffer_bytes, 4096);
}

/// One URL type serves both schemes: each accepts only its own secure scheme with something
/// after it, says which scheme it wanted, and gives back the URL as written.
#[test]
fn secure_urls_accept_only_their_own_scheme() {
    let wss: Result<WssUrl, _> = "wss://gw.example/xmpp".parse();
    assert_eq!(wss.map(|url| url.to_string()), Ok("wss://gw.example/xmpp".to_string()));
    let https: Result<HttpsUrl, _> = "https://gw.example/http-bind".parse();
    assert_eq!(https.map(|url| url.as_str().to_string()), Ok("https://gw.example/http-bind".to_string()));
    for (for_wss, for_https) in [
        ("https://gw.example/x", "wss://gw.example/x"),
        ("ws://gw.example/x", "http://gw.example/x"),
        ("wss://", "https://"),
    ] {
        let refused = for_wss.parse::<WssUrl>().expect_err(for_wss);
        assert!(refused.contains("is not a wss:// URL"), "{refused}");
        let refused = for_https.parse::<HttpsUrl>().expect_err(for_https);
        assert!(refused.contains("is not an https:// URL"), "{refused}");
    }
}
