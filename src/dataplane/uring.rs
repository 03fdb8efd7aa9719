//! Batched TUN I/O through io_uring: one `io_uring_enter(2)` writes the
//! packets translated from the last batch and reads the next batch.
//!
//! The TUN character device has no `recvmmsg`/`sendmmsg`, so without this a
//! worker pays two system calls per packet. Worse, each write(2) runs the
//! receiver's wake-up, and the woken task preempts the worker on the way
//! out of that system call: per packet, not per batch. Profiles of the
//! small-UDP benchmark showed a fifth of the worker's time in that task
//! switch. With the writes of a whole batch inside one system call, the
//! receiver is woken once per batch and finds the whole batch queued.
//!
//! Buffers: two sets of read slots, used in turn. A batch is read into one
//! set and translated in place there, and its packets are written from that
//! set by the same call that reads the next batch into the other set, so a
//! read never overwrites a packet still to be written. Output that is not
//! in a slot (ICMP errors, software segments) is copied to an arena. The
//! call waits for every operation it submits, so nothing is in flight
//! between calls and every buffer is the worker's again when it returns.
//!
//! The TUN descriptor is non-blocking, so io_uring runs each read and write
//! inline, in order, and a read with nothing to read completes at once with
//! EAGAIN (it is never parked): the call never sleeps.

// The ring shares buffers with the kernel: the unsafe blocks are the pushes
// of requests that point into them.
#![allow(unsafe_code)]

use super::vnet::VNET_HDR_LEN;
use io_uring::{opcode, types, IoUring};
use std::io;
use std::os::fd::RawFd;

/// Reads per call at most (the batch size).
pub const MAX_READS: usize = 32;
/// Writes queued before they are flushed without waiting for the next read.
const MAX_WRITES: usize = 128;
/// Bytes of copied output (packets not in a read slot) per flush.
const ARENA: usize = 256 * 1024;
/// Reads submitted when the last batch was small: reads past the queued
/// packets cost an EAGAIN each, so the count follows the traffic.
const MIN_READS: usize = 4;
const WRITE: u64 = 1 << 32;

/// Whether this process may use io_uring at all (a tiny ring, dropped).
pub fn probe() -> io::Result<()> {
    IoUring::new(2).map(drop)
}

/// The read buffers: `2 * MAX_READS` slots of `slot_len` bytes, in two sets.
pub struct Slots {
    mem: Box<[u8]>,
    slot_len: usize,
    /// Where in a slot a read puts its first byte.
    read_at: usize,
    /// The set holding the batch being translated (0 or 1).
    cur: usize,
    /// Bytes read into each slot of the current set (0: nothing).
    lens: [usize; MAX_READS],
}

impl Slots {
    pub fn new(slot_len: usize, read_at: usize) -> Slots {
        Slots {
            mem: vec![0u8; 2 * MAX_READS * slot_len].into_boxed_slice(),
            slot_len,
            read_at,
            cur: 0,
            lens: [0; MAX_READS],
        }
    }

    /// Slot `i` of the current batch (the whole slot, headroom included) and
    /// the bytes read into it at `read_at`, or None if it holds no packet.
    pub fn packet(&mut self, i: usize) -> Option<(&mut [u8], usize)> {
        let n = *self.lens.get(i)?;
        if n == 0 {
            return None;
        }
        let at = (self.cur * MAX_READS + i) * self.slot_len;
        Some((&mut self.mem[at..at + self.slot_len], n))
    }

    /// The address range of every slot.
    fn span(&self) -> (usize, usize) {
        let base = self.mem.as_ptr() as usize;
        (base, base + self.mem.len())
    }
}

/// The ring and the writes queued for it.
pub struct Ring {
    ring: IoUring,
    fd: RawFd,
    /// One iovec pair per queued write: the virtio-net header (if any), the packet.
    iov: Box<[[libc::iovec; 2]; MAX_WRITES]>,
    iov_len: [u32; MAX_WRITES],
    hdrs: Box<[[u8; VNET_HDR_LEN]; MAX_WRITES]>,
    queued: usize,
    arena: Box<[u8]>,
    arena_used: usize,
    /// The slots' addresses: output there is written from where it is.
    span: (usize, usize),
    /// Reads to submit next time.
    reads: usize,
    /// Writes the device refused (counted as TUN write errors by the worker).
    pub write_errors: u64,
}

impl Ring {
    /// A ring for the TUN queue `fd` (non-blocking). Fails where io_uring is
    /// missing, disabled (`kernel.io_uring_disabled`) or filtered (seccomp).
    pub fn new(fd: RawFd, slots: &Slots) -> io::Result<Ring> {
        let entries = (MAX_READS + MAX_WRITES).next_power_of_two() as u32;
        // Keep submitting after a failed request; one thread submits.
        let ring = IoUring::builder()
            .setup_submit_all()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(entries)
            .or_else(|_| IoUring::new(entries))?;
        let empty = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        Ok(Ring {
            ring,
            fd,
            iov: Box::new([[empty; 2]; MAX_WRITES]),
            iov_len: [0; MAX_WRITES],
            hdrs: Box::new([[0; VNET_HDR_LEN]; MAX_WRITES]),
            queued: 0,
            arena: vec![0u8; ARENA].into_boxed_slice(),
            arena_used: 0,
            span: slots.span(),
            reads: MIN_READS,
            write_errors: 0,
        })
    }

    /// Queue `pkt` (behind `hdr`, the virtio-net header, if the device has
    /// them) for the next call. A packet in a read slot is written from
    /// there; any other is copied. Flushes first when the queue is full.
    pub fn queue(&mut self, hdr: Option<&[u8; VNET_HDR_LEN]>, pkt: &[u8]) -> io::Result<()> {
        let a = pkt.as_ptr() as usize;
        let copy = !(a >= self.span.0 && a + pkt.len() <= self.span.1);
        if self.queued == MAX_WRITES || (copy && self.arena_used + pkt.len() > ARENA) {
            self.flush()?;
        }
        let data = if copy {
            let Some(dst) = self.arena.get_mut(self.arena_used..self.arena_used + pkt.len()) else {
                // Larger than the whole arena: no TUN packet is.
                self.write_errors += 1;
                return Ok(());
            };
            dst.copy_from_slice(pkt);
            self.arena_used += pkt.len();
            dst.as_ptr()
        } else {
            pkt.as_ptr()
        };
        let i = self.queued;
        let mut n = 0;
        if let Some(h) = hdr {
            self.hdrs[i] = *h;
            self.iov[i][0] = libc::iovec { iov_base: self.hdrs[i].as_mut_ptr().cast(), iov_len: VNET_HDR_LEN };
            n = 1;
        }
        self.iov[i][n] = libc::iovec { iov_base: data as *mut libc::c_void, iov_len: pkt.len() };
        self.iov_len[i] = n as u32 + 1;
        self.queued += 1;
        Ok(())
    }

    /// Write what is queued, now.
    pub fn flush(&mut self) -> io::Result<()> {
        let n = self.push_writes()?;
        self.complete(n, None)
    }

    /// Write what is queued and read the next batch into the other set of
    /// `slots`, in one system call; returns the packets read (`slots.packet`).
    pub fn cycle(&mut self, slots: &mut Slots) -> io::Result<usize> {
        let mut n = self.push_writes()?;
        let next = 1 - slots.cur;
        let room = slots.slot_len - slots.read_at;
        for j in 0..self.reads {
            let at = (next * MAX_READS + j) * slots.slot_len + slots.read_at;
            let buf = slots.mem[at..at + room].as_mut_ptr();
            let e = opcode::Read::new(types::Fd(self.fd), buf, room as u32)
                .offset(u64::MAX)
                .rw_flags(libc::RWF_NOWAIT)
                .build()
                .user_data(j as u64);
            // SAFETY: the buffer lives in `slots`, which the caller lends us
            // until the read has completed (complete() waits for it).
            unsafe { self.ring.submission().push(&e) }.map_err(|_| io::Error::other("io_uring queue full"))?;
            n += 1;
        }
        slots.lens = [0; MAX_READS];
        self.complete(n, Some(&mut slots.lens))?;
        slots.cur = next;
        let got = slots.lens.iter().filter(|&&l| l > 0).count();
        // Next time: twice what came, within bounds.
        self.reads = (2 * got).clamp(MIN_READS, MAX_READS);
        Ok(got)
    }

    fn push_writes(&mut self) -> io::Result<usize> {
        for i in 0..self.queued {
            let e = opcode::Writev::new(types::Fd(self.fd), self.iov[i].as_ptr(), self.iov_len[i])
                .offset(u64::MAX)
                .build()
                .user_data(WRITE | i as u64);
            // SAFETY: the iovecs and what they point to (a slot, the arena or
            // `hdrs`) stay untouched until complete() has seen this write end.
            unsafe { self.ring.submission().push(&e) }.map_err(|_| io::Error::other("io_uring queue full"))?;
        }
        Ok(self.queued)
    }

    /// Submit, wait for all `n` completions, and take their results.
    fn complete(&mut self, n: usize, mut lens: Option<&mut [usize; MAX_READS]>) -> io::Result<()> {
        if n > 0 {
            loop {
                match self.ring.submit_and_wait(n) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        let mut seen = 0;
        let mut fatal = None;
        for cqe in self.ring.completion() {
            seen += 1;
            let r = cqe.result();
            let tag = cqe.user_data();
            if r == -libc::EBADF {
                fatal = Some(io::Error::from_raw_os_error(libc::EBADF));
            } else if tag & WRITE != 0 {
                // A full device queue or a vanished route loses this packet (counted).
                if r < 0 {
                    self.write_errors += 1;
                }
            } else if r > 0 {
                if let Some(l) = lens.as_deref_mut().and_then(|l| l.get_mut(tag as usize)) {
                    *l = r as usize;
                }
            } else if r < 0 && r != -libc::EAGAIN && r != -libc::EINTR {
                fatal = Some(io::Error::from_raw_os_error(-r));
            }
        }
        self.queued = 0;
        self.arena_used = 0;
        if let Some(e) = fatal {
            return Err(e);
        }
        if seen != n {
            return Err(io::Error::other(format!("io_uring: {seen} completions for {n} requests")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    /// Two connected loopback UDP sockets: the ring drives `a` (as a worker
    /// drives its TUN queue), the test plays the kernel side on `b`.
    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        (a, b)
    }

    /// Every packet of the current batch, in slot order.
    fn batch(slots: &mut Slots) -> Vec<Vec<u8>> {
        let at = slots.read_at;
        (0..MAX_READS).filter_map(|i| slots.packet(i).map(|(s, n)| s[at..at + n].to_vec())).collect()
    }

    #[test]
    fn reads_come_in_batches_in_order_and_an_empty_queue_does_not_block() {
        let (a, b) = pair();
        let mut slots = Slots::new(64 + 2048, 64);
        let mut ring = Ring::new(a.as_raw_fd(), &slots).unwrap();
        for i in 0..40u8 {
            b.send(&[i; 3]).unwrap();
        }
        let mut got = vec![];
        let mut calls = 0;
        while got.len() < 40 {
            calls += 1;
            assert!(calls < 10, "{} packets after 10 calls", got.len());
            let n = ring.cycle(&mut slots).unwrap();
            let b = batch(&mut slots);
            assert_eq!(b.len(), n);
            got.extend(b);
        }
        assert_eq!(got, (0..40u8).map(|i| vec![i; 3]).collect::<Vec<_>>());
        // The batch grew with the traffic: 4, 8, 16, then 12 of the 40.
        assert_eq!(calls, 4);
        // Nothing waiting: the call returns at once with nothing.
        let t = std::time::Instant::now();
        assert_eq!(ring.cycle(&mut slots).unwrap(), 0);
        assert!(t.elapsed() < std::time::Duration::from_millis(500));
        assert_eq!(batch(&mut slots), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn writes_go_out_in_order_from_their_slot_or_copied() {
        let (a, b) = pair();
        let mut slots = Slots::new(64 + 2048, 64);
        let mut ring = Ring::new(a.as_raw_fd(), &slots).unwrap();
        b.send(b"from the slot").unwrap();
        assert_eq!(ring.cycle(&mut slots).unwrap(), 1);
        let (buf, n) = slots.packet(0).unwrap();
        let in_slot = &buf[64..64 + n];
        ring.queue(Some(b"vnet hdr: "), in_slot).unwrap();
        // Output built elsewhere is copied when queued: changing it after
        // must not change what goes out.
        let mut elsewhere = b"copied".to_vec();
        ring.queue(None, &elsewhere).unwrap();
        elsewhere.copy_from_slice(b"CHANGE");
        assert_eq!(ring.cycle(&mut slots).unwrap(), 0);
        let mut r = [0u8; 64];
        let n = b.recv(&mut r).unwrap();
        assert_eq!(&r[..n], b"vnet hdr: from the slot");
        let n = b.recv(&mut r).unwrap();
        assert_eq!(&r[..n], b"copied");
        assert_eq!(ring.write_errors, 0);
    }

    #[test]
    fn a_full_queue_is_flushed_and_refused_writes_are_counted() {
        let (a, b) = pair();
        let mut slots = Slots::new(64 + 2048, 64);
        let mut ring = Ring::new(a.as_raw_fd(), &slots).unwrap();
        // Over MAX_WRITES queued: the first MAX_WRITES go out when the queue
        // fills, the rest with the next call, all in order.
        let count = MAX_WRITES as u16 + 20;
        for i in 0..count {
            ring.queue(None, &i.to_be_bytes()).unwrap();
        }
        ring.cycle(&mut slots).unwrap();
        let mut r = [0u8; 8];
        for i in 0..count {
            let n = b.recv(&mut r).unwrap();
            assert_eq!(&r[..n], &i.to_be_bytes());
        }
        // A write the descriptor refuses (a datagram over UDP's limit) is
        // counted and does not stop the ones after it.
        ring.queue(None, &vec![0u8; 70_000]).unwrap();
        ring.queue(None, b"after").unwrap();
        ring.flush().unwrap();
        assert_eq!(ring.write_errors, 1);
        let n = b.recv(&mut r).unwrap();
        assert_eq!(&r[..n], b"after");
    }
}
