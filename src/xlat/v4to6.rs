//! RFC 7915 section 4: IPv4 → IPv6. Header (4.1), ICMPv4 (4.2), ICMPv4
//! errors and the packet they quote (4.3), errors we send (4.4), transport
//! checksums including zero-checksum UDP (4.5).

use super::errors::{self, Offending4};
use super::icmp::{self, Rest};
use super::{frag, Delivery, DropReason, Family, FlowMeta, Mapper, Output, Role, Translator, Tuple4, Tuple6, Verdict};
use crate::wire::checksum::{self, pseudo_v6, sum_addr4, sum_addr6};
use crate::wire::ipv4::{Ipv4Error, Ipv4Header};
use crate::wire::ipv6::{FragRepr, Ipv6Repr};
use crate::wire::{be16, proto, put16};

/// What a packet that translates by a header rewrite needs: offsets and
/// values only, so the rewrite can happen in a copy or in place.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    body_off: usize,
    body_len: usize,
    proto: u8,
    first: bool,
    fragment: bool,
    udp_zero: bool,
    t4: Tuple4,
    t6: Tuple6,
    tc: u8,
    hop: u8,
    ident: u16,
    more_frags: bool,
    frag_offset: u16,
    mtu: usize,
}

impl Plan {
    /// IPv6 header bytes: 40, and 8 more for a Fragment header.
    fn hdr(&self) -> usize {
        if self.fragment {
            48
        } else {
            40
        }
    }
    fn len6(&self) -> usize {
        self.hdr() + self.body_len
    }
    fn next(&self) -> u8 {
        if self.proto == proto::ICMP {
            proto::ICMPV6
        } else {
            self.proto
        }
    }
}

pub(super) enum Step {
    /// Decided: a drop, an ICMP error reply, or a translated ICMP error (in `out`).
    Done(Verdict),
    /// A header rewrite.
    Rewrite(Plan),
}

/// Translate one IPv4 packet into `out`. Returns the verdict and the IPv4 protocol number (for counters).
#[inline]
pub(super) fn translate<M: Mapper>(x: &mut Translator, pkt: &[u8], out: &mut [u8], map: &mut M) -> (Verdict, u8) {
    match plan(x, pkt, out, map, Delivery::Packet) {
        (Step::Done(v), p) => (v, p),
        (Step::Rewrite(plan), p) => (finish_copy(pkt, out, &plan), p),
    }
}

/// Translate the IPv4 packet at `buf[start..start + len]` where it lies,
/// growing into the headroom before `start`, when a header rewrite is all it
/// takes and the headroom suffices; otherwise into `out`.
#[inline]
pub(super) fn translate_in_place<M: Mapper>(
    x: &mut Translator,
    buf: &mut [u8],
    start: usize,
    len: usize,
    out: &mut [u8],
    map: &mut M,
    d: Delivery,
) -> (Verdict, u8) {
    let Some(pkt) = buf.get(start..start.saturating_add(len)) else {
        return (Verdict::Drop(DropReason::OutputBuffer), 0);
    };
    match plan(x, pkt, out, map, d) {
        (Step::Done(v), p) => (v, p),
        (Step::Rewrite(plan), p) if plan.len6() <= plan.mtu && start + plan.body_off >= plan.hdr() => {
            let at = start + plan.body_off - plan.hdr();
            let len6 = plan.len6();
            rewrite(&mut buf[at..at + len6], &plan);
            (Verdict::Forward(Output { family: Family::V6, start: at, len: len6, stride: len6, in_place: true }), p)
        }
        (Step::Rewrite(plan), p) => (finish_copy(&buf[start..start + len], out, &plan), p),
    }
}

/// Patch the transport header at `l4` (RFC 7915 4.5: a zero UDP checksum is computed).
#[inline(always)]
fn patch_body(l4: &mut [u8], p: &Plan) {
    if !p.first {
        return;
    }
    if p.udp_zero {
        // RFC 7915 4.5: compute the checksum the IPv4 sender left out.
        put16(l4, 0, p.t6.sport);
        put16(l4, 2, p.t6.dport);
        let ck = checksum::finish(checksum::sum(pseudo_v6(p.t6.src, p.t6.dst, proto::UDP, l4.len() as u32), l4));
        put16(l4, 6, if ck == 0 { 0xffff } else { ck });
    } else {
        patch_l4(l4, p.proto, &p.t4, &p.t6, l4.len() as u32, Role::Packet);
    }
}

/// Write the IPv6 header (and Fragment header) into `pkt[..hdr]` and patch
/// the transport header that follows it (already in place).
#[inline(always)]
fn rewrite(pkt: &mut [u8], p: &Plan) {
    let hdr = p.hdr();
    patch_body(&mut pkt[hdr..], p);
    let payload_len = (hdr - 40 + p.body_len) as u16;
    if p.fragment {
        Ipv6Repr {
            traffic_class: p.tc,
            payload_len,
            next_header: proto::FRAGMENT,
            hop_limit: p.hop,
            src: p.t6.src,
            dst: p.t6.dst,
        }
        .emit(pkt);
        // RFC 7915 4.1: ID = IPv4 ID (high 16 bits zero), offset and M copied.
        FragRepr { next_header: p.next(), offset: p.frag_offset, more: p.more_frags, ident: p.ident as u32 }
            .emit(&mut pkt[40..48]);
    } else {
        Ipv6Repr {
            traffic_class: p.tc,
            payload_len,
            next_header: p.next(),
            hop_limit: p.hop,
            src: p.t6.src,
            dst: p.t6.dst,
        }
        .emit(pkt);
    }
}

/// The copying finish: body into `out`, then the rewrite, or IPv6 fragments
/// of at most lowest-ipv6-mtu bytes (RFC 7915 4.1) when DF is clear (or the
/// packet is already a fragment) and it is too big.
fn finish_copy(pkt: &[u8], out: &mut [u8], p: &Plan) -> Verdict {
    let hdr = p.hdr();
    let len6 = p.len6();
    out[hdr..len6].copy_from_slice(&pkt[p.body_off..p.body_off + p.body_len]);
    if len6 <= p.mtu {
        rewrite(&mut out[..len6], p);
        return Verdict::Forward(Output::single(Family::V6, len6));
    }
    patch_body(&mut out[hdr..len6], p);
    let chunk = (p.mtu - 48) & !7;
    let payload = p.body_len;
    let Some((count, total)) = frag::spread(out, hdr, 48, payload, chunk) else {
        return Verdict::Drop(DropReason::OutputBuffer);
    };
    for k in 0..count {
        let n = chunk.min(payload - k * chunk);
        let at = k * (48 + chunk);
        let more = k + 1 < count || p.more_frags;
        let off = p.frag_offset + (k * chunk / 8) as u16;
        Ipv6Repr {
            traffic_class: p.tc,
            payload_len: (8 + n) as u16,
            next_header: proto::FRAGMENT,
            hop_limit: p.hop,
            src: p.t6.src,
            dst: p.t6.dst,
        }
        .emit(&mut out[at..]);
        FragRepr { next_header: p.next(), offset: off, more, ident: p.ident as u32 }.emit(&mut out[at + 40..at + 48]);
    }
    Verdict::Forward(Output { family: Family::V6, start: 0, len: total, stride: 48 + chunk, in_place: false })
}

/// Parse, check and map one IPv4 packet, and decide every IPv6 header field.
#[inline(always)]
fn plan<M: Mapper>(x: &mut Translator, pkt: &[u8], out: &mut [u8], map: &mut M, d: Delivery) -> (Step, u8) {
    let h = match Ipv4Header::parse(pkt) {
        Ok(h) => h,
        Err(Ipv4Error::Truncated) => return (Step::Done(Verdict::Drop(DropReason::Ipv4Truncated)), 0),
        Err(Ipv4Error::Malformed) => return (Step::Done(Verdict::Drop(DropReason::Ipv4Malformed)), 0),
        Err(Ipv4Error::Checksum) => return (Step::Done(Verdict::Drop(DropReason::Ipv4Checksum)), 0),
    };
    let pkt = &pkt[..h.total_len];
    let body = &pkt[h.header_len..];
    let first = h.frag_offset == 0;
    let fragment = h.is_fragment();
    let p = h.protocol;
    // Built only on the paths that answer with an error.
    let offending = || Offending4::new(pkt, &h);

    // RFC 1122 3.2.1.3: no host sends from "this network" (0/8), loopback,
    // multicast or the limited broadcast address.
    let s = h.src.octets();
    if s[0] == 0 || h.src.is_loopback() || h.src.is_multicast() || h.src.is_broadcast() {
        return (Step::Done(Verdict::Drop(DropReason::BadSource)), p);
    }

    // RFC 7915 4.1: an unexpired source route is not translated: ICMPv4 3/5.
    if Ipv4Header::unexpired_source_route(pkt, h.header_len).is_some() {
        return (Step::Done(errors::reply4(x, offending(), out, 3, 5, 0, DropReason::SourceRoute)), p);
    }
    // RFC 7915 4.1: TTL decremented; zero gives ICMPv4 Time Exceeded (11/0).
    if h.ttl <= 1 {
        return (Step::Done(errors::reply4(x, offending(), out, 11, 0, 0, DropReason::HopLimitExceeded)), p);
    }

    let mut sport = 0;
    let mut dport = 0;
    let mut tcp_flags = 0;
    let mut udp_zero = false;
    match p {
        proto::TCP if first => {
            if body.len() < 20 {
                return (Step::Done(Verdict::Drop(DropReason::L4Truncated)), p);
            }
            (sport, dport, tcp_flags) = (be16(body, 0), be16(body, 2), body[13]);
        }
        proto::UDP if first => {
            if body.len() < 8 {
                return (Step::Done(Verdict::Drop(DropReason::L4Truncated)), p);
            }
            if be16(body, 6) == 0 {
                // RFC 7915 4.5: a zero checksum is computed when the datagram
                // is whole, and the packet dropped when it is fragmented.
                if fragment {
                    return (Step::Done(Verdict::Drop(DropReason::UdpZeroChecksumFragment)), p);
                }
                udp_zero = true;
            }
            (sport, dport) = (be16(body, 0), be16(body, 2));
        }
        proto::ICMP => {
            // RFC 7915 1.2: fragmented ICMP is not translated.
            if fragment {
                return (Step::Done(Verdict::Drop(DropReason::FragmentedIcmp)), p);
            }
            if body.len() < 8 {
                return (Step::Done(Verdict::Drop(DropReason::L4Truncated)), p);
            }
            match body[0] {
                8 | 0 => (sport, dport) = (be16(body, 4), be16(body, 4)),
                3 | 11 | 12 => return (Step::Done(icmp_error(x, pkt, &h, out, map)), p),
                // RFC 7915 4.2: everything else is silently dropped.
                _ => return (Step::Done(Verdict::Drop(DropReason::IcmpUntranslatable)), p),
            }
        }
        // ICMPv6 carried over IPv4 would be taken for ICMPv6 on the IPv6 side.
        proto::ICMPV6 => return (Step::Done(Verdict::Drop(DropReason::IcmpUntranslatable)), p),
        _ => {}
    }

    let t4 = Tuple4 { src: h.src, dst: h.dst, proto: p, sport, dport };
    let frag_id = if fragment { h.ident as u32 } else { 0 };
    let meta =
        FlowMeta { role: Role::Packet, tcp_flags, fragment, first_fragment: fragment && first, frag_id, packet: pkt };
    let t6 = match map.map_4to6(&t4, &meta) {
        Ok(t) => t,
        Err(r) => {
            // RFC 6146 3.5.1 / 3.5.3: a UDP datagram or ICMP query with no
            // BIB entry gets Host Unreachable (3/1), unless configured
            // silent. TCP has its own rule (3.5.2.2: a SYN is held, then 3/3).
            let reply = match r {
                DropReason::NoState if x.cfg.icmp_no_state && p != proto::TCP => Some((3, 1)),
                _ => r.icmp4_reply(),
            };
            return match reply {
                Some((ty, code)) => (Step::Done(errors::reply4(x, offending(), out, ty, code, 0, r)), p),
                None => (Step::Done(Verdict::Drop(r)), p),
            };
        }
    };

    // RFC 7915 4: DF clear (fragments included) is held to lowest-ipv6-mtu.
    let mtu = d.mtu(x.ipv6_limit(h.dont_frag && !fragment));
    let frag_hdr = if fragment { 8 } else { 0 };
    let len6 = 40 + frag_hdr + body.len();
    if len6 > mtu && h.dont_frag && !fragment {
        // RFC 7915 4.1: DF set and too big: Fragmentation Needed with the
        // MTU the IPv6 side allows, less the header growth.
        let next_hop = (mtu as u32 - 20) & 0xffff;
        return (Step::Done(errors::reply4(x, offending(), out, 3, 4, next_hop, DropReason::PacketTooBig)), p);
    }

    let plan = Plan {
        body_off: h.header_len,
        body_len: body.len(),
        proto: p,
        first,
        fragment,
        udp_zero,
        t4,
        t6,
        tc: x.cfg.tos_override.unwrap_or(h.tos),
        hop: h.ttl - 1,
        ident: h.ident,
        more_frags: h.more_frags,
        frag_offset: h.frag_offset,
        mtu,
    };
    (Step::Rewrite(plan), p)
}

/// Rewrite ports / ICMP identifier and update the transport checksum of a
/// transport header (possibly cut short, inside an ICMP error) translated
/// from IPv4 to IPv6 (RFC 1624 incremental update). `icmp_len` is the ICMP
/// message length, for the pseudo-header ICMPv6 adds (RFC 7915 4.2).
#[inline(always)]
pub(super) fn patch_l4(l4: &mut [u8], p: u8, t4: &Tuple4, t6: &Tuple6, icmp_len: u32, role: Role) {
    match p {
        proto::TCP | proto::UDP => {
            let ck_off = if p == proto::TCP { 16 } else { 6 };
            let mut removed = sum_addr4(t4.src) + sum_addr4(t4.dst);
            let mut added = sum_addr6(t6.src) + sum_addr6(t6.dst);
            if l4.len() >= 4 {
                removed += be16(l4, 0) as u32 + be16(l4, 2) as u32;
                added += t6.sport as u32 + t6.dport as u32;
                put16(l4, 0, t6.sport);
                put16(l4, 2, t6.dport);
            }
            if l4.len() >= ck_off + 2 {
                let old = be16(l4, ck_off);
                if p == proto::UDP && old == 0 {
                    return; // quoted in an error, cannot be computed from a partial datagram
                }
                let mut new = checksum::update(old, removed, added);
                if p == proto::UDP && new == 0 {
                    new = 0xffff;
                }
                put16(l4, ck_off, new);
            }
        }
        proto::ICMP if l4.len() >= 4 => {
            let (ty4, code) = (l4[0], l4[1]);
            let ty6 = match ty4 {
                8 => 128,
                0 => 129,
                _ => return,
            };
            let mut removed = (ty4 as u32) << 8 | code as u32;
            let mut added = pseudo_v6(t6.src, t6.dst, proto::ICMPV6, icmp_len) + ((ty6 as u32) << 8 | code as u32);
            l4[0] = ty6;
            if l4.len() >= 6 {
                // The identifier is the IPv6-side endpoint's "port": the
                // destination of a packet coming in, the source of one quoted.
                let id = if role == Role::Packet { t6.dport } else { t6.sport };
                removed += be16(l4, 4) as u32;
                added += id as u32;
                put16(l4, 4, id);
            }
            let ck = checksum::update(be16(l4, 2), removed, added);
            put16(l4, 2, ck);
        }
        _ => {}
    }
}

/// Translate the IPv4 packet quoted in an ICMPv4 error into `out` (IPv6),
/// TTL copied as Hop Limit (RFC 7915 4.3), options dropped, a Fragment
/// header added when it was a fragment. Returns the bytes written.
fn quoted(inner: &[u8], ih: &Ipv4Header, t4: &Tuple4, t6: &Tuple6, out: &mut [u8]) -> usize {
    let fragment = ih.is_fragment();
    let hdr = if fragment { 48 } else { 40 };
    let avail_end = inner.len().min(ih.total_len);
    let l4 = &inner[ih.header_len.min(avail_end)..avail_end];
    let n = hdr + l4.len();
    out[hdr..n].copy_from_slice(l4);
    let declared = ih.total_len - ih.header_len;
    if ih.frag_offset == 0 {
        patch_l4(&mut out[hdr..n], ih.protocol, t4, t6, declared as u32, Role::ErrorInner);
    }
    let next = if ih.protocol == proto::ICMP { proto::ICMPV6 } else { ih.protocol };
    let payload_len = (declared + hdr - 40) as u16;
    if fragment {
        Ipv6Repr {
            traffic_class: ih.tos,
            payload_len,
            next_header: proto::FRAGMENT,
            hop_limit: ih.ttl,
            src: t6.src,
            dst: t6.dst,
        }
        .emit(out);
        FragRepr { next_header: next, offset: ih.frag_offset, more: ih.more_frags, ident: ih.ident as u32 }
            .emit(&mut out[40..48]);
    } else {
        Ipv6Repr { traffic_class: ih.tos, payload_len, next_header: next, hop_limit: ih.ttl, src: t6.src, dst: t6.dst }
            .emit(out);
    }
    n
}

/// RFC 7915 4.2 / 4.3: an ICMPv4 error becomes an ICMPv6 error, its quoted
/// packet translated through the same mapping (looked up, never created).
fn icmp_error<M: Mapper>(x: &mut Translator, pkt: &[u8], h: &Ipv4Header, out: &mut [u8], map: &mut M) -> Verdict {
    let body = &pkt[h.header_len..];
    let (ty, code) = (body[0], body[1]);
    let m = match icmp::error_4to6(ty, code, body[4]) {
        Ok(m) => m,
        Err(r) => return Verdict::Drop(r),
    };
    // RFC 4884: Destination Unreachable, Time Exceeded and Parameter Problem
    // may carry extensions; the quoted packet's length (32-bit words) is byte 5.
    let ext_words = body[5] as usize;
    let mut inner = &body[8..];
    let mut ext: &[u8] = &[];
    if ext_words != 0 {
        let orig = ext_words * 4;
        if orig > inner.len() {
            return Verdict::Drop(DropReason::IcmpInnerMalformed);
        }
        ext = &inner[orig..];
        inner = &inner[..orig];
    }
    let ih = match Ipv4Header::parse_lenient(inner) {
        Ok(ih) => ih,
        Err(_) => return Verdict::Drop(DropReason::IcmpInnerMalformed),
    };
    let il4 = inner.get(ih.header_len..).unwrap_or(&[]);
    let inner_first = ih.frag_offset == 0;
    // RFC 7915 4.3: only one level of embedding is translated.
    if ih.protocol == proto::ICMP && inner_first && il4.first().is_some_and(|&t| icmp::is_v4_error(t)) {
        return Verdict::Drop(DropReason::IcmpNestedError);
    }
    let (sport, dport) = match ih.protocol {
        proto::TCP | proto::UDP if inner_first && il4.len() >= 4 => (be16(il4, 0), be16(il4, 2)),
        proto::ICMP if inner_first && il4.len() >= 6 && matches!(il4[0], 8 | 0) => (be16(il4, 4), be16(il4, 4)),
        proto::TCP | proto::UDP | proto::ICMP => return Verdict::Drop(DropReason::IcmpInnerMalformed),
        _ => (0, 0),
    };
    let t4 = Tuple4 { src: ih.src, dst: ih.dst, proto: ih.protocol, sport, dport };
    let meta = FlowMeta {
        role: Role::ErrorInner,
        tcp_flags: 0,
        fragment: ih.is_fragment(),
        first_fragment: ih.is_fragment() && inner_first,
        frag_id: ih.ident as u32,
        packet: inner,
    };
    let t6 = match map.map_4to6(&t4, &meta) {
        Ok(t) => t,
        Err(r) => return Verdict::Drop(r),
    };
    // RFC 7915 4.1: the source of the error (often a router) is translated
    // even when it would not be for a flow, for troubleshooting.
    let src6 = match map.host_4to6(h.src) {
        Ok(a) => a,
        Err(r) => return Verdict::Drop(r),
    };
    let dst6 = t6.src;

    // Layout: IPv6 header, ICMPv6 header, quoted packet (padded when extended), extension.
    let mut n = 48 + quoted(inner, &ih, &t4, &t6, &mut out[48..]);
    let mut len_byte = 0u8;
    if !ext.is_empty() && matches!(m.ty, 1 | 3) {
        // RFC 4884 5: the original datagram is zero-padded to 64-bit words
        // and at least 128 bytes; the length is adjusted (RFC 7915 4.2).
        let padded = (n - 48).max(128).next_multiple_of(8);
        if 48 + padded < errors::MAX_ICMP6 {
            out[n..48 + padded].fill(0);
            n = 48 + padded;
            let e = ext.len().min(errors::MAX_ICMP6 - n);
            out[n..n + e].copy_from_slice(&ext[..e]); // "SHOULD be simply truncated"
            n += e;
            len_byte = (padded / 8) as u8;
        }
    }
    let n = n.min(errors::MAX_ICMP6);
    let mut rest = [0u8; 4];
    match m.rest {
        Rest::Unused => rest[0] = len_byte,
        Rest::Pointer(p) => rest[3] = p,
        Rest::Mtu => {
            // RFC 7915 4.2: min(reported + 20, IPv6 next-hop MTU, IPv4 next-hop MTU + 20),
            // never below 1280 (section 5); reported 0 → RFC 1191 plateau.
            let mut reported = be16(body, 6);
            if reported == 0 {
                reported = icmp::plateau_below(ih.total_len as u16);
            }
            let mtu = (reported as u32 + 20).min(x.cfg.ipv6_mtu as u32).min(x.cfg.ipv4_mtu as u32 + 20).max(1280);
            rest = mtu.to_be_bytes();
        }
    }
    let msg = &mut out[40..n];
    msg[0] = m.ty;
    msg[1] = m.code;
    msg[2] = 0;
    msg[3] = 0;
    msg[4..8].copy_from_slice(&rest);
    let ck = checksum::finish(checksum::sum(pseudo_v6(src6, dst6, proto::ICMPV6, msg.len() as u32), msg));
    put16(msg, 2, ck);
    let tc = x.cfg.tos_override.unwrap_or(h.tos);
    Ipv6Repr {
        traffic_class: tc,
        payload_len: (n - 40) as u16,
        next_header: proto::ICMPV6,
        hop_limit: h.ttl - 1,
        src: src6,
        dst: dst6,
    }
    .emit(out);
    Verdict::Forward(Output::single(Family::V6, n))
}
