//! One shard of stateful NAT64 state (RFC 6146 section 3): BIB entries
//! (IPv6 transport address ↔ pool4 transport address) and the sessions under
//! them (one per remote IPv4 transport address), indexed both ways.
//!
//! Expiry never stops the world: a session found expired on lookup is
//! removed there, and `expire(now, budget)` visits at most `budget` slots
//! from a moving clock hand, so the caller spreads the sweep over time.

use super::book::LimitBook;
use super::events::{EventKind, EventQueue, MapEvent};
use super::frag::FragTable;
use super::pool4::Pool4;
use super::sync::{SessionSync, SyncEvent};
use super::tcp::{self, Lifetime, Side, TcpState};
use super::{Filtering, Millis, NatConfig, Proto, UDP_MIN};
use crate::xlat::{DropReason, FlowMeta, Mapper, Rfc6052Mapper, Role, Tuple4, Tuple6};
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// RFC 6146 section 4: TCP_INCOMING_SYN, how long an IPv4 SYN is held.
pub const TCP_INCOMING_SYN: Millis = 6000;
/// IPv4 SYNs held at once, per table.
pub(super) const MAX_HELD_SYNS: usize = 256;

/// An IPv4 SYN no IPv6 host has asked for yet (RFC 6146 3.5.2.2).
#[derive(Debug, Clone)]
struct HeldSyn {
    /// (pool4 address, pool4 port, remote address, remote port).
    key: (Ipv4Addr, u16, Ipv4Addr, u16),
    packet: Vec<u8>,
    expires: Millis,
}

/// Fragmented datagrams remembered at once, per table.
pub(super) const FRAG_CAP: usize = 4096;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

fn map<K, V>() -> Map<K, V> {
    HashMap::with_hasher(foldhash::fast::RandomState::default())
}

#[derive(Debug, Clone)]
struct Bib {
    proto: Proto,
    v6: Ipv6Addr,
    port6: u16,
    v4: Ipv4Addr,
    port4: u16,
    is_static: bool,
    sessions: u32,
}

#[derive(Debug, Clone)]
struct Session {
    bib: u32,
    remote: Ipv4Addr,
    /// Remote port; zero for ICMP, where the identifier is the BIB's own.
    rport: u16,
    state: TcpState,
    expires: Millis,
}

/// Session `x` of BIB entry `b` as a standby gets it, its lifetime left at `now`.
fn sync_of(b: &Bib, x: &Session, now: Millis) -> SessionSync {
    SessionSync {
        proto: b.proto,
        is_static: b.is_static,
        v6: b.v6,
        port6: b.port6,
        v4: b.v4,
        port4: b.port4,
        remote: x.remote,
        rport: x.rport,
        state: x.state,
        remaining: SessionSync::remaining_of(x.expires, now),
    }
}

/// A vector of optional slots with a free list: stable u32 handles.
#[derive(Debug, Clone)]
struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Slab { slots: Vec::new(), free: Vec::new(), len: 0 }
    }
    fn insert(&mut self, v: T) -> u32 {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            self.slots[i as usize] = Some(v);
            i
        } else {
            self.slots.push(Some(v));
            (self.slots.len() - 1) as u32
        }
    }
    fn remove(&mut self, i: u32) -> Option<T> {
        let v = self.slots.get_mut(i as usize)?.take()?;
        self.free.push(i);
        self.len -= 1;
        Some(v)
    }
    fn get(&self, i: u32) -> Option<&T> {
        self.slots.get(i as usize)?.as_ref()
    }
    fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.slots.get_mut(i as usize)?.as_mut()
    }
}

crate::counters::counters! {
    /// Counters of one table.
    pub struct NatCounters {
        bibs_created: "Dynamic BIB entries created.",
        sessions_created: "Sessions created.",
        sessions_expired: "Sessions expired.",
        pool_exhausted: "New flows refused: no free pool4 port.",
        limit_reached: "New flows refused by a limit.",
    }
}

/// What the table holds, counted (for `nat64ctl stats` and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Sessions per [`Proto`].
    pub sessions: [u64; 3],
    /// TCP sessions per state, indexed by `TcpState as usize`.
    pub tcp_states: [u64; 8],
    /// BIB entries per [`Proto`], static ones included.
    pub bibs: [u64; 3],
    pub static_bibs: u64,
    /// IPv4 SYNs held (RFC 6146 3.5.2.2).
    pub held_syns: u64,
}

impl Census {
    pub fn add(&mut self, o: &Census) {
        for i in 0..3 {
            self.sessions[i] += o.sessions[i];
            self.bibs[i] += o.bibs[i];
        }
        for i in 0..8 {
            self.tcp_states[i] += o.tcp_states[i];
        }
        self.static_bibs += o.static_bibs;
        self.held_syns += o.held_syns;
    }
}

/// Why a restored entry was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreDrop {
    NotInPool4,
    Misplaced,
    OverLimit,
}

/// Why a management request on the table failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatError {
    #[error("{0}:{1} is not a free transport address of pool4 in this shard's range")]
    NotInPool(Ipv4Addr, u16),
    #[error("[{0}]:{1} already has a BIB entry")]
    Exists(Ipv6Addr, u16),
    #[error("no static BIB entry for [{0}]:{1}")]
    NoSuchEntry(Ipv6Addr, u16),
}

/// A BIB entry, for listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BibView {
    pub proto: Proto,
    pub v6: (Ipv6Addr, u16),
    pub v4: (Ipv4Addr, u16),
    pub is_static: bool,
    pub sessions: u32,
}

/// A session, for listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionView {
    pub proto: Proto,
    pub v6: (Ipv6Addr, u16),
    pub v4: (Ipv4Addr, u16),
    pub remote: (Ipv4Addr, u16),
    pub state: Option<TcpState>,
    pub expires: Millis,
}

/// One shard's BIB and sessions.
#[derive(Debug, Clone)]
pub struct NatTable {
    cfg: NatConfig,
    /// pool6 with the RFC 6052 3.1 rule: the same mapping a stateless translator uses.
    addrs: Rfc6052Mapper,
    pool: Pool4,
    bibs: Slab<Bib>,
    bib6: Map<(Proto, Ipv6Addr, u16), u32>,
    bib4: Map<(Proto, Ipv4Addr, u16), u32>,
    sessions: Slab<Session>,
    /// (BIB, remote address, remote port) → session: serves both directions.
    sess: Map<(u32, Ipv4Addr, u16), u32>,
    /// (BIB, remote address) → sessions: kept only under address-dependent filtering.
    by_remote: Map<(u32, Ipv4Addr), u32>,
    /// The limits' counts, shared by every shard of a [`super::Nat`] (a
    /// table of its own has its own; a clone shares its original's).
    book: Arc<LimitBook>,
    hand: usize,
    /// Fragment state (RFC 6146 3.4) when this table is used on its own.
    frags: FragTable,
    /// IPv4 SYNs held for TCP_INCOMING_SYN, oldest first.
    held: VecDeque<HeldSyn>,
    /// Held SYNs an IPv6 SYN has now matched: to translate and deliver.
    released: Vec<Vec<u8>>,
    /// Held SYNs whose time ran out: to answer with ICMPv4 3/3.
    unreachable: Vec<Vec<u8>>,
    /// The time of the latest call that passed one (for events and hold times).
    clock: Millis,
    /// State changes for a standby (on while one is being served).
    sync: EventQueue<SyncEvent>,
    pub counters: NatCounters,
}

fn adf(cfg: &NatConfig) -> bool {
    cfg.filtering == Filtering::AddressDependent
}

impl NatTable {
    /// The table of shard `shard` of `shards` (ports are split between shards).
    pub fn new(cfg: NatConfig, shard: usize, shards: usize) -> Self {
        let book = Arc::new(LimitBook::new(cfg.limits));
        Self::with_book(cfg, shard, shards, book)
    }

    /// The table of shard `shard` of `shards`, counting its limits in
    /// `book` with the other shards (so they hold for the whole NAT).
    pub fn with_book(mut cfg: NatConfig, shard: usize, shards: usize, book: Arc<LimitBook>) -> Self {
        cfg.timeouts.udp = cfg.timeouts.udp.max(UDP_MIN);
        let pool = Pool4::with_ports(cfg.pool4.clone(), shard, shards, cfg.ports, cfg.events);
        NatTable {
            addrs: Rfc6052Mapper { prefix: cfg.prefix, allow_non_global: cfg.allow_non_global },
            cfg,
            pool,
            bibs: Slab::new(),
            bib6: map(),
            bib4: map(),
            sessions: Slab::new(),
            sess: map(),
            by_remote: map(),
            book,
            hand: 0,
            frags: FragTable::new(FRAG_CAP),
            held: VecDeque::new(),
            released: Vec::new(),
            unreachable: Vec::new(),
            clock: 0,
            sync: EventQueue::default(),
            counters: NatCounters::default(),
        }
    }

    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len
    }

    pub fn bib_count(&self) -> usize {
        self.bibs.len
    }

    /// True when `a` is a pool4 address: an IPv6 packet translated to it must
    /// be translated back in (hairpinning, RFC 6146 3.8).
    pub fn is_pool4(&self, a: Ipv4Addr) -> bool {
        self.pool.contains(a)
    }

    /// Ports of `proto` in use on pool4 address `a`.
    pub fn ports_in_use(&self, proto: Proto, a: Ipv4Addr) -> u32 {
        self.pool.in_use(proto, a)
    }

    fn lifetime(&self, proto: Proto, l: Lifetime) -> Option<Millis> {
        let t = &self.cfg.timeouts;
        match (proto, l) {
            (_, Lifetime::Keep) => None,
            (Proto::Tcp, Lifetime::TransLife) => Some(t.tcp_trans),
            (Proto::Tcp, Lifetime::EstLife) => Some(t.tcp_est),
            (Proto::Udp, _) => Some(t.udp),
            (Proto::Icmp, _) => Some(t.icmp),
        }
    }

    /// A live session for (bib, remote), removing it if it has expired.
    fn live_session(&mut self, bib: u32, remote: Ipv4Addr, rport: u16, now: Millis) -> Option<u32> {
        let &s = self.sess.get(&(bib, remote, rport))?;
        if self.sessions.get(s).is_some_and(|s| s.expires <= now) {
            self.remove_session(s);
            self.counters.sessions_expired += 1;
            return None;
        }
        Some(s)
    }

    /// Admit a new session of `host` under every limit (counted in the
    /// book at once; [`Self::new_session`] uses it, or an early return
    /// gives it back).
    fn reserve_session(&mut self, host: &Ipv6Addr) -> Result<(), DropReason> {
        if !self.book.reserve_session(host) {
            self.counters.limit_reached += 1;
            return Err(DropReason::LimitReached);
        }
        Ok(())
    }

    fn new_session(&mut self, bib: u32, remote: Ipv4Addr, rport: u16, state: TcpState, expires: Millis) -> u32 {
        let s = self.sessions.insert(Session { bib, remote, rport, state, expires });
        self.sess.insert((bib, remote, rport), s);
        if adf(&self.cfg) {
            *self.by_remote.entry((bib, remote)).or_insert(0) += 1;
        }
        // Counted in the book when it was reserved.
        if let Some(b) = self.bibs.get_mut(bib) {
            b.sessions += 1;
        }
        self.counters.sessions_created += 1;
        if self.cfg.events.sessions {
            self.session_event(EventKind::SessionCreated, bib, remote, rport);
        }
        if self.sync.is_on() {
            self.sync_event(s, true);
        }
        s
    }

    /// Record a session's state for the standby (sync on).
    #[cold]
    fn sync_event(&mut self, s: u32, up: bool) {
        let Some(x) = self.sessions.get(s) else { return };
        let Some(b) = self.bibs.get(x.bib) else { return };
        let rec = sync_of(b, x, self.clock);
        self.sync.push(if up { SyncEvent::Up(rec) } else { SyncEvent::Gone(rec) });
    }

    /// Record a BIB or session event (per-session logging).
    #[cold]
    fn session_event(&mut self, kind: EventKind, bib: u32, remote: Ipv4Addr, rport: u16) {
        let Some(b) = self.bibs.get(bib) else { return };
        let is_session = matches!(kind, EventKind::SessionCreated | EventKind::SessionDeleted);
        let (group, customer) = self.pool.group_of(b.v4).unwrap_or((0, None));
        let e = MapEvent {
            kind,
            at: self.clock,
            proto: b.proto,
            v6: b.v6,
            v6_len: 128,
            port6: b.port6,
            v4: b.v4,
            lo: b.port4,
            hi: b.port4,
            remote: (is_session && self.cfg.events.destination).then_some((remote, rport)),
            group: group as u16,
            customer,
        };
        self.pool.events.push(e);
    }

    /// Exchange the recorded events for `spare` (see
    /// [`super::events::EventQueue::swap`]); returns how many were lost to
    /// a full queue since the last call.
    pub fn swap_events(&mut self, spare: &mut Vec<MapEvent>) -> u64 {
        self.pool.events.swap(spare);
        std::mem::take(&mut self.pool.events.lost)
    }

    /// Record the end of every block held (a clean stop: no block outlives
    /// the process that holds it while there is no state file).
    pub fn close_blocks(&mut self, now: Millis) {
        self.pool.close_blocks(now);
    }

    /// Move the mapping events recorded since the last drain to `out`;
    /// returns how many were lost to a full queue since the last call.
    pub fn drain_events(&mut self, out: &mut Vec<MapEvent>) -> u64 {
        self.pool.events.drain_into(out);
        std::mem::take(&mut self.pool.events.lost)
    }

    fn remove_session(&mut self, s: u32) {
        if self.sync.is_on() {
            self.sync_event(s, false);
        }
        if self.cfg.events.sessions {
            if let Some(x) = self.sessions.get(s) {
                let (bib, remote, rport) = (x.bib, x.remote, x.rport);
                self.session_event(EventKind::SessionDeleted, bib, remote, rport);
            }
        }
        let Some(sess) = self.sessions.remove(s) else { return };
        self.sess.remove(&(sess.bib, sess.remote, sess.rport));
        if let Some(c) = self.by_remote.get_mut(&(sess.bib, sess.remote)) {
            *c -= 1;
            if *c == 0 {
                self.by_remote.remove(&(sess.bib, sess.remote));
            }
        }
        let Some(b) = self.bibs.get_mut(sess.bib) else { return };
        b.sessions -= 1;
        let (host, gone) = (b.v6, b.sessions == 0 && !b.is_static);
        self.book.release_session(&host);
        if gone {
            self.remove_bib(sess.bib);
        }
    }

    fn remove_bib(&mut self, i: u32) {
        if self.cfg.events.sessions {
            self.session_event(EventKind::BibDeleted, i, Ipv4Addr::UNSPECIFIED, 0);
        }
        let Some(b) = self.bibs.remove(i) else { return };
        self.bib6.remove(&(b.proto, b.v6, b.port6));
        self.bib4.remove(&(b.proto, b.v4, b.port4));
        self.pool.release(b.proto, b.v4, b.port4, self.clock);
        self.book.release_bib(&b.v6);
    }

    /// A new flow's BIB entry; when it cannot be made, the session reserved
    /// for the flow (`reserved`) goes back to the book. Off the path of live
    /// flows.
    #[cold]
    #[inline(never)]
    fn create_bib_for(&mut self, proto: Proto, t: &Tuple6, reserved: bool) -> Result<u32, DropReason> {
        self.create_bib(proto, t.src, t.sport).inspect_err(|_| {
            if reserved {
                self.book.release_session(&t.src);
            }
        })
    }

    fn create_bib(&mut self, proto: Proto, v6: Ipv6Addr, port6: u16) -> Result<u32, DropReason> {
        if !self.book.reserve_bib(&v6, false) {
            self.counters.limit_reached += 1;
            return Err(DropReason::LimitReached);
        }
        let Some((v4, port4)) = self.pool.allocate(proto, v6, port6, None, self.clock) else {
            self.book.release_bib(&v6);
            self.counters.pool_exhausted += 1;
            return Err(DropReason::PoolExhausted);
        };
        let i = self.bibs.insert(Bib { proto, v6, port6, v4, port4, is_static: false, sessions: 0 });
        self.bib6.insert((proto, v6, port6), i);
        self.bib4.insert((proto, v4, port4), i);
        self.counters.bibs_created += 1;
        if self.cfg.events.sessions {
            self.session_event(EventKind::BibCreated, i, Ipv4Addr::UNSPECIFIED, 0);
        }
        Ok(i)
    }

    /// True when a BIB entry holds the IPv6 transport address `v6` (an index look-up).
    pub fn has_bib6(&self, proto: Proto, v6: (Ipv6Addr, u16)) -> bool {
        self.bib6.contains_key(&(proto, v6.0, v6.1))
    }

    /// Add a static BIB entry: `v6` reachable from IPv4 at `v4` (RFC 6146 3.1).
    pub fn add_static(&mut self, proto: Proto, v6: (Ipv6Addr, u16), v4: (Ipv4Addr, u16)) -> Result<(), NatError> {
        if self.bib6.contains_key(&(proto, v6.0, v6.1)) {
            return Err(NatError::Exists(v6.0, v6.1));
        }
        if !self.pool.reserve(proto, v4.0, v4.1) {
            return Err(NatError::NotInPool(v4.0, v4.1));
        }
        let i =
            self.bibs.insert(Bib { proto, v6: v6.0, port6: v6.1, v4: v4.0, port4: v4.1, is_static: true, sessions: 0 });
        self.bib6.insert((proto, v6.0, v6.1), i);
        self.bib4.insert((proto, v4.0, v4.1), i);
        self.book.reserve_bib(&v6.0, true);
        Ok(())
    }

    /// Remove a static BIB entry. Its live sessions keep it until they end.
    pub fn remove_static(&mut self, proto: Proto, v6: (Ipv6Addr, u16)) -> Result<(), NatError> {
        let i = *self.bib6.get(&(proto, v6.0, v6.1)).ok_or(NatError::NoSuchEntry(v6.0, v6.1))?;
        let b = self.bibs.get_mut(i).ok_or(NatError::NoSuchEntry(v6.0, v6.1))?;
        if !b.is_static {
            return Err(NatError::NoSuchEntry(v6.0, v6.1));
        }
        b.is_static = false;
        if b.sessions == 0 {
            self.remove_bib(i);
        }
        Ok(())
    }

    /// Visit at most `budget` session slots from the clock hand and remove
    /// the expired ones (with BIB entries left without sessions). Returns
    /// how many were removed.
    pub fn expire(&mut self, now: Millis, budget: usize) -> usize {
        self.clock = self.clock.max(now);
        self.time_out_syns(now);
        self.pool.expire_blocks(now);
        let n = self.sessions.slots.len();
        if n == 0 {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            self.hand = (self.hand + 1) % n;
            let i = self.hand as u32;
            if self.sessions.get(i).is_some_and(|s| s.expires <= now) {
                self.remove_session(i);
                self.counters.sessions_expired += 1;
                removed += 1;
            }
        }
        removed
    }

    /// RFC 6146 3.5.1 to 3.5.3: an IPv6 packet going out.
    pub(super) fn outbound(&mut self, t: &Tuple6, meta: &FlowMeta, now: Millis) -> Result<Tuple4, DropReason> {
        self.clock = now;
        let proto = Proto::from_ip(t.proto).ok_or(DropReason::UnsupportedProtocol)?;
        if meta.fragment && !meta.first_fragment {
            return Err(DropReason::FragmentNoState);
        }
        let dst4 = self.addrs.to_v4(&t.dst)?;
        let is_tcp = proto == Proto::Tcp;
        let rport = if proto == Proto::Icmp { 0 } else { t.dport };
        // Find the BIB entry and a live session; expiring the session may
        // take the BIB entry with it, in which case it is made anew.
        let mut bib = self.bib6.get(&(proto, t.src, t.sport)).copied();
        let mut sess = None;
        if let Some(b) = bib {
            sess = self.live_session(b, dst4, rport, now);
            if sess.is_none() && self.bibs.get(b).is_none() {
                bib = None;
            }
        }
        if sess.is_none() {
            // RFC 6146 3.5.2.2: in CLOSED only a V6 SYN creates state; and a
            // new session must fit the limits, checked before any BIB entry is made.
            if is_tcp && meta.tcp_flags & tcp::SYN == 0 {
                return Err(DropReason::NoState);
            }
            self.reserve_session(&t.src)?;
        }
        let bib = match bib {
            Some(b) => b,
            None => self.create_bib_for(proto, t, sess.is_none())?,
        };
        match sess {
            Some(s) => self.touch(s, proto, Side::V6, meta.tcp_flags, now),
            None => {
                let (mut state, mut life) = if is_tcp {
                    (TcpState::V6Init, Lifetime::TransLife)
                } else {
                    (TcpState::Established, Lifetime::EstLife)
                };
                // RFC 6146 3.5.2.2: V4 INIT (a held V4 SYN) + V6 SYN → ESTABLISHED; the held SYN is released.
                if is_tcp && self.release_syn(bib, dst4, rport, now) {
                    (state, life) = (TcpState::Established, Lifetime::EstLife);
                }
                let exp = now + self.lifetime(proto, life).unwrap_or(0);
                self.new_session(bib, dst4, rport, state, exp);
            }
        }
        let b = self.bibs.get(bib).ok_or(DropReason::NoState)?;
        let dport = if proto == Proto::Icmp { b.port4 } else { t.dport };
        Ok(Tuple4 { src: b.v4, dst: dst4, proto: t.proto, sport: b.port4, dport })
    }

    /// A packet of live session `s` from `side`: the TCP state moves
    /// (RFC 6146 3.5.2.2) and the lifetime is refreshed as the state says;
    /// UDP and ICMP sessions get their full lifetime again.
    fn touch(&mut self, s: u32, proto: Proto, side: Side, flags: u8, now: Millis) {
        let life = match self.sessions.get_mut(s) {
            Some(x) if proto == Proto::Tcp => {
                let (next, life) = tcp::transition(x.state, side, flags);
                let moved = next != x.state;
                x.state = next;
                if moved && self.sync.is_on() {
                    // After the lifetime below, so the standby gets the new one.
                    if let (Some(ms), Some(x)) = (self.lifetime(proto, life), self.sessions.get_mut(s)) {
                        x.expires = now + ms;
                    }
                    self.sync_event(s, true);
                    return;
                }
                life
            }
            _ => Lifetime::EstLife,
        };
        if let (Some(ms), Some(x)) = (self.lifetime(proto, life), self.sessions.get_mut(s)) {
            x.expires = now + ms;
        }
    }

    /// Move held SYNs whose TCP_INCOMING_SYN has passed to `unreachable`.
    /// The answers waiting are bounded like the held SYNs: when
    /// [`MAX_HELD_SYNS`] wait already (nobody took them), a SYN that times
    /// out goes unanswered (the fuzz campaign found 511 waiting).
    fn time_out_syns(&mut self, now: Millis) {
        while self.held.front().is_some_and(|h| h.expires <= now) {
            if let Some(h) = self.held.pop_front() {
                if self.unreachable.len() < MAX_HELD_SYNS {
                    self.unreachable.push(h.packet);
                }
            }
        }
    }

    /// RFC 6146 3.5.2.2: hold an IPv4 SYN for TCP_INCOMING_SYN.
    fn hold_syn(&mut self, t: &Tuple4, meta: &FlowMeta, now: Millis) -> Result<Tuple6, DropReason> {
        self.time_out_syns(now);
        let key = (t.dst, t.dport, t.src, t.sport);
        if self.held.iter().any(|h| h.key == key) {
            return Err(DropReason::V4SynHeld); // a retransmission: the first is kept
        }
        if self.held.len() >= MAX_HELD_SYNS || self.unreachable.len() >= MAX_HELD_SYNS {
            self.counters.limit_reached += 1;
            return Err(DropReason::LimitReached);
        }
        self.held.push_back(HeldSyn { key, packet: meta.packet.to_vec(), expires: now + TCP_INCOMING_SYN });
        Err(DropReason::V4SynHeld)
    }

    /// A new outbound session (bib → remote:rport): release the SYN held for it, if any.
    fn release_syn(&mut self, bib: u32, remote: Ipv4Addr, rport: u16, now: Millis) -> bool {
        self.time_out_syns(now);
        let Some(b) = self.bibs.get(bib) else { return false };
        let key = (b.v4, b.port4, remote, rport);
        match self.held.iter().position(|h| h.key == key) {
            Some(i) => {
                if let Some(h) = self.held.remove(i) {
                    self.released.push(h.packet);
                }
                true
            }
            None => false,
        }
    }

    /// An IPv4 SYN an IPv6 SYN has matched (RFC 6146 3.5.2.2): translate it
    /// now (its session exists) and deliver it.
    pub fn take_released_syn(&mut self) -> Option<Vec<u8>> {
        self.released.pop()
    }

    /// An IPv4 SYN nobody answered within TCP_INCOMING_SYN: answer its
    /// sender with ICMPv4 Port Unreachable (3/3, RFC 6146 3.5.2.2).
    pub fn take_unanswered_syn(&mut self) -> Option<Vec<u8>> {
        self.unreachable.pop()
    }

    /// IPv4 SYNs held now.
    pub fn held_syns(&self) -> usize {
        self.held.len()
    }

    /// RFC 6146 3.5.1 to 3.5.3: an IPv4 packet coming in.
    pub(super) fn inbound(&mut self, t: &Tuple4, meta: &FlowMeta, now: Millis) -> Result<Tuple6, DropReason> {
        self.clock = now;
        let proto = Proto::from_ip(t.proto).ok_or(DropReason::UnsupportedProtocol)?;
        if meta.fragment && !meta.first_fragment {
            return Err(DropReason::FragmentNoState);
        }
        let src6 = self.addrs.to_v6(t.src)?;
        let is_tcp = proto == Proto::Tcp;
        let Some(&bib) = self.bib4.get(&(proto, t.dst, t.dport)) else {
            // RFC 6146 3.5.2.2: CLOSED + V4 SYN with no BIB entry: held for a simultaneous open.
            if is_tcp && meta.tcp_flags & tcp::SYN != 0 && self.pool.contains(t.dst) {
                if self.cfg.drop_external_tcp {
                    return Err(DropReason::Filtered);
                }
                return self.hold_syn(t, meta, now);
            }
            return Err(DropReason::NoState);
        };
        let rport = if proto == Proto::Icmp { 0 } else { t.sport };
        match self.live_session(bib, t.src, rport, now) {
            Some(s) => self.touch(s, proto, Side::V4, meta.tcp_flags, now),
            None => {
                // The BIB may have lost its last session just now (expired above).
                if self.bibs.get(bib).is_none() {
                    return Err(DropReason::NoState);
                }
                if adf(&self.cfg) && !self.by_remote.contains_key(&(bib, t.src)) {
                    // RFC 6146 3.5.2.2: a filtered V4 SYN is held too; anything else is refused.
                    if is_tcp && meta.tcp_flags & tcp::SYN != 0 && !self.cfg.drop_external_tcp {
                        return self.hold_syn(t, meta, now);
                    }
                    return Err(DropReason::Filtered);
                }
                if is_tcp {
                    if meta.tcp_flags & tcp::SYN == 0 {
                        return Err(DropReason::NoState);
                    }
                    if self.cfg.drop_external_tcp {
                        return Err(DropReason::Filtered);
                    }
                }
                let host = self.bibs.get(bib).map(|b| b.v6).unwrap_or(Ipv6Addr::UNSPECIFIED);
                self.reserve_session(&host)?;
                // RFC 6146 3.5.2.2: CLOSED + V4 SYN with a BIB entry → V4 INIT, TCP_TRANS.
                let (state, life) = if is_tcp {
                    (TcpState::V4Init, Lifetime::TransLife)
                } else {
                    (TcpState::Established, Lifetime::EstLife)
                };
                let exp = now + self.lifetime(proto, life).unwrap_or(0);
                self.new_session(bib, t.src, rport, state, exp);
            }
        }
        let b = self.bibs.get(bib).ok_or(DropReason::NoState)?;
        let sport = if proto == Proto::Icmp { b.port6 } else { t.sport };
        Ok(Tuple6 { src: src6, dst: b.v6, proto: t.proto, sport, dport: b.port6 })
    }

    /// The packet quoted in an ICMPv6 error: it went from the IPv4 side to
    /// the IPv6 host (remote → client). Looked up, never created.
    pub(super) fn quoted_6to4(&self, t: &Tuple6) -> Result<Tuple4, DropReason> {
        let proto = Proto::from_ip(t.proto).ok_or(DropReason::UnsupportedProtocol)?;
        let b = self.bib6.get(&(proto, t.dst, t.dport)).and_then(|&i| self.bibs.get(i)).ok_or(DropReason::NoState)?;
        let remote = self.cfg.prefix.extract(&t.src).ok_or(DropReason::NotInPrefix)?;
        let sport = if proto == Proto::Icmp { b.port4 } else { t.sport };
        Ok(Tuple4 { src: remote, dst: b.v4, proto: t.proto, sport, dport: b.port4 })
    }

    /// The packet quoted in an ICMPv4 error: it went from pool4 to the
    /// remote host. Looked up, never created.
    pub(super) fn quoted_4to6(&self, t: &Tuple4) -> Result<Tuple6, DropReason> {
        let proto = Proto::from_ip(t.proto).ok_or(DropReason::UnsupportedProtocol)?;
        let b = self.bib4.get(&(proto, t.src, t.sport)).and_then(|&i| self.bibs.get(i)).ok_or(DropReason::NoState)?;
        let dport = if proto == Proto::Icmp { b.port6 } else { t.dport };
        Ok(Tuple6 { src: b.v6, dst: self.cfg.prefix.embed(t.dst), proto: t.proto, sport: b.port6, dport })
    }

    /// Append this table's state to `st` for a state file: every BIB entry
    /// (static ones too, so their sessions come back), every live session
    /// with the lifetime it has left at `now`, every block.
    pub fn snapshot_into(&self, st: &mut super::state::State, now: Millis) {
        use super::state::{BibRec, BlockRec, SessionRec};
        let mut index = vec![u32::MAX; self.bibs.slots.len()];
        for (i, b) in self.bibs.slots.iter().enumerate() {
            let Some(b) = b else { continue };
            index[i] = st.bibs.len() as u32;
            st.bibs.push(BibRec {
                proto: b.proto,
                is_static: b.is_static,
                v6: b.v6,
                port6: b.port6,
                v4: b.v4,
                port4: b.port4,
            });
        }
        for s in self.sessions.slots.iter().flatten() {
            if s.expires <= now {
                continue;
            }
            let Some(&bib) = index.get(s.bib as usize).filter(|&&i| i != u32::MAX) else { continue };
            st.sessions.push(SessionRec {
                bib,
                remote: s.remote,
                rport: s.rport,
                state: s.state,
                remaining: s.expires - now,
            });
        }
        for (v4, proto, block, sub, held) in self.pool.held_blocks() {
            st.blocks.push(BlockRec { v4, proto, block, sub, held: held.map(|t| t.saturating_sub(now)) });
        }
    }

    /// A restart: a block back with its subscriber (see [`Pool4::restore_block`]).
    pub(super) fn restore_block(&mut self, b: &super::state::BlockRec, held_until: Option<Millis>) -> bool {
        self.pool.restore_block(b.v4, b.proto, b.block, b.sub, held_until)
    }

    /// A restart: a BIB entry back on its pool4 transport address, or why
    /// not. A static entry is matched to the one the configuration made.
    pub(super) fn restore_bib(&mut self, b: &super::state::BibRec) -> Result<u32, RestoreDrop> {
        if b.is_static {
            let i = *self.bib4.get(&(b.proto, b.v4, b.port4)).ok_or(RestoreDrop::Misplaced)?;
            return match self.bibs.get(i) {
                Some(x) if x.is_static && (x.v6, x.port6) == (b.v6, b.port6) => Ok(i),
                _ => Err(RestoreDrop::Misplaced),
            };
        }
        if self.bib6.contains_key(&(b.proto, b.v6, b.port6)) || self.bib4.contains_key(&(b.proto, b.v4, b.port4)) {
            return Err(RestoreDrop::Misplaced);
        }
        if !self.pool.contains(b.v4) {
            return Err(RestoreDrop::NotInPool4);
        }
        if !self.book.reserve_bib(&b.v6, false) {
            return Err(RestoreDrop::OverLimit);
        }
        if !self.pool.take_restored(b.proto, b.v4, b.port4, b.v6) {
            self.book.release_bib(&b.v6);
            return Err(RestoreDrop::NotInPool4);
        }
        let i = self.bibs.insert(Bib {
            proto: b.proto,
            v6: b.v6,
            port6: b.port6,
            v4: b.v4,
            port4: b.port4,
            is_static: false,
            sessions: 0,
        });
        self.bib6.insert((b.proto, b.v6, b.port6), i);
        self.bib4.insert((b.proto, b.v4, b.port4), i);
        Ok(i)
    }

    /// A restart: a session back under BIB entry `bib`, expiring at `expires`.
    pub(super) fn restore_session(
        &mut self,
        bib: u32,
        s: &super::state::SessionRec,
        expires: Millis,
    ) -> Result<(), RestoreDrop> {
        let host = self.bibs.get(bib).map(|b| b.v6).ok_or(RestoreDrop::Misplaced)?;
        if self.sess.contains_key(&(bib, s.remote, s.rport)) {
            return Err(RestoreDrop::Misplaced);
        }
        if !self.book.reserve_session(&host) {
            return Err(RestoreDrop::OverLimit);
        }
        let i = self.sessions.insert(Session { bib, remote: s.remote, rport: s.rport, state: s.state, expires });
        self.sess.insert((bib, s.remote, s.rport), i);
        if adf(&self.cfg) {
            *self.by_remote.entry((bib, s.remote)).or_insert(0) += 1;
        }
        if let Some(b) = self.bibs.get_mut(bib) {
            b.sessions += 1;
        }
        Ok(())
    }

    /// After a restore: dynamic BIB entries that got no session back go, and
    /// blocks left without a port start their hold time. Returns the BIB
    /// entries removed.
    pub(super) fn settle_restored(&mut self, now: Millis) -> usize {
        self.clock = self.clock.max(now);
        let idle: Vec<u32> = (0..self.bibs.slots.len() as u32)
            .filter(|&i| self.bibs.get(i).is_some_and(|b| !b.is_static && b.sessions == 0))
            .collect();
        for &i in &idle {
            self.remove_bib(i);
        }
        self.pool.settle_restored_blocks(now);
        idle.len()
    }

    /// Start or stop recording state changes for a standby.
    pub fn set_sync_events(&mut self, on: bool) {
        self.sync.set_on(on);
    }

    /// Move the state changes recorded since the last drain to `out`;
    /// returns how many were lost to a full queue since the last call.
    pub fn drain_sync(&mut self, out: &mut Vec<SyncEvent>) -> u64 {
        self.sync.drain_into(out);
        std::mem::take(&mut self.sync.lost)
    }

    /// Every live session with its BIB entry, for a standby's full snapshot.
    pub fn sync_snapshot_into(&self, out: &mut Vec<SessionSync>, now: Millis) {
        for x in self.sessions.slots.iter().flatten() {
            if x.expires <= now {
                continue;
            }
            let Some(b) = self.bibs.get(x.bib) else { continue };
            out.push(sync_of(b, x, now));
        }
    }

    /// A standby: hold session `r` as the active has it (its BIB entry on
    /// the same pool4 transport address, its TCP state, its lifetime),
    /// making or updating it; or why not.
    pub(super) fn sync_session(&mut self, r: &SessionSync, now: Millis) -> Result<(), RestoreDrop> {
        self.quietly(|t| t.sync_session_inner(r, now))
    }

    /// The mapping log is the active's: what a standby applies from it
    /// (creates, ends, blocks) it does not log again. After a promotion it
    /// logs what it does itself.
    fn quietly<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        self.pool.events.mute(true);
        let r = f(self);
        self.pool.events.mute(false);
        r
    }

    fn sync_session_inner(&mut self, r: &SessionSync, now: Millis) -> Result<(), RestoreDrop> {
        self.clock = self.clock.max(now);
        let expires = now.saturating_add(r.remaining as Millis);
        let bib = match self.bib6.get(&(r.proto, r.v6, r.port6)).copied() {
            Some(i) => {
                let b = self.bibs.get(i).ok_or(RestoreDrop::Misplaced)?;
                if (b.v4, b.port4) != (r.v4, r.port4) {
                    return Err(RestoreDrop::Misplaced);
                }
                i
            }
            None => {
                if self.pool.ports.mode == super::blocks::PortMode::Blocks {
                    // The subscriber's block comes with its first session.
                    let sub = u128::from(self.pool.ports.subscriber_of(r.v6).addr);
                    let block = self.pool.ports.block_of(r.port4);
                    self.pool.restore_block(r.v4, r.proto, block, sub, None);
                }
                let rec = super::state::BibRec {
                    proto: r.proto,
                    is_static: r.is_static,
                    v6: r.v6,
                    port6: r.port6,
                    v4: r.v4,
                    port4: r.port4,
                };
                self.restore_bib(&rec)?
            }
        };
        if let Some(&s) = self.sess.get(&(bib, r.remote, r.rport)) {
            if let Some(x) = self.sessions.get_mut(s) {
                x.state = r.state;
                x.expires = expires;
            }
            return Ok(());
        }
        let rec = super::state::SessionRec { bib, remote: r.remote, rport: r.rport, state: r.state, remaining: 0 };
        let res = self.restore_session(bib, &rec, expires);
        if res.is_err() && self.bibs.get(bib).is_some_and(|b| !b.is_static && b.sessions == 0) {
            self.remove_bib(bib);
        }
        res
    }

    /// A standby: session `r` ended on the active. False when it was not here.
    pub(super) fn sync_gone(&mut self, r: &SessionSync, now: Millis) -> bool {
        self.clock = self.clock.max(now);
        let Some(&bib) = self.bib6.get(&(r.proto, r.v6, r.port6)) else { return false };
        match self.sess.get(&(bib, r.remote, r.rport)) {
            Some(&s) => {
                self.quietly(|t| t.remove_session(s));
                true
            }
            None => false,
        }
    }

    /// A standby about to take a full snapshot: every session goes (static
    /// BIB entries stay; they are configured). Returns how many went.
    pub(super) fn sync_clear(&mut self, now: Millis) -> usize {
        self.clock = self.clock.max(now);
        let live: Vec<u32> =
            (0..self.sessions.slots.len() as u32).filter(|&i| self.sessions.get(i).is_some()).collect();
        self.quietly(|t| live.iter().for_each(|&i| t.remove_session(i)));
        live.len()
    }

    /// A standby taking over: every session gets at least its state's full
    /// lifetime from `now` (the active refreshed them on traffic the
    /// standby never saw; any it had ended, it said so).
    pub(super) fn sync_take_over(&mut self, now: Millis) {
        self.clock = self.clock.max(now);
        let t = self.cfg.timeouts;
        for i in 0..self.sessions.slots.len() as u32 {
            let Some(bib) = self.sessions.get(i).map(|x| x.bib) else { continue };
            let proto = self.bibs.get(bib).map_or(Proto::Udp, |b| b.proto);
            let Some(x) = self.sessions.get_mut(i) else { continue };
            let life = match proto {
                Proto::Tcp if x.state == TcpState::Established => t.tcp_est,
                Proto::Tcp => t.tcp_trans,
                Proto::Udp => t.udp,
                Proto::Icmp => t.icmp,
            };
            x.expires = x.expires.max(now + life);
        }
    }

    /// Check every internal invariant; the first one broken, described.
    /// For tests and fuzzing: it walks the whole table.
    pub fn check(&self) -> Result<(), String> {
        let mut per_bib = vec![0u32; self.bibs.slots.len()];
        for (i, s) in self.sessions.slots.iter().enumerate() {
            let Some(s) = s else { continue };
            if self.bibs.get(s.bib).is_none() {
                return Err(format!("session {i} under missing BIB {}", s.bib));
            }
            per_bib[s.bib as usize] += 1;
            if self.sess.get(&(s.bib, s.remote, s.rport)) != Some(&(i as u32)) {
                return Err(format!("session {i} not indexed"));
            }
        }
        if self.sess.len() != self.sessions.len {
            return Err(format!("{} session keys for {} sessions", self.sess.len(), self.sessions.len));
        }
        let mut ports = [0u32; 3];
        for (i, b) in self.bibs.slots.iter().enumerate() {
            let Some(b) = b else { continue };
            if b.sessions != per_bib[i] {
                return Err(format!("BIB {i} counts {} sessions, has {}", b.sessions, per_bib[i]));
            }
            if b.sessions == 0 && !b.is_static {
                return Err(format!("dynamic BIB {i} without sessions"));
            }
            if self.bib6.get(&(b.proto, b.v6, b.port6)) != Some(&(i as u32))
                || self.bib4.get(&(b.proto, b.v4, b.port4)) != Some(&(i as u32))
            {
                return Err(format!("BIB {i} not indexed both ways"));
            }
            ports[b.proto as usize] += 1;
        }
        if self.bib6.len() != self.bibs.len || self.bib4.len() != self.bibs.len {
            return Err("BIB indexes and entries differ in number".into());
        }
        for p in Proto::ALL {
            let used: u32 = self.cfg.pool4.iter().flat_map(|g| &g.addrs).map(|a| self.pool.in_use(p, a.addr)).sum();
            if used != ports[p as usize] {
                return Err(format!("{} pool4 ports in use for {} {} BIB entries", used, ports[p as usize], p.label()));
            }
        }
        if self.held.len() > MAX_HELD_SYNS || self.unreachable.len() > MAX_HELD_SYNS {
            return Err("more SYNs held than allowed".into());
        }
        // Port blocks: no block held twice, and every dynamic entry's port
        // lies in a block its own subscriber holds (or the formula gives it).
        self.pool.check_blocks()?;
        if self.cfg.ports.uses_blocks() {
            for b in self.bibs.slots.iter().flatten().filter(|b| !b.is_static) {
                match self.pool.block_owner(b.proto, b.v4, b.port4) {
                    Some((sub, lo, hi)) if sub.contains(b.v6) && (lo..=hi).contains(&b.port4) => {}
                    other => {
                        return Err(format!(
                            "[{}]:{} holds {}:{} outside its subscriber's blocks ({other:?})",
                            b.v6, b.port6, b.v4, b.port4
                        ))
                    }
                }
            }
        }
        if self.book.over() {
            return Err("a session limit is exceeded".into());
        }
        for b in self.bibs.slots.iter().flatten() {
            let (sessions, bibs, _) = self.book.of(&b.v6);
            if sessions > self.cfg.limits.sessions_per_host || bibs == 0 {
                return Err(format!("the book counts {sessions} sessions and {bibs} BIB entries for {}", b.v6));
            }
        }
        Ok(())
    }

    /// Apply a new configuration without dropping state (a reload): pool4,
    /// timeouts, limits and the IPv4-SYN policy change; the prefix and the
    /// filtering mode are fixed for the table's life (the daemon refuses to
    /// reload a change of either). Every BIB entry keeps its transport
    /// address; one on an address no longer in pool4 serves its sessions
    /// until they end, and new flows get addresses of the new pool.
    /// Live sessions keep their expiry time; the new timeouts apply from
    /// their next packet.
    pub fn reconfigure(&mut self, mut cfg: NatConfig) {
        self.book.set_limits(cfg.limits);
        cfg.timeouts.udp = cfg.timeouts.udp.max(UDP_MIN);
        cfg.prefix = self.cfg.prefix;
        cfg.allow_non_global = self.cfg.allow_non_global;
        cfg.filtering = self.cfg.filtering;
        // The allocation mode is fixed for the table's life (a restart changes it).
        cfg.ports = self.cfg.ports;
        cfg.events = self.cfg.events;
        let mut pool = self.pool.with_groups(cfg.pool4.clone());
        for b in self.bibs.slots.iter().flatten() {
            pool.reserve(b.proto, b.v4, b.port4);
        }
        pool.recount_blocks();
        self.pool = pool;
        self.cfg = cfg;
    }

    /// Count sessions and BIB entries (a walk over both tables).
    pub fn census(&self) -> Census {
        let mut c = Census { held_syns: self.held.len() as u64, ..Census::default() };
        for b in self.bibs.slots.iter().flatten() {
            c.bibs[b.proto as usize] += 1;
            c.static_bibs += b.is_static as u64;
        }
        for s in self.sessions.slots.iter().flatten() {
            let Some(b) = self.bibs.get(s.bib) else { continue };
            c.sessions[b.proto as usize] += 1;
            if b.proto == Proto::Tcp {
                c.tcp_states[s.state as usize] += 1;
            }
        }
        c
    }

    /// Who holds the block of `port` on `a` now (block modes).
    pub fn block_owner(&self, proto: Proto, a: Ipv4Addr, port: u16) -> Option<(crate::addr::Net6, u16, u16)> {
        self.pool.block_owner(proto, a, port)
    }

    /// The blocks `client`'s subscriber holds in this table.
    pub fn blocks_of(&self, client: Ipv6Addr) -> Vec<super::blocks::BlockHolding> {
        self.pool.blocks_of(client)
    }

    /// Blocks held and subscribers holding them.
    pub fn block_census(&self) -> (usize, usize) {
        self.pool.block_census()
    }

    /// The BIB entry holding pool4 transport address (`a`, `port`), if any.
    pub fn bib4(&self, proto: Proto, a: Ipv4Addr, port: u16) -> Option<BibView> {
        let b = self.bibs.get(*self.bib4.get(&(proto, a, port))?)?;
        Some(BibView { proto, v6: (b.v6, b.port6), v4: (b.v4, b.port4), is_static: b.is_static, sessions: b.sessions })
    }

    /// pool4 addresses with ports in use, per protocol.
    pub fn pool_usage(&self) -> impl Iterator<Item = (Ipv4Addr, [u32; 3])> + '_ {
        self.pool.usage()
    }

    /// Every BIB entry (for `nat64ctl bib`).
    pub fn bibs(&self) -> impl Iterator<Item = BibView> + '_ {
        self.bibs.slots.iter().flatten().map(|b| BibView {
            proto: b.proto,
            v6: (b.v6, b.port6),
            v4: (b.v4, b.port4),
            is_static: b.is_static,
            sessions: b.sessions,
        })
    }

    /// Every session (for `nat64ctl sessions`).
    pub fn sessions(&self) -> impl Iterator<Item = SessionView> + '_ {
        self.sessions.slots.iter().flatten().filter_map(|s| {
            let b = self.bibs.get(s.bib)?;
            Some(SessionView {
                proto: b.proto,
                v6: (b.v6, b.port6),
                v4: (b.v4, b.port4),
                remote: (s.remote, s.rport),
                state: (b.proto == Proto::Tcp).then_some(s.state),
                expires: s.expires,
            })
        })
    }
}

/// The table as the translator's [`Mapper`] at time `now`.
#[derive(Debug)]
pub struct NatMapper<'a> {
    pub table: &'a mut NatTable,
    pub now: Millis,
}

impl Mapper for NatMapper<'_> {
    fn map_6to4(&mut self, t: &Tuple6, meta: &FlowMeta) -> Result<Tuple4, DropReason> {
        match meta.role {
            // RFC 6146 3.4: later fragments follow their first fragment.
            Role::Packet if meta.fragment && !meta.first_fragment => self.table.frags.find_out(t, meta, self.now),
            Role::Packet => {
                let m = self.table.outbound(t, meta, self.now)?;
                if meta.first_fragment {
                    self.table.frags.keep_out(t, meta, m, self.now);
                }
                Ok(m)
            }
            Role::ErrorInner => self.table.quoted_6to4(t),
        }
    }
    fn map_4to6(&mut self, t: &Tuple4, meta: &FlowMeta) -> Result<Tuple6, DropReason> {
        match meta.role {
            Role::Packet if meta.fragment && !meta.first_fragment => self.table.frags.find_in(t, meta, self.now),
            Role::Packet => {
                let m = self.table.inbound(t, meta, self.now)?;
                if meta.first_fragment {
                    self.table.frags.keep_in(t, meta, m, self.now);
                }
                Ok(m)
            }
            Role::ErrorInner => self.table.quoted_4to6(t),
        }
    }
    fn host_4to6(&self, a: Ipv4Addr) -> Result<Ipv6Addr, DropReason> {
        Ok(self.table.cfg.prefix.embed(a))
    }
}
