//! The test helpers, one tree for every integration test: the test CA (here), a scripted fake
//! XMPP server on real sockets that can misbehave on purpose, an in-process gateway, the gateway
//! binary as a child process, raw and ordinary WebSocket clients, a real DNS server, and for the
//! end-to-end tests real Prosody and ejabberd servers, reverse proxies and the JavaScript
//! client runner.
//!
//! Integration tests include it with `mod harness;`; each uses a subset, hence the `dead_code`
//! allowance.
#![allow(dead_code, clippy::unwrap_used)]

pub mod bosh_client;
pub mod certs;
pub mod dns;
pub mod e2e;
pub mod ejabberd;
pub mod fake_server;
pub mod gateway;
pub mod h2;
pub mod net;
pub mod process;
pub mod proxy;
pub mod raw_ws;
pub mod setup;
pub mod shapes;
pub mod ws_client;
pub mod xmpp;

use std::path::PathBuf;
use std::time::Duration;

/// Deadline for any single expected event in these tests; generous for a loaded CI machine.
pub const STEP: Duration = Duration::from_secs(10);

/// The one test CA: a throw-away certificate authority, its certificate in `ca.pem` in its own
/// temporary directory. Leaves come as DER for in-process servers ([`TestCa::leaf`]) or as PEM
/// files for real servers ([`TestCa::issue`]).
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate in PEM.
    pub ca_pem: String,
    ca_pem_path: PathBuf,
    dir: tempfile::TempDir,
}

/// A leaf certificate and its key, in DER, for a fake server.
pub struct Leaf {
    /// Certificate chain (leaf only).
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Private key.
    pub key: rustls::pki_types::PrivateKeyDer<'static>,
}

/// A leaf certificate and its key, as PEM files, for a real server (Prosody, ejabberd).
#[derive(Debug, Clone)]
pub struct LeafCert {
    /// The certificate (leaf only).
    pub cert_path: PathBuf,
    /// The PKCS#8 private key.
    pub key_path: PathBuf,
    /// The certificate followed by the CA certificate.
    pub chain_path: PathBuf,
}

impl TestCa {
    /// A fresh CA (ECDSA P-256) with its certificate written to `ca.pem`.
    pub fn new() -> TestCa {
        let dir = tempfile::Builder::new().prefix("xmppgw-ca-").tempdir().expect("temp dir");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "xmpp-ws-gateway test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        let ca_pem = cert.pem();
        let ca_pem_path = dir.path().join("ca.pem");
        std::fs::write(&ca_pem_path, &ca_pem).expect("write ca.pem");
        let issuer = rcgen::Issuer::new(params, key);
        TestCa { issuer, ca_pem, ca_pem_path, dir }
    }

    /// Path of the CA certificate (PEM), for `ca_file` settings.
    pub fn ca_file(&self) -> PathBuf {
        self.ca_pem_path.clone()
    }

    /// Path of the CA certificate (PEM), borrowed.
    pub fn ca_pem_path(&self) -> &std::path::Path {
        &self.ca_pem_path
    }

    /// The CA certificate as PEM text.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
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

    /// Issues a server certificate for `dns_names` (the first is also the common name), written
    /// as `<name>.crt`, `<name>.key` and `<name>.chain.pem` next to the CA's.
    pub fn issue(&self, name: &str, dns_names: &[&str]) -> LeafCert {
        let sans: Vec<String> = dns_names.iter().map(|s| (*s).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(sans).expect("leaf params");
        if let Some(first) = dns_names.first() {
            params.distinguished_name.push(rcgen::DnType::CommonName, *first);
        }
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        // rcgen's default validity ends in year 4096 (GeneralizedTime); ejabberd's certificate
        // loader silently ignores such a certificate ("TLS failed: no_certfile"), so stay within
        // UTCTime.
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let cert_path = self.dir.path().join(format!("{name}.crt"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        let chain_path = self.dir.path().join(format!("{name}.chain.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("write leaf cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write leaf key");
        std::fs::write(&chain_path, format!("{}{}", cert.pem(), self.ca_pem)).expect("write chain");
        LeafCert { cert_path, key_path, chain_path }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
