//! Why packets are dropped (every drop has a named reason) and the per-worker
//! counters: plain integers, summed by whoever reads them.

use super::Family;

macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])* $name:ident => $label:literal,)*) => {
        /// Why a packet was not translated.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[doc = $doc])* $name,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// The stable snake_case name used in stats output and metrics.
            pub fn label(self) -> &'static str {
                match self { $(DropReason::$name => $label,)* }
            }
        }
    };
}

drop_reasons! {
    /// The first nibble is neither 4 nor 6.
    BadVersion => "bad_version",
    /// The IPv4 header is shorter than its lengths say, or the buffer shorter than Total Length.
    Ipv4Truncated => "ipv4_truncated",
    /// IHL below 5 or Total Length below the header length.
    Ipv4Malformed => "ipv4_malformed",
    /// IPv4 header checksum does not verify.
    Ipv4Checksum => "ipv4_checksum",
    /// The IPv6 packet is shorter than its Payload Length or an extension header overruns.
    Ipv6Truncated => "ipv6_truncated",
    /// Jumbogram, too many or misplaced extension headers.
    Ipv6Malformed => "ipv6_malformed",
    /// RFC 7915 5.1: Routing header with Segments Left non-zero (ICMPv6 Parameter Problem sent).
    SegmentsLeft => "segments_left",
    /// RFC 7915 5.1.1 / 5.4: Fragment header followed by another extension header.
    ExtAfterFragment => "ext_after_fragment",
    /// RFC 7915 4.1: IPv4 packet with an unexpired source route (ICMPv4 3/5 sent).
    SourceRoute => "source_route",
    /// TTL or Hop Limit reached zero (ICMP Time Exceeded sent).
    HopLimitExceeded => "hop_limit_exceeded",
    /// The transport header is shorter than its protocol needs.
    L4Truncated => "l4_truncated",
    /// RFC 7915 1.2: fragmented ICMP is not translated.
    FragmentedIcmp => "fragmented_icmp",
    /// RFC 7915 4.5: fragmented IPv4 UDP with checksum zero.
    UdpZeroChecksumFragment => "udp_zero_checksum_fragment",
    /// IPv6 UDP with checksum zero (RFC 8200 8.1 forbids it).
    Udp6ZeroChecksum => "udp6_zero_checksum",
    /// ICMP type or code with no translation (RFC 7915 4.2 / 5.2), including
    /// informational messages that are silently dropped.
    IcmpUntranslatable => "icmp_untranslatable",
    /// Parameter Problem whose pointer names a field with no counterpart.
    IcmpPointer => "icmp_pointer",
    /// RFC 7915 4.3 / 5.3: an ICMP error inside an ICMP error.
    IcmpNestedError => "icmp_nested_error",
    /// The packet quoted in an ICMP error cannot be parsed.
    IcmpInnerMalformed => "icmp_inner_malformed",
    /// DF set (or no Fragment header) and larger than the next-hop MTU (ICMP error sent).
    PacketTooBig => "packet_too_big",
    /// The destination is not under the translation prefix.
    NotInPrefix => "not_in_prefix",
    /// RFC 6052 3.1: a non-global IPv4 address under the well-known prefix.
    NonGlobalV4 => "non_global_v4",
    /// The protocol has no transport identifiers the NAT can map.
    UnsupportedProtocol => "unsupported_protocol",
    /// No BIB entry or session for an inbound packet.
    NoState => "no_state",
    /// Filtering policy refused an inbound packet.
    Filtered => "filtered",
    /// No free IPv4 transport address (ICMPv6 1/3 sent).
    PoolExhausted => "pool_exhausted",
    /// A per-host or global session limit was reached.
    LimitReached => "limit_reached",
    /// RFC 6146 3.5.2.2: an IPv4 SYN with no state, held for TCP_INCOMING_SYN
    /// (released if an IPv6 SYN matches it, answered with ICMPv4 3/3 otherwise).
    V4SynHeld => "v4_syn_held",
    /// A later fragment whose first fragment was not seen (in time) (RFC 6146 3.4).
    FragmentNoState => "fragment_no_state",
    /// The caller's output buffer is smaller than OUT_BUF_LEN.
    OutputBuffer => "output_buffer",
    /// The kernel's own traffic on the TUN device (multicast such as MLD
    /// reports, link-local or unspecified destinations): never routed to
    /// pool6, so neither translated nor answered, and not an error
    /// (reported apart from the drops).
    NotForPool6 => "not_for_pool6",
    /// A source address no host may send from (IPv6 unspecified, loopback,
    /// multicast; IPv4 0.0.0.0/8, 127.0.0.0/8, multicast, limited
    /// broadcast): RFC 4291 2.5.2/2.5.3/2.7, RFC 1122 3.2.1.3. Never
    /// translated, never answered (there is no one to answer).
    BadSource => "bad_source",
}

impl DropReason {
    /// False for what is not an error at all, only not ours: the kernel's
    /// own traffic on the device (`not_for_pool6`), shown apart from drops.
    pub fn is_error(self) -> bool {
        self != DropReason::NotForPool6
    }
}

/// Per-protocol packet and byte counts in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtoCounts {
    /// Indexed by [`proto_index`]: TCP, UDP, ICMP, other.
    pub packets: [u64; 4],
    pub bytes: [u64; 4],
    /// Packets that left as more than one fragment.
    pub fragmented: u64,
}

/// Index into per-protocol arrays: 0 TCP, 1 UDP, 2 ICMP / ICMPv6, 3 other.
pub fn proto_index(proto: u8) -> usize {
    match proto {
        6 => 0,
        17 => 1,
        1 | 58 => 2,
        _ => 3,
    }
}

pub const PROTO_LABELS: [&str; 4] = ["tcp", "udp", "icmp", "other"];

/// One worker's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// IPv6 to IPv4.
    pub out_6to4: ProtoCounts,
    /// IPv4 to IPv6.
    pub in_4to6: ProtoCounts,
    pub drops: [u64; DropReason::COUNT],
    pub icmp_errors_sent: u64,
    /// ICMP errors the rate limit held back (the packets are still counted
    /// under their drop reason).
    pub icmp_errors_suppressed: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            out_6to4: ProtoCounts::default(),
            in_4to6: ProtoCounts::default(),
            drops: [0; DropReason::COUNT],
            icmp_errors_sent: 0,
            icmp_errors_suppressed: 0,
        }
    }
}

impl Stats {
    #[inline]
    pub(super) fn drop(&mut self, r: DropReason) {
        self.drops[r as usize] += 1;
    }

    #[inline]
    pub(super) fn forwarded(&mut self, to: Family, proto: u8, bytes: usize, packets: u64, fragmented: bool) {
        let c = match to {
            Family::V4 => &mut self.out_6to4,
            Family::V6 => &mut self.in_4to6,
        };
        let i = proto_index(proto);
        c.packets[i] += packets;
        c.bytes[i] += bytes as u64;
        c.fragmented += fragmented as u64;
    }

    /// Drops that are errors (see [`DropReason::is_error`]).
    pub fn real_drops(&self) -> u64 {
        DropReason::ALL.iter().filter(|r| r.is_error()).map(|&r| self.dropped(r)).sum()
    }

    /// Count of drops for one reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    /// Add another worker's counters into these.
    pub fn merge(&mut self, o: &Stats) {
        for (a, b) in [(&mut self.out_6to4, &o.out_6to4), (&mut self.in_4to6, &o.in_4to6)] {
            for i in 0..4 {
                a.packets[i] += b.packets[i];
                a.bytes[i] += b.bytes[i];
            }
            a.fragmented += b.fragmented;
        }
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
        self.icmp_errors_sent += o.icmp_errors_sent;
        self.icmp_errors_suppressed += o.icmp_errors_suppressed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in DropReason::ALL {
            assert!(seen.insert(r.label()), "duplicate {}", r.label());
            assert!(r.label().chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()));
            assert_eq!(DropReason::ALL[*r as usize], *r);
        }
    }
}
