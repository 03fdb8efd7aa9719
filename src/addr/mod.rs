//! RFC 6052 IPv4-embedded IPv6 addresses: a validated prefix (section 2.2
//! lengths /32 /40 /48 /56 /64 /96, u-octet zero) that embeds and extracts an
//! IPv4 address, and the section 3.1 rule on the well-known prefix.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

pub mod net;
pub use net::{in_net4, in_net6, IpNet, Net4, Net6, NetError};

/// The well-known prefix 64:ff9b::/96 (RFC 6052 section 2.1).
pub const WELL_KNOWN: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);

/// Why a prefix is not an RFC 6052 prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("'{0}' is not of the form ADDRESS/LENGTH, e.g. 64:ff9b::/96")]
    Syntax(String),
    #[error("prefix length /{0} is not one RFC 6052 section 2.2 allows (32, 40, 48, 56, 64 or 96)")]
    Length(u8),
    #[error("bits 64 to 71 (the u octet) of {0} must be zero (RFC 6052 section 2.2)")]
    UOctet(Ipv6Addr),
    #[error("{addr}/{len} has bits set beyond the prefix length")]
    HostBits { addr: Ipv6Addr, len: u8 },
}

/// An RFC 6052 translation prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix6052 {
    /// The prefix as a number, host bits zero.
    bits: u128,
    /// Ones over the prefix bits.
    mask: u128,
    len: u8,
}

const fn mask_of(len: u8) -> u128 {
    !(u128::MAX >> len)
}

impl Prefix6052 {
    /// The well-known prefix 64:ff9b::/96.
    pub const WKP: Prefix6052 =
        Prefix6052 { bits: u128::from_be_bytes(WELL_KNOWN.octets()), mask: mask_of(96), len: 96 };

    /// Validate `addr/len` as an RFC 6052 prefix.
    pub fn new(addr: Ipv6Addr, len: u8) -> Result<Self, PrefixError> {
        if !matches!(len, 32 | 40 | 48 | 56 | 64 | 96) {
            return Err(PrefixError::Length(len));
        }
        let bytes = addr.octets();
        let keep = len as usize / 8;
        if bytes[keep..].iter().any(|&b| b != 0) {
            return Err(PrefixError::HostBits { addr, len });
        }
        if len == 96 && bytes[8] != 0 {
            return Err(PrefixError::UOctet(addr));
        }
        Ok(Prefix6052 { bits: u128::from(addr), mask: mask_of(len), len })
    }

    pub fn addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.bits)
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// True for 64:ff9b::/96, which may carry only global IPv4 addresses.
    #[inline(always)]
    pub fn is_well_known(&self) -> bool {
        self.bits == Self::WKP.bits && self.len == 96
    }

    /// Embed `v4` under this prefix (suffix zero).
    #[inline(always)]
    pub fn embed(&self, v4: Ipv4Addr) -> Ipv6Addr {
        let v = u32::from(v4) as u128;
        // Section 2.2: the IPv4 bits fill the bits after the prefix, skipping
        // bits 64-71 (the u octet). Counting bit positions from the right of
        // the 128-bit address: the u octet is bits 56..64.
        let placed = match self.len {
            32 => v << 64,
            40 => ((v >> 8) << 64) | ((v & 0xff) << 48),
            48 => ((v >> 16) << 64) | ((v & 0xffff) << 40),
            56 => ((v >> 24) << 64) | ((v & 0xff_ffff) << 32),
            64 => v << 24,
            _ => v,
        };
        Ipv6Addr::from(self.bits | placed)
    }

    /// True when `a` lies under this prefix.
    #[inline(always)]
    pub fn contains(&self, a: &Ipv6Addr) -> bool {
        u128::from(*a) & self.mask == self.bits
    }

    /// Extract the embedded IPv4 address, or None when `a` is not under the
    /// prefix. Bits of the u octet and of the suffix are ignored on input, as
    /// section 2.2 tells receivers to do.
    #[inline(always)]
    pub fn extract(&self, a: &Ipv6Addr) -> Option<Ipv4Addr> {
        if !self.contains(a) {
            return None;
        }
        let a = u128::from(*a);
        let hi = |bits: u32| ((a >> 64) as u32) & ((1u32 << bits) - 1);
        let v = match self.len {
            32 => (a >> 64) as u32,
            40 => (hi(24) << 8) | ((a >> 48) as u32 & 0xff),
            48 => (hi(16) << 16) | ((a >> 40) as u32 & 0xffff),
            56 => (hi(8) << 24) | ((a >> 32) as u32 & 0xff_ffff),
            64 => (a >> 24) as u32,
            _ => a as u32,
        };
        Some(Ipv4Addr::from(v))
    }
}

impl fmt::Display for Prefix6052 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

impl FromStr for Prefix6052 {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = s.split_once('/').ok_or_else(|| PrefixError::Syntax(s.to_string()))?;
        let addr: Ipv6Addr = a.trim().parse().map_err(|_| PrefixError::Syntax(s.to_string()))?;
        let len: u8 = l.trim().parse().map_err(|_| PrefixError::Syntax(s.to_string()))?;
        Prefix6052::new(addr, len)
    }
}

/// True when a server can have `a` (RFC 4291 2.5.2, 2.5.3, 2.5.6, 2.7):
/// not unspecified, loopback, multicast or link-local. Static BIB entries
/// and the inbound proxy's backends both need one.
pub fn is_server_v6(a: Ipv6Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_unicast_link_local())
}

/// True when `a` is a global unicast IPv4 address: not in any of the
/// special-purpose ranges RFC 6052 section 3.1 keeps out of the well-known
/// prefix (RFC 1918 private space, loopback, link-local, shared CGN space,
/// this-network, IETF protocol assignments, documentation, benchmarking,
/// multicast, reserved and broadcast).
pub fn is_global_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    let v = u32::from(a);
    let in_net = |net: u32, len: u32| (v ^ net) >> (32 - len) == 0;
    !(o[0] == 0                                   // 0.0.0.0/8 this network
        || o[0] == 10                             // 10.0.0.0/8
        || in_net(0x6440_0000, 10)                // 100.64.0.0/10 shared address space
        || o[0] == 127                            // loopback
        || in_net(0xa9fe_0000, 16)                // 169.254.0.0/16 link local
        || in_net(0xac10_0000, 12)                // 172.16.0.0/12
        || in_net(0xc000_0000, 24)                // 192.0.0.0/24 IETF protocol assignments
        || in_net(0xc000_0200, 24)                // 192.0.2.0/24 TEST-NET-1
        || in_net(0xc0a8_0000, 16)                // 192.168.0.0/16
        || in_net(0xc612_0000, 15)                // 198.18.0.0/15 benchmarking
        || in_net(0xc633_6400, 24)                // 198.51.100.0/24 TEST-NET-2
        || in_net(0xcb00_7100, 24)                // 203.0.113.0/24 TEST-NET-3
        || o[0] >= 224) // multicast, reserved, broadcast
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix6052 {
        s.parse().unwrap()
    }

    const V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 33);

    // RFC 6052 section 2.4: every row of the example table embeds 192.0.2.33.
    #[test]
    fn rfc6052_2_4_examples_embed_and_extract() {
        let rows = [
            ("2001:db8::/32", "2001:db8:c000:221::"),
            ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
            ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
            ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
            ("64:ff9b::/96", "64:ff9b::192.0.2.33"),
        ];
        for (prefix, expect) in rows {
            let pf = p(prefix);
            let want: Ipv6Addr = expect.parse().unwrap();
            assert_eq!(pf.embed(V4), want, "embed under {prefix}");
            assert_eq!(pf.extract(&want), Some(V4), "extract under {prefix}");
        }
    }

    // RFC 6052 section 2.2: only the six lengths are valid.
    #[test]
    fn rfc6052_2_2_rejects_other_lengths() {
        for len in [0u8, 8, 31, 33, 72, 80, 95, 97, 128] {
            assert_eq!(Prefix6052::new("2001:db8::".parse().unwrap(), len), Err(PrefixError::Length(len)));
        }
    }

    // RFC 6052 section 2.2: bits 64-71 must be zero in a /96 prefix.
    #[test]
    fn rfc6052_2_2_rejects_nonzero_u_octet() {
        let e = "2001:db8:0:0:ff00::/96".parse::<Prefix6052>().unwrap_err();
        assert!(matches!(e, PrefixError::UOctet(_)), "{e}");
        assert!(e.to_string().contains("u octet"));
    }

    #[test]
    fn rejects_host_bits_and_bad_syntax() {
        assert!(matches!("2001:db8::1/64".parse::<Prefix6052>(), Err(PrefixError::HostBits { .. })));
        assert!(matches!("2001:db8::".parse::<Prefix6052>(), Err(PrefixError::Syntax(_))));
        assert!(matches!("2001:db8::/x".parse::<Prefix6052>(), Err(PrefixError::Syntax(_))));
    }

    // RFC 6052 section 2.2: the u octet and suffix are ignored when extracting.
    #[test]
    fn rfc6052_2_2_extract_ignores_u_octet_and_suffix() {
        let a: Ipv6Addr = "2001:db8:122:344:ffc0:2:2100:ffff".parse().unwrap();
        assert_eq!(p("2001:db8:122:344::/64").extract(&a), Some(V4));
    }

    #[test]
    fn extract_outside_prefix_is_none() {
        assert_eq!(Prefix6052::WKP.extract(&"2001:db8::1".parse().unwrap()), None);
    }

    // RFC 6052 section 3.1: non-global IPv4 addresses are not global.
    #[test]
    fn rfc6052_3_1_global_ranges() {
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.1.2.3",
            "192.0.2.1",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "192.0.0.170",
        ] {
            assert!(!is_global_v4(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "198.20.0.1"] {
            assert!(is_global_v4(a.parse().unwrap()), "{a}");
        }
    }
}
