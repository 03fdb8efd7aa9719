//! TUN offloads (IFF_VNET_HDR with TUNSETOFFLOAD): every packet read or
//! written carries a 10-byte virtio-net header (`struct virtio_net_hdr`,
//! little-endian on the hosts TUN offloads exist on). With offloads on the
//! kernel hands over TCP and UDP super-packets (GSO) of up to 64 KB whose
//! transport checksum is only partial (the pseudo-header sum, to be
//! completed over `csum_start..`), and segments what we hand back.
//!
//! Pure code over byte slices, like the rest of the core: parse and emit
//! the header, locate the transport header, complete a partial checksum in
//! software, write the pseudo-header sum a translated super-packet needs,
//! and segment a super-packet in software (the fallback when its segments
//! would not fit the other side's MTU after translation).

use crate::wire::ipv4::{self, field as f4};
use crate::wire::ipv6::{self, field as f6};
use crate::wire::{be16, checksum, proto, put16, tcp, udp};
use std::net::{Ipv4Addr, Ipv6Addr};

pub const VNET_HDR_LEN: usize = 10;
/// The transport checksum is partial: complete it over csum_start.. .
pub const F_NEEDS_CSUM: u8 = 1;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
pub const GSO_ECN: u8 = 0x80;

/// `struct virtio_net_hdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Length of the headers (IP + transport) of each segment.
    pub hdr_len: u16,
    /// Transport payload per segment.
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        })
    }

    pub fn emit(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }
}

/// Where a TCP or UDP packet's transport header is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L4 {
    pub v6: bool,
    /// Length of the IP header (IPv4 with options; IPv6 without extension headers).
    pub l3_len: usize,
    /// 6 or 17.
    pub proto: u8,
    pub l4_hdr_len: usize,
}

impl L4 {
    pub fn hdr_len(&self) -> usize {
        self.l3_len + self.l4_hdr_len
    }
    /// Offset of the checksum within the transport header.
    pub fn csum_offset(&self) -> usize {
        if self.proto == proto::TCP {
            tcp::CHECKSUM
        } else {
            udp::CHECKSUM
        }
    }
    /// Where the transport header is once the translator has rewritten the
    /// packet in place: behind a bare header of the other family (RFC 7915
    /// writes IPv4 without options, IPv6 without extension headers for an
    /// unfragmented packet), the transport header itself unchanged.
    pub fn translated(&self) -> L4 {
        let l3_len = if self.v6 { ipv4::HEADER_LEN } else { ipv6::HEADER_LEN };
        L4 { v6: !self.v6, l3_len, ..*self }
    }
}

/// Locate the transport header of an unfragmented TCP or UDP packet whose
/// IP lengths match the buffer (IPv6: no extension headers). None otherwise.
pub fn locate(pkt: &[u8]) -> Option<L4> {
    /// MF and the fragment offset: any of them set makes a fragment.
    const FRAGMENT_BITS: u16 = 0x3fff;
    let (v6, l3_len, proto, total) = match pkt.first()? >> 4 {
        4 => {
            let ihl = (pkt[0] & 0x0f) as usize * 4;
            if ihl < ipv4::HEADER_LEN || pkt.len() < ihl {
                return None;
            }
            if be16(pkt, f4::FLAGS) & FRAGMENT_BITS != 0 {
                return None;
            }
            (false, ihl, pkt[f4::PROTOCOL], be16(pkt, f4::TOTAL_LEN) as usize)
        }
        6 if pkt.len() >= ipv6::HEADER_LEN => {
            (true, ipv6::HEADER_LEN, pkt[f6::NEXT_HEADER], ipv6::HEADER_LEN + be16(pkt, f6::PAYLOAD_LEN) as usize)
        }
        _ => return None,
    };
    if total != pkt.len() {
        return None;
    }
    let l4_hdr_len = match proto {
        proto::TCP => (*pkt.get(l3_len + tcp::DATA_OFFSET)? >> 4) as usize * 4,
        proto::UDP => udp::HEADER_LEN,
        _ => return None,
    };
    if (proto == proto::TCP && l4_hdr_len < tcp::MIN_LEN) || pkt.len() < l3_len + l4_hdr_len {
        return None;
    }
    Some(L4 { v6, l3_len, proto, l4_hdr_len })
}

/// The DF bit of an IPv4 packet (false for IPv6 or a short buffer).
pub fn dont_frag(pkt: &[u8]) -> bool {
    const DF: u16 = 0x4000;
    pkt.first().is_some_and(|b| b >> 4 == 4) && pkt.len() >= ipv4::HEADER_LEN && be16(pkt, f4::FLAGS) & DF != 0
}

/// Complete a partial checksum in software, as a device would: the
/// one's-complement sum of `pkt[start..]` (the field holding the
/// pseudo-header sum) stored, complemented, at `start + offset`.
/// False when the positions do not fit the packet.
pub fn complete_csum(pkt: &mut [u8], start: usize, offset: usize) -> bool {
    let at = start.saturating_add(offset);
    if at.saturating_add(2) > pkt.len() || start >= pkt.len() {
        return false;
    }
    let mut c = !checksum::fold32(checksum::sum(0, &pkt[start..]));
    // A UDP checksum of zero means "none": send all ones instead (RFC 768).
    if c == 0 && offset == udp::CHECKSUM {
        c = 0xffff;
    }
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

fn addrs4(pkt: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    let a = |o: usize| Ipv4Addr::new(pkt[o], pkt[o + 1], pkt[o + 2], pkt[o + 3]);
    (a(f4::SRC), a(f4::DST))
}

fn addrs6(pkt: &[u8]) -> (Ipv6Addr, Ipv6Addr) {
    let a = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[o..o + 16]).unwrap_or([0; 16]));
    (a(f6::SRC), a(f6::DST))
}

/// The pseudo-header sum (folded, not complemented) of a packet's transport
/// segment of `l4_len` bytes: what a partial checksum field holds.
fn pseudo(pkt: &[u8], l4: &L4, l4_len: usize) -> u16 {
    let s = if l4.v6 {
        let (s, d) = addrs6(pkt);
        checksum::pseudo_v6(s, d, l4.proto, l4_len as u32)
    } else {
        let (s, d) = addrs4(pkt);
        checksum::pseudo_v4(s, d, l4.proto, l4_len as u16)
    };
    checksum::fold32(s)
}

/// Write the partial checksum (pseudo-header sum over the whole transport
/// length) a super-packet needs after translation: its addresses changed
/// family, and the translator's incremental update assumes a complete sum.
pub fn set_partial(pkt: &mut [u8], l4: &L4) {
    let p = pseudo(pkt, l4, pkt.len() - l4.l3_len);
    let at = l4.l3_len + l4.csum_offset();
    pkt[at..at + 2].copy_from_slice(&p.to_be_bytes());
}

/// The virtio-net header to hand back with a translated super-packet.
pub fn translated_hdr(inp: &VnetHdr, out: &L4) -> VnetHdr {
    let base = match (out.proto, out.v6) {
        (proto::TCP, false) => GSO_TCPV4,
        (proto::TCP, true) => GSO_TCPV6,
        _ => GSO_UDP_L4,
    };
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: base | (inp.gso_type & GSO_ECN),
        hdr_len: out.hdr_len() as u16,
        gso_size: inp.gso_size,
        csum_start: out.l3_len as u16,
        csum_offset: out.csum_offset() as u16,
    }
}

/// True when `hdr` describes a super-packet the translator can carry whole:
/// partial checksum at the transport header, and a GSO type that matches
/// the packet's family and protocol.
pub fn gso_consistent(hdr: &VnetHdr, l4: &L4) -> bool {
    let want = match (l4.proto, l4.v6) {
        (proto::TCP, false) => GSO_TCPV4,
        (proto::TCP, true) => GSO_TCPV6,
        _ => GSO_UDP_L4,
    };
    hdr.flags & F_NEEDS_CSUM != 0
        && hdr.gso_type & !GSO_ECN == want
        && hdr.gso_size > 0
        && hdr.csum_start as usize == l4.l3_len
        && hdr.csum_offset as usize == l4.csum_offset()
}

/// Segments a super-packet of `len` bytes splits into.
pub fn segment_count(l4: &L4, len: usize, gso_size: usize) -> usize {
    (len - l4.hdr_len()).div_ceil(gso_size.max(1)).max(1)
}

/// Software GSO: write segment `i` of super-packet `pkt` into `out` as a
/// standalone packet with complete checksums; returns its length, or None
/// when `i` is past the last segment or `out` is too small.
/// TCP: sequence number advanced, FIN and PSH only on the last segment, CWR
/// only on the first. IPv4: Identification advanced, header checksum redone.
pub fn segment(pkt: &[u8], l4: &L4, gso_size: usize, i: usize, out: &mut [u8]) -> Option<usize> {
    let h = l4.hdr_len();
    let payload = pkt.len().checked_sub(h)?;
    let gso = gso_size.max(1);
    let n = segment_count(l4, pkt.len(), gso);
    if i >= n {
        return None;
    }
    let from = h + i * gso;
    let chunk = gso.min(pkt.len() - from).min(payload);
    let len = h + chunk;
    let o = out.get_mut(..len)?;
    o[..h].copy_from_slice(&pkt[..h]);
    o[h..].copy_from_slice(&pkt[from..from + chunk]);
    let l4_len = len - l4.l3_len;
    if l4.v6 {
        put16(o, f6::PAYLOAD_LEN, l4_len as u16);
    } else {
        put16(o, f4::TOTAL_LEN, len as u16);
        put16(o, f4::IDENT, be16(o, f4::IDENT).wrapping_add(i as u16));
        put16(o, f4::CHECKSUM, 0);
        let c = checksum::checksum(&o[..l4.l3_len]);
        put16(o, f4::CHECKSUM, c);
    }
    let t = l4.l3_len;
    if l4.proto == proto::TCP {
        let s = t + tcp::SEQ;
        let seq = u32::from_be_bytes([o[s], o[s + 1], o[s + 2], o[s + 3]]).wrapping_add((i * gso) as u32);
        o[s..s + 4].copy_from_slice(&seq.to_be_bytes());
        if i + 1 < n {
            o[t + tcp::FLAGS] &= !(tcp::FIN | tcp::PSH); // last segment only
        }
        if i > 0 {
            o[t + tcp::FLAGS] &= !tcp::CWR; // first segment only
        }
    } else {
        put16(o, t + udp::LEN, l4_len as u16);
    }
    let at = t + l4.csum_offset();
    let p = pseudo(o, l4, l4_len);
    o[at..at + 2].copy_from_slice(&p.to_be_bytes());
    complete_csum(o, t, l4.csum_offset());
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpkt::{tcp, udp, v4_checksums_ok, v6_checksums_ok, V4, V6};

    const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
    const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xc000, 0x202);
    const A4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    const B4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    /// Turn a packet with a complete checksum into what the kernel hands over:
    /// the field holding only the pseudo-header sum.
    fn make_partial(pkt: &mut [u8]) -> L4 {
        let l4 = locate(pkt).unwrap();
        set_partial(pkt, &l4);
        l4
    }

    #[test]
    fn header_round_trip_little_endian() {
        let h = VnetHdr {
            flags: 1,
            gso_type: GSO_TCPV6 | GSO_ECN,
            hdr_len: 72,
            gso_size: 1428,
            csum_start: 40,
            csum_offset: 16,
        };
        let b = h.emit();
        assert_eq!(b, [1, 0x84, 72, 0, 0x94, 0x05, 40, 0, 16, 0]);
        assert_eq!(VnetHdr::parse(&b), Some(h));
        assert!(h.is_gso());
        assert_eq!(VnetHdr::parse(&b[..9]), None);
    }

    #[test]
    fn completing_a_partial_checksum_gives_the_real_one() {
        let full = V6::new(A6, B6, 6, tcp(40000, 80, 7, 0x18, &[0xab; 3000])).build();
        let mut p = full.clone();
        let l4 = make_partial(&mut p);
        assert_ne!(p, full);
        assert!(complete_csum(&mut p, l4.l3_len, l4.csum_offset()));
        assert_eq!(p, full);
        let full = V4::new(A4, B4, 17, udp(5000, 53, &[1; 999])).build();
        let mut p = full.clone();
        let l4 = make_partial(&mut p);
        assert!(complete_csum(&mut p, l4.l3_len, 6));
        assert_eq!(p, full);
        assert!(!complete_csum(&mut p, 1020, 6), "positions beyond the packet are refused");
    }

    // Software GSO must give what the kernel would: segments of gso_size with
    // consecutive sequence numbers, flags placed, every checksum valid.
    #[test]
    fn software_segmentation_tcp6_and_udp4() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut sp = V6::new(A6, B6, 6, tcp(40000, 80, 1000, 0x18 | 0x01 | 0x80, &data)).build();
        let l4 = make_partial(&mut sp);
        assert_eq!(segment_count(&l4, sp.len(), 1440), 7);
        let mut out = vec![0u8; 2000];
        let mut joined = vec![];
        for i in 0..7 {
            let n = segment(&sp, &l4, 1440, i, &mut out).unwrap();
            let s = &out[..n];
            assert!(v6_checksums_ok(s), "segment {i}");
            assert_eq!(u32::from_be_bytes(s[44..48].try_into().unwrap()), 1000 + 1440 * i as u32);
            let flags = s[53];
            assert_eq!(flags & 0x01 != 0, i == 6, "FIN on the last only");
            assert_eq!(flags & 0x80 != 0, i == 0, "CWR on the first only");
            joined.extend_from_slice(&s[60..]);
        }
        assert_eq!(joined, data);
        assert!(segment(&sp, &l4, 1440, 7, &mut out).is_none());

        let mut sp = V4::new(A4, B4, 17, udp(5000, 53, &data[..3000])).build();
        let l4 = make_partial(&mut sp);
        for i in 0..3 {
            let n = segment(&sp, &l4, 1200, i, &mut out).unwrap();
            assert!(v4_checksums_ok(&out[..n]), "segment {i}");
            assert_eq!(n, 28 + if i < 2 { 1200 } else { 600 });
            assert_eq!(u16::from_be_bytes([out[24], out[25]]) as usize, n - 20, "UDP length");
        }
    }

    #[test]
    fn locate_refuses_what_it_cannot_carry() {
        assert!(locate(&V6::new(A6, B6, 58, vec![128, 0, 0, 0, 0, 1, 0, 1]).build()).is_none(), "not TCP/UDP");
        let mut p = V4::new(A4, B4, 6, tcp(1, 2, 3, 0x10, b"x")).build();
        p[6] = 0x20; // MF
        assert!(locate(&p).is_none(), "fragments");
        let p = V6::new(A6, B6, 17, udp(1, 2, b"abc")).build();
        assert!(locate(&p[..p.len() - 1]).is_none(), "length mismatch");
        assert!(locate(&[]).is_none() && locate(&[0x45]).is_none());
    }

    #[test]
    fn gso_header_must_match_the_packet() {
        let mut p = V6::new(A6, B6, 6, tcp(1, 2, 3, 0x10, &[0; 4000])).build();
        let l4 = make_partial(&mut p);
        let good = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            hdr_len: 60,
            gso_size: 1440,
            csum_start: 40,
            csum_offset: 16,
        };
        assert!(gso_consistent(&good, &l4));
        for bad in [
            VnetHdr { gso_type: GSO_TCPV4, ..good },
            VnetHdr { flags: 0, ..good },
            VnetHdr { csum_start: 20, ..good },
            VnetHdr { gso_size: 0, ..good },
        ] {
            assert!(!gso_consistent(&bad, &l4), "{bad:?}");
        }
        let out = L4 { v6: false, l3_len: 20, proto: 6, l4_hdr_len: 20 };
        let h = translated_hdr(&VnetHdr { gso_type: GSO_TCPV6 | GSO_ECN, ..good }, &out);
        assert_eq!((h.gso_type, h.hdr_len, h.csum_start, h.gso_size), (GSO_TCPV4 | GSO_ECN, 40, 20, 1440));
    }
}
