//! The inbound relay's driver (issue 19): the sockets around the sans-IO
//! core in [`crate::proxy`]. It accepts visitors on `[proxy] listen`, reads
//! their first bytes until [`sniff`] names a site (within
//! `first_bytes_timeout_ms`), picks the backend from the site map (or the
//! name's AAAA records, when `resolve` is on and the policy allows the
//! address), connects, writes the PROXY v2 header or the rewritten HTTP head,
//! and then relays both ways with `splice(2)` through a pipe per direction
//! (no copy through user space, no allocation per read), falling back to a
//! 16 KiB buffer per direction when no pipe can be had.
//!
//! A visitor's FIN is passed on as a FIN (`shutdown(SHUT_WR)`) and the other
//! direction goes on until it ends too; a reset or an error on either side
//! closes both; no byte either way for `idle_timeout` closes both.
//! Connections are limited in total and per visitor address (per /64 for
//! IPv6 visitors); every refusal has a reason and a counter. The map,
//! policy, timeouts and limits are swapped by a reload; connections already
//! relayed keep their backend.
//!
//! Threads: `nat64d-proxy` (a tokio runtime of its own, up to four threads).

use crate::config::Config;
use crate::proxy::{http, proxyv2, sniff, Backend, BackendPolicy, ClientAddress, Refusal, SiteMap, Sniff, SniffLimits};
use crate::sys::splice::{shutdown_write, splice, Pipe};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

/// Why a visitor's connection ended before (or instead of) being relayed.
/// The first seven are [`Refusal`]s, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Sniff(Refusal),
    /// The visitor closed (or reset) before naming a site.
    ClosedEarly,
    /// No whole ClientHello or request head within `first_bytes_timeout_ms`.
    FirstBytesTimeout,
    /// The name is in no site (and not resolved, or resolution is off).
    NoSite,
    /// Resolved, but no AAAA address lies in the backend networks.
    BackendNotAllowed,
    /// Resolution failed or found no AAAA record.
    ResolveFailed,
    /// The backend refused or reset the connection, or did not take the first bytes.
    ConnectFailed,
    /// The backend did not answer within `connect_timeout_ms`.
    ConnectTimeout,
    /// `max_connections` were open.
    OverMaxConnections,
    /// `per_client` were open from the visitor's address (or /64).
    OverPerClient,
}

const EXTRA: [(Reason, &str); 9] = [
    (Reason::ClosedEarly, "closed_before_name"),
    (Reason::FirstBytesTimeout, "first_bytes_timeout"),
    (Reason::NoSite, "no_site"),
    (Reason::BackendNotAllowed, "backend_not_allowed"),
    (Reason::ResolveFailed, "resolve_failed"),
    (Reason::ConnectFailed, "connect_failed"),
    (Reason::ConnectTimeout, "connect_timeout"),
    (Reason::OverMaxConnections, "over_max_connections"),
    (Reason::OverPerClient, "over_per_client"),
];

const REASONS: usize = Refusal::ALL.len() + EXTRA.len();

impl Reason {
    fn index(self) -> usize {
        match self {
            Reason::Sniff(r) => Refusal::ALL.iter().position(|x| *x == r).unwrap_or(0),
            other => Refusal::ALL.len() + EXTRA.iter().position(|(x, _)| *x == other).unwrap_or(0),
        }
    }

    fn label(i: usize) -> &'static str {
        match Refusal::ALL.get(i) {
            Some(r) => r.name(),
            None => EXTRA.get(i - Refusal::ALL.len()).map_or("?", |(_, n)| n),
        }
    }
}

/// What the relay runs with; swapped whole by a reload.
struct Settings {
    sites: SiteMap,
    policy: BackendPolicy,
    resolve: bool,
    /// For resolved names.
    client_address: ClientAddress,
    first_bytes: Duration,
    connect: Duration,
    idle_ms: u64,
    max_connections: u32,
    per_client: u32,
    limits: SniffLimits,
}

impl Settings {
    fn from_config(c: &Config) -> Result<Settings, String> {
        let (sites, policy) = c.proxy_sites().map_err(|(k, m)| format!("{k}: {m}"))?;
        let p = &c.proxy;
        Ok(Settings {
            sites,
            policy,
            resolve: p.resolve,
            client_address: p.client_address,
            first_bytes: Duration::from_millis(p.first_bytes_timeout_ms),
            connect: Duration::from_millis(p.connect_timeout_ms),
            idle_ms: p.idle_timeout.saturating_mul(1000),
            max_connections: p.max_connections,
            per_client: p.per_client,
            limits: SniffLimits::default(),
        })
    }
}

/// One site's counters; kept by name across reloads.
#[derive(Default)]
struct SiteCounters {
    connections: AtomicU64,
    active: AtomicU64,
    failed: AtomicU64,
    to_backend: AtomicU64,
    to_client: AtomicU64,
}

/// The name resolved backends are counted under.
const RESOLVED: &str = "(resolved)";

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    relayed: AtomicU64,
    idle_closed: AtomicU64,
    copy_fallback: AtomicU64,
    refused: [AtomicU64; REASONS],
}

/// A connection, as `nat64ctl proxy` lists it.
struct Conn {
    client: SocketAddr,
    listen: SocketAddr,
    started: Instant,
    /// Site and backend, once chosen.
    chosen: OnceLock<(String, SocketAddrV6)>,
    to_backend: AtomicU64,
    to_client: AtomicU64,
    /// Milliseconds since the relay's epoch of the last byte either way.
    last: AtomicU64,
}

struct Shared {
    settings: RwLock<Arc<Settings>>,
    c: Counters,
    sites: Mutex<HashMap<String, Arc<SiteCounters>>>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    per_client: Mutex<HashMap<IpAddr, u32>>,
    next_id: AtomicU64,
    epoch: Instant,
    listen: Vec<SocketAddr>,
}

impl Shared {
    fn settings(&self) -> Arc<Settings> {
        self.settings.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn refuse(&self, r: Reason) {
        self.c.refused[r.index()].fetch_add(1, Relaxed);
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn site(&self, name: &str) -> Arc<SiteCounters> {
        let mut m = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = m.get(name) {
            return c.clone();
        }
        m.entry(name.to_string()).or_default().clone()
    }

    /// A slot for a visitor, or why not.
    fn admit(self: &Arc<Self>, st: &Settings, client: SocketAddr, listen: SocketAddr) -> Result<Slot, Reason> {
        let key = limit_key(client.ip());
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() >= st.max_connections as usize {
            return Err(Reason::OverMaxConnections);
        }
        {
            let mut pc = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
            let n = pc.entry(key).or_insert(0);
            if *n >= st.per_client {
                return Err(Reason::OverPerClient);
            }
            *n += 1;
        }
        let id = self.next_id.fetch_add(1, Relaxed);
        let conn = Arc::new(Conn {
            client,
            listen,
            started: Instant::now(),
            chosen: OnceLock::new(),
            to_backend: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
            last: AtomicU64::new(self.now_ms()),
        });
        conns.insert(id, conn.clone());
        Ok(Slot { shared: self.clone(), id, key, conn })
    }
}

/// The counting key of a visitor: its IPv4 address, or its IPv6 /64.
fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// An IPv4-mapped address (a dual-stack listener's IPv4 visitor) as IPv4.
fn unmapped_sa(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// A connection's place in the limits and the listing; given back on drop.
struct Slot {
    shared: Arc<Shared>,
    id: u64,
    key: IpAddr,
    conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
        let mut pc = self.shared.per_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = pc.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                pc.remove(&self.key);
            }
        }
    }
}

/// One site in the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteStats {
    pub site: String,
    pub connections: u64,
    pub active: u64,
    /// Connections the backend refused, reset or did not answer in time.
    pub failed: u64,
    pub bytes_to_backend: u64,
    pub bytes_to_client: u64,
}

/// The relay in `nat64ctl stats` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStats {
    pub listen: Vec<SocketAddr>,
    pub active: u64,
    pub accepted: u64,
    pub relayed: u64,
    /// Relayed connections closed for `idle_timeout`.
    pub idle_closed: u64,
    /// Relayed through a buffer because no pipe could be had (file limit).
    pub copy_fallback: u64,
    /// Connections not relayed, by reason (every reason listed, zero or not).
    pub refused: BTreeMap<String, u64>,
    /// Sites by name as configured, `(resolved)` for names found by AAAA.
    pub sites: Vec<SiteStats>,
}

impl ProxyStats {
    /// Every refusal reason's name, in a fixed order.
    pub fn reasons() -> impl Iterator<Item = &'static str> {
        (0..REASONS).map(Reason::label)
    }
}

/// A relayed (or sniffing) connection in `nat64ctl proxy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyConnLine {
    pub client: SocketAddr,
    pub listen: SocketAddr,
    /// None while the first bytes are still awaited.
    pub site: Option<String>,
    pub backend: Option<SocketAddrV6>,
    pub age_secs: u64,
    pub idle_secs: u64,
    pub bytes_to_backend: u64,
    pub bytes_to_client: u64,
}

/// `nat64ctl proxy`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyList {
    pub connections: Vec<ProxyConnLine>,
    /// All open connections, listed or not.
    pub active: usize,
}

/// Settings a reload has checked and not applied yet.
pub struct Prepared(Settings);

/// The running relay. Dropping it closes every connection.
pub struct Relay {
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Relay {
    /// Binds every `[proxy] listen` address and starts accepting; fails
    /// without serving anything when one cannot be bound.
    pub fn start(c: &Config) -> io::Result<Relay> {
        let st = Settings::from_config(c).map_err(io::Error::other)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .max_blocking_threads(16)
            .thread_name("nat64d-proxy")
            .enable_all()
            .build()?;
        let mut listeners = vec![];
        for &a in &c.proxy.listen {
            let l = std::net::TcpListener::bind(a)
                .map_err(|e| io::Error::new(e.kind(), format!("proxy: cannot listen on {a}: {e}")))?;
            l.set_nonblocking(true)?;
            listeners.push(l);
        }
        let listen = listeners.iter().map(|l| l.local_addr()).collect::<io::Result<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            settings: RwLock::new(Arc::new(st)),
            c: Counters::default(),
            sites: Mutex::default(),
            conns: Mutex::default(),
            per_client: Mutex::default(),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            listen,
        });
        {
            let _g = rt.enter();
            for l in listeners {
                rt.spawn(accept_loop(shared.clone(), TcpListener::from_std(l)?));
            }
        }
        Ok(Relay { shared, rt: Some(rt) })
    }

    /// The addresses bound (port 0 picks one).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.shared.listen
    }

    pub fn site_count(&self) -> usize {
        self.shared.settings().sites.len()
    }

    /// `c`'s sites, policy, timeouts and limits, checked, for [`Relay::apply`]:
    /// a reload prepares before it changes anything, so it is refused whole.
    pub fn prepare(c: &Config) -> Result<Prepared, String> {
        Settings::from_config(c).map(Prepared)
    }

    /// Swap in prepared settings; open connections keep their backends.
    pub fn apply(&self, p: Prepared) {
        *self.shared.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p.0);
    }

    pub fn stats(&self) -> ProxyStats {
        let sh = &self.shared;
        let c = &sh.c;
        let mut sites: Vec<SiteStats> = sh
            .sites
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, s)| SiteStats {
                site: n.clone(),
                connections: s.connections.load(Relaxed),
                active: s.active.load(Relaxed),
                failed: s.failed.load(Relaxed),
                bytes_to_backend: s.to_backend.load(Relaxed),
                bytes_to_client: s.to_client.load(Relaxed),
            })
            .collect();
        sites.sort_by(|a, b| a.site.cmp(&b.site));
        ProxyStats {
            listen: sh.listen.clone(),
            active: sh.conns.lock().unwrap_or_else(|e| e.into_inner()).len() as u64,
            accepted: c.accepted.load(Relaxed),
            relayed: c.relayed.load(Relaxed),
            idle_closed: c.idle_closed.load(Relaxed),
            copy_fallback: c.copy_fallback.load(Relaxed),
            refused: (0..REASONS).map(|i| (Reason::label(i).to_string(), c.refused[i].load(Relaxed))).collect(),
            sites,
        }
    }

    /// Open connections, oldest first, at most `limit`.
    pub fn connections(&self, limit: usize) -> ProxyList {
        let sh = &self.shared;
        let now = sh.now_ms();
        let conns: Vec<Arc<Conn>> = sh.conns.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let mut lines: Vec<(Instant, ProxyConnLine)> = conns
            .iter()
            .map(|c| {
                let chosen = c.chosen.get();
                (
                    c.started,
                    ProxyConnLine {
                        client: unmapped_sa(c.client),
                        listen: unmapped_sa(c.listen),
                        site: chosen.map(|x| x.0.clone()),
                        backend: chosen.map(|x| x.1),
                        age_secs: c.started.elapsed().as_secs(),
                        idle_secs: now.saturating_sub(c.last.load(Relaxed)) / 1000,
                        bytes_to_backend: c.to_backend.load(Relaxed),
                        bytes_to_client: c.to_client.load(Relaxed),
                    },
                )
            })
            .collect();
        lines.sort_by_key(|l| l.0);
        ProxyList { active: lines.len(), connections: lines.into_iter().take(limit).map(|l| l.1).collect() }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_millis(500));
        }
    }
}

async fn accept_loop(sh: Arc<Shared>, l: TcpListener) {
    let local = l.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut last_warn: Option<Instant> = None;
    loop {
        let (s, peer) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: the connection waits in the backlog;
                // say so at most once a minute, and give the loop a pause.
                if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    warn!("proxy: cannot accept on {local}: {e}");
                    last_warn = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        sh.c.accepted.fetch_add(1, Relaxed);
        let st = sh.settings();
        let listen = s.local_addr().unwrap_or(local);
        match sh.admit(&st, peer, listen) {
            Ok(slot) => {
                tokio::spawn(serve(sh.clone(), st, s, slot));
            }
            Err(r) => sh.refuse(r),
        }
    }
}

/// The bytes a TLS visitor gets for a name no site serves: a fatal
/// unrecognized_name alert (RFC 6066 3, RFC 8446 6: alert record, TLS 1.2
/// record version, length 2, level fatal(2), description 112).
const TLS_UNRECOGNIZED_NAME: [u8; 7] = [21, 3, 3, 0, 2, 2, 112];

/// What a refused visitor is told, by what it spoke: HTTP gets the answer,
/// TLS gets `tls` (or a plain close when None).
async fn tell(s: &mut TcpStream, is_http: bool, http: &[u8], tls: Option<&[u8]>) {
    let bytes = if is_http { Some(http) } else { tls };
    if let Some(b) = bytes {
        let _ = tokio::time::timeout(Duration::from_secs(1), s.write_all(b)).await;
        let _ = s.shutdown().await;
    }
}

/// Where the relay's first read goes: the largest ClientHello or head
/// allowed, and room for the TLS record headers around it.
fn first_buffer(l: &SniffLimits) -> usize {
    l.max_client_hello.max(l.max_http_head) + 1024
}

async fn serve(sh: Arc<Shared>, st: Arc<Settings>, mut s: TcpStream, slot: Slot) {
    let _ = s.set_nodelay(true);
    let conn = slot.conn.clone();
    let mut buf = vec![0u8; first_buffer(&st.limits)];
    let mut n = 0usize;
    let deadline = tokio::time::Instant::now() + st.first_bytes;
    let decision = loop {
        match sniff(&buf[..n], &st.limits) {
            Sniff::NeedMore => {}
            d => break d,
        }
        if n == buf.len() {
            break Sniff::Refuse(if buf[0] == 22 { Refusal::ClientHelloTooLarge } else { Refusal::HttpHeadTooLarge });
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf[n..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => return sh.refuse(Reason::ClosedEarly),
            Ok(Ok(k)) => n += k,
            Err(_) => {
                sh.refuse(Reason::FirstBytesTimeout);
                let is_http = n > 0 && buf[0] != 22;
                return tell(&mut s, is_http, http::TIMEOUT, None).await;
            }
        }
    };
    let is_http = buf[0] != 22;
    let (name, head) = match decision {
        Sniff::Tls { name, .. } => (name, None),
        Sniff::Http { name, head_len, line_len } => (name, Some((head_len, line_len))),
        Sniff::Refuse(r) => {
            sh.refuse(Reason::Sniff(r));
            return tell(&mut s, is_http, http::refusal(r), None).await;
        }
        Sniff::NeedMore => return,
    };
    let listen = unmapped_sa(conn.listen);
    let (site, backend) = match st.sites.lookup(&name) {
        Some(site) => {
            let mut b = site.backend;
            // A bare address in the configuration: the visitor's port.
            if b.addr.port() == 0 {
                b.addr.set_port(listen.port());
            }
            (site.name.clone(), b)
        }
        None if st.resolve => match resolve(name.as_str(), listen.port(), &st).await {
            Ok(addr) => (RESOLVED.to_string(), Backend { addr, client_address: st.client_address }),
            Err(r) => {
                sh.refuse(r);
                return tell(&mut s, is_http, http::NO_SITE, Some(&TLS_UNRECOGNIZED_NAME)).await;
            }
        },
        None => {
            sh.refuse(Reason::NoSite);
            return tell(&mut s, is_http, http::NO_SITE, Some(&TLS_UNRECOGNIZED_NAME)).await;
        }
    };
    let counters = sh.site(&site);
    let _ = conn.chosen.set((site, backend.addr));
    counters.connections.fetch_add(1, Relaxed);
    let b = match connect(&st, &backend, &conn, &buf[..n], head).await {
        Ok(b) => b,
        Err(r) => {
            sh.refuse(r);
            counters.failed.fetch_add(1, Relaxed);
            let answer = if r == Reason::ConnectTimeout { http::GATEWAY_TIMEOUT } else { http::BAD_GATEWAY };
            return tell(&mut s, is_http, answer, None).await;
        }
    };
    drop(buf);
    sh.c.relayed.fetch_add(1, Relaxed);
    counters.active.fetch_add(1, Relaxed);
    conn.last.store(sh.now_ms(), Relaxed);
    let ctx = Ctx { sh: &sh, conn: &conn, site: &counters };
    // The visitor's first bytes, now with the backend.
    ctx.moved(true, n);
    let idle = idle_watch(&sh, &conn, st.idle_ms);
    drop(st);
    tokio::select! {
        _ = relay(&s, &b, &ctx) => {}
        _ = idle => { sh.c.idle_closed.fetch_add(1, Relaxed); }
    }
    counters.active.fetch_sub(1, Relaxed);
    drop(slot);
}

/// The name's AAAA records, the first one the policy allows, on `port`.
async fn resolve(name: &str, port: u16, st: &Settings) -> Result<SocketAddrV6, Reason> {
    let found = match tokio::time::timeout(st.connect, tokio::net::lookup_host((name, port))).await {
        Ok(Ok(it)) => it,
        _ => return Err(Reason::ResolveFailed),
    };
    let mut any = false;
    for a in found {
        if let SocketAddr::V6(a) = a {
            any = true;
            if st.policy.check(*a.ip()).is_ok() {
                return Ok(a);
            }
        }
    }
    Err(if any { Reason::BackendNotAllowed } else { Reason::ResolveFailed })
}

/// Connect to the backend and hand it what the visitor sent so far, after
/// the PROXY header or with the HTTP head rewritten, as the site asks.
async fn connect(
    st: &Settings,
    b: &Backend,
    conn: &Conn,
    first: &[u8],
    head: Option<(usize, usize)>,
) -> Result<TcpStream, Reason> {
    let deadline = tokio::time::Instant::now() + st.connect;
    let mut s = match tokio::time::timeout_at(deadline, TcpStream::connect(SocketAddr::V6(b.addr))).await {
        Err(_) => return Err(Reason::ConnectTimeout),
        Ok(Err(_)) => return Err(Reason::ConnectFailed),
        Ok(Ok(s)) => s,
    };
    let _ = s.set_nodelay(true);
    let client = unmapped_sa(conn.client);
    let mut out: Vec<u8> = Vec::with_capacity(first.len() + proxyv2::MAX_LEN + 128);
    if b.client_address == ClientAddress::ProxyV2 {
        let mut h = [0u8; proxyv2::MAX_LEN];
        let k = proxyv2::encode(client, unmapped_sa(conn.listen), &mut h);
        out.extend_from_slice(&h[..k]);
    }
    match (head, b.client_address) {
        (Some((head_len, line_len)), ClientAddress::Forwarded | ClientAddress::XForwardedFor) => {
            let at = out.len();
            out.resize(at + head_len + 128, 0);
            let k = http::with_forwarded(&first[..head_len], line_len, client.ip(), b.client_address, &mut out[at..])
                .ok_or(Reason::ConnectFailed)?;
            out.truncate(at + k);
            out.extend_from_slice(&first[head_len..]);
        }
        _ => out.extend_from_slice(first),
    }
    match tokio::time::timeout_at(deadline, s.write_all(&out)).await {
        Ok(Ok(())) => Ok(s),
        Err(_) => Err(Reason::ConnectTimeout),
        Ok(Err(_)) => Err(Reason::ConnectFailed),
    }
}

/// Resolves when the connection has had no byte either way for `idle_ms`.
async fn idle_watch(sh: &Shared, conn: &Conn, idle_ms: u64) {
    loop {
        let due = conn.last.load(Relaxed).saturating_add(idle_ms);
        let now = sh.now_ms();
        if now >= due {
            return;
        }
        tokio::time::sleep(Duration::from_millis(due - now)).await;
    }
}

struct Ctx<'a> {
    sh: &'a Shared,
    conn: &'a Conn,
    site: &'a SiteCounters,
}

impl Ctx<'_> {
    fn moved(&self, up: bool, n: usize) {
        let n = n as u64;
        if up {
            self.conn.to_backend.fetch_add(n, Relaxed);
            self.site.to_backend.fetch_add(n, Relaxed);
        } else {
            self.conn.to_client.fetch_add(n, Relaxed);
            self.site.to_client.fetch_add(n, Relaxed);
        }
        self.conn.last.store(self.sh.now_ms(), Relaxed);
    }
}

/// Both directions until both have ended (or one fails: then both close).
async fn relay(client: &TcpStream, backend: &TcpStream, ctx: &Ctx<'_>) {
    match (Pipe::new(), Pipe::new()) {
        (Ok(p_up), Ok(p_down)) => {
            let _ = tokio::try_join!(
                splice_way(client, backend, &p_up, true, ctx),
                splice_way(backend, client, &p_down, false, ctx)
            );
        }
        _ => {
            ctx.sh.c.copy_fallback.fetch_add(1, Relaxed);
            let _ = tokio::try_join!(copy_way(client, backend, true, ctx), copy_way(backend, client, false, ctx));
        }
    }
}

/// What one `splice(2)` moves at most: a default pipe's capacity.
const CHUNK: usize = 64 * 1024;

/// One direction by splice: socket into the pipe, the pipe out to the other
/// socket, until the reader's FIN, which is passed on as a FIN.
async fn splice_way(from: &TcpStream, to: &TcpStream, pipe: &Pipe, up: bool, ctx: &Ctx<'_>) -> io::Result<()> {
    let (rfd, wfd) = (from.as_raw_fd(), to.as_raw_fd());
    loop {
        from.readable().await?;
        // The pipe is empty here, so EAGAIN can only mean the socket is.
        let n = match from.try_io(Interest::READABLE, || splice(rfd, pipe.w, CHUNK)) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || splice(pipe.r, wfd, left)) {
                Ok(k) => left -= k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        ctx.moved(up, n);
    }
    half_close(to);
    Ok(())
}

/// One direction through a buffer, when no pipe could be had.
async fn copy_way(from: &TcpStream, to: &TcpStream, up: bool, ctx: &Ctx<'_>) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        from.readable().await?;
        let n = match from.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut at = 0;
        while at < n {
            to.writable().await?;
            match to.try_write(&buf[at..n]) {
                Ok(k) => at += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        ctx.moved(up, n);
    }
    half_close(to);
    Ok(())
}

/// Pass a FIN on: no more bytes this way, the other way goes on.
fn half_close(s: &TcpStream) {
    shutdown_write(s.as_raw_fd());
}

/// The start-up line.
pub fn describe(r: &Relay, c: &Config) -> String {
    let l: Vec<String> = r.local_addrs().iter().map(|a| a.to_string()).collect();
    format!(
        "proxy: relaying on {} to {} site(s){} in {}",
        l.join(", "),
        r.site_count(),
        if c.proxy.resolve { " and resolved names" } else { "" },
        c.proxy.backends.iter().map(|b| b.0.to_string()).collect::<Vec<_>>().join(", ")
    )
}

/// Logged at a stop.
pub fn summary(r: &Relay) {
    let s = r.stats();
    let refused: u64 = s.refused.values().sum();
    info!("proxy: {} connections accepted, {} relayed, {} refused", s.accepted, s.relayed, refused);
}

#[cfg(test)]
mod tests {
    use super::*;

    // The reason labels are the counters' names: unique, and the first
    // seven are the sniff refusals'.
    #[test]
    fn every_reason_has_its_own_label() {
        let labels: Vec<&str> = ProxyStats::reasons().collect();
        assert_eq!(labels.len(), REASONS);
        let mut sorted = labels.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), labels.len());
        for r in Refusal::ALL {
            assert_eq!(Reason::label(Reason::Sniff(r).index()), r.name());
        }
        for (r, l) in EXTRA {
            assert_eq!(Reason::label(r.index()), l);
        }
    }

    // Issue 19: limits per visitor address; an IPv6 visitor is counted by
    // its /64 (one customer's addresses are many), an IPv4-mapped one as IPv4.
    #[test]
    fn visitors_counted_by_address_or_slash_64() {
        let k = |s: &str| limit_key(s.parse().unwrap());
        assert_eq!(k("198.51.100.7"), k("::ffff:198.51.100.7"));
        assert_eq!(k("2001:db8:1:2::5"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::5"), k("2001:db8:1:3::5"));
    }
}
