//! RFC 7915 section 5: IPv6 → IPv4. Header (5.1, 5.1.1), ICMPv6 (5.2),
//! ICMPv6 errors and the packet they quote (5.3), errors we send (5.4),
//! transport checksums (5.5).

use super::errors::{self, Offending6};
use super::icmp::{self, Rest};
use super::{frag, Delivery, DropReason, Family, FlowMeta, Mapper, Output, Role, Translator, Tuple4, Tuple6, Verdict};
use crate::wire::checksum::{self, pseudo_v6, sum_addr4, sum_addr6};
use crate::wire::ipv4::Ipv4Repr;
use crate::wire::ipv6::{Ipv6Error, Ipv6Header};
use crate::wire::{be16, proto, put16};

/// The largest IPv4 packet sent with DF clear (RFC 7915 5.1).
const DF_THRESHOLD: usize = 1260;

/// What a packet that translates by a header rewrite needs: offsets and
/// values only, so the rewrite can happen in a copy or in place.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    body_off: usize,
    body_len: usize,
    upper: u8,
    first: bool,
    t6: Tuple6,
    t4: Tuple4,
    tos: u8,
    ident: u16,
    df: bool,
    mf: bool,
    frag_offset: u16,
    ttl: u8,
    mtu: usize,
}

impl Plan {
    fn len4(&self) -> usize {
        20 + self.body_len
    }
}

/// Translate one IPv6 packet into `out`. Returns the verdict and the IPv4 protocol number (for counters).
#[inline]
pub(super) fn translate<M: Mapper>(x: &mut Translator, pkt: &[u8], out: &mut [u8], map: &mut M) -> (Verdict, u8) {
    match plan(x, pkt, out, map, Delivery::Packet) {
        (Step::Done(v), p) => (v, p),
        (Step::Rewrite(plan), p) => (finish_copy(pkt, out, &plan), p),
    }
}

/// Translate the IPv6 packet at `buf[start..start + len]` where it lies when
/// a header rewrite is all it takes; otherwise (errors, fragmentation) into `out`.
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
        (Step::Rewrite(plan), p) if plan.len4() <= plan.mtu => {
            // The IPv4 header takes the last 20 bytes of the IPv6 headers.
            let at = start + plan.body_off - 20;
            rewrite(&mut buf[at..at + plan.len4()], &plan);
            (
                Verdict::Forward(Output {
                    family: Family::V4,
                    start: at,
                    len: plan.len4(),
                    stride: plan.len4(),
                    in_place: true,
                }),
                p,
            )
        }
        (Step::Rewrite(plan), p) => (finish_copy(&buf[start..start + len], out, &plan), p),
    }
}

/// Write the IPv4 header into `pkt[..20]` and patch the transport header
/// that follows it (already in place).
#[inline(always)]
fn rewrite(pkt: &mut [u8], p: &Plan) {
    if p.first {
        patch_l4(&mut pkt[20..], p.upper, &p.t6, &p.t4, p.body_len as u32, Role::Packet);
    }
    Ipv4Repr {
        tos: p.tos,
        total_len: p.len4() as u16,
        ident: p.ident,
        dont_frag: p.df,
        more_frags: p.mf,
        frag_offset: p.frag_offset,
        ttl: p.ttl,
        protocol: p.t4.proto,
        src: p.t4.src,
        dst: p.t4.dst,
    }
    .emit(pkt);
}

/// The copying finish: body into `out`, then the rewrite, or IPv4 fragments
/// when the packet is larger than the IPv4 MTU (DF clear, RFC 791 2.3).
fn finish_copy(pkt: &[u8], out: &mut [u8], p: &Plan) -> Verdict {
    let len4 = p.len4();
    out[20..len4].copy_from_slice(&pkt[p.body_off..p.body_off + p.body_len]);
    if len4 <= p.mtu {
        rewrite(&mut out[..len4], p);
        return Verdict::Forward(Output::single(Family::V4, len4));
    }
    if p.first {
        patch_l4(&mut out[20..len4], p.upper, &p.t6, &p.t4, p.body_len as u32, Role::Packet);
    }
    let chunk = (p.mtu - 20) & !7;
    let payload = p.body_len;
    let Some((count, total)) = frag::spread(out, 20, 20, payload, chunk) else {
        return Verdict::Drop(DropReason::OutputBuffer);
    };
    for k in 0..count {
        let n = chunk.min(payload - k * chunk);
        let more = k + 1 < count || p.mf;
        let off = p.frag_offset + (k * chunk / 8) as u16;
        let (t4, at) = (&p.t4, k * (20 + chunk));
        Ipv4Repr {
            tos: p.tos,
            total_len: (20 + n) as u16,
            ident: p.ident,
            dont_frag: false,
            more_frags: more,
            frag_offset: off,
            ttl: p.ttl,
            protocol: t4.proto,
            src: t4.src,
            dst: t4.dst,
        }
        .emit(&mut out[at..]);
    }
    Verdict::Forward(Output { family: Family::V4, start: 0, len: total, stride: 20 + chunk, in_place: false })
}

pub(super) enum Step {
    /// Decided: a drop, an ICMP error reply, or a translated ICMP error (in `out`).
    Done(Verdict),
    /// A header rewrite.
    Rewrite(Plan),
}

/// Parse, check and map one IPv6 packet, and decide every IPv4 header field.
#[inline(always)]
fn plan<M: Mapper>(x: &mut Translator, pkt: &[u8], out: &mut [u8], map: &mut M, d: Delivery) -> (Step, u8) {
    let h = match Ipv6Header::parse(pkt) {
        Ok(h) => h,
        Err(e) => return (Step::Done(header_error(x, pkt, out, e)), 0),
    };
    let pkt = &pkt[..h.end()];
    let body = &pkt[h.upper_off..];
    let first = h.frag.is_none_or(|f| f.offset == 0);
    let fragment = h.is_fragment();
    let p4 = if h.upper == proto::ICMPV6 { proto::ICMP } else { h.upper };
    // Built only on the paths that answer with an error.
    let offending = || Offending6 {
        pkt,
        src: h.src,
        dst: h.dst,
        is_error: h.upper == proto::ICMPV6 && first && body.first().is_some_and(|&t| icmp::is_v6_error(t)),
    };

    // Only pool6 is routed into the translator: multicast (MLD reports,
    // router solicitations), link-local and unspecified destinations are
    // the kernel's own traffic on the device, before any other check.
    // (As one 128-bit number: ff00::/8, fe80::/10, ::.)
    let dn = u128::from(h.dst);
    if dn >> 120 == 0xff || dn >> 118 == 0xfe80 >> 6 || dn == 0 {
        return (Step::Done(Verdict::Drop(DropReason::NotForPool6)), p4);
    }

    // RFC 4291 2.5.2, 2.5.3, 2.7: no host sends from these; the kernel's
    // filters are not always in front of the TUN device.
    // (ff00::/8; :: and ::1 are the numbers 0 and 1.)
    let sn = u128::from(h.src);
    if sn >> 120 == 0xff || sn <= 1 {
        return (Step::Done(Verdict::Drop(DropReason::BadSource)), p4);
    }

    // RFC 7915 5.1: Hop Limit decremented; reaching zero gives ICMPv6 Time Exceeded (3/0).
    if h.hop_limit <= 1 {
        return (Step::Done(errors::reply6(x, offending(), out, 3, 0, 0, DropReason::HopLimitExceeded)), p4);
    }

    // Transport identifiers (only a first fragment carries them).
    let mut sport = 0;
    let mut dport = 0;
    let mut tcp_flags = 0;
    match h.upper {
        proto::TCP if first => {
            if body.len() < 20 {
                return (Step::Done(Verdict::Drop(DropReason::L4Truncated)), p4);
            }
            (sport, dport, tcp_flags) = (be16(body, 0), be16(body, 2), body[13]);
        }
        proto::UDP if first => {
            if body.len() < 8 {
                return (Step::Done(Verdict::Drop(DropReason::L4Truncated)), p4);
            }
            if be16(body, 6) == 0 {
                return (Step::Done(Verdict::Drop(DropReason::Udp6ZeroChecksum)), p4);
            }
            (sport, dport) = (be16(body, 0), be16(body, 2));
        }
        proto::ICMPV6 => {
            // RFC 7915 1.2: fragmented ICMPv6 is not translated.
            if fragment {
                return (Step::Done(Verdict::Drop(DropReason::FragmentedIcmp)), p4);
            }
            if body.len() < 8 {
                return (Step::Done(Verdict::Drop(DropReason::L4Truncated)), p4);
            }
            match body[0] {
                128 | 129 => (sport, dport) = (be16(body, 4), be16(body, 4)),
                t if icmp::is_v6_error(t) => return (Step::Done(icmp_error(x, pkt, &h, out, map)), p4),
                // RFC 7915 5.2: MLD, ND and unknown informational messages are silently dropped.
                _ => return (Step::Done(Verdict::Drop(DropReason::IcmpUntranslatable)), p4),
            }
        }
        // ICMPv4 carried over IPv6 would be taken for ICMP on the IPv4 side.
        proto::ICMP => return (Step::Done(Verdict::Drop(DropReason::IcmpUntranslatable)), p4),
        _ => {}
    }

    let t6 = Tuple6 { src: h.src, dst: h.dst, proto: p4, sport, dport };
    let frag_id = h.frag.map_or(0, |f| f.ident);
    let meta =
        FlowMeta { role: Role::Packet, tcp_flags, fragment, first_fragment: fragment && first, frag_id, packet: pkt };
    let t4 = match map.map_6to4(&t6, &meta) {
        Ok(t) => t,
        Err(r) => {
            return match r.icmp6_reply() {
                Some((ty, code)) => (Step::Done(errors::reply6(x, offending(), out, ty, code, 0, r)), p4),
                None => (Step::Done(Verdict::Drop(r)), p4),
            }
        }
    };

    let len4 = 20 + body.len();
    let mtu = d.mtu(x.cfg.ipv4_mtu);
    if len4 > mtu && h.frag.is_none() && len4 > DF_THRESHOLD {
        // RFC 7915 5.1: too big for the IPv4 next hop and DF will be set:
        // Packet Too Big, MTU = IPv4 MTU + 20, never below the IPv6 minimum.
        let ptb = (mtu as u32 + 20).max(1280);
        return (Step::Done(errors::reply6(x, offending(), out, 2, 0, ptb, DropReason::PacketTooBig)), p4);
    }

    let (ident, df, mf, frag_offset) = match h.frag {
        // RFC 7915 5.1.1: ID from the low 16 bits, MF from M, DF clear, offset copied.
        Some(f) => (f.ident as u16, false, f.more, f.offset),
        // RFC 7915 5.1: DF clear when the IPv4 packet is at most 1260 bytes.
        None => (x.ident(t4.src, t4.dst, p4), len4 > DF_THRESHOLD, false, 0),
    };
    let plan = Plan {
        body_off: h.upper_off,
        body_len: body.len(),
        upper: h.upper,
        first,
        t6,
        t4: Tuple4 { proto: p4, ..t4 },
        tos: x.cfg.tos_override.unwrap_or(h.traffic_class),
        ident,
        df,
        mf,
        frag_offset,
        ttl: h.hop_limit - 1,
        mtu,
    };
    (Step::Rewrite(plan), p4)
}

/// A header that failed to parse: a counted drop, or ICMPv6 Parameter
/// Problem for a Routing header with Segments Left non-zero (RFC 7915 5.1).
fn header_error(x: &mut Translator, pkt: &[u8], out: &mut [u8], e: Ipv6Error) -> Verdict {
    match e {
        Ipv6Error::Truncated => Verdict::Drop(DropReason::Ipv6Truncated),
        Ipv6Error::Malformed => Verdict::Drop(DropReason::Ipv6Malformed),
        Ipv6Error::ExtAfterFragment => Verdict::Drop(DropReason::ExtAfterFragment),
        Ipv6Error::SegmentsLeft(ptr) => {
            // The fixed header parsed, so these bytes exist; quote at most the packet's declared length.
            let end = (40 + be16(pkt, 4) as usize).min(pkt.len());
            let src = addr_at(pkt, 8);
            let dst = addr_at(pkt, 24);
            let o = Offending6 { pkt: &pkt[..end], src, dst, is_error: false };
            errors::reply6(x, o, out, 4, 0, ptr as u32, DropReason::SegmentsLeft)
        }
    }
}

fn addr_at(b: &[u8], off: usize) -> std::net::Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[off..off + 16]);
    a.into()
}

/// Rewrite ports / ICMP identifier and update the transport checksum of a
/// transport header (possibly cut short, inside an ICMP error) translated
/// from IPv6 to IPv4. RFC 1624 incremental update: a wrong checksum stays
/// wrong by the same amount. `icmp_len` is the ICMPv6 message length for
/// the pseudo-header ICMPv6 has and ICMPv4 has not (RFC 7915 5.2).
#[inline(always)]
pub(super) fn patch_l4(l4: &mut [u8], upper: u8, t6: &Tuple6, t4: &Tuple4, icmp_len: u32, role: Role) {
    match upper {
        proto::TCP | proto::UDP => {
            let ck_off = if upper == proto::TCP { 16 } else { 6 };
            let mut removed = sum_addr6(t6.src) + sum_addr6(t6.dst);
            let mut added = sum_addr4(t4.src) + sum_addr4(t4.dst);
            if l4.len() >= 4 {
                removed += be16(l4, 0) as u32 + be16(l4, 2) as u32;
                added += t4.sport as u32 + t4.dport as u32;
                put16(l4, 0, t4.sport);
                put16(l4, 2, t4.dport);
            }
            if l4.len() >= ck_off + 2 {
                let old = be16(l4, ck_off);
                if upper == proto::UDP && old == 0 {
                    return; // only possible inside an ICMP error: IPv4 allows no checksum
                }
                let mut new = checksum::update(old, removed, added);
                if upper == proto::UDP && new == 0 {
                    new = 0xffff;
                }
                put16(l4, ck_off, new);
            }
        }
        proto::ICMPV6 if l4.len() >= 4 => {
            let (ty6, code) = (l4[0], l4[1]);
            let ty4 = match ty6 {
                128 => 8,
                129 => 0,
                _ => return,
            };
            let mut removed = pseudo_v6(t6.src, t6.dst, proto::ICMPV6, icmp_len) + ((ty6 as u32) << 8 | code as u32);
            let mut added = (ty4 as u32) << 8 | code as u32;
            l4[0] = ty4;
            if l4.len() >= 6 {
                // The identifier is the IPv6-side endpoint's "port": the
                // source of a packet going out, the destination of one quoted.
                let id = if role == Role::Packet { t4.sport } else { t4.dport };
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

/// Translate the IPv6 packet quoted in an ICMPv6 error into `out` (IPv4),
/// with its Hop Limit copied (RFC 7915 5.3). Returns the bytes written.
fn quoted(inner: &[u8], ih: &Ipv6Header, t6: &Tuple6, t4: &Tuple4, out: &mut [u8]) -> usize {
    let avail_end = inner.len().min(ih.end());
    let l4 = &inner[ih.upper_off.min(avail_end)..avail_end];
    let n = 20 + l4.len();
    out[20..n].copy_from_slice(l4);
    let first = ih.frag.is_none_or(|f| f.offset == 0);
    if first {
        patch_l4(&mut out[20..n], ih.upper, t6, t4, (ih.end() - ih.upper_off) as u32, Role::ErrorInner);
    }
    let total = 20 + ih.end() - ih.upper_off;
    let (ident, df, mf, off) = match ih.frag {
        Some(f) => (f.ident as u16, false, f.more, f.offset),
        None => (0, total > DF_THRESHOLD, false, 0),
    };
    let p4 = if ih.upper == proto::ICMPV6 { proto::ICMP } else { ih.upper };
    Ipv4Repr {
        tos: ih.traffic_class,
        total_len: total.min(0xffff) as u16,
        ident,
        dont_frag: df,
        more_frags: mf,
        frag_offset: off,
        ttl: ih.hop_limit,
        protocol: p4,
        src: t4.src,
        dst: t4.dst,
    }
    .emit(out);
    n
}

/// RFC 7915 5.2 / 5.3: an ICMPv6 error becomes an ICMPv4 error, its quoted
/// packet translated through the same mapping (looked up, never created).
fn icmp_error<M: Mapper>(x: &mut Translator, pkt: &[u8], h: &Ipv6Header, out: &mut [u8], map: &mut M) -> Verdict {
    let body = &pkt[h.upper_off..];
    let (ty, code) = (body[0], body[1]);
    let m = match icmp::error_6to4(ty, code, u32::from_be_bytes([body[4], body[5], body[6], body[7]])) {
        Ok(m) => m,
        Err(r) => return Verdict::Drop(r),
    };
    // RFC 4884: Destination Unreachable and Time Exceeded may carry extensions,
    // the quoted packet's length (64-bit words) in byte 4.
    let ext_words = if matches!(ty, 1 | 3) { body[4] as usize } else { 0 };
    let mut inner = &body[8..];
    let mut ext: &[u8] = &[];
    if ext_words != 0 {
        let orig = ext_words * 8;
        if orig > inner.len() {
            return Verdict::Drop(DropReason::IcmpInnerMalformed);
        }
        ext = &inner[orig..];
        inner = &inner[..orig];
    }
    let ih = match Ipv6Header::parse_lenient(inner) {
        Ok(ih) => ih,
        Err(_) => return Verdict::Drop(DropReason::IcmpInnerMalformed),
    };
    let inner_first = ih.frag.is_none_or(|f| f.offset == 0);
    let il4 = inner.get(ih.upper_off..).unwrap_or(&[]);
    // RFC 7915 5.3: only one level of embedding is translated.
    if ih.upper == proto::ICMPV6 && inner_first && il4.first().is_some_and(|&t| icmp::is_v6_error(t)) {
        return Verdict::Drop(DropReason::IcmpNestedError);
    }
    let ip4 = if ih.upper == proto::ICMPV6 { proto::ICMP } else { ih.upper };
    let (sport, dport) = match ih.upper {
        proto::TCP | proto::UDP if inner_first && il4.len() >= 4 => (be16(il4, 0), be16(il4, 2)),
        proto::ICMPV6 if inner_first && il4.len() >= 6 && matches!(il4[0], 128 | 129) => (be16(il4, 4), be16(il4, 4)),
        proto::TCP | proto::UDP | proto::ICMPV6 => return Verdict::Drop(DropReason::IcmpInnerMalformed),
        _ => (0, 0),
    };
    let t6 = Tuple6 { src: ih.src, dst: ih.dst, proto: ip4, sport, dport };
    let meta = FlowMeta {
        role: Role::ErrorInner,
        tcp_flags: 0,
        fragment: ih.is_fragment(),
        first_fragment: ih.is_fragment() && inner_first,
        frag_id: ih.frag.map_or(0, |f| f.ident),
        packet: inner,
    };
    let t4 = match map.map_6to4(&t6, &meta) {
        Ok(t) => t,
        Err(r) => return Verdict::Drop(r),
    };

    // Layout: IPv4 header, ICMPv4 header, quoted packet (padded when extended), extension.
    let mut n = 28 + quoted(inner, &ih, &t6, &t4, &mut out[28..]);
    let mut len_byte = 0u8;
    if !ext.is_empty() {
        // RFC 4884 5: the original datagram is zero-padded to 32-bit words and at least 128 bytes.
        let padded = (n - 28).max(128).next_multiple_of(4);
        if 28 + padded + ext.len() <= errors::MAX_ICMP4 {
            out[n..28 + padded].fill(0);
            n = 28 + padded;
            out[n..n + ext.len()].copy_from_slice(ext);
            n += ext.len();
            len_byte = (padded / 4) as u8;
        }
        // Otherwise the extension does not fit in a 576-byte ICMPv4 error: left out, length zero.
    }
    let n = n.min(errors::MAX_ICMP4);
    let mut rest = [0u8; 4];
    match m.rest {
        Rest::Unused => rest[1] = len_byte,
        Rest::Pointer(p) => {
            rest[0] = p;
            rest[1] = len_byte;
        }
        Rest::Mtu => {
            // RFC 7915 5.2: min(advertised − 20, IPv4 next-hop MTU, IPv6 next-hop MTU − 20).
            let adv = u32::from_be_bytes([body[4], body[5], body[6], body[7]]).saturating_sub(20);
            let mtu = adv.min(x.cfg.ipv4_mtu as u32).min(x.cfg.ipv6_mtu as u32 - 20).max(68);
            rest[2..4].copy_from_slice(&(mtu as u16).to_be_bytes());
        }
    }
    let msg = &mut out[20..n];
    msg[0] = m.ty;
    msg[1] = m.code;
    msg[2] = 0;
    msg[3] = 0;
    msg[4..8].copy_from_slice(&rest);
    let ck = checksum::checksum(msg);
    put16(msg, 2, ck);
    // Outer addresses follow the quoted packet's mapping (it travelled the other way).
    let tos = x.cfg.tos_override.unwrap_or(h.traffic_class);
    let id = x.ident(t4.dst, t4.src, proto::ICMP);
    Ipv4Repr {
        tos,
        total_len: n as u16,
        ident: id,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
        ttl: h.hop_limit - 1,
        protocol: proto::ICMP,
        src: t4.dst,
        dst: t4.src,
    }
    .emit(out);
    Verdict::Forward(Output::single(Family::V4, n))
}
