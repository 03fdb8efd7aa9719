//! The DNS64 server: the I/O driver around [`super::Dns64`]. It listens on
//! UDP and TCP, answers from the cache when it can (no parsing beyond the
//! question, no task), and otherwise resolves through the upstream
//! resolvers in a task of its own, applying RFC 6147 on the way.
//!
//! Runs on its own tokio runtime (threads `nat64d-dns`), apart from the
//! packet workers. Settings that may change at run time (prefixes,
//! exclusions, upstreams, timeout, client networks) are swapped whole;
//! tasks pick up the new ones at their next query.
//!
//! Transport apart from the handler, as hickory keeps them: [`listen`] has
//! the UDP and TCP loops, [`handler`] what is answered (the cache fast
//! path, resolution with RFC 6147), [`upstream`] the exchange with the
//! resolvers; this file the settings, counters and the server's lifetime.

mod handler;
mod listen;
mod upstream;

use listen::{tcp_loop, udp_loop};

use super::cache::Cache;
use super::Dns64;
use crate::addr::IpNet;
use serde::{Deserialize, Serialize};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, UdpSocket};

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
    /// TCP connections in all, from one address, and from one IPv6 /64
    /// (RFC 7766 6.2: no client may take the server's connections).
    pub max_tcp_clients: usize,
    pub max_tcp_per_host: usize,
    pub max_tcp_per_net64: usize,
    pub max_inflight: usize,
    /// A connection is closed after this without a query; under load (more
    /// than half of `max_tcp_clients` open) after a tenth of it.
    pub tcp_idle: Duration,
    /// A query, once its first byte has come, must arrive whole within this.
    pub tcp_query_deadline: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![],
            threads: 1,
            cache_size: 100_000,
            cache_max_ttl: 86_400,
            max_tcp_clients: 256,
            max_tcp_per_host: 16,
            max_tcp_per_net64: 64,
            max_inflight: 4096,
            tcp_idle: Duration::from_secs(10),
            tcp_query_deadline: Duration::from_secs(2),
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
        chased: "CNAME hops the upstream left unfinished, followed here (RFC 6147 5.1.5)",
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

pub(super) struct Shared {
    settings: RwLock<Arc<Settings>>,
    generation: AtomicU64,
    cache: Cache,
    c: Counters,
    epoch: Instant,
    inflight: AtomicUsize,
    tcp_clients: AtomicUsize,
    /// Connections from clients outside `allow` being answered REFUSED.
    tcp_refusing: AtomicUsize,
    /// Open TCP connections per client address and per IPv6 /64.
    tcp_per_client: std::sync::Mutex<std::collections::HashMap<IpAddr, (usize, usize)>>,
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
pub(super) struct SettingsView {
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
            tcp_refusing: AtomicUsize::new(0),
            tcp_per_client: Default::default(),
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

pub(super) fn with_addr(e: io::Error, what: &str, a: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("dns64: cannot listen on {what} {a}: {e}"))
}

pub(super) fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub(super) fn allowed(s: &Settings, src: SocketAddr) -> bool {
    let ip = unmapped(src.ip());
    s.allow.iter().any(|n| n.contains(ip))
}
