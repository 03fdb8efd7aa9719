//! RFC 6146 3.4: fragments. Only a first fragment carries the transport
//! header, so its translation is remembered, under its addresses, protocol
//! and fragment identification, for the fragments after it, for
//! FRAGMENT_MIN (2 s). The table is bounded: at its size the oldest entry
//! goes first. A fragment that arrives before its first fragment is dropped
//! (the RFC allows holding it; this translator does not).

use super::Millis;
use crate::xlat::{DropReason, FlowMeta, Tuple4, Tuple6};
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 6146 section 4: FRAGMENT_MIN.
pub const FRAGMENT_MIN: Millis = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Out(Ipv6Addr, Ipv6Addr, u8, u32),
    In(Ipv4Addr, Ipv4Addr, u8, u32),
}

#[derive(Debug, Clone, Copy)]
enum Mapped {
    V4(Tuple4),
    V6(Tuple6),
}

/// Translations of first fragments, for the rest of each datagram.
#[derive(Debug, Clone)]
pub struct FragTable {
    map: HashMap<Key, (Mapped, Millis), foldhash::fast::RandomState>,
    order: VecDeque<(Key, Millis)>,
    cap: usize,
}

impl FragTable {
    pub fn new(cap: usize) -> Self {
        FragTable { map: HashMap::with_hasher(Default::default()), order: VecDeque::new(), cap: cap.max(1) }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn evict(&mut self, now: Millis) {
        while let Some(&(k, expires)) = self.order.front() {
            if expires > now && self.order.len() < self.cap {
                break;
            }
            self.order.pop_front();
            // Remove only if this queue entry is the live one for the key.
            if self.map.get(&k).is_some_and(|&(_, e)| e == expires) {
                self.map.remove(&k);
            }
        }
    }

    fn remember(&mut self, k: Key, m: Mapped, now: Millis) {
        self.evict(now);
        let expires = now + FRAGMENT_MIN;
        self.map.insert(k, (m, expires));
        self.order.push_back((k, expires));
    }

    fn lookup(&mut self, k: Key, now: Millis) -> Option<Mapped> {
        self.evict(now);
        self.map.get(&k).filter(|&&(_, e)| e > now).map(|&(m, _)| m)
    }

    /// A later IPv6 fragment: its first fragment's mapping.
    pub fn find_out(&mut self, t: &Tuple6, meta: &FlowMeta, now: Millis) -> Result<Tuple4, DropReason> {
        match self.lookup(Key::Out(t.src, t.dst, t.proto, meta.frag_id), now) {
            Some(Mapped::V4(m)) => Ok(m),
            _ => Err(DropReason::FragmentNoState),
        }
    }

    /// Remember a first IPv6 fragment's mapping.
    pub fn keep_out(&mut self, t: &Tuple6, meta: &FlowMeta, m: Tuple4, now: Millis) {
        self.remember(Key::Out(t.src, t.dst, t.proto, meta.frag_id), Mapped::V4(m), now);
    }

    /// A later IPv4 fragment: its first fragment's mapping.
    pub fn find_in(&mut self, t: &Tuple4, meta: &FlowMeta, now: Millis) -> Result<Tuple6, DropReason> {
        match self.lookup(Key::In(t.src, t.dst, t.proto, meta.frag_id), now) {
            Some(Mapped::V6(m)) => Ok(m),
            _ => Err(DropReason::FragmentNoState),
        }
    }

    /// Remember a first IPv4 fragment's mapping.
    pub fn keep_in(&mut self, t: &Tuple4, meta: &FlowMeta, m: Tuple6, now: Millis) {
        self.remember(Key::In(t.src, t.dst, t.proto, meta.frag_id), Mapped::V6(m), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xlat::Role;

    fn meta(id: u32) -> FlowMeta<'static> {
        FlowMeta { role: Role::Packet, tcp_flags: 0, fragment: true, first_fragment: true, frag_id: id, packet: &[] }
    }

    // RFC 6146 3.4 asks to bound fragment resources: the table never exceeds its size.
    #[test]
    fn bounded_and_oldest_evicted() {
        let mut f = FragTable::new(3);
        let t = Tuple6 { src: Ipv6Addr::LOCALHOST, dst: Ipv6Addr::LOCALHOST, proto: 17, sport: 1, dport: 2 };
        let m = Tuple4 { src: Ipv4Addr::LOCALHOST, dst: Ipv4Addr::LOCALHOST, proto: 17, sport: 1, dport: 2 };
        for id in 0..10 {
            f.keep_out(&t, &meta(id), m, 0);
            assert!(f.len() <= 3, "{} entries", f.len());
        }
        assert!(f.find_out(&t, &meta(9), 1).is_ok(), "newest kept");
        assert_eq!(f.find_out(&t, &meta(0), 1), Err(DropReason::FragmentNoState), "oldest evicted");
    }
}
