//! IPv6 header (RFC 8200) and the walk over extension headers that RFC 7915
//! section 5.1 asks for: Hop-by-Hop, Destination Options and Routing headers
//! are skipped (Routing only with Segments Left zero), the Fragment header is
//! read, and whatever follows is the upper layer.

use super::{be16, proto};
use std::net::Ipv6Addr;

/// At most this many extension headers are walked; more is treated as malformed.
const MAX_EXT_HEADERS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Error {
    /// Shorter than 40 bytes, than the payload length says, or an extension header runs off the end.
    Truncated,
    /// Version is not 6, a jumbogram (payload length 0 with data), or too many extension headers.
    Malformed,
    /// A Routing header with Segments Left non-zero; the field is at this packet offset.
    SegmentsLeft(usize),
    /// A Fragment header followed by another extension header (RFC 7915 5.1.1).
    ExtAfterFragment,
}

/// The Fragment header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragHeader {
    /// Offset in 8-byte units.
    pub offset: u16,
    pub more: bool,
    pub ident: u32,
}

/// A validated IPv6 packet: the header, and where its upper layer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Header {
    pub traffic_class: u8,
    pub flow_label: u32,
    /// Payload Length (bytes after the fixed header).
    pub payload_len: usize,
    pub hop_limit: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// Upper-layer protocol after the skipped extension headers.
    pub upper: u8,
    /// Packet offset of the upper-layer header (40 + extension headers).
    pub upper_off: usize,
    pub frag: Option<FragHeader>,
}

impl Ipv6Header {
    /// Offset one past the packet's last byte (40 + Payload Length).
    #[inline]
    pub fn end(&self) -> usize {
        40 + self.payload_len
    }

    /// Parse a whole packet: the buffer must hold at least 40 + Payload Length bytes.
    #[inline(always)]
    pub fn parse(b: &[u8]) -> Result<Self, Ipv6Error> {
        let h = Self::parse_lenient(b)?;
        if h.end() > b.len() {
            return Err(Ipv6Error::Truncated);
        }
        Ok(h)
    }

    /// Parse a packet quoted in an ICMPv6 error: the payload may be cut
    /// short, but the fixed header and the extension headers must be there.
    #[inline(always)]
    pub fn parse_lenient(b: &[u8]) -> Result<Self, Ipv6Error> {
        if b.len() < 40 {
            return Err(Ipv6Error::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(Ipv6Error::Malformed);
        }
        let payload_len = be16(b, 4) as usize;
        let mut next = b[6];
        let mut off = 40;
        let mut frag = None;
        let mut walked = 0;
        loop {
            match next {
                proto::HOP_BY_HOP | proto::DEST_OPTS | proto::ROUTING => {
                    if frag.is_some() {
                        return Err(Ipv6Error::ExtAfterFragment);
                    }
                    let h = b.get(off..off + 8).ok_or(Ipv6Error::Truncated)?;
                    if next == proto::HOP_BY_HOP && off != 40 {
                        return Err(Ipv6Error::Malformed); // RFC 8200 4.1: only first
                    }
                    if next == proto::ROUTING && h[3] != 0 {
                        return Err(Ipv6Error::SegmentsLeft(off + 3));
                    }
                    next = h[0];
                    off += (h[1] as usize + 1) * 8;
                }
                proto::FRAGMENT => {
                    if frag.is_some() {
                        return Err(Ipv6Error::Malformed);
                    }
                    let h = b.get(off..off + 8).ok_or(Ipv6Error::Truncated)?;
                    let fo = be16(h, 2);
                    frag = Some(FragHeader {
                        offset: fo >> 3,
                        more: fo & 1 != 0,
                        ident: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    });
                    next = h[0];
                    off += 8;
                    if frag.is_some_and(|f| f.offset == 0) && is_extension(next) {
                        return Err(Ipv6Error::ExtAfterFragment);
                    }
                }
                _ => break,
            }
            walked += 1;
            if walked > MAX_EXT_HEADERS {
                return Err(Ipv6Error::Malformed);
            }
        }
        if off > 40 + payload_len {
            return Err(Ipv6Error::Truncated);
        }
        if off > b.len() {
            return Err(Ipv6Error::Truncated);
        }
        let mut src = [0u8; 16];
        src.copy_from_slice(&b[8..24]);
        let mut dst = [0u8; 16];
        dst.copy_from_slice(&b[24..40]);
        Ok(Ipv6Header {
            traffic_class: ((be16(b, 0) >> 4) & 0xff) as u8,
            flow_label: u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]]),
            payload_len,
            hop_limit: b[7],
            src: Ipv6Addr::from(src),
            dst: Ipv6Addr::from(dst),
            upper: next,
            upper_off: off,
            frag,
        })
    }

    /// True when the packet is a fragment (a Fragment header with M set or an offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.frag.is_some_and(|f| f.more || f.offset != 0)
    }
}

/// Extension headers that RFC 7915 5.1 does not pass as an upper layer (ESP
/// is carried as a payload; AH is an extension header here).
fn is_extension(nh: u8) -> bool {
    matches!(
        nh,
        proto::HOP_BY_HOP
            | proto::ROUTING
            | proto::FRAGMENT
            | proto::DEST_OPTS
            | proto::AH
            | proto::MOBILITY
            | proto::HIP
            | proto::SHIM6
    )
}

/// Byte offsets of the fixed IPv6 header's fields (RFC 8200 3).
pub mod field {
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// Length of a Fragment header.
pub const FRAG_LEN: usize = 8;

/// The fields of an IPv6 header the translator writes (flow label zero,
/// RFC 7915 4.1): `Ipv6Repr { .. }.emit(buf)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub traffic_class: u8,
    pub payload_len: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
}

impl Ipv6Repr {
    /// Write the 40-byte header into `b[..40]`.
    #[inline(always)]
    pub fn emit(&self, b: &mut [u8]) {
        let h = &mut b[..HEADER_LEN];
        h[0] = 0x60 | (self.traffic_class >> 4);
        h[1] = self.traffic_class << 4; // flow label zero (RFC 7915 4.1)
        h[2] = 0;
        h[3] = 0;
        h[4..6].copy_from_slice(&self.payload_len.to_be_bytes());
        h[6] = self.next_header;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src.octets());
        h[24..40].copy_from_slice(&self.dst.octets());
    }
}

/// A Fragment header to write (RFC 8200 4.5): `FragRepr { .. }.emit(buf)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragRepr {
    pub next_header: u8,
    /// Offset in 8-byte units.
    pub offset: u16,
    pub more: bool,
    pub ident: u32,
}

impl FragRepr {
    /// Write the 8-byte Fragment header into `b[..8]`.
    #[inline(always)]
    pub fn emit(&self, b: &mut [u8]) {
        let b = &mut b[..FRAG_LEN];
        b[0] = self.next_header;
        b[1] = 0;
        b[2..4].copy_from_slice(&((self.offset << 3) | self.more as u16).to_be_bytes());
        b[4..8].copy_from_slice(&self.ident.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 40];
        Ipv6Repr {
            traffic_class: 0xb8,
            payload_len: payload.len() as u16,
            next_header: next,
            hop_limit: 64,
            src: "2001:db8::1".parse().unwrap(),
            dst: "64:ff9b::c633:6407".parse().unwrap(),
        }
        .emit(&mut b);
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn parses_fixed_header() {
        let b = base(17, &[0u8; 8]);
        let h = Ipv6Header::parse(&b).unwrap();
        assert_eq!(
            (h.traffic_class, h.flow_label, h.payload_len, h.hop_limit, h.upper, h.upper_off),
            (0xb8, 0, 8, 64, 17, 40)
        );
    }

    // RFC 7915 5.1: Hop-by-Hop, Destination Options and Routing (Segments Left 0) are skipped.
    #[test]
    fn rfc7915_5_1_skips_extension_headers() {
        let mut p = vec![proto::DEST_OPTS, 0, 1, 4, 0, 0, 0, 0];
        p.extend_from_slice(&[proto::ROUTING, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&[proto::UDP, 0, 0, 0, 0, 0, 0, 0]); // routing type 0, segments left 0
        p.extend_from_slice(&[0u8; 8]);
        let h = Ipv6Header::parse(&base(proto::HOP_BY_HOP, &p)).unwrap();
        assert_eq!((h.upper, h.upper_off), (proto::UDP, 64));
    }

    // RFC 7915 5.1: a Routing header with Segments Left non-zero is an error at that field.
    #[test]
    fn rfc7915_5_1_segments_left_nonzero() {
        let p = [proto::UDP, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(Ipv6Header::parse(&base(proto::ROUTING, &p)), Err(Ipv6Error::SegmentsLeft(43)));
    }

    #[test]
    fn reads_fragment_header() {
        let mut p = vec![0u8; 8];
        FragRepr { next_header: proto::UDP, offset: 185, more: true, ident: 0xdead_beef }.emit(&mut p);
        p.extend_from_slice(&[0u8; 16]);
        let h = Ipv6Header::parse(&base(proto::FRAGMENT, &p)).unwrap();
        assert_eq!(h.frag, Some(FragHeader { offset: 185, more: true, ident: 0xdead_beef }));
        assert!(h.is_fragment());
        assert_eq!(h.upper_off, 48);
    }

    #[test]
    fn truncation_and_ext_overrun() {
        let b = base(17, &[0u8; 8]);
        assert_eq!(Ipv6Header::parse(&b[..47]), Err(Ipv6Error::Truncated));
        assert_eq!(Ipv6Header::parse(&b[..39]), Err(Ipv6Error::Truncated));
        // A Destination Options header claiming 16 bytes in an 8-byte payload.
        let b = base(proto::DEST_OPTS, &[17, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Ipv6Header::parse(&b), Err(Ipv6Error::Truncated));
    }
}
