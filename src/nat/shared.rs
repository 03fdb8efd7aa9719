//! The NAT tables shared by the worker threads: `shards` tables, each behind
//! its own lock and owning the pool4 ports of its 64-port blocks. A packet
//! goes to the shard of its IPv6-side port (outbound: the source port, which
//! is also the port kept when free) or of its IPv4-side port (inbound: the
//! destination port): one lock per packet, never two, and lookups on
//! different shards never wait for each other.
//!
//! Limits hold as configured for the whole NAT: every shard counts its
//! sessions and BIB entries in one shared [`LimitBook`] (locked only when
//! a session or BIB entry is made or removed), so a host whose flows fall
//! on a few shards meets its limit exactly, not a shard's share of it.

use super::blocks::{self, DetMap, PortMode, Ports};
use super::book::LimitBook;
use super::events::MapEvent;
use super::frag::FragTable;
use super::table::{BibView, Census, NatCounters, NatError, NatTable, SessionView, FRAG_CAP};
use super::{Millis, NatConfig, Proto};
use crate::addr::Prefix6052;
use crate::xlat::{DropReason, FlowMeta, Mapper, Role, Tuple4, Tuple6};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// The shared NAT state.
#[derive(Debug)]
pub struct Nat {
    shards: Box<[Mutex<NatTable>]>,
    prefix: Prefix6052,
    /// Static BIB entries whose IPv6 port's shard is not their IPv4 port's:
    /// where their outbound packets must go. Read only when non-empty.
    homes: RwLock<HashMap<(Proto, Ipv6Addr, u16), usize>>,
    has_homes: AtomicBool,
    /// RFC 6146 3.4 fragment state: later fragments have no port to choose
    /// a shard by, so it is kept apart, locked only for fragments.
    frags: Mutex<FragTable>,
    /// How ports are handed out (fixed for the NAT's life): the unit of
    /// shard ownership, and in block modes the subscriber's shard.
    ports: Ports,
    /// Deterministic mode: the groups' mappings, in group order (an
    /// outbound flow's shard is its block's).
    det: Vec<DetMap>,
    /// A standby: sessions follow the active's word, not their own
    /// timers (no expiry sweep) until it takes over.
    standby: AtomicBool,
    /// Session mode: pool4 groups (in the pool's order) whose port range
    /// for a protocol lies in the blocks of only some shards, with that
    /// range. A flow of such a group's client is homed by its source port
    /// folded into the range, so it lands on a shard that has ports for it.
    /// Empty (the usual case) when every group's ranges reach every shard.
    narrow: Vec<NarrowGroup>,
}

/// A pool4 group's clients and, per protocol, its range when only some
/// shards' blocks reach it.
type NarrowGroup = (Option<crate::addr::Net6>, [Option<(u16, u16)>; 3]);

/// Groups whose ranges (the first address's, per protocol) reach only some
/// of the `n` shards' blocks of `unit` ports.
fn narrow_groups(groups: &[super::PoolGroup], unit: u16, n: usize) -> Vec<NarrowGroup> {
    let mut out = vec![];
    for g in groups {
        let mut r = [None; 3];
        if let Some(a) = g.addrs.first() {
            for (i, pr) in a.ports.iter().enumerate() {
                let blocks = (pr.hi / unit.max(1)) as usize - (pr.lo / unit.max(1)) as usize + 1;
                if pr.lo <= pr.hi && blocks < n {
                    r[i] = Some((pr.lo, pr.hi));
                }
            }
        }
        out.push((g.clients, r));
    }
    if out.iter().all(|(_, r)| r.iter().all(Option::is_none)) {
        out.clear();
    }
    out
}

impl Nat {
    /// `shards` tables (at least 1) sharing `cfg`; limits are divided between them.
    pub fn new(cfg: NatConfig, shards: usize) -> Self {
        let n = shards.max(1);
        let book = Arc::new(LimitBook::new(cfg.limits));
        let det = match cfg.ports.mode {
            PortMode::Deterministic => cfg.pool4.iter().filter_map(|g| DetMap::new(g, &cfg.ports).ok()).collect(),
            _ => vec![],
        };
        Nat {
            ports: cfg.ports,
            det,
            shards: (0..n).map(|i| Mutex::new(NatTable::with_book(cfg.clone(), i, n, Arc::clone(&book)))).collect(),
            prefix: cfg.prefix,
            homes: RwLock::new(HashMap::new()),
            has_homes: AtomicBool::new(false),
            frags: Mutex::new(FragTable::new(FRAG_CAP * n)),
            standby: AtomicBool::new(false),
            narrow: match cfg.ports.mode {
                PortMode::Session => narrow_groups(&cfg.pool4, cfg.ports.unit(), n),
                _ => vec![],
            },
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, NatTable> {
        // A panic while holding the lock would be a bug; the table itself stays usable.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    pub(super) fn lock_for_test(&self, i: usize) -> MutexGuard<'_, NatTable> {
        self.lock(i)
    }

    fn frags(&self) -> MutexGuard<'_, FragTable> {
        self.frags.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn by_port(&self, port: u16) -> usize {
        blocks::shard_of(port, self.ports.unit(), self.shards.len())
    }

    /// The shard holding the BIB entry of IPv6 transport address (`a`,
    /// `port`): the port's, or under port blocks the subscriber's.
    fn v6_home(&self, proto: Proto, a: Ipv6Addr, port: u16) -> usize {
        if self.has_homes.load(Ordering::Acquire) {
            if let Some(&k) = self.homes.read().unwrap_or_else(|e| e.into_inner()).get(&(proto, a, port)) {
                return k;
            }
        }
        match self.ports.mode {
            PortMode::Session => self.by_port(self.fold(proto, a, port)),
            PortMode::Blocks => self.subscriber_shard(a),
            PortMode::Deterministic => self
                .det
                .iter()
                .find_map(|m| m.map(a))
                .map_or_else(|| self.subscriber_shard(a), |(_, b)| self.by_port(self.ports.block_range(b).0)),
        }
    }

    /// Session mode: the port a flow is homed by. Its own, unless its
    /// client's group has a range for `proto` that only some shards' blocks
    /// reach and the port lies outside it: then the port folded into the
    /// range (the same port every time, so every packet of the flow finds
    /// its shard, and the shard it finds owns ports of the range, in
    /// proportion to its share of the range).
    #[inline]
    fn fold(&self, proto: Proto, a: Ipv6Addr, port: u16) -> u16 {
        if self.narrow.is_empty() {
            return port;
        }
        let group = self.narrow.iter().find(|(clients, _)| clients.is_none_or(|c| c.contains(a)));
        match group.and_then(|(_, r)| r[proto as usize]) {
            Some((lo, hi)) if !(lo..=hi).contains(&port) => lo + ((port as u32) % (hi as u32 - lo as u32 + 1)) as u16,
            _ => port,
        }
    }

    /// Blocks mode: the shard all of a subscriber's flows and blocks belong to.
    fn subscriber_shard(&self, a: Ipv6Addr) -> usize {
        let sub = u128::from(self.ports.subscriber_of(a).addr);
        // A fixed mix (not seeded): the same subscriber lands on the same
        // shard in every process, which a restart's state file relies on.
        let h = (sub as u64 ^ (sub >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as usize % self.shards.len()
    }

    /// A worker's view at time `now`: the translator's [`Mapper`].
    pub fn at(&self, now: Millis) -> NatHandle<'_> {
        NatHandle { nat: self, now }
    }

    /// Apply a new configuration to every shard, one lock at a time, keeping
    /// all state (see [`NatTable::reconfigure`]).
    pub fn reconfigure(&self, cfg: &NatConfig) {
        for i in 0..self.shards.len() {
            self.lock(i).reconfigure(cfg.clone());
        }
    }

    /// The configuration in force (limits as shared out to one shard).
    pub fn config(&self) -> NatConfig {
        self.lock(0).config().clone()
    }

    /// Ports of `proto` in use on pool4 address `a`, all shards.
    pub fn ports_in_use(&self, proto: Proto, a: Ipv4Addr) -> u32 {
        (0..self.shards.len()).map(|i| self.lock(i).ports_in_use(proto, a)).sum()
    }

    /// Add a static BIB entry (RFC 6146 3.1).
    pub fn add_static(&self, proto: Proto, v6: (Ipv6Addr, u16), v4: (Ipv4Addr, u16)) -> Result<(), NatError> {
        let (home6, home4) = (self.v6_home(proto, v6.0, v6.1), self.by_port(v4.1));
        if home6 != home4 && self.lock(home6).has_bib6(proto, v6) {
            return Err(NatError::Exists(v6.0, v6.1));
        }
        self.lock(home4).add_static(proto, v6, v4)?;
        if home6 != home4 {
            self.homes.write().unwrap_or_else(|e| e.into_inner()).insert((proto, v6.0, v6.1), home4);
            self.has_homes.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Remove a static BIB entry (its live sessions keep it until they end).
    pub fn remove_static(&self, proto: Proto, v6: (Ipv6Addr, u16)) -> Result<(), NatError> {
        let home = self.v6_home(proto, v6.0, v6.1);
        self.lock(home).remove_static(proto, v6)?;
        let mut homes = self.homes.write().unwrap_or_else(|e| e.into_inner());
        homes.remove(&(proto, v6.0, v6.1));
        self.has_homes.store(!homes.is_empty(), Ordering::Release);
        Ok(())
    }

    /// Run the budgeted expiry sweep on every shard, one lock at a time.
    pub fn expire(&self, now: Millis, budget_per_shard: usize) -> usize {
        if self.standby.load(Ordering::Relaxed) {
            return 0;
        }
        (0..self.shards.len()).map(|i| self.lock(i).expire(now, budget_per_shard)).sum()
    }

    /// A held IPv4 SYN an IPv6 SYN has matched, from any shard: translate and deliver it.
    pub fn take_released_syn(&self) -> Option<Vec<u8>> {
        (0..self.shards.len()).find_map(|i| self.lock(i).take_released_syn())
    }

    /// A held IPv4 SYN whose time ran out, from any shard: answer it with ICMPv4 3/3.
    pub fn take_unanswered_syn(&self) -> Option<Vec<u8>> {
        (0..self.shards.len()).find_map(|i| self.lock(i).take_unanswered_syn())
    }

    pub fn session_count(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).session_count()).sum()
    }

    pub fn bib_count(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).bib_count()).sum()
    }

    /// Counters summed over the shards.
    pub fn counters(&self) -> NatCounters {
        let mut c = NatCounters::default();
        for i in 0..self.shards.len() {
            c.merge(&self.lock(i).counters);
        }
        c
    }

    /// Every BIB entry, shard by shard (each shard locked while it is copied).
    pub fn bibs(&self) -> Vec<BibView> {
        (0..self.shards.len()).flat_map(|i| self.lock(i).bibs().collect::<Vec<_>>()).collect()
    }

    /// Sessions and BIB entries counted, all shards.
    pub fn census(&self) -> Census {
        let mut c = Census::default();
        for i in 0..self.shards.len() {
            c.add(&self.lock(i).census());
        }
        c
    }

    /// pool4 addresses with ports in use, per protocol, all shards, in address order.
    pub fn pool_usage(&self) -> Vec<(Ipv4Addr, [u32; 3])> {
        let mut m = std::collections::BTreeMap::<Ipv4Addr, [u32; 3]>::new();
        for i in 0..self.shards.len() {
            for (a, u) in self.lock(i).pool_usage() {
                let e = m.entry(a).or_default();
                for p in 0..3 {
                    e[p] += u[p];
                }
            }
        }
        m.into_iter().collect()
    }

    /// Up to `limit` sessions that `keep` accepts, handed to `emit` one
    /// shard's batch at a time (the shard's lock dropped before `emit`
    /// runs), and how many `keep` accepts in all. Nothing beyond one shard's
    /// batch is held, however large the table.
    pub fn sessions_each<E>(
        &self,
        keep: impl Fn(&SessionView) -> bool,
        limit: usize,
        emit: impl FnMut(&[SessionView]) -> Result<(), E>,
    ) -> Result<usize, E> {
        self.walk(|t, f| t.sessions().for_each(f), keep, limit, emit)
    }

    /// The BIB entries `keep` accepts, as [`Nat::sessions_each`] hands sessions.
    pub fn bibs_each<E>(
        &self,
        keep: impl Fn(&BibView) -> bool,
        limit: usize,
        emit: impl FnMut(&[BibView]) -> Result<(), E>,
    ) -> Result<usize, E> {
        self.walk(|t, f| t.bibs().for_each(f), keep, limit, emit)
    }

    /// Up to `limit` BIB entries that `keep` accepts, and how many it accepts in all.
    pub fn bibs_matching(&self, keep: impl Fn(&BibView) -> bool, limit: usize) -> (Vec<BibView>, usize) {
        let mut v = Vec::new();
        let Ok(n) = self.bibs_each(keep, limit, |b| {
            v.extend_from_slice(b);
            Ok::<_, std::convert::Infallible>(())
        });
        (v, n)
    }

    /// The one walk: shard by shard, count what `keep` accepts, gather up to
    /// the rest of `limit` of it under the lock, then `emit` it unlocked.
    fn walk<T, E>(
        &self,
        items: impl Fn(&NatTable, &mut dyn FnMut(T)),
        keep: impl Fn(&T) -> bool,
        limit: usize,
        mut emit: impl FnMut(&[T]) -> Result<(), E>,
    ) -> Result<usize, E> {
        let (mut batch, mut matching, mut taken) = (Vec::new(), 0, 0);
        for i in 0..self.shards.len() {
            batch.clear();
            {
                let t = self.lock(i);
                items(&t, &mut |x| {
                    if keep(&x) {
                        matching += 1;
                        if taken + batch.len() < limit {
                            batch.push(x);
                        }
                    }
                });
            }
            taken += batch.len();
            if !batch.is_empty() {
                emit(&batch)?;
            }
        }
        Ok(matching)
    }

    /// Hand every shard's recorded mapping events to `each`, one shard's
    /// batch at a time (each shard's lock held only to exchange its queue
    /// for `spare`); returns the events lost to full queues since the last call.
    pub fn drain_events(&self, spare: &mut Vec<MapEvent>, mut each: impl FnMut(&[MapEvent])) -> u64 {
        let mut lost = 0;
        for i in 0..self.shards.len() {
            lost += self.lock(i).swap_events(spare);
            if !spare.is_empty() {
                each(spare);
            }
        }
        lost
    }

    /// Record the end of every block held, all shards (a clean stop).
    pub fn close_blocks(&self, now: Millis) {
        for i in 0..self.shards.len() {
            self.lock(i).close_blocks(now);
        }
    }

    /// Blocks held and subscribers holding them, all shards.
    pub fn block_census(&self) -> (usize, usize) {
        (0..self.shards.len()).map(|i| self.lock(i).block_census()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Who holds `port` of `proto` on pool4 address `a` now: the BIB entry
    /// using it, and under port blocks the block's subscriber.
    pub fn holder(
        &self,
        proto: Proto,
        a: Ipv4Addr,
        port: u16,
    ) -> (Option<BibView>, Option<(crate::addr::Net6, u16, u16)>) {
        let t = self.lock(self.by_port(port));
        (t.bib4(proto, a, port), t.block_owner(proto, a, port))
    }

    /// The blocks `client`'s subscriber holds now, and its BIB entries (at most `limit`).
    pub fn holdings_of(&self, client: Ipv6Addr, limit: usize) -> (Vec<super::blocks::BlockHolding>, Vec<BibView>) {
        let mut blocks = vec![];
        for i in 0..self.shards.len() {
            blocks.extend(self.lock(i).blocks_of(client));
        }
        let sub = self.ports.subscriber_of(client);
        let (bibs, _) = self
            .bibs_matching(|b| if self.ports.uses_blocks() { sub.contains(b.v6.0) } else { b.v6.0 == client }, limit);
        (blocks, bibs)
    }

    /// How ports are handed out.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Start or stop recording state changes for a standby, every shard.
    pub fn set_sync_events(&self, on: bool) {
        for i in 0..self.shards.len() {
            self.lock(i).set_sync_events(on);
        }
    }

    /// Move every shard's recorded state changes to `out` (each shard's
    /// lock held only for its own); returns the changes lost to full queues.
    pub fn drain_sync(&self, out: &mut Vec<super::sync::SyncEvent>) -> u64 {
        (0..self.shards.len()).map(|i| self.lock(i).drain_sync(out)).sum()
    }

    /// Every live session, for a standby's full snapshot: one shard locked at a time.
    pub fn sync_snapshot(&self, now: Millis) -> Vec<super::sync::SessionSync> {
        let mut out = Vec::with_capacity(self.session_count());
        for i in 0..self.shards.len() {
            self.lock(i).sync_snapshot_into(&mut out, now);
        }
        out
    }

    /// A standby: apply one record from the active. Ok(true) when it changed
    /// the table; Err when it cannot be held here (counted by the driver as
    /// a conflict: another pool4, another shard layout, a limit, a port
    /// this gateway gave to a flow of its own).
    pub fn apply_sync(&self, r: &super::sync::SyncRec, now: Millis) -> Result<bool, super::table::RestoreDrop> {
        use super::sync::SyncRec;
        match r {
            SyncRec::Up(x) => {
                let k = self.by_port(x.port4);
                if !x.is_static && self.v6_home(x.proto, x.v6, x.port6) != k {
                    return Err(super::table::RestoreDrop::Misplaced);
                }
                self.lock(k).sync_session(x, now).map(|()| true)
            }
            SyncRec::Gone(x) => Ok(self.lock(self.by_port(x.port4)).sync_gone(x, now)),
            SyncRec::Begin { .. } => {
                for i in 0..self.shards.len() {
                    self.lock(i).sync_clear(now);
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Be a standby (no expiry sweep; the active's records rule) or take over.
    /// Taking over gives every session at least its state's full lifetime.
    pub fn set_standby(&self, standby: bool, now: Millis) {
        let was = self.standby.swap(standby, Ordering::AcqRel);
        if was && !standby {
            for i in 0..self.shards.len() {
                self.lock(i).sync_take_over(now);
            }
        }
    }

    pub fn is_standby(&self) -> bool {
        self.standby.load(Ordering::Relaxed)
    }

    /// The whole state for a state file, at `now` (this NAT's clock), saved
    /// at `wall_ms` (UTC): one shard locked at a time.
    pub fn snapshot(&self, now: Millis, wall_ms: u64) -> super::state::State {
        let mut st = super::state::State {
            saved_at: wall_ms,
            pool6: (self.prefix.addr(), self.prefix.prefix_len()),
            ..super::state::State::default()
        };
        for i in 0..self.shards.len() {
            self.lock(i).snapshot_into(&mut st, now);
        }
        st
    }

    /// Put a saved state back (at start, before any packet), `gap` ms after
    /// it was saved: expired sessions and holds are left out, and so is
    /// what no longer fits the configuration, counted by reason.
    pub fn restore(&self, st: &super::state::State, now: Millis, gap: Millis) -> super::state::Restored {
        use super::state::Restored;
        use super::table::RestoreDrop;
        let mut r = Restored::default();
        if st.pool6 != (self.prefix.addr(), self.prefix.prefix_len()) {
            r.pool6_changed = (st.bibs.len() + st.sessions.len() + st.blocks.len()) as u64;
            return r;
        }
        // Lifetimes come from a file: none is longer than the longest a
        // configuration allows, so a damaged count cannot overflow the clock.
        let (gap, cap) = (gap.min(super::WEEK), super::WEEK);
        for b in &st.blocks {
            let held = match b.held.map(|h| h.min(cap)) {
                Some(left) if left <= gap => {
                    r.expired += 1;
                    continue;
                }
                Some(left) => Some(now.saturating_add(left - gap)),
                None => None,
            };
            let k = self.by_port(self.ports.block_range(b.block).0);
            if self.lock(k).restore_block(b, held) {
                r.blocks += 1;
            } else {
                r.misplaced += 1;
            }
        }
        let count = |r: &mut Restored, e: RestoreDrop| match e {
            RestoreDrop::NotInPool4 => r.not_in_pool4 += 1,
            RestoreDrop::Misplaced => r.misplaced += 1,
            RestoreDrop::OverLimit => r.over_limit += 1,
        };
        let mut placed: Vec<Option<(usize, u32)>> = Vec::with_capacity(st.bibs.len());
        for b in &st.bibs {
            // Where its outbound packets will look for it, which must also be
            // where its inbound ones do (a static entry has its own home).
            let k = self.by_port(b.port4);
            let home = self.v6_home(b.proto, b.v6, b.port6);
            if !b.is_static && home != k {
                r.misplaced += 1;
                placed.push(None);
                continue;
            }
            match self.lock(k).restore_bib(b) {
                Ok(i) => {
                    r.bibs += !b.is_static as u64;
                    placed.push(Some((k, i)));
                }
                Err(e) => {
                    count(&mut r, e);
                    placed.push(None);
                }
            }
        }
        for s in &st.sessions {
            let remaining = s.remaining.min(cap);
            if remaining <= gap {
                r.expired += 1;
                continue;
            }
            let Some(Some((k, bib))) = placed.get(s.bib as usize).copied() else {
                r.misplaced += 1;
                continue;
            };
            match self.lock(k).restore_session(bib, s, now.saturating_add(remaining - gap)) {
                Ok(()) => r.sessions += 1,
                Err(e) => count(&mut r, e),
            }
        }
        for i in 0..self.shards.len() {
            let idle = self.lock(i).settle_restored(now);
            r.bibs = r.bibs.saturating_sub(idle as u64);
        }
        r
    }

    /// [`NatTable::check`] on every shard (tests and fuzzing).
    pub fn check_all(&self) -> Result<(), String> {
        (0..self.shards.len()).try_for_each(|i| self.lock(i).check().map_err(|e| format!("shard {i}: {e}")))
    }

    /// Every session, shard by shard.
    pub fn sessions(&self) -> Vec<SessionView> {
        (0..self.shards.len()).flat_map(|i| self.lock(i).sessions().collect::<Vec<_>>()).collect()
    }
}

/// One worker's handle on the shared NAT at a point in time.
#[derive(Debug, Clone, Copy)]
pub struct NatHandle<'a> {
    nat: &'a Nat,
    pub now: Millis,
}

impl Mapper for NatHandle<'_> {
    fn map_6to4(&mut self, t: &Tuple6, meta: &FlowMeta) -> Result<Tuple4, DropReason> {
        let proto = Proto::from_ip(t.proto).ok_or(DropReason::UnsupportedProtocol)?;
        let packet = meta.role == Role::Packet;
        if packet && meta.fragment && !meta.first_fragment {
            return self.nat.frags().find_out(t, meta, self.now);
        }
        // The IPv6 endpoint: the source of a packet, the destination of a quoted one.
        let (a, port) = if packet { (t.src, t.sport) } else { (t.dst, t.dport) };
        let k = self.nat.v6_home(proto, a, port);
        let m = if packet { self.nat.lock(k).outbound(t, meta, self.now)? } else { self.nat.lock(k).quoted_6to4(t)? };
        if packet && meta.first_fragment {
            self.nat.frags().keep_out(t, meta, m, self.now);
        }
        Ok(m)
    }

    fn map_4to6(&mut self, t: &Tuple4, meta: &FlowMeta) -> Result<Tuple6, DropReason> {
        let packet = meta.role == Role::Packet;
        if packet && meta.fragment && !meta.first_fragment {
            return self.nat.frags().find_in(t, meta, self.now);
        }
        // The pool4 endpoint: the destination of a packet, the source of a quoted one.
        let k = self.nat.by_port(if packet { t.dport } else { t.sport });
        let m = if packet { self.nat.lock(k).inbound(t, meta, self.now)? } else { self.nat.lock(k).quoted_4to6(t)? };
        if packet && meta.first_fragment {
            self.nat.frags().keep_in(t, meta, m, self.now);
        }
        Ok(m)
    }

    fn host_4to6(&self, a: Ipv4Addr) -> Result<Ipv6Addr, DropReason> {
        Ok(self.nat.prefix.embed(a))
    }
}
