//! The nat64d daemon: the I/O around the sans-IO core. It opens the TUN
//! queues and routes, starts one worker thread per queue on the shared NAT,
//! serves the control socket (and the optional Prometheus endpoint), and
//! turns signals into reloads and a clean stop, telling systemd each step.
//!
//! Threads: `nat64d-wN` (one per TUN queue; the packet path, no locks held
//! across a packet), `nat64d-ctl` (control socket), `nat64d-metrics`
//! (optional), and the main thread (signals, watchdog, shutdown).

pub mod control;
pub mod notify;
pub mod report;

use crate::config::{Config, Overrides};
use crate::dataplane::tun::Tun;
use crate::dataplane::worker::{self, WorkerSlot, WorkerStats};
use crate::dns64::server::Dns64Server;
use crate::nat::Nat;
use crate::xlat::{DropReason, XlatConfig};
use control::{BibLine, Request, Response, SessionLine, SessionList};
use notify::Notifier;
use report::StatsReport;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, SocketAddrV6, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Sessions `nat64ctl sessions` lists unless told otherwise.
pub const DEFAULT_SESSION_LIMIT: usize = 1000;

/// What the threads share.
pub struct State {
    pub nat: Nat,
    cfg: Mutex<Config>,
    path: Option<PathBuf>,
    ov: Overrides,
    slots: Vec<WorkerSlot>,
    epoch: Instant,
    notify: Notifier,
    tun: String,
    dns64: Option<Dns64Server>,
}

impl State {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn config(&self) -> std::sync::MutexGuard<'_, Config> {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counters, as `nat64ctl stats` and the metrics endpoint show them.
    pub fn report(&self) -> StatsReport {
        let workers: Vec<WorkerStats> = self.slots.iter().map(|s| s.snapshot()).collect();
        let pool4: usize = self.config().pool4.iter().map(|e| 1usize << (32 - e.0.len)).sum();
        let mut r = StatsReport::build(
            self.epoch.elapsed().as_secs(),
            &workers,
            &self.nat.census(),
            &self.nat.counters(),
            pool4,
            &self.nat.pool_usage(),
        );
        r.dns64 = self.dns64.as_ref().map(|d| d.stats());
        r
    }

    fn status(&self) -> String {
        let c = self.config();
        if self.slots.is_empty() {
            return "serving DNS64 only".into();
        }
        format!("translating {} on {} ({} worker(s))", c.pool6, self.tun, self.slots.len())
    }

    /// Re-read the configuration and apply what may change at run time.
    /// A bad file, or a change that needs a restart, leaves everything as it was.
    pub fn reload(&self) -> Result<String, String> {
        self.notify.reloading();
        let r = self.reload_inner();
        self.notify.ready(&self.status());
        match &r {
            Ok(m) => info!("reload: {m}"),
            Err(e) => error!("reload refused: {e}"),
        }
        r
    }

    fn reload_inner(&self) -> Result<String, String> {
        let mut cur = self.config();
        let new = Config::load(self.path.as_deref(), &self.ov)
            .map_err(|e| format!("{e}; the running configuration is kept"))?;
        let fixed = cur.restart_only_changes(&new);
        if !fixed.is_empty() {
            return Err(format!("{} cannot change without a restart; nothing was applied", fixed.join(", ")));
        }
        if *cur == new {
            return Ok("configuration unchanged".into());
        }
        if new.tun.setup && !new.dns64.only {
            // Routes for added pool4 networks. Removed ones keep their routes
            // until a restart: their BIB entries still serve live sessions.
            for e in new.pool4.iter().filter(|e| !cur.pool4.contains(e)) {
                ip(&["-4", "route", "replace", &e.0.to_string(), "dev", &self.tun])?;
            }
        }
        self.nat.reconfigure(&new.nat_config());
        if let Some(d) = &self.dns64 {
            let s = new.dns64_settings();
            if *d.settings() != s {
                d.update(s);
                info!("dns64: settings applied, cache emptied");
            }
        }
        let mut problems = vec![];
        for b in cur.static_bib.iter().filter(|b| !new.static_bib.contains(b)) {
            if let Err(e) = self.nat.remove_static(b.proto, (*b.ipv6.ip(), b.ipv6.port())) {
                problems.push(format!("removing static BIB {} {}: {e}", b.proto.label(), b.ipv6));
            }
        }
        for b in new.static_bib.iter().filter(|b| !cur.static_bib.contains(b)) {
            if let Err(e) = self.nat.add_static(b.proto, (*b.ipv6.ip(), b.ipv6.port()), (*b.ipv4.ip(), b.ipv4.port())) {
                problems.push(format!("adding static BIB {} {} {}: {e}", b.proto.label(), b.ipv6, b.ipv4));
            }
        }
        *cur = new;
        let sessions = self.nat.session_count();
        if problems.is_empty() {
            Ok(format!("configuration applied; {sessions} live sessions kept"))
        } else {
            let m = format!("configuration applied except: {}; {sessions} live sessions kept", problems.join("; "));
            warn!("{m}");
            Ok(m)
        }
    }

    /// Answer one control request.
    pub fn handle(&self, req: Request) -> Response {
        let json = |v: Result<serde_json::Value, serde_json::Error>| match v {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err(format!("cannot encode the answer: {e}")),
        };
        match req {
            Request::Stats => json(serde_json::to_value(self.report())),
            Request::Sessions { proto, addr, limit } => {
                let now = self.now();
                let (list, matching) = self.nat.sessions_matching(
                    |s| {
                        proto.is_none_or(|p| s.proto == p) && control::addr_matches(addr, s.v6.0, &[s.v4.0, s.remote.0])
                    },
                    limit.unwrap_or(DEFAULT_SESSION_LIMIT),
                );
                let sessions = list
                    .into_iter()
                    .map(|s| SessionLine {
                        proto: s.proto,
                        ipv6: SocketAddrV6::new(s.v6.0, s.v6.1, 0, 0),
                        ipv4: SocketAddrV4::new(s.v4.0, s.v4.1),
                        remote: SocketAddrV4::new(s.remote.0, s.remote.1),
                        state: s.state.map(|t| t.label().to_string()),
                        expires_in_secs: s.expires.saturating_sub(now).div_ceil(1000),
                    })
                    .collect();
                json(serde_json::to_value(SessionList { matching, sessions }))
            }
            Request::Bib { proto, addr } => {
                let lines: Vec<BibLine> = self
                    .nat
                    .bibs()
                    .into_iter()
                    .filter(|b| proto.is_none_or(|p| b.proto == p) && control::addr_matches(addr, b.v6.0, &[b.v4.0]))
                    .map(|b| BibLine {
                        proto: b.proto,
                        ipv6: SocketAddrV6::new(b.v6.0, b.v6.1, 0, 0),
                        ipv4: SocketAddrV4::new(b.v4.0, b.v4.1),
                        is_static: b.is_static,
                        sessions: b.sessions,
                    })
                    .collect();
                json(serde_json::to_value(lines))
            }
            Request::BibAdd(b) => {
                if !self.nat.config().pool4.iter().any(|g| g.addrs.iter().any(|a| a.addr == *b.ipv4.ip())) {
                    return Response::err(format!("{} is not a pool4 address", b.ipv4.ip()));
                }
                match self.nat.add_static(b.proto, (*b.ipv6.ip(), b.ipv6.port()), (*b.ipv4.ip(), b.ipv4.port())) {
                    Ok(()) => {
                        info!("static BIB entry added: {} {} {}", b.proto.label(), b.ipv6, b.ipv4);
                        Response::ok(serde_json::Value::String("added".into()))
                    }
                    Err(e) => Response::err(e.to_string()),
                }
            }
            Request::BibRemove { proto, ipv6 } => match self.nat.remove_static(proto, (*ipv6.ip(), ipv6.port())) {
                Ok(()) => {
                    info!("static BIB entry removed: {} {}", proto.label(), ipv6);
                    Response::ok(serde_json::Value::String("removed".into()))
                }
                Err(e) => Response::err(e.to_string()),
            },
            Request::Config => {
                let c = self.config();
                Response::ok(serde_json::json!({
                    "file": self.path.as_ref().map(|p| p.display().to_string()),
                    "toml": c.to_toml(),
                }))
            }
            Request::Reload => match self.reload() {
                Ok(m) => Response::ok(serde_json::Value::String(m)),
                Err(e) => Response::err(e),
            },
        }
    }
}

fn join<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run 'ip {}': {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("'ip {}' failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Bring the device up with its MTU and route pool6 and pool4 into it.
fn setup_device(name: &str, cfg: &Config) -> Result<(), String> {
    // No link-local address on the TUN device, so the kernel sends no MLD or
    // router solicitations into it; best effort (older kernels lack the knob).
    let _ = ip(&["link", "set", "dev", name, "addrgenmode", "none"]);
    ip(&["link", "set", "dev", name, "mtu", &cfg.tun.mtu.to_string(), "up"])?;
    ip(&["-6", "route", "replace", &cfg.pool6.to_string(), "dev", name])?;
    for e in &cfg.pool4 {
        ip(&["-4", "route", "replace", &e.0.to_string(), "dev", name])?;
    }
    Ok(())
}

/// Bind the control socket: its directory made 0750 if missing, the socket
/// 0660, and a stale socket (no daemon answering) replaced.
fn bind_control(path: &Path) -> Result<UnixListener, String> {
    let p = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750));
    }
    if path.exists() {
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

fn serve_control(state: Arc<State>, listener: UnixListener) {
    for conn in listener.incoming() {
        let mut s = match conn {
            Ok(s) => s,
            Err(e) => {
                warn!("control socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        let resp = match control::read_request(&mut s) {
            Ok(req) => state.handle(req),
            Err(e) => Response::err(e),
        };
        let mut line = serde_json::to_string(&resp)
            .unwrap_or_else(|e| format!("{{\"ok\":false,\"error\":\"cannot encode the answer: {e}\"}}"));
        line.push('\n');
        let _ = s.write_all(line.as_bytes());
    }
}

/// A minimal HTTP/1.0 responder: GET /metrics gives the Prometheus text.
fn serve_metrics(state: Arc<State>, listener: TcpListener) {
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        let mut head = [0u8; 2048];
        let mut n = 0;
        while n < head.len() {
            match s.read(&mut head[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
            if head[..n].windows(4).any(|w| w == b"\r\n\r\n") || head[..n].windows(2).any(|w| w == b"\n\n") {
                break;
            }
        }
        let req = String::from_utf8_lossy(&head[..n]);
        let path = req.split_whitespace().nth(1).unwrap_or("");
        let (status, ctype, body) = if req.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?"))
        {
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", state.report().prometheus())
        } else {
            ("404 Not Found", "text/plain; charset=utf-8", "nat64d: metrics are at GET /metrics\n".to_string())
        };
        let _ = write!(
            s,
            "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

fn init_logging(cfg: &Config) {
    use crate::config::LogLevel;
    let level = match cfg.log.level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Trace => tracing::Level::TRACE,
    };
    let b = tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).with_target(false);
    // journald stamps lines itself.
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() {
        b.without_time().with_ansi(false).try_init()
    } else {
        b.try_init()
    };
}

/// Run the daemon until SIGTERM / SIGINT. Returns the process exit code:
/// 0 after a clean stop, 1 when the system refused something, 2 for a bad configuration.
pub fn run(path: Option<PathBuf>, ov: Overrides) -> u8 {
    let cfg = match Config::load(path.as_deref(), &ov) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nat64d: {e}");
            return 2;
        }
    };
    if cfg.pool4.is_empty() && !cfg.dns64.only {
        eprintln!("nat64d: no pool4 addresses: give --pool4 or set pool4 = [\"203.0.113.0/28\"] in the configuration");
        return 2;
    }
    let notify = Notifier::from_env();
    init_logging(&cfg);
    match start(cfg, path, ov, notify) {
        Ok(code) => code,
        Err(e) => {
            error!("{e}");
            1
        }
    }
}

fn start(cfg: Config, path: Option<PathBuf>, ov: Overrides, notify: Notifier) -> Result<u8, String> {
    let queues = match cfg.tun.queues {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let open = |vnet: bool| {
        Tun::open_queues(&cfg.tun.name, queues, vnet).map_err(|e| {
            format!(
                "cannot open TUN device '{}' with {queues} queue(s): {e} (needs CAP_NET_ADMIN and read-write access to /dev/net/tun)",
                cfg.tun.name
            )
        })
    };
    let mut tuns = vec![];
    let mut offload = "off".to_string();
    let mut io = worker::Io::Plain;
    let mut tun_name = "-".to_string();
    if !cfg.dns64.only {
        tuns = open(cfg.tun.offload)?;
        if cfg.tun.offload {
            match tuns[0].set_offload() {
                Ok(o) => offload = if o.uso { "TSO and USO".into() } else { "TSO (no USO in this kernel)".into() },
                Err(e) => {
                    warn!("TUN offloads unavailable ({e}): running without them");
                    drop(tuns);
                    tuns = open(false)?;
                }
            }
        }
        if cfg.tun.io_uring {
            match crate::dataplane::uring::probe() {
                Ok(()) => io = worker::Io::Batched,
                Err(e) => warn!("io_uring unavailable ({e}): one read and one write per packet"),
            }
        }
        tun_name = tuns[0].name().to_string();
        if cfg.tun.setup {
            setup_device(&tun_name, &cfg)?;
        }
    }
    let nat = Nat::new(cfg.nat_config(), cfg.nat.shards);
    for b in &cfg.static_bib {
        nat.add_static(b.proto, (*b.ipv6.ip(), b.ipv6.port()), (*b.ipv4.ip(), b.ipv4.port()))
            .map_err(|e| format!("static BIB {} {} {}: {e}", b.proto.label(), b.ipv6, b.ipv4))?;
    }
    let listener = bind_control(&cfg.control.socket)?;
    let metrics = match cfg.metrics.listen {
        Some(a) => Some(TcpListener::bind(a).map_err(|e| format!("cannot listen for metrics on {a}: {e}"))?),
        None => None,
    };
    let dns64 = if cfg.dns64.enabled {
        let files = crate::sys::raise_nofile_limit();
        if files < 8192 {
            warn!(
                "dns64: only {files} open files allowed (RLIMIT_NOFILE); queries beyond that get SERVFAIL under load"
            );
        }
        let d = Dns64Server::start(cfg.dns64_server(), cfg.dns64_settings()).map_err(|e| e.to_string())?;
        let s = d.settings();
        info!(
            "dns64: answering on {} for {}, forwarding to {}, synthesising under {}",
            join(d.local_addrs()),
            join(&s.allow),
            join(&s.upstream),
            join(&s.dns64.prefixes)
        );
        let loopback_only = s.allow.iter().all(|n| n.addr.is_loopback());
        if loopback_only && d.local_addrs().iter().any(|a| !a.ip().is_loopback()) {
            warn!("dns64: only loopback clients are allowed (dns64.allow); other clients get REFUSED");
        }
        Some(d)
    } else {
        None
    };
    let xcfg = XlatConfig { ipv6_mtu: cfg.tun.mtu.max(1280), ipv4_mtu: cfg.tun.mtu, ..XlatConfig::default() };
    let socket_path = cfg.control.socket.clone();
    let state = Arc::new(State {
        nat,
        cfg: Mutex::new(cfg),
        path,
        ov,
        slots: (0..tuns.len()).map(|_| WorkerSlot::default()).collect(),
        epoch: Instant::now(),
        notify,
        tun: tun_name.clone(),
        dns64,
    });

    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| format!("cannot handle signals: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::with_capacity(tuns.len());
    for (i, tun) in tuns.into_iter().enumerate() {
        let (st, stop, xcfg) = (Arc::clone(&state), Arc::clone(&stop), xcfg.clone());
        let h = std::thread::Builder::new()
            .name(format!("nat64d-w{i}"))
            .spawn(move || worker::run(&tun, &st.nat, xcfg, &stop, &st.slots[i], i == 0, st.epoch, io))
            .map_err(|e| format!("cannot start worker {i}: {e}"))?;
        workers.push(h);
    }
    {
        let st = Arc::clone(&state);
        std::thread::Builder::new()
            .name("nat64d-ctl".into())
            .spawn(move || serve_control(st, listener))
            .map_err(|e| format!("cannot start the control thread: {e}"))?;
    }
    if let Some(l) = metrics {
        let st = Arc::clone(&state);
        info!("metrics at http://{}/metrics", l.local_addr().map_or("?".into(), |a| a.to_string()));
        std::thread::Builder::new()
            .name("nat64d-metrics".into())
            .spawn(move || serve_metrics(st, l))
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    }
    if state.slots.is_empty() {
        info!("serving DNS64 only (no TUN device, no translation); control socket {}", socket_path.display());
    } else {
        let c = state.config();
        info!(
            "translating {} <-> {} pool4 address(es) on {} with {} worker(s), offloads {offload}, {}; control socket {}",
            c.pool6,
            c.pool4.iter().map(|e| 1u64 << (32 - e.0.len)).sum::<u64>(),
            tun_name,
            workers.len(),
            if io == worker::Io::Batched { "batched I/O (io_uring)" } else { "a read and a write per packet" },
            socket_path.display()
        );
    }
    state.notify.ready(&state.status());

    let mut last_ping = Instant::now() - Duration::from_secs(3600);
    let mut failed = false;
    'main: loop {
        for sig in signals.pending() {
            if sig == signal_hook::consts::SIGHUP {
                let _ = state.reload();
            } else {
                info!("signal {sig}: stopping");
                break 'main;
            }
        }
        if workers.iter().any(|w| w.is_finished()) {
            error!("a worker stopped unexpectedly; stopping");
            failed = true;
            break;
        }
        if let Some(wd) = state.notify.watchdog {
            // Ping only while every worker goes round its loop.
            let now = state.now();
            let alive = state.slots.iter().all(|s| now.saturating_sub(s.heartbeat.load(Ordering::Relaxed)) < 5000);
            if alive && last_ping.elapsed() >= wd / 2 {
                state.notify.watchdog_ping();
                last_ping = Instant::now();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    state.notify.stopping();
    stop.store(true, Ordering::Relaxed);
    let mut finals = vec![];
    for (i, w) in workers.into_iter().enumerate() {
        match w.join() {
            Ok(Ok(s)) => finals.push(s),
            Ok(Err(e)) => {
                error!("worker {i}: {tun_name}: {e}");
                failed = true;
                finals.push(state.slots[i].snapshot());
            }
            Err(_) => {
                error!("worker {i} panicked");
                failed = true;
            }
        }
    }
    let _ = std::fs::remove_file(&socket_path);
    let mut total = WorkerStats::default();
    for f in &finals {
        total.merge(f);
    }
    let x = &total.xlat;
    info!(
        "stopped: {} packets IPv6->IPv4, {} IPv4->IPv6, {} dropped, {} ICMP errors sent, {} lost writing to the TUN device, {} sessions left",
        x.out_6to4.packets.iter().sum::<u64>(),
        x.in_4to6.packets.iter().sum::<u64>(),
        x.drops.iter().sum::<u64>(),
        x.icmp_errors_sent,
        total.tun_write_errors,
        state.nat.session_count()
    );
    for r in DropReason::ALL {
        if x.dropped(*r) > 0 {
            info!("  dropped {}: {}", r.label(), x.dropped(*r));
        }
    }
    if let Some(d) = &state.dns64 {
        let d = d.stats();
        info!(
            "dns64: {} queries ({} UDP, {} TCP), {} from the cache, {} synthesised, {} refused, {} SERVFAIL",
            d.queries_udp + d.queries_tcp,
            d.queries_udp,
            d.queries_tcp,
            d.cache_hits,
            d.synthesized,
            d.refused,
            d.servfail
        );
    }
    Ok(if failed { 1 } else { 0 })
}
