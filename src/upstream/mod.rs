//! Reaching the upstream XMPP server's port for one session, and securing it with TLS; nothing
//! here speaks XMPP.
//!
//! [`UpstreamDirectory`] decides whether a domain is served (a static `[[upstream]]`, or a
//! domain `[domains] allow` lets the gateway find through DNS, D17) and gives each session a
//! [`Connector`]: routes (the static address, or SRV in RFC 2782 order, or the A/AAAA fallback:
//! [`resolve`]), addresses checked by the SSRF guard ([`guard`]), TCP with Happy Eyeballs
//! ([`connect`]), an optional PROXY header ([`proxy_protocol`]); [`tls`] runs the handshake,
//! certificate checked against the domain. Every failure is a [`FailureClass`] (D6). Stream
//! headers, STARTTLS and `<see-other-host/>` are the session core's; this module never talks to
//! the client and never reads or writes the stream.

pub mod connect;
pub mod connector;
pub mod failure;
pub mod guard;
pub mod io;
pub mod proxy_protocol;
pub mod resolve;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::listener::descriptors::DescriptorPools;
use rustls::ClientConfig;

use crate::config::{Config, UpstreamTls};
use crate::metrics::Metrics;

pub use connector::{Budget, Connector, Link};
pub use failure::{DnsFailure, FailureClass, TcpFailure, TlsFailure};
pub use io::UpstreamIo;
pub use resolve::DnsResolver;
pub use tls::{SystemRoots, TlsSetupError};

use guard::DomainPolicy;

/// A statically configured upstream: where one domain's server is and how to secure it.
#[derive(Debug)]
pub struct UpstreamTarget {
    /// The normalised domain (reference identity for the certificate, SNI, `to`).
    pub domain: String,
    /// Host name or IP address to connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// STARTTLS, direct TLS or none.
    pub tls: UpstreamTls,
    /// The TLS client configuration (absent for `tls = "none"`).
    pub tls_config: Option<Arc<ClientConfig>>,
    /// Send a PROXY protocol v2 header first.
    pub proxy_protocol: bool,
    /// The element limit of sessions to this upstream, both directions (D10).
    pub max_element_bytes: usize,
}

/// A served domain and how its server is found.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// A static `[[upstream]]`: explicitly configured, so the address guard does not apply.
    Static(Arc<UpstreamTarget>),
    /// Found through DNS (SRV, else A/AAAA); resolved addresses pass the guard unless the domain
    /// is listed in `[domains] special_addresses`.
    Discovered {
        /// The normalised domain.
        domain: String,
        /// Whether special-purpose addresses (loopback, private, …) are allowed for it.
        special_addresses_allowed: bool,
    },
}

impl Upstream {
    /// The normalised domain.
    pub fn domain(&self) -> &str {
        match self {
            Upstream::Static(target) => &target.domain,
            Upstream::Discovered { domain, .. } => domain,
        }
    }

    /// The element limit configured for this upstream (`[[upstream]] max_element_bytes`, which
    /// defaults to the global one); `None` for discovered domains, which use the global limit.
    pub fn element_limit(&self) -> Option<usize> {
        match self {
            Upstream::Static(target) => Some(target.max_element_bytes),
            Upstream::Discovered { .. } => None,
        }
    }
}

/// Why a domain is not served (the session answers `<host-unknown/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotServed {
    /// Neither a static upstream nor in `[domains] allow` (D17).
    #[error("the domain is not allowed by the configuration")]
    DomainNotAllowed,
}

impl NotServed {
    /// The failure class: `<text/>` of the `<host-unknown/>`, close reason and metric label.
    pub fn class(self) -> FailureClass {
        match self {
            NotServed::DomainNotAllowed => FailureClass::DomainNotAllowed,
        }
    }
}

/// Why the upstream layer could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    /// A CA file could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

/// The domains the gateway serves, how to find their servers, and the shared TLS client
/// configurations (one per static upstream, one pair for discovered domains: shared by every
/// session, so their TLS session caches make reconnections resume, RFC 6120 §3.3).
#[derive(Debug)]
pub struct UpstreamDirectory {
    targets: HashMap<String, Arc<UpstreamTarget>>,
    policy: DomainPolicy,
    shared: connector::Shared,
}

impl UpstreamDirectory {
    /// Builds the directory from the configuration: static upstreams (CA files loaded once),
    /// the domain policy, the resolver, and the TLS configurations for discovered domains.
    pub fn from_config(config: &Config, roots: &SystemRoots) -> Result<UpstreamDirectory, UpstreamSetupError> {
        let mut targets = HashMap::new();
        for upstream in &config.upstream {
            let domain = upstream.domain.as_str().to_string();
            let tls_config = match upstream.tls {
                UpstreamTls::None => None,
                UpstreamTls::Starttls => Some(tls::client_config(roots, upstream.ca_file.as_deref(), false)?),
                UpstreamTls::Direct => Some(tls::client_config(roots, upstream.ca_file.as_deref(), true)?),
            };
            let target = UpstreamTarget {
                domain: domain.clone(),
                host: upstream.address.host.clone(),
                port: upstream.address.port,
                tls: upstream.tls,
                tls_config,
                proxy_protocol: upstream.proxy_protocol,
                max_element_bytes: upstream.element_limit(config.limits.max_element_bytes),
            };
            targets.insert(domain, Arc::new(target));
        }
        let policy = DomainPolicy::new(
            &config.domains.allow,
            &config.domains.special_addresses,
            targets.keys().map(String::as_str),
        );
        let ca_file = config.domains.ca_file.as_deref();
        let shared = connector::Shared {
            resolver: DnsResolver::from_config(&config.dns),
            prefer: config.dns.prefer,
            discovered_starttls: tls::client_config(roots, ca_file, false)?,
            discovered_direct: tls::client_config(roots, ca_file, true)?,
            happy_eyeballs_delay: config.connect.happy_eyeballs_delay,
        };
        Ok(UpstreamDirectory { targets, policy, shared })
    }

    /// Whether and how a normalised domain is served: its static upstream, or DNS discovery
    /// when `[domains] allow` matches it.
    pub fn lookup(&self, domain: &str) -> Result<Upstream, NotServed> {
        if let Some(target) = self.targets.get(domain) {
            return Ok(Upstream::Static(target.clone()));
        }
        if self.policy.allows(domain) {
            return Ok(Upstream::Discovered {
                domain: domain.to_string(),
                special_addresses_allowed: self.policy.special_addresses_allowed(domain),
            });
        }
        Err(NotServed::DomainNotAllowed)
    }

    /// The routes to a served domain's server for one session; `client` is the client's
    /// address as the gateway sees it (for a PROXY protocol header), `metrics` records the
    /// `dns` and `tcp` phases and the DNS lookups; its DNS questions and connection attempts
    /// borrow from `descriptors` (and wait when nothing is free).
    pub fn connector(
        &self,
        upstream: Upstream,
        client: SocketAddr,
        metrics: &Metrics,
        descriptors: DescriptorPools,
    ) -> Connector {
        Connector::new(self.shared.clone(), metrics.clone(), upstream, client, descriptors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn directory(toml: &str) -> UpstreamDirectory {
        let config = Config::from_toml(toml).unwrap();
        UpstreamDirectory::from_config(&config, &SystemRoots::empty()).unwrap()
    }

    #[tokio::test]
    async fn lookup_consults_static_upstreams_then_the_allowlist() {
        let directory = directory(
            "[dns]\nnameservers = [\"127.0.0.1:53\"]\n[domains]\nallow = [\"*.example.net\", \"corp.example\"]\n\
             special_addresses = [\"corp.example\"]\n\
             [[upstream]]\ndomain = \"static.example\"\naddress = \"127.0.0.1:5222\"\n",
        );
        assert!(matches!(directory.lookup("static.example"), Ok(Upstream::Static(_))));
        assert!(matches!(
            directory.lookup("a.example.net"),
            Ok(Upstream::Discovered { special_addresses_allowed: false, .. })
        ));
        assert!(matches!(
            directory.lookup("corp.example"),
            Ok(Upstream::Discovered { special_addresses_allowed: true, .. })
        ));
        assert_eq!(directory.lookup("example.net").unwrap_err(), NotServed::DomainNotAllowed);
        assert_eq!(directory.lookup("other.example").unwrap_err().class(), FailureClass::DomainNotAllowed);
    }

    /// A connector to `static.example` at `address`, borrowing from `pools`, and its budget.
    fn static_connector(address: &str, pools: &DescriptorPools) -> (Connector, Budget) {
        let directory = directory(&format!("[[upstream]]\ndomain = \"static.example\"\naddress = \"{address}\"\n"));
        let upstream = directory.lookup("static.example").unwrap();
        let client = SocketAddr::from(([127, 0, 0, 1], 1));
        let connector = directory.connector(upstream, client, &Metrics::new(), pools.clone());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        (connector, Budget { attempt: std::time::Duration::from_secs(10), overall_deadline: deadline })
    }

    use crate::listener::descriptors::DescriptorBudget;

    #[tokio::test]
    async fn an_attempt_waits_for_a_lent_descriptor_and_gives_it_back() {
        // A blocking-API listener: its accept asks the kernel every time.
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        // Nothing to borrow: no lent descriptor, no free slot.
        let pools = DescriptorPools::new(DescriptorBudget { slots: 0, lent: 0 });
        let lent = &pools.lent;
        let (mut connector, budget) = static_connector(&server.local_addr().unwrap().to_string(), &pools);
        let mut connecting = Box::pin(connector.first(budget));
        // No descriptor free: the attempt has not even sent its SYN (on loopback the kernel
        // completes the handshake at once, so the listener would have a connection queued).
        assert!((&mut connecting).now_or_never().is_none());
        let queued = server.accept().map(|(_, from)| from);
        assert!(queued.is_err(), "an attempt started without a descriptor: {queued:?}");
        lent.add_permits(1);
        let link = connecting.await.expect("connected once a descriptor was free");
        let (_accepted, from) = server.accept().unwrap();
        assert_eq!(link.tcp.local_addr().unwrap(), from);
        assert_eq!(lent.available_permits(), 1, "the winning attempt gives its descriptor back");
    }

    #[tokio::test]
    async fn a_lookup_borrows_a_descriptor_for_each_of_its_two_questions() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        // A name: the system lookup (A and AAAA at once) runs before the attempt.
        let pools = DescriptorPools::new(DescriptorBudget { slots: 0, lent: 1 });
        let lent = &pools.lent;
        let (mut connector, budget) = static_connector(&format!("localhost:{port}"), &pools);
        let mut connecting = Box::pin(connector.first(budget));
        assert!((&mut connecting).now_or_never().is_none());
        lent.add_permits(1);
        let link = connecting.await.expect("connected once the lookup had its descriptors");
        assert!(link.tcp.peer_addr().unwrap().ip().is_loopback());
        assert_eq!(lent.available_permits(), 2, "every lent descriptor comes back once connected");
    }
}
