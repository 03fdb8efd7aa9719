//! The exchange with the upstream resolvers: a random id, each upstream in
//! turn within the query's budget, UDP with a retry over TCP on TC, and the
//! answer checked against our id and question (RFC 5452 9.1).

use super::{Settings, Shared};
use crate::dns64::wire::MAX_UDP_PAYLOAD;
use hickory_proto::op::{Edns, Message, MessageType};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::debug;

thread_local! {
    static RNG: (RandomState, std::cell::Cell<u64>) = (RandomState::new(), std::cell::Cell::new(0));
}

/// An unpredictable 16-bit query id (SipHash of a counter under a key the
/// OS seeded), so off-path spoofing must guess it along with the port.
pub(super) fn random_id() -> u16 {
    RNG.with(|(k, n)| {
        n.set(n.get() + 1);
        k.hash_one(n.get()) as u16
    })
}

/// Asks the upstreams in turn until one answers, within the query's time.
/// The answer must carry our id and our question (RFC 5452 9.1).
pub(super) async fn exchange(sh: &Shared, s: &Settings, q: &Message, budget: Duration) -> Option<Message> {
    let mut uq = q.clone();
    let id = random_id();
    uq.set_id(id).set_message_type(MessageType::Query).set_recursion_desired(true);
    let dnssec_ok = q.extensions().as_ref().is_some_and(|e| e.flags().dnssec_ok);
    let mut e = Edns::new();
    e.set_max_payload(MAX_UDP_PAYLOAD).set_dnssec_ok(dnssec_ok);
    uq.set_edns(e);
    let bytes = uq.to_vec().ok()?;
    let n = s.upstream.len();
    let start = Instant::now();
    for (i, &up) in s.upstream.iter().enumerate() {
        let left = budget.saturating_sub(start.elapsed());
        let per_try = left / (n - i) as u32;
        match tokio::time::timeout(per_try, exchange_one(up, &bytes, &uq)).await {
            Ok(Ok(m)) => return Some(m),
            Ok(Err(e)) => {
                debug!("dns64: upstream {up}: {e}");
                sh.c.upstream_errors.fetch_add(1, Relaxed);
            }
            Err(_) => {
                debug!("dns64: upstream {up}: timed out");
                sh.c.upstream_timeouts.fetch_add(1, Relaxed);
            }
        }
    }
    None
}

pub(super) fn matches(q: &Message, r: &Message) -> bool {
    r.id() == q.id() && r.message_type() == MessageType::Response && r.queries() == q.queries()
}

pub(super) async fn exchange_one(up: SocketAddr, bytes: &[u8], q: &Message) -> io::Result<Message> {
    let local: SocketAddr = match up {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(up).await?;
    sock.send(bytes).await?;
    // Not zeroed: recv_buf fills it (a 64 KiB memset per exchange showed in profiles).
    let mut buf = Vec::with_capacity(65535);
    loop {
        buf.clear();
        sock.recv_buf(&mut buf).await?;
        let Ok(m) = Message::from_vec(&buf) else { continue };
        if !matches(q, &m) {
            continue; // not ours: keep waiting for the real one
        }
        if m.truncated() {
            return exchange_tcp(up, bytes, q).await;
        }
        return Ok(m);
    }
}

pub(super) async fn exchange_tcp(up: SocketAddr, bytes: &[u8], q: &Message) -> io::Result<Message> {
    let mut c = TcpStream::connect(up).await?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    framed.extend_from_slice(bytes);
    c.write_all(&framed).await?;
    let mut len = [0u8; 2];
    c.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    c.read_exact(&mut buf).await?;
    let m = Message::from_vec(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    if !matches(q, &m) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "answer does not match the question"));
    }
    Ok(m)
}
