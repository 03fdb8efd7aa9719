//! The few system calls std does not wrap, beside the TUN layer: the
//! monotonic clock and the open-files limit here, the recvmmsg(2) /
//! sendmmsg(2) batches the DNS64 server uses in [`mmsg`], the relay's
//! splice(2) in [`splice`], and the AF_XDP dataplane's bpf(2) program and
//! map handling in [`bpf`] and its sockets and rings in [`xsk`].

#![allow(unsafe_code)]

/// CLOCK_MONOTONIC in microseconds (sd_notify's MONOTONIC_USEC).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which `ts` is, for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Raises the soft limit on open files to the hard limit (the DNS64
/// server holds a socket per upstream query in flight, up to 4096, and a
/// shell's soft limit is often 1024). Returns the limit now in force.
pub fn raise_nofile_limit() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit, which `r` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 0;
    }
    if r.rlim_cur < r.rlim_max {
        let want = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
        // SAFETY: setrlimit reads one rlimit, which `want` is.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            return want.rlim_cur;
        }
    }
    r.rlim_cur
}

pub mod bpf;
/// The index of interface `name` in this thread's network namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated string, live for the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

mod mmsg;
pub mod splice;
#[cfg(test)]
mod xdp_tests;

/// For root-only tests elsewhere in the crate: whether this is root, and a
/// fresh network namespace for the calling thread (and its children).
#[cfg(test)]
pub mod testns {
    pub fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    pub fn unshare_net() {
        // SAFETY: unshare affects the calling thread only.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare(CLONE_NEWNET)");
    }

    pub fn sh(args: &[&str]) {
        let st = std::process::Command::new(args[0]).args(&args[1..]).status().expect(args[0]);
        assert!(st.success(), "{args:?}");
    }

    /// A fresh network namespace for this thread with a veth pair va/vb,
    /// both up; vb's ifindex (looked up in this namespace: not in /sys,
    /// which shows the namespace it was mounted in).
    pub fn veth_pair() -> u32 {
        unshare_net();
        sh(&["ip", "link", "add", "va", "type", "veth", "peer", "name", "vb"]);
        sh(&["ip", "link", "set", "va", "up"]);
        sh(&["ip", "link", "set", "vb", "up"]);
        super::ifindex("vb").expect("vb's ifindex")
    }
}
pub mod xsk;
pub use mmsg::{RecvBatch, SendBatch};

#[cfg(test)]
mod tests {
    use super::*;

    // A low soft limit on open files is raised to the hard one.
    #[test]
    fn nofile_soft_limit_raised_to_hard() {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: as in raise_nofile_limit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
        let low = libc::rlimit { rlim_cur: r.rlim_max.min(900), rlim_max: r.rlim_max };
        // SAFETY: setrlimit reads one rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
        assert_eq!(raise_nofile_limit(), r.rlim_max);
    }
}
