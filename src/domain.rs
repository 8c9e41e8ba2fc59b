//! Normalisation of the XMPP domain a client names in `to` (RFC 7622 §3.2, HDR-2, D17).
//!
//! The normalised form is what the gateway uses for policy decisions, DNS, SNI and certificate
//! matching: lowercase A-labels (internationalised names are converted with UTS #46 / IDNA,
//! so `bücher.example` becomes `xn--bcher-kva.example`). Pure string work: no DNS, no I/O.

use std::net::IpAddr;

/// Why a `to` value cannot be used as a domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Empty after stripping the trailing dot.
    #[error("empty domain")]
    Empty,
    /// An IPv4 or IPv6 literal; the gateway only connects to domains (D17).
    #[error("IP literals are not accepted as domains")]
    IpLiteral,
    /// Longer than 253 octets, an empty or over-long label, or a character outside LDH.
    #[error("not a valid DNS domain name")]
    Invalid,
}

/// Strips one trailing dot (RFC 7622 §3.2), converts internationalised labels to A-labels
/// (RFC 7622 §3.2 via IDNA/UTS #46), lowercases, and checks the result is a DNS host name of
/// letters, digits and hyphens. IP literals are refused.
pub fn normalize(to: &str) -> Result<String, DomainError> {
    let trimmed = to.strip_suffix('.').unwrap_or(to);
    if trimmed.is_empty() {
        return Err(DomainError::Empty);
    }
    let bracketless = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(trimmed);
    if bracketless.parse::<IpAddr>().is_ok() {
        return Err(DomainError::IpLiteral);
    }
    let lower = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        // Unicode labels: map (case fold, NFC) and encode as A-labels for DNS and SNI.
        let ascii = idna::domain_to_ascii(trimmed).map_err(|_| DomainError::Invalid)?;
        if ascii.ends_with('.') {
            return Err(DomainError::Invalid);
        }
        ascii
    };
    if lower.len() > 253 {
        return Err(DomainError::Invalid);
    }
    for label in lower.split('.') {
        let valid_chars = label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if label.is_empty() || label.len() > 63 || !valid_chars || label.starts_with('-') || label.ends_with('-') {
            return Err(DomainError::Invalid);
        }
    }
    // An all-numeric last label cannot be a domain: it is an IPv4 literal in disguise (e.g. "1.2.3").
    if lower.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err(DomainError::IpLiteral);
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_one_trailing_dot_and_lowercases() {
        assert_eq!(normalize("Example.COM.").unwrap(), "example.com");
        assert_eq!(normalize("example.com").unwrap(), "example.com");
        assert_eq!(normalize("example.com..").unwrap_err(), DomainError::Invalid);
    }

    #[test]
    fn refuses_ip_literals() {
        assert_eq!(normalize("127.0.0.1").unwrap_err(), DomainError::IpLiteral);
        assert_eq!(normalize("[::1]").unwrap_err(), DomainError::IpLiteral);
        assert_eq!(normalize("::1").unwrap_err(), DomainError::IpLiteral);
        assert_eq!(normalize("169.254.169.254.").unwrap_err(), DomainError::IpLiteral);
        assert_eq!(normalize("10.1").unwrap_err(), DomainError::IpLiteral);
    }

    #[test]
    fn internationalised_names_become_a_labels() {
        assert_eq!(normalize("bücher.example").unwrap(), "xn--bcher-kva.example");
        assert_eq!(normalize("BÜCHER.example.").unwrap(), "xn--bcher-kva.example");
        assert_eq!(normalize("xn--bcher-kva.example").unwrap(), "xn--bcher-kva.example");
        assert_eq!(normalize("例え.テスト").unwrap(), "xn--r8jz45g.xn--zckzah");
        assert_eq!(normalize("bü cher.example").unwrap_err(), DomainError::Invalid);
        assert_eq!(normalize("ü..example").unwrap_err(), DomainError::Invalid);
    }

    #[test]
    fn refuses_junk() {
        assert_eq!(normalize("").unwrap_err(), DomainError::Empty);
        assert_eq!(normalize(".").unwrap_err(), DomainError::Empty);
        assert_eq!(normalize("a b.example").unwrap_err(), DomainError::Invalid);
        assert_eq!(normalize("-a.example").unwrap_err(), DomainError::Invalid);
        assert_eq!(normalize("user@example.com").unwrap_err(), DomainError::Invalid);
        assert_eq!(normalize(&"a".repeat(64)).unwrap_err(), DomainError::Invalid);
    }
}
