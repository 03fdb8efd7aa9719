//! How pool4 ports are handed to subscribers ([`Ports`], `[nat.ports]`):
//!
//! - `session` (the default): each new BIB entry takes a port of its own
//!   (RFC 6146 3.5.1.1); logging it means a record per entry.
//! - `blocks` (RFC 7753 port-set allocation): a subscriber (one IPv6
//!   address, or the prefix of `subscriber` bits around it, since a VM
//!   rotates privacy addresses inside its /64) gets a block of
//!   `block_size` consecutive ports on one pool4 address at its first flow,
//!   per protocol; its flows take ports only inside its blocks; a full
//!   block brings another, up to `max_blocks`; a block goes back to the
//!   pool only `hold` after its last session ended, so the next owner's
//!   traffic cannot be blamed on the previous one. One record per block.
//! - `deterministic` (RFC 7422): a subscriber's address and block follow
//!   from a formula over its pool4 group's `clients` prefix: nothing to
//!   log, and the same answer on every gateway, restart and standby with
//!   the same configuration.
//!
//! Blocks are aligned: block `b` is ports `b*size ..= b*size + size - 1`,
//! and only blocks wholly inside 1024-65535 and every protocol's range of
//! the address are used (ports below 1024 stay for static entries). A
//! shard owns the blocks whose number modulo the shard count is its index,
//! and a subscriber's flows all go to one shard, so an inbound packet's
//! shard follows from its destination port, and a subscriber's blocks are
//! all one shard's business.

use super::pool4::PoolGroup;
use super::{Millis, Proto};
use crate::addr::Net6;
use std::net::{Ipv4Addr, Ipv6Addr};

/// How ports are allocated (see the module text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortMode {
    Session,
    Blocks,
    Deterministic,
}

/// `[nat.ports]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ports {
    pub mode: PortMode,
    /// Ports per block (blocks and deterministic modes).
    pub block_size: u16,
    /// Blocks one subscriber may hold per protocol (blocks mode).
    pub max_blocks: u16,
    /// Prefix length that makes a subscriber: 128 for one address, 64 for a /64.
    pub subscriber: u8,
    /// Seconds a block stays with its subscriber after its last session ended.
    #[serde(with = "super::secs")]
    pub hold: Millis,
}

/// The least and most ports a block may have.
pub const BLOCK_MIN: u16 = 8;
pub const BLOCK_MAX: u16 = 32768;
/// The lowest port a block may use.
pub const BLOCK_FLOOR: u16 = 1024;

impl Default for Ports {
    fn default() -> Self {
        Ports { mode: PortMode::Session, block_size: 512, max_blocks: 8, subscriber: 64, hold: 120_000 }
    }
}

impl Ports {
    /// The unit of port ownership between shards: 64-port words per
    /// session, a block otherwise.
    pub fn unit(&self) -> u16 {
        match self.mode {
            PortMode::Session => 64,
            _ => self.block_size.max(1),
        }
    }

    pub fn uses_blocks(&self) -> bool {
        self.mode != PortMode::Session
    }

    /// The subscriber `a` belongs to, as a prefix.
    pub fn subscriber_of(&self, a: Ipv6Addr) -> Net6 {
        let len = self.subscriber.min(128);
        Net6 { addr: Ipv6Addr::from(u128::from(a) & mask(len)), len }
    }

    /// The ports of block `b`.
    pub fn block_range(&self, b: u16) -> (u16, u16) {
        let lo = b as u32 * self.block_size as u32;
        (lo as u16, (lo + self.block_size as u32 - 1).min(65535) as u16)
    }

    /// The block a port lies in.
    pub fn block_of(&self, port: u16) -> u16 {
        port / self.block_size.max(1)
    }

    /// Checks of the section on its own; the error names the key.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(BLOCK_MIN..=BLOCK_MAX).contains(&self.block_size) {
            return Err((
                "nat.ports.block_size",
                format!("{} ports; a block has {BLOCK_MIN} to {BLOCK_MAX}", self.block_size),
            ));
        }
        if self.max_blocks == 0 {
            return Err(("nat.ports.max_blocks", "0 blocks would refuse every flow; at least 1".into()));
        }
        if self.subscriber == 0 || self.subscriber > 128 {
            return Err(("nat.ports.subscriber", format!("/{} is not a prefix length (1-128)", self.subscriber)));
        }
        if self.hold > super::DAY {
            return Err(("nat.ports.hold", format!("{} s is more than a day", self.hold / 1000)));
        }
        Ok(())
    }
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len.min(128) as u32)
    }
}

/// The shard that owns `port` when ports are owned in `unit`s.
#[inline]
pub fn shard_of(port: u16, unit: u16, shards: usize) -> usize {
    (port / unit.max(1)) as usize % shards.max(1)
}

/// Block numbers usable on every address of `g` (wholly inside 1024-65535
/// and every protocol's range of every address), in order.
pub fn usable_blocks(g: &PoolGroup, p: &Ports) -> Vec<u16> {
    let mut lo = BLOCK_FLOOR as u32;
    let mut hi = 65535u32;
    for a in &g.addrs {
        for r in a.ports {
            lo = lo.max(r.lo as u32);
            hi = hi.min(r.hi as u32);
        }
    }
    let size = p.block_size.max(1) as u32;
    (lo.div_ceil(size)..=65535 / size)
        .filter(|b| b * size >= lo && b * size + size - 1 <= hi)
        .map(|b| b as u16)
        .collect()
}

/// RFC 7422 deterministic mapping for one pool4 group: subscriber `i` of
/// the group's `clients` prefix (in address order, `subscriber` bits
/// each) holds block `usable[i % per_addr]` on address `i / per_addr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetMap {
    pub clients: Net6,
    pub sub_len: u8,
    pub size: u16,
    pub usable: Vec<u16>,
    pub addrs: Vec<Ipv4Addr>,
}

impl DetMap {
    /// The mapping of `g`, or why the group cannot have one, with the numbers.
    pub fn new(g: &PoolGroup, p: &Ports) -> Result<DetMap, String> {
        let Some(clients) = g.clients else {
            return Err("deterministic mapping needs each pool4 entry to name its clients \
                 (pool4 = [{ net = \"203.0.113.0/28\", clients = \"2001:db8:100::/56\" }])"
                .into());
        };
        if p.subscriber < clients.len {
            return Err(format!("subscribers of /{} are larger than the clients prefix {clients}", p.subscriber));
        }
        let usable = usable_blocks(g, p);
        let addrs: Vec<Ipv4Addr> = g.addrs.iter().map(|a| a.addr).collect();
        let m = DetMap { clients, sub_len: p.subscriber, size: p.block_size, usable, addrs };
        let subs = m.subscribers();
        let per = m.usable.len() as u128;
        let fits = per * m.addrs.len() as u128;
        if per == 0 || subs > fits {
            let need = if per == 0 { u128::MAX } else { subs.div_ceil(per) };
            return Err(format!(
                "{clients} holds {subs} subscribers of /{}; {} addresses x {per} blocks of {} ports = {fits} subscribers; \
                 it needs {} addresses, a smaller block_size, or a longer subscriber prefix",
                p.subscriber,
                m.addrs.len(),
                p.block_size,
                if need == u128::MAX { "more".to_string() } else { need.to_string() }
            ));
        }
        Ok(m)
    }

    /// Subscribers under the clients prefix (saturating at u128::MAX).
    pub fn subscribers(&self) -> u128 {
        let bits = (self.sub_len - self.clients.len) as u32;
        if bits >= 128 {
            u128::MAX
        } else {
            1u128 << bits
        }
    }

    fn index_of(&self, client: Ipv6Addr) -> Option<u128> {
        if !self.clients.contains(client) {
            return None;
        }
        let host_bits = 128 - self.sub_len as u32;
        let off = u128::from(client) - u128::from(self.clients.addr);
        Some(if host_bits >= 128 { 0 } else { off >> host_bits })
    }

    /// The address and block of `client`'s subscriber.
    pub fn map(&self, client: Ipv6Addr) -> Option<(Ipv4Addr, u16)> {
        let i = self.index_of(client)?;
        let per = self.usable.len() as u128;
        let addr = *self.addrs.get(usize::try_from(i / per).ok()?)?;
        Some((addr, self.usable[(i % per) as usize]))
    }

    /// The subscriber that holds `port` on `addr`, if the formula gives one.
    pub fn who(&self, addr: Ipv4Addr, port: u16) -> Option<Net6> {
        let a = self.addrs.iter().position(|&x| x == addr)? as u128;
        let k = self.usable.binary_search(&(port / self.size.max(1))).ok()? as u128;
        let i = a * self.usable.len() as u128 + k;
        if i >= self.subscribers() {
            return None;
        }
        let host_bits = 128 - self.sub_len as u32;
        let off = if host_bits >= 128 { 0 } else { i << host_bits };
        Some(Net6 { addr: Ipv6Addr::from(u128::from(self.clients.addr) + off), len: self.sub_len })
    }
}

/// A block as listed: (protocol, pool4 address, first port, last port).
pub type BlockHolding = (Proto, Ipv4Addr, u16, u16);

/// One block a subscriber holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Block {
    pub sub: u128,
    /// Ports of the block in use.
    pub used: u16,
    /// Set while the block has no port in use: when it returns to the pool.
    pub held_until: Option<Millis>,
}

/// A (pool4 address, protocol, block number) key.
pub(super) type BlockKey = (Ipv4Addr, Proto, u16);

/// Dynamic blocks of one shard.
#[derive(Debug, Clone, Default)]
pub(super) struct BlockTable {
    pub blocks: std::collections::HashMap<BlockKey, Block>,
    /// (protocol, subscriber prefix) → its blocks, oldest first.
    pub subs: std::collections::HashMap<(Proto, u128), Vec<(Ipv4Addr, u16)>>,
    /// Blocks waiting out their hold time, in deadline order.
    pub held: std::collections::VecDeque<(Millis, BlockKey)>,
}

impl BlockTable {
    /// Subscribers holding at least one block (any protocol).
    pub fn subscriber_count(&self) -> usize {
        let mut s: Vec<u128> = self.subs.keys().map(|k| k.1).collect();
        s.sort_unstable();
        s.dedup();
        s.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::pool4::{PoolAddr, PoolGroup};

    fn group(n: u8, clients: &str) -> PoolGroup {
        PoolGroup {
            clients: Some(clients.parse().unwrap()),
            addrs: (0..n).map(|i| PoolAddr::new(Ipv4Addr::new(203, 0, 113, i))).collect(),
        }
    }

    fn det(size: u16, sub: u8) -> Ports {
        Ports { mode: PortMode::Deterministic, block_size: size, subscriber: sub, ..Ports::default() }
    }

    // Blocks lie wholly in 1024-65535: 512-port blocks are 2..=127 (126 of them).
    #[test]
    fn usable_blocks_stay_above_1023_and_inside_ranges() {
        let g = group(1, "2001:db8::/56");
        let u = usable_blocks(&g, &det(512, 64));
        assert_eq!((u.len(), u[0], *u.last().unwrap()), (126, 2, 127));
        let u = usable_blocks(&g, &det(1000, 64));
        assert_eq!(
            (u[0], *u.last().unwrap()),
            (2, 64),
            "block 1 (1000-1999) starts below 1024, block 65 ends past 65535"
        );
    }

    // RFC 7422 section 2: the mapping is a formula, and the same formula
    // read backwards names the subscriber for a given address and port.
    #[test]
    fn rfc7422_deterministic_mapping_round_trips() {
        let g = group(4, "2001:db8:100::/56");
        let m = DetMap::new(&g, &det(256, 64)).unwrap();
        assert_eq!(m.subscribers(), 256);
        let per = m.usable.len();
        assert_eq!(per, 252, "blocks 4..=255 of 256 ports");
        let mut seen = std::collections::HashSet::new();
        for i in 0..256u128 {
            let client = Ipv6Addr::from(u128::from("2001:db8:100::".parse::<Ipv6Addr>().unwrap()) + (i << 64) + 0x1234);
            let (addr, b) = m.map(client).unwrap();
            assert!(seen.insert((addr, b)), "two subscribers share {addr} block {b}");
            let (lo, hi) = det(256, 64).block_range(b);
            for port in [lo, hi] {
                assert_eq!(m.who(addr, port), Some(Ports { subscriber: 64, ..Ports::default() }.subscriber_of(client)));
            }
        }
        assert_eq!(m.map("2001:db8:200::1".parse().unwrap()), None, "outside the clients prefix");
        assert_eq!(m.who(Ipv4Addr::new(203, 0, 113, 3), 300), None, "below the blocks");
    }

    // RFC 7422 section 2 (capacity): a configuration that cannot give every
    // subscriber a block is refused with the arithmetic.
    #[test]
    fn rfc7422_capacity_is_checked_with_the_numbers() {
        let e = DetMap::new(&group(2, "2001:db8:100::/48"), &det(512, 64)).unwrap_err();
        assert!(
            e.contains("65536 subscribers")
                && e.contains("2 addresses x 126 blocks")
                && e.contains("needs 521 addresses"),
            "{e}"
        );
        let e = DetMap::new(&PoolGroup { clients: None, ..group(1, "::/0") }, &det(512, 64)).unwrap_err();
        assert!(e.contains("clients"), "{e}");
    }
}
