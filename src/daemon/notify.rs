//! sd_notify(3) without libsystemd: datagrams to $NOTIFY_SOCKET (a path, or
//! an abstract socket when it starts with '@'). Outside systemd every call
//! is a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<(UnixDatagram, String)>,
    /// WATCHDOG_USEC, when systemd asked for pings (and they are for this process).
    pub watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment systemd set; the variables are removed so child
    /// processes (`ip`) do not see them.
    pub fn from_env() -> Notifier {
        let sock = std::env::var("NOTIFY_SOCKET").ok();
        let wd_usec = std::env::var("WATCHDOG_USEC").ok().and_then(|v| v.parse::<u64>().ok());
        let wd_pid = std::env::var("WATCHDOG_PID").ok().and_then(|v| v.parse::<u32>().ok());
        for v in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(v);
        }
        let watchdog =
            wd_usec.filter(|&u| u > 0 && wd_pid.is_none_or(|p| p == std::process::id())).map(Duration::from_micros);
        let target = sock.and_then(|s| Self::socket().ok().map(|d| (d, s)));
        Notifier { target, watchdog }
    }

    /// Non-blocking: a notification must never stall the daemon. A receiver
    /// that does not read (systemd always does) loses messages instead.
    fn socket() -> std::io::Result<UnixDatagram> {
        let d = UnixDatagram::unbound()?;
        d.set_nonblocking(true)?;
        Ok(d)
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Send `state` (e.g. "READY=1\nSTATUS=..."); failures are ignored, as sd_notify does.
    pub fn send(&self, state: &str) {
        let Some((sock, path)) = &self.target else { return };
        let _ = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
        } else {
            sock.send_to(state.as_bytes(), path)
        };
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", crate::sys::monotonic_usec()));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    pub fn watchdog_ping(&self) {
        self.send("WATCHDOG=1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_socket() {
        let dir = std::env::temp_dir().join(format!("nat64d-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let n =
            Notifier { target: Some((UnixDatagram::unbound().unwrap(), path.display().to_string())), watchdog: None };
        n.ready("translating");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=translating");
        n.reloading();
        let len = rx.recv(&mut buf).unwrap();
        assert!(buf[..len].starts_with(b"RELOADING=1\nMONOTONIC_USEC="));
        std::fs::remove_dir_all(&dir).unwrap();
        Notifier::default().ready("no systemd: nothing happens");
    }

    // A receiver that never reads fills its queue; sending then returns at
    // once (the message is lost) rather than blocking the daemon. Found when
    // a reload hung in the lab test, whose notify socket was not drained.
    #[test]
    fn a_full_receiver_never_blocks() {
        let dir = std::env::temp_dir().join(format!("nat64d-notify-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier { target: Some((Notifier::socket().unwrap(), path.display().to_string())), watchdog: None };
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..5000 {
                n.watchdog_ping();
            }
            let _ = done.send(());
        });
        let r = finished.recv_timeout(Duration::from_secs(5));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(r.is_ok(), "sending to a full notify socket blocked");
    }
}
