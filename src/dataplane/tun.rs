//! A Linux TUN device (`/dev/net/tun`, TUNSETIFF with IFF_TUN | IFF_NO_PI):
//! the ioctl, read, write and poll layer, one of the three places with
//! `unsafe` code (with `uring.rs` and `sys/`), each block with its SAFETY
//! reason. With more than one queue the device is IFF_MULTI_QUEUE: one file
//! descriptor per worker, and the kernel spreads flows over them by hash.
//! With IFF_VNET_HDR (TUNSETOFFLOAD) every packet carries a virtio-net
//! header; `vnet.rs` parses and writes it and handles the super-packets.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

const IFNAMSIZ: usize = 16;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

/// The offloads a device was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offloads {
    /// Partial checksums and TCP segmentation (TSO4, TSO6, ECN).
    pub tso: bool,
    /// UDP segmentation (USO4, USO6; Linux 6.2 and later).
    pub uso: bool,
}

#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TUN device: reads and writes whole IP packets.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
    /// Every read and write carries a virtio-net header (IFF_VNET_HDR).
    vnet: bool,
}

impl Tun {
    /// Create (or attach to) the TUN device `name`, single queue.
    pub fn open(name: &str) -> io::Result<Tun> {
        Self::open_flags(name, IFF_TUN | IFF_NO_PI)
    }

    /// Create (or attach to) `name` with `n` queues (multi-queue when n > 1),
    /// with virtio-net headers when `vnet` (for offloads, see [`Tun::set_offload`]).
    pub fn open_queues(name: &str, n: usize, vnet: bool) -> io::Result<Vec<Tun>> {
        let mut flags = IFF_TUN | IFF_NO_PI;
        if n > 1 {
            flags |= IFF_MULTI_QUEUE;
        }
        if vnet {
            flags |= IFF_VNET_HDR;
        }
        let first = Self::open_flags(name, flags)?;
        let actual = first.name.clone();
        let mut v = Vec::with_capacity(n);
        v.push(first);
        for _ in 1..n.max(1) {
            v.push(Self::open_flags(&actual, flags)?);
        }
        Ok(v)
    }

    /// Ask the kernel for TSO (and USO where it has it) on this device: it
    /// then hands over super-packets with partial checksums and segments
    /// the ones written back. Needs a device opened with virtio-net headers.
    pub fn set_offload(&self) -> io::Result<Offloads> {
        if !self.vnet {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "offloads need IFF_VNET_HDR"));
        }
        let tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
        for (flags, uso) in [(tso | TUN_F_USO4 | TUN_F_USO6, true), (tso, false)] {
            // SAFETY: TUNSETOFFLOAD takes its flags by value; the fd is open and owned.
            let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), TUNSETOFFLOAD as _, flags as libc::c_ulong) };
            if rc == 0 {
                return Ok(Offloads { tso: true, uso });
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
        Err(io::Error::new(io::ErrorKind::Unsupported, "the kernel refused TSO offloads on TUN"))
    }

    pub fn has_vnet_hdr(&self) -> bool {
        self.vnet
    }

    fn open_flags(name: &str, flags: libc::c_short) -> io::Result<Tun> {
        if name.is_empty()
            || name.len() >= IFNAMSIZ
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("'{name}' is not a valid interface name (1-15 of [A-Za-z0-9._-])"),
            ));
        }
        let file = OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
        let mut req = IfReq { name: [0; IFNAMSIZ], flags, _pad: [0; 22] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReq lays
        // out (name, flags, padding to 40 bytes); the fd is open and owned.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // Non-blocking: the worker reads until the queue is empty and polls
        // only then, rather than a poll and a read for every packet.
        // SAFETY: F_GETFL / F_SETFL on an open, owned fd; no pointers passed.
        let rc = unsafe {
            let fl = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            if fl < 0 {
                fl
            } else {
                libc::fcntl(file.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK)
            }
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let end = req.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        Ok(Tun { file, name: String::from_utf8_lossy(&req.name[..end]).into_owned(), vnet: flags & IFF_VNET_HDR != 0 })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue's descriptor (non-blocking), for batched I/O.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }

    /// Wait up to `timeout_ms` for a packet; true when one can be read.
    pub fn wait_readable(&self, timeout_ms: i32) -> io::Result<bool> {
        let mut pfd = libc::pollfd { fd: self.file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        match rc {
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
            0 => Ok(false),
            _ => Ok(pfd.revents & libc::POLLIN != 0),
        }
    }

    /// Read one packet into `buf`; returns its length, or an error of kind
    /// `WouldBlock` when no packet is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call.
        let n = unsafe { libc::read(self.file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Write one packet behind a virtio-net header (one writev).
    pub fn send_vnet(&self, hdr: &[u8], pkt: &[u8]) -> io::Result<usize> {
        let iov = [
            libc::iovec { iov_base: hdr.as_ptr() as *mut libc::c_void, iov_len: hdr.len() },
            libc::iovec { iov_base: pkt.as_ptr() as *mut libc::c_void, iov_len: pkt.len() },
        ];
        // SAFETY: both iovecs point into slices valid for reads for the
        // duration of the call; writev does not write through them.
        let n = unsafe { libc::writev(self.file.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Write one packet.
    pub fn send(&self, pkt: &[u8]) -> io::Result<usize> {
        // SAFETY: `pkt` is valid for reads of `pkt.len()` bytes for the call.
        let n = unsafe { libc::write(self.file.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names() {
        for n in ["", "a-name-that-is-too-long", "bad/name", "sp ace"] {
            assert_eq!(Tun::open(n).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{n:?}");
        }
    }
}
