//! The daemon's management listeners: the control socket `nat64ctl` talks
//! to (one JSON request and answer per connection, [`super::control`]) and
//! the optional Prometheus endpoint (HTTP/1.0 GET /metrics).

use super::control::{self, Response};
use super::State;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// Bind the control socket: its directory made 0750 if missing, the socket
/// 0660, and a stale socket (no daemon answering) replaced.
pub fn bind_control(path: &Path) -> Result<UnixListener, String> {
    let p = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750));
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        // Only ever a stale socket is removed: a regular file, a directory
        // or a link at that path is the operator's, and stays.
        if !meta.file_type().is_socket() {
            return Err(format!(
                "{p} exists and is not a socket; refusing to replace it (choose another control.socket)"
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(format!("another nat64d answers on {p}"));
        }
        std::fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket {p}: {e}"))?;
    }
    let l = UnixListener::bind(path).map_err(|e| format!("cannot bind the control socket {p}: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("cannot set the permissions of {p}: {e}"))?;
    Ok(l)
}

/// Control connections served at once; one more is told the daemon is busy.
pub const MAX_CONTROL_CLIENTS: usize = 16;
/// Scrapes served at once.
pub const MAX_METRICS_CLIENTS: usize = 8;
/// The whole request must arrive within this (however slowly it trickles).
pub const CONTROL_DEADLINE: Duration = Duration::from_secs(5);
pub const METRICS_DEADLINE: Duration = Duration::from_secs(2);

/// A whole answer (a dump of up to MAX_DUMP lines) must be taken by the
/// client within this; a client that stops reading is cut off, and no lock
/// is held meanwhile (dumps are written between shard walks).
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

/// A writer that refuses to go on once its deadline has passed.
struct Deadline<W> {
    inner: W,
    until: std::time::Instant,
}

impl<W> Deadline<W> {
    fn new(inner: W, within: Duration) -> Self {
        Deadline { inner, until: std::time::Instant::now() + within }
    }
}

impl<W: Write> Write for Deadline<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if std::time::Instant::now() > self.until {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took too long to read the answer",
            ));
        }
        self.inner.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A stream whose reads can be bounded in time (Unix and TCP sockets).
trait Timed: Read + Write {
    fn set_timeout(&self, t: Option<Duration>) -> std::io::Result<()>;
}

impl Timed for UnixStream {
    fn set_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(t)
    }
}

impl Timed for std::net::TcpStream {
    fn set_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(t)
    }
}

/// Read until `done(bytes)` says the request is whole, at most `max` bytes
/// and within `deadline` in all: a client sending a byte every few seconds
/// gets "timed out", not a slot for as long as it likes.
fn read_by<S: Timed>(
    s: &mut S,
    deadline: Duration,
    max: usize,
    done: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, String> {
    let start = std::time::Instant::now();
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    while !done(&buf) {
        let left = deadline.checked_sub(start.elapsed()).filter(|d| !d.is_zero());
        let Some(left) = left else {
            return Err(format!("timed out: no whole request within {} s", deadline.as_secs()));
        };
        s.set_timeout(Some(left)).map_err(|e| format!("cannot read the request: {e}"))?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(format!("timed out: no whole request within {} s", deadline.as_secs()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read the request: {e}")),
        }
        if buf.len() > max {
            return Err(format!("request longer than {max} bytes"));
        }
    }
    Ok(buf)
}

/// A slot among `max` concurrent clients, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        let mut n = active.load(Ordering::Relaxed);
        loop {
            if n >= max {
                return None;
            }
            match active.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Slot(Arc::clone(active))),
                Err(now) => n = now,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn answer(s: &mut UnixStream, resp: &Response) {
    let mut line = serde_json::to_string(resp)
        .unwrap_or_else(|e| format!("{{\"ok\":false,\"error\":\"cannot encode the answer: {e}\"}}"));
    line.push('\n');
    let _ = s.set_write_timeout(Some(CONTROL_DEADLINE));
    let _ = s.write_all(line.as_bytes());
}

/// The control socket: each client in a thread of its own, at most
/// [`MAX_CONTROL_CLIENTS`] at once (one more is answered "busy" at once),
/// each request whole within [`CONTROL_DEADLINE`].
pub fn serve_control(state: Arc<State>, listener: UnixListener) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let mut s = match conn {
            Ok(s) => s,
            Err(e) => {
                warn!("control socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(slot) = Slot::take(&active, MAX_CONTROL_CLIENTS) else {
            answer(&mut s, &Response::err(format!("busy: {MAX_CONTROL_CLIENTS} control connections open; try again")));
            continue;
        };
        let st = Arc::clone(&state);
        let spawned = std::thread::Builder::new().name("nat64d-ctl-c".into()).spawn(move || {
            let _slot = slot;
            let req = match read_by(&mut s, CONTROL_DEADLINE, control::MAX_REQUEST, |b| b.contains(&b'\n')) {
                Ok(bytes) => match std::str::from_utf8(&bytes) {
                    Ok(text) => control::parse_request(text.trim()),
                    Err(_) => Err("not a valid request: not UTF-8".into()),
                },
                Err(e) => Err(e),
            };
            match req {
                Ok(req) => {
                    let _ = s.set_write_timeout(Some(CONTROL_DEADLINE));
                    let mut out = std::io::BufWriter::new(Deadline::new(&mut s, ANSWER_DEADLINE));
                    if let Err(e) = st.respond(req, &mut out).and_then(|_| out.flush()) {
                        warn!("control socket: answer not delivered: {e}");
                    }
                }
                Err(e) => answer(&mut s, &Response::err(e)),
            }
        });
        if let Err(e) = spawned {
            warn!("control socket: cannot start a thread for a client: {e}");
        }
    }
}

/// A minimal HTTP/1.0 responder: GET /metrics gives the Prometheus text.
/// Scrapes are served concurrently, at most [`MAX_METRICS_CLIENTS`] at once,
/// each request head whole within [`METRICS_DEADLINE`].
pub fn serve_metrics(state: Arc<State>, listener: TcpListener) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let Some(slot) = Slot::take(&active, MAX_METRICS_CLIENTS) else {
            let _ = s.write_all(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            continue;
        };
        let st = Arc::clone(&state);
        let _ = std::thread::Builder::new().name("nat64d-metrics-c".into()).spawn(move || {
            let _slot = slot;
            let head_done = |b: &[u8]| b.windows(4).any(|w| w == b"\r\n\r\n") || b.windows(2).any(|w| w == b"\n\n");
            let (status, ctype, body) = match read_by(&mut s, METRICS_DEADLINE, 2048, head_done) {
                Ok(head) => {
                    let req = String::from_utf8_lossy(&head);
                    let path = req.split_whitespace().nth(1).unwrap_or("");
                    if req.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
                        ("200 OK", "text/plain; version=0.0.4; charset=utf-8", st.report().prometheus())
                    } else {
                        ("404 Not Found", "text/plain; charset=utf-8", "nat64d: metrics are at GET /metrics\n".into())
                    }
                }
                Err(e) => ("408 Request Timeout", "text/plain; charset=utf-8", format!("nat64d: {e}\n")),
            };
            let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                s,
                "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 18: a control-socket path that is a regular file is refused, not
    // deleted; a stale socket (nobody answering) is replaced; a live one is
    // refused as another daemon's.
    #[test]
    fn only_a_stale_socket_is_replaced() {
        let dir = std::env::temp_dir().join(format!("nat64d-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("precious");
        std::fs::write(&file, b"operator data").unwrap();
        let e = bind_control(&file).unwrap_err();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"operator data", "left as it was");
        let sock = dir.join("control.sock");
        drop(UnixListener::bind(&sock).unwrap()); // stale: bound, then closed
        let live = bind_control(&sock).expect("a stale socket is replaced");
        let e = bind_control(&sock).unwrap_err();
        assert!(e.contains("another nat64d answers"), "{e}");
        drop(live);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // Issue 18: one slow client cannot hold the control socket. A request
    // trickled a byte at a time is cut at the deadline with "timed out"
    // (not "Resource temporarily unavailable"); a whole one is read at once.
    #[test]
    fn a_trickling_client_times_out_within_the_deadline() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            for _ in 0..10 {
                if b.write_all(b"{").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        let start = std::time::Instant::now();
        let e = read_by(&mut a, Duration::from_millis(500), 1024, |x| x.contains(&b'\n')).unwrap_err();
        assert!(e.starts_with("timed out"), "{e}");
        assert!(start.elapsed() < Duration::from_millis(900), "the deadline is for the whole request");
        let _ = writer.join();
        let (mut a, mut b) = UnixStream::pair().unwrap();
        b.write_all(b"{\"cmd\":\"stats\"}\n").unwrap();
        assert_eq!(
            read_by(&mut a, Duration::from_secs(1), 1024, |x| x.contains(&b'\n')).unwrap(),
            b"{\"cmd\":\"stats\"}\n"
        );
        b.write_all(&[b'x'; 2000]).unwrap();
        assert!(read_by(&mut a, Duration::from_secs(1), 1024, |x| x.contains(&b'\n')).unwrap_err().contains("longer"));
    }

    // The bound on concurrent clients: slots run out at the limit and come
    // back when a client is done.
    #[test]
    fn client_slots_are_bounded_and_returned() {
        let active = Arc::new(AtomicUsize::new(0));
        let held: Vec<Slot> = (0..3).map(|_| Slot::take(&active, 3).unwrap()).collect();
        assert!(Slot::take(&active, 3).is_none());
        drop(held);
        assert_eq!(active.load(Ordering::Relaxed), 0);
        assert!(Slot::take(&active, 3).is_some());
    }
}
