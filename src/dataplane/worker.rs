//! One worker per TUN queue: read a packet into a buffer with headroom,
//! translate it in place through the shared NAT, write the result back.
//! With io_uring ([`Io::Batched`]) it reads and writes whole batches, one
//! system call each round ([`super::uring`]); otherwise a read(2) and a
//! write(2) per packet.
//! The sweeping worker (one of them) also runs the NAT's budgeted expiry
//! sweep once a second and drains the held-SYN queues (RFC 6146 3.5.2.2).
//! Counters stay plain integers in the worker and are copied to its
//! [`WorkerSlot`] every [`PUBLISH_MS`], so readers never touch the hot path.

use super::tun::Tun;
use super::uring::{self, Ring, Slots};
use super::vnet::{self, VnetHdr, F_NEEDS_CSUM, VNET_HDR_LEN};
use crate::nat::Nat;
use crate::xlat::{DropReason, Mapper, Stats, Translator, Verdict, XlatConfig, OUT_BUF_LEN};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Room before a packet for the larger IPv6 header (and a Fragment header),
/// and the virtio-net header before that.
pub const HEADROOM: usize = 64;
/// Sessions visited per expiry sweep and shard.
const SWEEP_BUDGET: usize = 4096;
/// How often a worker publishes its counters.
pub const PUBLISH_MS: u64 = 100;
/// The longest a worker waits for a packet before looking at the clock and the stop flag.
pub const POLL_MS: i32 = 200;

crate::counters::counters! {
    /// What the TUN offloads did (all zero with offloads off).
    pub struct OffloadStats {
        gso_packets: "Super-packets translated whole and handed back for the kernel to segment.",
        gso_segments: "The segments those super-packets carried.",
        software_segmented: "Super-packets segmented here instead, because their segments would not fit the other side's MTU once translated (each segment then gets the usual Packet Too Big / fragmentation treatment).",
        checksums_completed: "Partial checksums completed here (packets that were not super-packets).",
        bad_vnet_header: "Packets whose virtio-net header did not describe them (dropped).",
    }
}

/// A worker's counters.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    pub xlat: Stats,
    /// Packets the TUN device refused (full queue, no route): lost, so counted.
    pub tun_write_errors: u64,
    pub offload: OffloadStats,
    /// How the worker reads and writes its queue.
    pub io: IoStats,
    /// The AF_XDP dataplane's counters (zero on TUN).
    pub xdp: super::xdp::XdpStats,
}

crate::counters::counters! {
    /// The worker's I/O: batches when it uses io_uring. Summed over the
    /// workers, it is the `io` block of the stats report as it is.
    pub struct IoStats {
        io_uring_workers: "Workers reading and writing in batches through io_uring (0 or 1 per worker).",
        batches: "Batches read (calls that brought at least one packet).",
        batched_packets: "The packets those batches brought (their ratio to batches: the mean batch).",
    }
}

impl WorkerStats {
    pub fn merge(&mut self, o: &WorkerStats) {
        self.xlat.merge(&o.xlat);
        self.tun_write_errors += o.tun_write_errors;
        self.offload.merge(&o.offload);
        self.io.merge(&o.io);
        self.xdp.merge(&o.xdp);
    }
}

/// What a worker shares with the rest of the daemon.
#[derive(Debug, Default)]
pub struct WorkerSlot {
    /// The counters as of the last publication (at most PUBLISH_MS old).
    pub stats: Mutex<WorkerStats>,
    /// Milliseconds since the epoch when the worker last went round its loop
    /// (the watchdog checks it moves).
    pub heartbeat: AtomicU64,
}

impl WorkerSlot {
    pub fn snapshot(&self) -> WorkerStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How a worker moves packets through its TUN queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// One read(2) and one write(2) per packet.
    Plain,
    /// Batches through io_uring ([`super::uring`]): one system call per batch.
    Batched,
}

/// What every worker loop shares, TUN or AF_XDP: counters, the
/// translator, publication, the expiry sweep and the held SYNs.
pub(super) struct Core<'a> {
    pub(super) ws: WorkerStats,
    pub(super) x: Translator,
    nat: &'a Nat,
    slot: &'a WorkerSlot,
    sweeper: bool,
    epoch: Instant,
    last_sweep: u64,
    last_publish: u64,
}

/// Where a worker writes the packets it makes itself (released held SYNs,
/// their ICMP errors).
pub(super) type Sink<'a> = dyn FnMut(&[u8]) -> io::Result<usize> + 'a;

impl<'a> Core<'a> {
    pub(super) fn new(cfg: XlatConfig, nat: &'a Nat, slot: &'a WorkerSlot, sweeper: bool, epoch: Instant) -> Self {
        Core {
            ws: WorkerStats::default(),
            x: Translator::new(cfg),
            nat,
            slot,
            sweeper,
            epoch,
            last_sweep: 0,
            last_publish: 0,
        }
    }

    /// The NAT clock, which the translator is told.
    pub(super) fn now(&mut self) -> u64 {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.x.set_time(now);
        now
    }

    /// Whether [`Self::tick`] at `now` publishes the counters.
    pub(super) fn due(&self, now: u64) -> bool {
        now >= self.last_publish + PUBLISH_MS
    }

    /// Once per read (or batch): publish counters, run the sweep when due.
    pub(super) fn tick(&mut self, now: u64, out: &mut [u8], sink: &mut Sink) -> io::Result<()> {
        if self.due(now) {
            self.publish(now);
        }
        if self.sweeper && now >= self.last_sweep + 1000 {
            self.last_sweep = now;
            self.nat.expire(now, SWEEP_BUDGET);
            drain_held_syns(self.nat, &mut self.x, out, now, &mut self.ws.tun_write_errors, sink)?;
        }
        Ok(())
    }

    fn publish(&mut self, now: u64) {
        self.last_publish = now;
        self.ws.xlat = self.x.stats.clone();
        *self.slot.stats.lock().unwrap_or_else(|e| e.into_inner()) = self.ws.clone();
        self.slot.heartbeat.store(now, Ordering::Relaxed);
    }

    /// Going idle: publish what changed, so readers see counters that match
    /// the traffic as soon as it pauses.
    pub(super) fn quiet(&mut self, now: u64) {
        if self.x.stats != self.ws.xlat {
            self.publish(now);
        }
    }

    /// The last publication, at the end of the loop.
    pub(super) fn finish(&mut self) {
        self.ws.xlat = self.x.stats.clone();
        *self.slot.stats.lock().unwrap_or_else(|e| e.into_inner()) = self.ws.clone();
    }
}

/// Run until `stop` is set; returns the worker's final counters (also published).
/// `epoch` is the daemon's clock origin, shared by every worker so NAT times agree.
/// With [`Io::Batched`] the worker falls back to plain I/O (and logs why)
/// if its ring cannot be set up.
#[allow(clippy::too_many_arguments)]
pub fn run(
    tun: &Tun,
    nat: &Nat,
    cfg: XlatConfig,
    stop: &AtomicBool,
    slot: &WorkerSlot,
    sweeper: bool,
    epoch: Instant,
    io: Io,
) -> io::Result<WorkerStats> {
    let mut c = Core::new(cfg, nat, slot, sweeper, epoch);
    let result = match io {
        Io::Batched => match batched(tun, &mut c, stop) {
            Err(Fallback(e)) => {
                tracing::warn!("{}: io_uring unavailable ({e}): one read and write per packet", tun.name());
                plain_loop(tun, &mut c, stop)
            }
            Ok(r) => r,
        },
        Io::Plain => plain_loop(tun, &mut c, stop),
    };
    c.finish();
    result.map(|()| c.ws)
}

/// Where a packet is read: after the headroom, or the virtio-net header
/// just before it.
fn read_at(tun: &Tun) -> usize {
    if tun.has_vnet_hdr() {
        HEADROOM - VNET_HDR_LEN
    } else {
        HEADROOM
    }
}

fn plain_loop(tun: &Tun, c: &mut Core, stop: &AtomicBool) -> io::Result<()> {
    let mut buf = vec![0u8; HEADROOM + 65536];
    let mut out = vec![0u8; OUT_BUF_LEN];
    let vnet = tun.has_vnet_hdr();
    // Software segmentation writes one segment at a time here.
    let mut scratch = if vnet { vec![0u8; HEADROOM + 65536] } else { Vec::new() };
    let rd = read_at(tun);
    while !stop.load(Ordering::Relaxed) {
        let now = c.now();
        c.tick(now, &mut out, &mut |p: &[u8]| tun_send(tun, p))?;
        // One read per packet while packets wait; a poll (up to POLL_MS, so
        // the sweep and the stop flag are seen) only when the queue is empty.
        let n = match tun.recv(&mut buf[rd..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.quiet(now);
                tun.wait_readable(POLL_MS)?;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let map = &mut c.nat.at(now);
        if vnet {
            let errs = &mut c.ws.tun_write_errors;
            let mut sink = |h: &[u8; VNET_HDR_LEN], p: &[u8]| counted(tun.send_vnet(h, p), errs);
            offload_packet(&mut c.x, &mut buf, n, &mut out, &mut scratch, map, &mut c.ws.offload, &mut sink)?;
        } else {
            let v = c.x.translate_in_place(&mut buf, HEADROOM, n, &mut out, map);
            send(tun, v, &buf, &out, &mut c.ws.tun_write_errors)?;
        }
    }
    Ok(())
}

/// The ring could not be set up: run the plain loop instead.
struct Fallback(io::Error);

/// The batched loop: each call writes the last batch's output and reads
/// the next batch; the packets are translated in their read slots.
fn batched(tun: &Tun, c: &mut Core, stop: &AtomicBool) -> Result<io::Result<()>, Fallback> {
    let mut slots = Slots::new(HEADROOM + 65536, read_at(tun));
    let mut ring = Ring::new(tun.raw_fd(), &slots).map_err(Fallback)?;
    let mut out = vec![0u8; OUT_BUF_LEN];
    let vnet = tun.has_vnet_hdr();
    let mut scratch = if vnet { vec![0u8; HEADROOM + 65536] } else { Vec::new() };
    let mut first = true;
    let r = (|| {
        while !stop.load(Ordering::Relaxed) {
            let now = c.now();
            c.tick(now, &mut out, &mut |p: &[u8]| tun_send(tun, p))?;
            // An error from the first call (below: a fallback) says the ring
            // does not work on this device.
            let got = ring.cycle(&mut slots)?;
            if first {
                first = false;
                c.ws.io.io_uring_workers = 1;
            }
            c.ws.tun_write_errors += std::mem::take(&mut ring.write_errors);
            if got == 0 {
                c.quiet(now);
                tun.wait_readable(POLL_MS)?;
                continue;
            }
            c.ws.io.batches += 1;
            c.ws.io.batched_packets += got as u64;
            let map = &mut c.nat.at(now);
            for i in 0..uring::MAX_READS {
                let Some((buf, n)) = slots.packet(i) else { continue };
                if vnet {
                    let mut sink = |h: &[u8; VNET_HDR_LEN], p: &[u8]| ring.queue(Some(h), p);
                    offload_packet(&mut c.x, buf, n, &mut out, &mut scratch, map, &mut c.ws.offload, &mut sink)?;
                } else {
                    let v = c.x.translate_in_place(buf, HEADROOM, n, &mut out, map);
                    v.packets(buf, &out).try_for_each(|p| ring.queue(None, p))?;
                }
            }
        }
        Ok(())
    })();
    match r {
        Err(e) if first => Err(Fallback(e)),
        r => {
            c.ws.tun_write_errors += ring.write_errors;
            Ok(r)
        }
    }
}

/// One read with offloads on: `buf[HEADROOM - VNET_HDR_LEN..]` holds the
/// virtio-net header and the packet, `n` bytes in all. Pure apart from
/// `send`, which gets each packet to write with its virtio-net header (so
/// the fuzzer drives this exactly as the worker does).
#[allow(clippy::too_many_arguments)]
pub fn offload_packet<M: Mapper>(
    x: &mut Translator,
    buf: &mut [u8],
    n: usize,
    out: &mut [u8],
    scratch: &mut [u8],
    map: &mut M,
    stats: &mut OffloadStats,
    send: &mut VnetSink,
) -> io::Result<()> {
    let (Some(len), Some(hdr)) =
        (n.checked_sub(VNET_HDR_LEN), buf.get(HEADROOM - VNET_HDR_LEN..).and_then(VnetHdr::parse))
    else {
        stats.bad_vnet_header += 1;
        return Ok(());
    };
    let Some(pkt) = buf.get_mut(HEADROOM..HEADROOM + len) else {
        stats.bad_vnet_header += 1;
        return Ok(());
    };
    if !hdr.is_gso() {
        // One packet: complete its checksum if partial, then as without offloads.
        if hdr.flags & F_NEEDS_CSUM != 0 {
            if !vnet::complete_csum(pkt, hdr.csum_start as usize, hdr.csum_offset as usize) {
                stats.bad_vnet_header += 1;
                return Ok(());
            }
            stats.checksums_completed += 1;
        }
        let v = x.translate_in_place(buf, HEADROOM, len, out, map);
        return plain(v, buf, out, send);
    }
    let l4 = match vnet::locate(pkt) {
        Some(l4) if vnet::gso_consistent(&hdr, &l4) => l4,
        _ => {
            stats.bad_vnet_header += 1;
            return Ok(());
        }
    };
    let gso = hdr.gso_size as usize;
    let segs = vnet::segment_count(&l4, len, gso);
    // IPv4 with DF clear is held to lowest-ipv6-mtu (RFC 7915 4): a UDP
    // super-packet whose segments would exceed it is segmented here, and
    // each segment fragmented.
    let (out_l3, mtu) = if l4.v6 { (20, x.config().ipv4_mtu) } else { (40, x.ipv6_limit(vnet::dont_frag(pkt))) };
    if out_l3 + l4.l4_hdr_len + gso <= mtu as usize {
        // The common case: translate the headers once, hand the super-packet
        // back with the other family's GSO type; the kernel segments it.
        match x.translate_gso_in_place(buf, HEADROOM, len, out, map, segs as u32) {
            Verdict::Forward(o) if o.in_place => {
                // The translator wrote a bare IP header of the other family
                // before the same transport header: no second parse needed.
                let l4o = l4.translated();
                let p = &mut buf[o.start..o.start + o.len];
                vnet::set_partial(p, &l4o);
                let h = vnet::translated_hdr(&hdr, &l4o).emit();
                stats.gso_packets += 1;
                stats.gso_segments += segs as u64;
                send(&h, p)
            }
            v => plain(v, buf, out, send),
        }
    } else {
        // Segments too big for the other side once translated: segment here
        // and give each the usual treatment (Packet Too Big, fragments).
        stats.software_segmented += 1;
        let pkt = &buf[HEADROOM..HEADROOM + len];
        for i in 0..segs {
            let Some(sn) = scratch.get_mut(HEADROOM..).and_then(|s| vnet::segment(pkt, &l4, gso, i, s)) else { break };
            let v = x.translate_in_place(scratch, HEADROOM, sn, out, map);
            plain(v, scratch, out, send)?;
        }
        Ok(())
    }
}

type VnetSink<'a> = dyn FnMut(&[u8; VNET_HDR_LEN], &[u8]) -> io::Result<()> + 'a;

/// Send a verdict's packets behind an all-zero virtio-net header (complete checksums, no GSO).
fn plain(v: Verdict, from: &[u8], out: &[u8], send: &mut VnetSink) -> io::Result<()> {
    v.packets(from, out).try_for_each(|p| send(&[0; VNET_HDR_LEN], p))
}

/// RFC 6146 3.5.2.2: deliver held IPv4 SYNs an IPv6 SYN has matched, and
/// answer those whose TCP_INCOMING_SYN ran out with ICMPv4 3/3.
fn drain_held_syns(
    nat: &Nat,
    x: &mut Translator,
    out: &mut [u8],
    now: u64,
    write_errors: &mut u64,
    sink: &mut Sink,
) -> io::Result<()> {
    while let Some(syn) = nat.take_released_syn() {
        let v = x.translate(&syn, out, &mut nat.at(now));
        v.packets(&[], out).try_for_each(|p| counted(sink(p), write_errors))?;
    }
    while let Some(syn) = nat.take_unanswered_syn() {
        let v = x.icmp4_error_for(&syn, 3, 3, DropReason::V4SynHeld, out);
        v.packets(&[], out).try_for_each(|p| counted(sink(p), write_errors))?;
    }
    Ok(())
}

fn tun_send(tun: &Tun, p: &[u8]) -> io::Result<usize> {
    if tun.has_vnet_hdr() {
        tun.send_vnet(&[0; VNET_HDR_LEN], p)
    } else {
        tun.send(p)
    }
}

fn send(tun: &Tun, v: Verdict, buf: &[u8], out: &[u8], write_errors: &mut u64) -> io::Result<()> {
    v.packets(buf, out).try_for_each(|p| counted(tun_send(tun, p), write_errors))
}

/// A write's result: a full device queue or a vanished route loses the
/// packet (counted), not the worker; only a closed descriptor ends it.
fn counted(r: io::Result<usize>, write_errors: &mut u64) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => Err(e),
        Err(_) => {
            *write_errors += 1;
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpkt::{tcp, udp, v4_checksums_ok, AnyMapper, V4, V6};
    use vnet::{GSO_TCPV4, GSO_TCPV6};

    fn run(pkt: &[u8], hdr: VnetHdr, cfg: XlatConfig) -> (OffloadStats, Vec<(VnetHdr, Vec<u8>)>) {
        let (st, sent, _) = run_counted(pkt, hdr, cfg);
        (st, sent)
    }

    fn run_counted(pkt: &[u8], hdr: VnetHdr, cfg: XlatConfig) -> (OffloadStats, Vec<(VnetHdr, Vec<u8>)>, Stats) {
        let mut buf = vec![0u8; HEADROOM + 65536];
        buf[HEADROOM - VNET_HDR_LEN..HEADROOM].copy_from_slice(&hdr.emit());
        buf[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(pkt);
        let (mut out, mut scratch) = (vec![0u8; OUT_BUF_LEN], vec![0u8; HEADROOM + 65536]);
        let mut stats = OffloadStats::default();
        let mut sent = vec![];
        let mut sink = |h: &[u8; VNET_HDR_LEN], p: &[u8]| {
            sent.push((VnetHdr::parse(h).unwrap(), p.to_vec()));
            Ok(())
        };
        let mut x = Translator::new(cfg);
        let n = VNET_HDR_LEN + pkt.len();
        offload_packet(&mut x, &mut buf, n, &mut out, &mut scratch, &mut AnyMapper, &mut stats, &mut sink).unwrap();
        (stats, sent, x.stats)
    }

    fn super_packet(mut p: Vec<u8>, gso: u16) -> (Vec<u8>, VnetHdr) {
        let l4 = vnet::locate(&p).unwrap();
        vnet::set_partial(&mut p, &l4);
        let gso_type = match (l4.proto, l4.v6) {
            (17, _) => vnet::GSO_UDP_L4,
            (_, true) => GSO_TCPV6,
            _ => GSO_TCPV4,
        };
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: l4.hdr_len() as u16,
            gso_size: gso,
            csum_start: l4.l3_len as u16,
            csum_offset: l4.csum_offset() as u16,
        };
        (p, h)
    }

    // A 20 kB IPv6 TCP super-packet goes back as one IPv4 super-packet: the
    // kernel segments it (RFC 7915 5.1 header translation, done once).
    #[test]
    fn tso6_super_packet_goes_back_whole_as_tso4() {
        let data = vec![7u8; 20_000];
        let src = "2001:db8:1::10".parse().unwrap();
        let dst = "2001:db8:64::c000:202".parse().unwrap();
        let (p, h) = super_packet(V6::new(src, dst, 6, tcp(40000, 80, 1, 0x18, &data)).build(), 1440);
        let cfg = XlatConfig { ipv6_mtu: 1500, ipv4_mtu: 1500, ..XlatConfig::default() };
        let (st, sent, counted) = run_counted(&p, h, cfg);
        assert_eq!((st.gso_packets, st.gso_segments, st.software_segmented), (1, 14, 0));
        assert_eq!(counted.out_6to4.packets[0], 14, "the super-packet counts as the 14 TCP packets it carries");
        assert_eq!(sent.len(), 1);
        let (h4, p4) = &sent[0];
        assert_eq!((h4.gso_type, h4.gso_size, h4.csum_start, h4.hdr_len), (GSO_TCPV4, 1440, 20, 40));
        assert_eq!(p4.len(), p.len() - 20);
        let mut c = p4.clone();
        assert!(vnet::complete_csum(&mut c, 20, 16));
        assert!(v4_checksums_ok(&c), "the partial checksum is the IPv4 pseudo-header sum");
    }

    // RFC 7915 4.1: segments that would not fit the IPv6 MTU once translated,
    // with DF set, are each answered with Fragmentation Needed (after
    // software segmentation), not sent on as oversize super-packets.
    #[test]
    fn tso4_too_big_once_translated_is_segmented_and_refused() {
        let data = vec![9u8; 5 * 1460];
        let (p, h) = super_packet(
            V4::new("192.0.2.2".parse().unwrap(), "203.0.113.1".parse().unwrap(), 6, tcp(80, 40000, 1, 0x10, &data))
                .build(),
            1460,
        );
        let cfg = XlatConfig { ipv6_mtu: 1500, ipv4_mtu: 1500, ..XlatConfig::default() };
        let (st, sent) = run(&p, h, cfg);
        assert_eq!((st.gso_packets, st.software_segmented), (0, 1));
        assert_eq!(sent.len(), 5, "one error per segment");
        for (h, e) in &sent {
            assert_eq!(*h, VnetHdr::default());
            assert_eq!((e[0] >> 4, e[9], e[20], e[21]), (4, 1, 3, 4), "ICMPv4 3/4");
            assert_eq!(u16::from_be_bytes([e[26], e[27]]), 1480, "next-hop MTU: IPv6 MTU - 20");
        }
    }

    // RFC 7915 section 4, lowest-ipv6-mtu on the offload path: a UDP
    // super-packet from IPv4 with DF clear whose 1400-byte segments would
    // become 1448-byte IPv6 packets is segmented here and each segment
    // fragmented to at most 1280 bytes; with DF set the kernel segments it
    // (the 1500-byte next hop holds each segment).
    #[test]
    fn uso4_df_clear_respects_lowest_ipv6_mtu() {
        let data = vec![3u8; 3 * 1400];
        let cfg = XlatConfig { ipv6_mtu: 1500, ipv4_mtu: 1500, ..XlatConfig::default() };
        for df in [false, true] {
            let mut v4 =
                V4::new("192.0.2.2".parse().unwrap(), "203.0.113.1".parse().unwrap(), 17, udp(53, 40000, &data));
            v4.df = df;
            let (p, h) = super_packet(v4.build(), 1400);
            let (st, sent) = run(&p, h, cfg.clone());
            if df {
                assert_eq!((st.gso_packets, st.gso_segments, st.software_segmented), (1, 3, 0));
                assert_eq!(sent.len(), 1);
            } else {
                assert_eq!((st.gso_packets, st.software_segmented), (0, 1));
                assert_eq!(sent.len(), 6, "three segments, two fragments each");
                for (h, f) in &sent {
                    assert_eq!(*h, VnetHdr::default());
                    assert!(f.len() <= 1280 && f[6] == 44, "a fragment of at most 1280 bytes: {}", f.len());
                }
            }
        }
    }
}
