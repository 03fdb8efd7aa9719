//! pool4: the IPv4 transport addresses a stateful NAT64 hands out (RFC 6146
//! 3.5.1.1). Addresses come in groups, optionally chosen by the client's
//! IPv6 prefix (so operators can give customers separate addresses); each
//! address has a port range per protocol. Allocation keeps the client's port
//! when it is free, otherwise stays in its range class (0-1023 / 1024-65535),
//! and prefers the address the client already uses ("paired", RFC 4787 REQ-2).
//!
//! A shard of the NAT table owns the ports whose 64-port block number,
//! modulo the shard count, is its index: an inbound packet's shard follows
//! from its destination port alone.

use super::blocks::{self, Block, BlockTable, DetMap, PortMode, Ports};
use super::events::{EventKind, EventQueue, EventSel, MapEvent};
use super::{Millis, Proto};
use crate::addr::Net6;
use std::net::{Ipv4Addr, Ipv6Addr};

/// An inclusive port (or ICMP identifier) range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ALL: PortRange = PortRange { lo: 0, hi: 65535 };
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    /// `LO-HI` (inclusive) or one port.
    fn from_str(s: &str) -> Result<Self, String> {
        let port = |p: &str| p.trim().parse::<u16>().map_err(|_| format!("'{s}': '{p}' is not a port (0-65535)"));
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if lo > hi {
            return Err(format!("'{s}': the range is empty ({lo} > {hi})"));
        }
        Ok(PortRange { lo, hi })
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

/// One pool4 address and its ranges, indexed by [`Proto`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAddr {
    pub addr: Ipv4Addr,
    pub ports: [PortRange; 3],
}

impl PoolAddr {
    /// TCP and UDP ports 1-65535, every ICMP identifier.
    pub fn new(addr: Ipv4Addr) -> Self {
        let tcp_udp = PortRange { lo: 1, hi: 65535 };
        PoolAddr { addr, ports: [tcp_udp, tcp_udp, PortRange::ALL] }
    }
}

/// Addresses for the clients under `clients` (all clients when None).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolGroup {
    pub clients: Option<Net6>,
    pub addrs: Vec<PoolAddr>,
}

impl PoolGroup {
    fn serves(&self, client: &Ipv6Addr) -> bool {
        match self.clients {
            None => true,
            Some(net) => net.contains(*client),
        }
    }
}

/// 64-port words (per-session allocation): the shard that owns `port` among `shards`.
#[inline]
pub fn shard_of_port(port: u16, shards: usize) -> usize {
    blocks::shard_of(port, 64, shards)
}

const WORDS: usize = 1024; // 65536 ports / 64

/// One shard's allocator over the pool.
#[derive(Debug, Clone)]
pub struct Pool4 {
    groups: Vec<PoolGroup>,
    shard: usize,
    shards: usize,
    /// Used-port bitmaps per (group, address, protocol), created on first use.
    used: Vec<[Option<Box<[u64; WORDS]>>; 3]>,
    /// Start of each group's addresses in `used`.
    base: Vec<usize>,
    /// Address → (group, slot): a constant-time look-up however large the pool.
    index: std::collections::HashMap<Ipv4Addr, (usize, usize)>,
    in_use: Vec<[u32; 3]>,
    pub(super) ports: Ports,
    /// Per group: its deterministic mapping (deterministic mode only).
    det: Vec<Option<DetMap>>,
    /// Per group: the block numbers usable on its addresses (block modes).
    usable: Vec<Vec<u16>>,
    blocks: BlockTable,
    /// Block events for the mapping log (the table adds its own).
    pub events: EventQueue,
    sel: EventSel,
}

impl Pool4 {
    /// The allocator for shard `shard` of `shards`, one port per BIB entry.
    pub fn new(groups: Vec<PoolGroup>, shard: usize, shards: usize) -> Self {
        Self::with_ports(groups, shard, shards, Ports::default(), EventSel::default())
    }

    /// The allocator for shard `shard` of `shards` under `ports`, recording
    /// the events `sel` asks for. A group that cannot have the deterministic
    /// mapping (the configuration refuses it first) gets no ports.
    pub fn with_ports(mut groups: Vec<PoolGroup>, shard: usize, shards: usize, ports: Ports, sel: EventSel) -> Self {
        // An address listed twice belongs to its first place only: two
        // places would be two port bitmaps, and one (address, port,
        // protocol) could go to two BIB entries (the configuration refuses
        // overlaps; this holds whatever the caller passes).
        let mut seen = std::collections::HashSet::new();
        for grp in &mut groups {
            grp.addrs.retain(|a| seen.insert(a.addr));
        }
        let mut base = Vec::with_capacity(groups.len());
        let mut index = std::collections::HashMap::new();
        let mut n = 0;
        for (g, grp) in groups.iter().enumerate() {
            base.push(n);
            for (i, a) in grp.addrs.iter().enumerate() {
                index.insert(a.addr, (g, n + i));
            }
            n += grp.addrs.len();
        }
        let det = groups
            .iter()
            .map(|g| if ports.mode == PortMode::Deterministic { DetMap::new(g, &ports).ok() } else { None })
            .collect();
        let usable = groups.iter().map(|g| blocks::usable_blocks(g, &ports)).collect();
        Pool4 {
            groups,
            shard,
            shards: shards.max(1),
            used: (0..n).map(|_| [None, None, None]).collect(),
            base,
            index,
            in_use: vec![[0; 3]; n],
            ports,
            det,
            usable,
            blocks: BlockTable::default(),
            events: EventQueue::new(sel.any()),
            sel,
        }
    }

    /// An allocator for the same shard over new groups (a reload): no port
    /// in use, but the blocks subscribers hold (and their hold times) and
    /// the queued events carry over, so no block changes hands by a reload.
    pub fn with_groups(&mut self, groups: Vec<PoolGroup>) -> Self {
        let mut p = Pool4::with_ports(groups, self.shard, self.shards, self.ports, self.sel);
        p.blocks = std::mem::take(&mut self.blocks);
        for b in p.blocks.blocks.values_mut() {
            b.used = 0;
        }
        p.events = std::mem::take(&mut self.events);
        p
    }

    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    pub fn groups(&self) -> &[PoolGroup] {
        &self.groups
    }

    /// The slot of a pool address, if it is one.
    fn slot(&self, a: Ipv4Addr) -> Option<(usize, usize)> {
        self.index.get(&a).copied()
    }

    /// The group `a` belongs to, and the group's client prefix.
    pub fn group_of(&self, a: Ipv4Addr) -> Option<(usize, Option<Net6>)> {
        self.slot(a).map(|(g, _)| (g, self.groups[g].clients))
    }

    /// True when `a` is a pool4 address (of any group).
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        self.slot(a).is_some()
    }

    #[inline]
    fn owns(&self, port: u16) -> bool {
        blocks::shard_of(port, self.ports.unit(), self.shards) == self.shard
    }

    /// Every address with a port in use: (address, ports in use per [`Proto`]).
    pub fn usage(&self) -> impl Iterator<Item = (Ipv4Addr, [u32; 3])> + '_ {
        self.groups.iter().enumerate().flat_map(move |(g, grp)| {
            grp.addrs.iter().enumerate().filter_map(move |(i, a)| {
                let u = self.in_use[self.base[g] + i];
                (u != [0; 3]).then_some((a.addr, u))
            })
        })
    }

    /// Ports of `proto` in use on `a` in this shard.
    pub fn in_use(&self, proto: Proto, a: Ipv4Addr) -> u32 {
        self.slot(a).map_or(0, |(_, s)| self.in_use[s][proto as usize])
    }

    fn bitmap(&mut self, slot: usize, proto: Proto) -> &mut [u64; WORDS] {
        self.used[slot][proto as usize].get_or_insert_with(|| Box::new([0u64; WORDS]))
    }

    fn take(&mut self, slot: usize, proto: Proto, port: u16) {
        self.bitmap(slot, proto)[port as usize >> 6] |= 1 << (port & 63);
        self.in_use[slot][proto as usize] += 1;
    }

    fn is_free(&self, slot: usize, proto: Proto, port: u16) -> bool {
        self.used[slot][proto as usize].as_ref().is_none_or(|b| b[port as usize >> 6] & (1 << (port & 63)) == 0)
    }

    /// Reserve a specific transport address (a static BIB entry). False when
    /// it is not a pool address, outside the range, or taken.
    /// Under port blocks, ports a block may use are never reserved (they
    /// would sit in some subscriber's block): static entries take ports below 1024.
    pub fn reserve(&mut self, proto: Proto, a: Ipv4Addr, port: u16) -> bool {
        let Some((g, slot)) = self.slot(a) else { return false };
        if self.ports.uses_blocks() && self.usable[g].binary_search(&self.ports.block_of(port)).is_ok() {
            return false;
        }
        let i = slot - self.base[g];
        if !self.groups[g].addrs[i].ports[proto as usize].contains(port) || !self.is_free(slot, proto, port) {
            return false;
        }
        self.take(slot, proto, port);
        true
    }

    /// Give a transport address back (at `now`: a block left without a
    /// port in use starts its hold time).
    pub fn release(&mut self, proto: Proto, a: Ipv4Addr, port: u16, now: Millis) {
        if let Some((_, slot)) = self.slot(a) {
            if let Some(b) = self.used[slot][proto as usize].as_mut() {
                let bit = 1u64 << (port & 63);
                if b[port as usize >> 6] & bit != 0 {
                    b[port as usize >> 6] &= !bit;
                    self.in_use[slot][proto as usize] -= 1;
                }
            }
        }
        self.leave_block(proto, a, port, now);
    }

    /// RFC 6146 3.5.1.1: a transport address for a new BIB entry of
    /// `client`'s port `want`: `prefer`'s address first (the one the client
    /// already has, "paired"), else one chosen by a hash of the client, then
    /// the rest of its group; on each, `want` itself if free, else a free
    /// port of the same range class (0-1023 / 1024-65535) when the range has
    /// one, else any free port of the range. None when all are taken.
    ///
    /// Under port blocks, the port comes from the client's subscriber's
    /// blocks instead (see [`super::blocks`]).
    pub fn allocate(
        &mut self,
        proto: Proto,
        client: Ipv6Addr,
        want: u16,
        prefer: Option<Ipv4Addr>,
        now: Millis,
    ) -> Option<(Ipv4Addr, u16)> {
        let g = self.groups.iter().position(|grp| grp.serves(&client))?;
        match self.ports.mode {
            PortMode::Session => {}
            PortMode::Blocks => return self.allocate_in_blocks(g, proto, client, want, now),
            PortMode::Deterministic => return self.allocate_deterministic(g, proto, client, want),
        }
        let n = self.groups[g].addrs.len();
        if n == 0 {
            return None;
        }
        let h = hash_client(client);
        let first = prefer
            .and_then(|p| self.groups[g].addrs.iter().position(|a| a.addr == p))
            .unwrap_or((h % n as u64) as usize);
        for k in 0..n {
            let i = (first + k) % n;
            let slot = self.base[g] + i;
            let range = self.groups[g].addrs[i].ports[proto as usize];
            if let Some(port) = self.pick(slot, proto, range, want, h) {
                self.take(slot, proto, port);
                return Some((self.groups[g].addrs[i].addr, port));
            }
        }
        None
    }

    fn pick(&mut self, slot: usize, proto: Proto, range: PortRange, want: u16, h: u64) -> Option<u16> {
        if range.contains(want) && self.owns(want) && self.is_free(slot, proto, want) {
            return Some(want);
        }
        let class = if want < 1024 { PortRange { lo: 0, hi: 1023 } } else { PortRange { lo: 1024, hi: 65535 } };
        let lo = range.lo.max(class.lo);
        let hi = range.hi.min(class.hi);
        let (lo, hi) = if lo <= hi { (lo, hi) } else { (range.lo, range.hi) };
        self.scan(slot, proto, lo, hi, h)
    }

    /// First free owned port in [lo, hi], scanning 64-port words from a hashed start.
    fn scan(&mut self, slot: usize, proto: Proto, lo: u16, hi: u16, h: u64) -> Option<u16> {
        let (wlo, whi) = (lo as usize >> 6, hi as usize >> 6);
        let nw = whi - wlo + 1;
        let start = (h >> 16) as usize % nw;
        let (shard, shards) = (self.shard, self.shards);
        let bm = self.bitmap(slot, proto);
        for k in 0..nw {
            let w = wlo + (start + k) % nw;
            if w % shards != shard {
                continue;
            }
            let mut mask = u64::MAX;
            if w == wlo {
                mask &= u64::MAX << (lo & 63);
            }
            if w == whi {
                mask &= u64::MAX >> (63 - (hi & 63));
            }
            let free = !bm[w] & mask;
            if free != 0 {
                return Some((w * 64 + free.trailing_zeros() as usize) as u16);
            }
        }
        None
    }
}

impl Pool4 {
    /// A free port in `lo..=hi` of `slot`: `want` itself, else the port at
    /// `want`'s offset in the block (port preservation inside the block
    /// where possible), else the first free one after it.
    fn pick_in(&mut self, slot: usize, proto: Proto, lo: u16, hi: u16, want: u16) -> Option<u16> {
        if (lo..=hi).contains(&want) && self.is_free(slot, proto, want) {
            return Some(want);
        }
        // From the port at want's offset to the end of the block, then from
        // its start: 64 ports a word at a time.
        let n = (hi - lo) as u32 + 1;
        let start = lo + (want as u32 % n) as u16;
        let bm = self.bitmap(slot, proto);
        first_free(bm, start, hi).or_else(|| if start > lo { first_free(bm, lo, start - 1) } else { None })
    }

    fn block_event(&mut self, kind: EventKind, g: usize, key: blocks::BlockKey, sub: u128, at: Millis) {
        let (a, proto, b) = key;
        if !self.sel.blocks {
            return;
        }
        let (lo, hi) = self.ports.block_range(b);
        self.events.push(MapEvent {
            kind,
            at,
            proto,
            v6: Ipv6Addr::from(sub),
            v6_len: self.ports.subscriber,
            port6: 0,
            v4: a,
            lo,
            hi,
            remote: None,
            group: g as u16,
            customer: self.groups.get(g).and_then(|x| x.clients),
        });
    }

    /// Blocks mode: a port in one of the subscriber's blocks; a new block
    /// (on the address of its first, "paired", else one its hash picks,
    /// then the rest of the group) when they are full and it may have one.
    fn allocate_in_blocks(
        &mut self,
        g: usize,
        proto: Proto,
        client: Ipv6Addr,
        want: u16,
        now: Millis,
    ) -> Option<(Ipv4Addr, u16)> {
        let sub = u128::from(self.ports.subscriber_of(client).addr);
        // The subscriber's blocks with a port free, newest first (the older
        // ones are the likelier to be full); a full block is skipped by its
        // count, never scanned.
        let size = self.ports.block_size;
        let (mut held, mut first_addr, mut room) = (0, None, None);
        if let Some(list) = self.blocks.subs.get(&(proto, sub)) {
            held = list.len();
            first_addr = list.first().map(|x| x.0);
            room = list
                .iter()
                .rev()
                .find(|&&(a, b)| self.blocks.blocks.get(&(a, proto, b)).is_some_and(|x| x.used < size))
                .copied();
        }
        if let Some((a, b)) = room {
            if let Some((_, slot)) = self.slot(a) {
                let (lo, hi) = self.ports.block_range(b);
                if let Some(port) = self.pick_in(slot, proto, lo, hi, want) {
                    self.take_in_block(slot, proto, a, b, port);
                    return Some((a, port));
                }
            }
        }
        if held >= self.ports.max_blocks as usize {
            return None;
        }
        let n = self.groups[g].addrs.len();
        let h = hash_client(Ipv6Addr::from(sub));
        let first = first_addr
            .and_then(|a| self.groups[g].addrs.iter().position(|x| x.addr == a))
            .unwrap_or((h % n.max(1) as u64) as usize);
        let usable = std::mem::take(&mut self.usable[g]);
        let mut found = None;
        'addrs: for k in 0..n {
            let a = self.groups[g].addrs[(first + k) % n].addr;
            let m = usable.len();
            for j in 0..m {
                let b = usable[((h >> 20) as usize + j) % m];
                if blocks::shard_of(self.ports.block_range(b).0, self.ports.unit(), self.shards) != self.shard
                    || self.blocks.blocks.contains_key(&(a, proto, b))
                {
                    continue;
                }
                found = Some((a, b));
                break 'addrs;
            }
        }
        self.usable[g] = usable;
        let (a, b) = found?;
        let (_, slot) = self.slot(a)?;
        let (lo, hi) = self.ports.block_range(b);
        let port = self.pick_in(slot, proto, lo, hi, want)?;
        self.blocks.blocks.insert((a, proto, b), Block { sub, used: 0, held_until: None });
        self.blocks.subs.entry((proto, sub)).or_default().push((a, b));
        self.block_event(EventKind::BlockAllocated, g, (a, proto, b), sub, now);
        self.take_in_block(slot, proto, a, b, port);
        Some((a, port))
    }

    fn take_in_block(&mut self, slot: usize, proto: Proto, a: Ipv4Addr, b: u16, port: u16) {
        self.take(slot, proto, port);
        if let Some(blk) = self.blocks.blocks.get_mut(&(a, proto, b)) {
            blk.used += 1;
            blk.held_until = None;
        }
    }

    /// Deterministic mode: a port of the block the formula gives the subscriber.
    fn allocate_deterministic(
        &mut self,
        g: usize,
        proto: Proto,
        client: Ipv6Addr,
        want: u16,
    ) -> Option<(Ipv4Addr, u16)> {
        let (a, b) = self.det.get(g)?.as_ref()?.map(client)?;
        let (_, slot) = self.slot(a)?;
        let (lo, hi) = self.ports.block_range(b);
        let port = self.pick_in(slot, proto, lo, hi, want)?;
        self.take(slot, proto, port);
        Some((a, port))
    }

    /// A port of a dynamic block was given back.
    fn leave_block(&mut self, proto: Proto, a: Ipv4Addr, port: u16, now: Millis) {
        if self.ports.mode != PortMode::Blocks {
            return;
        }
        let key = (a, proto, self.ports.block_of(port));
        let hold = self.ports.hold;
        if let Some(blk) = self.blocks.blocks.get_mut(&key) {
            blk.used = blk.used.saturating_sub(1);
            if blk.used == 0 {
                blk.held_until = Some(now + hold);
                self.blocks.held.push_back((now + hold, key));
            }
        }
    }

    /// Return to the pool the blocks whose hold time has passed with no
    /// port in use (a block used again meanwhile stays its subscriber's).
    pub fn expire_blocks(&mut self, now: Millis) {
        while let Some(&(at, key)) = self.blocks.held.front() {
            if at > now {
                break;
            }
            self.blocks.held.pop_front();
            let Some(blk) = self.blocks.blocks.get(&key).copied() else { continue };
            if blk.used != 0 || blk.held_until != Some(at) {
                continue;
            }
            self.blocks.blocks.remove(&key);
            let (a, proto, b) = key;
            if let Some(list) = self.blocks.subs.get_mut(&(proto, blk.sub)) {
                list.retain(|&x| x != (a, b));
                if list.is_empty() {
                    self.blocks.subs.remove(&(proto, blk.sub));
                }
            }
            let g = self.slot(a).map_or(0, |(g, _)| g);
            self.block_event(EventKind::BlockReleased, g, (a, proto, b), blk.sub, now);
        }
    }

    /// A restart: the block `b` of `a` held by subscriber `sub` again (its
    /// hold time running until `held`, if it had no port in use). False
    /// when it no longer fits: not blocks mode, not a pool4 address, not a
    /// usable block, another shard's, or already held.
    pub fn restore_block(&mut self, a: Ipv4Addr, proto: Proto, b: u16, sub: u128, held: Option<Millis>) -> bool {
        if self.ports.mode != PortMode::Blocks {
            return false;
        }
        let Some((g, _)) = self.slot(a) else { return false };
        let (lo, _) = self.ports.block_range(b);
        if self.usable[g].binary_search(&b).is_err()
            || !self.owns(lo)
            || self.blocks.blocks.contains_key(&(a, proto, b))
        {
            return false;
        }
        self.blocks.blocks.insert((a, proto, b), Block { sub, used: 0, held_until: held });
        self.blocks.subs.entry((proto, sub)).or_default().push((a, b));
        if let Some(t) = held {
            self.blocks.held.push_back((t, (a, proto, b)));
            self.blocks.held.make_contiguous().sort_unstable_by_key(|x| x.0);
        }
        true
    }

    /// A restart: the port of a dynamic BIB entry of `client`, taken again.
    /// False when it no longer fits: not a pool4 address or outside its
    /// range, taken, another shard's, or (with blocks) outside a block the
    /// client's subscriber holds, (deterministic) outside its formula block.
    pub fn take_restored(&mut self, proto: Proto, a: Ipv4Addr, port: u16, client: Ipv6Addr) -> bool {
        let Some((g, slot)) = self.slot(a) else { return false };
        let i = slot - self.base[g];
        if !self.groups[g].serves(&client)
            || !self.groups[g].addrs[i].ports[proto as usize].contains(port)
            || !self.is_free(slot, proto, port)
            || !self.owns(port)
        {
            return false;
        }
        let b = self.ports.block_of(port);
        match self.ports.mode {
            PortMode::Session => self.take(slot, proto, port),
            PortMode::Blocks => {
                let sub = u128::from(self.ports.subscriber_of(client).addr);
                if self.blocks.blocks.get(&(a, proto, b)).is_none_or(|x| x.sub != sub) {
                    return false;
                }
                self.take_in_block(slot, proto, a, b, port);
            }
            PortMode::Deterministic => {
                if self.det.get(g).and_then(|m| m.as_ref()).and_then(|m| m.map(client)) != Some((a, b)) {
                    return false;
                }
                self.take(slot, proto, port);
            }
        }
        true
    }

    /// The blocks held, for a state file: (address, protocol, block, subscriber, hold deadline).
    pub fn held_blocks(&self) -> impl Iterator<Item = (Ipv4Addr, Proto, u16, u128, Option<Millis>)> + '_ {
        self.blocks.blocks.iter().map(|(&(a, p, b), x)| (a, p, b, x.sub, x.held_until))
    }

    /// After a restore: blocks that got no port back start their hold time
    /// (a block held by a subscriber whose sessions all ended meanwhile).
    pub fn settle_restored_blocks(&mut self, now: Millis) {
        let hold = self.ports.hold;
        let idle: Vec<_> =
            self.blocks.blocks.iter().filter(|(_, x)| x.used == 0 && x.held_until.is_none()).map(|(&k, _)| k).collect();
        for k in idle {
            if let Some(x) = self.blocks.blocks.get_mut(&k) {
                x.held_until = Some(now + hold);
                self.blocks.held.push_back((now + hold, k));
            }
        }
        self.blocks.held.make_contiguous().sort_unstable_by_key(|x| x.0);
    }

    /// Record a release for every block held, without changing the table.
    pub fn close_blocks(&mut self, now: Millis) {
        let held: Vec<_> = self.blocks.blocks.iter().map(|(&k, b)| (k, b.sub)).collect();
        for ((a, p, b), sub) in held {
            let g = self.slot(a).map_or(0, |(g, _)| g);
            self.block_event(EventKind::BlockReleased, g, (a, p, b), sub, now);
        }
    }

    /// Who holds the block `port` lies in on `a`, now: (subscriber, first
    /// port, last port). Dynamic blocks from the table, deterministic ones
    /// from the formula.
    pub fn block_owner(&self, proto: Proto, a: Ipv4Addr, port: u16) -> Option<(Net6, u16, u16)> {
        let b = self.ports.block_of(port);
        let (lo, hi) = self.ports.block_range(b);
        match self.ports.mode {
            PortMode::Session => None,
            PortMode::Blocks => {
                let blk = self.blocks.blocks.get(&(a, proto, b))?;
                Some((Net6 { addr: Ipv6Addr::from(blk.sub), len: self.ports.subscriber }, lo, hi))
            }
            PortMode::Deterministic => {
                let (g, _) = self.slot(a)?;
                Some((self.det.get(g)?.as_ref()?.who(a, port)?, lo, hi))
            }
        }
    }

    /// The blocks held by the subscriber of `client`: (protocol, address, first port, last port).
    pub fn blocks_of(&self, client: Ipv6Addr) -> Vec<super::blocks::BlockHolding> {
        let sub = u128::from(self.ports.subscriber_of(client).addr);
        let mut out = vec![];
        for p in Proto::ALL {
            for &(a, b) in self.blocks.subs.get(&(p, sub)).map(|v| v.as_slice()).unwrap_or(&[]) {
                let (lo, hi) = self.ports.block_range(b);
                out.push((p, a, lo, hi));
            }
        }
        out
    }

    /// Count each block's ports in use again from the bitmaps (after a reload).
    pub fn recount_blocks(&mut self) {
        let keys: Vec<_> = self.blocks.blocks.keys().copied().collect();
        for (a, p, b) in keys {
            let (lo, hi) = self.ports.block_range(b);
            let used = self.slot(a).map_or(0, |(_, slot)| (lo..=hi).filter(|&x| !self.is_free(slot, p, x)).count());
            if let Some(blk) = self.blocks.blocks.get_mut(&(a, p, b)) {
                blk.used = used as u16;
            }
        }
    }

    /// Blocks held (dynamic mode) and subscribers holding them.
    pub fn block_census(&self) -> (usize, usize) {
        (self.blocks.blocks.len(), self.blocks.subscriber_count())
    }

    /// Block invariants, for tests and fuzzing: every block in its owner's
    /// list and owned by this shard; no block listed for two subscribers;
    /// each block's count of ports in use matches the port bitmaps.
    pub fn check_blocks(&self) -> Result<(), String> {
        let mut listed = 0;
        for (&(p, sub), list) in &self.blocks.subs {
            for &(a, b) in list {
                listed += 1;
                let blk = self.blocks.blocks.get(&(a, p, b)).ok_or(format!("{a} block {b} listed but not held"))?;
                if blk.sub != sub {
                    return Err(format!("{a} block {b} listed for two subscribers"));
                }
            }
        }
        if listed != self.blocks.blocks.len() {
            return Err(format!("{} blocks held, {listed} listed", self.blocks.blocks.len()));
        }
        for (&(a, p, b), blk) in &self.blocks.blocks {
            let (lo, hi) = self.ports.block_range(b);
            if !self.owns(lo) {
                return Err(format!("{a} block {b} is another shard's"));
            }
            let Some((_, slot)) = self.slot(a) else { continue };
            let used = (lo..=hi).filter(|&x| !self.is_free(slot, p, x)).count();
            if used != blk.used as usize {
                return Err(format!("{a} block {b}: {} ports counted, {used} in use", blk.used));
            }
        }
        Ok(())
    }
}

/// The first port in `lo..=hi` whose bit in `bm` is clear.
fn first_free(bm: &[u64; WORDS], lo: u16, hi: u16) -> Option<u16> {
    let (wlo, whi) = (lo as usize >> 6, hi as usize >> 6);
    for (w, word) in bm.iter().enumerate().take(whi + 1).skip(wlo) {
        let mut mask = u64::MAX;
        if w == wlo {
            mask &= u64::MAX << (lo & 63);
        }
        if w == whi {
            mask &= u64::MAX >> (63 - (hi & 63));
        }
        let free = !word & mask;
        if free != 0 {
            return Some((w * 64 + free.trailing_zeros() as usize) as u16);
        }
    }
    None
}

/// A stable hash of a client address (FNV-1a over its bytes): picks its paired address.
fn hash_client(a: Ipv6Addr) -> u64 {
    a.octets().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(addrs: &[&str], shard: usize, shards: usize) -> Pool4 {
        let addrs = addrs.iter().map(|a| PoolAddr::new(a.parse().unwrap())).collect();
        Pool4::new(vec![PoolGroup { clients: None, addrs }], shard, shards)
    }
    fn c(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    // RFC 6146 3.5.1.1: the client's port is kept when free.
    #[test]
    fn rfc6146_3_5_1_1_port_preserved() {
        let mut p = pool(&["203.0.113.1"], 0, 1);
        assert_eq!(
            p.allocate(Proto::Udp, c("2001:db8::1"), 5000, None, 0),
            Some(("203.0.113.1".parse().unwrap(), 5000))
        );
        // Taken now: another client gets another port, still in 1024-65535.
        let (_, port) = p.allocate(Proto::Udp, c("2001:db8::2"), 5000, None, 0).unwrap();
        assert_ne!(port, 5000);
        assert!(port >= 1024);
        // Protocols have separate spaces.
        assert_eq!(p.allocate(Proto::Tcp, c("2001:db8::2"), 5000, None, 0).unwrap().1, 5000);
    }

    // RFC 6146 3.5.1.1: a port below 1024 is replaced by one below 1024.
    #[test]
    fn rfc6146_3_5_1_1_range_class_kept() {
        let mut p = pool(&["203.0.113.1"], 0, 1);
        p.reserve(Proto::Tcp, "203.0.113.1".parse().unwrap(), 80);
        let (_, port) = p.allocate(Proto::Tcp, c("2001:db8::1"), 80, None, 0).unwrap();
        assert!(port < 1024 && port != 80, "{port}");
    }

    // Configured port ranges are honoured.
    #[test]
    fn port_ranges_honoured_and_exhaustion() {
        let a: Ipv4Addr = "203.0.113.1".parse().unwrap();
        let mut addr = PoolAddr::new(a);
        addr.ports[Proto::Udp as usize] = PortRange { lo: 40000, hi: 40009 };
        let mut p = Pool4::new(vec![PoolGroup { clients: None, addrs: vec![addr] }], 0, 1);
        let mut got = vec![];
        for i in 0..10 {
            let (_, port) = p.allocate(Proto::Udp, c("2001:db8::1"), 1000 + i, None, 0).unwrap();
            assert!((40000..=40009).contains(&port));
            got.push(port);
        }
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 10);
        assert_eq!(p.allocate(Proto::Udp, c("2001:db8::1"), 1, None, 0), None, "exhausted");
        assert_eq!(p.in_use(Proto::Udp, a), 10);
        p.release(Proto::Udp, a, 40003, 0);
        assert_eq!(p.allocate(Proto::Udp, c("2001:db8::9"), 1, None, 0), Some((a, 40003)));
    }

    // RFC 4787 REQ-2 ("paired"): the same client gets the same address.
    #[test]
    fn paired_address_for_a_client() {
        let mut p = pool(&["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"], 0, 1);
        let first = p.allocate(Proto::Udp, c("2001:db8::77"), 1000, None, 0).unwrap().0;
        for port in 1001..1100 {
            assert_eq!(p.allocate(Proto::Udp, c("2001:db8::77"), port, None, 0).unwrap().0, first);
        }
        let other = *p.groups()[0].addrs.iter().find(|a| a.addr != first).map(|a| &a.addr).unwrap();
        assert_eq!(p.allocate(Proto::Udp, c("2001:db8::77"), 2000, Some(other), 0).unwrap().0, other, "prefer wins");
    }

    // A client prefix selects its own group of addresses.
    #[test]
    fn client_prefix_selects_pool() {
        let g1 = PoolGroup {
            clients: Some(Net6 { addr: c("2001:db8:a::"), len: 48 }),
            addrs: vec![PoolAddr::new("203.0.113.10".parse().unwrap())],
        };
        let g2 = PoolGroup { clients: None, addrs: vec![PoolAddr::new("203.0.113.20".parse().unwrap())] };
        let mut p = Pool4::new(vec![g1, g2], 0, 1);
        assert_eq!(
            p.allocate(Proto::Tcp, c("2001:db8:a:1::5"), 1, None, 0).unwrap().0,
            "203.0.113.10".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(
            p.allocate(Proto::Tcp, c("2001:db8:b::5"), 1, None, 0).unwrap().0,
            "203.0.113.20".parse::<Ipv4Addr>().unwrap()
        );
    }

    // Shards never hand out each other's ports.
    #[test]
    fn shards_own_disjoint_ports() {
        let mut seen = std::collections::HashSet::new();
        for shard in 0..4 {
            let mut p = pool(&["203.0.113.1"], shard, 4);
            for i in 0..300u16 {
                let (_, port) = p.allocate(Proto::Udp, c("2001:db8::1"), 3000 + i, None, 0).unwrap();
                assert_eq!(shard_of_port(port, 4), shard);
                assert!(seen.insert(port), "port {port} handed out twice");
            }
        }
    }

    // Issue 18: an address listed twice (here in two groups) is one set of
    // ports: every allocation of it is a distinct port, never one port twice.
    #[test]
    fn duplicate_address_never_hands_out_a_port_twice() {
        let a = PoolAddr::new("203.0.113.5".parse().unwrap());
        let g = |clients| PoolGroup { clients, addrs: vec![a.clone(), a.clone()] };
        let mut p = Pool4::new(vec![g(None), g(None)], 0, 1);
        let client: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut got = std::collections::HashSet::new();
        for _ in 0..1000 {
            let (addr, port) = p.allocate(Proto::Udp, client, 5000, None, 0).expect("a port");
            assert!(got.insert((addr, port)), "{addr}:{port} handed out twice");
        }
    }
}
