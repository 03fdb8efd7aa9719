//! The IPv4 Identification generator (RFC 7915 5.1: "set according to a
//! Fragment Identification generator at the translator"), built as RFC 7739
//! section 7.3's double-hash scheme so that an outside observer can neither
//! count the gateway's traffic nor predict the next value (RFC 6864, RFC
//! 7739 section 5): the value for a packet is a keyed hash of its (source,
//! destination, protocol) plus one of 4096 counters, the counter chosen by
//! the same hash. Packets towards one destination see their own counter
//! (unique IDs within a flow, as reassembly needs); traffic towards others
//! does not move it (bar a bucket collision); the key is random per
//! translator, so per worker, and the keyed hash gives each destination a
//! random starting point (so the counters themselves may start at zero:
//! a translator is cheap to build and to clone).
//!
//! The hash is foldhash keyed with a random seed: a fast keyed hash, not a
//! cryptographic PRF; what it must resist is an off-path guess, and it
//! costs a few nanoseconds per packet (`benches/xlat`).

use std::hash::BuildHasher;
use std::net::Ipv4Addr;

/// Counters (a power of two): 2 KiB per translator.
const BUCKETS: usize = 1024;

pub(super) struct IdentGen {
    hasher: foldhash::fast::FixedState,
    counters: Box<[u16]>,
}

impl IdentGen {
    /// A generator keyed with `key`: the same key gives the same sequence.
    pub(super) fn new(key: u64) -> Self {
        IdentGen { hasher: foldhash::fast::FixedState::with_seed(key), counters: vec![0; BUCKETS].into_boxed_slice() }
    }

    /// The Identification for a packet from `src` to `dst` with `proto`.
    #[inline(always)]
    pub(super) fn next(&mut self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> u16 {
        let h = self.hasher.hash_one((u32::from(src), u32::from(dst), proto));
        // `BUCKETS` is a power of two and `counters` that long: always in bounds.
        let c = &mut self.counters[(h as usize) & (BUCKETS - 1)];
        *c = c.wrapping_add(1);
        c.wrapping_add((h >> 48) as u16)
    }
}

impl Clone for IdentGen {
    fn clone(&self) -> Self {
        IdentGen { hasher: self.hasher.clone(), counters: self.counters.clone() }
    }
}

impl std::fmt::Debug for IdentGen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentGen { .. }")
    }
}

/// A random key from the standard library's randomly keyed hasher (seeded
/// from the operating system's random source once per thread).
pub(super) fn random_key() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);

    // RFC 7739 7.3: towards one destination the IDs run on (unique within
    // the flow for reassembly); traffic towards other destinations does not
    // show in them, so an observer of one flow cannot count the rest.
    #[test]
    fn rfc7739_7_3_per_destination_sequence() {
        let mut g = IdentGen::new(42);
        let first = g.next(A, B, 17);
        for _ in 0..1000 {
            g.next(A, C, 17);
        }
        assert_eq!(g.next(A, B, 17), first.wrapping_add(1), "1000 packets to another host left no trace");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..60_000 {
            assert!(seen.insert(g.next(A, B, 6)), "IDs of one flow repeat only after 2^16");
        }
    }

    // RFC 6864 / RFC 7739 5: not predictable from outside. Different keys
    // (workers, restarts) start elsewhere; the first value is not a small
    // counter; neighbouring destinations are not neighbouring IDs.
    #[test]
    fn rfc7739_5_unpredictable_start() {
        let firsts: std::collections::HashSet<u16> = (0..64).map(|k| IdentGen::new(k).next(A, B, 17)).collect();
        assert!(firsts.len() > 60, "64 keys, {} distinct first IDs", firsts.len());
        let mut g = IdentGen::new(random_key());
        let d = |i: u8| Ipv4Addr::new(198, 51, 100, i);
        let ids: Vec<u16> = (1..=32).map(|i| g.next(A, d(i), 17)).collect();
        let steps = ids.windows(2).filter(|w| w[1].wrapping_sub(w[0]) <= 2).count();
        assert!(steps < 4, "consecutive destinations got near-consecutive IDs: {ids:?}");
        assert_ne!(random_key(), random_key(), "a fresh key each time");
    }
}
