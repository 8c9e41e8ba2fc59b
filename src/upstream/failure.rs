//! Why an upstream could not be used: the failure classes of D6, as one type.
//!
//! [`FailureClass::class`] is the only place a class becomes text: the metric label of
//! `xmppgw_upstream_connect_failures_total`, the `<text/>` of `<remote-connection-failed/>`
//! (or `<host-unknown/>`) and the WebSocket close reason. Everything else matches on the enum.
//! Plain data: nothing here does I/O.

/// Why a DNS query gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsFailure {
    /// The name does not exist.
    NxDomain,
    /// The name exists but has no record of the asked type.
    NoData,
    /// The server failed (SERVFAIL, REFUSED, …).
    ServFail,
    /// No answer in time.
    Timeout,
    /// Anything else (no nameserver reachable, malformed answer).
    Other,
}

impl DnsFailure {
    /// The `result` label of `xmppgw_dns_lookups_total`.
    pub fn label(self) -> &'static str {
        match self {
            DnsFailure::NxDomain => "nxdomain",
            DnsFailure::NoData => "nodata",
            DnsFailure::ServFail => "servfail",
            DnsFailure::Timeout => "timeout",
            DnsFailure::Other => "error",
        }
    }
}

/// Why a TCP connection could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpFailure {
    /// Refused (RST).
    Refused,
    /// No answer within the budget.
    Timeout,
    /// No route to the host or network.
    Unreachable,
    /// Anything else.
    Other,
}

/// Why a TLS handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// The handshake did not finish within the budget.
    Timeout,
    /// The server closed the connection during the handshake.
    Closed,
    /// The server sent a TLS alert.
    Alert,
    /// The certificate is not valid for the domain (CERT-1).
    CertNameMismatch,
    /// The certificate has expired.
    CertExpired,
    /// The certificate is not valid yet.
    CertNotYetValid,
    /// The certificate was revoked.
    CertRevoked,
    /// The certificate does not chain to a trusted root (or is otherwise unacceptable).
    CertUntrusted,
    /// Any other handshake failure.
    Other,
}

/// Why an upstream could not be reached, secured or understood, or is not served (D6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// The domain is neither a static upstream nor allowed by `[domains]` (D17).
    DomainNotAllowed,
    /// A DNS lookup (SRV, or a host's addresses) gave no usable answer.
    Dns(DnsFailure),
    /// SRV says the service is decidedly not available here (a lone `.`, DNS-4).
    SrvDecidedlyUnavailable,
    /// Every address of a route is in a range the address guard refuses (SEC-1).
    AddressRefused,
    /// TCP to every address of a route failed.
    Tcp(TcpFailure),
    /// The TLS handshake failed (direct TLS, or after `<proceed/>`).
    Tls(TlsFailure),
    /// The server answered `<starttls/>` with `<failure/>` or ended the stream (TLS-2).
    StartTlsRefused,
    /// Bytes followed `<proceed/>` in the same read (TLS-3, TV-14).
    StartTlsInjection,
    /// The stream headers were not exchanged within the budget (after TLS).
    StreamTimeout,
    /// The server's XML was refused while the stream was being set up.
    BadXml,
    /// The server sent something the setup does not allow.
    ProtocolError,
    /// The server closed the connection during the setup.
    Closed,
    /// Writing to the server failed during the setup.
    IoError,
    /// More than `MAX_REDIRECTS` successive `<see-other-host/>` (D4).
    RedirectLoop,
}

impl FailureClass {
    /// The class as text: metric label, `<text/>` and close reason.
    pub fn class(self) -> &'static str {
        match self {
            FailureClass::DomainNotAllowed => "domain-not-allowed",
            FailureClass::Dns(DnsFailure::NxDomain) => "dns-nxdomain",
            FailureClass::Dns(DnsFailure::NoData) => "dns-nodata",
            FailureClass::Dns(DnsFailure::ServFail) => "dns-servfail",
            FailureClass::Dns(DnsFailure::Timeout) => "dns-timeout",
            FailureClass::Dns(DnsFailure::Other) => "dns-failed",
            FailureClass::SrvDecidedlyUnavailable => "srv-decidedly-unavailable",
            FailureClass::AddressRefused => "address-refused",
            FailureClass::Tcp(TcpFailure::Refused) => "connect-refused",
            FailureClass::Tcp(TcpFailure::Timeout) => "connect-timeout",
            FailureClass::Tcp(TcpFailure::Unreachable) => "connect-unreachable",
            FailureClass::Tcp(TcpFailure::Other) => "connect-failed",
            FailureClass::Tls(TlsFailure::Timeout) => "tls-timeout",
            FailureClass::Tls(TlsFailure::Closed) => "tls-closed",
            FailureClass::Tls(TlsFailure::Alert) => "tls-alert",
            FailureClass::Tls(TlsFailure::CertNameMismatch) => "tls-cert-name-mismatch",
            FailureClass::Tls(TlsFailure::CertExpired) => "tls-cert-expired",
            FailureClass::Tls(TlsFailure::CertNotYetValid) => "tls-cert-not-yet-valid",
            FailureClass::Tls(TlsFailure::CertRevoked) => "tls-cert-revoked",
            FailureClass::Tls(TlsFailure::CertUntrusted) => "tls-cert-untrusted",
            FailureClass::Tls(TlsFailure::Other) => "tls-handshake-failed",
            FailureClass::StartTlsRefused => "starttls-refused",
            FailureClass::StartTlsInjection => "starttls-injection",
            FailureClass::StreamTimeout => "stream-timeout",
            FailureClass::BadXml => "upstream-bad-xml",
            FailureClass::ProtocolError => "upstream-protocol-error",
            FailureClass::Closed => "upstream-closed",
            FailureClass::IoError => "upstream-io-error",
            FailureClass::RedirectLoop => "see-other-host-loop",
        }
    }

    /// Every class, for documentation tests.
    pub const ALL: [FailureClass; 29] = [
        FailureClass::DomainNotAllowed,
        FailureClass::Dns(DnsFailure::NxDomain),
        FailureClass::Dns(DnsFailure::NoData),
        FailureClass::Dns(DnsFailure::ServFail),
        FailureClass::Dns(DnsFailure::Timeout),
        FailureClass::Dns(DnsFailure::Other),
        FailureClass::SrvDecidedlyUnavailable,
        FailureClass::AddressRefused,
        FailureClass::Tcp(TcpFailure::Refused),
        FailureClass::Tcp(TcpFailure::Timeout),
        FailureClass::Tcp(TcpFailure::Unreachable),
        FailureClass::Tcp(TcpFailure::Other),
        FailureClass::Tls(TlsFailure::Timeout),
        FailureClass::Tls(TlsFailure::Closed),
        FailureClass::Tls(TlsFailure::Alert),
        FailureClass::Tls(TlsFailure::CertNameMismatch),
        FailureClass::Tls(TlsFailure::CertExpired),
        FailureClass::Tls(TlsFailure::CertNotYetValid),
        FailureClass::Tls(TlsFailure::CertRevoked),
        FailureClass::Tls(TlsFailure::CertUntrusted),
        FailureClass::Tls(TlsFailure::Other),
        FailureClass::StartTlsRefused,
        FailureClass::StartTlsInjection,
        FailureClass::StreamTimeout,
        FailureClass::BadXml,
        FailureClass::ProtocolError,
        FailureClass::Closed,
        FailureClass::IoError,
        FailureClass::RedirectLoop,
    ];
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.class())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_distinct_and_documented_for_operators() {
        let operations = include_str!("../../docs/OPERATIONS.md");
        let mut seen = std::collections::HashSet::new();
        for class in FailureClass::ALL {
            assert!(seen.insert(class.class()), "{} twice", class.class());
            assert!(operations.contains(&format!("`{}`", class.class())), "{} is not in docs/OPERATIONS.md", class);
        }
    }
}
