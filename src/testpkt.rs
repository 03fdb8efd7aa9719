//! Packet builders and checkers for tests, benchmarks and fuzz seeds. Not
//! used by the daemon. Checksums here are computed with a deliberately
//! naive word-by-word sum, independent of `wire::checksum`, so tests check
//! the translator against a second implementation.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The Identification key of the fuzz drivers' translators: runs repeat.
pub const FUZZ_KEY: u64 = 0x6e61_7436_3464;

/// Naive RFC 1071 sum of byte slices, folded, not complemented.
pub fn naive_sum(parts: &[&[u8]]) -> u16 {
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(p);
    }
    if all.len() % 2 == 1 {
        all.push(0);
    }
    let mut s: u64 = 0;
    for w in all.chunks(2) {
        s += u16::from_be_bytes([w[0], w[1]]) as u64;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn pseudo4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, proto]);
    p
}

/// An IPv4 packet under construction; `build` writes lengths and checksums.
#[derive(Debug, Clone)]
pub struct V4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub tos: u8,
    pub ident: u16,
    pub df: bool,
    pub mf: bool,
    pub frag_offset: u16,
    pub ttl: u8,
    pub proto: u8,
    pub options: Vec<u8>,
    /// Transport header and data; its checksum is filled by `build` unless `raw_l4`.
    pub l4: Vec<u8>,
    pub raw_l4: bool,
}

impl V4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: Vec<u8>) -> Self {
        V4 {
            src,
            dst,
            tos: 0,
            ident: 0x1234,
            df: true,
            mf: false,
            frag_offset: 0,
            ttl: 64,
            proto,
            options: vec![],
            l4,
            raw_l4: false,
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let mut l4 = self.l4.clone();
        if !self.raw_l4 && self.frag_offset == 0 {
            match self.proto {
                6 if l4.len() >= 20 => {
                    l4[16] = 0;
                    l4[17] = 0;
                    let c = !naive_sum(&[&pseudo4(self.src, self.dst, 6, l4.len()), &l4]);
                    l4[16..18].copy_from_slice(&c.to_be_bytes());
                }
                17 if l4.len() >= 8 => {
                    let n = l4.len() as u16;
                    l4[4..6].copy_from_slice(&n.to_be_bytes());
                    l4[6] = 0;
                    l4[7] = 0;
                    let mut c = !naive_sum(&[&pseudo4(self.src, self.dst, 17, l4.len()), &l4]);
                    if c == 0 {
                        c = 0xffff;
                    }
                    l4[6..8].copy_from_slice(&c.to_be_bytes());
                }
                1 if l4.len() >= 4 => {
                    l4[2] = 0;
                    l4[3] = 0;
                    let c = !naive_sum(&[&l4]);
                    l4[2..4].copy_from_slice(&c.to_be_bytes());
                }
                _ => {}
            }
        }
        let hl = 20 + self.options.len();
        assert!(hl % 4 == 0 && hl <= 60);
        let total = hl + l4.len();
        let mut b = vec![0u8; 20];
        b[0] = 0x40 | (hl / 4) as u8;
        b[1] = self.tos;
        b[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        b[4..6].copy_from_slice(&self.ident.to_be_bytes());
        let flags = (self.df as u16) << 14 | (self.mf as u16) << 13 | self.frag_offset;
        b[6..8].copy_from_slice(&flags.to_be_bytes());
        b[8] = self.ttl;
        b[9] = self.proto;
        b[12..16].copy_from_slice(&self.src.octets());
        b[16..20].copy_from_slice(&self.dst.octets());
        b.extend_from_slice(&self.options);
        let c = !naive_sum(&[&b]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b.extend_from_slice(&l4);
        b
    }
}

/// An IPv6 packet under construction.
#[derive(Debug, Clone)]
pub struct V6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub tc: u8,
    pub flow: u32,
    pub hop: u8,
    pub proto: u8,
    /// Extension headers as (type, bytes); the next-header byte of each is filled in.
    pub ext: Vec<(u8, Vec<u8>)>,
    pub l4: Vec<u8>,
    pub raw_l4: bool,
}

impl V6 {
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4: Vec<u8>) -> Self {
        V6 { src, dst, tc: 0, flow: 0, hop: 64, proto, ext: vec![], l4, raw_l4: false }
    }

    /// Add a Fragment header (offset in 8-byte units).
    pub fn fragment(mut self, offset: u16, more: bool, ident: u32) -> Self {
        let mut f = vec![0u8; 8];
        f[2..4].copy_from_slice(&((offset << 3) | more as u16).to_be_bytes());
        f[4..8].copy_from_slice(&ident.to_be_bytes());
        self.ext.push((44, f));
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut l4 = self.l4.clone();
        let non_first = self.ext.iter().any(|(t, f)| *t == 44 && u16::from_be_bytes([f[2], f[3]]) >> 3 != 0);
        if !self.raw_l4 && !non_first {
            let ck_off = match self.proto {
                6 if l4.len() >= 20 => Some(16),
                17 if l4.len() >= 8 => {
                    let n = l4.len() as u16;
                    l4[4..6].copy_from_slice(&n.to_be_bytes());
                    Some(6)
                }
                58 if l4.len() >= 4 => Some(2),
                _ => None,
            };
            if let Some(o) = ck_off {
                l4[o] = 0;
                l4[o + 1] = 0;
                let mut c = !naive_sum(&[&pseudo6(self.src, self.dst, self.proto, l4.len()), &l4]);
                if self.proto == 17 && c == 0 {
                    c = 0xffff;
                }
                l4[o..o + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
        let mut exts = Vec::new();
        for (i, (_, bytes)) in self.ext.iter().enumerate() {
            let mut e = bytes.clone();
            e[0] = self.ext.get(i + 1).map_or(self.proto, |n| n.0);
            exts.extend_from_slice(&e);
        }
        let first_nh = self.ext.first().map_or(self.proto, |e| e.0);
        let plen = exts.len() + l4.len();
        let mut b = vec![0u8; 40];
        let w = 6u32 << 28 | (self.tc as u32) << 20 | (self.flow & 0xfffff);
        b[0..4].copy_from_slice(&w.to_be_bytes());
        b[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
        b[6] = first_nh;
        b[7] = self.hop;
        b[8..24].copy_from_slice(&self.src.octets());
        b[24..40].copy_from_slice(&self.dst.octets());
        b.extend_from_slice(&exts);
        b.extend_from_slice(&l4);
        b
    }
}

/// A UDP header and data (checksum filled in by the packet builder).
pub fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(data);
    u
}

/// A 20-byte TCP header with `flags`, then data.
pub fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(data);
    t
}

/// An ICMP / ICMPv6 message: type, code, checksum placeholder, 4 bytes of `rest`, then data.
pub fn icmp(ty: u8, code: u8, rest: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(data);
    m
}

/// An echo request/reply body with identifier and sequence.
pub fn echo(ty: u8, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut r = [0u8; 4];
    r[0..2].copy_from_slice(&id.to_be_bytes());
    r[2..4].copy_from_slice(&seq.to_be_bytes());
    icmp(ty, 0, r, data)
}

/// True when the IPv4 header checksum and the transport checksum (TCP, UDP
/// unless zero, ICMP) of a whole, unfragmented IPv4 packet verify.
pub fn v4_checksums_ok(p: &[u8]) -> bool {
    if p.len() < 20 {
        return false;
    }
    let hl = ((p[0] & 0xf) as usize) * 4;
    let total = u16::from_be_bytes([p[2], p[3]]) as usize;
    if hl < 20 || hl > total || total > p.len() || naive_sum(&[&p[..hl]]) != 0xffff {
        return false;
    }
    let frag = u16::from_be_bytes([p[6], p[7]]);
    if frag & 0x3fff != 0 {
        return true; // a fragment: the transport checksum covers the reassembled datagram
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let l4 = &p[hl..total];
    match p[9] {
        6 | 17 => {
            if p[9] == 17 && l4.len() >= 8 && l4[6] == 0 && l4[7] == 0 {
                return true;
            }
            naive_sum(&[&pseudo4(src, dst, p[9], l4.len()), l4]) == 0xffff
        }
        1 => naive_sum(&[l4]) == 0xffff,
        _ => true,
    }
}

/// True when the transport checksum (TCP, UDP, ICMPv6) of a whole,
/// unfragmented IPv6 packet with no extension headers verifies.
pub fn v6_checksums_ok(p: &[u8]) -> bool {
    if p.len() < 40 {
        return false;
    }
    let plen = u16::from_be_bytes([p[4], p[5]]) as usize;
    if 40 + plen > p.len() {
        return false;
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).unwrap());
    let l4 = &p[40..40 + plen];
    match p[6] {
        6 | 17 | 58 => naive_sum(&[&pseudo6(src, dst, p[6], l4.len()), l4]) == 0xffff,
        _ => true,
    }
}

/// A mapper for fuzzing that accepts every address, so arbitrary input
/// reaches the deepest paths: IPv6 → IPv4 takes each address's last four
/// bytes; IPv4 → IPv6 embeds under 2001:db8:64::/96. Ports and identifiers
/// are changed (xor 0x5a5a) so checksum updates are exercised.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyMapper;

/// 2001:db8:64::/96, the prefix the fuzz mapper embeds under.
fn fuzz_prefix() -> crate::Prefix6052 {
    crate::Prefix6052::new(Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0, 0), 96).unwrap_or(crate::Prefix6052::WKP)
}

impl crate::Mapper for AnyMapper {
    fn map_6to4(&mut self, t: &crate::Tuple6, _: &crate::FlowMeta) -> Result<crate::Tuple4, crate::DropReason> {
        let l = |a: Ipv6Addr| {
            let o = a.octets();
            Ipv4Addr::new(o[12], o[13], o[14], o[15])
        };
        Ok(crate::Tuple4 {
            src: l(t.src),
            dst: l(t.dst),
            proto: t.proto,
            sport: t.sport ^ 0x5a5a,
            dport: t.dport ^ 0x5a5a,
        })
    }
    fn map_4to6(&mut self, t: &crate::Tuple4, _: &crate::FlowMeta) -> Result<crate::Tuple6, crate::DropReason> {
        Ok(crate::Tuple6 {
            src: fuzz_prefix().embed(t.src),
            dst: fuzz_prefix().embed(t.dst),
            proto: t.proto,
            sport: t.sport ^ 0x5a5a,
            dport: t.dport ^ 0x5a5a,
        })
    }
    fn host_4to6(&self, a: Ipv4Addr) -> Result<Ipv6Addr, crate::DropReason> {
        Ok(fuzz_prefix().embed(a))
    }
}

/// True when `p` is an IPv6 packet with no extension headers whose
/// transport checksum verifies, or a whole IPv4 packet whose checksums
/// verify: the inputs after which every output checksum must verify too.
pub fn input_checksums_ok(p: &[u8]) -> bool {
    match p.first().map(|b| b >> 4) {
        Some(6) => p.len() >= 40 && matches!(p[6], 6 | 17 | 58) && v6_checksums_ok(p),
        Some(4) => v4_checksums_ok(p) && p.len() >= 20 && u16::from_be_bytes([p[6], p[7]]) & 0x3fff == 0,
        _ => false,
    }
}

/// Translate `input` and check the invariants every verdict must keep;
/// panics (for the fuzzer to report) when one is broken:
/// - the output lies within the buffer, and every packet within its MTU
///   (ICMP errors within 576 / 1280 bytes);
/// - every IPv4 output header checksum verifies, and lengths match the bytes;
/// - when the input's checksums verified, every unfragmented output's do;
/// - `translate_in_place` (with 64 bytes of headroom) gives the same verdict
///   and the same bytes as `translate`. `scratch` is a second output buffer.
pub fn check_invariants(x: &mut crate::Translator, input: &[u8], out: &mut [u8], scratch: &mut [u8]) -> crate::Verdict {
    use crate::{Family, Verdict};
    let mut twin = x.clone();
    let v = x.translate(input, out, &mut AnyMapper);
    let mut buf = vec![0u8; 64 + input.len()];
    buf[64..].copy_from_slice(input);
    let w = twin.translate_in_place(&mut buf, 64, input.len(), scratch, &mut AnyMapper);
    match (v, w) {
        (Verdict::Forward(a), Verdict::Forward(b)) | (Verdict::Reply { out: a, .. }, Verdict::Reply { out: b, .. }) => {
            let from = if b.in_place { &buf[..] } else { &scratch[..] };
            assert!(a.packets(out).eq(b.packets(from)), "in-place and copying translation differ: {v:?} / {w:?}");
            assert_eq!((a.family, a.len, a.count()), (b.family, b.len, b.count()));
        }
        (a, b) => assert_eq!(a, b, "in-place and copying verdicts differ"),
    }
    let valid_in = input_checksums_ok(input);
    let (o, limit4, limit6, reply) = match v {
        Verdict::Drop(_) => return v,
        Verdict::Forward(o) => (o, x.config().ipv4_mtu as usize, x.config().ipv6_mtu as usize, false),
        Verdict::Reply { out: o, .. } => (o, 576, 1280, true),
    };
    assert!(o.len <= out.len() && o.len > 0 && o.stride > 0, "{v:?}");
    for p in o.packets(out) {
        match o.family {
            Family::V4 => {
                assert!(p.len() <= limit4, "IPv4 packet of {} > {limit4}", p.len());
                assert_eq!(u16::from_be_bytes([p[2], p[3]]) as usize, p.len(), "IPv4 Total Length");
                assert_eq!(naive_sum(&[&p[..20]]), 0xffff, "IPv4 header checksum");
                if valid_in || reply {
                    assert!(v4_checksums_ok(p), "IPv4 transport checksum after valid input");
                }
            }
            Family::V6 => {
                assert!(p.len() <= limit6, "IPv6 packet of {} > {limit6}", p.len());
                assert_eq!(u16::from_be_bytes([p[4], p[5]]) as usize + 40, p.len(), "IPv6 Payload Length");
                if valid_in || reply {
                    assert!(v6_checksums_ok(p), "IPv6 transport checksum after valid input");
                }
            }
        }
    }
    v
}

/// Wrap `quoted` in an ICMP error of the given family, type and code, with
/// valid outer checksums: lets a fuzzer aim straight at ICMP error translation.
pub fn wrap_in_icmp_error(v6: bool, ty: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let quoted = &quoted[..quoted.len().min(1400)];
    if v6 {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        let dst: Ipv6Addr = "2001:db8:64::c633:6407".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        V6::new(src, dst, 58, icmp(ty, code, rest, quoted)).build()
    } else {
        V4::new(Ipv4Addr::new(198, 51, 100, 254), Ipv4Addr::new(203, 0, 113, 1), 1, icmp(ty, code, rest, quoted))
            .build()
    }
}

/// How each fuzz target runs one input, shared by the targets and by the
/// replay test so they cannot drift apart. `target` is the fuzz target's
/// name: `xlat_6to4` / `xlat_4to6` force the version nibble and try two MTU
/// settings; `xlat_icmp_error` reads a family bit, type, code and four bytes
/// of header, and quotes the rest in a valid ICMP error.
pub fn run_fuzz_input(target: &str, data: &[u8], out: &mut [u8], scratch: &mut [u8]) {
    use crate::{Translator, XlatConfig};
    match target {
        "xlat_icmp_error" => {
            if data.len() >= 7 {
                let pkt = wrap_in_icmp_error(
                    data[0] & 1 == 1,
                    data[1],
                    data[2],
                    [data[3], data[4], data[5], data[6]],
                    &data[7..],
                );
                check_invariants(&mut Translator::with_key(XlatConfig::default(), FUZZ_KEY), &pkt, out, scratch);
            }
        }
        _ => {
            let mut pkt = data.to_vec();
            if let Some(b) = pkt.first_mut() {
                *b = (*b & 0x0f) | if target == "xlat_6to4" { 0x60 } else { 0x40 };
            }
            for (v6, v4) in [(1280, 1500), (1500, 576)] {
                let mut x =
                    Translator::with_key(XlatConfig { ipv6_mtu: v6, ipv4_mtu: v4, ..XlatConfig::default() }, FUZZ_KEY);
                check_invariants(&mut x, &pkt, out, scratch);
            }
        }
    }
}

/// The offload fuzz target's input handling, shared with the replay test:
/// a virtio-net header and a packet as the kernel hands them over with TUN
/// offloads, through `worker::offload_packet`. `data[0]` bit 0 set: the
/// header is derived from the packet (a consistent super-packet with
/// `gso_size` from `data[1..3]` and a partial checksum, the usual case);
/// clear: `data[1..11]` is the header as given. Every packet sent back must
/// be well formed: a super-packet's header must describe it, its segments
/// must fit the MTU of its family, and its partial checksum completed must
/// verify; a plain packet must fit the MTU of its family.
pub fn run_offload_fuzz_input(data: &[u8], out: &mut [u8]) {
    use crate::dataplane::vnet::{self, VnetHdr, F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_HDR_LEN};
    use crate::dataplane::worker::{offload_packet, OffloadStats, HEADROOM};
    use crate::{Translator, XlatConfig};
    if data.len() < 11 {
        return;
    }
    let mut pkt = data[11..].to_vec();
    let hdr = if data[0] & 1 == 1 {
        let Some(l4) = vnet::locate(&pkt) else { return };
        vnet::set_partial(&mut pkt, &l4);
        let gso_type = match (l4.proto, l4.v6) {
            (6, false) => GSO_TCPV4,
            (6, true) => GSO_TCPV6,
            _ => GSO_UDP_L4,
        };
        let gso_size = u16::from_be_bytes([data[1], data[2]]).max(1);
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: l4.hdr_len() as u16,
            gso_size,
            csum_start: l4.l3_len as u16,
            csum_offset: l4.csum_offset() as u16,
        }
    } else {
        match VnetHdr::parse(&data[1..11]) {
            Some(h) => h,
            None => return,
        }
    };
    if pkt.len() > 65535 {
        return;
    }
    let mut buf = vec![0u8; HEADROOM + 65536];
    buf[HEADROOM - VNET_HDR_LEN..HEADROOM].copy_from_slice(&hdr.emit());
    buf[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(&pkt);
    let mut scratch = vec![0u8; HEADROOM + 65536];
    for (v6, v4) in [(1500u16, 1500u16), (1280, 576)] {
        let cfg = XlatConfig { ipv6_mtu: v6, ipv4_mtu: v4, ..XlatConfig::default() };
        let mut x = Translator::with_key(cfg, FUZZ_KEY);
        let mut b = buf.clone();
        let mut stats = OffloadStats::default();
        let mut check = |h: &[u8; VNET_HDR_LEN], p: &[u8]| {
            let h = VnetHdr::parse(h).expect("a header");
            let mtu = |is_v6: bool| if is_v6 { x_mtu(v6, true) } else { x_mtu(v4, false) };
            if h.is_gso() {
                let l4 = vnet::locate(p).expect("a super-packet sent back is TCP/UDP with consistent lengths");
                assert!(vnet::gso_consistent(&h, &l4), "its header describes it: {h:?} {l4:?}");
                assert_eq!(h.hdr_len as usize, l4.hdr_len());
                assert!(l4.hdr_len() + h.gso_size as usize <= mtu(l4.v6), "segments fit the MTU");
                let mut c = p.to_vec();
                assert!(vnet::complete_csum(&mut c, l4.l3_len, l4.csum_offset()));
                assert!(if l4.v6 { v6_checksums_ok(&c) } else { v4_checksums_ok(&c) }, "partial checksum completes");
            } else {
                assert_eq!(h, VnetHdr::default(), "plain packets carry an empty header");
                assert!(!p.is_empty() && p.len() <= mtu(p[0] >> 4 == 6), "plain packet of {} bytes", p.len());
            }
            Ok(())
        };
        let n = VNET_HDR_LEN + pkt.len();
        let _ = offload_packet(&mut x, &mut b, n, out, &mut scratch, &mut AnyMapper, &mut stats, &mut check);
    }
}

fn x_mtu(m: u16, v6: bool) -> usize {
    if v6 {
        m.max(1280) as usize
    } else {
        m.max(68) as usize
    }
}

/// The NAT fuzz target's input handling, shared with the replay test. The
/// bytes are a program: each step takes 6 bytes (op, host, port, remote,
/// flags, time step) and sends a TCP, UDP or ICMP packet out or in through a
/// small table (one pool4 address with 64 ports per protocol and low
/// limits, so exhaustion and limits are reached), advances time, or runs
/// the expiry sweep. After every step: the table is consistent
/// (`NatTable::check`), within its limits, and every translated packet
/// agrees with a BIB entry.
pub fn run_nat_fuzz_input(data: &[u8], out: &mut [u8]) {
    use crate::nat::{Filtering, Limits, NatConfig, NatMapper, NatTable, PortRange, Proto};
    use crate::{Family, Translator, Verdict, XlatConfig};
    let prefix: crate::Prefix6052 = match "2001:db8:64::/96".parse() {
        Ok(p) => p,
        Err(_) => return,
    };
    let pool = Ipv4Addr::new(203, 0, 113, 1);
    let mut cfg = NatConfig::new(prefix, &[pool]);
    for p in &mut cfg.pool4[0].addrs[0].ports {
        *p = PortRange { lo: 1000, hi: 1063 };
    }
    cfg.limits = Limits { max_sessions: 40, sessions_per_host: 12, sessions_per_net64: 20, bibs_per_host: 10 };
    if data.first().is_some_and(|b| b & 1 == 1) {
        cfg.filtering = Filtering::AddressDependent;
    }
    // Bits 1-2: how ports are handed out. Blocks of 8 ports: 1024-1063 are
    // five of them; subscribers are /48s (hosts below use four of them).
    let mode = data.first().map_or(0, |b| (b >> 1) & 3);
    if mode == 1 || mode == 2 {
        use crate::nat::{EventSel, PortMode, Ports};
        let pm = if mode == 1 { PortMode::Blocks } else { PortMode::Deterministic };
        cfg.ports = Ports { mode: pm, block_size: 8, max_blocks: 2, subscriber: 48, hold: 30_000 };
        cfg.events = EventSel { blocks: true, sessions: false, destination: false };
        if pm == PortMode::Deterministic {
            cfg.pool4[0].clients = "2001:db8::/46".parse().ok();
        }
    } else if mode == 3 {
        cfg.events = crate::nat::EventSel { blocks: false, sessions: true, destination: true };
    }
    let mut t = NatTable::new(cfg, 0, 1);
    let mut events = Vec::new();
    let _ = t.add_static(Proto::Tcp, (Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x80), 80), (pool, 1000));
    let mut x = Translator::with_key(XlatConfig::default(), FUZZ_KEY);
    let mut now = 0u64;
    for step in data.get(1..).unwrap_or(&[]).chunks(6) {
        let [op, h, port, r, flags, dt] = match *step {
            [a, b, c, d, e, f] => [a, b, c, d, e, f],
            _ => break,
        };
        now += (dt as u64) << ((op >> 6) * 4); // up to about 17 min per step
        let host = Ipv6Addr::new(0x2001, 0xdb8, (h >> 4) as u16 & 3, 0, 0, 0, 0, h as u16 & 15);
        let remote = Ipv4Addr::new(198, 51, 100, r & 7);
        let rport = 50 + (r >> 3) as u16;
        let proto = [6u8, 17, 1][(op as usize >> 1) % 3];
        let pkt = match op & 7 {
            0 | 2 | 4 => {
                let l4 = match proto {
                    6 => tcp(2000 + port as u16 % 32, rport, 1, flags, b""),
                    17 => udp(2000 + port as u16 % 32, rport, b"x"),
                    _ => echo(128, 2000 + port as u16 % 32, 1, b""),
                };
                V6::new(host, prefix.embed(remote), if proto == 1 { 58 } else { proto }, l4).build()
            }
            1 | 3 | 5 => {
                let l4 = match proto {
                    6 => tcp(rport, 1000 + port as u16 % 64, 1, flags, b""),
                    17 => udp(rport, 1000 + port as u16 % 64, b"y"),
                    _ => echo(0, 1000 + port as u16 % 64, 1, b""),
                };
                V4::new(remote, pool, proto, l4).build()
            }
            6 => {
                t.expire(now, flags as usize);
                if let Err(e) = t.check() {
                    panic!("after expiry: {e}");
                }
                // Events come out in time order, opening before closing for one holding.
                events.clear();
                t.drain_events(&mut events);
                assert!(events.windows(2).all(|w| w[0].at <= w[1].at), "events out of order: {events:?}");
                continue;
            }
            _ => step.to_vec(),
        };
        let v = x.translate(&pkt, out, &mut NatMapper { table: &mut t, now });
        if let Err(e) = t.check() {
            panic!("table inconsistent after {v:?}: {e}");
        }
        if let Verdict::Forward(o) = v {
            let p = &out[o.start..o.start + o.len];
            let bibs: Vec<_> = t.bibs().collect();
            match o.family {
                Family::V4 if p.len() >= 24 && p[9] != 1 => {
                    let src = (Ipv4Addr::new(p[12], p[13], p[14], p[15]), u16::from_be_bytes([p[20], p[21]]));
                    let v6src = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[8..24]).unwrap_or([0; 16]));
                    assert!(
                        bibs.iter().any(|b| b.v4 == src && b.v6.0 == v6src),
                        "IPv4 source {src:?} has no BIB entry for {v6src}"
                    );
                }
                Family::V6 if p.len() >= 44 && p[6] != 58 => {
                    let dst = (
                        Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).unwrap_or([0; 16])),
                        u16::from_be_bytes([p[42], p[43]]),
                    );
                    assert!(
                        bibs.iter().any(|b| b.v6 == dst && b.v4.0 == pool),
                        "IPv6 destination {dst:?} has no BIB entry"
                    );
                }
                _ => {}
            }
        }
    }
}

/// The NAT the benchmarks measure (`benches/nat.rs`, `examples/nat_bench.rs`):
/// pool6 2001:db8:64::/96, 32 pool4 addresses (203.0.113.0/27), limits high
/// enough for a million sessions.
pub fn bench_nat_config() -> crate::nat::NatConfig {
    use crate::nat::{NatConfig, PoolAddr, PoolGroup};
    let mut c = NatConfig::new(fuzz_prefix(), &[]);
    c.pool4 = vec![PoolGroup {
        clients: None,
        addrs: (0..32).map(|i| PoolAddr::new(Ipv4Addr::new(203, 0, 113, i))).collect(),
    }];
    c.limits.max_sessions = 2_000_000;
    c
}

/// Benchmark client `i`, each in its own /64.
pub fn bench_host(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 1)
}

/// The DNS64 fuzz target's input handling and invariants. Byte 0 picks the
/// path, the rest is a message:
/// - even: a client query through the fast path (`wire::parse_query`, the
///   refusal, FORMERR and truncation replies) and, when hickory-proto can
///   parse it, an answer stored in the cache and served back for it;
/// - odd: an upstream answer through the RFC 6147 core (verdict, synthesis
///   from it as AAAA and as A answer, PTR) and the TTL walker.
pub fn run_dns64_fuzz_input(data: &[u8]) {
    use crate::dns64::cache::Cache;
    use crate::dns64::wire::{self, KEY_MAX};
    use crate::dns64::{reply_to, AaaaVerdict, Dns64};
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record, RecordType};
    let Some((&mode, msg)) = data.split_first() else { return };
    let d = Dns64::new(vec!["2001:db8:64::/96".parse().expect("prefix"), crate::Prefix6052::WKP]);
    if mode & 1 == 0 {
        let mut key = [0u8; KEY_MAX];
        let mut out = Vec::new();
        if wire::formerr(msg, &mut out) {
            assert_eq!(out.len(), 12);
            assert_eq!(&out[..2], &msg[..2]);
        }
        let Ok(h) = wire::parse_query(msg, &mut key) else { return };
        assert!(h.key_len <= KEY_MAX && h.qend <= msg.len());
        assert!((512..=1232).contains(&h.udp_limit()));
        for trunc in [false, true] {
            wire::short_reply(msg, &h, 5, trunc, &mut out);
            let r = Message::from_vec(&out).expect("a short reply parses");
            assert_eq!(r.id(), h.id);
            assert_eq!(r.truncated(), trunc);
        }
        // A query the fast path takes is one hickory-proto reads too.
        let q = Message::from_vec(msg).expect("fast-path queries parse");
        let mut ans = reply_to(&q, ResponseCode::NoError);
        ans.add_answer(Record::from_rdata(q.queries()[0].name().clone(), 300, RData::A(A::new(192, 0, 2, 1))));
        let Ok(bytes) = ans.to_vec() else { return };
        let cache = Cache::new(16, 3600);
        assert!(cache.put(&key[..h.key_len], &bytes, 0));
        assert!(cache.get(&key[..h.key_len], msg, &h, 2_500, &mut out));
        assert_eq!(out.len(), bytes.len());
        let served = Message::from_vec(&out).expect("a cached answer parses");
        assert_eq!(served.id(), h.id);
        assert_eq!(served.answers()[0].ttl(), 298, "TTL counted down by the 2 s in the cache");
        assert!(!cache.get(&key[..h.key_len], msg, &h, 301_000, &mut out), "expired");
    } else {
        if let Some((offs, _)) = wire::ttl_fields(msg) {
            assert!(offs.iter().all(|&o| o as usize + 4 <= msg.len()));
        }
        let Ok(up) = Message::from_vec(msg) else { return };
        let mut q = Message::new();
        q.add_query(Query::query("x.example.".parse().expect("name"), RecordType::AAAA));
        let _ = d.aaaa_verdict(&up);
        let m = d.synthesize(&q, &up, &up);
        assert!(!m.authentic_data() || m.answers().iter().all(|r| r.record_type() != RecordType::AAAA));
        let _ = m.to_vec();
        if let AaaaVerdict::Pass(p) = d.aaaa_verdict(&up) {
            assert!(p.answers().iter().all(|r| match r.data() {
                RData::AAAA(a) => !d.exclude6.iter().any(|n| n.contains(a.0)),
                _ => true,
            }));
        }
        for r in up.answers() {
            if let Some(t) = d.ptr_target(r.name()) {
                let _ = d.ptr_answer(&q, &t, &up).to_vec();
            }
        }
        let _ = d.ipv4only(&up);
    }
}

/// A plain packet's meta (not a fragment, no TCP flags), for driving the
/// NAT's `Mapper` directly in tests, examples and benches.
pub const PLAIN: crate::xlat::FlowMeta<'static> = crate::xlat::FlowMeta {
    role: crate::xlat::Role::Packet,
    tcp_flags: 0,
    fragment: false,
    first_fragment: false,
    frag_id: 0,
    packet: &[],
};

/// The config fuzz target (issue 18: hostile or careless configuration
/// text): the loader never panics; what it accepts shows back (as
/// `nat64ctl config` would) and parses to the same configuration; what it
/// refuses names a line inside the text, if any.
pub fn run_config_fuzz_input(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The loader's fast path (static entries parsed one at a time) and the
    // whole-document parse agree on every text: same configuration, or both refuse.
    // Where the fast path declines, the loader parses whole: nothing to compare.
    let fast = match crate::config::Config::parse_fast(text, "fuzz.toml") {
        Some(fast) => {
            let whole = crate::config::Config::parse_whole(text, "fuzz.toml");
            assert_eq!(fast.as_ref().ok(), whole.as_ref().ok(), "the loader's two paths disagree on: {text}");
            fast
        }
        None => crate::config::Config::parse_whole(text, "fuzz.toml"),
    };
    match fast {
        Ok(c) => {
            let shown = c.to_toml();
            let again = crate::config::Config::parse(&shown, "shown");
            assert_eq!(again.as_ref().ok(), Some(&c), "shown config does not parse back: {shown}");
        }
        Err(e) => {
            let lines = text.lines().count().max(1) + 1;
            assert!(e.line.is_none_or(|l| (1..=lines).contains(&l)), "line {:?} outside the text", e.line);
            assert!(!e.to_string().is_empty());
        }
    }
}

/// The sniff fuzz target (issue 19: the first bytes of every inbound
/// connection come from anyone): the sniffer never panics, and a decision
/// it takes on a prefix of the bytes is the decision it takes on them all
/// (more bytes never turn a refusal into a site, or one site into another).
pub fn run_sniff_fuzz_input(data: &[u8]) {
    use crate::proxy::{sniff, Sniff, SniffLimits};
    let limits = SniffLimits { max_client_hello: 4096, max_http_head: 2048 };
    let all = sniff(data, &limits);
    if let Sniff::Http { head_len, line_len, .. } = all {
        assert!(line_len <= head_len && head_len <= data.len());
    }
    // The name found is the one an independent, naive reading finds (a
    // ClientHello in one record; an HTTP head split at its lines).
    match all {
        Sniff::Tls { name, .. } => {
            if let Some(names) = naive_sni(data) {
                let found = names.iter().any(|n| n.eq_ignore_ascii_case(name.as_str().as_bytes()));
                assert!(found, "sniffed {name:?}, a naive reading of the ClientHello finds {names:?}");
            }
        }
        Sniff::Http { name, head_len, .. } => {
            let hosts = naive_http_hosts(&data[..head_len]);
            let found = hosts.iter().any(|h| h.eq_ignore_ascii_case(name.as_str().as_bytes()));
            assert!(found, "sniffed {name:?}, a naive reading of the head finds {hosts:?}");
        }
        _ => {}
    }
    let n = data.len();
    for cut in [n / 4, n / 2, n * 3 / 4, n.saturating_sub(1)] {
        let part = sniff(&data[..cut], &limits);
        if part != Sniff::NeedMore {
            assert_eq!(part, all, "{cut} of {n} bytes decided otherwise than all of them");
        }
    }
}

/// The host names in the server_name extension of a ClientHello that sits
/// whole in the first record (RFC 8446 4.1.2, RFC 6066 3), read field by
/// field with no validation beyond the lengths; None for anything else.
pub fn naive_sni(d: &[u8]) -> Option<Vec<Vec<u8>>> {
    let u16_at =
        |b: &[u8], i: usize| -> Option<usize> { Some(usize::from(*b.get(i)?) << 8 | usize::from(*b.get(i + 1)?)) };
    if *d.first()? != 22 {
        return None;
    }
    let rec = d.get(5..5 + u16_at(d, 3)?)?;
    if *rec.first()? != 1 {
        return None;
    }
    let hs_len = usize::from(*rec.get(1)?) << 16 | u16_at(rec, 2)?;
    let hs = rec.get(4..4 + hs_len)?;
    let mut i = 2 + 32;
    i += 1 + usize::from(*hs.get(i)?);
    i += 2 + u16_at(hs, i)?;
    i += 1 + usize::from(*hs.get(i)?);
    let exts = hs.get(i + 2..i + 2 + u16_at(hs, i)?)?;
    let (mut j, mut names) = (0, vec![]);
    while j + 4 <= exts.len() {
        let (ty, len) = (u16_at(exts, j)?, u16_at(exts, j + 2)?);
        let body = exts.get(j + 4..j + 4 + len)?;
        if ty == 0 {
            let list = body.get(2..2 + u16_at(body, 0)?)?;
            let mut k = 0;
            while k + 3 <= list.len() {
                let n = u16_at(list, k + 1)?;
                if list[k] == 0 {
                    names.push(list.get(k + 3..k + 3 + n)?.to_vec());
                }
                k += 3 + n;
            }
        }
        j += 4 + len;
    }
    Some(names)
}

/// Every host an HTTP/1.x head could be for, read naively: the authority
/// of an absolute-form target (RFC 9112 3.2.2) and each Host field's value
/// (RFC 9112 3.2), without a port.
pub fn naive_http_hosts(head: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(head);
    let mut out = vec![];
    let no_port = |h: &str| -> Vec<u8> { h.rsplit_once(':').map_or(h, |(a, _)| a).trim().as_bytes().to_vec() };
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    if let Some(target) = lines.next().and_then(|l| l.split(' ').nth(1)) {
        if let Some((_, rest)) = target.split_once("://") {
            out.push(no_port(rest.split(['/', '?']).next().unwrap_or("")));
        }
    }
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("host") {
                out.push(no_port(v));
            }
        }
    }
    out
}

/// The control fuzz target (issue 18: hostile bytes on the control
/// socket): the request reader never panics, reads at most one bounded
/// line, and a request it accepts survives a JSON round trip unchanged.
pub fn run_control_fuzz_input(data: &[u8]) {
    use crate::daemon::control::{read_request, Request};
    let mut cur = std::io::Cursor::new(data);
    if let Ok(req) = read_request(&mut cur) {
        assert!(cur.position() as usize <= crate::daemon::control::MAX_REQUEST);
        let json = serde_json::to_string(&req).expect("a request serialises");
        let back: Request = serde_json::from_str(&json).expect("a serialised request parses");
        assert_eq!(back, req);
    }
}

/// The maplog fuzz target (issues 14 and 18: the mapping log is read back
/// from files an operator hands `nat64ctl who`, and IPFIX is a new wire
/// format): arbitrary bytes as a log never panic the reader, and every
/// holding it reports runs forwards; events made from the bytes encode to
/// IPFIX messages whose lengths, sets and sequence numbers add up.
pub fn run_maplog_fuzz_input(data: &[u8]) {
    use crate::nat::{EventKind, MapEvent, Proto};
    let mut h = crate::maplog::Holdings::default();
    let _ = h.read(data);
    for x in h.all() {
        if let Some(u) = &x.until {
            let (f, u) = (crate::maplog::parse_rfc3339(&x.from), crate::maplog::parse_rfc3339(u));
            assert!(f.is_ok() && u.is_ok(), "a holding with a time the reader did not take: {x:?}");
        }
    }
    let kinds = [
        EventKind::BlockAllocated,
        EventKind::BlockReleased,
        EventKind::BibCreated,
        EventKind::BibDeleted,
        EventKind::SessionCreated,
        EventKind::SessionDeleted,
    ];
    let events: Vec<MapEvent> = data
        .chunks(8)
        .filter(|c| c.len() == 8)
        .map(|c| {
            let lo = u16::from_be_bytes([c[2], c[3]]);
            MapEvent {
                kind: kinds[c[0] as usize % 6],
                at: c[1] as u64,
                proto: Proto::ALL[c[1] as usize % 3],
                v6: Ipv6Addr::new(0x2001, 0xdb8, c[4] as u16, 0, 0, 0, 0, c[5] as u16),
                v6_len: if c[0] & 0x80 != 0 { 64 } else { 128 },
                port6: c[5] as u16,
                v4: Ipv4Addr::new(203, 0, 113, c[6]),
                lo,
                hi: lo.saturating_add(c[7] as u16),
                remote: (c[7] & 1 == 1).then_some((Ipv4Addr::new(198, 51, 100, c[6]), c[7] as u16)),
                group: 0,
                customer: None,
            }
        })
        .collect();
    let mut enc = crate::ipfix::Encoder::new(1, 600);
    let mut seq = 0u32;
    let mut total = 0;
    for (m, n) in enc.encode(&events, |e| e.at, 1_796_133_727) {
        assert!(m.len() <= crate::ipfix::MAX_MESSAGE && m.len() >= 16);
        assert_eq!(u16::from_be_bytes([m[2], m[3]]) as usize, m.len(), "message length");
        assert_eq!(u32::from_be_bytes([m[8], m[9], m[10], m[11]]), seq, "sequence number");
        let mut o = 16;
        while o < m.len() {
            let len = u16::from_be_bytes([m[o + 2], m[o + 3]]) as usize;
            assert!(len >= 4 && o + len <= m.len(), "a set that does not fit its message");
            o += len;
        }
        seq = seq.wrapping_add(n as u32);
        total += n;
    }
    assert_eq!(total, events.len(), "every event in one record");
}

/// The state fuzz target (issue 15's state file, issue 18's rule for new
/// formats): arbitrary bytes never panic the reader; a file it accepts
/// encodes back to the same bytes, and restoring it into a small NAT (of
/// either port mode) leaves every shard's table consistent and within its
/// limits, whatever the records claim.
pub fn run_state_fuzz_input(data: &[u8]) {
    use crate::nat::state::State;
    use crate::nat::PortMode;
    // Half the inputs are bodies whose checksum the driver supplies, so the
    // records behind the checksum get fuzzed too, not only the check.
    let sealed;
    let data = match data.split_first() {
        Some((&b, body)) if b & 1 == 1 => {
            sealed = crate::nat::state::seal(body);
            &sealed[..]
        }
        _ => data,
    };
    let Ok(st) = State::decode(data) else { return };
    assert_eq!(st.encode(), data, "an accepted state file does not encode back to itself");
    for mode in [PortMode::Session, PortMode::Blocks] {
        let Some(nat) = small_fuzz_nat(mode) else { return };
        let _ = nat.add_static(
            crate::nat::Proto::Tcp,
            (Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x80), 80),
            (Ipv4Addr::new(203, 0, 113, 1), 80),
        );
        let r = nat.restore(&st, 0, data.first().copied().unwrap_or(0) as u64 * 1000);
        assert!(r.sessions as usize <= 64, "more sessions than the limit: {r:?}");
        nat.check_all().unwrap_or_else(|e| panic!("after restoring {r:?}: {e}"));
    }
}

/// The state and sync fuzz drivers' NAT: two pool4 addresses, 4 shards,
/// limits small enough for a fuzz input to reach them.
fn small_fuzz_nat(mode: crate::nat::PortMode) -> Option<crate::nat::Nat> {
    use crate::nat::{Limits, Nat, NatConfig, Ports};
    let prefix = "2001:db8:64::/96".parse::<crate::Prefix6052>().ok()?;
    let mut cfg = NatConfig::new(prefix, &[Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(203, 0, 113, 2)]);
    cfg.limits = Limits { max_sessions: 64, sessions_per_host: 16, sessions_per_net64: 32, bibs_per_host: 16 };
    cfg.ports = Ports { mode, block_size: 64, max_blocks: 2, subscriber: 64, hold: 10_000 };
    Some(Nat::new(cfg, 4))
}

/// Fuzz driver for the sync wire (issue 15, `fuzz/fuzz_targets/sync.rs`):
/// a message body from the peer. An accepted message encodes back to
/// itself; its records applied to a standby (both port modes), then a
/// take-over, leave the tables consistent and within their limits.
pub fn run_sync_fuzz_input(data: &[u8]) {
    use crate::nat::sync::SyncRec;
    use crate::nat::PortMode;
    let mut recs = Vec::new();
    if SyncRec::decode_all(data, &mut recs).is_err() {
        return;
    }
    let mut again = Vec::with_capacity(data.len());
    recs.iter().for_each(|r| r.encode(&mut again));
    assert_eq!(again, data, "an accepted sync message does not encode back to itself");
    for mode in [PortMode::Session, PortMode::Blocks] {
        let Some(nat) = small_fuzz_nat(mode) else { return };
        nat.set_standby(true, 0);
        for (i, r) in recs.iter().enumerate() {
            let _ = nat.apply_sync(r, i as u64 * 100);
            nat.check_all().unwrap_or_else(|e| panic!("after record {i} {r:?}: {e}"));
        }
        assert!(nat.session_count() <= 64, "more sessions than the limit");
        nat.set_standby(false, recs.len() as u64 * 100);
        nat.check_all().unwrap_or_else(|e| panic!("after the take-over: {e}"));
    }
}
