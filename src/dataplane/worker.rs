//! One worker per TUN queue: read a packet into a buffer with headroom,
//! translate it in place through the shared NAT, write the result back.
//! The sweeping worker (one of them) also runs the NAT's budgeted expiry
//! sweep once a second and drains the held-SYN queues (RFC 6146 3.5.2.2).
//! Counters stay plain integers in the worker and are copied to its
//! [`WorkerSlot`] every [`PUBLISH_MS`], so readers never touch the hot path.

use super::tun::Tun;
use crate::nat::Nat;
use crate::xlat::{DropReason, Stats, Translator, Verdict, XlatConfig, OUT_BUF_LEN};
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

/// A worker's counters.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    pub xlat: Stats,
    /// Packets the TUN device refused (full queue, no route): lost, so counted.
    pub tun_write_errors: u64,
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
        let n = match tun.recv(&mut buf[HEADROOM..]) {
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
        let v = x.translate_in_place(&mut buf, HEADROOM, n, &mut out, &mut nat.at(now));
        if let Err(e) = send(tun, v, &buf, &out, &mut ws.tun_write_errors) {
            break Err(e);
        }
    };
    ws.xlat = x.stats.clone();
    *slot.stats.lock().unwrap_or_else(|e| e.into_inner()) = ws.clone();
    result.map(|()| ws)
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
            if let Err(e) = tun.send(p) {
                if e.raw_os_error() == Some(libc::EBADF) {
                    return Err(e);
                }
                *write_errors += 1;
            }
        }
    }
    Ok(())
}
