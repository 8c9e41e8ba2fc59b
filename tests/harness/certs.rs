//! Certificates for the certificate matrix (CONFORMANCE 3.10): expired, self-signed, from
//! another CA, and with only an XmppAddr identity.

use super::{Leaf, TestCa};

fn leaf_of(cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> Leaf {
    Leaf { chain: vec![cert.der().clone()], key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()) }
}

impl TestCa {
    /// A leaf for `names` signed by this CA whose validity ended a year ago.
    pub fn expired_leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        leaf_of(&cert, &key)
    }

    /// A leaf whose only identity is an XmppAddr otherName (RFC 6120 §13.7.1.4), no DNS-ID.
    pub fn xmpp_addr_only_leaf(&self, domain: &str) -> Leaf {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![rcgen::SanType::OtherName((
            vec![1, 3, 6, 1, 5, 5, 7, 8, 5],
            rcgen::OtherNameValue::Utf8String(domain.to_string()),
        ))];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        leaf_of(&cert, &key)
    }
}

/// A self-signed certificate for `names` (no CA at all).
pub fn self_signed_leaf(names: &[&str]) -> Leaf {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let params = rcgen::CertificateParams::new(names).expect("params");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    leaf_of(&cert, &key)
}
