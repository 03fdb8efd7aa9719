//! The DNS64 server: the I/O driver around [`super::Dns64`]. It listens on
//! UDP and TCP, answers from the cache when it can (no parsing beyond the
//! question, no task), and otherwise resolves through the upstream
//! resolvers in a task of its own, applying RFC 6147 on the way.
//!
//! Runs on its own tokio runtime (threads `nat64d-dns`), apart from the
//! packet workers. Settings that may change at run time (prefixes,
//! exclusions, upstreams, timeout, client networks) are swapped whole;
//! tasks pick up the new ones at their next query.

use super::cache::Cache;
use super::wire::{self, HeadError, QueryHead, KEY_MAX, MAX_UDP_PAYLOAD};
use super::{a_query_for, reply_to, AaaaVerdict, Dns64};
use crate::addr::IpNet;
use crate::sys::{RecvBatch, SendBatch};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use serde::{Deserialize, Serialize};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tracing::{debug, warn};

/// What may change while the server runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub dns64: Dns64,
    pub upstream: Vec<SocketAddr>,
    /// The bound on one client query: after it, SERVFAIL.
    pub timeout: Duration,
    /// Client networks served; everyone else is REFUSED.
    pub allow: Vec<IpNet>,
}

/// Fixed at start.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub threads: usize,
    pub cache_size: usize,
    pub cache_max_ttl: u32,
    pub max_tcp_clients: usize,
    pub max_inflight: usize,
    pub tcp_idle: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![],
            threads: 1,
            cache_size: 100_000,
            cache_max_ttl: 86_400,
            max_tcp_clients: 256,
            max_inflight: 4096,
            tcp_idle: Duration::from_secs(10),
        }
    }
}

crate::counters::counters! {
    /// The server's counters.
    pub struct Dns64Counters [shared Counters] {
        queries_udp: "queries received over UDP",
        queries_tcp: "queries received over TCP",
        cache_hits: "answers served from the cache",
        synthesized: "AAAA answers synthesised from A records (RFC 6147 5.1.5)",
        passed: "upstream answers passed on as they were (real AAAA, other types, NXDOMAIN)",
        ptr_synthesized: "PTR answers under a prefix (RFC 6147 5.3.1)",
        local: "ipv4only.arpa answered locally (RFC 8880)",
        refused: "queries from clients outside the allowed networks (REFUSED)",
        formerr: "malformed queries answered with FORMERR",
        dropped: "datagrams not answered (shorter than a header, longer than 4096 bytes, or a response)",
        truncated: "UDP answers sent with TC set (the client retries over TCP)",
        servfail: "SERVFAIL sent: the upstreams failed or timed out",
        upstream_timeouts: "upstream exchanges that timed out",
        upstream_errors: "upstream exchanges that failed otherwise (unreachable, bad answer)",
        overload: "queries dropped because too many were being resolved",
    }
}

/// The server's counters and cache size, as `nat64ctl stats` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns64Stats {
    #[serde(flatten)]
    pub counters: Dns64Counters,
    /// Answers in the cache now.
    pub cache_entries: u64,
}

struct Shared {
    settings: RwLock<Arc<Settings>>,
    generation: AtomicU64,
    cache: Cache,
    c: Counters,
    epoch: Instant,
    inflight: AtomicUsize,
    tcp_clients: AtomicUsize,
    cfg: ServerConfig,
}

impl Shared {
    fn settings(&self) -> Arc<Settings> {
        self.settings.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// The settings a receive loop or a TCP connection works with, read again
/// only after `update` changed them: a lock per change, not per query.
struct SettingsView {
    generation: u64,
    s: Arc<Settings>,
}

impl SettingsView {
    fn new(sh: &Shared) -> Self {
        // The generation first: an update racing with this read is seen next time.
        let generation = sh.generation.load(Relaxed);
        SettingsView { generation, s: sh.settings() }
    }

    fn current(&mut self, sh: &Shared) -> &Arc<Settings> {
        let g = sh.generation.load(Relaxed);
        if g != self.generation {
            self.generation = g;
            self.s = sh.settings();
        }
        &self.s
    }
}

/// A running DNS64 server. Dropping it stops it.
pub struct Dns64Server {
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
    udp_addrs: Vec<SocketAddr>,
}

impl Dns64Server {
    /// Binds every listen address (UDP and TCP on the same port; port 0
    /// picks one) and starts serving. Fails without serving anything if
    /// any address cannot be bound.
    pub fn start(cfg: ServerConfig, settings: Settings) -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads.max(1))
            .thread_name("nat64d-dns")
            .enable_all()
            .build()?;
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for &a in &cfg.listen {
            let u = std::net::UdpSocket::bind(a).map_err(|e| with_addr(e, "UDP", a))?;
            let bound = u.local_addr()?;
            let t = std::net::TcpListener::bind(bound).map_err(|e| with_addr(e, "TCP", bound))?;
            u.set_nonblocking(true)?;
            t.set_nonblocking(true)?;
            udp.push(u);
            tcp.push(t);
        }
        let shared = Arc::new(Shared {
            settings: RwLock::new(Arc::new(settings)),
            generation: AtomicU64::new(0),
            cache: Cache::new(cfg.cache_size, cfg.cache_max_ttl),
            c: Counters::default(),
            epoch: Instant::now(),
            inflight: AtomicUsize::new(0),
            tcp_clients: AtomicUsize::new(0),
            cfg: cfg.clone(),
        });
        let mut udp_addrs = Vec::new();
        {
            let _g = rt.enter();
            for u in udp {
                udp_addrs.push(u.local_addr()?);
                let sock = Arc::new(UdpSocket::from_std(u)?);
                for _ in 0..cfg.threads.max(1) {
                    rt.spawn(udp_loop(shared.clone(), sock.clone()));
                }
            }
            for t in tcp {
                rt.spawn(tcp_loop(shared.clone(), TcpListener::from_std(t)?));
            }
        }
        Ok(Dns64Server { shared, rt: Some(rt), udp_addrs })
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// Swaps the run-time settings and empties the cache (its answers were
    /// made with the old ones).
    pub fn update(&self, s: Settings) {
        *self.shared.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(s);
        self.shared.generation.fetch_add(1, Relaxed);
        self.shared.cache.clear();
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.shared.settings()
    }

    pub fn stats(&self) -> Dns64Stats {
        Dns64Stats { counters: self.shared.c.snapshot(), cache_entries: self.shared.cache.len() as u64 }
    }
}

impl Drop for Dns64Server {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_millis(500));
        }
    }
}

fn with_addr(e: io::Error, what: &str, a: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("dns64: cannot listen on {what} {a}: {e}"))
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn allowed(s: &Settings, src: SocketAddr) -> bool {
    let ip = unmapped(src.ip());
    s.allow.iter().any(|n| n.contains(ip))
}

/// A receive loop's buffers for the fast path: the cache key and the
/// answer, reused from query to query.
struct Scratch {
    key: [u8; KEY_MAX],
    out: Vec<u8>,
}

impl Scratch {
    fn new() -> Self {
        Scratch { key: [0; KEY_MAX], out: Vec::with_capacity(4096) }
    }
}

/// What the fast path made of a datagram.
enum Fast {
    Reply,
    Drop,
    Resolve(Option<QueryHead>),
}

/// Refusal, cache hit, or garbage: everything that needs no upstream.
fn fast_path(sh: &Shared, s: &Settings, q: &[u8], src: SocketAddr, sc: &mut Scratch, udp: bool, now_ms: u64) -> Fast {
    let Scratch { key, out } = sc;
    let head = wire::parse_query(q, key);
    match head {
        Err(HeadError::Short) | Err(HeadError::Response) => {
            sh.c.dropped.fetch_add(1, Relaxed);
            Fast::Drop
        }
        _ if !allowed(s, src) => {
            sh.c.refused.fetch_add(1, Relaxed);
            match head {
                Ok(h) => wire::short_reply(q, &h, 5, false, out),
                _ => {
                    wire::header_reply(q, 5, out);
                }
            }
            Fast::Reply
        }
        Err(HeadError::Complex) => Fast::Resolve(None),
        Ok(h) => {
            if sh.cache.get(&key[..h.key_len], q, &h, now_ms, out) {
                sh.c.cache_hits.fetch_add(1, Relaxed);
                if udp && out.len() > h.udp_limit() {
                    sh.c.truncated.fetch_add(1, Relaxed);
                    let rcode = out[3] & 0xf;
                    wire::short_reply(q, &h, rcode, true, out);
                }
                return Fast::Reply;
            }
            Fast::Resolve(Some(h))
        }
    }
}

/// Datagrams taken per recvmmsg(2), and the largest query we read whole
/// (a longer one is cut, counted as dropped and not answered).
const UDP_BATCH: usize = 32;
const UDP_SLOT: usize = 4096;

/// One socket's receive loop: a batch of queries per recvmmsg(2), the
/// fast-path replies of the batch in one sendmmsg(2); misses go to tasks.
async fn udp_loop(sh: Arc<Shared>, sock: Arc<UdpSocket>) {
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

async fn tcp_loop(sh: Arc<Shared>, l: TcpListener) {
    loop {
        let (conn, peer) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                debug!("dns64: tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if sh.tcp_clients.fetch_add(1, Relaxed) >= sh.cfg.max_tcp_clients {
            sh.tcp_clients.fetch_sub(1, Relaxed);
            sh.c.overload.fetch_add(1, Relaxed);
            continue; // closes it
        }
        let sh = sh.clone();
        tokio::spawn(async move {
            let _ = tcp_conn(sh.clone(), conn, peer).await;
            sh.tcp_clients.fetch_sub(1, Relaxed);
        });
    }
}

/// Queries of one TCP connection being resolved at once; more wait.
const TCP_PIPELINE: usize = 16;

/// RFC 7766: length-prefixed messages, several per connection, closed
/// after `tcp_idle` without a query. Pipelined queries are resolved
/// concurrently and answered as they complete (RFC 7766 6.2.1.1), so a slow
/// name does not hold up the rest; a writer task owns the sending half.
async fn tcp_conn(sh: Arc<Shared>, c: TcpStream, peer: SocketAddr) -> io::Result<()> {
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
        let mut len = [0u8; 2];
        match tokio::time::timeout(sh.cfg.tcp_idle, rd.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
        match tokio::time::timeout(sh.cfg.tcp_idle, rd.read_exact(&mut q)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
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

/// The full path: parse, resolve, cache, encode (and truncate for UDP).
async fn answer(sh: &Shared, s: &Settings, q: &[u8], head: Option<(QueryHead, Vec<u8>)>, udp: bool) -> Option<Vec<u8>> {
    let msg = match Message::from_vec(q) {
        Ok(m) if m.message_type() == MessageType::Query => m,
        Ok(_) => {
            sh.c.dropped.fetch_add(1, Relaxed);
            return None;
        }
        Err(_) => {
            let mut out = Vec::new();
            if wire::formerr(q, &mut out) {
                sh.c.formerr.fetch_add(1, Relaxed);
                return Some(out);
            }
            sh.c.dropped.fetch_add(1, Relaxed);
            return None;
        }
    };
    let resp = tokio::time::timeout(s.timeout, resolve(sh, s, &msg)).await.unwrap_or_else(|_| {
        sh.c.upstream_timeouts.fetch_add(1, Relaxed);
        sh.c.servfail.fetch_add(1, Relaxed);
        finish(&msg, reply_to(&msg, ResponseCode::ServFail))
    });
    let bytes = match resp.to_vec() {
        // A DNS message is at most 65535 bytes (the TCP length prefix).
        // hickory-proto's encoder already cuts a larger one and sets TC;
        // this is the second line of defence.
        Ok(b) if b.len() <= u16::MAX as usize => b,
        r => {
            if let Err(e) = r {
                warn!("dns64: cannot encode an answer: {e}");
            }
            sh.c.servfail.fetch_add(1, Relaxed);
            finish(&msg, reply_to(&msg, ResponseCode::ServFail)).to_vec().ok()?
        }
    };
    if let Some((h, key)) = &head {
        if resp.response_code() != ResponseCode::ServFail {
            sh.cache.put(key, &bytes, sh.now_ms());
        }
        if udp && bytes.len() > h.udp_limit() {
            sh.c.truncated.fetch_add(1, Relaxed);
            let mut out = Vec::new();
            wire::short_reply(q, h, bytes[3] & 0xf, true, &mut out);
            return Some(out);
        }
    } else if udp && bytes.len() > wire::udp_limit(msg.extensions().as_ref().map(|e| e.max_payload())) {
        sh.c.truncated.fetch_add(1, Relaxed);
        let mut m = reply_to(&msg, resp.response_code());
        m.set_truncated(true);
        return finish(&msg, m).to_vec().ok();
    }
    Some(bytes)
}

/// The client-facing envelope of an answer: the query's id, RA, and an OPT
/// record of our own exactly when the client sent one (RFC 6891 7).
fn finish(q: &Message, mut m: Message) -> Message {
    m.set_id(q.id()).set_message_type(MessageType::Response).set_recursion_available(true);
    m.set_recursion_desired(q.recursion_desired());
    *m.extensions_mut() = q.extensions().as_ref().map(|qe| {
        let mut e = Edns::new();
        e.set_max_payload(MAX_UDP_PAYLOAD).set_version(0).set_dnssec_ok(qe.flags().dnssec_ok);
        e
    });
    m
}

/// RFC 6147 5.1 to 5.5 with the upstream in the loop.
async fn resolve(sh: &Shared, s: &Settings, q: &Message) -> Message {
    if q.op_code() != OpCode::Query {
        return finish(q, reply_to(q, ResponseCode::NotImp));
    }
    if q.queries().len() != 1 {
        sh.c.formerr.fetch_add(1, Relaxed);
        return finish(q, reply_to(q, ResponseCode::FormErr));
    }
    if q.extensions().as_ref().is_some_and(|e| e.version() > 0) {
        // RFC 6891 6.1.3: we speak EDNS version 0 only.
        return finish(q, reply_to(q, ResponseCode::BADVERS));
    }
    if let Some(m) = s.dns64.ipv4only(q) {
        sh.c.local.fetch_add(1, Relaxed);
        return finish(q, m);
    }
    let question = &q.queries()[0];
    let servfail = || {
        sh.c.servfail.fetch_add(1, Relaxed);
        finish(q, reply_to(q, ResponseCode::ServFail))
    };
    // RFC 6147 5.3.1: PTR under a prefix.
    if question.query_type() == RecordType::PTR && question.query_class() == DNSClass::IN {
        if let Some(target) = s.dns64.ptr_target(question.name()) {
            let mut pq = q.clone();
            pq.take_queries();
            pq.add_query(Query::query(target.clone(), RecordType::PTR));
            return match exchange(sh, s, &pq, s.timeout).await {
                Some(up) => {
                    sh.c.ptr_synthesized.fetch_add(1, Relaxed);
                    finish(q, s.dns64.ptr_answer(q, &target, &up))
                }
                None => servfail(),
            };
        }
    }
    let started = Instant::now();
    let wants = s.dns64.wants_synthesis(q);
    // 5.1.3: a AAAA query that times out is an error like any other
    // (5.1.2), so the A query still gets its chance: the AAAA query has
    // half the time when synthesis may follow.
    let budget = if wants { s.timeout / 2 } else { s.timeout };
    let up = match exchange(sh, s, q, budget).await {
        Some(up) => up,
        None if wants => reply_to(q, ResponseCode::ServFail),
        None => return servfail(),
    };
    if !wants {
        sh.c.passed.fetch_add(1, Relaxed);
        return finish(q, up);
    }
    match s.dns64.aaaa_verdict(&up) {
        AaaaVerdict::Pass(m) => {
            sh.c.passed.fetch_add(1, Relaxed);
            finish(q, m)
        }
        AaaaVerdict::QueryA => {
            let Some(aq) = a_query_for(q, 0) else { return servfail() };
            match exchange(sh, s, &aq, s.timeout.saturating_sub(started.elapsed())).await {
                Some(a) => {
                    let m = s.dns64.synthesize(q, &up, &a);
                    if m.answers().iter().any(|r| r.record_type() == RecordType::AAAA) {
                        sh.c.synthesized.fetch_add(1, Relaxed);
                    } else if m.response_code() == ResponseCode::ServFail {
                        sh.c.servfail.fetch_add(1, Relaxed);
                    } else {
                        sh.c.passed.fetch_add(1, Relaxed);
                    }
                    finish(q, m)
                }
                // 5.1.2: the AAAA answer stands when the A query fails, but an
                // error there that the A query could not fix is a SERVFAIL.
                None if up.response_code() == ResponseCode::NoError => {
                    sh.c.passed.fetch_add(1, Relaxed);
                    finish(q, up)
                }
                None => servfail(),
            }
        }
    }
}

thread_local! {
    static RNG: (RandomState, std::cell::Cell<u64>) = (RandomState::new(), std::cell::Cell::new(0));
}

/// An unpredictable 16-bit query id (SipHash of a counter under a key the
/// OS seeded), so off-path spoofing must guess it along with the port.
fn random_id() -> u16 {
    RNG.with(|(k, n)| {
        n.set(n.get() + 1);
        k.hash_one(n.get()) as u16
    })
}

/// Asks the upstreams in turn until one answers, within the query's time.
/// The answer must carry our id and our question (RFC 5452 9.1).
async fn exchange(sh: &Shared, s: &Settings, q: &Message, budget: Duration) -> Option<Message> {
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

fn matches(q: &Message, r: &Message) -> bool {
    r.id() == q.id() && r.message_type() == MessageType::Response && r.queries() == q.queries()
}

async fn exchange_one(up: SocketAddr, bytes: &[u8], q: &Message) -> io::Result<Message> {
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

async fn exchange_tcp(up: SocketAddr, bytes: &[u8], q: &Message) -> io::Result<Message> {
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
