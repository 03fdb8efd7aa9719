//! A Linux TUN device (`/dev/net/tun`, TUNSETIFF with IFF_TUN | IFF_NO_PI):
//! the only place with `unsafe` code, each block with its SAFETY reason.
//! With more than one queue the device is IFF_MULTI_QUEUE: one file
//! descriptor per worker, and the kernel spreads flows over them by hash.
//! IFF_VNET_HDR offloads are the next step of the dataplane.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

const IFNAMSIZ: usize = 16;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

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
}

impl Tun {
    /// Create (or attach to) the TUN device `name`, single queue.
    pub fn open(name: &str) -> io::Result<Tun> {
        Self::open_flags(name, IFF_TUN | IFF_NO_PI)
    }

    /// Create (or attach to) `name` with `n` queues (multi-queue when n > 1).
    pub fn open_queues(name: &str, n: usize) -> io::Result<Vec<Tun>> {
        if n <= 1 {
            return Ok(vec![Self::open(name)?]);
        }
        let first = Self::open_flags(name, IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE)?;
        let mut v = Vec::with_capacity(n);
        let actual = first.name.clone();
        v.push(first);
        for _ in 1..n {
            v.push(Self::open_flags(&actual, IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE)?);
        }
        Ok(v)
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
        Ok(Tun { file, name: String::from_utf8_lossy(&req.name[..end]).into_owned() })
    }

    pub fn name(&self) -> &str {
        &self.name
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
