//! The PROXY protocol version 2 header (HAProxy's "The PROXY protocol",
//! section 2.2): the 12-byte signature, version 2 with the PROXY command,
//! the address family and transport, the length of what follows, then the
//! source and destination addresses and ports. The backend reads it before
//! the client's first byte and logs the visitor's address.

use std::net::SocketAddr;

/// The signature every version 2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest header written here: TCP over IPv6, no TLVs.
pub const MAX_LEN: usize = 16 + 36;

/// Write the header for a TCP connection from `client` to `local` (the
/// address the visitor connected to) into `out`; the bytes written. Both
/// must be of one family; an IPv4 visitor on an IPv4 listener is the usual
/// case. A mixed pair is written as IPv6 with the IPv4 side mapped.
pub fn encode(client: SocketAddr, local: SocketAddr, out: &mut [u8; MAX_LEN]) -> usize {
    out[..12].copy_from_slice(&SIGNATURE);
    // Version 2 (high nibble), command PROXY (1).
    out[12] = 0x21;
    match (client, local) {
        (SocketAddr::V4(c), SocketAddr::V4(l)) => {
            // AF_INET (1) << 4 | STREAM (1); 12 bytes of addresses and ports.
            out[13] = 0x11;
            out[14..16].copy_from_slice(&12u16.to_be_bytes());
            out[16..20].copy_from_slice(&c.ip().octets());
            out[20..24].copy_from_slice(&l.ip().octets());
            out[24..26].copy_from_slice(&c.port().to_be_bytes());
            out[26..28].copy_from_slice(&l.port().to_be_bytes());
            28
        }
        _ => {
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V4(v) => v.ip().to_ipv6_mapped(),
                SocketAddr::V6(v) => *v.ip(),
            };
            // AF_INET6 (2) << 4 | STREAM (1); 36 bytes.
            out[13] = 0x21;
            out[14..16].copy_from_slice(&36u16.to_be_bytes());
            out[16..32].copy_from_slice(&v6(client).octets());
            out[32..48].copy_from_slice(&v6(local).octets());
            out[48..50].copy_from_slice(&client.port().to_be_bytes());
            out[50..52].copy_from_slice(&local.port().to_be_bytes());
            52
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // PROXY protocol 2.2: an IPv4 visitor's header, byte for byte.
    #[test]
    fn proxy_v2_2_2_tcp_over_ipv4() {
        let mut out = [0u8; MAX_LEN];
        let n = encode("198.51.100.7:40123".parse().unwrap(), "192.0.2.1:443".parse().unwrap(), &mut out);
        let want = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
            0x21, 0x11, 0x00, 0x0c, // v2 PROXY, TCP over IPv4, 12 bytes
            198, 51, 100, 7, 192, 0, 2, 1, // source, destination
            0x9c, 0xbb, 0x01, 0xbb, // 40123, 443
        ];
        assert_eq!(&out[..n], &want[..]);
    }

    // PROXY protocol 2.2: IPv6, and a mixed pair as IPv6 with the IPv4 side mapped.
    #[test]
    fn proxy_v2_2_2_tcp_over_ipv6() {
        let mut out = [0u8; MAX_LEN];
        let n = encode("[2001:db8::7]:5000".parse().unwrap(), "[2001:db8::1]:80".parse().unwrap(), &mut out);
        assert_eq!(n, 52);
        assert_eq!(&out[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(out[16..32], "2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(&out[48..52], &[0x13, 0x88, 0, 80]);
        let n = encode("192.0.2.9:1".parse().unwrap(), "[2001:db8::1]:80".parse().unwrap(), &mut out);
        assert_eq!(n, 52);
        assert_eq!(out[16..32], "::ffff:192.0.2.9".parse::<std::net::Ipv6Addr>().unwrap().octets());
    }
}
