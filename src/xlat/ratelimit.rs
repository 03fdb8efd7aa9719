//! The rate limit on the ICMP errors the translator makes (RFC 4443 2.4
//! (f), RFC 7915 4.4 and 5.4 with RFC 1812 4.3.2.8): token buckets per
//! translator (so per worker), one for all errors and one per destination
//! (the host the error goes to), so one host sending packets that expire
//! or hit no state cannot use the whole budget. Time is passed in
//! ([`super::Translator::set_time`]); no allocation after construction.
//! ICMP errors the translator only translates (a router's) are not ours to
//! limit and never come here.

use std::hash::BuildHasher;
use std::net::IpAddr;

/// The limits: errors per second and burst, in total and per destination
/// host. A rate of 0 turns that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IcmpLimit {
    /// ICMP errors per second, each worker, all destinations (0: no limit).
    pub rate: u32,
    /// Errors that may go at once before the rate applies.
    pub burst: u32,
    /// ICMP errors per second to one destination host (0: no limit).
    pub per_host_rate: u32,
    pub per_host_burst: u32,
}

impl Default for IcmpLimit {
    fn default() -> Self {
        IcmpLimit { rate: 1000, burst: 200, per_host_rate: 100, per_host_burst: 20 }
    }
}

/// Per-destination buckets (a power of two, 6 KiB); a destination that
/// lands on another's slot takes it over (fresh, full): the global bucket
/// still bounds the total.
const HOSTS: usize = 256;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Thousandths of a token.
    milli: u64,
    /// When it was last refilled (milliseconds).
    at: u64,
    /// Which destination holds the slot (a hash; 0 for the global bucket).
    tag: u64,
}

impl Bucket {
    fn full(burst: u32, now: u64, tag: u64) -> Bucket {
        Bucket { milli: burst as u64 * 1000, at: now, tag }
    }

    /// Refill for the time passed, then take a token if there is one.
    fn take(&mut self, rate: u32, burst: u32, now: u64) -> bool {
        let cap = burst.max(1) as u64 * 1000;
        // `rate` tokens a second is `rate` thousandths of a token a millisecond.
        let add = now.saturating_sub(self.at).saturating_mul(rate as u64);
        self.milli = self.milli.saturating_add(add).min(cap);
        self.at = now;
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Limiter {
    limit: IcmpLimit,
    global: Bucket,
    hosts: Box<[Bucket]>,
    hasher: foldhash::fast::FixedState,
}

impl Limiter {
    pub(super) fn new(limit: IcmpLimit, key: u64) -> Self {
        Limiter {
            limit,
            global: Bucket::full(limit.burst, 0, 0),
            hosts: vec![Bucket::default(); HOSTS].into_boxed_slice(),
            hasher: foldhash::fast::FixedState::with_seed(key),
        }
    }

    /// May an error go to `dst` at `now`? Takes a token from both buckets
    /// when it may (the host's first, so a host over its limit does not
    /// spend the global budget).
    pub(super) fn allow(&mut self, dst: IpAddr, now: u64) -> bool {
        let l = self.limit;
        if l.per_host_rate > 0 {
            let tag = self.hasher.hash_one(dst) | 1;
            let slot = &mut self.hosts[(tag as usize >> 1) & (HOSTS - 1)];
            if slot.tag != tag {
                *slot = Bucket::full(l.per_host_burst, now, tag);
            }
            if !slot.take(l.per_host_rate, l.per_host_burst, now) {
                return false;
            }
        }
        l.rate == 0 || self.global.take(l.rate, l.burst, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(i: u8) -> IpAddr {
        IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i as u16))
    }

    // RFC 4443 2.4 (f): a token bucket: the burst goes at once, then the
    // rate; tokens come back with time, up to the burst.
    #[test]
    fn rfc4443_2_4_f_token_bucket() {
        let mut l = Limiter::new(IcmpLimit { rate: 10, burst: 5, per_host_rate: 0, per_host_burst: 0 }, 1);
        let sent = (0..100).filter(|_| l.allow(host(1), 1000)).count();
        assert_eq!(sent, 5, "the burst, then nothing at the same instant");
        assert!(!l.allow(host(1), 1050), "half a token after 50 ms at 10/s");
        assert!(l.allow(host(1), 1100), "one token after 100 ms");
        let later = (0..100).filter(|_| l.allow(host(1), 60_000)).count();
        assert_eq!(later, 5, "an idle minute refills to the burst, not beyond");
    }

    // One host cannot use the whole budget: over its own limit, others
    // still get their errors, and its refused errors spend no global tokens.
    #[test]
    fn per_host_limit_leaves_budget_for_others() {
        let mut l = Limiter::new(IcmpLimit { rate: 100, burst: 50, per_host_rate: 10, per_host_burst: 5 }, 2);
        let flood = (0..1000).filter(|_| l.allow(host(1), 0)).count();
        assert_eq!(flood, 5);
        let others = (2..40).filter(|&i| l.allow(host(i), 0)).count();
        assert_eq!(others, 38, "every other host still gets its error");
        let off = IcmpLimit { rate: 0, burst: 0, per_host_rate: 0, per_host_burst: 0 };
        let mut l = Limiter::new(off, 3);
        assert!((0..10_000).all(|_| l.allow(host(1), 0)), "rate 0: no limit");
    }
}
