//! The `wss://` listener's certificate: loading the PEM chain and key into a rustls server
//! configuration, with the HTTP versions offered by ALPN (`h2` when `listener.http2` is on, and
//! `http/1.1`). Loading only; handshakes run in [`super::connection`].

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the listener's certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("listener TLS: {0}")]
pub struct ListenerTlsError(String);

/// The ALPN protocol id of HTTP/2 (RFC 9113 §3.2).
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// Loads the `wss://` certificate chain and key (PEM) into a server configuration that offers
/// HTTP/2 by ALPN when `http2` is set (preferred when the client offers both), and HTTP/1.1
/// always. A client that offers no ALPN gets HTTP/1.1.
pub fn server_config(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
    http2: bool,
) -> Result<Arc<rustls::ServerConfig>, ListenerTlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| ListenerTlsError(format!("{}: {e}", cert_file.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| ListenerTlsError(format!("{}: {e}", cert_file.display())))?;
    if chain.is_empty() {
        return Err(ListenerTlsError(format!("{}: no certificate", cert_file.display())));
    }
    let key =
        PrivateKeyDer::from_pem_file(key_file).map_err(|e| ListenerTlsError(format!("{}: {e}", key_file.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ListenerTlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ListenerTlsError(format!("certificate and key do not fit together: {e}")))?;
    config.alpn_protocols =
        if http2 { vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(Arc::new(config))
}
