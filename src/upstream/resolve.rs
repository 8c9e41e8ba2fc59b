//! Finding a domain's server in DNS (RFC 6120 §3.2, RFC 2782, XEP-0368).
//!
//! Two halves:
//! - Pure decisions, unit-tested with literal records: [`order_rfc2782`] (priority, then weighted
//!   random with the weight-0 rule, over an injected RNG) and [`plan`] (mixing `_xmpp-client`
//!   and `_xmpps-client` per D11, the "." rules of RFC 2782 and XEP-0368, and when the A/AAAA
//!   fallback applies).
//! - [`DnsResolver`], a thin wrapper over hickory-resolver: both SRV queries at once, address
//!   lookups, answers cached by TTL (negative ones too), each lookup counted in
//!   `xmppgw_dns_lookups_total{result}`.
//!
//! This module never connects and never applies the address guard (see [`super::guard`]).

use std::net::IpAddr;
use std::time::Instant;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};
use rand::Rng;

use crate::config::{DnsConfig, PreferTls};
use crate::metrics::Metrics;

use super::failure::DnsFailure;

/// Port of the A/AAAA fallback (RFC 6120 §3.2.2).
pub const FALLBACK_PORT: u16 = 5222;

/// How a route is secured: the kind of SRV record it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTls {
    /// `_xmpp-client` or the fallback: plain TCP, then STARTTLS (never direct TLS).
    StartTls,
    /// `_xmpps-client`: TLS from the first byte, SNI = the domain, ALPN `xmpp-client`.
    Direct,
}

/// One SRV record as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Relative chance within a priority.
    pub weight: u16,
    /// TCP port.
    pub port: u16,
    /// Target host without the trailing dot; `""` for the root target ".".
    pub target: String,
}

impl SrvRecord {
    /// Whether the target is "." ("decidedly not available", RFC 2782).
    pub fn is_root(&self) -> bool {
        self.target.is_empty()
    }
}

/// The failure a hickory error stands for.
fn dns_failure(error: &ResolveError) -> DnsFailure {
    let Some(proto) = error.proto() else { return DnsFailure::Other };
    match proto.kind() {
        ProtoErrorKind::NoRecordsFound { response_code: ResponseCode::NXDomain, .. } => DnsFailure::NxDomain,
        ProtoErrorKind::NoRecordsFound { response_code: ResponseCode::NoError, .. } => DnsFailure::NoData,
        ProtoErrorKind::NoRecordsFound { .. } => DnsFailure::ServFail,
        ProtoErrorKind::Timeout => DnsFailure::Timeout,
        _ => DnsFailure::Other,
    }
}

/// The answer to one SRV query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrvAnswer {
    /// Records (possibly a lone "." record).
    Records(Vec<SrvRecord>),
    /// No records: the query failed or the name has none.
    Failed(DnsFailure),
}

/// One place to try: a host name (or IP literal) and port, and how to secure it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Host to resolve (SRV target, or the domain itself for the fallback).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// STARTTLS or direct TLS.
    pub tls: RouteTls,
}

/// Why the SRV answers leave nothing to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanError {
    /// SRV records said the service is decidedly not available (a lone "."), and XEP-0368
    /// forbids the A/AAAA fallback.
    DecidedlyUnavailable,
}

/// An item with an SRV priority and weight, for [`order_rfc2782`].
pub trait Weighted {
    /// SRV priority (lower first).
    fn priority(&self) -> u16;
    /// SRV weight.
    fn weight(&self) -> u16;
}

impl Weighted for SrvRecord {
    fn priority(&self) -> u16 {
        self.priority
    }
    fn weight(&self) -> u16 {
        self.weight
    }
}

impl<T: Weighted> Weighted for (T, RouteTls) {
    fn priority(&self) -> u16 {
        self.0.priority()
    }
    fn weight(&self) -> u16 {
        self.0.weight()
    }
}

/// Orders records per RFC 2782: ascending priority; within a priority, repeatedly put the
/// weight-0 records first, draw `r` uniformly in `[0, sum of weights]`, and take the first record
/// whose running sum is at least `r` (CONFORMANCE DNS-2, DNS-3). Pure: the randomness comes
/// from `rng`.
pub fn order_rfc2782<T: Weighted, R: Rng + ?Sized>(mut records: Vec<T>, rng: &mut R) -> Vec<T> {
    // Stable sort by priority; weight-0 records first inside each priority.
    records.sort_by_key(|record| (record.priority(), record.weight() != 0));
    let mut ordered = Vec::with_capacity(records.len());
    let mut rest = records;
    while !rest.is_empty() {
        let priority = rest[0].priority();
        let group_len = rest.iter().take_while(|record| record.priority() == priority).count();
        let mut group: Vec<T> = rest.drain(..group_len).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|record| u32::from(record.weight())).sum();
            let draw = rng.random_range(0..=total);
            let mut running = 0u32;
            let mut chosen = group.len() - 1;
            for (index, record) in group.iter().enumerate() {
                running += u32::from(record.weight());
                if running >= draw {
                    chosen = index;
                    break;
                }
            }
            ordered.push(group.remove(chosen));
        }
    }
    ordered
}

/// Decides what to try for `domain` from the two SRV answers (pure):
/// - records of both kinds are ordered together (D11, `prefer = "mixed"`) or one kind before
///   the other; "." targets are dropped;
/// - a lone "." for `_xmpp-client` aborts that service; a lone "." for `_xmpps-client` means
///   "use `_xmpp-client`"; either way, once any SRV record was seen, there is no A/AAAA fallback
///   (RFC 6120 §3.2.1 steps 3 and 8, XEP-0368);
/// - no SRV answer at all (NXDOMAIN, NODATA, SERVFAIL, timeout for both) → the domain itself on
///   port 5222 with STARTTLS (RFC 6120 §3.2.2).
pub fn plan<R: Rng + ?Sized>(
    domain: &str,
    xmpp: &SrvAnswer,
    xmpps: &SrvAnswer,
    prefer: PreferTls,
    rng: &mut R,
) -> Result<Vec<Route>, PlanError> {
    let usable = |answer: &SrvAnswer, tls: RouteTls| -> Vec<(SrvRecord, RouteTls)> {
        match answer {
            SrvAnswer::Records(records) => {
                records.iter().filter(|record| !record.is_root()).map(|record| (record.clone(), tls)).collect()
            }
            SrvAnswer::Failed(_) => Vec::new(),
        }
    };
    let starttls = usable(xmpp, RouteTls::StartTls);
    let direct = usable(xmpps, RouteTls::Direct);
    let any_srv = matches!(xmpp, SrvAnswer::Records(_)) || matches!(xmpps, SrvAnswer::Records(_));
    if starttls.is_empty() && direct.is_empty() {
        if any_srv {
            return Err(PlanError::DecidedlyUnavailable);
        }
        return Ok(vec![Route { host: domain.to_string(), port: FALLBACK_PORT, tls: RouteTls::StartTls }]);
    }
    let ordered = match prefer {
        PreferTls::Mixed => order_rfc2782(starttls.into_iter().chain(direct).collect(), rng),
        PreferTls::DirectTls => {
            let mut first = order_rfc2782(direct, rng);
            first.extend(order_rfc2782(starttls, rng));
            first
        }
        PreferTls::Starttls => {
            let mut first = order_rfc2782(starttls, rng);
            first.extend(order_rfc2782(direct, rng));
            first
        }
    };
    Ok(ordered.into_iter().map(|(record, tls)| Route { host: record.target, port: record.port, tls }).collect())
}

/// The gateway's DNS resolver: hickory with its TTL cache, configured from `[dns]`.
#[derive(Clone)]
pub struct DnsResolver {
    inner: TokioResolver,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver").field("nameservers", &self.inner.config().name_servers().len()).finish()
    }
}

impl DnsResolver {
    /// The system's resolver configuration (`/etc/resolv.conf`), or the nameservers of
    /// `[dns] nameservers` (each over UDP and TCP), with the timeouts and cache size of `dns`.
    pub fn from_config(dns: &DnsConfig) -> DnsResolver {
        let provider = TokioConnectionProvider::default();
        let mut builder = if dns.nameservers.is_empty() {
            match TokioResolver::builder(provider.clone()) {
                Ok(builder) => builder,
                Err(error) => {
                    // Static upstreams need no DNS: start anyway; discovered domains then fail
                    // with `dns-failed` and this warning says why.
                    tracing::warn!(%error, "cannot read the system resolver configuration; DNS discovery will fail");
                    TokioResolver::builder_with_config(ResolverConfig::new(), provider)
                }
            }
        } else {
            let mut config = ResolverConfig::new();
            for server in &dns.nameservers {
                let address = server.0;
                config.add_name_server(NameServerConfig::new(address, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(address, Protocol::Tcp));
            }
            let mut builder = TokioResolver::builder_with_config(config, provider);
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = dns.timeout;
        options.attempts = dns.attempts;
        options.cache_size = dns.cache_size;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        options.negative_max_ttl = Some(dns.negative_max_ttl);
        options.preserve_intermediates = false;
        DnsResolver { inner: builder.build() }
    }

    /// Queries `_xmpp-client._tcp.<domain>.` and `_xmpps-client._tcp.<domain>.` at the same
    /// time; each answer stands on its own (a failure of one never hides the other, DNS-1).
    pub async fn srv_pair(&self, domain: &str, metrics: &Metrics) -> (SrvAnswer, SrvAnswer) {
        let started = Instant::now();
        let (xmpp, xmpps) = (format!("_xmpp-client._tcp.{domain}."), format!("_xmpps-client._tcp.{domain}."));
        let result = tokio::join!(self.srv(&xmpp, metrics), self.srv(&xmpps, metrics));
        metrics.observe_connect_phase("dns", started.elapsed());
        result
    }

    async fn srv(&self, name: &str, metrics: &Metrics) -> SrvAnswer {
        let answer = match self.inner.srv_lookup(name).await {
            Ok(lookup) => {
                let records: Vec<SrvRecord> = lookup
                    .iter()
                    .map(|srv| SrvRecord {
                        priority: srv.priority(),
                        weight: srv.weight(),
                        port: srv.port(),
                        target: srv.target().to_ascii().trim_end_matches('.').to_ascii_lowercase(),
                    })
                    .collect();
                if records.is_empty() {
                    SrvAnswer::Failed(DnsFailure::NoData)
                } else {
                    SrvAnswer::Records(records)
                }
            }
            Err(error) => SrvAnswer::Failed(dns_failure(&error)),
        };
        let label = match &answer {
            SrvAnswer::Records(_) => "srv",
            SrvAnswer::Failed(failure) => failure.label(),
        };
        metrics.dns_lookups.with_label_values(&[label]).inc();
        answer
    }

    /// The A and AAAA addresses of `host` (an IP literal is returned as is).
    pub async fn addresses(&self, host: &str, metrics: &Metrics) -> Result<Vec<IpAddr>, DnsFailure> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let started = Instant::now();
        let result = match self.inner.lookup_ip(format!("{host}.")).await {
            Ok(lookup) => {
                let addresses: Vec<IpAddr> = lookup.iter().collect();
                if addresses.is_empty() {
                    Err(DnsFailure::NoData)
                } else {
                    Ok(addresses)
                }
            }
            Err(error) => Err(dns_failure(&error)),
        };
        metrics.observe_connect_phase("dns", started.elapsed());
        let label = match &result {
            Ok(_) => "address",
            Err(failure) => failure.label(),
        };
        metrics.dns_lookups.with_label_values(&[label]).inc();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
        SrvRecord { priority, weight, port, target: target.to_string() }
    }

    fn route(host: &str, port: u16, tls: RouteTls) -> Route {
        Route { host: host.to_string(), port, tls }
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(0x5eed_2782)
    }

    /// TV-111: p10 {A 60, B 20, C 0}, p20 {D 0}; first choice over 20 000 draws.
    #[test]
    fn tv_111_weighted_first_choice_distribution() {
        let records = vec![srv(10, 60, 1, "a"), srv(10, 20, 1, "b"), srv(10, 0, 1, "c"), srv(20, 0, 1, "d")];
        let mut rng = rng();
        let mut counts = std::collections::HashMap::<String, u32>::new();
        const DRAWS: u32 = 20_000;
        for _ in 0..DRAWS {
            let ordered = order_rfc2782(records.clone(), &mut rng);
            *counts.entry(ordered[0].target.clone()).or_default() += 1;
            assert_eq!(ordered[3].target, "d", "priority 20 always comes last");
        }
        let share = |name: &str| f64::from(counts.get(name).copied().unwrap_or(0)) * 100.0 / f64::from(DRAWS);
        assert!((share("a") - 74.0).abs() <= 2.0, "A {}%", share("a"));
        assert!((share("b") - 25.0).abs() <= 2.0, "B {}%", share("b"));
        assert!(share("c") <= 3.0, "C {}%", share("c"));
        assert_eq!(share("d"), 0.0);
    }

    #[test]
    fn priority_always_wins_over_weight() {
        let mut rng = rng();
        for _ in 0..1000 {
            let ordered = order_rfc2782(vec![srv(20, 65535, 1, "heavy"), srv(10, 0, 1, "light")], &mut rng);
            assert_eq!(ordered[0].target, "light");
        }
    }

    #[test]
    fn all_weight_zero_still_orders_everything() {
        let ordered = order_rfc2782(vec![srv(0, 0, 1, "a"), srv(0, 0, 2, "b"), srv(0, 0, 3, "c")], &mut rng());
        assert_eq!(ordered.len(), 3);
    }

    #[test]
    fn tv_110_srv_records_never_fall_back() {
        let xmpp = SrvAnswer::Records(vec![srv(10, 0, 5222, "a.example.com"), srv(20, 0, 5222, "b.example.com")]);
        let routes =
            plan("example.com", &xmpp, &SrvAnswer::Failed(DnsFailure::NxDomain), PreferTls::Mixed, &mut rng()).unwrap();
        assert_eq!(
            routes,
            vec![route("a.example.com", 5222, RouteTls::StartTls), route("b.example.com", 5222, RouteTls::StartTls)]
        );
    }

    #[test]
    fn tv_112_lone_dot_aborts_without_fallback() {
        let xmpp = SrvAnswer::Records(vec![srv(0, 0, 0, "")]);
        let result = plan("example.com", &xmpp, &SrvAnswer::Failed(DnsFailure::NxDomain), PreferTls::Mixed, &mut rng());
        assert_eq!(result, Err(PlanError::DecidedlyUnavailable));
    }

    #[test]
    fn tv_113_no_srv_answer_falls_back_to_the_domain() {
        for (a, b) in [
            (DnsFailure::NxDomain, DnsFailure::NxDomain),
            (DnsFailure::NoData, DnsFailure::Timeout),
            (DnsFailure::ServFail, DnsFailure::ServFail),
        ] {
            let routes =
                plan("example.com", &SrvAnswer::Failed(a), &SrvAnswer::Failed(b), PreferTls::Mixed, &mut rng())
                    .unwrap();
            assert_eq!(routes, vec![route("example.com", 5222, RouteTls::StartTls)]);
        }
    }

    #[test]
    fn tv_115_direct_tls_only() {
        let xmpps = SrvAnswer::Records(vec![srv(0, 0, 5223, "x.example.com")]);
        let routes =
            plan("example.com", &SrvAnswer::Failed(DnsFailure::NoData), &xmpps, PreferTls::Mixed, &mut rng()).unwrap();
        assert_eq!(routes, vec![route("x.example.com", 5223, RouteTls::Direct)]);
    }

    #[test]
    fn tv_116_kinds_are_mixed_by_priority_or_preferred() {
        let xmpp = SrvAnswer::Records(vec![srv(10, 0, 5222, "h1")]);
        let xmpps = SrvAnswer::Records(vec![srv(5, 0, 443, "h2")]);
        let mixed = plan("example.com", &xmpp, &xmpps, PreferTls::Mixed, &mut rng()).unwrap();
        assert_eq!(mixed, vec![route("h2", 443, RouteTls::Direct), route("h1", 5222, RouteTls::StartTls)]);
        let starttls = plan("example.com", &xmpp, &xmpps, PreferTls::Starttls, &mut rng()).unwrap();
        assert_eq!(starttls, vec![route("h1", 5222, RouteTls::StartTls), route("h2", 443, RouteTls::Direct)]);
        let direct = plan("example.com", &xmpp, &xmpps, PreferTls::DirectTls, &mut rng()).unwrap();
        assert_eq!(direct[0], route("h2", 443, RouteTls::Direct));
    }

    #[test]
    fn tv_117_xmpps_dot_means_use_xmpp_client_and_never_fall_back() {
        let dot = SrvAnswer::Records(vec![srv(0, 0, 0, "")]);
        let xmpp = SrvAnswer::Records(vec![srv(0, 0, 5222, "h1")]);
        let routes = plan("example.com", &xmpp, &dot, PreferTls::Mixed, &mut rng()).unwrap();
        assert_eq!(routes, vec![route("h1", 5222, RouteTls::StartTls)]);
        let none = SrvAnswer::Failed(DnsFailure::NxDomain);
        assert_eq!(
            plan("example.com", &none, &dot, PreferTls::Mixed, &mut rng()),
            Err(PlanError::DecidedlyUnavailable)
        );
    }

    #[test]
    fn tv_118_one_failed_query_does_not_hide_the_other() {
        let xmpp = SrvAnswer::Records(vec![srv(0, 0, 5222, "h1")]);
        for failure in [DnsFailure::ServFail, DnsFailure::Timeout] {
            let routes = plan("example.com", &xmpp, &SrvAnswer::Failed(failure), PreferTls::Mixed, &mut rng()).unwrap();
            assert_eq!(routes, vec![route("h1", 5222, RouteTls::StartTls)]);
        }
    }

    #[test]
    fn dot_among_other_records_is_skipped() {
        let xmpp = SrvAnswer::Records(vec![srv(0, 0, 0, ""), srv(5, 0, 5222, "h1")]);
        let routes =
            plan("example.com", &xmpp, &SrvAnswer::Failed(DnsFailure::NoData), PreferTls::Mixed, &mut rng()).unwrap();
        assert_eq!(routes, vec![route("h1", 5222, RouteTls::StartTls)]);
    }
}
