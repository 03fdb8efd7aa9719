//! `splice(2)` through a pipe, and a socket's half-close: the system calls
//! the inbound relay moves bytes with (no copy through user space).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// A pipe for `splice(2)`, both ends non-blocking, closed on drop.
pub struct Pipe {
    pub r: RawFd,
    pub w: RawFd,
}

impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Pipe { r: fds[0], w: fds[1] })
    }

    /// Ask for `bytes` of capacity (rounded up to pages by the kernel, at
    /// most `/proc/sys/fs/pipe-max-size` unprivileged); the capacity had.
    pub fn set_capacity(&self, bytes: usize) -> io::Result<usize> {
        // SAFETY: F_SETPIPE_SZ takes an int argument, no memory.
        let r = unsafe { libc::fcntl(self.w, libc::F_SETPIPE_SZ, bytes as libc::c_int) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: both descriptors are this pipe's own, closed once.
        unsafe {
            libc::close(self.r);
            libc::close(self.w);
        }
    }
}

/// Move up to `len` bytes from `from` to `to` (one of them a pipe),
/// without blocking: `WouldBlock` when nothing can move now, 0 at the end
/// of the input.
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain descriptors and no offsets; the kernel moves the bytes.
    let r = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// No more bytes from this side of a socket (a FIN); it can still read.
pub fn shutdown_write(fd: RawFd) {
    // SAFETY: shutdown takes a descriptor and a flag, no memory.
    unsafe {
        libc::shutdown(fd, libc::SHUT_WR);
    }
}
