//! Zero-copy parsing of the IPv4 and IPv6 headers the translator reads:
//! validation happens once here, so the translator indexes checked offsets.
//! Checksum arithmetic lives in [`checksum`].

pub mod checksum;
pub mod ipv4;
pub mod ipv6;

pub use ipv4::{Ipv4Error, Ipv4Header};
pub use ipv6::{Ipv6Error, Ipv6Header};

/// IP protocol numbers used by the translator.
pub mod proto {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const NO_NEXT: u8 = 59;
    pub const DEST_OPTS: u8 = 60;
    pub const MOBILITY: u8 = 135;
    pub const HIP: u8 = 139;
    pub const SHIM6: u8 = 140;
}

/// TCP header fields (RFC 9293 3.1): byte offsets and flag bits.
pub mod tcp {
    pub const SEQ: usize = 4;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const CHECKSUM: usize = 16;
    /// Length of a TCP header without options.
    pub const MIN_LEN: usize = 20;
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const CWR: u8 = 0x80;
}

/// UDP header fields (RFC 768): byte offsets.
pub mod udp {
    pub const LEN: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const HEADER_LEN: usize = 8;
}

/// Read a big-endian u16 at `off`; callers have checked the bounds.
#[inline(always)]
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

#[inline(always)]
pub(crate) fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}
