//! The daemon's life, in named steps: load the configuration, build the
//! NAT, bind the management sockets, check that the TUN device is free,
//! open the dataplane (TUN queues with the offload fallback, the io_uring
//! probe, the device's link and routes: nothing on the device changes
//! before every check has passed), start DNS64, spawn the workers and the
//! listeners, supervise them, and summarise at the stop. Each step fails with a [`StartError`] that knows
//! its exit status.

use super::{device, listeners, maplog, statefile, sync, Notifier, State};
use crate::config::{Config, ConfigError, DataplaneMode, Overrides};
use crate::dataplane::tun::Tun;
use crate::dataplane::worker::{self, WorkerSlot, WorkerStats};
use crate::dns64::server::Dns64Server;
use crate::nat::{Nat, NatError};
use crate::xlat::{DropReason, XlatConfig};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Exit status after a clean stop.
pub const EXIT_OK: u8 = 0;
/// Exit status when the system refused something (a device, a socket, a thread).
pub const EXIT_SYSTEM: u8 = 1;
/// Exit status for a configuration the daemon cannot run.
pub const EXIT_CONFIG: u8 = 2;

/// Why the daemon could not start (or had to stop).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error(
        "cannot open TUN device '{name}' with {queues} queue(s): {source} (needs CAP_NET_ADMIN and read-write access to /dev/net/tun)"
    )]
    OpenTun { name: String, queues: usize, source: io::Error },
    #[error("{0}")]
    Device(String),
    #[error("{0}")]
    Xdp(String),
    #[error(
        "TUN device '{0}' is in use: another process (another nat64d?) has queues attached; nothing was changed (stop it, or set tun.name to another device)"
    )]
    DeviceBusy(String),
    #[error("static BIB {entry}: {source}")]
    StaticBib { entry: String, source: NatError },
    #[error("{0}")]
    Control(String),
    #[error("cannot listen for metrics on {addr}: {source}")]
    Metrics { addr: std::net::SocketAddr, source: io::Error },
    #[error("{0}")]
    Dns64(String),
    #[error("{0} ([proxy])")]
    Proxy(String),
    #[error("{0} ([mapping_log])")]
    MapLog(String),
    #[error("{0} ([sync])")]
    Sync(String),
    #[error("cannot handle signals: {0}")]
    Signals(io::Error),
    #[error("cannot start {what}: {source}")]
    Thread { what: String, source: io::Error },
}

impl StartError {
    /// The process exit status this error ends the daemon with.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => EXIT_CONFIG,
            _ => EXIT_SYSTEM,
        }
    }
}

/// Run the daemon until SIGTERM / SIGINT. Returns the process exit code:
/// [`EXIT_OK`] after a clean stop, [`EXIT_SYSTEM`] when the system refused
/// something, [`EXIT_CONFIG`] for a bad configuration.
pub fn run(path: Option<PathBuf>, ov: Overrides) -> u8 {
    let cfg = match load(path.as_deref(), &ov) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nat64d: {e}");
            return e.exit_code();
        }
    };
    let notify = Notifier::from_env();
    super::init_logging(&cfg);
    match start(cfg, path, ov, notify) {
        Ok(code) => code,
        Err(e) => {
            error!("{e}");
            e.exit_code()
        }
    }
}

/// Step 1: the configuration, with the checks only a running daemon needs.
fn load(path: Option<&std::path::Path>, ov: &Overrides) -> Result<Config, StartError> {
    let cfg = Config::load(path, ov)?;
    cfg.check_runnable(&path.map_or("command line".into(), |p| p.display().to_string()))?;
    Ok(cfg)
}

/// The opened TUN queues (or AF_XDP sockets) and how they move packets.
struct Dataplane {
    tuns: Vec<Tun>,
    xdp: Option<super::xdpstart::XdpPlane>,
    /// The device's name as the kernel gave it ("-" with DNS64 alone).
    name: String,
    /// What the offloads do, for the start line.
    offload: String,
    io: worker::Io,
    /// The netlink handle that set the device up (routes go at a stop).
    device: Option<device::Device>,
}

/// Step 5: open the TUN queues (offloads when the kernel takes them), probe
/// io_uring, and set up the device's link and routes.
fn open_dataplane(cfg: &Config) -> Result<Dataplane, StartError> {
    let mut dp = Dataplane {
        tuns: vec![],
        xdp: None,
        name: "-".into(),
        offload: "off".into(),
        io: worker::Io::Plain,
        device: None,
    };
    if cfg.dns64.only {
        return Ok(dp);
    }
    if cfg.dataplane == DataplaneMode::Xdp {
        let x = super::xdpstart::open(cfg).map_err(StartError::Xdp)?;
        dp.name = x.interfaces.join("+");
        dp.offload = "none (AF_XDP)".into();
        dp.xdp = Some(x);
        return Ok(dp);
    }
    let queues = match cfg.tun.queues {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let open = |vnet: bool| {
        Tun::open_queues(&cfg.tun.name, queues, vnet).map_err(|source| StartError::OpenTun {
            name: cfg.tun.name.clone(),
            queues,
            source,
        })
    };
    dp.tuns = open(cfg.tun.offload)?;
    if cfg.tun.offload {
        match dp.tuns[0].set_offload() {
            Ok(o) => dp.offload = if o.uso { "TSO and USO".into() } else { "TSO (no USO in this kernel)".into() },
            Err(e) => {
                warn!("TUN offloads unavailable ({e}): running without them");
                dp.tuns.clear();
                dp.tuns = open(false)?;
            }
        }
    }
    if cfg.tun.io_uring {
        match crate::dataplane::uring::probe() {
            Ok(()) => dp.io = worker::Io::Batched,
            Err(e) => warn!("io_uring unavailable ({e}): one read and one write per packet"),
        }
    }
    dp.name = dp.tuns[0].name().to_string();
    if cfg.tun.setup {
        dp.device = Some(device::setup(&dp.name, cfg).map_err(StartError::Device)?);
    }
    Ok(dp)
}

/// Step 4: refuse a TUN device another process already reads (issue 18):
/// attaching more queues to it would split its traffic between two NAT
/// tables. A TUN device reports carrier exactly while a queue is attached;
/// a device that does not exist, or exists with no queue (persistent, made
/// by the operator), is free.
fn device_free(cfg: &Config) -> Result<(), StartError> {
    if cfg.dns64.only || cfg.dataplane == DataplaneMode::Xdp {
        return Ok(());
    }
    let carrier = std::fs::read_to_string(format!("/sys/class/net/{}/carrier", cfg.tun.name));
    if carrier.is_ok_and(|c| c.trim() == "1") {
        return Err(StartError::DeviceBusy(cfg.tun.name.clone()));
    }
    Ok(())
}

/// Step 2: the NAT tables with the configured static BIB entries.
fn build_nat(cfg: &Config) -> Result<Nat, StartError> {
    let nat = Nat::new(cfg.nat_config(), cfg.nat.shards);
    for b in &cfg.static_bib {
        nat.add_static(b.proto, (*b.ipv6.ip(), b.ipv6.port()), (*b.ipv4.ip(), b.ipv4.port())).map_err(|source| {
            StartError::StaticBib { entry: format!("{} {} {}", b.proto.label(), b.ipv6, b.ipv4), source }
        })?;
    }
    Ok(nat)
}

/// Step 3: the control socket and the optional metrics listener.
fn bind_management(cfg: &Config) -> Result<(UnixListener, Option<TcpListener>), StartError> {
    let control = listeners::bind_control(&cfg.control.socket).map_err(StartError::Control)?;
    let metrics = match cfg.metrics.listen {
        Some(addr) => Some(TcpListener::bind(addr).map_err(|source| StartError::Metrics { addr, source })?),
        None => None,
    };
    Ok((control, metrics))
}

/// The inbound relay, when `[proxy] listen` names addresses.
fn start_relay(cfg: &Config) -> Result<Option<super::relay::Relay>, StartError> {
    if !cfg.proxy.enabled() {
        return Ok(None);
    }
    // A relayed connection holds two sockets, and two pipes while it moves
    // bulk both ways: the most it can take.
    let need = u64::from(cfg.proxy.max_connections) * 6 + 256;
    let files = crate::sys::raise_nofile_limit();
    if files < need {
        warn!(
            "proxy: only {files} open files allowed (RLIMIT_NOFILE) for max_connections = {} ({need} wanted); \
             connections past that wait in the listen queue",
            cfg.proxy.max_connections
        );
    }
    let r = super::relay::Relay::start(cfg).map_err(|e| StartError::Proxy(e.to_string()))?;
    info!("{}", super::relay::describe(&r, cfg));
    Ok(Some(r))
}

/// Step 6: the DNS64 server, when enabled.
fn start_dns64(cfg: &Config) -> Result<Option<Dns64Server>, StartError> {
    if !cfg.dns64.enabled {
        return Ok(None);
    }
    let files = crate::sys::raise_nofile_limit();
    if files < 8192 {
        warn!("dns64: only {files} open files allowed (RLIMIT_NOFILE); queries beyond that get SERVFAIL under load");
    }
    let d =
        Dns64Server::start(cfg.dns64_server(), cfg.dns64_settings()).map_err(|e| StartError::Dns64(e.to_string()))?;
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
    Ok(Some(d))
}

fn join<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

fn spawn<F: FnOnce() -> T + Send + 'static, T: Send + 'static>(
    name: String,
    what: &str,
    f: F,
) -> Result<JoinHandle<T>, StartError> {
    std::thread::Builder::new().name(name).spawn(f).map_err(|source| StartError::Thread { what: what.into(), source })
}

type Worker = JoinHandle<io::Result<WorkerStats>>;

/// Step 7: one worker thread per TUN queue (the first one sweeps).
fn spawn_workers(
    state: &Arc<State>,
    tuns: Vec<Tun>,
    xcfg: &XlatConfig,
    stop: &Arc<AtomicBool>,
    io: worker::Io,
) -> Result<Vec<Worker>, StartError> {
    let mut workers = Vec::with_capacity(tuns.len());
    for (i, tun) in tuns.into_iter().enumerate() {
        let (st, stop, xcfg) = (Arc::clone(state), Arc::clone(stop), xcfg.clone());
        workers.push(spawn(format!("nat64d-w{i}"), &format!("worker {i}"), move || {
            worker::run(&tun, &st.nat, xcfg, &stop, &st.slots[i], i == 0, st.epoch, io)
        })?);
    }
    Ok(workers)
}

/// Step 7, AF_XDP: one worker per queue (the first one sweeps).
fn spawn_xdp_workers(
    state: &Arc<State>,
    queues: Vec<crate::dataplane::xdp::Queue>,
    xcfg: &XlatConfig,
    stop: &Arc<AtomicBool>,
    hops: &Arc<crate::dataplane::hops::Shared>,
) -> Result<Vec<Worker>, StartError> {
    let mut workers = Vec::with_capacity(queues.len());
    for (i, q) in queues.into_iter().enumerate() {
        let (st, stop, xcfg, hops) = (Arc::clone(state), Arc::clone(stop), xcfg.clone(), Arc::clone(hops));
        workers.push(spawn(format!("nat64d-w{i}"), &format!("worker {i}"), move || {
            crate::dataplane::xdp::run(q, &st.nat, xcfg, &stop, &st.slots[i], i == 0, st.epoch, &hops)
        })?);
    }
    Ok(workers)
}

/// Step 8: the control socket's and the metrics endpoint's threads.
fn spawn_listeners(state: &Arc<State>, control: UnixListener, metrics: Option<TcpListener>) -> Result<(), StartError> {
    let st = Arc::clone(state);
    spawn("nat64d-ctl".into(), "the control thread", move || listeners::serve_control(st, control))?;
    if let Some(l) = metrics {
        let st = Arc::clone(state);
        info!("metrics at http://{}/metrics", l.local_addr().map_or("?".into(), |a| a.to_string()));
        spawn("nat64d-metrics".into(), "the metrics thread", move || listeners::serve_metrics(st, l))?;
    }
    Ok(())
}

fn fmt_opt(a: Option<std::net::SocketAddr>) -> String {
    a.map_or("-".into(), |a| a.to_string())
}

/// The sync side, when `[sync] role` is set: the key read, the listening
/// socket bound (before the device is touched), a standby's NAT told so.
fn start_sync(cfg: &Config, nat: &Nat) -> Result<(Option<Arc<sync::Sync>>, Option<TcpListener>), StartError> {
    if cfg.sync.role == crate::config::SyncRole::Off {
        return Ok((None, None));
    }
    let y = sync::Sync::new(&cfg.sync).map_err(StartError::Sync)?;
    let l = match cfg.sync.listen {
        Some(a) => Some(TcpListener::bind(a).map_err(|e| StartError::Sync(format!("cannot listen on {a}: {e}")))?),
        None => None,
    };
    nat.set_standby(cfg.sync.role == crate::config::SyncRole::Standby, 0);
    Ok((Some(Arc::new(y)), l))
}

fn start(cfg: Config, path: Option<PathBuf>, ov: Overrides, notify: Notifier) -> Result<u8, StartError> {
    // Every check before the device is touched: the control socket (another
    // nat64d answering there) first, then the device itself (another
    // process's queues attached), and only then link, MTU and routes.
    let nat = build_nat(&cfg)?;
    // Before any packet: the table the last stop saved.
    if let Some(p) = &cfg.state.file {
        statefile::load(&nat, 0, p);
    }
    let log_sinks = if cfg.mapping_log.enabled() {
        Some(maplog::Sinks::open(&cfg.mapping_log).map_err(StartError::MapLog)?)
    } else {
        None
    };
    let (control, metrics) = bind_management(&cfg)?;
    let (sync, sync_listener) = match start_sync(&cfg, &nat) {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&cfg.control.socket);
            return Err(e);
        }
    };
    let opened = device_free(&cfg).and_then(|()| open_dataplane(&cfg));
    let dp = match opened {
        Ok(dp) => dp,
        Err(e) => {
            let _ = std::fs::remove_file(&cfg.control.socket);
            return Err(e);
        }
    };
    let dns64 = match start_dns64(&cfg) {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&cfg.control.socket);
            return Err(e);
        }
    };
    let relay = match start_relay(&cfg) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&cfg.control.socket);
            return Err(e);
        }
    };
    let mut xcfg = cfg.xlat_config();
    if let Some(x) = &dp.xdp {
        // The interfaces' own MTUs are the next-hop MTUs (RFC 7915 4, 5).
        (xcfg.ipv6_mtu, xcfg.ipv4_mtu) = x.mtus;
    }
    let workers_n = dp.xdp.as_ref().map_or(dp.tuns.len(), |x| x.queues.len());
    let dataplane = dp.xdp.as_ref().map_or("tun".to_string(), |x| x.describe());
    let (xdp_queues, xdp_control) = match dp.xdp {
        Some(x) => (Some((x.queues, x.hops)), Some(Mutex::new(x.control))),
        None => (None, None),
    };
    let socket_path = cfg.control.socket.clone();
    let state = Arc::new(State {
        nat,
        cfg: Mutex::new(cfg),
        path,
        ov,
        slots: (0..workers_n).map(|_| WorkerSlot::default()).collect(),
        epoch: Instant::now(),
        notify,
        tun: dp.name.clone(),
        dataplane,
        xdp: xdp_control,
        dns64,
        maplog: log_sinks.as_ref().map(|_| Arc::new(maplog::MapLogStats::default())),
        device: dp.device,
        relay,
        sync,
    });
    let signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(StartError::Signals)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut hops_thread = None;
    let workers = match xdp_queues {
        Some((queues, hops)) => {
            let stop2 = Arc::clone(&stop);
            let h = Arc::clone(&hops);
            hops_thread = Some(spawn("nat64d-hops".into(), "the next-hop thread", move || {
                crate::dataplane::hops::mirror(h, stop2)
            })?);
            spawn_xdp_workers(&state, queues, &xcfg, &stop, &hops)?
        }
        None => spawn_workers(&state, dp.tuns, &xcfg, &stop, dp.io)?,
    };
    spawn_listeners(&state, control, metrics)?;
    if let Some(y) = &state.sync {
        // One guard: a second `config()` in the same statement would deadlock.
        let (listen, peer) = {
            let c = state.config();
            (c.sync.listen, c.sync.peer)
        };
        info!("sync: {} (listen {}, peer {})", y.role().label(), fmt_opt(listen), fmt_opt(peer));
        if let Some(l) = sync_listener {
            let (y, st) = (Arc::clone(y), Arc::clone(&state));
            spawn("nat64d-sync-srv".into(), "the sync server thread", move || sync::serve(y, st, l))?;
        }
        let (y, st) = (Arc::clone(y), Arc::clone(&state));
        spawn("nat64d-sync".into(), "the sync fetch thread", move || sync::fetch(y, st))?;
    }
    // With a state file the blocks outlive the process: no release at the stop.
    let close_at_stop = state.config().state.file.is_none();
    let log_thread = match (log_sinks, &state.maplog) {
        (Some(sinks), Some(stats)) => {
            info!("mapping log: {}", sinks.describe());
            let (st, stats) = (Arc::clone(&state), Arc::clone(stats));
            Some(spawn("nat64d-maplog".into(), "the mapping log thread", move || {
                maplog::run(&st.nat, sinks, &stats, st.epoch, close_at_stop)
            })?)
        }
        _ => None,
    };
    summarise_start(&state, &dp.offload, dp.io, &socket_path);
    state.notify.ready(&state.status());

    let mut failed = supervise(&state, signals, &workers);
    state.notify.stopping();
    if let Some(y) = &state.sync {
        y.stop();
    }
    stop.store(true, Ordering::Relaxed);
    let finals = join_workers(&state, workers, &mut failed);
    // The programs detach with their links (dropped with the state) after
    // the workers are gone.
    if let Some(t) = hops_thread {
        let _ = t.join();
    }
    // The table is still now: save it for the next start.
    if let Some(p) = state.config().state.file.clone() {
        match statefile::save(&state.nat, state.now(), &p) {
            Ok(m) => info!("{m}"),
            Err(e) => error!("{e}"),
        }
    }
    // After the workers: their last events are in the queues by now.
    if let (Some(t), Some(m)) = (log_thread, &state.maplog) {
        m.stop.store(true, Ordering::Release);
        if t.join().is_err() {
            error!("the mapping log thread panicked");
        }
        info!(
            "mapping log: {} records written, {} lost",
            m.records.load(Ordering::Relaxed),
            m.lost.load(Ordering::Relaxed)
        );
    }
    let _ = std::fs::remove_file(&socket_path);
    if let Some(d) = &state.device {
        for e in d.remove_routes() {
            warn!("{e}");
        }
    }
    summarise_stop(&state, &finals);
    Ok(if failed { EXIT_SYSTEM } else { EXIT_OK })
}

/// The start line: what is translated, where, and how.
fn summarise_start(state: &State, offload: &str, io: worker::Io, socket: &std::path::Path) {
    if state.slots.is_empty() {
        info!("serving DNS64 only (no TUN device, no translation); control socket {}", socket.display());
        return;
    }
    let c = state.config();
    if state.dataplane != "tun" {
        info!(
            "translating {} <-> {} pool4 address(es) with {} worker(s), {}; control socket {}",
            c.pool6,
            c.pool4_size(),
            state.slots.len(),
            state.dataplane,
            socket.display()
        );
        return;
    }
    info!(
        "translating {} <-> {} pool4 address(es) on {} with {} worker(s), offloads {offload}, {}; control socket {}",
        c.pool6,
        c.pool4_size(),
        state.tun,
        state.slots.len(),
        if io == worker::Io::Batched { "batched I/O (io_uring)" } else { "a read and a write per packet" },
        socket.display()
    );
}

/// Step 9: until a stop signal (or a worker's death): reloads on SIGHUP,
/// watchdog pings while every worker goes round its loop. True when a
/// worker stopped unexpectedly.
fn supervise(state: &State, mut signals: Signals, workers: &[Worker]) -> bool {
    let mut last_ping = Instant::now() - Duration::from_secs(3600);
    loop {
        for sig in signals.pending() {
            if sig == SIGHUP {
                let _ = state.reload();
            } else {
                info!("signal {sig}: stopping");
                return false;
            }
        }
        if workers.iter().any(|w| w.is_finished()) {
            error!("a worker stopped unexpectedly; stopping");
            return true;
        }
        if let Some(wd) = state.notify.watchdog {
            let now = state.now();
            let alive = state.slots.iter().all(|s| now.saturating_sub(s.heartbeat.load(Ordering::Relaxed)) < 5000);
            if alive && last_ping.elapsed() >= wd / 2 {
                state.notify.watchdog_ping();
                last_ping = Instant::now();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Step 10: collect the workers' final counters; a worker that failed or
/// panicked sets `failed`.
fn join_workers(state: &State, workers: Vec<Worker>, failed: &mut bool) -> Vec<WorkerStats> {
    let mut finals = vec![];
    for (i, w) in workers.into_iter().enumerate() {
        match w.join() {
            Ok(Ok(s)) => finals.push(s),
            Ok(Err(e)) => {
                error!("worker {i}: {}: {e}", state.tun);
                *failed = true;
                finals.push(state.slots[i].snapshot());
            }
            Err(_) => {
                error!("worker {i} panicked");
                *failed = true;
            }
        }
    }
    finals
}

/// Step 11: the final log lines (packets, drops by reason, DNS64).
fn summarise_stop(state: &State, finals: &[WorkerStats]) {
    let mut total = WorkerStats::default();
    for f in finals {
        total.merge(f);
    }
    let x = &total.xlat;
    let d = &total.xdp;
    if d.xdp_workers > 0 {
        info!(
            "AF_XDP: {} frames in, {} out, {} to the kernel ({} refused), {} lost to a full TX ring, {} for want of a free frame",
            d.rx_frames, d.tx_frames, d.to_kernel, d.to_kernel_errors, d.tx_ring_full, d.no_free_frame
        );
    }
    info!(
        "stopped: {} packets IPv6->IPv4, {} IPv4->IPv6, {} dropped, {} ICMP errors sent, {} lost writing to the TUN device, {} sessions left",
        x.out_6to4.packets.iter().sum::<u64>(),
        x.in_4to6.packets.iter().sum::<u64>(),
        x.real_drops(),
        x.icmp_errors_sent,
        total.tun_write_errors,
        state.nat.session_count()
    );
    for r in DropReason::ALL {
        if x.dropped(*r) > 0 {
            info!("  dropped {}: {}", r.label(), x.dropped(*r));
        }
    }
    if let Some(r) = &state.relay {
        super::relay::summary(r);
    }
    if let Some(d) = &state.dns64 {
        let d = d.stats().counters;
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
}
