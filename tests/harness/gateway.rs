//! An in-process gateway on 127.0.0.1:0 built from a TOML string, trusting only the test CA.

use std::sync::Arc;

use tokio::sync::oneshot;
use xmpp_ws_gateway::config::Config;
use xmpp_ws_gateway::control::Control;
use xmpp_ws_gateway::run::{build_gateway, Bound};
use xmpp_ws_gateway::session::Gateway;
use xmpp_ws_gateway::upstream::SystemRoots;

/// A running gateway; stops when dropped.
pub struct TestGateway {
    /// `ws://127.0.0.1:PORT/xmpp-websocket`.
    pub url: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin: Option<String>,
    /// The shared state (metrics, config).
    pub gateway: Arc<Gateway>,
    /// The control plane (drain, limits).
    pub control: Arc<Control>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestGateway {
    /// Starts a gateway from `toml`. The listener and admin addresses are forced to
    /// 127.0.0.1:0, and clients without an Origin header (like this harness) are accepted
    /// unless the TOML says otherwise.
    pub async fn start(toml: &str) -> TestGateway {
        let mut config = Config::from_toml(toml).expect("valid test config");
        config.listener.address = "127.0.0.1:0".parse().expect("an address");
        config.admin.address = "127.0.0.1:0".parse().expect("an address");
        if !toml.contains("allow_missing_origin") {
            config.listener.allow_missing_origin = true;
        }
        let gateway = build_gateway(config, &SystemRoots::empty()).expect("gateway state");
        let bound = Bound::bind(gateway.clone()).await.expect("bind");
        let url = bound.url();
        let admin = bound.admin_addr.map(|addr| format!("http://{addr}"));
        let control = bound.control().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(bound.serve(async move {
            let _ = stopped.await;
        }));
        TestGateway { url, admin, gateway, control, stop: Some(stop) }
    }

    /// A gateway whose only upstream is `domain` at `address` with STARTTLS and the test CA.
    pub async fn for_upstream(domain: &str, address: std::net::SocketAddr, ca_file: &std::path::Path) -> TestGateway {
        Self::start(&format!(
            "[[upstream]]\ndomain = \"{domain}\"\naddress = \"{address}\"\ntls = \"starttls\"\nca_file = \"{}\"\n",
            ca_file.display()
        ))
        .await
    }

    /// Waits (polling, up to 10 s) until `series` has `value` in the metrics; panics otherwise.
    pub async fn wait_metric(&self, series: &str, value: f64) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = self.metrics();
            let current = text
                .lines()
                .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok()))
                .unwrap_or(0.0);
            if current == value {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{series} stayed at {current}, expected {value}:\n{text}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The Prometheus text of this gateway's metrics.
    pub fn metrics(&self) -> String {
        self.gateway.metrics.render()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
