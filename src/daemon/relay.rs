//! The inbound relay's driver (issue 19): the sockets around the sans-IO
//! core in [`crate::proxy`]. It accepts visitors on `[proxy] listen`, reads
//! their first bytes until [`sniff`] names a site (within
//! `first_bytes_timeout_ms`), picks the backend from the site map (or the
//! name's AAAA records, when `resolve` is on and the policy allows the
//! address), connects, writes the PROXY v2 header or the rewritten HTTP head,
//! and then relays both ways. Each direction starts with a buffer (the
//! first bytes' one visitor-to-backend, 16 KiB the other way), so a short
//! exchange costs one read and one write per burst and no pipe; the first
//! read that fills the buffer switches that direction to `splice(2)`
//! through a pipe of its own, 256 KiB if the kernel allows (no copy through
//! user space). No allocation
//! per read either way; when no pipe can be had the buffer goes on (counted).
//!
//! A visitor's FIN is passed on as a FIN (`shutdown(SHUT_WR)`) and the other
//! direction goes on until it ends too; a reset or an error on either side
//! closes both; no byte either way for `idle_timeout` closes both.
//! Connections are limited in total and per visitor address (per /64 for
//! IPv6 visitors); every refusal has a reason and a counter. The map,
//! policy, timeouts and limits are swapped by a reload; connections already
//! relayed keep their backend.
//!
//! Threads: `nat64d-proxy`, one per two CPUs (one to four), each a
//! single-threaded tokio runtime accepting from the same listening sockets
//! (the kernel wakes them all, one wins each connection); a connection stays
//! on the thread that accepted it, so no wake-up crosses threads.

use crate::config::Config;
use crate::proxy::{http, proxyv2, sniff, Backend, BackendPolicy, ClientAddress, Refusal, SiteMap, Sniff, SniffLimits};
use crate::sys::splice::{shutdown_write, splice, Pipe};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
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
    spliced: AtomicU64,
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
    /// Directions that filled their buffer and went on by splice (bulk).
    #[serde(default)]
    pub spliced: u64,
    /// Directions that would have gone on by splice but had no pipe (file
    /// limit): relayed through their buffer.
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
    stop: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Binds every `[proxy] listen` address and starts accepting; fails
    /// without serving anything when one cannot be bound.
    pub fn start(c: &Config) -> io::Result<Relay> {
        let st = Settings::from_config(c).map_err(io::Error::other)?;
        // Half the CPUs (the other half is the NAT workers'), one to four.
        let threads = (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).clamp(1, 4);
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
        // Every runtime and its listeners first, so a failure starts nothing.
        let mut runtimes = vec![];
        for _ in 0..threads {
            let rt = tokio::runtime::Builder::new_current_thread()
                // Name lookups (`resolve = true`) block a thread of this pool.
                .max_blocking_threads(8)
                .thread_name("nat64d-proxy")
                .enable_all()
                .build()?;
            let ls = {
                let _g = rt.enter();
                listeners
                    .iter()
                    .map(|l| l.try_clone().and_then(TcpListener::from_std))
                    .collect::<io::Result<Vec<_>>>()?
            };
            runtimes.push((rt, ls));
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut handles = vec![];
        for (rt, ls) in runtimes {
            let (sh, mut stopped) = (shared.clone(), stopped.clone());
            let h = std::thread::Builder::new().name("nat64d-proxy".into()).spawn(move || {
                rt.block_on(async move {
                    for l in ls {
                        tokio::spawn(accept_loop(sh.clone(), l));
                    }
                    tokio::spawn(pace_timer());
                    let _ = stopped.wait_for(|s| *s).await;
                });
                rt.shutdown_timeout(Duration::from_millis(500));
            })?;
            handles.push(h);
        }
        Ok(Relay { shared, stop, threads: handles })
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
            spliced: c.spliced.load(Relaxed),
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
        // Each thread drops its runtime, and with it every connection.
        let _ = self.stop.send(true);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

/// Keeps a deadline at most [`PACE`] ahead in the thread's timer, so
/// arming a connection's first-bytes, connect or idle deadline (all later
/// than that, unless configured below it) never makes tokio wake its own
/// driver to shorten the sleep: an eventfd write and an extra epoll_wait
/// per deadline otherwise. Costs four wake-ups a second per thread.
async fn pace_timer() {
    let mut t = tokio::time::interval(PACE);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        t.tick().await;
    }
}

const PACE: Duration = Duration::from_millis(250);

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
        // Only a wildcard listener needs to ask which address was reached.
        let listen = if local.ip().is_unspecified() { s.local_addr().unwrap_or(local) } else { local };
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
    // Not zeroed: reads fill it from its start (and it becomes the
    // visitor-to-backend buffer once relaying).
    let mut buf: Vec<u8> = Vec::with_capacity(first_buffer(&st.limits));
    let cap = buf.capacity();
    let deadline = tokio::time::Instant::now() + st.first_bytes;
    let decision = loop {
        match sniff(&buf, &st.limits) {
            Sniff::NeedMore => {}
            d => break d,
        }
        if buf.len() == cap {
            break Sniff::Refuse(if buf[0] == 22 { Refusal::ClientHelloTooLarge } else { Refusal::HttpHeadTooLarge });
        }
        match tokio::time::timeout_at(deadline, s.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return sh.refuse(Reason::ClosedEarly),
            Ok(Ok(_)) => {}
            Err(_) => {
                sh.refuse(Reason::FirstBytesTimeout);
                let is_http = !buf.is_empty() && buf[0] != 22;
                return tell(&mut s, is_http, http::TIMEOUT, None).await;
            }
        }
    };
    let n = buf.len();
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
    sh.c.relayed.fetch_add(1, Relaxed);
    counters.active.fetch_add(1, Relaxed);
    conn.last.store(sh.now_ms(), Relaxed);
    let ctx = Ctx { sh: &sh, conn: &conn, site: &counters };
    // The visitor's first bytes, now with the backend.
    ctx.moved(true, n);
    let idle = idle_watch(&sh, &conn, st.idle_ms);
    drop(st);
    tokio::select! {
        _ = relay(&s, &b, buf, &ctx) => {}
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

/// What the backend-to-visitor direction reads into before it splices.
const COPY_BUF: usize = 16 * 1024;

/// Both directions until both have ended (or one fails: then both close).
/// `up` is the buffer the visitor's first bytes came in (already sent on;
/// each read starts it afresh).
async fn relay(client: &TcpStream, backend: &TcpStream, up: Vec<u8>, ctx: &Ctx<'_>) {
    let down = Vec::with_capacity(COPY_BUF);
    let one_ended = AtomicBool::new(false);
    let _ = tokio::try_join!(
        way(client, backend, up, true, ctx, &one_ended),
        way(backend, client, down, false, ctx, &one_ended)
    );
}

/// What one `splice(2)` moves at most: a default pipe's capacity.
const CHUNK: usize = 64 * 1024;

/// The capacity a bulk direction's pipe asks for.
const BULK_PIPE: usize = 256 * 1024;

/// One direction until the reader's FIN, which is passed on as a FIN.
/// Through `buf` while reads leave room in it; the first read that fills
/// it switches to splice through a pipe (bulk), if a pipe can be had.
async fn way(
    from: &TcpStream,
    to: &TcpStream,
    mut buf: Vec<u8>,
    up: bool,
    ctx: &Ctx<'_>,
    one_ended: &AtomicBool,
) -> io::Result<()> {
    let mut pipe = None;
    let mut fell_back = false;
    loop {
        buf.clear();
        let cap = buf.capacity();
        let n = read_some(from, || from.try_read_buf(&mut buf), cap).await?;
        if n == 0 {
            break;
        }
        write_all(to, &buf[..n]).await?;
        ctx.moved(up, n);
        if n == cap && !fell_back {
            match Pipe::new() {
                Ok(p) => {
                    ctx.sh.c.spliced.fetch_add(1, Relaxed);
                    pipe = Some(p);
                    break;
                }
                Err(_) => {
                    // Out of descriptors, say: the buffer goes on.
                    ctx.sh.c.copy_fallback.fetch_add(1, Relaxed);
                    fell_back = true;
                }
            }
        }
    }
    if let Some(pipe) = pipe {
        drop(buf);
        let chunk = pipe.set_capacity(BULK_PIPE).unwrap_or(CHUNK);
        splice_way(from, to, &pipe, chunk, up, ctx).await?;
    }
    // When the other way has ended too, both sockets are closed next, and
    // the close sends this FIN: no shutdown(2) needed.
    if !one_ended.swap(true, Relaxed) {
        half_close(to);
    }
    Ok(())
}

/// The next bytes from `from` by `read` (at most `max`), 0 at its end.
/// A TCP read that returns less than `max` has emptied the socket (as
/// tokio's own `poll_read` assumes), so its readiness is cleared then and
/// there (tokio keeps it if an event came in meanwhile): the next read
/// waits for data instead of trying and failing first, a system call saved
/// per burst. Not for splice(2), which stops short when the pipe is full.
async fn read_some(from: &TcpStream, mut read: impl FnMut() -> io::Result<usize>, max: usize) -> io::Result<usize> {
    loop {
        from.readable().await?;
        let mut got = None;
        let r = from.try_io(Interest::READABLE, || {
            let n = read()?;
            if n == 0 || n == max {
                return Ok(n);
            }
            got = Some(n);
            Err(io::ErrorKind::WouldBlock.into())
        });
        match (r, got) {
            (_, Some(n)) | (Ok(n), None) => return Ok(n),
            (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => continue,
            (Err(e), None) => return Err(e),
        }
    }
}

/// All of `b` to `to`.
async fn write_all(to: &TcpStream, b: &[u8]) -> io::Result<()> {
    let mut at = 0;
    while at < b.len() {
        to.writable().await?;
        match to.try_write(&b[at..]) {
            Ok(k) => at += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One direction by splice, socket into the pipe and the pipe out to the
/// other socket, until the reader's end of input.
async fn splice_way(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    chunk: usize,
    up: bool,
    ctx: &Ctx<'_>,
) -> io::Result<()> {
    let (rfd, wfd) = (from.as_raw_fd(), to.as_raw_fd());
    loop {
        from.readable().await?;
        // The pipe is empty here, so EAGAIN can only mean the socket is. A
        // short splice does not: the pipe's slots may have run out first,
        // so only EAGAIN clears the readiness here.
        let n = match from.try_io(Interest::READABLE, || splice(rfd, pipe.w, chunk)) {
            Ok(0) => return Ok(()),
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
