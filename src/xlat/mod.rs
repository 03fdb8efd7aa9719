//! RFC 7915 IP/ICMP translation, both directions, as a pure function of
//! packet bytes: `Translator::translate(packet, out, mapper)` writes the
//! translated packet (or fragments, or an ICMP error for the sender) into a
//! caller-owned buffer and returns a [`Verdict`]. Addresses and ports come
//! from a [`Mapper`]: RFC 6052 embedding for a stateless translator
//! ([`Rfc6052Mapper`]), the BIB and sessions for stateful NAT64.

mod errors;
mod frag;
mod icmp;
mod ident;
mod ratelimit;
mod stats;
mod v4to6;
mod v6to4;

pub use ratelimit::IcmpLimit;
pub use stats::{proto_index, DropReason, ProtoCounts, Stats, PROTO_LABELS};

use crate::addr::{is_global_v4, Prefix6052};
use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 7915 section 4: the default "lowest-ipv6-mtu", the IPv6 minimum MTU.
pub const LOWEST_IPV6_MTU: u16 = 1280;

/// Size of the output buffer the translator needs: the largest IPv4 packet
/// grown by the IPv6 header, fragmented at the minimum IPv6 MTU.
pub const OUT_BUF_LEN: usize = 72 * 1024;

/// Address family of an output packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// Where the bytes of a verdict lie: `len` bytes from `start`, in the
/// packet's own buffer when `in_place` (only from `translate_in_place`),
/// otherwise in the output buffer; `count()` packets, each `stride` bytes
/// long except the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub family: Family,
    pub start: usize,
    pub len: usize,
    pub stride: usize,
    pub in_place: bool,
}

impl Output {
    fn single(family: Family, len: usize) -> Self {
        Output { family, start: 0, len, stride: len, in_place: false }
    }

    /// Number of packets.
    pub fn count(&self) -> usize {
        if self.stride == 0 {
            0
        } else {
            self.len.div_ceil(self.stride)
        }
    }

    /// The packets, in order, as slices of `buf`: the packet's own buffer
    /// when `in_place`, otherwise the output buffer.
    pub fn packets<'a>(&self, buf: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        let start = self.start.min(buf.len());
        let end = self.start.saturating_add(self.len).min(buf.len());
        buf[start..end].chunks(self.stride.max(1))
    }
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the translated packet(s) on, towards the other family.
    Forward(Output),
    /// The packet was dropped for `reason`; the output holds an ICMP error for its sender.
    Reply { reason: DropReason, out: Output },
    /// The packet was dropped for this reason; nothing to send.
    Drop(DropReason),
}

impl Verdict {
    /// The packets to send (none for a drop): in `from`, the buffer the
    /// packet was translated in, when in place, else in `out`.
    pub fn packets<'a>(&self, from: &'a [u8], out: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        let o = match *self {
            Verdict::Forward(o) | Verdict::Reply { out: o, .. } => Some(o),
            Verdict::Drop(_) => None,
        };
        o.into_iter().flat_map(move |o| o.packets(if o.in_place { from } else { out }))
    }
}

/// Transport identifiers of a packet: addresses, protocol and ports (for
/// ICMP queries both ports hold the identifier; for other protocols and
/// non-first fragments both are zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple<A> {
    pub src: A,
    pub dst: A,
    /// IPv4 protocol numbering on both sides: 6 TCP, 17 UDP, 1 ICMP (queries).
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

pub type Tuple4 = Tuple<Ipv4Addr>;
pub type Tuple6 = Tuple<Ipv6Addr>;

/// Why the mapper is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A packet travelling from its source to its destination.
    Packet,
    /// The packet quoted inside an ICMP error: it travelled the other way
    /// (out of this side), so its state must exist already; look it up, never create.
    ErrorInner,
}

/// What the mapper may need besides the tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowMeta<'a> {
    pub role: Role,
    /// TCP flags byte (SYN 0x02, FIN 0x01, RST 0x04), zero for other protocols.
    pub tcp_flags: u8,
    /// True when the packet is a fragment; `first_fragment` when it carries the transport header.
    pub fragment: bool,
    pub first_fragment: bool,
    /// Fragment identification (IPv4 Identification, or the IPv6 Fragment
    /// header's), zero when not a fragment.
    pub frag_id: u32,
    /// The packet as it arrived (the quoted part, for `Role::ErrorInner`):
    /// stateful NAT64 holds an IPv4 SYN it cannot map yet (RFC 6146 3.5.2.2).
    pub packet: &'a [u8],
}

/// Supplies the translated addresses and ports. A stateless translator embeds
/// and extracts with RFC 6052; stateful NAT64 consults its BIB and sessions.
pub trait Mapper {
    /// Map the tuple of an IPv6 packet to the tuple its IPv4 form carries.
    fn map_6to4(&mut self, t: &Tuple6, meta: &FlowMeta) -> Result<Tuple4, DropReason>;
    /// Map the tuple of an IPv4 packet to the tuple its IPv6 form carries.
    fn map_4to6(&mut self, t: &Tuple4, meta: &FlowMeta) -> Result<Tuple6, DropReason>;
    /// The IPv6 form of an IPv4 address outside any flow: the source of an
    /// ICMPv4 error (a router on the path).
    fn host_4to6(&self, a: Ipv4Addr) -> Result<Ipv6Addr, DropReason>;
}

/// The translator's settings (RFC 7915's configuration functions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlatConfig {
    /// RFC 7915 4.1 / 5.1: `None` copies Traffic Class ↔ TOS; `Some(v)` writes v instead.
    pub tos_override: Option<u8>,
    /// Next-hop MTU on the IPv6 side. At least 1280.
    pub ipv6_mtu: u16,
    /// RFC 7915 section 4 "lowest-ipv6-mtu": an IPv4 packet with DF clear
    /// whose translation is larger is fragmented to at most this (with the
    /// Fragment header), so it crosses any IPv6 hop without a Packet Too Big
    /// the IPv4 sender could not act on. Default 1280; at least 1280.
    pub lowest_ipv6_mtu: u16,
    /// Next-hop MTU on the IPv4 side. At least 68.
    pub ipv4_mtu: u16,
    /// Send ICMP errors for dropped packets (RFC 7915 4.4 / 5.4 ask for a switch).
    pub icmp_errors: bool,
    /// Answer an IPv4 UDP datagram or ICMP query that has no state (no BIB
    /// entry) with ICMPv4 Destination Unreachable, Host Unreachable (3/1),
    /// as RFC 6146 3.5.1 and 3.5.3 suggest; off: silent.
    pub icmp_no_state: bool,
    /// The rate limit on the ICMP errors made here (RFC 4443 2.4 (f)).
    pub icmp_limit: IcmpLimit,
    /// Source of the ICMPv6 errors the translator itself makes; `None` uses
    /// the dropped packet's destination (an address routed through us).
    pub own_v6: Option<Ipv6Addr>,
    /// Source of the ICMPv4 errors the translator itself makes; `None` uses
    /// the dropped packet's destination.
    pub own_v4: Option<Ipv4Addr>,
}

impl Default for XlatConfig {
    fn default() -> Self {
        XlatConfig {
            tos_override: None,
            ipv6_mtu: 1280,
            lowest_ipv6_mtu: LOWEST_IPV6_MTU,
            ipv4_mtu: 1500,
            icmp_errors: true,
            icmp_no_state: true,
            icmp_limit: IcmpLimit::default(),
            own_v6: None,
            own_v4: None,
        }
    }
}

/// How a packet handed to the translator leaves the gateway: the policy
/// that decides whether the next hop's MTU applies to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// As one packet: the next-hop MTU applies (Packet Too Big, fragments).
    Packet,
    /// As a GSO super-packet that the kernel cuts into `segments` segments
    /// after translation; the caller checked that they fit the next hop.
    Gso { segments: u32 },
}

impl Delivery {
    /// The MTU the translated packet must fit, given the next hop's.
    #[inline(always)]
    fn mtu(self, next_hop: u16) -> usize {
        match self {
            Delivery::Packet => next_hop as usize,
            Delivery::Gso { .. } => u16::MAX as usize,
        }
    }

    /// How many packets a forwarded one counts as.
    #[inline(always)]
    fn packets(self) -> u64 {
        match self {
            Delivery::Packet => 1,
            Delivery::Gso { segments } => segments.max(1) as u64,
        }
    }
}

/// The stateless RFC 6052 mapping (SIIT-style): IPv6 addresses under the
/// prefix carry their IPv4 address; IPv4 addresses are embedded under it.
/// Ports pass unchanged. Under the well-known prefix, non-global IPv4
/// addresses are refused unless `allow_non_global` (RFC 6052 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc6052Mapper {
    pub prefix: Prefix6052,
    pub allow_non_global: bool,
}

impl Rfc6052Mapper {
    pub fn new(prefix: Prefix6052) -> Self {
        Rfc6052Mapper { prefix, allow_non_global: false }
    }

    /// Extract the IPv4 address from `a`, applying RFC 6052 3.1.
    #[inline(always)]
    pub fn to_v4(&self, a: &Ipv6Addr) -> Result<Ipv4Addr, DropReason> {
        let v4 = self.prefix.extract(a).ok_or(DropReason::NotInPrefix)?;
        self.check_global(v4)?;
        Ok(v4)
    }

    /// Embed `a` under the prefix, applying RFC 6052 3.1.
    #[inline(always)]
    pub fn to_v6(&self, a: Ipv4Addr) -> Result<Ipv6Addr, DropReason> {
        self.check_global(a)?;
        Ok(self.prefix.embed(a))
    }

    #[inline(always)]
    fn check_global(&self, a: Ipv4Addr) -> Result<(), DropReason> {
        if self.prefix.is_well_known() && !self.allow_non_global && !is_global_v4(a) {
            return Err(DropReason::NonGlobalV4);
        }
        Ok(())
    }
}

impl Mapper for Rfc6052Mapper {
    #[inline(always)]
    fn map_6to4(&mut self, t: &Tuple6, _: &FlowMeta) -> Result<Tuple4, DropReason> {
        Ok(Tuple { src: self.to_v4(&t.src)?, dst: self.to_v4(&t.dst)?, proto: t.proto, sport: t.sport, dport: t.dport })
    }
    #[inline(always)]
    fn map_4to6(&mut self, t: &Tuple4, _: &FlowMeta) -> Result<Tuple6, DropReason> {
        Ok(Tuple { src: self.to_v6(t.src)?, dst: self.to_v6(t.dst)?, proto: t.proto, sport: t.sport, dport: t.dport })
    }
    fn host_4to6(&self, a: Ipv4Addr) -> Result<Ipv6Addr, DropReason> {
        // RFC 7915 4.1: the "illegal" source of an ICMPv4 error is still
        // translated, for troubleshooting; so no 3.1 check here.
        Ok(self.prefix.embed(a))
    }
}

/// One translator per worker thread: its settings, its IPv4 Identification
/// generator and its counters. `translate` never allocates and never panics.
#[derive(Debug, Clone)]
pub struct Translator {
    cfg: XlatConfig,
    ident: ident::IdentGen,
    limiter: ratelimit::Limiter,
    /// The caller's clock, milliseconds ([`Self::set_time`]): the rate limit's.
    now: u64,
    pub stats: Stats,
}

impl Translator {
    /// A translator whose IPv4 Identification generator has a random key
    /// (RFC 7739: a fresh one per worker and per start).
    pub fn new(cfg: XlatConfig) -> Self {
        Self::with_key(cfg, ident::random_key())
    }

    /// A translator whose Identification generator is keyed with `key`: the
    /// same key gives the same IDs (tests, fuzzing).
    pub fn with_key(mut cfg: XlatConfig, key: u64) -> Self {
        cfg.ipv6_mtu = cfg.ipv6_mtu.max(1280);
        cfg.lowest_ipv6_mtu = cfg.lowest_ipv6_mtu.max(1280);
        cfg.ipv4_mtu = cfg.ipv4_mtu.max(68);
        let limiter = ratelimit::Limiter::new(cfg.icmp_limit, key.rotate_left(17));
        Translator { cfg, ident: ident::IdentGen::new(key), limiter, now: 0, stats: Stats::default() }
    }

    pub fn config(&self) -> &XlatConfig {
        &self.cfg
    }

    /// New next-hop MTUs (an interface's MTU changed), held to the same
    /// floors as at construction.
    pub fn set_mtus(&mut self, ipv6_mtu: u16, ipv4_mtu: u16) {
        self.cfg.ipv6_mtu = ipv6_mtu.max(1280);
        self.cfg.ipv4_mtu = ipv4_mtu.max(68);
    }

    /// The time now, milliseconds on the caller's monotonic clock: the ICMP
    /// error rate limit refills by it. The worker sets it once per batch.
    #[inline]
    pub fn set_time(&mut self, now_ms: u64) {
        self.now = now_ms;
    }

    /// May the translator send an ICMP error to `dst` now? (RFC 4443 2.4 (f).)
    /// Counts the ones held back.
    #[inline]
    fn may_send_error(&mut self, dst: std::net::IpAddr) -> bool {
        let ok = self.limiter.allow(dst, self.now);
        self.stats.icmp_errors_suppressed += !ok as u64;
        ok
    }

    /// The largest IPv6 packet an IPv4 packet may become: the next hop's MTU
    /// when DF is set (path MTU discovery: too big gets Fragmentation
    /// Needed), and no more than lowest-ipv6-mtu when DF is clear (or the
    /// packet is already a fragment): RFC 7915 section 4.
    #[inline(always)]
    pub fn ipv6_limit(&self, dont_frag: bool) -> u16 {
        if dont_frag {
            self.cfg.ipv6_mtu
        } else {
            self.cfg.ipv6_mtu.min(self.cfg.lowest_ipv6_mtu)
        }
    }

    /// Translate one packet of either family (by its version nibble).
    #[inline]
    pub fn translate<M: Mapper>(&mut self, pkt: &[u8], out: &mut [u8], map: &mut M) -> Verdict {
        match pkt.first().map(|b| b >> 4) {
            Some(6) => self.v6_to_v4(pkt, out, map),
            Some(4) => self.v4_to_v6(pkt, out, map),
            _ => self.count(Verdict::Drop(DropReason::BadVersion), Family::V4, 0, pkt.len()),
        }
    }

    /// Translate the packet at `buf[start..start + len]` where it lies when
    /// only its headers change (the fast path: no body copy). IPv4 → IPv6
    /// grows the headers by 20 bytes (28 for a fragment) into the headroom
    /// before `start`; with less headroom, and for fragmentation and ICMP
    /// errors, the result goes to `out` (`Output::in_place` says which).
    #[inline]
    pub fn translate_in_place<M: Mapper>(
        &mut self,
        buf: &mut [u8],
        start: usize,
        len: usize,
        out: &mut [u8],
        map: &mut M,
    ) -> Verdict {
        self.translate_delivered(buf, start, len, out, map, Delivery::Packet)
    }

    /// [`Self::translate_in_place`] for a GSO super-packet (TUN offloads) of
    /// `segments` segments: the kernel segments it after translation, so the
    /// MTU checks (Packet Too Big, fragmentation) do not apply to it whole;
    /// the caller has checked that its segments fit the next hop once
    /// translated. A forwarded super-packet counts as its segments.
    pub fn translate_gso_in_place<M: Mapper>(
        &mut self,
        buf: &mut [u8],
        start: usize,
        len: usize,
        out: &mut [u8],
        map: &mut M,
        segments: u32,
    ) -> Verdict {
        self.translate_delivered(buf, start, len, out, map, Delivery::Gso { segments })
    }

    #[inline]
    fn translate_delivered<M: Mapper>(
        &mut self,
        buf: &mut [u8],
        start: usize,
        len: usize,
        out: &mut [u8],
        map: &mut M,
        d: Delivery,
    ) -> Verdict {
        let version = buf.get(start).map(|b| b >> 4);
        let (v, proto, to) = if out.len() < OUT_BUF_LEN {
            (Verdict::Drop(DropReason::OutputBuffer), 0, Family::V4)
        } else {
            match version {
                Some(6) => {
                    let (v, p) = v6to4::translate_in_place(self, buf, start, len, out, map, d);
                    (v, p, Family::V4)
                }
                Some(4) => {
                    let (v, p) = v4to6::translate_in_place(self, buf, start, len, out, map, d);
                    (v, p, Family::V6)
                }
                _ => (Verdict::Drop(DropReason::BadVersion), 0, Family::V4),
            }
        };
        self.count_delivered(v, to, proto, len, d)
    }

    /// Translate an IPv6 packet to IPv4 (RFC 7915 section 5).
    #[inline]
    pub fn v6_to_v4<M: Mapper>(&mut self, pkt: &[u8], out: &mut [u8], map: &mut M) -> Verdict {
        let (v, proto) = if out.len() < OUT_BUF_LEN {
            (Verdict::Drop(DropReason::OutputBuffer), 0)
        } else {
            v6to4::translate(self, pkt, out, map)
        };
        self.count(v, Family::V4, proto, pkt.len())
    }

    /// Translate an IPv4 packet to IPv6 (RFC 7915 section 4).
    #[inline]
    pub fn v4_to_v6<M: Mapper>(&mut self, pkt: &[u8], out: &mut [u8], map: &mut M) -> Verdict {
        let (v, proto) = if out.len() < OUT_BUF_LEN {
            (Verdict::Drop(DropReason::OutputBuffer), 0)
        } else {
            v4to6::translate(self, pkt, out, map)
        };
        self.count(v, Family::V6, proto, pkt.len())
    }

    #[inline]
    fn count(&mut self, v: Verdict, to: Family, proto: u8, in_len: usize) -> Verdict {
        self.count_delivered(v, to, proto, in_len, Delivery::Packet)
    }

    #[inline]
    fn count_delivered(&mut self, v: Verdict, to: Family, proto: u8, in_len: usize, d: Delivery) -> Verdict {
        match v {
            Verdict::Forward(o) => self.stats.forwarded(to, proto, in_len, d.packets(), o.len > o.stride),
            Verdict::Reply { reason, .. } => {
                self.stats.drop(reason);
                self.stats.icmp_errors_sent += 1;
            }
            Verdict::Drop(reason) => self.stats.drop(reason),
        }
        v
    }

    /// An ICMPv4 error (`ty`, `code`) about the IPv4 packet `pkt`, for its
    /// sender, written to `out` (e.g. RFC 6146 3.5.2.2's Port Unreachable
    /// for an IPv4 SYN held in vain). Counted under `reason`.
    pub fn icmp4_error_for(&mut self, pkt: &[u8], ty: u8, code: u8, reason: DropReason, out: &mut [u8]) -> Verdict {
        let v = match crate::wire::Ipv4Header::parse(pkt) {
            Ok(h) if out.len() >= OUT_BUF_LEN => {
                errors::reply4(self, errors::Offending4::new(&pkt[..h.total_len], &h), out, ty, code, 0, reason)
            }
            _ => Verdict::Drop(reason),
        };
        self.count(v, Family::V4, 0, pkt.len())
    }

    /// The IPv4 Identification for a packet from `src` to `dst` (RFC 7915
    /// 5.1: "set according to a Fragment Identification generator at the
    /// translator"; RFC 7739 7.3's double hash, see `ident.rs`).
    #[inline]
    fn ident(&mut self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> u16 {
        self.ident.next(src, dst, proto)
    }
}

#[cfg(test)]
mod tests;
