//! ICMP errors the translator itself sends back to a packet's source
//! (RFC 7915 4.4 and 5.4): Time Exceeded, Packet Too Big / Fragmentation
//! Needed, Parameter Problem, Destination Unreachable. Never in answer to an
//! ICMP error, a non-first fragment, or an unspecified / multicast source
//! (RFC 1122 3.2.2, RFC 4443 2.4 (e)). Sized to the minimum MTUs: 576 bytes
//! for ICMPv4, 1280 for ICMPv6.

use super::{DropReason, Family, Output, Translator, Verdict};
use crate::wire::ipv4::Ipv4Repr;
use crate::wire::ipv6::Ipv6Repr;
use crate::wire::{checksum, proto, Ipv4Header};
use std::net::{Ipv4Addr, Ipv6Addr};

pub(super) const MAX_ICMP4: usize = 576;
pub(super) const MAX_ICMP6: usize = 1280;

/// The offending IPv6 packet, as far as it is known.
pub(super) struct Offending6<'a> {
    pub pkt: &'a [u8],
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The packet is itself an ICMPv6 error: never answer it.
    pub is_error: bool,
}

/// Answer an IPv6 packet with ICMPv6 (type, code, 32-bit parameter), or
/// drop it silently where no error may be sent.
#[cold]
pub(super) fn reply6(
    x: &mut Translator,
    o: Offending6<'_>,
    out: &mut [u8],
    ty: u8,
    code: u8,
    param: u32,
    reason: DropReason,
) -> Verdict {
    // RFC 4443 2.4 (e): no error for a packet sent to a multicast address,
    // except Packet Too Big and Parameter Problem code 2.
    let multicast_ok = ty == 2 || (ty == 4 && code == 2);
    if !x.cfg.icmp_errors
        || o.is_error
        || o.src.is_unspecified()
        || o.src.is_multicast()
        || (o.dst.is_multicast() && !multicast_ok)
    {
        return Verdict::Drop(reason);
    }
    if !x.may_send_error(o.src.into()) {
        return Verdict::Drop(reason);
    }
    let src = x.cfg.own_v6.unwrap_or(o.dst);
    let quoted = o.pkt.len().min(MAX_ICMP6 - 48);
    let len = 48 + quoted;
    Ipv6Repr {
        traffic_class: 0,
        payload_len: (8 + quoted) as u16,
        next_header: proto::ICMPV6,
        hop_limit: 64,
        src,
        dst: o.src,
    }
    .emit(out);
    let m = &mut out[40..len];
    m[0] = ty;
    m[1] = code;
    m[2] = 0;
    m[3] = 0;
    m[4..8].copy_from_slice(&param.to_be_bytes());
    m[8..].copy_from_slice(&o.pkt[..quoted]);
    let ck = checksum::finish(checksum::sum(checksum::pseudo_v6(src, o.src, proto::ICMPV6, m.len() as u32), m));
    m[2..4].copy_from_slice(&ck.to_be_bytes());
    Verdict::Reply { reason, out: Output::single(Family::V6, len) }
}

/// The offending IPv4 packet (already cut to its Total Length).
pub(super) struct Offending4<'a> {
    pub pkt: &'a [u8],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// An ICMPv4 error or a non-first fragment: never answer it.
    pub no_reply: bool,
}

impl<'a> Offending4<'a> {
    /// The packet `pkt` (already cut to its Total Length) with header `h`.
    /// RFC 1122 3.2.2: never answer a non-first fragment or an ICMP error.
    pub fn new(pkt: &'a [u8], h: &Ipv4Header) -> Self {
        let l4 = pkt.get(h.header_len..).unwrap_or(&[]);
        let is_error = h.protocol == proto::ICMP && l4.first().is_some_and(|&t| super::icmp::is_v4_error(t));
        Offending4 { pkt, src: h.src, dst: h.dst, no_reply: h.frag_offset != 0 || is_error }
    }
}

/// Answer an IPv4 packet with ICMPv4 (type, code, second header word).
#[cold]
pub(super) fn reply4(
    x: &mut Translator,
    o: Offending4<'_>,
    out: &mut [u8],
    ty: u8,
    code: u8,
    rest: u32,
    reason: DropReason,
) -> Verdict {
    let s = o.src;
    if !x.cfg.icmp_errors
        || o.no_reply
        || s.is_unspecified()
        || s.is_broadcast()
        || s.is_multicast()
        || o.dst.is_broadcast()
        || o.dst.is_multicast()
    {
        return Verdict::Drop(reason);
    }
    if !x.may_send_error(s.into()) {
        return Verdict::Drop(reason);
    }
    let src = x.cfg.own_v4.unwrap_or(o.dst);
    let quoted = o.pkt.len().min(MAX_ICMP4 - 28);
    let len = 28 + quoted;
    let id = x.ident(src, s, proto::ICMP);
    Ipv4Repr {
        tos: 0,
        total_len: len as u16,
        ident: id,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
        ttl: 64,
        protocol: proto::ICMP,
        src,
        dst: s,
    }
    .emit(out);
    let m = &mut out[20..len];
    m[0] = ty;
    m[1] = code;
    m[2] = 0;
    m[3] = 0;
    m[4..8].copy_from_slice(&rest.to_be_bytes());
    m[8..].copy_from_slice(&o.pkt[..quoted]);
    let ck = checksum::checksum(m);
    m[2..4].copy_from_slice(&ck.to_be_bytes());
    Verdict::Reply { reason, out: Output::single(Family::V4, len) }
}

impl DropReason {
    /// The ICMPv6 (type, code) a mapper's refusal of an IPv6 packet is
    /// answered with, if any: RFC 6146 3.5.1.1 asks for Address Unreachable
    /// when no IPv4 transport address can be had; RFC 7915 5.4's default is
    /// Administratively Prohibited.
    pub fn icmp6_reply(self) -> Option<(u8, u8)> {
        match self {
            DropReason::PoolExhausted | DropReason::LimitReached => Some((1, 3)),
            DropReason::NotInPrefix
            | DropReason::NonGlobalV4
            | DropReason::Filtered
            | DropReason::UnsupportedProtocol => Some((1, 1)),
            _ => None,
        }
    }

    /// The ICMPv4 (type, code) a mapper's refusal of an IPv4 packet is
    /// answered with, if any (RFC 7915 4.4 / RFC 6146 3.5.1.2: 3/13).
    pub fn icmp4_reply(self) -> Option<(u8, u8)> {
        match self {
            DropReason::Filtered | DropReason::NonGlobalV4 => Some((3, 13)),
            _ => None,
        }
    }
}
