//! The PROXY protocol version 2 header (binary form), sent first on an upstream connection
//! when the operator configured it, so a server behind the gateway sees the real client address.
//!
//! Pure encoding; the caller writes the bytes.

use std::net::{IpAddr, SocketAddr};

/// The 12-byte signature that starts every v2 header.
const SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
/// Version 2, command PROXY.
const VERSION_PROXY: u8 = 0x21;
/// TCP over IPv4.
const TCP4: u8 = 0x11;
/// TCP over IPv6.
const TCP6: u8 = 0x21;

fn v6(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The header for a connection from `client` (as seen by the gateway) to `server`. When the
/// two are of different families, both are written as IPv6 (IPv4-mapped).
pub fn header_v2(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION_PROXY);
    match (client.ip(), server.ip()) {
        (IpAddr::V4(source), IpAddr::V4(destination)) => {
            out.push(TCP4);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&source.octets());
            out.extend_from_slice(&destination.octets());
        }
        (source, destination) => {
            out.push(TCP6);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(source));
            out.extend_from_slice(&v6(destination));
        }
    }
    out.extend_from_slice(&client.port().to_be_bytes());
    out.extend_from_slice(&server.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_layout() {
        let header = header_v2("192.0.2.10:40000".parse().unwrap(), "127.0.0.1:5222".parse().unwrap());
        assert_eq!(header.len(), 28);
        assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(&header[12..16], &[0x21, 0x11, 0x00, 0x0C]);
        assert_eq!(&header[16..20], &[192, 0, 2, 10]);
        assert_eq!(&header[20..24], &[127, 0, 0, 1]);
        assert_eq!(&header[24..26], &40000u16.to_be_bytes());
        assert_eq!(&header[26..28], &5222u16.to_be_bytes());
    }

    #[test]
    fn mixed_families_become_ipv6() {
        let header = header_v2("[2001:db8::1]:443".parse().unwrap(), "127.0.0.1:5222".parse().unwrap());
        assert_eq!(header.len(), 16 + 36);
        assert_eq!(&header[12..16], &[0x21, 0x21, 0x00, 0x24]);
        assert_eq!(&header[32..48], &"::ffff:127.0.0.1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    }
}
