//! Next hops for the AF_XDP dataplane: where a translated packet goes, as
//! an Ethernet frame (out which interface, from which MAC to which), or to
//! the kernel when nat64d cannot tell (no route, a local destination, a
//! neighbour not resolved yet: the kernel resolves it, and the next mirror
//! of its tables has the answer).
//!
//! [`Hops`] is a plain snapshot of the kernel's links, routes (main and
//! local tables) and neighbours, looked up without allocation: routes by
//! longest prefix through one hash map per prefix length present, so a full
//! BGP table costs a few dozen probes, not a scan. [`mirror`] keeps it
//! current from rtnetlink: a fresh dump when the kernel announces a link,
//! route or neighbour change (debounced) and every [`REFRESH`] regardless;
//! workers pick up a new snapshot between batches.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

fn map<K, V>() -> Map<K, V> {
    HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x6e61_7436_3464))
}

/// A full re-dump at least this often, notifications or not (a lost
/// notification, a socket buffer overrun, cannot leave a stale table long).
pub const REFRESH: Duration = Duration::from_secs(5);

/// An interface a frame can leave by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub mac: [u8; 6],
    pub mtu: u32,
}

/// A route: through a gateway, or on-link (`gateway: None`); `local` for the
/// host's own and broadcast addresses (the kernel's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub local: bool,
    pub metric: u32,
}

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    Frame {
        ifindex: u32,
        src: [u8; 6],
        dst: [u8; 6],
    },
    /// Hand it to the kernel, for this reason.
    Kernel(Why),
}

/// Why a packet goes to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    NoRoute,
    Local,
    /// The next hop's MAC is not known (yet).
    Unresolved,
    /// The route leaves by an interface without Ethernet addresses.
    NotEthernet,
}

/// Routes of one family, by prefix length, longest first.
#[derive(Debug, Clone, Default)]
struct Table<const N: usize> {
    by_len: Vec<(u8, Map<[u8; N], Route>)>,
}

fn masked<const N: usize>(a: [u8; N], len: u8) -> [u8; N] {
    let mut m = a;
    for (i, b) in m.iter_mut().enumerate() {
        let have = (len as usize).saturating_sub(i * 8).min(8);
        *b &= if have == 0 { 0 } else { 0xffu8 << (8 - have) };
    }
    m
}

impl<const N: usize> Table<N> {
    fn insert(&mut self, dst: [u8; N], len: u8, r: Route) {
        let len = len.min(N as u8 * 8);
        let i = match self.by_len.iter().position(|(l, _)| *l <= len) {
            Some(i) if self.by_len[i].0 == len => i,
            Some(i) => {
                self.by_len.insert(i, (len, map()));
                i
            }
            None => {
                self.by_len.push((len, map()));
                self.by_len.len() - 1
            }
        };
        let slot = self.by_len[i].1.entry(masked(dst, len)).or_insert(r);
        // Equal prefixes: the local table's entry, else the lower metric.
        if (r.local && !slot.local) || (r.local == slot.local && r.metric < slot.metric) {
            *slot = r;
        }
    }

    fn lookup(&self, dst: [u8; N]) -> Option<&Route> {
        self.by_len.iter().find_map(|(len, m)| m.get(&masked(dst, *len)))
    }
}

/// A snapshot of the kernel's links, routes and neighbours.
#[derive(Debug, Clone, Default)]
pub struct Hops {
    links: Map<u32, Link>,
    v4: Table<4>,
    v6: Table<16>,
    neigh: Map<(u32, IpAddr), [u8; 6]>,
}

impl Hops {
    pub fn new() -> Hops {
        Hops { links: map(), v4: Table::default(), v6: Table::default(), neigh: map() }
    }

    pub fn add_link(&mut self, ifindex: u32, link: Link) {
        self.links.insert(ifindex, link);
    }

    pub fn add_route(&mut self, dst: IpAddr, len: u8, r: Route) {
        match dst {
            IpAddr::V4(a) => self.v4.insert(a.octets(), len, r),
            IpAddr::V6(a) => self.v6.insert(a.octets(), len, r),
        }
    }

    pub fn add_neighbour(&mut self, ifindex: u32, ip: IpAddr, mac: [u8; 6]) {
        self.neigh.insert((ifindex, ip), mac);
    }

    pub fn link(&self, ifindex: u32) -> Option<Link> {
        self.links.get(&ifindex).copied()
    }

    /// The route for `dst`, longest prefix first.
    pub fn route(&self, dst: IpAddr) -> Option<Route> {
        match dst {
            IpAddr::V4(a) => self.v4.lookup(a.octets()).copied(),
            IpAddr::V6(a) => self.v6.lookup(a.octets()).copied(),
        }
    }

    /// Where a packet to `dst` goes.
    pub fn lookup(&self, dst: IpAddr) -> Hop {
        let Some(r) = self.route(dst) else { return Hop::Kernel(Why::NoRoute) };
        if r.local {
            return Hop::Kernel(Why::Local);
        }
        let Some(link) = self.links.get(&r.oif) else { return Hop::Kernel(Why::NotEthernet) };
        let next = r.gateway.unwrap_or(dst);
        match self.neigh.get(&(r.oif, next)) {
            Some(&dst) => Hop::Frame { ifindex: r.oif, src: link.mac, dst },
            None => Hop::Kernel(Why::Unresolved),
        }
    }

    /// (links, routes, neighbours), for the log.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let routes = self.v4.by_len.iter().map(|(_, m)| m.len()).sum::<usize>()
            + self.v6.by_len.iter().map(|(_, m)| m.len()).sum::<usize>();
        (self.links.len(), routes, self.neigh.len())
    }
}

/// The published snapshot and its generation (workers compare the
/// generation once per batch and take a new `Arc` only when it moved).
#[derive(Debug, Default)]
pub struct Shared {
    current: Mutex<Arc<Hops>>,
    /// The pool4 networks the program steers (for hairpinning), which a
    /// reload may extend; published under the same generation.
    pool4: Mutex<Arc<Vec<crate::addr::Net4>>>,
    generation: AtomicU64,
}

impl Shared {
    pub fn new(h: Hops) -> Shared {
        Shared { current: Mutex::new(Arc::new(h)), ..Default::default() }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self) -> Arc<Hops> {
        Arc::clone(&self.current.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn pool4(&self) -> Arc<Vec<crate::addr::Net4>> {
        Arc::clone(&self.pool4.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_pool4(&self, nets: Vec<crate::addr::Net4>) {
        *self.pool4.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(nets);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn publish(&self, h: Hops) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(h);
        self.generation.fetch_add(1, Ordering::Release);
    }
}

// ---- the netlink mirror ----------------------------------------------------

use futures_util::stream::{StreamExt, TryStreamExt};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use rtnetlink::{Handle, MulticastGroup, RouteMessageBuilder};

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

async fn dump(h: &Handle) -> Result<Hops, rtnetlink::Error> {
    let mut hops = Hops::new();
    let mut links = h.link().get().execute();
    while let Some(m) = links.try_next().await? {
        let (mut mac, mut mtu) = (None, 1500);
        for a in &m.attributes {
            match a {
                LinkAttribute::Address(b) if b.len() == 6 => mac = <[u8; 6]>::try_from(&b[..]).ok(),
                LinkAttribute::Mtu(v) => mtu = *v,
                _ => {}
            }
        }
        // Loopback has an all-zero address: not an Ethernet way out.
        if let Some(mac) = mac.filter(|m| *m != [0; 6]) {
            hops.add_link(m.header.index, Link { mac, mtu });
        }
    }
    let requests = [
        RouteMessageBuilder::<Ipv4Addr>::new().table_id(0).build(),
        RouteMessageBuilder::<Ipv6Addr>::new().table_id(0).build(),
    ];
    for req in requests {
        let mut routes = h.route().get(req).execute();
        while let Some(m) = routes.try_next().await? {
            let local = match m.header.kind {
                RouteType::Unicast => false,
                RouteType::Local | RouteType::Broadcast | RouteType::Anycast => true,
                _ => continue,
            };
            let mut table = u32::from(m.header.table);
            let (mut dst, mut gateway, mut oif, mut metric) = (None, None, 0, 0);
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(d) => dst = route_ip(d),
                    RouteAttribute::Gateway(g) => gateway = route_ip(g),
                    RouteAttribute::Oif(i) => oif = *i,
                    RouteAttribute::Table(t) => table = *t,
                    RouteAttribute::Priority(p) => metric = *p,
                    // ECMP: the first live next hop (nat64d does not spread
                    // flows over several next hops itself).
                    RouteAttribute::MultiPath(hops) if oif == 0 => {
                        if let Some(nh) = hops.first() {
                            oif = nh.interface_index;
                            gateway = nh.attributes.iter().find_map(|a| match a {
                                RouteAttribute::Gateway(g) => route_ip(g),
                                _ => None,
                            });
                        }
                    }
                    _ => {}
                }
            }
            if table != 254 && table != 255 {
                continue;
            }
            let dst = dst.unwrap_or(match m.header.address_family {
                rtnetlink::packet_route::AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            });
            hops.add_route(dst, m.header.destination_prefix_length, Route { gateway, oif, local, metric });
        }
    }
    let mut neigh = h.neighbours().get().execute();
    while let Some(m) = neigh.try_next().await? {
        if !matches!(
            m.header.state,
            NeighbourState::Reachable
                | NeighbourState::Stale
                | NeighbourState::Delay
                | NeighbourState::Probe
                | NeighbourState::Permanent
                | NeighbourState::Noarp
        ) {
            continue;
        }
        let (mut ip, mut mac) = (None, None);
        for a in &m.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => ip = Some(IpAddr::V6(*a)),
                NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => mac = <[u8; 6]>::try_from(&b[..]).ok(),
                _ => {}
            }
        }
        if let (Some(ip), Some(mac)) = (ip, mac) {
            hops.add_neighbour(m.header.ifindex, ip, mac);
        }
    }
    Ok(hops)
}

/// The first snapshot, before any worker starts (a dump the kernel refuses
/// is a start-up error).
pub fn first() -> Result<Shared, String> {
    let rt = runtime()?;
    rt.block_on(async {
        let (conn, h, _) = rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
        tokio::spawn(conn);
        let hops = dump(&h).await.map_err(|e| format!("netlink: cannot read the routing tables: {e}"))?;
        Ok(Shared::new(hops))
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("netlink: cannot start its runtime: {e}"))
}

/// Keep `shared` current until `stop`: a dump 20 ms after a burst of
/// notifications, and every [`REFRESH`].
pub fn mirror(shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return tracing::error!("next hops: {e}; the table stays as it was at start"),
    };
    rt.block_on(async move {
        let groups =
            [MulticastGroup::Link, MulticastGroup::Neigh, MulticastGroup::Ipv4Route, MulticastGroup::Ipv6Route];
        let (conn, h, mut events) = match rtnetlink::new_multicast_connection(&groups) {
            Ok(c) => c,
            Err(e) => return tracing::error!("next hops: cannot subscribe to netlink changes: {e}"),
        };
        tokio::spawn(conn);
        let mut last = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            // Wait for a change (or the refresh, or a look at the stop flag).
            let woke = tokio::time::timeout(Duration::from_millis(250), events.next()).await;
            let changed = matches!(woke, Ok(Some(_)));
            if !changed && last.elapsed() < REFRESH {
                continue;
            }
            // Debounce: let the rest of a burst arrive, then one dump.
            tokio::time::sleep(Duration::from_millis(20)).await;
            while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, events.next()).await {}
            match dump(&h).await {
                Ok(hops) => shared.publish(hops),
                Err(e) => {
                    tracing::warn!("next hops: netlink dump failed: {e}");
                }
            }
            last = std::time::Instant::now();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const MAC_GW: [u8; 6] = [2, 0, 0, 0, 0, 0x1];
    const MAC_H: [u8; 6] = [2, 0, 0, 0, 0, 0x2];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn route(gw: Option<&str>, oif: u32) -> Route {
        Route { gateway: gw.map(ip), oif, local: false, metric: 0 }
    }

    fn lab() -> Hops {
        let mut h = Hops::new();
        h.add_link(2, Link { mac: MAC_A, mtu: 1500 });
        h.add_route(ip("0.0.0.0"), 0, route(Some("198.51.100.1"), 2));
        h.add_route(ip("198.51.100.0"), 24, route(None, 2));
        h.add_route(ip("198.51.100.77"), 32, Route { local: true, ..route(None, 2) });
        h.add_route(ip("2001:db8:1::"), 64, route(None, 2));
        h.add_neighbour(2, ip("198.51.100.1"), MAC_GW);
        h.add_neighbour(2, ip("198.51.100.9"), MAC_H);
        h
    }

    // Longest prefix wins: an on-link host goes straight to its own MAC;
    // anything else by the default route to the gateway's MAC.
    #[test]
    fn longest_prefix_then_neighbour() {
        let h = lab();
        assert_eq!(h.lookup(ip("198.51.100.9")), Hop::Frame { ifindex: 2, src: MAC_A, dst: MAC_H });
        assert_eq!(h.lookup(ip("192.0.2.1")), Hop::Frame { ifindex: 2, src: MAC_A, dst: MAC_GW });
    }

    // Issue 20: a neighbour not resolved yet goes to the kernel (which
    // resolves it); so do local addresses and destinations with no route.
    #[test]
    fn unresolved_local_and_unrouted_go_to_the_kernel() {
        let h = lab();
        assert_eq!(h.lookup(ip("198.51.100.10")), Hop::Kernel(Why::Unresolved));
        assert_eq!(h.lookup(ip("198.51.100.77")), Hop::Kernel(Why::Local));
        assert_eq!(h.lookup(ip("2001:db8:2::1")), Hop::Kernel(Why::NoRoute));
        assert_eq!(h.lookup(ip("2001:db8:1::5")), Hop::Kernel(Why::Unresolved));
    }

    // Of two routes to the same prefix the lower metric is used, whatever the
    // order they arrive in; a route out of an interface without a MAC (a
    // TUN, loopback) cannot be framed.
    #[test]
    fn metric_breaks_ties_and_non_ethernet_goes_to_kernel() {
        for order in [[5, 1], [1, 5]] {
            let mut h = lab();
            h.add_link(3, Link { mac: MAC_H, mtu: 1500 });
            for m in order {
                let oif = if m == 1 { 3 } else { 2 };
                h.add_route(ip("203.0.113.0"), 24, Route { metric: m, ..route(Some("198.51.100.1"), oif) });
            }
            h.add_neighbour(3, ip("198.51.100.1"), MAC_GW);
            assert_eq!(h.lookup(ip("203.0.113.5")), Hop::Frame { ifindex: 3, src: MAC_H, dst: MAC_GW });
        }
        let mut h = lab();
        h.add_route(ip("203.0.113.0"), 24, route(None, 9));
        assert_eq!(h.lookup(ip("203.0.113.5")), Hop::Kernel(Why::NotEthernet));
    }

    // Host bits in a route's destination do not matter (the kernel sends
    // canonical prefixes, but the lookup must not depend on it).
    #[test]
    fn prefixes_are_masked() {
        let mut h = Hops::new();
        h.add_link(2, Link { mac: MAC_A, mtu: 1500 });
        h.add_route(ip("2001:db8:64::ffff"), 48, route(None, 2));
        h.add_neighbour(2, ip("2001:db8:64:1::1"), MAC_H);
        assert_eq!(h.lookup(ip("2001:db8:64:1::1")), Hop::Frame { ifindex: 2, src: MAC_A, dst: MAC_H });
        assert_eq!(h.sizes(), (1, 1, 1));
    }
}
