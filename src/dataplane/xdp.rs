//! The AF_XDP dataplane: frames straight from the interfaces' receive
//! queues, translated in place in their UMEM frame, framed for the next hop
//! and sent from the same frame; no trip through a TUN device and no second
//! pass through the kernel's IP stack.
//!
//! Per queue one worker owns a UMEM and one AF_XDP socket per interface
//! (the IPv6 side and the IPv4 side; one socket when they are the same
//! interface). The XDP program ([`crate::sys::bpf::steering_program`])
//! sends it only frames to pool6 and pool4; the kernel keeps the rest.
//!
//! Where a translated packet goes comes from [`super::hops`]: an Ethernet
//! frame out of the route's interface to the neighbour's MAC, or, when the
//! neighbour is not resolved (or the route is not an Ethernet one), the
//! packet goes to the kernel through a raw socket and the kernel resolves
//! it. ICMP errors the translator makes go back out of the interface and to
//! the MAC the offending frame came from. IPv6 to a pool4 address embedded
//! in pool6 (hairpinning, RFC 6146 3.8) is translated twice, in the frame.
//!
//! The worker loop shares [`super::worker`]'s core (counters, publication,
//! the expiry sweep, held SYNs): only the packet I/O differs.

use super::hops::{Hop, Hops, Shared};
use super::worker::{Core, WorkerSlot, WorkerStats, POLL_MS};
use crate::addr::Net4;
use crate::nat::Nat;
use crate::sys::xsk::{self, RawIp, Socket, Umem, FRAME};
use crate::xlat::{Family, Mapper, Translator, Verdict, XlatConfig, OUT_BUF_LEN};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Frames a received frame's data starts after (the kernel's XDP headroom);
/// copies are written at the same place, so 4to6 in place has room to grow.
pub const HEADROOM: usize = 256;
/// Frames received per socket per round.
const BATCH: usize = 64;
/// Frames never given to the fill rings: kept for copies (fragments, ICMP
/// errors, held SYNs) so they do not wait for a completion.
const RESERVE: usize = 256;
const ETH: usize = 14;
/// Kicks per socket per round at most (each sends up to 32 in copy mode).
const KICKS: usize = 8;
/// The largest MTU a frame holds, with the headroom and 20 bytes to grow.
pub const MAX_MTU: u16 = 3500;

crate::counters::counters! {
    /// The AF_XDP dataplane (all zero on TUN).
    pub struct XdpStats {
        xdp_workers: "Workers on AF_XDP sockets (one per queue).",
        rx_frames: "Frames received from the AF_XDP sockets.",
        tx_frames: "Frames queued for sending on the AF_XDP sockets.",
        to_kernel: "Translated packets handed to the kernel (raw socket): next hop not resolved yet, a local destination, no Ethernet route.",
        to_kernel_errors: "Packets the kernel refused from the raw socket (lost).",
        hairpinned: "Packets translated twice (IPv6 to a pool4 address under pool6, RFC 6146 3.8).",
        tx_ring_full: "Frames dropped because a TX ring was full.",
        no_free_frame: "Copies dropped because no UMEM frame was free.",
        not_ip: "Frames too short for Ethernet and IP (dropped).",
        kernel_rx_dropped: "Frames the kernel dropped for the sockets (XDP_STATISTICS rx_dropped).",
        kernel_rx_ring_full: "Frames the kernel dropped because an RX ring was full.",
        kernel_fill_empty: "Times the kernel found a fill ring empty.",
        kernel_tx_invalid: "TX descriptors the kernel refused.",
    }
}

/// One interface's socket in a worker.
pub struct Port {
    pub ifindex: u32,
    pub socket: Socket,
    pending: bool,
}

/// What one worker runs on: its queue's UMEM and sockets.
pub struct Queue {
    pub queue: u32,
    pub umem: Umem,
    pub ports: Vec<Port>,
    /// The way to the kernel for packets it must route.
    raw: RawIp,
}

impl Queue {
    /// The UMEM and a socket on each interface's queue `queue` (the second
    /// sharing the first's UMEM).
    pub fn open(ifindexes: &[u32], queue: u32, frames: usize, copy: bool) -> io::Result<Queue> {
        let raw = RawIp::open()?;
        let umem = Umem::new(frames)?;
        let mut ports: Vec<Port> = Vec::with_capacity(ifindexes.len());
        for &ifindex in ifindexes {
            let shared_with = ports.first().map(|p| p.socket.raw_fd());
            let mut socket = Socket::open(&umem, xsk::Bind { ifindex, queue, shared_with, copy })?;
            if let Some(first) = ports.first() {
                // A shared socket runs in its UMEM owner's mode.
                socket.zero_copy = first.socket.zero_copy;
            }
            ports.push(Port { ifindex, socket, pending: false });
        }
        Ok(Queue { queue, umem, ports, raw })
    }

    pub fn zero_copy(&self) -> bool {
        self.ports.iter().all(|p| p.socket.zero_copy)
    }

    /// The kernel's refusal of zero copy on the first interface, if it refused.
    pub fn zero_copy_refused(&self) -> Option<&io::Error> {
        self.ports.first().and_then(|p| p.socket.zero_copy_refused.as_ref())
    }
}

/// Everything but the UMEM, so a frame can be borrowed from it while
/// packets are sent.
struct Out {
    ports: Vec<Port>,
    free: Vec<u64>,
    hops: Arc<Hops>,
    generation: u64,
    raw: RawIp,
    st: XdpStats,
    pool4: Arc<Vec<Net4>>,
}

fn dst_of(p: &[u8]) -> Option<IpAddr> {
    match p.first()? >> 4 {
        4 => <[u8; 4]>::try_from(p.get(16..20)?).ok().map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        6 => <[u8; 16]>::try_from(p.get(24..40)?).ok().map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        _ => None,
    }
}

fn ethertype(p: &[u8]) -> [u8; 2] {
    if p.first().is_some_and(|b| b >> 4 == 6) {
        [0x86, 0xdd]
    } else {
        [0x08, 0x00]
    }
}

impl Out {
    fn port(&self, ifindex: u32) -> Option<usize> {
        self.ports.iter().position(|p| p.ifindex == ifindex)
    }

    /// The packet at `frame[start..start + len]` (frame `base` of the UMEM,
    /// with at least ETH bytes before `start`): framed and queued on the
    /// socket of `back` (the port and the MAC pair it came with: an ICMP
    /// error goes back the way it came) or of its next hop, or handed to the
    /// kernel. The frame is the TX ring's from here, or free again.
    fn send_frame(&mut self, frame: &mut [u8], base: u64, start: usize, len: usize, back: Option<(usize, [u8; 12])>) {
        let Some(pkt) = frame.get(start..start + len) else {
            self.free.push(base);
            return;
        };
        let (port, macs) = match back {
            Some((port, m)) => {
                // The reply's destination MAC is the frame's source.
                let mut swapped = [0u8; 12];
                swapped[..6].copy_from_slice(&m[6..]);
                swapped[6..].copy_from_slice(&m[..6]);
                (Some(port), swapped)
            }
            None => match dst_of(pkt).map(|d| self.hops.lookup(d)) {
                Some(Hop::Frame { ifindex, src, dst }) => {
                    let mut m = [0u8; 12];
                    m[..6].copy_from_slice(&dst);
                    m[6..].copy_from_slice(&src);
                    (self.port(ifindex), m)
                }
                _ => (None, [0; 12]),
            },
        };
        let Some(pi) = port.filter(|_| start >= ETH) else {
            // No frame to make: the kernel routes it (and resolves the neighbour).
            self.st.to_kernel += 1;
            if self.raw.send(pkt).is_err() {
                self.st.to_kernel_errors += 1;
            }
            self.free.push(base);
            return;
        };
        let et = ethertype(pkt);
        let h = &mut frame[start - ETH..start];
        h[..12].copy_from_slice(&macs);
        h[12..].copy_from_slice(&et);
        let p = &mut self.ports[pi];
        if p.socket.tx_room() == 0 {
            self.st.tx_ring_full += 1;
            self.free.push(base);
            return;
        }
        p.socket.send(base + (start - ETH) as u64, (len + ETH) as u32);
        p.pending = true;
        self.st.tx_frames += 1;
    }

    /// A packet not in a UMEM frame (`out`: fragments, ICMP errors, held
    /// SYNs): copied into a free frame, then as [`Self::send_frame`].
    fn send_copy(&mut self, umem: &mut Umem, pkt: &[u8], back: Option<(usize, [u8; 12])>) {
        if pkt.len() + HEADROOM > FRAME {
            self.st.no_free_frame += 1;
            return;
        }
        let Some(base) = self.free.pop() else {
            self.st.no_free_frame += 1;
            return;
        };
        let Some((frame, _)) = umem.frame(base) else { return };
        frame[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(pkt);
        self.send_frame(frame, base, HEADROOM, pkt.len(), back);
    }

    fn is_pool4(&self, p: &[u8]) -> bool {
        match dst_of(p) {
            Some(IpAddr::V4(a)) => self.pool4.iter().any(|n| n.contains(a)),
            _ => false,
        }
    }

    /// Publish what was queued on each socket and start it sending: one
    /// kick per socket per round, more while copy mode's kernel stops at
    /// its batch of 32 (reaping completions between), a bounded number of
    /// times; what is still queued then is kicked again next round.
    fn kick(&mut self) -> io::Result<()> {
        for p in &mut self.ports {
            if !std::mem::take(&mut p.pending) {
                continue;
            }
            for _ in 0..KICKS {
                if p.socket.kick()? == xsk::Kick::Done {
                    break;
                }
                p.socket.complete(&mut self.free);
            }
            p.pending = p.socket.tx_pending() > 0;
        }
        Ok(())
    }

    fn any_pending(&self) -> bool {
        self.ports.iter().any(|p| p.pending)
    }

    fn reclaim(&mut self) {
        for p in &mut self.ports {
            p.socket.complete(&mut self.free);
        }
        let spare = self.free.len().saturating_sub(RESERVE);
        if spare == 0 {
            return;
        }
        // Share what is spare between the fill rings.
        let per = spare.div_ceil(self.ports.len());
        for p in &mut self.ports {
            let max = per.min(self.free.len().saturating_sub(RESERVE));
            p.socket.fill(&mut self.free, max);
        }
    }

    /// Completions back to the free list, without filling (tests).
    #[cfg(test)]
    fn reclaim_for_test(&mut self) {
        for p in &mut self.ports {
            p.socket.complete(&mut self.free);
        }
    }

    fn kernel_counters(&mut self) {
        let (mut d, mut f, mut e, mut t) = (0, 0, 0, 0);
        for p in &self.ports {
            if let Some(s) = p.socket.statistics() {
                d += s.rx_dropped;
                f += s.rx_ring_full;
                e += s.rx_fill_ring_empty_descs;
                t += s.tx_invalid_descs;
            }
        }
        (self.st.kernel_rx_dropped, self.st.kernel_rx_ring_full) = (d, f);
        (self.st.kernel_fill_empty, self.st.kernel_tx_invalid) = (e, t);
    }
}

/// Run the queue until `stop`; returns the worker's final counters.
#[allow(clippy::too_many_arguments)]
pub fn run(
    q: Queue,
    nat: &Nat,
    cfg: XlatConfig,
    stop: &AtomicBool,
    slot: &WorkerSlot,
    sweeper: bool,
    epoch: Instant,
    hops: &Shared,
) -> io::Result<WorkerStats> {
    let mut c = Core::new(cfg, nat, slot, sweeper, epoch);
    let Queue { mut umem, ports, raw, .. } = q;
    let frames = umem.frames();
    let mut o = Out {
        ports,
        // The free list never grows past the UMEM: no allocation in the loop.
        free: Vec::with_capacity(frames),
        hops: hops.get(),
        generation: hops.generation(),
        raw,
        st: XdpStats { xdp_workers: 1, ..XdpStats::default() },
        pool4: hops.pool4(),
    };
    o.free.extend((0..frames as u64).rev().map(|i| i * FRAME as u64));
    o.reclaim();
    let mut out = vec![0u8; OUT_BUF_LEN];
    let mut rx: Vec<(u64, u32)> = Vec::with_capacity(BATCH);
    let mut fds = [-1; 2];
    for (f, p) in fds.iter_mut().zip(&o.ports) {
        *f = p.socket.raw_fd();
    }
    let result = (|| {
        while !stop.load(Ordering::Relaxed) {
            if hops.generation() != o.generation {
                o.generation = hops.generation();
                o.hops = hops.get();
                o.pool4 = hops.pool4();
                follow_mtus(&mut c, &o);
            }
            let now = c.now();
            if c.due(now) {
                o.kernel_counters();
            }
            c.ws.xdp = o.st;
            {
                let (umem, o) = (&mut umem, &mut o);
                c.tick(now, &mut out, &mut |p: &[u8]| {
                    o.send_copy(umem, p, None);
                    Ok(p.len())
                })?;
            }
            o.reclaim();
            let mut got = 0;
            let map = &mut nat.at(now);
            for pi in 0..o.ports.len() {
                rx.clear();
                got += o.ports[pi].socket.receive(&mut rx, BATCH);
                for &(addr, len) in &rx {
                    frame(&mut c.x, &mut umem, &mut o, &mut out, map, pi, addr, len as usize);
                }
            }
            o.st.rx_frames += got as u64;
            o.kick()?;
            if got == 0 && !o.any_pending() {
                c.ws.xdp = o.st;
                c.quiet(now);
                xsk::wait(&fds[..o.ports.len().min(2)], POLL_MS)?;
            }
        }
        Ok(())
    })();
    o.kernel_counters();
    c.ws.xdp = o.st;
    c.finish();
    result.map(|()| c.ws)
}

/// The interfaces' MTUs, as the last mirror saw them, are the translator's
/// next-hop MTUs: a changed link MTU holds from the next batch (RFC 7915
/// 4.1 and 5.1 size their Packet Too Big and Fragmentation Needed by it).
fn follow_mtus(c: &mut Core, o: &Out) {
    let mtu = |p: Option<&Port>| p.and_then(|p| o.hops.link(p.ifindex)).map(|l| l.mtu.min(MAX_MTU as u32) as u16);
    let (Some(v6), Some(v4)) = (mtu(o.ports.first()), mtu(o.ports.last())) else { return };
    if (v6, v4) != (c.x.config().ipv6_mtu, c.x.config().ipv4_mtu) {
        c.x.set_mtus(v6, v4);
    }
}

/// One received frame: translate in place, send on (or back), or drop.
#[allow(clippy::too_many_arguments)]
fn frame<M: Mapper>(
    x: &mut Translator,
    umem: &mut Umem,
    o: &mut Out,
    out: &mut [u8],
    map: &mut M,
    pi: usize,
    addr: u64,
    len: usize,
) {
    let base = addr / FRAME as u64 * FRAME as u64;
    let Some((f, off)) = umem.frame(addr) else { return };
    if len < ETH + 20 || off + len > FRAME || off < ETH + 40 {
        o.st.not_ip += 1;
        o.free.push(base);
        return;
    }
    let mut macs = [0u8; 12];
    macs.copy_from_slice(&f[off..off + 12]);
    let mut v = x.translate_in_place(f, off + ETH, len - ETH, out, map);
    if let Verdict::Forward(fo) = v {
        if fo.in_place && fo.family == Family::V4 && o.is_pool4(&f[fo.start..fo.start + fo.len]) {
            o.st.hairpinned += 1;
            v = x.translate_in_place(f, fo.start, fo.len, out, map);
        }
    }
    match v {
        Verdict::Forward(fo) if fo.in_place => o.send_frame(f, base, fo.start, fo.len, None),
        Verdict::Forward(fo) => {
            o.free.push(base);
            for p in fo.packets(out) {
                o.send_copy(umem, p, None);
            }
        }
        Verdict::Reply { out: fo, .. } => {
            o.free.push(base);
            for p in fo.packets(out) {
                o.send_copy(umem, p, Some((pi, macs)));
            }
        }
        Verdict::Drop(_) => o.free.push(base),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::hops::{Link, Route};
    use crate::testpkt::{udp, V4, V6};
    use crate::{Prefix6052, Rfc6052Mapper};

    const MAC_VB: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const MAC_GW4: [u8; 6] = [2, 0, 0, 0, 0, 4];
    const MAC_GW6: [u8; 6] = [2, 0, 0, 0, 0, 6];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// One frame per case: (what, Ethernet payload).
    fn cases(p: &Prefix6052) -> Vec<(&'static str, Vec<u8>)> {
        let v6 = |a: &str| p.embed(a.parse().unwrap());
        let mut v4big = V4::new(ip4("192.0.2.2"), ip4("198.51.100.10"), 17, udp(53, 40000, &[7; 1400]));
        v4big.df = false;
        let mut expiring = V6::new(v6("198.51.100.10"), v6("192.0.2.2"), 17, udp(40000, 53, b"x"));
        expiring.hop = 1;
        vec![
            // RFC 7915 5.1, forwarded in the frame to the IPv4 default gateway's MAC.
            ("6to4 in place", V6::new(v6("198.51.100.10"), v6("192.0.2.2"), 17, udp(40000, 53, b"q")).build()),
            // RFC 7915 4.1, in place, to the IPv6 next hop.
            ("4to6 in place", V4::new(ip4("192.0.2.2"), ip4("198.51.100.10"), 17, udp(53, 40000, b"a")).build()),
            // RFC 7915 4 (lowest-ipv6-mtu): fragments, copied into free frames.
            ("4to6 fragmented", v4big.build()),
            // RFC 7915 5.1: hop limit 1 expires here; the error goes back the way it came.
            ("time exceeded", expiring.build()),
            // RFC 6146 3.8: to a pool4 address under pool6: translated twice.
            ("hairpin", V6::new(v6("198.51.100.10"), v6("203.0.113.5"), 17, udp(40000, 53, b"h")).build()),
            // On-link, no neighbour entry: handed to the kernel.
            ("unresolved", V6::new(v6("198.51.100.10"), v6("198.18.0.1"), 17, udp(40000, 53, b"k")).build()),
        ]
    }

    fn ip4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    // The per-packet path of the AF_XDP worker allocates nothing (issue
    // 20): frames translated in place and queued for TX, fragments and ICMP
    // errors copied into free frames, hairpinning, a hand-off to the kernel.
    // Root only (an AF_XDP socket on a veth); skipped otherwise unless
    // NAT64D_REQUIRE_ROOT_TESTS asks for it.
    #[test]
    fn frame_path_allocates_nothing() {
        if !crate::sys::testns::root() {
            assert!(std::env::var_os("NAT64D_REQUIRE_ROOT_TESTS").is_none(), "NAT64D_REQUIRE_ROOT_TESTS set, not root");
            eprintln!("skipped: needs root (an AF_XDP socket)");
            return;
        }
        std::thread::spawn(run_frames).join().expect("the namespace thread");
    }

    fn run_frames() {
        let vb = crate::sys::testns::veth_pair();
        let q = Queue::open(&[vb], 0, 1024, true).expect("AF_XDP socket on vb");
        let Queue { mut umem, ports, raw, .. } = q;
        let mut h = Hops::new();
        h.add_link(vb, Link { mac: MAC_VB, mtu: 1500 });
        let r = |gw: &str| Route { gateway: Some(ip(gw)), oif: vb, local: false, metric: 0 };
        h.add_route(ip("0.0.0.0"), 0, r("192.0.2.1"));
        h.add_route(ip("198.18.0.0"), 15, Route { gateway: None, ..r("192.0.2.1") });
        h.add_route(ip("64:ff9b::"), 96, r("fe80::1"));
        h.add_neighbour(vb, ip("192.0.2.1"), MAC_GW4);
        h.add_neighbour(vb, ip("fe80::1"), MAC_GW6);
        let mut o = Out {
            ports,
            free: Vec::with_capacity(1024),
            hops: Arc::new(h),
            generation: 0,
            raw,
            st: XdpStats::default(),
            pool4: Arc::new(vec!["203.0.113.0/28".parse().unwrap()]),
        };
        o.free.extend((0..1024u64).rev().map(|i| i * FRAME as u64));
        let p = Prefix6052::WKP;
        let mut map = Rfc6052Mapper { prefix: p, allow_non_global: true };
        let mut x = Translator::new(XlatConfig::default());
        let mut out = vec![0u8; OUT_BUF_LEN];
        let frames: Vec<Vec<u8>> = cases(&p)
            .into_iter()
            .map(|(_, l3)| {
                let mut f = vec![0u8; 14];
                f[..6].copy_from_slice(&MAC_VB);
                f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
                f[12..14].copy_from_slice(&if l3[0] >> 4 == 6 { [0x86, 0xdd] } else { [0x08, 0] });
                f.extend_from_slice(&l3);
                f
            })
            .collect();
        let mut round = |x: &mut Translator, umem: &mut Umem, o: &mut Out, out: &mut [u8]| {
            for f in &frames {
                o.reclaim_for_test();
                let base = o.free.pop().expect("a free frame");
                let (mem, _) = umem.frame(base).expect("frame");
                mem[HEADROOM..HEADROOM + f.len()].copy_from_slice(f);
                frame(x, umem, o, out, &mut map, 0, base + HEADROOM as u64, f.len());
                o.kick().expect("kick");
            }
        };
        // Once to warm up (the ICMP rate limiter's first destination, the rings).
        round(&mut x, &mut umem, &mut o, &mut out);
        let before = o.st;
        let ((), peak) = crate::test_alloc::peak_bytes(|| {
            for _ in 0..50 {
                round(&mut x, &mut umem, &mut o, &mut out);
            }
        });
        assert_eq!(peak, 0, "bytes allocated on the frame path");
        let st = o.st;
        // Each round: 6to4, 4to6, 2 fragments and a hairpinned packet on the
        // TX ring, and the Time Exceeded unless the rate limit (RFC 4443
        // 2.4 (f)) holds it back; one to the kernel (which refuses it here:
        // this namespace has no route for it, and the refusal is counted).
        let errors = x.stats.icmp_errors_sent;
        assert!(errors > 0 && x.stats.icmp_errors_suppressed > 0, "{:?}", x.stats);
        assert!(st.tx_frames - before.tx_frames >= 50 * 5, "{st:?}");
        assert_eq!(st.to_kernel - before.to_kernel, 50, "{st:?}");
        assert_eq!(st.to_kernel_errors - before.to_kernel_errors, 50, "{st:?}");
        assert_eq!(st.hairpinned - before.hairpinned, 50, "{st:?}");
        assert_eq!((st.tx_ring_full, st.no_free_frame), (0, 0), "{st:?}");
    }
}
