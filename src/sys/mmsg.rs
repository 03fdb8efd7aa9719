//! Datagram batches: up to N datagrams per recvmmsg(2) or sendmmsg(2)
//! call (the DNS64 server's UDP loop).

#![allow(unsafe_code)]

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

fn to_storage(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(&mut st as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write(&mut st as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (st, len as libc::socklen_t)
}

fn from_storage(st: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match st.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET, length checked).
            let sin = unsafe { &*(st as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6, length checked).
            let sin6 = unsafe { &*(st as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Received datagrams, up to `n` per recvmmsg(2) call, each in a slot of
/// `slot` bytes (a longer datagram is cut and flagged).
pub struct RecvBatch {
    slot: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    count: usize,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` point into the batch's own
// buffers and are rewritten before every call; nothing is shared.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(n: usize, slot: usize) -> Self {
        // SAFETY: these C structs are plain old data; zeroes are valid values.
        let (st, iov, hdr) = unsafe { std::mem::zeroed::<(libc::sockaddr_storage, libc::iovec, libc::mmsghdr)>() };
        RecvBatch {
            slot,
            bufs: vec![0; n * slot],
            addrs: vec![st; n],
            iovs: vec![iov; n],
            hdrs: vec![hdr; n],
            count: 0,
        }
    }

    /// One non-blocking recvmmsg(2): how many datagrams arrived.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.hdrs.len();
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * self.slot..].as_mut_ptr() as *mut libc::c_void,
                iov_len: self.slot,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at live buffers of the sizes given
        // (set just above); the kernel writes at most those.
        let rc = unsafe {
            libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        if rc < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        self.count = rc as usize;
        Ok(self.count)
    }

    /// Datagram `i` of the last call: its bytes, its sender, and whether it
    /// was cut to the slot size.
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>, bool) {
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(self.slot);
        let cut = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        (&self.bufs[i * self.slot..i * self.slot + len], from_storage(&self.addrs[i], h.msg_hdr.msg_namelen), cut)
    }
}

/// Datagrams to send with one sendmmsg(2) call.
#[derive(Default)]
pub struct SendBatch {
    data: Vec<u8>,
    spans: Vec<(usize, usize)>,
    addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: as for RecvBatch: the pointers are rebuilt before each call and
// point only into the batch itself.
unsafe impl Send for SendBatch {}

impl SendBatch {
    pub fn push(&mut self, payload: &[u8], to: SocketAddr) {
        self.spans.push((self.data.len(), payload.len()));
        self.data.extend_from_slice(payload);
        self.addrs.push(to_storage(&to));
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.spans.clear();
        self.addrs.clear();
    }

    /// One non-blocking sendmmsg(2) of the datagrams from `from` on: how
    /// many went. An error is about datagram `from` itself.
    pub fn send(&mut self, fd: RawFd, from: usize) -> io::Result<usize> {
        let n = self.spans.len().saturating_sub(from);
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: plain old data; zeroes are valid values.
        let (iov, hdr) = unsafe { std::mem::zeroed::<(libc::iovec, libc::mmsghdr)>() };
        self.iovs.resize(n, iov);
        self.hdrs.resize(n, hdr);
        for i in 0..n {
            let (off, len) = self.spans[from + i];
            self.iovs[i] = libc::iovec { iov_base: self.data[off..].as_mut_ptr() as *mut libc::c_void, iov_len: len };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = &mut self.addrs[from + i].0 as *mut _ as *mut libc::c_void;
            h.msg_namelen = self.addrs[from + i].1;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        // SAFETY: every header points at live buffers of the lengths given
        // (set just above); the kernel only reads them.
        let rc = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    // Datagrams go out in one sendmmsg and come back, with their senders,
    // in one recvmmsg; a datagram longer than its slot is flagged as cut.
    #[test]
    fn batches_round_trip() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let a = std::net::UdpSocket::bind(local).unwrap();
            let b = std::net::UdpSocket::bind(local).unwrap();
            let mut sb = SendBatch::default();
            for i in 0..5u8 {
                sb.push(&vec![i; 10 + i as usize * 20], b.local_addr().unwrap());
            }
            assert_eq!(sb.send(a.as_raw_fd(), 0).unwrap(), 5);
            std::thread::sleep(std::time::Duration::from_millis(50));
            let mut rb = RecvBatch::new(8, 64);
            assert_eq!(rb.recv(b.as_raw_fd()).unwrap(), 5);
            for i in 0..5 {
                let (d, from, cut) = rb.get(i);
                assert_eq!(from, Some(a.local_addr().unwrap()));
                assert_eq!(cut, 10 + i * 20 > 64);
                assert_eq!(d.len(), (10 + i * 20).min(64));
                assert!(d.iter().all(|&x| x == i as u8));
            }
            assert_eq!(rb.recv(b.as_raw_fd()).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        }
    }
}
