//! IPv4 header (RFC 791): validated once, then read by field.

use super::{be16, checksum};
use std::net::Ipv4Addr;

/// What is wrong with an IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Error {
    /// Shorter than 20 bytes, or than IHL × 4, or than Total Length.
    Truncated,
    /// Version is not 4, IHL below 5, or Total Length below IHL × 4.
    Malformed,
    /// The header checksum does not verify.
    Checksum,
}

/// A validated IPv4 header; `total_len` bytes of the buffer are the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    pub header_len: usize,
    /// Total Length; trailing bytes of the buffer beyond it (link padding) are ignored.
    pub total_len: usize,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Ipv4Header {
    /// Parse and validate the header of a whole packet (lengths and checksum).
    #[inline]
    pub fn parse(b: &[u8]) -> Result<Self, Ipv4Error> {
        let h = Self::parse_lenient(b)?;
        if h.total_len > b.len() {
            return Err(Ipv4Error::Truncated);
        }
        if checksum::checksum(&b[..h.header_len]) != 0 {
            return Err(Ipv4Error::Checksum);
        }
        Ok(h)
    }

    /// Parse the header of a packet quoted in an ICMP error: the header must
    /// be whole, but the rest may be cut short and the checksum is not checked.
    #[inline]
    pub fn parse_lenient(b: &[u8]) -> Result<Self, Ipv4Error> {
        if b.len() < 20 {
            return Err(Ipv4Error::Truncated);
        }
        if b[0] >> 4 != 4 {
            return Err(Ipv4Error::Malformed);
        }
        let header_len = ((b[0] & 0x0f) as usize) * 4;
        let total_len = be16(b, 2) as usize;
        if header_len < 20 || total_len < header_len {
            return Err(Ipv4Error::Malformed);
        }
        if b.len() < header_len {
            return Err(Ipv4Error::Truncated);
        }
        let flags = be16(b, 6);
        Ok(Ipv4Header {
            header_len,
            total_len,
            tos: b[1],
            ident: be16(b, 4),
            dont_frag: flags & 0x4000 != 0,
            more_frags: flags & 0x2000 != 0,
            frag_offset: flags & 0x1fff,
            ttl: b[8],
            protocol: b[9],
            src: Ipv4Addr::new(b[12], b[13], b[14], b[15]),
            dst: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
        })
    }

    /// True for any fragment (first, middle or last).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.more_frags || self.frag_offset != 0
    }

    /// RFC 7915 4.1: an unexpired Loose or Strict Source Route option
    /// (pointer not past the option's end) means the packet must be dropped.
    /// Returns the header offset of that option's pointer byte, if any.
    pub fn unexpired_source_route(b: &[u8], header_len: usize) -> Option<usize> {
        let opts = b.get(20..header_len)?;
        let mut i = 0;
        while i < opts.len() {
            match opts[i] {
                0 => break,  // end of option list
                1 => i += 1, // no-operation
                kind => {
                    let len = *opts.get(i + 1)? as usize;
                    if len < 2 || i + len > opts.len() {
                        return None; // malformed options: nothing to honour
                    }
                    if (kind == 131 || kind == 137) && len >= 3 {
                        let ptr = opts[i + 2] as usize;
                        if ptr <= len {
                            return Some(20 + i + 2);
                        }
                    }
                    i += len;
                }
            }
        }
        None
    }
}

/// Byte offsets of the fixed IPv4 header's fields (RFC 791 3.1).
pub mod field {
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS: usize = 6;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// Length of an IPv4 header without options (what the translator writes).
pub const HEADER_LEN: usize = 20;

/// The fields of an IPv4 header the translator writes (no options):
/// `Ipv4Repr { .. }.emit(buf)`, so no two fields can be swapped by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub tos: u8,
    pub total_len: u16,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Ipv4Repr {
    /// Write the 20-byte header with its checksum into `b[..20]`.
    #[inline(always)]
    pub fn emit(&self, b: &mut [u8]) {
        let flags = ((self.dont_frag as u16) << 14) | ((self.more_frags as u16) << 13) | (self.frag_offset & 0x1fff);
        let h = &mut b[..HEADER_LEN];
        h[0] = 0x45;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&self.total_len.to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        h[6..8].copy_from_slice(&flags.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        // The header checksum from the field values, without reading the bytes back.
        let sum = (0x4500 | self.tos as u32)
            + self.total_len as u32
            + self.ident as u32
            + flags as u32
            + ((self.ttl as u32) << 8 | self.protocol as u32)
            + checksum::sum_addr4(self.src)
            + checksum::sum_addr4(self.dst);
        h[10..12].copy_from_slice(&checksum::finish(sum).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut b = vec![0u8; 28];
        Ipv4Repr {
            tos: 0x10,
            total_len: 28,
            ident: 0x1234,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            ttl: 64,
            protocol: 17,
            src: Ipv4Addr::new(198, 51, 100, 7),
            dst: Ipv4Addr::new(203, 0, 113, 5),
        }
        .emit(&mut b);
        b
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let b = sample();
        let h = Ipv4Header::parse(&b).unwrap();
        assert_eq!(
            (h.header_len, h.total_len, h.tos, h.ident, h.dont_frag, h.ttl, h.protocol),
            (20, 28, 0x10, 0x1234, true, 64, 17)
        );
        assert_eq!(h.src, Ipv4Addr::new(198, 51, 100, 7));
    }

    #[test]
    fn rejects_bad_checksum_short_and_bad_lengths() {
        let mut b = sample();
        b[8] = 63;
        assert_eq!(Ipv4Header::parse(&b), Err(Ipv4Error::Checksum));
        assert_eq!(Ipv4Header::parse(&sample()[..19]), Err(Ipv4Error::Truncated));
        assert_eq!(Ipv4Header::parse(&sample()[..27]), Err(Ipv4Error::Truncated));
        let mut b = sample();
        b[0] = 0x44; // IHL 4
        assert_eq!(Ipv4Header::parse(&b), Err(Ipv4Error::Malformed));
    }

    // RFC 791 3.1: LSRR (131) with pointer <= length is unexpired.
    #[test]
    fn finds_unexpired_source_route() {
        let mut b = vec![0u8; 32];
        b[0] = 0x48;
        b[20..31].copy_from_slice(&[1, 131, 11, 4, 192, 0, 2, 1, 192, 0, 2]);
        assert_eq!(Ipv4Header::unexpired_source_route(&b, 32), Some(23));
        b[23] = 12; // pointer past the end: expired
        assert_eq!(Ipv4Header::unexpired_source_route(&b, 32), None);
    }
}
