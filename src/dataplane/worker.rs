//! One worker per TUN queue: read a packet into a buffer with headroom,
//! translate it in place through the shared NAT, write the result back.
//! The sweeping worker (one of them) also runs the NAT's budgeted expiry
//! sweep once a second and drains the held-SYN queues (RFC 6146 3.5.2.2).
//! Counters stay plain integers in the worker and are copied to its
//! [`WorkerSlot`] every [`PUBLISH_MS`], so readers never touch the hot path.

use super::tun::Tun;
use super::vnet::{self, VnetHdr, F_NEEDS_CSUM, VNET_HDR_LEN};
use crate::nat::Nat;
use crate::xlat::{proto_index, DropReason, Stats, Translator, Verdict, XlatConfig, OUT_BUF_LEN};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Room before a packet for the larger IPv6 header (and a Fragment header).
const HEADROOM: usize = 64;
/// Sessions visited per expiry sweep and shard.
const SWEEP_BUDGET: usize = 4096;
/// How often a worker publishes its counters.
pub const PUBLISH_MS: u64 = 100;
/// The longest a worker waits for a packet before looking at the clock and the stop flag.
pub const POLL_MS: i32 = 200;

/// What the TUN offloads did (all zero with offloads off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadStats {
    /// Super-packets translated whole and handed back for the kernel to segment.
    pub gso_packets: u64,
    /// The segments those carried.
    pub gso_segments: u64,
    /// Super-packets segmented here instead, because their segments would not
    /// fit the other side's MTU once translated (each segment then gets the
    /// usual Packet Too Big / fragmentation treatment).
    pub software_segmented: u64,
    /// Partial checksums completed here (packets that were not super-packets).
    pub checksums_completed: u64,
    /// Packets whose virtio-net header did not describe them (dropped).
    pub bad_vnet_header: u64,
}

/// A worker's counters.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    pub xlat: Stats,
    /// Packets the TUN device refused (full queue, no route): lost, so counted.
    pub tun_write_errors: u64,
    pub offload: OffloadStats,
}

impl WorkerStats {
    pub fn merge(&mut self, o: &WorkerStats) {
        self.xlat.merge(&o.xlat);
        self.tun_write_errors += o.tun_write_errors;
        let (a, b) = (&mut self.offload, &o.offload);
        a.gso_packets += b.gso_packets;
        a.gso_segments += b.gso_segments;
        a.software_segmented += b.software_segmented;
        a.checksums_completed += b.checksums_completed;
        a.bad_vnet_header += b.bad_vnet_header;
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

/// Run until `stop` is set; returns the worker's final counters (also published).
/// `epoch` is the daemon's clock origin, shared by every worker so NAT times agree.
pub fn run(
    tun: &Tun,
    nat: &Nat,
    cfg: XlatConfig,
    stop: &AtomicBool,
    slot: &WorkerSlot,
    sweeper: bool,
    epoch: Instant,
) -> io::Result<WorkerStats> {
    let mut ws = WorkerStats::default();
    let mut x = Translator::new(cfg);
    let mut buf = vec![0u8; HEADROOM + 65536];
    let mut out = vec![0u8; OUT_BUF_LEN];
    let vnet = tun.has_vnet_hdr();
    // Software segmentation writes one segment at a time here.
    let mut scratch = if vnet { vec![0u8; HEADROOM + 65536] } else { Vec::new() };
    let rd = if vnet { HEADROOM - VNET_HDR_LEN } else { HEADROOM };
    let mut last_sweep = 0u64;
    let mut last_publish = 0u64;
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let now = epoch.elapsed().as_millis() as u64;
        if now >= last_publish + PUBLISH_MS {
            last_publish = now;
            ws.xlat = x.stats.clone();
            *slot.stats.lock().unwrap_or_else(|e| e.into_inner()) = ws.clone();
            slot.heartbeat.store(now, Ordering::Relaxed);
        }
        if sweeper && now >= last_sweep + 1000 {
            last_sweep = now;
            nat.expire(now, SWEEP_BUDGET);
            if let Err(e) = drain_held_syns(tun, nat, &mut x, &mut out, now, &mut ws.tun_write_errors) {
                break Err(e);
            }
        }
        // One read per packet while packets wait; a poll (up to POLL_MS, so
        // the sweep and the stop flag are seen) only when the queue is empty.
        let n = match tun.recv(&mut buf[rd..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Going idle: publish what changed, so readers see counters
                // that match the traffic as soon as it pauses.
                if x.stats != ws.xlat {
                    last_publish = now;
                    ws.xlat = x.stats.clone();
                    *slot.stats.lock().unwrap_or_else(|e| e.into_inner()) = ws.clone();
                }
                match tun.wait_readable(POLL_MS) {
                    Ok(_) => continue,
                    Err(e) => break Err(e),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        let r = if vnet {
            offloaded(tun, nat, &mut x, &mut buf, n, &mut out, &mut scratch, &mut ws, now)
        } else {
            let v = x.translate_in_place(&mut buf, HEADROOM, n, &mut out, &mut nat.at(now));
            send(tun, v, &buf, &out, &mut ws.tun_write_errors)
        };
        if let Err(e) = r {
            break Err(e);
        }
    };
    ws.xlat = x.stats.clone();
    *slot.stats.lock().unwrap_or_else(|e| e.into_inner()) = ws.clone();
    result.map(|()| ws)
}

/// One read with offloads on: `buf[HEADROOM - VNET_HDR_LEN..]` holds the
/// virtio-net header and the packet, `n` bytes in all.
#[allow(clippy::too_many_arguments)]
fn offloaded(
    tun: &Tun,
    nat: &Nat,
    x: &mut Translator,
    buf: &mut [u8],
    n: usize,
    out: &mut [u8],
    scratch: &mut [u8],
    ws: &mut WorkerStats,
    now: u64,
) -> io::Result<()> {
    let (Some(len), Some(hdr)) = (n.checked_sub(VNET_HDR_LEN), VnetHdr::parse(&buf[HEADROOM - VNET_HDR_LEN..])) else {
        ws.offload.bad_vnet_header += 1;
        return Ok(());
    };
    let pkt = &mut buf[HEADROOM..HEADROOM + len];
    if !hdr.is_gso() {
        // One packet: complete its checksum if partial, then as without offloads.
        if hdr.flags & F_NEEDS_CSUM != 0 {
            if !vnet::complete_csum(pkt, hdr.csum_start as usize, hdr.csum_offset as usize) {
                ws.offload.bad_vnet_header += 1;
                return Ok(());
            }
            ws.offload.checksums_completed += 1;
        }
        let v = x.translate_in_place(buf, HEADROOM, len, out, &mut nat.at(now));
        return send(tun, v, buf, out, &mut ws.tun_write_errors);
    }
    let l4 = match vnet::locate(pkt) {
        Some(l4) if vnet::gso_consistent(&hdr, &l4) => l4,
        _ => {
            ws.offload.bad_vnet_header += 1;
            return Ok(());
        }
    };
    let gso = hdr.gso_size as usize;
    let segs = vnet::segment_count(&l4, len, gso);
    let (out_l3, mtu) = if l4.v6 { (20, x.config().ipv4_mtu) } else { (40, x.config().ipv6_mtu) };
    if out_l3 + l4.l4_hdr_len + gso <= mtu as usize {
        // The common case: translate the headers once, hand the super-packet
        // back with the other family's GSO type; the kernel segments it.
        match x.translate_gso_in_place(buf, HEADROOM, len, out, &mut nat.at(now)) {
            Verdict::Forward(o) if o.in_place => {
                let p = &mut buf[o.start..o.start + o.len];
                let Some(l4o) = vnet::locate(p) else {
                    ws.offload.bad_vnet_header += 1;
                    return Ok(());
                };
                vnet::set_partial(p, &l4o);
                let h = vnet::translated_hdr(&hdr, &l4o).emit();
                ws.offload.gso_packets += 1;
                ws.offload.gso_segments += segs as u64;
                // Count the segments as the packets they are.
                let c = if l4.v6 { &mut x.stats.out_6to4 } else { &mut x.stats.in_4to6 };
                c.packets[proto_index(l4o.proto)] += segs as u64 - 1;
                if let Err(e) = tun.send_vnet(&h, p) {
                    if e.raw_os_error() == Some(libc::EBADF) {
                        return Err(e);
                    }
                    ws.tun_write_errors += 1;
                }
                Ok(())
            }
            v => send(tun, v, buf, out, &mut ws.tun_write_errors),
        }
    } else {
        // Segments too big for the other side once translated: segment here
        // and give each the usual treatment (Packet Too Big, fragments).
        ws.offload.software_segmented += 1;
        let pkt = &buf[HEADROOM..HEADROOM + len];
        for i in 0..segs {
            let Some(sn) = vnet::segment(pkt, &l4, gso, i, &mut scratch[HEADROOM..]) else { break };
            let v = x.translate_in_place(scratch, HEADROOM, sn, out, &mut nat.at(now));
            send(tun, v, scratch, out, &mut ws.tun_write_errors)?;
        }
        Ok(())
    }
}

/// RFC 6146 3.5.2.2: deliver held IPv4 SYNs an IPv6 SYN has matched, and
/// answer those whose TCP_INCOMING_SYN ran out with ICMPv4 3/3.
fn drain_held_syns(
    tun: &Tun,
    nat: &Nat,
    x: &mut Translator,
    out: &mut [u8],
    now: u64,
    write_errors: &mut u64,
) -> io::Result<()> {
    while let Some(syn) = nat.take_released_syn() {
        let v = x.translate(&syn, out, &mut nat.at(now));
        send(tun, v, &[], out, write_errors)?;
    }
    while let Some(syn) = nat.take_unanswered_syn() {
        let v = x.icmp4_error_for(&syn, 3, 3, DropReason::V4SynHeld, out);
        send(tun, v, &[], out, write_errors)?;
    }
    Ok(())
}

fn send(tun: &Tun, v: Verdict, buf: &[u8], out: &[u8], write_errors: &mut u64) -> io::Result<()> {
    if let Verdict::Forward(o) | Verdict::Reply { out: o, .. } = v {
        for p in o.packets(if o.in_place { buf } else { out }) {
            // A full device queue or a vanished route loses this packet (counted), not the worker.
            let r = if tun.has_vnet_hdr() { tun.send_vnet(&[0; VNET_HDR_LEN], p) } else { tun.send(p) };
            if let Err(e) = r {
                if e.raw_os_error() == Some(libc::EBADF) {
                    return Err(e);
                }
                *write_errors += 1;
            }
        }
    }
    Ok(())
}
