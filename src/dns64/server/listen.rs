//! The transports: the UDP receive loops (recvmmsg/sendmmsg batches) and
//! the TCP listeners and connections (RFC 7766), handing each query to the
//! handler.

use super::handler::{answer, fast_path, Fast, Scratch};
use super::{allowed, SettingsView, Shared};
use crate::sys::{RecvBatch, SendBatch};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tracing::debug;

/// Datagrams taken per recvmmsg(2), and the largest query we read whole
/// (a longer one is cut, counted as dropped and not answered).
pub(super) const UDP_BATCH: usize = 32;
pub(super) const UDP_SLOT: usize = 4096;

/// One socket's receive loop: a batch of queries per recvmmsg(2), the
/// fast-path replies of the batch in one sendmmsg(2); misses go to tasks.
pub(super) async fn udp_loop(sh: Arc<Shared>, sock: Arc<UdpSocket>) {
    let fd = sock.as_raw_fd();
    let mut rb = RecvBatch::new(UDP_BATCH, UDP_SLOT);
    let mut sb = SendBatch::default();
    let mut sc = Scratch::new();
    let mut view = SettingsView::new(&sh);
    loop {
        if let Err(e) = sock.readable().await {
            debug!("dns64: udp readiness: {e}");
            continue;
        }
        let n = match sock.try_io(Interest::READABLE, || rb.recv(fd)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                debug!("dns64: udp receive: {e}");
                continue;
            }
        };
        let s = view.current(&sh);
        sh.c.queries_udp.fetch_add(n as u64, Relaxed);
        let now_ms = sh.now_ms(); // one clock read per batch
        for i in 0..n {
            let (q, src, cut) = rb.get(i);
            let Some(src) = src.filter(|_| !cut) else {
                sh.c.dropped.fetch_add(1, Relaxed);
                continue;
            };
            match fast_path(&sh, s, q, src, &mut sc, true, now_ms) {
                Fast::Reply => sb.push(&sc.out, src),
                Fast::Drop => {}
                Fast::Resolve(h) => {
                    if sh.inflight.fetch_add(1, Relaxed) >= sh.cfg.max_inflight {
                        sh.inflight.fetch_sub(1, Relaxed);
                        sh.c.overload.fetch_add(1, Relaxed);
                        continue;
                    }
                    let (sh, s, sock, q) = (sh.clone(), s.clone(), sock.clone(), q.to_vec());
                    let key = h.map(|h| sc.key[..h.key_len].to_vec());
                    tokio::spawn(async move {
                        if let Some(a) = answer(&sh, &s, &q, h.zip(key), true).await {
                            let _ = sock.send_to(&a, src).await;
                        }
                        sh.inflight.fetch_sub(1, Relaxed);
                    });
                }
            }
        }
        let mut sent = 0;
        while sent < sb.len() {
            match sock.try_io(Interest::WRITABLE, || sb.send(fd, sent)) {
                Ok(k) => sent += k.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if sock.writable().await.is_err() {
                        break;
                    }
                }
                // This reply cannot go (an unreachable client, say): skip it.
                Err(_) => sent += 1,
            }
        }
        sb.clear();
    }
}

pub(super) async fn tcp_loop(sh: Arc<Shared>, l: TcpListener) {
    loop {
        let (conn, peer) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                debug!("dns64: tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // The client ACL at accept: a client that may not resolve never
        // holds one of the allowed clients' connections. It gets one query
        // answered REFUSED within a second, from a small budget of its own,
        // and is closed. Then the caps: in all, per address, per /64.
        if !allowed(&sh.settings(), peer) {
            if sh.tcp_refusing.fetch_add(1, Relaxed) >= MAX_TCP_REFUSING {
                sh.tcp_refusing.fetch_sub(1, Relaxed);
                sh.c.refused.fetch_add(1, Relaxed);
                continue; // closes it
            }
            let sh = sh.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(REFUSE_DEADLINE, refuse_one(&sh, conn, peer)).await;
                sh.tcp_refusing.fetch_sub(1, Relaxed);
            });
            continue;
        }
        let Some(guard) = TcpGuard::take(&sh, peer.ip()) else {
            sh.c.overload.fetch_add(1, Relaxed);
            continue;
        };
        tokio::spawn(async move {
            let _ = tcp_conn(guard.sh.clone(), conn, peer).await;
            drop(guard);
        });
    }
}

/// The key a client's connections count under: its address, and for IPv6
/// its /64 as well (a host rotating addresses in its /64 is one client).
fn net64(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(a) if a.to_ipv4_mapped().is_none() => {
            Some(IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & !(u64::MAX as u128))))
        }
        _ => None,
    }
}

/// One open TCP connection, counted in all, for its address and its /64
/// while it lives.
pub(super) struct TcpGuard {
    sh: Arc<Shared>,
    ip: IpAddr,
}

impl TcpGuard {
    fn take(sh: &Arc<Shared>, ip: IpAddr) -> Option<TcpGuard> {
        let cfg = &sh.cfg;
        let mut map = sh.tcp_per_client.lock().unwrap_or_else(|e| e.into_inner());
        let host = map.get(&ip).map_or(0, |c| c.0);
        let net = net64(ip).and_then(|n| map.get(&n)).map_or(0, |c| c.1);
        if host >= cfg.max_tcp_per_host || net >= cfg.max_tcp_per_net64 {
            return None;
        }
        if sh.tcp_clients.fetch_add(1, Relaxed) >= cfg.max_tcp_clients {
            sh.tcp_clients.fetch_sub(1, Relaxed);
            return None;
        }
        map.entry(ip).or_default().0 += 1;
        if let Some(n) = net64(ip) {
            map.entry(n).or_default().1 += 1;
        }
        Some(TcpGuard { sh: sh.clone(), ip })
    }
}

impl Drop for TcpGuard {
    fn drop(&mut self) {
        let mut map = self.sh.tcp_per_client.lock().unwrap_or_else(|e| e.into_inner());
        let mut dec = |k: IpAddr, net: bool| {
            if let Some(c) = map.get_mut(&k) {
                if net {
                    c.1 = c.1.saturating_sub(1);
                } else {
                    c.0 = c.0.saturating_sub(1);
                }
                if *c == (0, 0) {
                    map.remove(&k);
                }
            }
        };
        dec(self.ip, false);
        if let Some(n) = net64(self.ip) {
            dec(n, true);
        }
        self.sh.tcp_clients.fetch_sub(1, Relaxed);
    }
}

/// Connections from clients outside `allow` being answered REFUSED at once.
const MAX_TCP_REFUSING: usize = 16;
/// The time such a connection has to send its query.
const REFUSE_DEADLINE: Duration = Duration::from_secs(1);

/// A client outside `allow`: read one query, answer it (REFUSED, or
/// nothing for garbage) and close.
async fn refuse_one(sh: &Shared, mut c: TcpStream, peer: SocketAddr) -> io::Result<()> {
    let mut len = [0u8; 2];
    c.read_exact(&mut len).await?;
    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
    c.read_exact(&mut q).await?;
    sh.c.queries_tcp.fetch_add(1, Relaxed);
    let mut sc = Scratch::new();
    if let Fast::Reply = fast_path(sh, &sh.settings(), &q, peer, &mut sc, false, sh.now_ms()) {
        c.write_all(&(sc.out.len() as u16).to_be_bytes()).await?;
        c.write_all(&sc.out).await?;
    }
    Ok(())
}

/// Queries of one TCP connection being resolved at once; more wait.
pub(super) const TCP_PIPELINE: usize = 16;

/// RFC 7766: length-prefixed messages, several per connection, closed
/// after `tcp_idle` without a query. Pipelined queries are resolved
/// concurrently and answered as they complete (RFC 7766 6.2.1.1), so a slow
/// name does not hold up the rest; a writer task owns the sending half.
pub(super) async fn tcp_conn(sh: Arc<Shared>, c: TcpStream, peer: SocketAddr) -> io::Result<()> {
    let mut sc = Scratch::new();
    let mut view = SettingsView::new(&sh);
    let _ = c.set_nodelay(true);
    let (mut rd, mut wr) = c.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(TCP_PIPELINE);
    let writer = tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            let mut framed = Vec::with_capacity(r.len() + 2);
            framed.extend_from_slice(&(r.len() as u16).to_be_bytes());
            framed.extend_from_slice(&r);
            if wr.write_all(&framed).await.is_err() {
                break;
            }
        }
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(TCP_PIPELINE));
    loop {
        // Idle until a query starts (shorter under load, RFC 7766 6.2.3);
        // then the whole query within the deadline, however it trickles.
        let busy = sh.tcp_clients.load(Relaxed) > sh.cfg.max_tcp_clients / 2;
        let idle = if busy { sh.cfg.tcp_idle / 10 } else { sh.cfg.tcp_idle };
        let mut len = [0u8; 2];
        match tokio::time::timeout(idle, rd.read_exact(&mut len[..1])).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let whole = async {
            rd.read_exact(&mut len[1..]).await?;
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            rd.read_exact(&mut q).await?;
            Ok::<_, io::Error>(q)
        };
        let q = match tokio::time::timeout(sh.cfg.tcp_query_deadline, whole).await {
            Ok(Ok(q)) => q,
            _ => break,
        };
        sh.c.queries_tcp.fetch_add(1, Relaxed);
        let s = view.current(&sh);
        match fast_path(&sh, s, &q, peer, &mut sc, false, sh.now_ms()) {
            Fast::Reply => {
                if tx.send(sc.out.clone()).await.is_err() {
                    break;
                }
            }
            Fast::Drop => {}
            Fast::Resolve(h) => {
                let Ok(permit) = slots.clone().acquire_owned().await else { break };
                let k = h.map(|h| sc.key[..h.key_len].to_vec());
                let (sh, s, tx) = (sh.clone(), s.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Some(r) = answer(&sh, &s, &q, h.zip(k), false).await {
                        let _ = tx.send(r).await;
                    }
                    drop(permit);
                });
            }
        }
    }
    // The writer ends once every answer in progress has been sent.
    drop(tx);
    let _ = writer.await;
    Ok(())
}
