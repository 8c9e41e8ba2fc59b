//! Test tools of our own: a test CA, a scripted fake XMPP server on real sockets that can
//! misbehave on purpose, an in-process gateway, and a raw WebSocket client.
#![allow(dead_code, clippy::unwrap_used)]

pub mod certs;
pub mod dns;
pub mod fake_server;
pub mod gateway;
pub mod h2;
pub mod process;
pub mod raw_ws;
pub mod ws_client;
pub mod xmpp;

use std::time::Duration;

/// Deadline for any single expected event in these tests; generous for a loaded CI machine.
pub const STEP: Duration = Duration::from_secs(10);

/// A CA and leaf certificates made at test time.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate in PEM.
    pub ca_pem: String,
    dir: tempfile::TempDir,
}

/// A leaf certificate and its key, in DER, for a fake server.
pub struct Leaf {
    /// Certificate chain (leaf only).
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Private key.
    pub key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl TestCa {
    /// A fresh CA.
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "xmpp-ws-gateway test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        let ca_pem = cert.pem();
        let issuer = rcgen::Issuer::new(params, key);
        TestCa { issuer, ca_pem, dir: tempfile::tempdir().expect("tempdir") }
    }

    /// Writes the CA certificate to a file and returns its path.
    pub fn ca_file(&self) -> std::path::PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, &self.ca_pem).expect("write CA");
        path
    }

    /// A server certificate and key for the given DNS names, as PEM text.
    pub fn leaf_pem(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for the given DNS names, signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        Leaf {
            chain: vec![cert.der().clone()],
            key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }
}
