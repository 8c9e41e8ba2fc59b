//! The literal XMPP the tests exchange most often, in one place: the test domain, the client's
//! `<open/>`, the gateway's exact `<close/>` (DECISIONS D13) and server features offering PLAIN.

/// The domain the fake servers and gateways serve.
pub const DOMAIN: &str = "example.com";

/// A client `<open/>` for [`DOMAIN`].
pub const OPEN: &str =
    r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" version="1.0" xml:lang="en"/>"#;

/// `<close/>` byte for byte as the gateway sends it (D13).
pub const CLOSE: &str = r#"<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" />"#;

/// Post-TLS server features offering SASL PLAIN only.
pub const PLAIN_FEATURES: &str = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>";
