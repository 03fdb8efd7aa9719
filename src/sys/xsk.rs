//! AF_XDP sockets over the kernel ABI (`linux/if_xdp.h`), no libxdp: a
//! UMEM (one mmap'd area of fixed-size frames) with its fill and completion
//! rings, and per socket an RX and a TX ring. The rings are single-producer,
//! single-consumer queues shared with the kernel: indexes are free-running
//! u32s, read with Acquire and published with Release.
//!
//! One worker owns a UMEM and every socket on it (one per interface it
//! serves; the second binds with `XDP_SHARED_UMEM`, so a frame received on
//! one interface is sent on the other without a copy). Nothing here
//! allocates or makes a system call per frame: the caller batches, and
//! [`Socket::kick`] (a sendto(2) to start transmission) and [`wait`] (a
//! poll(2)) run once per batch at most.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Frame size in the UMEM (one page: any Ethernet frame up to 9000 fits).
pub const FRAME: usize = 4096;

/// One mmap'd ring.
struct Ring {
    map: NonNull<u8>,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut u8,
    mask: u32,
    size: u32,
    /// Our copy of the index we move (producer for fill / TX, consumer for
    /// RX / completion) and the last value seen of the other.
    local: u32,
    seen: u32,
}

// SAFETY: a ring is owned by one worker thread at a time; the pointers stay
// valid for the mapping's life, which the ring owns.
unsafe impl Send for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by mmap with this length and is ours.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}

impl Ring {
    /// Map the ring `pgoff` of `fd` with `size` entries of `entry` bytes.
    fn map(fd: RawFd, off: &libc::xdp_ring_offset, size: u32, entry: usize, pgoff: u64) -> io::Result<Ring> {
        let len = off.desc as usize + size as usize * entry;
        // SAFETY: a fresh shared mapping of the socket's ring; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = p.cast::<u8>();
        // SAFETY: the offsets come from the kernel (XDP_MMAP_OFFSETS) and lie in the mapping.
        unsafe {
            Ok(Ring {
                map: NonNull::new_unchecked(base),
                map_len: len,
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                flags: base.add(off.flags as usize).cast(),
                desc: base.add(off.desc as usize),
                mask: size - 1,
                size,
                local: 0,
                seen: 0,
            })
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping, at an aligned u32 the kernel shares.
        unsafe { &*self.producer }
    }
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for producer.
        unsafe { &*self.consumer }
    }
    fn needs_wakeup(&self) -> bool {
        // SAFETY: as for producer.
        unsafe { (*self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0 }
    }

    // -- as the producer (fill, TX) --
    fn free(&mut self) -> u32 {
        self.seen = self.consumer().load(Ordering::Acquire);
        self.size - self.local.wrapping_sub(self.seen)
    }
    fn publish(&mut self) {
        self.producer().store(self.local, Ordering::Release);
    }

    // -- as the consumer (RX, completion) --
    fn ready(&mut self) -> u32 {
        self.seen = self.producer().load(Ordering::Acquire);
        self.seen.wrapping_sub(self.local)
    }
    fn release(&mut self) {
        self.consumer().store(self.local, Ordering::Release);
    }

    fn addr_at(&self, i: u32) -> *mut u64 {
        // SAFETY (callers): `i & mask` is within the ring's `size` entries of 8 bytes.
        unsafe { self.desc.cast::<u64>().add((i & self.mask) as usize) }
    }
    fn desc_at(&self, i: u32) -> *mut libc::xdp_desc {
        // SAFETY (callers): as addr_at, entries of 16 bytes.
        unsafe { self.desc.cast::<libc::xdp_desc>().add((i & self.mask) as usize) }
    }
}

fn sockopt<T>(fd: RawFd, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a live value of the size passed.
    let rc = unsafe {
        libc::setsockopt(fd, libc::SOL_XDP, name, (v as *const T).cast(), std::mem::size_of::<T>() as libc::socklen_t)
    };
    if rc != 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn offsets(fd: RawFd) -> io::Result<libc::xdp_mmap_offsets> {
    // SAFETY: all-zero is a valid xdp_mmap_offsets; getsockopt fills it.
    let mut o: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: `o` is writable for `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            (&mut o as *mut libc::xdp_mmap_offsets).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(o)
}

/// The frames area.
pub struct Umem {
    area: NonNull<u8>,
    len: usize,
}

// SAFETY: owned by one worker; the kernel writes frames only that the worker handed it.
unsafe impl Send for Umem {}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: our anonymous mapping of this length.
        unsafe { libc::munmap(self.area.as_ptr().cast(), self.len) };
    }
}

impl Umem {
    /// `frames` frames of [`FRAME`] bytes.
    pub fn new(frames: usize) -> io::Result<Umem> {
        let len = frames * FRAME;
        // SAFETY: a fresh private anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: mmap succeeded, so p is not null.
        Ok(Umem { area: unsafe { NonNull::new_unchecked(p.cast()) }, len })
    }

    pub fn frames(&self) -> usize {
        self.len / FRAME
    }

    /// The frame holding UMEM address `addr`, whole, and `addr`'s offset in it.
    pub fn frame(&mut self, addr: u64) -> Option<(&mut [u8], usize)> {
        let base = (addr as usize / FRAME) * FRAME;
        if base + FRAME > self.len {
            return None;
        }
        // SAFETY: the frame lies in the mapping; `&mut self` makes this the only view.
        let f = unsafe { std::slice::from_raw_parts_mut(self.area.as_ptr().add(base), FRAME) };
        Some((f, addr as usize - base))
    }
}

/// What a [`Socket::kick`] left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    Done,
    /// The kernel stopped at its batch limit or a full completion ring.
    Again,
}

/// Ring sizes: powers of two.
pub const RING: u32 = 2048;

/// An AF_XDP socket bound to one queue of one interface, with its RX and
/// TX rings and the UMEM's fill and completion rings for that device.
pub struct Socket {
    fd: OwnedFd,
    rx: Ring,
    tx: Ring,
    fill: Ring,
    comp: Ring,
    /// Bound in zero-copy mode (the driver's own DMA into the UMEM).
    pub zero_copy: bool,
    /// Why the kernel refused zero copy, when it was tried and refused
    /// (veth: EOPNOTSUPP, the driver has no XSK buffer pool support).
    pub zero_copy_refused: Option<io::Error>,
}

/// How a socket binds.
#[derive(Debug, Clone, Copy)]
pub struct Bind {
    pub ifindex: u32,
    pub queue: u32,
    /// Another socket of the same UMEM, already bound (XDP_SHARED_UMEM).
    pub shared_with: Option<RawFd>,
    /// Copy mode only (never try zero-copy).
    pub copy: bool,
}

impl Socket {
    /// A socket on `umem` (registered with the first socket; shared after).
    pub fn open(umem: &Umem, b: Bind) -> io::Result<Socket> {
        // SAFETY: socket(2) returns a new descriptor or -1.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if b.shared_with.is_none() {
            let reg = libc::xdp_umem_reg {
                addr: umem.area.as_ptr() as u64,
                len: umem.len as u64,
                chunk_size: FRAME as u32,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            sockopt(raw, libc::XDP_UMEM_REG, &reg)?;
        }
        for opt in [libc::XDP_UMEM_FILL_RING, libc::XDP_UMEM_COMPLETION_RING, libc::XDP_RX_RING, libc::XDP_TX_RING] {
            sockopt(raw, opt, &RING)?;
        }
        let o = offsets(raw)?;
        let d = std::mem::size_of::<libc::xdp_desc>();
        let rx = Ring::map(raw, &o.rx, RING, d, libc::XDP_PGOFF_RX_RING as u64)?;
        let tx = Ring::map(raw, &o.tx, RING, d, libc::XDP_PGOFF_TX_RING as u64)?;
        let fill = Ring::map(raw, &o.fr, RING, 8, libc::XDP_UMEM_PGOFF_FILL_RING)?;
        let comp = Ring::map(raw, &o.cr, RING, 8, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?;
        let mut s = Socket { fd, rx, tx, fill, comp, zero_copy: false, zero_copy_refused: None };
        let shared = b.shared_with.map_or(0, |f| f as u32);
        // A socket sharing another's UMEM takes no mode flags (the kernel
        // refuses them): it inherits copy or zero copy and need-wakeup.
        let (flags, modes): (u16, &[u16]) = match (b.shared_with, b.copy) {
            (Some(_), _) => (libc::XDP_SHARED_UMEM, &[0]),
            (None, true) => (libc::XDP_USE_NEED_WAKEUP, &[libc::XDP_COPY]),
            (None, false) => (libc::XDP_USE_NEED_WAKEUP, &[libc::XDP_ZEROCOPY, libc::XDP_COPY]),
        };
        let mut last = io::Error::from_raw_os_error(libc::EINVAL);
        for &m in modes {
            let addr = libc::sockaddr_xdp {
                sxdp_family: libc::AF_XDP as u16,
                sxdp_flags: flags | m,
                sxdp_ifindex: b.ifindex,
                sxdp_queue_id: b.queue,
                sxdp_shared_umem_fd: shared,
            };
            // SAFETY: `addr` is a live sockaddr_xdp of the size passed.
            let rc = unsafe {
                libc::bind(
                    raw,
                    (&addr as *const libc::sockaddr_xdp).cast(),
                    std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                s.zero_copy = m == libc::XDP_ZEROCOPY;
                return Ok(s);
            }
            last = io::Error::last_os_error();
            if m == libc::XDP_ZEROCOPY {
                s.zero_copy_refused = Some(io::Error::from_raw_os_error(last.raw_os_error().unwrap_or(libc::EINVAL)));
            }
        }
        Err(last)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Hand frames to the kernel to receive into: as many as the fill ring
    /// takes, at most `max`, from the end of `free`; returns how many.
    pub fn fill(&mut self, free: &mut Vec<u64>, max: usize) -> usize {
        let n = (self.fill.free() as usize).min(free.len()).min(max);
        for _ in 0..n {
            let Some(a) = free.pop() else { break };
            // SAFETY: the slot is one the ring's free count gave us.
            unsafe { *self.fill.addr_at(self.fill.local) = a };
            self.fill.local = self.fill.local.wrapping_add(1);
        }
        if n > 0 {
            self.fill.publish();
        }
        n
    }

    /// Frames the kernel has sent, back to `free`.
    pub fn complete(&mut self, free: &mut Vec<u64>) -> usize {
        let n = self.comp.ready();
        for _ in 0..n {
            // SAFETY: an entry the kernel produced.
            let a = unsafe { *self.comp.addr_at(self.comp.local) };
            self.comp.local = self.comp.local.wrapping_add(1);
            free.push(a / FRAME as u64 * FRAME as u64);
        }
        if n > 0 {
            self.comp.release();
        }
        n as usize
    }

    /// Up to `max` received frames as (address, length), into `into`.
    pub fn receive(&mut self, into: &mut Vec<(u64, u32)>, max: usize) -> usize {
        let n = (self.rx.ready() as usize).min(max);
        for _ in 0..n {
            // SAFETY: an entry the kernel produced.
            let d = unsafe { *self.rx.desc_at(self.rx.local) };
            self.rx.local = self.rx.local.wrapping_add(1);
            into.push((d.addr, d.len));
        }
        if n > 0 {
            self.rx.release();
        }
        n
    }

    /// Room in the TX ring.
    pub fn tx_room(&mut self) -> u32 {
        self.tx.free()
    }

    /// Queue a frame for sending (after [`Self::tx_room`] said there is room).
    pub fn send(&mut self, addr: u64, len: u32) {
        // SAFETY: the slot is one the ring's free count gave us.
        unsafe { *self.tx.desc_at(self.tx.local) = libc::xdp_desc { addr, len, options: 0 } };
        self.tx.local = self.tx.local.wrapping_add(1);
    }

    /// Publish what was queued and, when the kernel asks for it, start it
    /// sending (one sendto(2)). In copy mode the kernel sends at most a
    /// batch (32) per call and says EAGAIN when more wait, or when the
    /// completion ring is full: [`Kick::Again`], call again (after reaping
    /// completions).
    pub fn kick(&mut self) -> io::Result<Kick> {
        self.tx.publish();
        if !self.tx.needs_wakeup() {
            return Ok(Kick::Done);
        }
        // SAFETY: a zero-length sendto with no address on our socket.
        let rc = unsafe { libc::sendto(self.raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) => Ok(Kick::Again),
                // Busy (the driver is still sending), no buffer, link down:
                // the frames stay queued for the next kick.
                Some(libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN | libc::ENXIO) => Ok(Kick::Done),
                _ => Err(e),
            };
        }
        Ok(Kick::Done)
    }

    /// Frames queued for sending that the kernel has not taken yet.
    pub fn tx_pending(&mut self) -> u32 {
        self.tx.seen = self.tx.consumer().load(Ordering::Acquire);
        self.tx.local.wrapping_sub(self.tx.seen)
    }

    /// The kernel's counters for this socket (XDP_STATISTICS).
    pub fn statistics(&self) -> Option<libc::xdp_statistics> {
        // SAFETY: all-zero is valid; getsockopt fills it.
        let mut s: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `s` is writable for `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut s as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(s)
    }
}

/// Wait up to `ms` for any of the sockets (at most two: the rest are not
/// watched) to have frames (one poll(2)).
pub fn wait(sockets: &[RawFd], ms: i32) -> io::Result<()> {
    let mut fds: [libc::pollfd; 2] = [libc::pollfd { fd: -1, events: 0, revents: 0 }; 2];
    for (p, &fd) in fds.iter_mut().zip(sockets) {
        *p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    }
    // SAFETY: `fds` holds 2 pollfds; unused ones have fd -1 (ignored).
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Raw IP sockets (header included) for the packets the AF_XDP dataplane
/// hands to the kernel: it routes them and resolves their next hop. One
/// sendto(2) per packet: the slow path, taken only while a neighbour is
/// unresolved or for destinations that are not on an Ethernet route.
pub struct RawIp {
    v4: OwnedFd,
    v6: OwnedFd,
}

impl RawIp {
    /// Needs CAP_NET_RAW.
    pub fn open() -> io::Result<RawIp> {
        let open = |family| {
            // SAFETY: socket(2) returns a new descriptor or -1.
            let fd = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) };
            if fd < 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(e.kind(), format!("raw IP socket: {e} (needs CAP_NET_RAW)")));
            }
            // SAFETY: a new descriptor we own.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        Ok(RawIp { v4: open(libc::AF_INET)?, v6: open(libc::AF_INET6)? })
    }

    /// Send one IP packet, header and all (IPPROTO_RAW implies the header is ours).
    pub fn send(&self, pkt: &[u8]) -> io::Result<()> {
        let rc = match pkt.first().map(|b| b >> 4) {
            Some(4) if pkt.len() >= 20 => {
                let mut sa: libc::sockaddr_in = unsafe_zeroed();
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_addr.s_addr = u32::from_ne_bytes([pkt[16], pkt[17], pkt[18], pkt[19]]);
                // SAFETY: `pkt` and `sa` are live for the call, with the sizes passed.
                unsafe {
                    libc::sendto(
                        self.v4.as_raw_fd(),
                        pkt.as_ptr().cast(),
                        pkt.len(),
                        libc::MSG_DONTWAIT,
                        (&sa as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                }
            }
            Some(6) if pkt.len() >= 40 => {
                let mut sa: libc::sockaddr_in6 = unsafe_zeroed();
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_addr.s6_addr.copy_from_slice(&pkt[24..40]);
                // SAFETY: as above.
                unsafe {
                    libc::sendto(
                        self.v6.as_raw_fd(),
                        pkt.as_ptr().cast(),
                        pkt.len(),
                        libc::MSG_DONTWAIT,
                        (&sa as *const libc::sockaddr_in6).cast(),
                        std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    )
                }
            }
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// An all-zero socket address (valid for the plain C structs used here).
fn unsafe_zeroed<T: Copy>() -> T {
    // SAFETY: only called for sockaddr_in / sockaddr_in6, for which all-zero is valid.
    unsafe { std::mem::zeroed() }
}
