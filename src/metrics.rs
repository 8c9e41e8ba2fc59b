//! Every Prometheus metric of the gateway, held in one struct registered on an explicit registry.
//!
//! Names are a contract (`xmppgw_` prefix, see DESIGN.md) and every label set is bounded: no
//! per-user, per-domain or per-address labels. On Linux the registry also holds the standard
//! unprefixed `process_*` metrics every Prometheus dashboard expects (resident and virtual
//! memory, open and maximum file descriptors, CPU seconds, start time, threads), read from
//! `/proc/self` at each scrape. Nothing global: `main` builds one [`Metrics`] and passes it
//! down; tests build their own.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Direction label value for client → server traffic.
pub const TO_SERVER: &str = "to_server";
/// Direction label value for server → client traffic.
pub const TO_CLIENT: &str = "to_client";

/// The gateway's metrics: a handle that sessions and connectors clone (one reference count,
/// not one per metric).
#[derive(Clone)]
pub struct Metrics(Arc<MetricSet>);

/// Every metric of the gateway, reached through [`Metrics`].
pub struct MetricSet {
    registry: Registry,
    /// `xmppgw_sessions_active`: sessions currently open, WebSocket and BOSH.
    pub sessions_active: IntGauge,
    /// `xmppgw_sessions_ended_total{outcome}`.
    pub sessions_ended: IntCounterVec,
    /// `xmppgw_websocket_handshakes_rejected_total{reason}`.
    pub handshakes_rejected: IntCounterVec,
    /// `xmppgw_websocket_upgrades_total{http_version}`: handshakes accepted, by HTTP version
    /// (`1.1`: Upgrade, RFC 6455; `2`: extended CONNECT, RFC 8441).
    pub websocket_upgrades: IntCounterVec,
    /// `xmppgw_connections_pending`: public connections accepted and not yet upgraded.
    pub connections_pending: IntGauge,
    /// `xmppgw_connections_dropped_total{reason}`: public connections closed before an upgrade.
    pub connections_dropped: IntCounterVec,
    /// `xmppgw_upstream_connect_duration_seconds{phase}` with phase dns, tcp, tls, stream.
    pub connect_duration: HistogramVec,
    /// `xmppgw_upstream_connect_failures_total{class}` (the D6 classes).
    pub connect_failures: IntCounterVec,
    /// `xmppgw_stanzas_total{direction}`: top-level elements relayed.
    pub stanzas: IntCounterVec,
    /// `xmppgw_bytes_total{direction}`: bytes of relayed elements.
    pub bytes: IntCounterVec,
    /// `xmppgw_stream_errors_total{condition,side}`; side is client, server or gateway.
    pub stream_errors: IntCounterVec,
    /// `xmppgw_client_elements_refused_total{reason}`.
    pub client_refused: IntCounterVec,
    /// `xmppgw_bosh_sessions_active`: the BOSH sessions among `sessions_active`.
    pub bosh_sessions_active: IntGauge,
    /// `xmppgw_bosh_requests_total{result}`: BOSH requests by how they were answered
    /// (`answered`, or a terminal condition, or why they were refused).
    pub bosh_requests: IntCounterVec,
    /// `xmppgw_dns_lookups_total{result}`.
    pub dns_lookups: IntCounterVec,
    /// `xmppgw_build_info{version}`, always 1.
    pub build_info: IntGaugeVec,
    /// The `stanzas`/`bytes` children of each direction, looked up once, at the first element
    /// relayed that way (so the exposition is unchanged: a series appears when first counted):
    /// [`Metrics::relayed`] runs for every relayed element and the label lookup (hashing, a
    /// lock) showed in profiles. Indexed by [`Direction`].
    relayed: [OnceLock<(IntCounter, IntCounter)>; 2],
}

/// Which way a relayed element went: the `direction` label of `xmppgw_stanzas_total` and
/// `xmppgw_bytes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the server ([`TO_SERVER`]).
    ToServer = 0,
    /// From the server to the client ([`TO_CLIENT`]).
    ToClient = 1,
}

impl Direction {
    /// Both, in the order of their discriminants.
    pub const ALL: [Direction; 2] = [Direction::ToServer, Direction::ToClient];

    /// The `direction` label value.
    pub fn label(self) -> &'static str {
        match self {
            Direction::ToServer => TO_SERVER,
            Direction::ToClient => TO_CLIENT,
        }
    }
}

impl std::ops::Deref for Metrics {
    type Target = MetricSet;

    fn deref(&self) -> &MetricSet {
        &self.0
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    registry.register(Box::new(metric.clone())).expect("metric registered once");
    metric
}

impl Metrics {
    /// Creates every metric and registers it on a fresh registry.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let sessions_active = IntGauge::new("xmppgw_sessions_active", "Sessions currently open (WebSocket and BOSH)")
            .expect("static metric definition");
        registry.register(Box::new(sessions_active.clone())).expect("metric registered once");
        let bosh_sessions_active = IntGauge::new(
            "xmppgw_bosh_sessions_active",
            "BOSH sessions currently open (also in xmppgw_sessions_active)",
        )
        .expect("static metric definition");
        registry.register(Box::new(bosh_sessions_active.clone())).expect("metric registered once");
        let connections_pending =
            IntGauge::new("xmppgw_connections_pending", "Public connections accepted and not yet upgraded")
                .expect("static metric definition");
        registry.register(Box::new(connections_pending.clone())).expect("metric registered once");
        let connect_duration = HistogramVec::new(
            HistogramOpts::new(
                "xmppgw_upstream_connect_duration_seconds",
                "Duration of each phase of opening an upstream connection",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["phase"],
        )
        .expect("static metric definition");
        registry.register(Box::new(connect_duration.clone())).expect("metric registered once");
        let build_info = IntGaugeVec::new(Opts::new("xmppgw_build_info", "Gateway build information"), &["version"])
            .expect("static metric definition");
        registry.register(Box::new(build_info.clone())).expect("metric registered once");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process collector registered once");
        Metrics(Arc::new(MetricSet {
            sessions_active,
            sessions_ended: counter(
                &registry,
                "xmppgw_sessions_ended_total",
                "Sessions ended, by outcome",
                &["outcome"],
            ),
            handshakes_rejected: counter(
                &registry,
                "xmppgw_websocket_handshakes_rejected_total",
                "WebSocket upgrade requests refused, by reason",
                &["reason"],
            ),
            websocket_upgrades: counter(
                &registry,
                "xmppgw_websocket_upgrades_total",
                "WebSocket handshakes accepted, by HTTP version",
                &["http_version"],
            ),
            connections_pending,
            connections_dropped: counter(
                &registry,
                "xmppgw_connections_dropped_total",
                "Public connections closed by the gateway before a WebSocket upgrade, by reason",
                &["reason"],
            ),
            connect_duration,
            connect_failures: counter(
                &registry,
                "xmppgw_upstream_connect_failures_total",
                "Failures to reach or secure the upstream server, by class",
                &["class"],
            ),
            stanzas: counter(
                &registry,
                "xmppgw_stanzas_total",
                "Top-level elements relayed, by direction",
                &["direction"],
            ),
            bytes: counter(&registry, "xmppgw_bytes_total", "Bytes of relayed elements, by direction", &["direction"]),
            stream_errors: counter(
                &registry,
                "xmppgw_stream_errors_total",
                "Stream errors, by condition and by the side that sent them",
                &["condition", "side"],
            ),
            client_refused: counter(
                &registry,
                "xmppgw_client_elements_refused_total",
                "Client messages refused by the validator, by reason",
                &["reason"],
            ),
            bosh_sessions_active,
            bosh_requests: counter(
                &registry,
                "xmppgw_bosh_requests_total",
                "BOSH requests, by how they were answered",
                &["result"],
            ),
            dns_lookups: counter(&registry, "xmppgw_dns_lookups_total", "DNS lookups, by result", &["result"]),
            build_info,
            registry,
            relayed: [OnceLock::new(), OnceLock::new()],
        }))
    }

    /// Records one phase of an upstream connection setup.
    pub fn observe_connect_phase(&self, phase: &str, elapsed: Duration) {
        self.connect_duration.with_label_values(&[phase]).observe(elapsed.as_secs_f64());
    }

    /// Records `elements` relayed elements of `bytes` bytes in all in `direction`.
    pub fn relayed(&self, direction: Direction, elements: u64, bytes: u64) {
        let (stanzas, byte_count) = self.relayed[direction as usize].get_or_init(|| {
            (self.stanzas.with_label_values(&[direction.label()]), self.bytes.with_label_values(&[direction.label()]))
        });
        stanzas.inc_by(elements);
        byte_count.inc_by(bytes);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_contains_the_contract_names() {
        let metrics = Metrics::new();
        metrics.relayed(Direction::ToClient, 1, 42);
        metrics.observe_connect_phase("tcp", Duration::from_millis(3));
        metrics.sessions_ended.with_label_values(&["clean"]).inc();
        let text = metrics.render();
        assert!(text.contains("xmppgw_stanzas_total{direction=\"to_client\"} 1"), "{text}");
        assert!(text.contains("xmppgw_bytes_total{direction=\"to_client\"} 42"), "{text}");
        assert!(text.contains("xmppgw_upstream_connect_duration_seconds_count{phase=\"tcp\"} 1"), "{text}");
        assert!(text.contains("xmppgw_build_info{version=\""), "{text}");
        assert!(text.contains("xmppgw_sessions_active 0"), "{text}");
    }

    /// The process metrics describe this process: its descriptor limit is the one
    /// `/proc/self/limits` shows, and it holds at least the descriptors it has opened.
    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_describe_this_process() {
        let value = |text: &str, name: &str| -> f64 {
            let line = text
                .lines()
                .find(|line| line.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
            line[name.len() + 1..].parse().expect("a number")
        };
        let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
        let soft_nofile: f64 = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .and_then(|line| line.split_whitespace().nth(3))
            .and_then(|soft| soft.parse().ok())
            .expect("soft open-files limit");
        let held: Vec<std::fs::File> = (0..20).map(|_| std::fs::File::open("/proc/self/limits").unwrap()).collect();
        let text = Metrics::new().render();
        assert_eq!(value(&text, "process_max_fds"), soft_nofile);
        assert!(value(&text, "process_open_fds") >= held.len() as f64, "{text}");
        assert!(value(&text, "process_resident_memory_bytes") > 1e6, "{text}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let start = value(&text, "process_start_time_seconds");
        assert!(start <= now + 1.0 && start > now - 86_400.0, "start {start}, now {now}");
        assert!(text.contains("# TYPE process_cpu_seconds_total counter"), "{text}");
    }
}
