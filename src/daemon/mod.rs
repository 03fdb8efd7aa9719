//! The nat64d daemon: the I/O around the sans-IO core. It opens the TUN
//! queues and routes, starts one worker thread per queue on the shared NAT,
//! serves the control socket (and the optional Prometheus endpoint), and
//! turns signals into reloads and a clean stop, telling systemd each step.
//!
//! Threads: `nat64d-wN` (one per TUN queue; the packet path, no locks held
//! across a packet), `nat64d-ctl` (control socket), `nat64d-metrics`
//! (optional), and the main thread (signals, watchdog, shutdown).

pub mod control;
mod device;
mod listeners;
mod maplog;
pub mod notify;
pub mod relay;
pub mod report;
mod start;
mod statefile;
pub mod sync;
mod xdpstart;

pub use start::{run, StartError, EXIT_CONFIG, EXIT_OK, EXIT_SYSTEM};

use crate::config::{Config, Overrides};
use crate::dataplane::worker::{WorkerSlot, WorkerStats};
use crate::dns64::server::Dns64Server;
use crate::nat::Nat;
use control::{BibLine, Request, Response, SessionLine, WhoLine};
use notify::Notifier;
use report::StatsReport;
use std::io::Write;
use std::net::{SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;
use tracing::{error, info};

/// The refusal of a dump larger than a request may ask for; `narrow`
/// says how to ask for less.
fn too_many(limit: usize, narrow: &str) -> String {
    format!(
        "{limit} lines asked for; one request lists at most {}: {narrow}(nat64ctl stats counts everything)",
        control::MAX_DUMP
    )
}

/// One element of a streamed JSON list, after a comma unless it is the first.
fn json_item(out: &mut impl Write, first: &mut bool, v: &impl serde::Serialize) -> std::io::Result<()> {
    if !std::mem::take(first) {
        out.write_all(b",")?;
    }
    serde_json::to_writer(&mut *out, v).map_err(std::io::Error::other)
}

fn session_line(s: &crate::nat::SessionView, now: u64) -> SessionLine {
    SessionLine {
        proto: s.proto,
        ipv6: SocketAddrV6::new(s.v6.0, s.v6.1, 0, 0),
        ipv4: SocketAddrV4::new(s.v4.0, s.v4.1),
        remote: SocketAddrV4::new(s.remote.0, s.remote.1),
        state: s.state.map(|t| t.label().to_string()),
        expires_in_secs: s.expires.saturating_sub(now).div_ceil(1000),
    }
}

fn bib_line(b: &crate::nat::BibView) -> BibLine {
    BibLine {
        proto: b.proto,
        ipv6: SocketAddrV6::new(b.v6.0, b.v6.1, 0, 0),
        ipv4: SocketAddrV4::new(b.v4.0, b.v4.1),
        is_static: b.is_static,
        sessions: b.sessions,
    }
}

/// Sessions (and BIB entries) `nat64ctl` lists unless told otherwise.
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
    /// How packets reach the workers, for the report ("tun", or the AF_XDP
    /// interfaces, attach mode and copy mode).
    dataplane: String,
    /// The AF_XDP dataplane's programs (a reload extends the pools they steer).
    xdp: Option<Mutex<xdpstart::XdpControl>>,
    dns64: Option<Dns64Server>,
    /// The mapping log's counters and signals, when it is on.
    maplog: Option<std::sync::Arc<maplog::MapLogStats>>,
    /// The netlink handle on the TUN device, when nat64d set it up.
    device: Option<device::Device>,
    /// The inbound relay, when `[proxy] listen` names addresses.
    relay: Option<relay::Relay>,
    /// Active/standby sync, when `[sync] role` is set.
    sync: Option<std::sync::Arc<sync::Sync>>,
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
        let (pool4, entries) = {
            let c = self.config();
            (c.pool4_size() as usize, c.pool4.iter().map(|e| e.to_string()).collect())
        };
        let mut r = StatsReport::build(
            self.epoch.elapsed().as_secs(),
            &workers,
            &self.nat.census(),
            &self.nat.counters(),
            pool4,
            &self.nat.pool_usage(),
        );
        r.dns64 = self.dns64.as_ref().map(|d| d.stats());
        r.proxy = self.relay.as_ref().map(|p| p.stats());
        r.sync = self.sync.as_ref().map(|s| s.report());
        let (held, subs) = self.nat.block_census();
        r.ports = report::PortsReport {
            mode: self.nat.ports().mode,
            blocks_held: held as u64,
            block_subscribers: subs as u64,
        };
        if let Some(m) = &self.maplog {
            let c = self.config();
            r.mapping_log = Some(report::MapLogReport {
                file: c.mapping_log.file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                ipfix: c.mapping_log.ipfix.map(|a| a.to_string()),
                records: m.records.load(std::sync::atomic::Ordering::Relaxed),
                lost: m.lost.load(std::sync::atomic::Ordering::Relaxed),
            });
        }
        r.pool4_entries = entries;
        if !self.slots.is_empty() && self.dataplane == "tun" {
            r.tun_queue_drops = device::queue_drops(&self.tun).unwrap_or(0);
        }
        r.dataplane = self.dataplane.clone();
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
        // The mapping log is reopened by name whatever the file says
        // (logrotate's postrotate runs a reload after moving it away).
        if let Some(m) = &self.maplog {
            m.reopen.store(true, std::sync::atomic::Ordering::Release);
        }
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
        let relay = match &self.relay {
            Some(_) if cur.proxy != new.proxy => Some(relay::Relay::prepare(&new)?),
            _ => None,
        };
        if new.tun.setup && !new.dns64.only {
            // Routes for added pool4 networks. Removed ones keep their routes
            // until a restart: their BIB entries still serve live sessions.
            if let Some(d) = &self.device {
                d.route_pool4(new.pool4.iter().filter(|e| !cur.pool4.contains(e)))?;
            }
        }
        // AF_XDP: the programs steer the new pool4 networks too, before the
        // NAT hands out their ports (a refusal here applies nothing; if a
        // static entry below is then refused, the extra networks stay
        // steered, which only means their frames reach the NAT to be dropped
        // there rather than by the kernel).
        if let Some(x) = &self.xdp {
            if x.lock().unwrap_or_else(|e| e.into_inner()).steer(&new.pool4)? {
                info!("xdp: the programs now steer {} pool4 network(s)", new.pool4.len());
            }
        }
        // Applied whole or refused whole: the static entries are the one
        // step that can fail (an IPv4 side a live dynamic mapping holds), so
        // they go in first and are undone, with the pool, on a failure.
        self.nat.reconfigure(&new.nat_config());
        let mut added: Vec<&crate::config::StaticBib> = vec![];
        for b in new.static_bib.iter().filter(|b| !cur.static_bib.contains(b)) {
            if let Err(e) = self.nat.add_static(b.proto, (*b.ipv6.ip(), b.ipv6.port()), (*b.ipv4.ip(), b.ipv4.port())) {
                for a in &added {
                    let _ = self.nat.remove_static(a.proto, (*a.ipv6.ip(), a.ipv6.port()));
                }
                self.nat.reconfigure(&cur.nat_config());
                return Err(format!(
                    "static BIB {} {} {}: {e}; nothing was applied (retried at the next reload)",
                    b.proto.label(),
                    b.ipv6,
                    b.ipv4
                ));
            }
            added.push(b);
        }
        for b in cur.static_bib.iter().filter(|b| !new.static_bib.contains(b)) {
            // Gone already (removed by `nat64ctl bib remove`) is what was asked.
            let _ = self.nat.remove_static(b.proto, (*b.ipv6.ip(), b.ipv6.port()));
        }
        if let (Some(r), Some(p)) = (&self.relay, relay) {
            r.apply(p);
            info!("proxy: {} site(s), limits and timeouts applied; open connections kept", r.site_count());
        }
        if let Some(d) = &self.dns64 {
            let s = new.dns64_settings();
            if *d.settings() != s {
                d.update(s);
                info!("dns64: settings applied, cache emptied");
            }
        }
        *cur = new;
        let sessions = self.nat.session_count();
        Ok(format!("configuration applied; {sessions} live sessions kept"))
    }

    /// Who holds pool4 `addr`:`port` now, or what IPv6 `addr`'s subscriber holds.
    fn who(&self, addr: std::net::IpAddr, port: Option<u16>, proto: Option<crate::nat::Proto>) -> Vec<WhoLine> {
        use crate::nat::{PortMode, Proto};
        let mode = self.nat.ports().mode;
        let kind = if mode == PortMode::Deterministic { "deterministic" } else { "block" };
        let mut out = vec![];
        match addr {
            std::net::IpAddr::V4(a) => {
                let Some(port) = port else { return out };
                for p in Proto::ALL.into_iter().filter(|p| proto.is_none_or(|x| x == *p)) {
                    let (bib, block) = self.nat.holder(p, a, port);
                    if let Some(b) = bib {
                        out.push(WhoLine {
                            kind: "bib".into(),
                            proto: p,
                            subscriber: format!("{}/128", b.v6.0),
                            ipv6: Some(SocketAddrV6::new(b.v6.0, b.v6.1, 0, 0)),
                            pool4: a,
                            port_lo: port,
                            port_hi: port,
                        });
                    }
                    if let Some((sub, lo, hi)) = block {
                        out.push(WhoLine {
                            kind: kind.into(),
                            proto: p,
                            subscriber: sub.to_string(),
                            ipv6: None,
                            pool4: a,
                            port_lo: lo,
                            port_hi: hi,
                        });
                    }
                }
            }
            std::net::IpAddr::V6(a) => {
                let (blocks, bibs) = self.nat.holdings_of(a, DEFAULT_SESSION_LIMIT);
                let sub = self.nat.ports().subscriber_of(a).to_string();
                let block = |proto, pool4, port_lo, port_hi| WhoLine {
                    kind: kind.into(),
                    proto,
                    subscriber: sub.clone(),
                    ipv6: None,
                    pool4,
                    port_lo,
                    port_hi,
                };
                let mut held: Vec<_> = blocks.into_iter().map(|(p, v4, lo, hi)| block(p, v4, lo, hi)).collect();
                for m in self.config().deterministic() {
                    let Some((v4, b)) = m.map(a) else { continue };
                    let (lo, hi) = self.nat.ports().block_range(b);
                    held.extend(Proto::ALL.into_iter().map(|p| block(p, v4, lo, hi)));
                }
                out.extend(held.into_iter().filter(|l| proto.is_none_or(|x| x == l.proto)));
                for b in bibs.into_iter().filter(|b| proto.is_none_or(|x| x == b.proto)) {
                    out.push(WhoLine {
                        kind: "bib".into(),
                        proto: b.proto,
                        subscriber: format!("{}/128", b.v6.0),
                        ipv6: Some(SocketAddrV6::new(b.v6.0, b.v6.1, 0, 0)),
                        pool4: b.v4.0,
                        port_lo: b.v4.1,
                        port_hi: b.v4.1,
                    });
                }
            }
        }
        out
    }

    /// Answer one control request into `out` as one line of JSON. The
    /// `sessions` and `bib` dumps are streamed: written shard by shard as
    /// the table is walked (no shard locked while writing), so the daemon
    /// never holds more than one shard's batch of a dump, however large.
    /// Their count of matches comes after the list: a reader of the whole
    /// line sees the same object as ever.
    pub fn respond(&self, req: Request, out: &mut impl Write) -> std::io::Result<()> {
        let (proto, addr, limit, sessions) = match req {
            Request::Sessions { proto, addr, limit } => (proto, addr, limit, true),
            Request::Bib { proto, addr, limit } => (proto, addr, limit, false),
            other => {
                let resp = self.handle(other);
                let line = serde_json::to_vec(&resp).map_err(std::io::Error::other)?;
                out.write_all(&line)?;
                return out.write_all(b"\n");
            }
        };
        let limit = limit.unwrap_or(DEFAULT_SESSION_LIMIT);
        if limit > control::MAX_DUMP {
            let line = serde_json::to_vec(&Response::err(too_many(limit, "narrow it with --proto/--addr ")))
                .map_err(std::io::Error::other)?;
            out.write_all(&line)?;
            return out.write_all(b"\n");
        }
        let mut first = true;
        let matching = if sessions {
            out.write_all(b"{\"ok\":true,\"result\":{\"sessions\":[")?;
            let now = self.now();
            self.nat.sessions_each(
                |s| proto.is_none_or(|p| s.proto == p) && control::addr_matches(addr, s.v6.0, &[s.v4.0, s.remote.0]),
                limit,
                |batch| batch.iter().try_for_each(|s| json_item(out, &mut first, &session_line(s, now))),
            )?
        } else {
            out.write_all(b"{\"ok\":true,\"result\":{\"bibs\":[")?;
            self.nat.bibs_each(
                |b| proto.is_none_or(|p| b.proto == p) && control::addr_matches(addr, b.v6.0, &[b.v4.0]),
                limit,
                |batch| batch.iter().try_for_each(|b| json_item(out, &mut first, &bib_line(b))),
            )?
        };
        writeln!(out, "],\"matching\":{matching}}}}}")
    }

    /// Answer one control request.
    pub fn handle(&self, req: Request) -> Response {
        let json = |v: Result<serde_json::Value, serde_json::Error>| match v {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err(format!("cannot encode the answer: {e}")),
        };
        match req {
            Request::Stats => json(serde_json::to_value(self.report())),
            // Streamed by `respond`; answered whole only here, for callers
            // that want a value (bounded by MAX_DUMP either way).
            Request::Sessions { .. } | Request::Bib { .. } => {
                let mut out = Vec::new();
                match self.respond(req, &mut out).map(|_| serde_json::from_slice::<Response>(&out)) {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => Response::err(format!("cannot encode the answer: {e}")),
                    Err(e) => Response::err(format!("cannot encode the answer: {e}")),
                }
            }
            Request::BibAdd(b) => {
                if let Err((_, m)) = b.check(&self.nat.config().prefix) {
                    return Response::err(m);
                }
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
            Request::Who { addr, port, proto } => json(serde_json::to_value(self.who(addr, port, proto))),
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
            Request::Snapshot => match self.config().state.file.clone() {
                Some(p) => match statefile::save(&self.nat, self.now(), &p) {
                    Ok(m) => {
                        info!("{m}");
                        Response::ok(serde_json::Value::String(m))
                    }
                    Err(e) => Response::err(e),
                },
                None => Response::err("no state file configured ([state] file)"),
            },
            Request::Proxy { limit } => {
                let limit = limit.unwrap_or(DEFAULT_SESSION_LIMIT);
                if limit > control::MAX_DUMP {
                    return Response::err(too_many(limit, "ask with a smaller --limit "));
                }
                match &self.relay {
                    Some(p) => json(serde_json::to_value(p.connections(limit))),
                    None => Response::err("the inbound relay is off ([proxy] listen is empty)"),
                }
            }
            Request::Sync { action } => {
                let Some(s) = &self.sync else {
                    return Response::err("sync is off ([sync] role is not set)");
                };
                let role = match action {
                    None => return json(serde_json::to_value(s.report())),
                    Some(control::SyncAction::Promote) => crate::config::SyncRole::Active,
                    Some(control::SyncAction::Demote) => crate::config::SyncRole::Standby,
                };
                match s.set_role(&self.nat, role, self.now()) {
                    Ok(m) => Response::ok(serde_json::Value::String(m)),
                    Err(e) => Response::err(e),
                }
            }
            Request::Reload => match self.reload() {
                Ok(m) => Response::ok(serde_json::Value::String(m)),
                Err(e) => Response::err(e),
            },
        }
    }
}

pub(crate) fn init_logging(cfg: &Config) {
    use crate::config::LogLevel;
    let level = match cfg.log.level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Trace => tracing::Level::TRACE,
    };
    use std::io::IsTerminal;
    // Colour only for a person at a terminal: a file, a pipe or journald
    // gets plain text (NO_COLOR turns it off at a terminal too).
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let b =
        tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).with_target(false).with_ansi(ansi);
    // journald stamps lines itself.
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() { b.without_time().try_init() } else { b.try_init() };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xlat::{Mapper, Tuple6};
    use control::{BibList, SessionList};

    /// A UDP flow of 2001:db8:1::10 from `sport` through the NAT: its mapping.
    fn udp_flow(st: &State, sport: u16) -> crate::xlat::Tuple4 {
        let t = Tuple6 {
            src: "2001:db8:1::10".parse().unwrap(),
            dst: "2001:db8:64::c633:6407".parse().unwrap(),
            proto: 17,
            sport,
            dport: 53,
        };
        st.nat.at(0).map_6to4(&t, &crate::testpkt::PLAIN).expect("a mapping")
    }

    fn state(dir: &std::path::Path, text: &str) -> State {
        let path = dir.join("nat64d.toml");
        std::fs::write(&path, text).unwrap();
        let cfg = Config::load(Some(&path), &Overrides::default()).unwrap();
        State {
            nat: Nat::new(cfg.nat_config(), cfg.nat.shards),
            cfg: Mutex::new(cfg),
            path: Some(path),
            ov: Overrides::default(),
            slots: vec![],
            epoch: Instant::now(),
            notify: Notifier::default(),
            tun: "nat64".into(),
            dataplane: "tun".into(),
            xdp: None,
            dns64: None,
            maplog: None,
            device: None,
            relay: None,
            sync: None,
        }
    }

    // Issue 18: a reload that cannot be applied whole is refused whole. A
    // static entry whose IPv4 side a live dynamic mapping holds makes the
    // reload fail, naming the entry; nothing of the new file (here a new
    // timeout too) is applied, and the next reload tries again rather than
    // calling the file unchanged.
    #[test]
    fn a_reload_is_applied_whole_or_refused_whole() {
        let dir = std::env::temp_dir().join(format!("nat64d-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base =
            "pool6 = \"2001:db8:64::/96\"\npool4 = [\"203.0.113.1\"]\nallow_non_global = true\n[tun]\nsetup = false\n";
        let st = state(&dir, base);
        // A client's UDP flow from port 5000 holds 203.0.113.1:5000.
        let m = udp_flow(&st, 5000);
        assert_eq!((m.src, m.sport), ("203.0.113.1".parse().unwrap(), 5000));
        let clash = format!(
            "{base}[nat.timeouts]\nudp = 600\n[[static_bib]]\nproto = \"udp\"\nipv6 = \"[2001:db8::53]:53\"\nipv4 = \"203.0.113.1:5000\"\n"
        );
        std::fs::write(dir.join("nat64d.toml"), &clash).unwrap();
        let e = st.reload().unwrap_err();
        assert!(
            e.contains("static BIB udp [2001:db8::53]:53 203.0.113.1:5000") && e.contains("nothing was applied"),
            "{e}"
        );
        assert!(st.config().static_bib.is_empty(), "the running configuration is kept");
        assert_eq!(st.nat.config().timeouts.udp, 300_000, "the new timeout was not applied either");
        assert!(st.nat.bibs().iter().all(|b| !b.is_static), "no half-added entry");
        let again = st.reload().unwrap_err();
        assert!(again.contains("nothing was applied"), "retried, not 'unchanged': {again}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // Issue 18: dumps are bounded. 1500 mappings: a listing gives the
    // default 1000 and says 1500 match; asking for more than MAX_DUMP in
    // one request is refused with what to do instead; filters still count.
    #[test]
    fn dumps_are_bounded_and_counted() {
        let dir = std::env::temp_dir().join(format!("nat64d-dump-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let st = state(&dir, "pool6 = \"2001:db8:64::/96\"\npool4 = [\"203.0.113.0/28\"]\nallow_non_global = true\n[tun]\nsetup = false\n");
        for port in 0..1500u16 {
            udp_flow(&st, 20000 + port);
        }
        let r = st.handle(Request::Bib { proto: None, addr: None, limit: None });
        let l: BibList = serde_json::from_value(r.result).unwrap();
        assert_eq!((l.matching, l.bibs.len()), (1500, 1000));
        let r = st.handle(Request::Sessions { proto: Some(crate::nat::Proto::Udp), addr: None, limit: Some(10) });
        let l: SessionList = serde_json::from_value(r.result).unwrap();
        assert_eq!((l.matching, l.sessions.len()), (1500, 10));
        for req in [
            Request::Sessions { proto: None, addr: None, limit: Some(2_000_000) },
            Request::Bib { proto: None, addr: None, limit: Some(control::MAX_DUMP + 1) },
        ] {
            let r = st.handle(req);
            assert!(!r.ok && r.error.as_deref().is_some_and(|e| e.contains("at most 100000")), "{r:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Counts what is written, keeps nothing.
    struct Tally(usize);
    impl Write for Tally {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    // Issue 18, item 8: dumps are streamed. Listing 20000 sessions writes
    // about 3 MB of JSON, while the daemon never holds more than one shard's
    // batch of it (here a twentieth of what it writes); the streamed line is
    // the same answer the client has always parsed.
    #[test]
    fn dumps_are_streamed_not_built_whole() {
        let dir = std::env::temp_dir().join(format!("nat64d-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let st = state(&dir, "pool6 = \"2001:db8:64::/96\"\npool4 = [\"203.0.113.0/26\"]\nallow_non_global = true\n[tun]\nsetup = false\n");
        for port in 0..20000u16 {
            udp_flow(&st, 1024 + port);
        }
        for req in [
            Request::Sessions { proto: None, addr: None, limit: Some(20000) },
            Request::Bib { proto: None, addr: None, limit: Some(20000) },
        ] {
            let mut out = Tally(0);
            let (r, peak) = crate::test_alloc::peak_bytes(|| st.respond(req.clone(), &mut out));
            r.unwrap();
            assert!(out.0 > 1_000_000, "{req:?} wrote {} bytes", out.0);
            assert!(peak < out.0 / 20, "{req:?}: {peak} bytes held for {} written", out.0);
        }
        let mut line = Vec::new();
        st.respond(Request::Sessions { proto: None, addr: None, limit: Some(3) }, &mut line).unwrap();
        assert!(line.ends_with(b"\n") && !line[..line.len() - 1].contains(&b'\n'), "one line");
        let r: Response = serde_json::from_slice(&line).unwrap();
        let l: SessionList = serde_json::from_value(r.result).unwrap();
        assert_eq!((l.matching, l.sessions.len()), (20000, 3));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // Issue 14: `who` names the holder live: the BIB entry's client in
    // per-session mode, and in deterministic mode the subscriber the formula
    // gives, for a port and for an IPv6 address, with or without a flow.
    #[test]
    fn who_names_the_holder_live() {
        let dir = std::env::temp_dir().join(format!("nat64d-who-live-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let st = state(
            &dir,
            "pool6 = \"2001:db8:64::/96\"\npool4 = [\"203.0.113.1\"]\nallow_non_global = true\n[tun]\nsetup = false\n",
        );
        let m = udp_flow(&st, 5000);
        let who = |st: &State, addr: &str, port: Option<u16>| -> Vec<WhoLine> {
            let r = st.handle(Request::Who { addr: addr.parse().unwrap(), port, proto: None });
            serde_json::from_value(r.result).unwrap()
        };
        let l = who(&st, &m.src.to_string(), Some(m.sport));
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!((l[0].kind.as_str(), l[0].subscriber.as_str()), ("bib", "2001:db8:1::10/128"));
        assert!(who(&st, "203.0.113.1", Some(m.sport + 1)).is_empty(), "a free port has no holder");
        let det = state(
            &dir,
            "pool6 = \"2001:db8:64::/96\"\npool4 = [{ net = \"203.0.113.0/30\", clients = \"2001:db8:1::/56\" }]\nallow_non_global = true\n[tun]\nsetup = false\n[nat.ports]\nmode = \"deterministic\"\n",
        );
        let l = who(&det, "2001:db8:1:5::9", None);
        assert_eq!(l.len(), 3, "one block per protocol: {l:?}");
        assert!(l.iter().all(|x| x.kind == "deterministic" && x.subscriber == "2001:db8:1:5::/64"), "{l:?}");
        let l = who(&det, &l[0].pool4.to_string(), Some(l[0].port_lo + 7));
        assert!(l.iter().any(|x| x.subscriber == "2001:db8:1:5::/64"), "the formula backwards: {l:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
