//! One worker: read a packet from the TUN device into a buffer with
//! headroom, translate it in place through the shared NAT, write the result
//! back. Once a second it runs the NAT's budgeted expiry sweep and drains the
//! held-SYN queues (RFC 6146 3.5.2.2). A single queue for now: multi-queue
//! TUN (one worker per queue) is the next step.

use super::tun::Tun;
use crate::nat::Nat;
use crate::xlat::{DropReason, Stats, Translator, Verdict, XlatConfig, OUT_BUF_LEN};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Room before a packet for the larger IPv6 header (and a Fragment header).
const HEADROOM: usize = 64;
/// Sessions visited per expiry sweep and shard.
const SWEEP_BUDGET: usize = 4096;

/// A worker's counters when it stops.
#[derive(Debug, Clone)]
pub struct WorkerStats {
    pub xlat: Stats,
    /// Packets the TUN device refused (full queue, no route): lost, so counted.
    pub tun_write_errors: u64,
}

/// Run until `stop` is set; returns the worker's counters.
pub fn run(tun: &Tun, nat: &Nat, cfg: XlatConfig, stop: &AtomicBool) -> io::Result<WorkerStats> {
    let mut write_errors = 0u64;
    let mut x = Translator::new(cfg);
    let mut buf = vec![0u8; HEADROOM + 65536];
    let mut out = vec![0u8; OUT_BUF_LEN];
    let start = Instant::now();
    let mut last_sweep = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = start.elapsed().as_millis() as u64;
        if now >= last_sweep + 1000 {
            last_sweep = now;
            nat.expire(now, SWEEP_BUDGET);
            while let Some(syn) = nat.take_released_syn() {
                let v = x.translate(&syn, &mut out, &mut nat.at(now));
                send(tun, v, &[], &out, &mut write_errors)?;
            }
            while let Some(syn) = nat.take_unanswered_syn() {
                let v = x.icmp4_error_for(&syn, 3, 3, DropReason::V4SynHeld, &mut out);
                send(tun, v, &[], &out, &mut write_errors)?;
            }
        }
        // One read per packet while packets wait; a poll (up to 200 ms, so
        // the sweep and the stop flag are seen) only when the queue is empty.
        let n = match tun.recv(&mut buf[HEADROOM..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tun.wait_readable(200)?;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let v = x.translate_in_place(&mut buf, HEADROOM, n, &mut out, &mut nat.at(now));
        send(tun, v, &buf, &out, &mut write_errors)?;
    }
    Ok(WorkerStats { xlat: x.stats, tun_write_errors: write_errors })
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
