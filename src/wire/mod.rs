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

/// Read a big-endian u16 at `off`; callers have checked the bounds.
#[inline(always)]
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

#[inline(always)]
pub(crate) fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}
