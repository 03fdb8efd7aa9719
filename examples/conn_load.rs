//! A load generator that many hosts' worth of source addresses can drive
//! (wrk and iperf3 speak from one address, which source-address ECMP sends
//! to one gateway): scripts/ecmp_bench.py runs it in the lab's client and
//! server namespaces.
//!
//!   conn_load serve ADDR PORT              answer each connection: read the request, send
//!                                          100 bytes, close; a connection that sends more
//!                                          than 64 bytes is a bulk one: read it to the end,
//!                                          then answer with the byte count (8 bytes)
//!   conn_load cps DEST PORT SOURCES SECS THREADS   new connections per second (a request,
//!                                          the answer, close) from SOURCES (comma-separated)
//!                                          in turn; prints "cps N errors E"
//!   conn_load bulk DEST PORT SOURCES SECS  one connection per source, each sending for SECS;
//!                                          prints "gbps X bytes B"

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
const ANSWER: [u8; 100] = [b'x'; 100];

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data, large enough for either family.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V6(v) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: v.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: v.ip().octets() },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
        SocketAddr::V4(v) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: v.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*v.ip()).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// A TCP connection to `dest` from `src` (port chosen by the kernel).
fn connect_from(src: IpAddr, dest: SocketAddr) -> std::io::Result<TcpStream> {
    let fam = if dest.is_ipv6() { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2); the descriptor is owned by the TcpStream below.
    let fd = unsafe { libc::socket(fam, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let (s, sl) = sockaddr(SocketAddr::new(src, 0));
    let (d, dl) = sockaddr(dest);
    // SAFETY: valid sockaddrs of the lengths given.
    if unsafe { libc::bind(fd, &s as *const _ as *const libc::sockaddr, sl) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::connect(fd, &d as *const _ as *const libc::sockaddr, dl) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stream)
}

fn serve(addr: SocketAddr) {
    let l = match TcpListener::bind(addr) {
        Ok(l) => Arc::new(l),
        Err(e) => fail(&format!("cannot listen on {addr}: {e}")),
    };
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let l = l.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let Ok((mut c, _)) = l.accept() else { continue };
                    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut n = 0u64;
                    let mut bulk = false;
                    while let Ok(k) = c.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                        n += k as u64;
                        if !bulk && n > 64 {
                            bulk = true;
                        }
                        if !bulk && buf[..k].ends_with(b"\r\n\r\n") {
                            break;
                        }
                    }
                    let _ = if bulk { c.write_all(&n.to_be_bytes()) } else { c.write_all(&ANSWER) };
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

fn cps(dest: SocketAddr, sources: Vec<IpAddr>, secs: u64, threads: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let (done, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let sources = Arc::new(sources);
    let start = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, done, errors, sources) = (stop.clone(), done.clone(), errors.clone(), sources.clone());
            std::thread::spawn(move || {
                let mut i = t;
                let mut buf = [0u8; 256];
                while !stop.load(Ordering::Relaxed) {
                    let src = sources[i % sources.len()];
                    i += threads;
                    let ok = connect_from(src, dest).and_then(|mut c| {
                        c.set_read_timeout(Some(Duration::from_secs(3)))?;
                        c.write_all(REQUEST)?;
                        let mut got = 0;
                        while got < ANSWER.len() {
                            match c.read(&mut buf)? {
                                0 => break,
                                k => got += k,
                            }
                        }
                        if got == ANSWER.len() {
                            Ok(())
                        } else {
                            Err(std::io::Error::other("short answer"))
                        }
                    });
                    match ok {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    // The figure is what completed within the window: a connection whose
    // SYN met a 4-tuple still in TIME_WAIT at the server waits out the
    // kernel's SYN retries (1 s, 3 s, ...), and waiting for it would both
    // stretch the run and dilute the rate. The process exits with those
    // threads still blocked.
    let el = start.elapsed().as_secs_f64();
    println!("cps {:.0} errors {}", done.load(Ordering::Relaxed) as f64 / el, errors.load(Ordering::Relaxed));
    drop(hs);
    std::process::exit(0);
}

fn bulk(dest: SocketAddr, sources: Vec<IpAddr>, secs: u64) {
    let start = Instant::now();
    let hs: Vec<_> = sources
        .into_iter()
        .map(|src| {
            std::thread::spawn(move || -> std::io::Result<u64> {
                let mut c = connect_from(src, dest)?;
                c.set_read_timeout(Some(Duration::from_secs(30)))?;
                let chunk = vec![b'b'; 128 * 1024];
                while start.elapsed() < Duration::from_secs(secs) {
                    c.write_all(&chunk)?;
                }
                c.shutdown(std::net::Shutdown::Write)?;
                let mut n = [0u8; 8];
                c.read_exact(&mut n)?;
                Ok(u64::from_be_bytes(n))
            })
        })
        .collect();
    let mut total = 0;
    for h in hs {
        match h.join() {
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => eprintln!("bulk connection: {e}"),
            Err(_) => eprintln!("bulk connection panicked"),
        }
    }
    let el = start.elapsed().as_secs_f64();
    println!("gbps {:.3} bytes {total}", total as f64 * 8.0 / el / 1e9);
}

/// Say what is wrong and exit 2.
fn fail(why: &str) -> ! {
    eprintln!("conn_load: {why} (usage: see the comment at the top of examples/conn_load.rs)");
    std::process::exit(2);
}

/// `s` as a `what`, or a clear exit.
fn arg<T: std::str::FromStr>(s: &str, what: &str) -> T {
    s.parse().unwrap_or_else(|_| fail(&format!("'{s}' is not {what}")))
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let addr = |i: usize| SocketAddr::new(arg(&a[i], "an address"), arg(&a[i + 1], "a port"));
    let sources = |i: usize| -> Vec<IpAddr> { a[i].split(',').map(|s| arg(s, "a source address")).collect() };
    match a.first().map(String::as_str) {
        Some("serve") if a.len() == 3 => serve(addr(1)),
        Some("cps") if a.len() == 6 => cps(addr(1), sources(3), arg(&a[4], "seconds"), arg(&a[5], "a thread count")),
        Some("bulk") if a.len() == 5 => bulk(addr(1), sources(3), arg(&a[4], "seconds")),
        _ => fail("unknown command or wrong number of arguments"),
    }
}
