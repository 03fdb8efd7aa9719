//! Packet-vector tests of RFC 7915 translation, each citing its rule. Inputs
//! are built with `testpkt` (independent, naive checksums) and outputs are
//! checked field by field and with a from-scratch checksum.

use super::*;
use crate::testpkt::{self, echo, icmp, tcp, udp, v4_checksums_ok, v6_checksums_ok, V4, V6};
use proptest::prelude::*;

const PREFIX: &str = "2001:db8:64::/96";
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const POOL4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const SERVER4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const ROUTER4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
/// (type, code, rest of header) in, and the translation expected (None: dropped).
type ErrorRow = (u8, u8, [u8; 4], Option<(u8, u8, [u8; 4])>);

/// The NAT-like test mapper moves the client's port (or ICMP identifier) by this much.
const SHIFT: u16 = 1000;

fn pf() -> Prefix6052 {
    PREFIX.parse().unwrap()
}
fn server6() -> Ipv6Addr {
    pf().embed(SERVER4)
}

/// A mapper that behaves like one stateful NAT64 session: CLIENT6 port p ↔
/// POOL4 port p + SHIFT; the remote side by RFC 6052 embedding.
struct NatLike;

impl Mapper for NatLike {
    fn map_6to4(&mut self, t: &Tuple6, m: &FlowMeta) -> Result<Tuple4, DropReason> {
        let icmp = t.proto == 1;
        let ex = |a: &Ipv6Addr| pf().extract(a).ok_or(DropReason::NotInPrefix);
        match m.role {
            Role::Packet => {
                if t.src != CLIENT6 {
                    return Err(DropReason::NoState);
                }
                let sp = t.sport.wrapping_add(SHIFT);
                Ok(Tuple {
                    src: POOL4,
                    dst: ex(&t.dst)?,
                    proto: t.proto,
                    sport: sp,
                    dport: if icmp { sp } else { t.dport },
                })
            }
            Role::ErrorInner => {
                if t.dst != CLIENT6 {
                    return Err(DropReason::NoState);
                }
                let dp = t.dport.wrapping_add(SHIFT);
                Ok(Tuple {
                    src: ex(&t.src)?,
                    dst: POOL4,
                    proto: t.proto,
                    sport: if icmp { dp } else { t.sport },
                    dport: dp,
                })
            }
        }
    }
    fn map_4to6(&mut self, t: &Tuple4, m: &FlowMeta) -> Result<Tuple6, DropReason> {
        let icmp = t.proto == 1;
        match m.role {
            Role::Packet => {
                if t.dst != POOL4 {
                    return Err(DropReason::NoState);
                }
                let dp = t.dport.wrapping_sub(SHIFT);
                Ok(Tuple {
                    src: pf().embed(t.src),
                    dst: CLIENT6,
                    proto: t.proto,
                    sport: if icmp { dp } else { t.sport },
                    dport: dp,
                })
            }
            Role::ErrorInner => {
                if t.src != POOL4 {
                    return Err(DropReason::NoState);
                }
                let sp = t.sport.wrapping_sub(SHIFT);
                Ok(Tuple {
                    src: CLIENT6,
                    dst: pf().embed(t.dst),
                    proto: t.proto,
                    sport: sp,
                    dport: if icmp { sp } else { t.dport },
                })
            }
        }
    }
    fn host_4to6(&self, a: Ipv4Addr) -> Result<Ipv6Addr, DropReason> {
        Ok(pf().embed(a))
    }
}

fn xl() -> Translator {
    Translator::with_key(XlatConfig::default(), 7)
}
/// Next-hop MTUs `v6` and `v4`, with lowest-ipv6-mtu at the IPv6 next hop's.
fn xl_mtu(v6: u16, v4: u16) -> Translator {
    Translator::with_key(XlatConfig { ipv6_mtu: v6, lowest_ipv6_mtu: v6, ipv4_mtu: v4, ..XlatConfig::default() }, 7)
}

/// Run one packet through, returning the verdict and the output buffer.
fn run(x: &mut Translator, pkt: &[u8]) -> (Verdict, Vec<u8>) {
    let mut out = vec![0u8; OUT_BUF_LEN];
    let v = x.translate(pkt, &mut out, &mut NatLike);
    (v, out)
}

/// The single packet a verdict forwards.
fn fwd(v: Verdict, out: &[u8], fam: Family) -> Vec<u8> {
    match v {
        Verdict::Forward(o) if o.family == fam && o.count() == 1 => out[..o.len].to_vec(),
        other => panic!("expected one {fam:?} packet, got {other:?}"),
    }
}

/// The ICMP error a verdict replies with, and the reason.
fn reply(v: Verdict, out: &[u8], fam: Family) -> (DropReason, Vec<u8>) {
    match v {
        Verdict::Reply { reason, out: o } if o.family == fam => (reason, out[..o.len].to_vec()),
        other => panic!("expected a {fam:?} ICMP error, got {other:?}"),
    }
}

fn v6_out(src: Ipv6Addr, proto: u8, l4: Vec<u8>) -> V6 {
    V6::new(src, server6(), proto, l4)
}
fn v4_in(proto: u8, l4: Vec<u8>) -> V4 {
    V4::new(SERVER4, POOL4, proto, l4)
}
fn a4(p: &[u8], off: usize) -> Ipv4Addr {
    Ipv4Addr::new(p[off], p[off + 1], p[off + 2], p[off + 3])
}
fn a6(p: &[u8], off: usize) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&p[off..off + 16]).unwrap())
}
fn u16at(p: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([p[off], p[off + 1]])
}

// ---------------------------------------------------------------- IPv6 → IPv4

// RFC 7915 5.1: every IPv4 header field of a translated UDP packet.
#[test]
fn rfc7915_5_1_udp_header_fields() {
    let mut p = v6_out(CLIENT6, 17, udp(5000, 53, b"hello"));
    p.tc = 0xb8;
    p.flow = 0x12345;
    p.hop = 64;
    let mut x = xl();
    let (v, out) = run(&mut x, &p.build());
    let o = fwd(v, &out, Family::V4);
    assert_eq!(o[0], 0x45, "version 4, IHL 5");
    assert_eq!(o[1], 0xb8, "TOS = Traffic Class");
    assert_eq!(u16at(&o, 2) as usize, 20 + 8 + 5, "Total Length = payload + 20");
    assert_eq!(u16at(&o, 6), 0, "DF clear (<= 1260 bytes), MF 0, offset 0");
    assert_eq!(o[8], 63, "TTL = Hop Limit - 1");
    assert_eq!(o[9], 17);
    assert_eq!((a4(&o, 12), a4(&o, 16)), (POOL4, SERVER4));
    assert_eq!((u16at(&o, 20), u16at(&o, 22)), (5000 + SHIFT, 53), "ports from the mapper");
    assert_eq!(&o[28..], b"hello", "data unchanged");
    assert!(v4_checksums_ok(&o), "header and UDP checksums verify");
    assert_eq!(x.stats.out_6to4.packets[1], 1);
}

// RFC 7915 5.1: DF is set when the IPv4 packet is larger than 1260 bytes.
#[test]
fn rfc7915_5_1_df_set_above_1260() {
    let (v, out) = run(&mut xl(), &v6_out(CLIENT6, 17, udp(5000, 53, &[7u8; 1400])).build());
    let o = fwd(v, &out, Family::V4);
    assert_eq!(o.len(), 1428);
    assert_eq!(u16at(&o, 6), 0x4000, "DF set");
    let (v, out) = run(&mut xl(), &v6_out(CLIENT6, 17, udp(5000, 53, &[7u8; 1232])).build());
    assert_eq!(u16at(&fwd(v, &out, Family::V4), 6), 0, "1260 bytes: DF clear");
}

// RFC 7915 5.1: TOS may be set by configuration instead of copied.
#[test]
fn rfc7915_5_1_tos_override() {
    let mut p = v6_out(CLIENT6, 17, udp(1, 2, b""));
    p.tc = 0xb8;
    let mut x = Translator::new(XlatConfig { tos_override: Some(0), ..XlatConfig::default() });
    let (v, out) = run(&mut x, &p.build());
    assert_eq!(fwd(v, &out, Family::V4)[1], 0);
}

// RFC 7915 5.1 / 5.5: TCP ports and checksum follow the new pseudo-header.
#[test]
fn rfc7915_5_5_tcp_checksum_updated() {
    let (v, out) = run(&mut xl(), &v6_out(CLIENT6, 6, tcp(40000, 80, 7, 0x02, b"GET /")).build());
    let o = fwd(v, &out, Family::V4);
    assert_eq!(o[9], 6);
    assert_eq!((u16at(&o, 20), u16at(&o, 22)), (40000 + SHIFT, 80));
    assert!(v4_checksums_ok(&o));
}

// RFC 7915 5.1: Hop Limit 1 on arrival: dropped, ICMPv6 Time Exceeded (3/0) to the source.
#[test]
fn rfc7915_5_1_hop_limit_exceeded() {
    let mut p = v6_out(CLIENT6, 17, udp(5000, 53, b"x"));
    p.hop = 1;
    let pkt = p.build();
    let mut x = xl();
    let (v, out) = run(&mut x, &pkt);
    let (r, e) = reply(v, &out, Family::V6);
    assert_eq!(r, DropReason::HopLimitExceeded);
    assert_eq!((e[40], e[41]), (3, 0));
    assert_eq!(a6(&e, 24), CLIENT6, "sent back to the source");
    assert_eq!(a6(&e, 8), server6(), "from the address the packet was sent to (no own_v6 set)");
    assert_eq!(&e[48..], &pkt[..], "quotes the packet");
    assert!(v6_checksums_ok(&e));
    assert_eq!(x.stats.dropped(DropReason::HopLimitExceeded), 1);
    assert_eq!(x.stats.icmp_errors_sent, 1);
}

// RFC 7915 5.4: error generation can be switched off; an ICMPv6 error is never answered.
#[test]
fn rfc7915_5_4_no_error_when_disabled_or_for_errors() {
    let mut p = v6_out(CLIENT6, 17, udp(5000, 53, b"x"));
    p.hop = 1;
    let mut x = Translator::new(XlatConfig { icmp_errors: false, ..XlatConfig::default() });
    assert_eq!(run(&mut x, &p.build()).0, Verdict::Drop(DropReason::HopLimitExceeded));
    let quoted = V6::new(server6(), CLIENT6, 17, udp(53, 5000, b"")).build();
    let mut e = v6_out(CLIENT6, 58, icmp(1, 4, [0; 4], &quoted));
    e.hop = 1;
    assert_eq!(run(&mut xl(), &e.build()).0, Verdict::Drop(DropReason::HopLimitExceeded));
}

// RFC 4443 2.4 (e): no Time Exceeded for a packet sent to a multicast address
// (the kernel's own MLD reports on the TUN device have Hop Limit 1). Issue
// 13 item 6: they are not for pool6 at all, counted apart from real drops
// (not as hop_limit_exceeded), whatever their hop limit; so are link-local
// and unspecified destinations.
#[test]
fn rfc4443_2_4_e_no_error_for_multicast_destination() {
    for (dst, hop) in
        [("ff02::16", 1), ("ff02::2", 255), ("ff0e::1", 64), ("fe80::1", 1), ("febf:ffff::1", 64), ("::", 64)]
    {
        let mut p = V6::new("fe80::1".parse().unwrap(), dst.parse().unwrap(), 58, icmp(143, 0, [0; 4], &[0u8; 20]));
        p.hop = hop;
        let mut x = xl();
        assert_eq!(run(&mut x, &p.build()).0, Verdict::Drop(DropReason::NotForPool6), "{dst}");
        assert_eq!(x.stats.icmp_errors_sent, 0);
        assert_eq!((x.stats.dropped(DropReason::HopLimitExceeded), x.stats.real_drops()), (0, 0), "{dst}");
    }
}

// RFC 7915 5.1: Hop-by-Hop / Destination Options are skipped and not counted in Total Length.
#[test]
fn rfc7915_5_1_extension_headers_skipped() {
    let mut p = v6_out(CLIENT6, 17, udp(5000, 53, b"abc"));
    p.ext.push((0, vec![0, 0, 1, 4, 0, 0, 0, 0]));
    p.ext.push((60, vec![0, 0, 1, 4, 0, 0, 0, 0]));
    let (v, out) = run(&mut xl(), &p.build());
    let o = fwd(v, &out, Family::V4);
    assert_eq!((o[9], u16at(&o, 2)), (17, 31));
    assert!(v4_checksums_ok(&o));
}

// RFC 7915 5.1: Routing header with Segments Left non-zero: ICMPv6 Parameter Problem 4/0 pointing at it.
#[test]
fn rfc7915_5_1_segments_left_parameter_problem() {
    let mut p = v6_out(CLIENT6, 17, udp(5000, 53, b""));
    p.ext.push((43, vec![0, 0, 0, 1, 0, 0, 0, 0]));
    let (v, out) = run(&mut xl(), &p.build());
    let (r, e) = reply(v, &out, Family::V6);
    assert_eq!(r, DropReason::SegmentsLeft);
    assert_eq!((e[40], e[41]), (4, 0));
    assert_eq!(u32::from_be_bytes([e[44], e[45], e[46], e[47]]), 43, "pointer at Segments Left");
    assert!(v6_checksums_ok(&e));
}

// RFC 7915 5.1.1: Fragment header → IPv4 ID (low 16 bits), MF, offset; DF clear.
#[test]
fn rfc7915_5_1_1_fragment_header() {
    let p = v6_out(CLIENT6, 17, udp(5000, 53, &[1u8; 64])).fragment(0, true, 0xabcd_1234);
    let (v, out) = run(&mut xl(), &p.build());
    let o = fwd(v, &out, Family::V4);
    assert_eq!(u16at(&o, 4), 0x1234);
    assert_eq!(u16at(&o, 6), 0x2000, "MF set, DF clear, offset 0");
    assert_eq!(u16at(&o, 2) as usize, 20 + 72);
    // A later fragment: no transport header, offset copied.
    let mut q = V6::new(CLIENT6, server6(), 17, vec![9u8; 16]).fragment(9, false, 0xabcd_1234);
    q.raw_l4 = true;
    let (v, out) = run(&mut xl(), &q.build());
    let o = fwd(v, &out, Family::V4);
    assert_eq!(u16at(&o, 6), 9);
    assert_eq!(&o[20..], &[9u8; 16]);
}

// RFC 7915 5.1.1 / 5.4: a Fragment header followed by another extension header is dropped.
#[test]
fn rfc7915_5_4_extension_after_fragment_dropped() {
    let mut p = v6_out(CLIENT6, 17, udp(5000, 53, b"")).fragment(0, true, 1);
    p.ext.push((60, vec![0, 0, 1, 4, 0, 0, 0, 0]));
    assert_eq!(run(&mut xl(), &p.build()).0, Verdict::Drop(DropReason::ExtAfterFragment));
}

// RFC 7915 5.1: too big for the IPv4 MTU with DF to be set: Packet Too Big, MTU = IPv4 MTU + 20.
#[test]
fn rfc7915_5_1_packet_too_big() {
    let mut x = xl_mtu(1500, 1400);
    let (v, out) = run(&mut x, &v6_out(CLIENT6, 17, udp(1, 2, &[0u8; 1452])).build());
    let (r, e) = reply(v, &out, Family::V6);
    assert_eq!(r, DropReason::PacketTooBig);
    assert_eq!((e[40], e[41]), (2, 0));
    assert_eq!(u32::from_be_bytes([e[44], e[45], e[46], e[47]]), 1420);
    assert!(e.len() <= 1280, "ICMPv6 error fits the minimum MTU");
}

// RFC 7915 5.1.1: a fragment too big for the IPv4 MTU is fragmented further in IPv4.
#[test]
fn rfc7915_5_1_1_fragment_refragmented() {
    let data: Vec<u8> = (0..1400u32).map(|i| i as u8).collect();
    let p = V6 { raw_l4: true, ..V6::new(CLIENT6, server6(), 17, data.clone()) }.fragment(100, true, 0x77);
    let mut x = xl_mtu(1500, 576);
    let mut out = vec![0u8; OUT_BUF_LEN];
    let Verdict::Forward(o) = x.translate(&p.build(), &mut out, &mut NatLike) else { panic!() };
    let frags: Vec<&[u8]> = o.packets(&out).collect();
    assert_eq!(frags.len(), 3);
    let mut joined = vec![];
    for (k, f) in frags.iter().enumerate() {
        assert!(f.len() <= 576);
        assert!(v4_checksums_ok(f));
        assert_eq!(u16at(f, 2) as usize, f.len());
        assert_eq!(u16at(f, 4), 0x77);
        let fl = u16at(f, 6);
        assert_eq!(fl & 0x4000, 0, "DF clear");
        assert_ne!(fl & 0x2000, 0, "MF set on every piece of a non-last fragment");
        assert_eq!((fl & 0x1fff) as usize, 100 + joined.len() / 8, "fragment {k} offset");
        joined.extend_from_slice(&f[20..]);
    }
    assert_eq!(joined, data);
}

// RFC 7915 5.2: Echo Request 128 → 8 and Echo Reply 129 → 0, checksum without pseudo-header.
#[test]
fn rfc7915_5_2_echo() {
    for (t6, t4) in [(128u8, 8u8), (129, 0)] {
        let (v, out) = run(&mut xl(), &v6_out(CLIENT6, 58, echo(t6, 0x4242, 7, b"ping")).build());
        let o = fwd(v, &out, Family::V4);
        assert_eq!((o[9], o[20], o[21]), (1, t4, 0));
        assert_eq!(u16at(&o, 24), 0x4242 + SHIFT, "identifier from the mapper");
        assert_eq!(u16at(&o, 26), 7, "sequence unchanged");
        assert!(v4_checksums_ok(&o));
    }
}

// RFC 7915 5.2: MLD, Neighbor Discovery and unknown informational messages are dropped.
#[test]
fn rfc7915_5_2_informational_dropped() {
    for ty in [130u8, 131, 132, 133, 134, 135, 136, 137, 200] {
        let (v, _) = run(&mut xl(), &v6_out(CLIENT6, 58, icmp(ty, 0, [0; 4], &[0; 16])).build());
        assert_eq!(v, Verdict::Drop(DropReason::IcmpUntranslatable), "type {ty}");
    }
}

/// An ICMPv6 error from the client about a packet the server sent it.
fn icmp6_error(ty: u8, code: u8, rest: [u8; 4], quoted_data: &[u8]) -> Vec<u8> {
    let quoted = V6::new(server6(), CLIENT6, 17, udp(53, 5000, quoted_data)).build();
    v6_out(CLIENT6, 58, icmp(ty, code, rest, &quoted)).build()
}

// RFC 7915 5.2 / 5.3: Destination Unreachable (port) 1/4 → 3/3, quoted packet translated.
#[test]
fn rfc7915_5_3_error_with_quoted_packet() {
    let pkt = icmp6_error(1, 4, [0; 4], b"answer");
    let (v, out) = run(&mut xl(), &pkt);
    let o = fwd(v, &out, Family::V4);
    assert_eq!((o[20], o[21]), (3, 3));
    assert_eq!((a4(&o, 12), a4(&o, 16)), (POOL4, SERVER4), "outer follows the quoted packet, reversed");
    assert!(v4_checksums_ok(&o), "outer header and ICMPv4 checksum");
    let inner = &o[28..];
    assert_eq!((a4(inner, 12), a4(inner, 16)), (SERVER4, POOL4));
    assert_eq!(inner[8], 64, "RFC 7915 5.3: inner Hop Limit copied, not decremented");
    assert_eq!((u16at(inner, 20), u16at(inner, 22)), (53, 5000 + SHIFT));
    assert_eq!(u16at(inner, 2) as usize, inner.len(), "inner Total Length");
    assert!(v4_checksums_ok(inner), "inner IPv4 header and UDP checksum");
    assert_eq!(u16at(&o, 2) as usize, o.len(), "outer Total Length");
}

// RFC 7915 5.2: the rest of the error table, through the whole pipeline.
#[test]
fn rfc7915_5_2_error_types_end_to_end() {
    let rows: &[ErrorRow] = &[
        (1, 0, [0; 4], Some((3, 1, [0; 4]))),
        (1, 1, [0; 4], Some((3, 10, [0; 4]))),
        (1, 2, [0; 4], Some((3, 1, [0; 4]))),
        (1, 3, [0; 4], Some((3, 1, [0; 4]))),
        (1, 5, [0; 4], None),
        (3, 0, [0; 4], Some((11, 0, [0; 4]))),
        (3, 1, [0; 4], Some((11, 1, [0; 4]))),
        (4, 0, [0, 0, 0, 7], Some((12, 0, [8, 0, 0, 0]))),
        (4, 0, [0, 0, 0, 24], Some((12, 0, [16, 0, 0, 0]))),
        (4, 1, [0, 0, 0, 6], Some((3, 2, [0; 4]))),
        (4, 2, [0; 4], None),
    ];
    for &(ty, code, rest, want) in rows {
        let (v, out) = run(&mut xl(), &icmp6_error(ty, code, rest, b""));
        match want {
            Some((t4, c4, r4)) => {
                let o = fwd(v, &out, Family::V4);
                assert_eq!((o[20], o[21], [o[24], o[25], o[26], o[27]]), (t4, c4, r4), "ICMPv6 {ty}/{code}");
                assert!(v4_checksums_ok(&o));
            }
            None => assert_eq!(v, Verdict::Drop(DropReason::IcmpUntranslatable), "ICMPv6 {ty}/{code}"),
        }
    }
    // Pointer at the flow label has no IPv4 counterpart.
    let (v, _) = run(&mut xl(), &icmp6_error(4, 0, [0, 0, 0, 2], b""));
    assert_eq!(v, Verdict::Drop(DropReason::IcmpPointer));
}

// RFC 7915 5.2: Packet Too Big → 3/4, MTU = min(advertised − 20, IPv4 MTU, IPv6 MTU − 20).
#[test]
fn rfc7915_5_2_packet_too_big_mtu() {
    for (adv, v6mtu, v4mtu, want) in [
        (1400u32, 1500u16, 1500u16, 1380u16),
        (1400, 1280, 1500, 1260),
        (1500, 1500, 1300, 1300),
        (9000, 9000, 9000, 8980),
    ] {
        let (v, out) = run(&mut xl_mtu(v6mtu, v4mtu), &icmp6_error(2, 0, adv.to_be_bytes(), b""));
        let o = fwd(v, &out, Family::V4);
        assert_eq!((o[20], o[21]), (3, 4));
        assert_eq!(u16at(&o, 26), want, "advertised {adv}, mtus {v6mtu}/{v4mtu}");
        assert!(v4_checksums_ok(&o));
    }
}

// RFC 7915 5.3: an ICMPv6 error quoting an ICMPv6 error is dropped.
#[test]
fn rfc7915_5_3_nested_error_dropped() {
    let inner_err = V6::new(server6(), CLIENT6, 58, icmp(1, 4, [0; 4], &[0u8; 48])).build();
    let pkt = v6_out(CLIENT6, 58, icmp(1, 4, [0; 4], &inner_err)).build();
    assert_eq!(run(&mut xl(), &pkt).0, Verdict::Drop(DropReason::IcmpNestedError));
}

// RFC 7915 5.3: the translated error is truncated to fit 576 bytes.
#[test]
fn rfc7915_5_3_truncated_to_576() {
    let (v, out) = run(&mut xl(), &icmp6_error(1, 4, [0; 4], &[5u8; 1100]));
    let o = fwd(v, &out, Family::V4);
    assert_eq!(o.len(), 576);
    assert_eq!(u16at(&o, 2), 576);
    assert!(v4_checksums_ok(&o));
}

// RFC 7915 5.2 (ICMP Error Payload) / RFC 4884: the extension length is adjusted.
#[test]
fn rfc7915_5_2_rfc4884_extension_length() {
    // Quoted packet padded to 128 bytes (16 words of 8), then an 8-byte extension.
    let mut quoted = V6::new(server6(), CLIENT6, 17, udp(53, 5000, b"")).build();
    quoted.resize(128, 0);
    let mut body = quoted.clone();
    body.extend_from_slice(&[0x20, 0, 0xaa, 0xbb, 0, 8, 1, 1]);
    let pkt = v6_out(CLIENT6, 58, icmp(1, 4, [16, 0, 0, 0], &body)).build();
    let (v, out) = run(&mut xl(), &pkt);
    let o = fwd(v, &out, Family::V4);
    let words = o[25] as usize;
    assert_eq!(words * 4, 128, "quoted IPv4 packet padded to 128 bytes, length in 32-bit words");
    assert_eq!(&o[28 + 128..], &[0x20, 0, 0xaa, 0xbb, 0, 8, 1, 1], "extension follows");
    assert!(v4_checksums_ok(&o));
}

// RFC 7915 5.5 with RFC 1624: a wrong checksum stays wrong by the same amount.
#[test]
fn rfc7915_5_5_wrong_checksum_stays_wrong() {
    for proto in [6u8, 17, 58] {
        let l4 = match proto {
            6 => tcp(1, 2, 3, 0x10, b"data"),
            17 => udp(1, 2, b"data"),
            _ => echo(128, 9, 1, b"data"),
        };
        let mut pkt = v6_out(CLIENT6, proto, l4).build();
        let ck_off = 40
            + if proto == 6 {
                16
            } else if proto == 17 {
                6
            } else {
                2
            };
        pkt[ck_off + 1] ^= 0x5a;
        let residual_in = {
            let mut ps = vec![];
            ps.extend_from_slice(&pkt[8..40]);
            ps.extend_from_slice(&((pkt.len() - 40) as u32).to_be_bytes());
            ps.extend_from_slice(&[0, 0, 0, proto]);
            testpkt::naive_sum(&[&ps, &pkt[40..]])
        };
        let (v, out) = run(&mut xl(), &pkt);
        let o = fwd(v, &out, Family::V4);
        let residual_out = if proto == 58 {
            testpkt::naive_sum(&[&o[20..]])
        } else {
            let mut ps = o[12..20].to_vec();
            ps.extend_from_slice(&[0, proto]);
            ps.extend_from_slice(&((o.len() - 20) as u16).to_be_bytes());
            testpkt::naive_sum(&[&ps, &o[20..]])
        };
        assert_ne!(residual_in, 0xffff, "input is wrong");
        assert_eq!(residual_out, residual_in, "proto {proto}: same error after translation");
    }
}

// RFC 8200 8.1: IPv6 UDP with checksum zero is not valid and is dropped.
#[test]
fn ipv6_udp_zero_checksum_dropped() {
    let mut pkt = v6_out(CLIENT6, 17, udp(1, 2, b"x")).build();
    pkt[46] = 0;
    pkt[47] = 0;
    assert_eq!(run(&mut xl(), &pkt).0, Verdict::Drop(DropReason::Udp6ZeroChecksum));
}

// Malformed IPv6 input: each a named drop, never a panic.
#[test]
fn malformed_ipv6_named_drops() {
    let good = v6_out(CLIENT6, 6, tcp(1, 2, 3, 0x02, b"")).build();
    let mut x = xl();
    assert_eq!(run(&mut x, &good[..50]).0, Verdict::Drop(DropReason::Ipv6Truncated), "shorter than Payload Length");
    assert_eq!(run(&mut x, &good[..39]).0, Verdict::Drop(DropReason::Ipv6Truncated));
    let mut short_tcp = v6_out(CLIENT6, 6, vec![0u8; 12]);
    short_tcp.raw_l4 = true;
    assert_eq!(run(&mut x, &short_tcp.build()).0, Verdict::Drop(DropReason::L4Truncated));
    assert_eq!(run(&mut x, &[]).0, Verdict::Drop(DropReason::BadVersion));
    assert_eq!(run(&mut x, &[0x50; 60]).0, Verdict::Drop(DropReason::BadVersion));
    let frag_icmp = v6_out(CLIENT6, 58, echo(128, 1, 1, b"")).fragment(0, true, 5).build();
    assert_eq!(run(&mut x, &frag_icmp).0, Verdict::Drop(DropReason::FragmentedIcmp), "RFC 7915 1.2");
    assert_eq!(x.stats.dropped(DropReason::Ipv6Truncated), 2);
}

// RFC 6052 3.1: under the well-known prefix a non-global IPv4 destination is refused (ICMPv6 1/1).
#[test]
fn rfc6052_3_1_well_known_prefix_refuses_non_global() {
    let mut m = Rfc6052Mapper::new(Prefix6052::WKP);
    let src = Prefix6052::WKP.embed(Ipv4Addr::new(8, 8, 8, 8));
    let dst = Prefix6052::WKP.embed(Ipv4Addr::new(192, 168, 1, 1));
    let pkt = V6::new(src, dst, 17, udp(1, 2, b"")).build();
    let mut out = vec![0u8; OUT_BUF_LEN];
    let mut x = xl();
    let (r, e) = reply(x.translate(&pkt, &mut out, &mut m), &out, Family::V6);
    assert_eq!(r, DropReason::NonGlobalV4);
    assert_eq!((e[40], e[41]), (1, 1));
    assert_eq!(x.stats.dropped(DropReason::NonGlobalV4), 1);
    // The lab switch allows them.
    m.allow_non_global = true;
    assert!(matches!(x.translate(&pkt, &mut out, &mut m), Verdict::Forward(_)));
    // A global destination is fine.
    let ok = V6::new(src, Prefix6052::WKP.embed(Ipv4Addr::new(1, 1, 1, 1)), 17, udp(1, 2, b"")).build();
    m.allow_non_global = false;
    assert!(matches!(x.translate(&ok, &mut out, &mut m), Verdict::Forward(_)));
}

// ---------------------------------------------------------------- IPv4 → IPv6

// RFC 7915 4.1: every IPv6 header field of a translated UDP packet.
#[test]
fn rfc7915_4_1_udp_header_fields() {
    let mut p = v4_in(17, udp(53, 5000 + SHIFT, b"reply"));
    p.tos = 0x28;
    p.ttl = 30;
    let mut x = xl();
    let (v, out) = run(&mut x, &p.build());
    let o = fwd(v, &out, Family::V6);
    assert_eq!(o[0] >> 4, 6);
    assert_eq!(((o[0] & 0xf) << 4) | (o[1] >> 4), 0x28, "Traffic Class = TOS");
    assert_eq!(u32::from_be_bytes([0, o[1] & 0xf, o[2], o[3]]), 0, "Flow Label 0");
    assert_eq!(u16at(&o, 4), 13, "Payload Length = Total Length − IHL×4");
    assert_eq!((o[6], o[7]), (17, 29), "Next Header, Hop Limit = TTL − 1");
    assert_eq!((a6(&o, 8), a6(&o, 24)), (server6(), CLIENT6));
    assert_eq!((u16at(&o, 40), u16at(&o, 42)), (53, 5000));
    assert!(v6_checksums_ok(&o));
    assert_eq!(&o[48..], b"reply");
    assert_eq!(x.stats.in_4to6.packets[1], 1);
}

// RFC 7915 4.1: IPv4 options are not translated.
#[test]
fn rfc7915_4_1_options_ignored() {
    let mut p = v4_in(6, tcp(80, 40000 + SHIFT, 1, 0x12, b""));
    p.options = vec![1, 7, 7, 4, 0, 0, 0, 0]; // NOP, Record Route (len 7, empty)
    let (v, out) = run(&mut xl(), &p.build());
    let o = fwd(v, &out, Family::V6);
    assert_eq!(u16at(&o, 4), 20);
    assert!(v6_checksums_ok(&o));
}

// RFC 7915 4.1: an unexpired source route: dropped, ICMPv4 3/5.
#[test]
fn rfc7915_4_1_source_route() {
    let mut p = v4_in(17, udp(53, 5000, b""));
    p.options = vec![131, 7, 4, 192, 0, 2, 1, 0];
    let (v, out) = run(&mut xl(), &p.build());
    let (r, e) = reply(v, &out, Family::V4);
    assert_eq!(r, DropReason::SourceRoute);
    assert_eq!((e[20], e[21]), (3, 5));
    assert!(v4_checksums_ok(&e));
}

// RFC 7915 4.1: TTL 1 on arrival: ICMPv4 Time Exceeded 11/0 back to the source.
#[test]
fn rfc7915_4_1_ttl_exceeded() {
    let mut p = v4_in(17, udp(53, 5000, b"x"));
    p.ttl = 1;
    let pkt = p.build();
    let mut x = Translator::new(XlatConfig { own_v4: Some(Ipv4Addr::new(192, 0, 2, 1)), ..XlatConfig::default() });
    let (v, out) = run(&mut x, &pkt);
    let (r, e) = reply(v, &out, Family::V4);
    assert_eq!(r, DropReason::HopLimitExceeded);
    assert_eq!((e[20], e[21]), (11, 0));
    assert_eq!((a4(&e, 12), a4(&e, 16)), (Ipv4Addr::new(192, 0, 2, 1), SERVER4), "from own_v4 to the source");
    assert_eq!(&e[28..], &pkt[..]);
    assert!(v4_checksums_ok(&e));
}

// RFC 7915 4.1: an IPv4 fragment gets a Fragment header: ID, offset and M copied.
#[test]
fn rfc7915_4_1_fragment_header_added() {
    let mut p = v4_in(17, udp(53, 5000 + SHIFT, &[3u8; 32]));
    p.df = false;
    p.mf = true;
    p.ident = 0xbeef;
    let (v, out) = run(&mut xl(), &p.build());
    let o = fwd(v, &out, Family::V6);
    assert_eq!(o[6], 44, "Fragment header");
    assert_eq!(u16at(&o, 4) as usize, 8 + 40);
    assert_eq!(o[40], 17, "its Next Header");
    assert_eq!(u16at(&o, 42), 1, "offset 0, M set");
    assert_eq!(u32::from_be_bytes([o[44], o[45], o[46], o[47]]), 0xbeef, "ID, high 16 bits zero");
    assert_eq!(u16at(&o, 48 + 2), 5000, "first fragment's ports mapped");
    // Non-first fragment.
    let mut q = V4 { raw_l4: true, ..v4_in(17, vec![4u8; 24]) };
    q.df = false;
    q.frag_offset = 5;
    let (v, out) = run(&mut xl(), &q.build());
    let o = fwd(v, &out, Family::V6);
    assert_eq!(u16at(&o, 42), 5 << 3);
    assert_eq!(&o[48..], &[4u8; 24]);
}

// RFC 7915 4.1: DF clear and too big: IPv6 fragments within lowest-ipv6-mtu.
#[test]
fn rfc7915_4_1_df_clear_fragmented() {
    let data: Vec<u8> = (0..1472u32).map(|i| (i * 3) as u8).collect();
    let mut p = v4_in(17, udp(53, 5000 + SHIFT, &data));
    p.df = false;
    p.ident = 0x0102;
    let pkt = p.build();
    let mut x = xl(); // lowest-ipv6-mtu 1280
    let mut out = vec![0u8; OUT_BUF_LEN];
    let Verdict::Forward(o) = x.translate(&pkt, &mut out, &mut NatLike) else { panic!() };
    let frags: Vec<&[u8]> = o.packets(&out).collect();
    assert_eq!(frags.len(), 2);
    let mut joined = vec![];
    for f in &frags {
        assert!(f.len() <= 1280);
        assert_eq!(f[6], 44);
        assert_eq!(u16at(f, 4) as usize, f.len() - 40);
        assert_eq!(u32::from_be_bytes([f[44], f[45], f[46], f[47]]), 0x0102);
        assert_eq!((u16at(f, 42) >> 3) as usize * 8, joined.len());
        joined.extend_from_slice(&f[48..]);
    }
    assert_eq!(u16at(frags[0], 42) & 1, 1, "M set on the first");
    assert_eq!(u16at(frags[1], 42) & 1, 0, "M clear on the last");
    // The reassembled UDP datagram verifies against the IPv6 pseudo-header.
    let mut whole = frags[0][..40].to_vec();
    whole[4..6].copy_from_slice(&(joined.len() as u16).to_be_bytes());
    whole[6] = 17;
    whole.extend_from_slice(&joined);
    assert!(v6_checksums_ok(&whole));
    assert_eq!(&joined[8..], &data[..]);
    assert_eq!(x.stats.in_4to6.fragmented, 1);
}

// RFC 7915 4.1: the lowest-ipv6-mtu is configurable: no Fragment header when the packet fits.
#[test]
fn rfc7915_4_1_no_fragment_header_when_it_fits() {
    let mut p = v4_in(17, udp(53, 5000 + SHIFT, &[0u8; 1452]));
    p.df = false;
    let (v, out) = run(&mut xl_mtu(1500, 1500), &p.build());
    let o = fwd(v, &out, Family::V6);
    assert_eq!((o[6], o.len()), (17, 1500));
}

// RFC 7915 section 4, lowest-ipv6-mtu (default 1280): a 1400-byte UDP
// datagram from IPv4 with DF clear, towards a 1500-byte IPv6 next hop, is
// fragmented so that every IPv6 packet, Fragment header included, is at
// most 1280 bytes; with DF set it goes whole (path MTU discovery decides).
#[test]
fn rfc7915_4_lowest_ipv6_mtu_fragments_df_clear() {
    let mut x = Translator::with_key(XlatConfig { ipv6_mtu: 1500, ipv4_mtu: 1500, ..XlatConfig::default() }, 7);
    let mut p = v4_in(17, udp(53, 5000 + SHIFT, &[5u8; 1400]));
    p.df = false;
    let mut out = vec![0u8; OUT_BUF_LEN];
    let v = x.translate(&p.build(), &mut out, &mut NatLike);
    let Verdict::Forward(o) = v else { panic!("{v:?}") };
    let frags: Vec<&[u8]> = o.packets(&out).collect();
    assert_eq!(frags.len(), 2, "1448 bytes as one packet would exceed 1280");
    assert!(frags.iter().all(|f| f.len() <= 1280 && f[6] == 44), "Fragment header, at most 1280 each");
    assert_eq!(frags.iter().map(|f| f.len() - 48).sum::<usize>(), 1408, "UDP header and data, all of it");
    assert_eq!(x.stats.in_4to6.fragmented, 1);
    p.df = true;
    let (v, out) = run(&mut x, &p.build());
    assert_eq!(fwd(v, &out, Family::V6).len(), 1448, "DF set: whole, the next hop's 1500 applies");
    // Configurable: at 1500 the DF-clear datagram goes whole too.
    let mut wide = Translator::with_key(
        XlatConfig { ipv6_mtu: 1500, lowest_ipv6_mtu: 1500, ipv4_mtu: 1500, ..XlatConfig::default() },
        7,
    );
    p.df = false;
    let (v, out) = run(&mut wide, &p.build());
    assert_eq!(fwd(v, &out, Family::V6).len(), 1448);
}

// RFC 7915 4.1: DF set and too big: ICMPv4 Fragmentation Needed, MTU = IPv6 MTU − 20.
#[test]
fn rfc7915_4_1_fragmentation_needed() {
    let (v, out) = run(&mut xl(), &v4_in(6, tcp(80, 40000, 1, 0x10, &[0u8; 1400])).build());
    let (r, e) = reply(v, &out, Family::V4);
    assert_eq!(r, DropReason::PacketTooBig);
    assert_eq!((e[20], e[21], u16at(&e, 26)), (3, 4, 1260));
    assert!(e.len() <= 576);
    assert!(v4_checksums_ok(&e));
}

// RFC 7915 4.2: Echo Request 8 → 128 and Reply 0 → 129, checksum now with the pseudo-header.
#[test]
fn rfc7915_4_2_echo() {
    for (t4, t6) in [(8u8, 128u8), (0, 129)] {
        let (v, out) = run(&mut xl(), &v4_in(1, echo(t4, 0x4242 + SHIFT, 3, b"pong")).build());
        let o = fwd(v, &out, Family::V6);
        assert_eq!((o[6], o[40]), (58, t6));
        assert_eq!(u16at(&o, 44), 0x4242);
        assert!(v6_checksums_ok(&o));
    }
}

// RFC 7915 4.2: informational and obsolete ICMPv4 types are silently dropped.
#[test]
fn rfc7915_4_2_informational_dropped() {
    for ty in [4u8, 5, 6, 9, 10, 13, 14, 15, 16, 17, 18, 42] {
        let (v, _) = run(&mut xl(), &v4_in(1, icmp(ty, 0, [0; 4], &[0u8; 28])).build());
        assert_eq!(v, Verdict::Drop(DropReason::IcmpUntranslatable), "type {ty}");
    }
}

/// An ICMPv4 error from ROUTER4 about a packet the client sent to the server.
fn icmp4_error(ty: u8, code: u8, rest: [u8; 4], quoted_data: &[u8]) -> Vec<u8> {
    let quoted = V4::new(POOL4, SERVER4, 17, udp(5000 + SHIFT, 53, quoted_data)).build();
    V4::new(ROUTER4, POOL4, 1, icmp(ty, code, rest, &quoted)).build()
}

// RFC 7915 4.2 / 4.3: Port Unreachable 3/3 → 1/4, the quoted packet translated back to the client's.
#[test]
fn rfc7915_4_3_error_with_quoted_packet() {
    let (v, out) = run(&mut xl(), &icmp4_error(3, 3, [0; 4], b"query"));
    let o = fwd(v, &out, Family::V6);
    assert_eq!((o[40], o[41]), (1, 4));
    assert_eq!(a6(&o, 8), pf().embed(ROUTER4), "source: the router, embedded");
    assert_eq!(a6(&o, 24), CLIENT6, "to the client the quoted packet came from");
    assert!(v6_checksums_ok(&o));
    let inner = &o[48..];
    assert_eq!((a6(inner, 8), a6(inner, 24)), (CLIENT6, server6()));
    assert_eq!(inner[7], 64, "RFC 7915 4.3: inner TTL copied as Hop Limit");
    assert_eq!((u16at(inner, 40), u16at(inner, 42)), (5000, 53));
    assert!(v6_checksums_ok(inner), "inner UDP checksum consistent");
    assert_eq!(u16at(&o, 4) as usize, o.len() - 40);
}

// RFC 7915 4.2: the rest of the ICMPv4 error table, end to end.
#[test]
fn rfc7915_4_2_error_types_end_to_end() {
    let rows: &[ErrorRow] = &[
        (3, 0, [0; 4], Some((1, 0, [0; 4]))),
        (3, 1, [0; 4], Some((1, 0, [0; 4]))),
        (3, 2, [0; 4], Some((4, 1, [0, 0, 0, 6]))),
        (3, 9, [0; 4], Some((1, 1, [0; 4]))),
        (3, 13, [0; 4], Some((1, 1, [0; 4]))),
        (3, 14, [0; 4], None),
        (11, 0, [0; 4], Some((3, 0, [0; 4]))),
        (11, 1, [0; 4], Some((3, 1, [0; 4]))),
        (12, 0, [9, 0, 0, 0], Some((4, 0, [0, 0, 0, 6]))),
        (12, 2, [16, 0, 0, 0], Some((4, 0, [0, 0, 0, 24]))),
        (12, 1, [0; 4], None),
    ];
    for &(ty, code, rest, want) in rows {
        let (v, out) = run(&mut xl(), &icmp4_error(ty, code, rest, b""));
        match want {
            Some((t6, c6, r6)) => {
                let o = fwd(v, &out, Family::V6);
                assert_eq!((o[40], o[41], [o[44], o[45], o[46], o[47]]), (t6, c6, r6), "ICMPv4 {ty}/{code}");
                assert!(v6_checksums_ok(&o));
            }
            None => assert_eq!(v, Verdict::Drop(DropReason::IcmpUntranslatable), "ICMPv4 {ty}/{code}"),
        }
    }
    let (v, _) = run(&mut xl(), &icmp4_error(12, 0, [5, 0, 0, 0], b""));
    assert_eq!(v, Verdict::Drop(DropReason::IcmpPointer), "pointer at Flags has no IPv6 field");
}

// RFC 7915 4.2: Fragmentation Needed → Packet Too Big, MTU = min(reported + 20, IPv6 MTU,
// IPv4 MTU + 20), never below 1280; reported 0 → RFC 1191 plateau.
#[test]
fn rfc7915_4_2_packet_too_big_mtu() {
    for (reported, v6mtu, v4mtu, want) in [
        (1400u16, 1500u16, 1500u16, 1420u32),
        (1000, 1500, 1500, 1280),
        (1480, 9000, 1400, 1420),
        (0, 9000, 9000, 2022),
        (0, 1500, 1500, 1500),
    ] {
        // The quoted packet claims Total Length 4000 → plateau 2002 when reported is 0.
        let mut quoted = V4::new(POOL4, SERVER4, 17, udp(5000 + SHIFT, 53, &[0u8; 100])).build();
        quoted[2..4].copy_from_slice(&4000u16.to_be_bytes());
        let pkt =
            V4::new(ROUTER4, POOL4, 1, icmp(3, 4, [0, 0, (reported >> 8) as u8, reported as u8], &quoted)).build();
        let (v, out) = run(&mut xl_mtu(v6mtu, v4mtu), &pkt);
        let o = fwd(v, &out, Family::V6);
        assert_eq!((o[40], o[41]), (2, 0));
        assert_eq!(u32::from_be_bytes([o[44], o[45], o[46], o[47]]), want, "reported {reported}, mtus {v6mtu}/{v4mtu}");
        assert!(v6_checksums_ok(&o));
    }
}

// RFC 7915 4.3: an ICMPv4 error quoting an ICMPv4 error is dropped.
#[test]
fn rfc7915_4_3_nested_error_dropped() {
    let inner_err = V4::new(POOL4, SERVER4, 1, icmp(3, 3, [0; 4], &[0u8; 28])).build();
    let pkt = V4::new(ROUTER4, POOL4, 1, icmp(3, 1, [0; 4], &inner_err)).build();
    assert_eq!(run(&mut xl(), &pkt).0, Verdict::Drop(DropReason::IcmpNestedError));
}

// RFC 7915 4.3: the translated error is truncated to fit 1280 bytes.
#[test]
fn rfc7915_4_3_truncated_to_1280() {
    let (v, out) = run(&mut xl_mtu(1500, 1500), &icmp4_error(3, 3, [0; 4], &[1u8; 1400]));
    let o = fwd(v, &out, Family::V6);
    assert_eq!(o.len(), 1280);
    assert_eq!(u16at(&o, 4), 1240);
    assert!(v6_checksums_ok(&o));
}

// RFC 7915 4.2 (ICMP Error Payload) / RFC 4884: the extension length grows with the quoted header.
#[test]
fn rfc7915_4_2_rfc4884_extension_length() {
    let quoted = V4::new(POOL4, SERVER4, 17, udp(5000 + SHIFT, 53, &[0u8; 100])).build();
    assert_eq!(quoted.len(), 128);
    let mut body = quoted;
    body.extend_from_slice(&[0x20, 0, 0xaa, 0xbb, 0, 8, 1, 1]);
    let pkt = V4::new(ROUTER4, POOL4, 1, icmp(11, 0, [0, 32, 0, 0], &body)).build();
    let (v, out) = run(&mut xl(), &pkt);
    let o = fwd(v, &out, Family::V6);
    let words = o[44] as usize;
    // 128 bytes of IPv4 quote become 148 of IPv6, padded to 64-bit words: 152.
    assert_eq!(words * 8, 152);
    assert_eq!(&o[48 + 152..], &[0x20, 0, 0xaa, 0xbb, 0, 8, 1, 1]);
    assert!(v6_checksums_ok(&o));
}

// RFC 7915 4.5: UDP with checksum zero: computed when unfragmented, dropped when fragmented.
#[test]
fn rfc7915_4_5_udp_zero_checksum() {
    let mut p = v4_in(17, udp(53, 5000 + SHIFT, b"no checksum"));
    p.raw_l4 = true;
    p.l4[4..6].copy_from_slice(&19u16.to_be_bytes());
    let (v, out) = run(&mut xl(), &p.build());
    let o = fwd(v, &out, Family::V6);
    assert_ne!(u16at(&o, 46), 0);
    assert!(v6_checksums_ok(&o), "a real checksum was computed");
    p.df = false;
    p.mf = true;
    let mut x = xl();
    assert_eq!(run(&mut x, &p.build()).0, Verdict::Drop(DropReason::UdpZeroChecksumFragment));
    assert_eq!(x.stats.dropped(DropReason::UdpZeroChecksumFragment), 1);
}

// RFC 7915 4.5 with RFC 1624: a wrong checksum stays wrong by the same amount.
#[test]
fn rfc7915_4_5_wrong_checksum_stays_wrong() {
    for proto in [6u8, 17, 1] {
        let l4 = match proto {
            6 => tcp(80, 40000 + SHIFT, 3, 0x10, b"data"),
            17 => udp(53, 5000 + SHIFT, b"data"),
            _ => echo(0, 9 + SHIFT, 1, b"data"),
        };
        let mut pkt = v4_in(proto, l4).build();
        let ck_off = 20
            + if proto == 6 {
                16
            } else if proto == 17 {
                6
            } else {
                2
            };
        pkt[ck_off + 1] ^= 0x5a;
        let residual_in = if proto == 1 {
            testpkt::naive_sum(&[&pkt[20..]])
        } else {
            let mut ps = pkt[12..20].to_vec();
            ps.extend_from_slice(&[0, proto]);
            ps.extend_from_slice(&((pkt.len() - 20) as u16).to_be_bytes());
            testpkt::naive_sum(&[&ps, &pkt[20..]])
        };
        let (v, out) = run(&mut xl(), &pkt);
        let o = fwd(v, &out, Family::V6);
        let mut ps = o[8..40].to_vec();
        ps.extend_from_slice(&((o.len() - 40) as u32).to_be_bytes());
        ps.extend_from_slice(&[0, 0, 0, o[6]]);
        let residual_out = testpkt::naive_sum(&[&ps, &o[40..]]);
        assert_ne!(residual_in, 0xffff);
        assert_eq!(residual_out, residual_in, "proto {proto}");
    }
}

// Malformed IPv4 input: each a named drop, never a panic.
#[test]
fn malformed_ipv4_named_drops() {
    let good = v4_in(17, udp(53, 5000, b"abc")).build();
    let mut x = xl();
    assert_eq!(run(&mut x, &good[..25]).0, Verdict::Drop(DropReason::Ipv4Truncated), "shorter than Total Length");
    let mut bad = good.clone();
    bad[10] ^= 1;
    assert_eq!(run(&mut x, &bad).0, Verdict::Drop(DropReason::Ipv4Checksum));
    let mut bad = good.clone();
    bad[0] = 0x43;
    assert_eq!(run(&mut x, &bad).0, Verdict::Drop(DropReason::Ipv4Malformed));
    let mut short_udp = v4_in(17, vec![0u8; 4]);
    short_udp.raw_l4 = true;
    assert_eq!(run(&mut x, &short_udp.build()).0, Verdict::Drop(DropReason::L4Truncated));
    let mut frag_icmp = v4_in(1, echo(8, 1, 1, b""));
    frag_icmp.df = false;
    frag_icmp.mf = true;
    assert_eq!(run(&mut x, &frag_icmp.build()).0, Verdict::Drop(DropReason::FragmentedIcmp), "RFC 7915 1.2");
    // Trailing link padding beyond Total Length is ignored.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0u8; 10]);
    assert_eq!(fwd(run(&mut x, &padded).0, &run(&mut xl(), &padded).1, Family::V6).len(), 40 + 11);
}

// RFC 7915 4.5: other transport protocols are translated too (Next Header copied).
#[test]
fn rfc7915_4_5_other_protocols_forwarded() {
    let mut m = Rfc6052Mapper::new(pf());
    let p = V4::new(Ipv4Addr::new(198, 51, 100, 1), Ipv4Addr::new(198, 51, 100, 2), 47, vec![0xab; 12]).build();
    let mut out = vec![0u8; OUT_BUF_LEN];
    let o = fwd(xl().translate(&p, &mut out, &mut m), &out, Family::V6);
    assert_eq!((o[6], &o[40..]), (47, &[0xabu8; 12][..]));
}

#[test]
fn small_output_buffer_is_a_named_drop() {
    let mut out = vec![0u8; 100];
    let v = xl().translate(&v4_in(17, udp(1, 2, b"")).build(), &mut out, &mut NatLike);
    assert_eq!(v, Verdict::Drop(DropReason::OutputBuffer));
}

// ---------------------------------------------------------------- in place

/// Translate `pkt` in place behind `headroom` bytes; returns the verdict and the bytes sent.
fn run_in_place(pkt: &[u8], headroom: usize) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; headroom + pkt.len()];
    buf[headroom..].copy_from_slice(pkt);
    let mut scratch = vec![0u8; OUT_BUF_LEN];
    let v = xl().translate_in_place(&mut buf, headroom, pkt.len(), &mut scratch, &mut NatLike);
    let bytes = v.packets(&buf, &scratch).flatten().copied().collect();
    (v, bytes)
}

// The fast path rewrites only the headers, where the packet lies: same bytes as the copying path.
#[test]
fn in_place_fast_path_matches_copy() {
    let p6 = v6_out(CLIENT6, 6, tcp(40000, 80, 1, 0x10, &[9u8; 1000])).build();
    let mut frag4 = v4_in(17, udp(53, 5000 + SHIFT, &[1u8; 40]));
    (frag4.df, frag4.mf) = (false, true);
    for (pkt, fam) in [
        (p6, Family::V4),
        (v4_in(17, udp(53, 5000 + SHIFT, b"reply")).build(), Family::V6),
        (frag4.build(), Family::V6),
    ] {
        let (v, copied) = run(&mut xl(), &pkt);
        let (w, in_place) = run_in_place(&pkt, 28);
        let Verdict::Forward(o) = w else { panic!("{w:?}") };
        assert!(o.in_place && o.family == fam, "{o:?}");
        assert_eq!(in_place, fwd(v, &copied, fam));
    }
}

// Without enough headroom for the larger IPv6 header, the copying path is taken instead.
#[test]
fn in_place_falls_back_without_headroom() {
    let pkt = v4_in(17, udp(53, 5000 + SHIFT, b"reply")).build();
    let (w, bytes) = run_in_place(&pkt, 19);
    let Verdict::Forward(o) = w else { panic!("{w:?}") };
    assert!(!o.in_place);
    assert!(v6_checksums_ok(&bytes));
    // ICMP errors and replies always go to the output buffer.
    let mut ttl1 = v4_in(17, udp(53, 5000, b""));
    ttl1.ttl = 1;
    let (w, _) = run_in_place(&ttl1.build(), 64);
    assert!(matches!(w, Verdict::Reply { out: Output { in_place: false, .. }, .. }));
}

// ---------------------------------------------------------------- properties

fn l4_for(proto: u8, v6: bool, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    match proto {
        6 => tcp(sport, dport, 1, 0x18, data),
        17 => udp(sport, dport, data),
        _ => echo(if v6 { 128 } else { 8 }, sport, dport, data),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // RFC 7915 4 + 5 with RFC 6052: IPv6 → IPv4 → IPv6 keeps addresses, ports and payload.
    #[test]
    // (Sources a host may have: issue 18 drops 0/8, 127/8 and multicast as bad_source.)
    fn round_trip_6_4_6(a in any::<u32>().prop_filter("a unicast source", |a| !matches!(a >> 24, 0 | 127 | 224..)), b in any::<u32>(), proto in prop::sample::select(vec![6u8, 17, 58]),
                        sport in any::<u16>(), dport in any::<u16>(), data in prop::collection::vec(any::<u8>(), 0..1200), hop in 3u8..=255) {
        let mut m = Rfc6052Mapper::new(pf());
        let (s, d) = (pf().embed(Ipv4Addr::from(a)), pf().embed(Ipv4Addr::from(b)));
        let mut p = V6::new(s, d, proto, l4_for(proto, true, sport, dport, &data));
        p.hop = hop;
        let pkt = p.build();
        let mut x = xl_mtu(1500, 1500);
        let mut o4 = vec![0u8; OUT_BUF_LEN];
        let v4 = fwd(x.translate(&pkt, &mut o4, &mut m), &o4, Family::V4);
        prop_assert!(v4_checksums_ok(&v4));
        let mut o6 = vec![0u8; OUT_BUF_LEN];
        let back = fwd(x.translate(&v4, &mut o6, &mut m), &o6, Family::V6);
        prop_assert!(v6_checksums_ok(&back));
        let mut want = pkt.clone();
        want[7] = hop - 2;
        prop_assert_eq!(back, want);
    }

    // RFC 7915 4.5 / 5.5: with a valid input checksum, the output checksum equals a from-scratch one.
    #[test]
    fn checksums_valid_4to6(proto in prop::sample::select(vec![6u8, 17, 1]), sport in any::<u16>(), dport in any::<u16>(),
                            data in prop::collection::vec(any::<u8>(), 0..1400), tos in any::<u8>()) {
        let mut p = v4_in(proto, l4_for(proto, false, sport, dport, &data));
        p.tos = tos;
        p.df = false;
        let mut x = xl_mtu(1500, 1500);
        let mut out = vec![0u8; OUT_BUF_LEN];
        let o = fwd(x.translate(&p.build(), &mut out, &mut NatLike), &out, Family::V6);
        prop_assert!(v6_checksums_ok(&o));
    }

    #[test]
    fn checksums_valid_6to4(proto in prop::sample::select(vec![6u8, 17, 58]), sport in any::<u16>(), dport in any::<u16>(),
                            data in prop::collection::vec(any::<u8>(), 0..1400)) {
        let p = v6_out(CLIENT6, proto, l4_for(proto, true, sport, dport, &data));
        let mut x = xl_mtu(1500, 1500);
        let mut out = vec![0u8; OUT_BUF_LEN];
        let o = fwd(x.translate(&p.build(), &mut out, &mut NatLike), &out, Family::V4);
        prop_assert!(v4_checksums_ok(&o));
    }

    // Arbitrary bytes never panic; outputs stay within the buffer and the MTUs, lengths and
    // checksums hold, and in-place translation gives the same bytes (testpkt::check_invariants).
    #[test]
    fn arbitrary_bytes_keep_invariants(mut bytes in prop::collection::vec(any::<u8>(), 0..1600), v6 in any::<bool>()) {
        if let Some(b) = bytes.first_mut() { *b = (*b & 0x0f) | if v6 { 0x60 } else { 0x40 }; }
        let mut out = vec![0u8; OUT_BUF_LEN];
        let mut scratch = vec![0u8; OUT_BUF_LEN];
        testpkt::check_invariants(&mut xl(), &bytes, &mut out, &mut scratch);
    }
}

// RFC 7915 5.1 with RFC 7739 7.3: the IPv4 Identification of a translated
// packet comes from a keyed per-destination generator: consecutive packets
// of one flow get consecutive IDs, but another worker's (another key's)
// sequence starts elsewhere, and the first ID is not the old counter's 2.
#[test]
fn rfc7739_identification_is_keyed_per_destination() {
    let pkt = v6_out(CLIENT6, 17, udp(5000, 53, &[0u8; 40])).build();
    let id = |x: &mut Translator| {
        let (v, out) = run(x, &pkt);
        u16at(&fwd(v, &out, Family::V4), 4)
    };
    let (mut a, mut b) = (xl(), Translator::with_key(XlatConfig::default(), 8));
    let (a1, a2, b1) = (id(&mut a), id(&mut a), id(&mut b));
    assert_eq!(a2, a1.wrapping_add(1), "one flow: consecutive");
    assert_ne!(a1, b1, "keys 7 and 8 start elsewhere");
    let firsts: std::collections::HashSet<u16> =
        (0..16).map(|k| id(&mut Translator::with_key(XlatConfig::default(), k))).collect();
    assert!(firsts.len() >= 15 && !firsts.contains(&2), "{firsts:?}");
}

// RFC 4443 2.4 (f) / RFC 7915 5.4: the errors the translator makes are rate
// limited per destination host: past the burst a packet is still dropped
// and counted under its reason, but answered only as tokens come back with
// time; the held-back errors are counted. Another host still gets its error.
#[test]
fn rfc4443_2_4_f_icmp_errors_rate_limited() {
    let limit = IcmpLimit { rate: 0, burst: 0, per_host_rate: 1, per_host_burst: 2 };
    let mut x = Translator::with_key(XlatConfig { icmp_limit: limit, ..XlatConfig::default() }, 7);
    x.set_time(10_000);
    let expiring = |src: Ipv6Addr| {
        let mut p = v6_out(src, 17, udp(5000, 53, b"x"));
        p.hop = 1;
        p.build()
    };
    let replies = |x: &mut Translator, n: usize, src: Ipv6Addr| {
        (0..n).filter(|_| matches!(run(x, &expiring(src)).0, Verdict::Reply { .. })).count()
    };
    assert_eq!(replies(&mut x, 10, CLIENT6), 2, "the burst");
    assert_eq!(x.stats.icmp_errors_suppressed, 8);
    assert_eq!(x.stats.dropped(DropReason::HopLimitExceeded), 10, "every packet still counted as dropped");
    let other: Ipv6Addr = "2001:db8:1::99".parse().unwrap();
    assert_eq!(replies(&mut x, 1, other), 1, "another host is not held back");
    x.set_time(11_000);
    assert_eq!(replies(&mut x, 5, CLIENT6), 1, "one token a second");
}

// Issue 18 / RFC 4291 2.5.2, 2.5.3, 2.7 and RFC 1122 3.2.1.3: packets from
// a source no host may use are dropped as bad_source, silently (no error
// to such an address), and create nothing.
#[test]
fn rfc1122_rfc4291_bad_sources_dropped() {
    for src in ["::", "::1", "ff02::1", "ff0e::5"] {
        let p = v6_out(src.parse().unwrap(), 17, udp(5000, 53, b"x")).build();
        let mut x = xl();
        assert_eq!(run(&mut x, &p).0, Verdict::Drop(DropReason::BadSource), "{src}");
        assert_eq!(x.stats.icmp_errors_sent, 0);
    }
    // The edges of those ranges are sources like any other (RFC 4291 2.5.2/2.5.3 name :: and ::1 only).
    for src in ["::2", "fe00::1", "2001:db8::1"] {
        let p = v6_out(src.parse().unwrap(), 17, udp(5000, 53, b"x")).build();
        assert_ne!(run(&mut xl(), &p).0, Verdict::Drop(DropReason::BadSource), "{src}");
    }
    for src in [[0, 0, 0, 0], [0, 1, 2, 3], [127, 0, 0, 1], [224, 0, 0, 1], [239, 1, 2, 3], [255, 255, 255, 255]] {
        let mut p = v4_in(17, udp(53, 5000 + SHIFT, b"x"));
        p.src = Ipv4Addr::from(src);
        let mut x = xl();
        assert_eq!(run(&mut x, &p.build()).0, Verdict::Drop(DropReason::BadSource), "{src:?}");
        assert_eq!(x.stats.icmp_errors_sent, 0);
    }
}
