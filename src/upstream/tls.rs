//! TLS towards the upstream server: client configurations, the handshake on a connected TCP
//! stream, and the classification of its failures.
//!
//! Certificates are always verified against the source domain (the client's `to`, D9, CERT-1),
//! with the system roots plus an optional extra CA file. There is deliberately no way to skip
//! verification. This module does not connect and knows nothing of XMPP.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::failure::{FailureClass, TlsFailure};

/// ALPN protocol id for direct TLS (XEP-0368).
pub const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {problem}")]
    CaFile {
        /// The file.
        path: String,
        /// What went wrong.
        problem: String,
    },
}

/// The system's trust anchors, loaded once at start-up.
#[derive(Clone)]
pub struct SystemRoots(Arc<Vec<CertificateDer<'static>>>);

impl SystemRoots {
    /// Loads the platform's CA certificates. Unreadable entries are skipped (as the platform
    /// store may contain some); an empty store is allowed (upstreams can bring a CA file).
    pub fn load() -> SystemRoots {
        let result = rustls_native_certs::load_native_certs();
        SystemRoots(Arc::new(result.certs))
    }

    /// No system roots at all (tests: only the test CA is trusted).
    pub fn empty() -> SystemRoots {
        SystemRoots(Arc::new(Vec::new()))
    }
}

/// Builds the client configuration for one upstream: roots = system store + `ca_file`;
/// ALPN `xmpp-client` when `direct`. The configuration keeps rustls's in-memory session cache,
/// so reconnections to the same server resume TLS sessions (RFC 6120 §3.3).
pub fn client_config(
    roots: &SystemRoots,
    ca_file: Option<&Path>,
    direct: bool,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut store = RootCertStore::empty();
    let _ = store.add_parsable_certificates(roots.0.iter().cloned());
    if let Some(path) = ca_file {
        let ca_error = |problem: String| TlsSetupError::CaFile { path: path.display().to_string(), problem };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_error(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| ca_error(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_error("no PEM certificate found".into()));
        }
        for cert in certs {
            store.add(cert).map_err(|e| ca_error(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::CaFile { path: String::new(), problem: e.to_string() })?
        .with_root_certificates(store)
        .with_no_client_auth();
    if direct {
        config.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
    }
    Ok(Arc::new(config))
}

/// The TLS handshake on `tcp`; the server name (SNI and the certificate's reference identity)
/// is always `domain`, the one the client asked for, never an SRV target or a redirect's host
/// (CERT-1, CERT-4, CERT-5).
pub async fn handshake(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    domain: &str,
) -> Result<TlsStream<TcpStream>, FailureClass> {
    let server_name = ServerName::try_from(domain.to_string()).map_err(|_| FailureClass::ProtocolError)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|error| FailureClass::Tls(classify_handshake_error(&error)))
}

/// What a TLS handshake error stands for.
pub fn classify_handshake_error(error: &io::Error) -> TlsFailure {
    if error.kind() == io::ErrorKind::TimedOut {
        return TlsFailure::Timeout;
    }
    let Some(rustls_error) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => TlsFailure::Closed,
            _ => TlsFailure::Other,
        };
    };
    match rustls_error {
        rustls::Error::InvalidCertificate(cert_error) => match cert_error {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::CertNameMismatch
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => TlsFailure::CertExpired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => TlsFailure::CertNotYetValid,
            CertificateError::Revoked => TlsFailure::CertRevoked,
            _ => TlsFailure::CertUntrusted,
        },
        rustls::Error::AlertReceived(_) => TlsFailure::Alert,
        _ => TlsFailure::Other,
    }
}
