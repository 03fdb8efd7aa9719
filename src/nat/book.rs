//! The limits' book: sessions per IPv6 host, per IPv6 /64 and in all, and
//! BIB entries per host, counted for the whole NAT and shared by every
//! shard, so each limit holds as configured whatever shard a flow lands on
//! (a host's flows spread over the shards by source port). Admission
//! checks and counts in one step, so concurrent shards cannot overshoot.
//! Only session and BIB creation and removal come here, never a packet of
//! a live session: a lock on one of 64 stripes, held for a map update.

use super::Limits;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

const STRIPES: usize = 64;

type Map<V> = HashMap<u64, V, foldhash::fast::RandomState>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HostUse {
    sessions: u32,
    bibs: u32,
}

#[derive(Debug)]
pub struct LimitBook {
    max_sessions: AtomicUsize,
    per_host: AtomicU32,
    per_net64: AtomicU32,
    bibs_per_host: AtomicU32,
    sessions: AtomicUsize,
    /// Keyed by a seeded 64-bit hash of the host address (half the memory
    /// of the address; a collision, about 1 in 10^7 among a million hosts
    /// and not steerable from outside, only makes two hosts share a limit).
    hosts: Box<[Mutex<Map<HostUse>>]>,
    nets: Box<[Mutex<Map<u32>>]>,
    hasher: foldhash::fast::RandomState,
}

fn net64(a: &Ipv6Addr) -> u64 {
    (u128::from(*a) >> 64) as u64
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LimitBook {
    pub fn new(l: Limits) -> Self {
        let book = LimitBook {
            max_sessions: AtomicUsize::new(0),
            per_host: AtomicU32::new(0),
            per_net64: AtomicU32::new(0),
            bibs_per_host: AtomicU32::new(0),
            sessions: AtomicUsize::new(0),
            hosts: (0..STRIPES).map(|_| Mutex::new(Map::default())).collect(),
            nets: (0..STRIPES).map(|_| Mutex::new(Map::default())).collect(),
            hasher: foldhash::fast::RandomState::default(),
        };
        book.set_limits(l);
        book
    }

    /// New limits (a reload); counts stay, and what is over a lowered limit
    /// only stops new flows until it falls below.
    pub fn set_limits(&self, l: Limits) {
        self.max_sessions.store(l.max_sessions, Ordering::Relaxed);
        self.per_host.store(l.sessions_per_host, Ordering::Relaxed);
        self.per_net64.store(l.sessions_per_net64, Ordering::Relaxed);
        self.bibs_per_host.store(l.bibs_per_host, Ordering::Relaxed);
    }

    fn host(&self, a: &Ipv6Addr) -> (u64, &Mutex<Map<HostUse>>) {
        let k = self.hasher.hash_one(a);
        (k, &self.hosts[k as usize % STRIPES])
    }

    fn net(&self, a: &Ipv6Addr) -> (u64, &Mutex<Map<u32>>) {
        let k = net64(a);
        (k, &self.nets[(k ^ (k >> 29)) as usize % STRIPES])
    }

    /// Admit a new session of `host`: counted when every limit allows it,
    /// refused (nothing counted) otherwise.
    pub fn reserve_session(&self, host: &Ipv6Addr) -> bool {
        let max = self.max_sessions.load(Ordering::Relaxed);
        if self.sessions.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < max).then_some(n + 1)).is_err() {
            return false;
        }
        let (hk, hs) = self.host(host);
        let (nk, ns) = self.net(host);
        // Lock order: host stripe, then net stripe, everywhere.
        let mut hosts = guard(hs);
        let mut nets = guard(ns);
        let h = hosts.get(&hk).copied().unwrap_or_default();
        let n = nets.get(&nk).copied().unwrap_or(0);
        if h.sessions >= self.per_host.load(Ordering::Relaxed) || n >= self.per_net64.load(Ordering::Relaxed) {
            drop((hosts, nets));
            self.sessions.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        hosts.entry(hk).or_default().sessions += 1;
        *nets.entry(nk).or_insert(0) += 1;
        true
    }

    /// A session of `host` ended (or its reservation was not used).
    pub fn release_session(&self, host: &Ipv6Addr) {
        let (hk, hs) = self.host(host);
        let (nk, ns) = self.net(host);
        let mut hosts = guard(hs);
        let mut nets = guard(ns);
        if let Some(h) = hosts.get_mut(&hk) {
            h.sessions = h.sessions.saturating_sub(1);
            if *h == HostUse::default() {
                hosts.remove(&hk);
            }
        }
        if let Some(n) = nets.get_mut(&nk) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                nets.remove(&nk);
            }
        }
        drop((hosts, nets));
        let _ = self.sessions.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Admit a new dynamic BIB entry of `host` (`force` for a static one,
    /// which the operator asked for and no limit refuses).
    pub fn reserve_bib(&self, host: &Ipv6Addr, force: bool) -> bool {
        let (hk, hs) = self.host(host);
        let mut hosts = guard(hs);
        let h = hosts.entry(hk).or_default();
        if !force && h.bibs >= self.bibs_per_host.load(Ordering::Relaxed) {
            if *h == HostUse::default() {
                hosts.remove(&hk);
            }
            return false;
        }
        h.bibs += 1;
        true
    }

    pub fn release_bib(&self, host: &Ipv6Addr) {
        let (hk, hs) = self.host(host);
        let mut hosts = guard(hs);
        if let Some(h) = hosts.get_mut(&hk) {
            h.bibs = h.bibs.saturating_sub(1);
            if *h == HostUse::default() {
                hosts.remove(&hk);
            }
        }
    }

    /// Sessions counted, all shards.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }

    /// Sessions counted for `host` and its /64 (tests, `check`).
    pub fn of(&self, host: &Ipv6Addr) -> (u32, u32, u32) {
        let (hk, hs) = self.host(host);
        let (nk, ns) = self.net(host);
        let h = guard(hs).get(&hk).copied().unwrap_or_default();
        let n = guard(ns).get(&nk).copied().unwrap_or(0);
        (h.sessions, h.bibs, n)
    }

    /// True when a count is above its limit (a reload may lower a limit
    /// below what is live; otherwise never).
    pub fn over(&self) -> bool {
        self.sessions() > self.max_sessions.load(Ordering::Relaxed)
    }
}
