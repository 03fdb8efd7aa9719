//! The daemon's counters as one report: built from the workers' published
//! counters and the NAT's census, sent as JSON over the control socket,
//! rendered as a table by `nat64ctl stats` and as Prometheus text by the
//! metrics endpoint. One structure, so the three never disagree.

pub use super::relay::{ProxyStats, SiteStats};
use crate::dataplane::worker::{IoStats, OffloadStats, WorkerStats};
use crate::dataplane::xdp::XdpStats;
#[cfg(test)]
use crate::dns64::server::Dns64Counters;
use crate::dns64::server::Dns64Stats;
use crate::nat::{tcp::TcpState, Census, NatCounters, Proto};
use crate::xlat::{DropReason, PROTO_LABELS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::Ipv4Addr;

/// Packets and bytes in one direction for one protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

/// Ports in use on one pool4 address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUse {
    pub address: Ipv4Addr,
    pub tcp: u32,
    pub udp: u32,
    pub icmp: u32,
}

/// The stateful NAT's counters, and the IPv4 SYNs it holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatReport {
    #[serde(flatten)]
    pub counters: NatCounters,
    pub held_syns: u64,
}

/// Everything `nat64ctl stats` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    pub uptime_secs: u64,
    pub workers: usize,
    /// "6to4" and "4to6" → protocol ("tcp", "udp", "icmp", "other") → traffic.
    pub translated: BTreeMap<String, BTreeMap<String, Traffic>>,
    /// Packets that left as more than one fragment, per direction.
    pub fragmented: BTreeMap<String, u64>,
    /// Every drop reason (zeros included, so scripts see a stable set of keys).
    pub drops: BTreeMap<String, u64>,
    pub icmp_errors_sent: u64,
    /// ICMP errors the rate limit held back.
    #[serde(default)]
    pub icmp_errors_suppressed: u64,
    pub tun_write_errors: u64,
    /// Packets the kernel dropped at the TUN device's queue before nat64d
    /// read them (its TX dropped counter: the workers fell behind).
    #[serde(default)]
    pub tun_queue_drops: u64,
    /// Sessions per protocol.
    pub sessions: BTreeMap<String, u64>,
    /// TCP sessions per RFC 6146 state.
    pub tcp_states: BTreeMap<String, u64>,
    /// BIB entries per protocol (static ones included).
    pub bibs: BTreeMap<String, u64>,
    pub static_bibs: u64,
    pub nat: NatReport,
    /// TUN offloads: super-packets carried whole, segmented here, checksums completed.
    pub offload: OffloadStats,
    /// TUN I/O: workers batching through io_uring, and their batches.
    #[serde(default)]
    pub io: IoStats,
    /// How packets reach the workers: "tun", or the AF_XDP interfaces with
    /// the XDP attach mode (native, generic) and copy or zero copy.
    #[serde(default)]
    pub dataplane: String,
    /// The AF_XDP dataplane's counters (all zero on TUN).
    #[serde(default)]
    pub xdp: XdpStats,
    /// Number of pool4 addresses configured.
    pub pool4_addresses: usize,
    /// The configured pool4 entries, with their port ranges and client
    /// prefixes (`198.51.100.7/32 tcp 1024-65535 for 2001:db8:a::/48`).
    #[serde(default)]
    pub pool4_entries: Vec<String>,
    /// Addresses with ports in use.
    pub pool4: Vec<PoolUse>,
    /// The DNS64 server's counters, when it runs.
    #[serde(default)]
    pub dns64: Option<Dns64Stats>,
    /// How ports are handed out, and the blocks held.
    #[serde(default)]
    pub ports: PortsReport,
    /// The mapping log, when it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_log: Option<MapLogReport>,
    /// The inbound relay, when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyStats>,
    /// Active/standby sync, when it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<super::sync::SyncReport>,
}

/// Port allocation in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortsReport {
    pub mode: crate::nat::PortMode,
    pub blocks_held: u64,
    pub block_subscribers: u64,
}

impl Default for PortsReport {
    fn default() -> Self {
        PortsReport { mode: crate::nat::PortMode::Session, blocks_held: 0, block_subscribers: 0 }
    }
}

/// The mapping log in the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapLogReport {
    pub file: String,
    /// The IPFIX collector, when records are exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipfix: Option<String>,
    /// Records written.
    pub records: u64,
    /// Records lost (a full queue, or the file refused them): should stay 0.
    pub lost: u64,
}

/// One number of the relay's, or of one of its sites.
type ProxyField = fn(&ProxyStats) -> u64;
type SiteField = fn(&SiteStats) -> u64;

/// A counter's value now and its reading from the previous report, as the
/// rate column (empty without a previous report).
type Rate<'a> = dyn Fn(u64, &dyn Fn(&StatsReport) -> u64) -> String + 'a;

pub const DIRECTIONS: [&str; 2] = ["6to4", "4to6"];

impl StatsReport {
    /// A report with every part present (DNS64, the mapping log, pool4 in
    /// use), for checking the exposition as a whole (`tests/promtool.rs`).
    #[cfg(any(test, feature = "testkit"))]
    pub fn example() -> StatsReport {
        let mut w = WorkerStats::default();
        w.xlat.out_6to4.packets[0] = 10;
        w.xlat.in_4to6.packets[1] = 3;
        // The AF_XDP dataplane's block too, so every metric family is shown.
        w.xdp.xdp_workers = 1;
        w.xdp.rx_frames = 13;
        w.xdp.tx_frames = 13;
        let census = Census { sessions: [2, 1, 0], bibs: [2, 1, 0], ..Census::default() };
        let pool = [(Ipv4Addr::new(203, 0, 113, 1), [2, 1, 0])];
        let mut r = StatsReport::build(75, &[w], &census, &NatCounters::default(), 16, &pool);
        r.dns64 = Some(crate::dns64::server::Dns64Stats::default());
        r.dataplane = "AF_XDP on eth0 (IPv6) and eth1 (IPv4), native XDP, copy mode".into();
        r.mapping_log = Some(MapLogReport { file: "/var/log/nat64d/mapping.jsonl".into(), ..MapLogReport::default() });
        r.proxy = Some(ProxyStats {
            listen: vec![std::net::SocketAddr::from(([192, 0, 2, 1], 443))],
            active: 1,
            accepted: 3,
            relayed: 2,
            spliced: 1,
            refused: ProxyStats::reasons().map(|n| (n.to_string(), u64::from(n == "no_site"))).collect(),
            sites: vec![SiteStats { site: "*.example".into(), connections: 2, active: 1, ..SiteStats::default() }],
            ..ProxyStats::default()
        });
        r.sync = Some(super::sync::SyncReport {
            role: "active".into(),
            listen: Some("[2001:db8:10::11]:6464".into()),
            connected: true,
            connected_to: Some("[2001:db8:10::12]:40000".into()),
            records: 7,
            snapshots: 1,
            last_contact_ms: Some(200),
            ..super::sync::SyncReport::default()
        });
        r
    }

    /// Assemble the report from its parts.
    pub fn build(
        uptime_secs: u64,
        workers: &[WorkerStats],
        census: &Census,
        nat: &NatCounters,
        pool4_addresses: usize,
        pool_use: &[(Ipv4Addr, [u32; 3])],
    ) -> StatsReport {
        let mut total = WorkerStats::default();
        for w in workers {
            total.merge(w);
        }
        let x = &total.xlat;
        let mut r = StatsReport {
            uptime_secs,
            workers: workers.len(),
            icmp_errors_sent: x.icmp_errors_sent,
            icmp_errors_suppressed: x.icmp_errors_suppressed,
            tun_write_errors: total.tun_write_errors,
            static_bibs: census.static_bibs,
            pool4_addresses,
            offload: total.offload,
            io: total.io,
            xdp: total.xdp,
            nat: NatReport { counters: *nat, held_syns: census.held_syns },
            ..StatsReport::default()
        };
        for (dir, c) in DIRECTIONS.iter().zip([&x.out_6to4, &x.in_4to6]) {
            let m = r.translated.entry(dir.to_string()).or_default();
            for (i, p) in PROTO_LABELS.iter().enumerate() {
                m.insert(p.to_string(), Traffic { packets: c.packets[i], bytes: c.bytes[i] });
            }
            r.fragmented.insert(dir.to_string(), c.fragmented);
        }
        for d in DropReason::ALL {
            r.drops.insert(d.label().to_string(), x.dropped(*d));
        }
        for p in Proto::ALL {
            r.sessions.insert(p.label().to_string(), census.sessions[p as usize]);
            r.bibs.insert(p.label().to_string(), census.bibs[p as usize]);
        }
        for s in TcpState::ALL {
            r.tcp_states.insert(s.label().to_string(), census.tcp_states[s as usize]);
        }
        r.pool4 = pool_use.iter().map(|&(address, u)| PoolUse { address, tcp: u[0], udp: u[1], icmp: u[2] }).collect();
        r
    }

    pub fn packets(&self, dir: &str) -> u64 {
        self.translated.get(dir).map_or(0, |m| m.values().map(|t| t.packets).sum())
    }

    /// Drops that are errors: every reason but `not_for_pool6` (the
    /// kernel's own multicast on the device), which is shown apart.
    pub fn total_drops(&self) -> u64 {
        let error = |label: &str| DropReason::ALL.iter().any(|r| r.label() == label && r.is_error());
        self.drops.iter().filter(|(r, _)| error(r)).map(|(_, n)| n).sum()
    }

    /// The table `nat64ctl stats` prints; with `prev` and the seconds between
    /// the two reports, a rate column too (`--watch`).
    pub fn render(&self, prev: Option<(&StatsReport, f64)>) -> String {
        let mut o = String::new();
        let rate = |now: u64, f: &dyn Fn(&StatsReport) -> u64| match prev {
            Some((p, secs)) if secs > 0.0 => format!("{:>12.1}/s", now.saturating_sub(f(p)) as f64 / secs),
            _ => String::new(),
        };
        if self.workers == 0 {
            // DNS64-only mode: nothing is translated.
            let _ = writeln!(o, "nat64d up {}, DNS64 only (no translation)", human_duration(self.uptime_secs));
            self.render_dns64(&mut o, &rate);
            self.render_proxy(&mut o, &rate);
            return o;
        }
        let _ = write!(o, "nat64d up {}, {} worker(s)", human_duration(self.uptime_secs), self.workers);
        let io = &self.io;
        let x = &self.xdp;
        if x.xdp_workers > 0 {
            let _ = writeln!(o, ", {}", self.dataplane);
            let _ = writeln!(
                o,
                "  AF_XDP: {} frames in, {} out, {} to the kernel ({} refused), {} hairpinned; dropped: {} TX ring full, {} no free frame, {} not IP; kernel: {} dropped, {} RX ring full, {} fill ring empty, {} bad TX",
                x.rx_frames,
                x.tx_frames,
                x.to_kernel,
                x.to_kernel_errors,
                x.hairpinned,
                x.tx_ring_full,
                x.no_free_frame,
                x.not_ip,
                x.kernel_rx_dropped,
                x.kernel_rx_ring_full,
                x.kernel_fill_empty,
                x.kernel_tx_invalid
            );
        } else if io.io_uring_workers == 0 {
            let _ = writeln!(o, ", a read and a write per packet");
        } else {
            let mean = if io.batches == 0 { 0.0 } else { io.batched_packets as f64 / io.batches as f64 };
            let _ = writeln!(
                o,
                ", {} batching through io_uring ({} batches, {mean:.1} packets each)",
                io.io_uring_workers, io.batches
            );
        }
        let _ = writeln!(o, "\n{:<22}{:>12}{:>16}", "translated", "packets", "bytes");
        for dir in DIRECTIONS {
            let label = if dir == "6to4" { "IPv6 -> IPv4" } else { "IPv4 -> IPv6" };
            for proto in PROTO_LABELS {
                let Some(t) = self.translated.get(dir).and_then(|m| m.get(proto)) else { continue };
                if t.packets == 0 && proto == "other" {
                    continue;
                }
                let (d, p) = (dir.to_string(), proto.to_string());
                let get = move |r: &StatsReport| r.translated.get(&d).and_then(|m| m.get(&p)).map_or(0, |t| t.packets);
                let _ = writeln!(
                    o,
                    "  {:<20}{:>12}{:>16}{}",
                    format!("{label} {proto}"),
                    t.packets,
                    t.bytes,
                    rate(t.packets, &get)
                );
            }
        }
        let _ = writeln!(o, "  {:<20}{:>12}", "ICMP errors sent", self.icmp_errors_sent);
        if self.icmp_errors_suppressed > 0 {
            let _ = writeln!(o, "  {:<20}{:>12}", "ICMP errors limited", self.icmp_errors_suppressed);
        }
        if self.xdp.xdp_workers == 0 {
            // (On AF_XDP the sockets' own counters are on the AF_XDP line.)
            let _ = writeln!(o, "  {:<20}{:>12}", "TUN write errors", self.tun_write_errors);
            let _ = writeln!(
                o,
                "  {:<20}{:>12}  (dropped by the kernel before nat64d read them)",
                "TUN queue drops", self.tun_queue_drops
            );
        }
        let f = &self.offload;
        if f.gso_packets + f.software_segmented + f.checksums_completed + f.bad_vnet_header > 0 {
            let _ = writeln!(
                o,
                "  offloads: {} super-packets carrying {} segments; {} segmented here; {} checksums completed; {} bad headers",
                f.gso_packets, f.gso_segments, f.software_segmented, f.checksums_completed, f.bad_vnet_header
            );
        }
        let _ = writeln!(
            o,
            "\n{:<34}{:>16}{}",
            "dropped",
            self.total_drops(),
            rate(self.total_drops(), &|r: &StatsReport| r.total_drops())
        );
        let ignored = DropReason::NotForPool6.label();
        for (reason, n) in self.drops.iter().filter(|(r, &n)| n > 0 && *r != ignored) {
            let _ = writeln!(o, "  {reason:<32}{n:>16}");
        }
        if let Some(n) = self.drops.get(ignored).filter(|&&n| n > 0) {
            let _ = writeln!(o, "  {:<32}{n:>16}", "(not for pool6, ignored: the kernel's multicast)");
        }
        let _ = writeln!(o, "\n{:<18}{:>16}{:>16}", "state", "sessions", "BIB entries");
        for p in Proto::ALL {
            let l = p.label();
            let _ = writeln!(
                o,
                "  {:<16}{:>16}{:>16}",
                l,
                self.sessions.get(l).copied().unwrap_or(0),
                self.bibs.get(l).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(o, "  {:<16}{:>16}{:>16}", "static", "", self.static_bibs);
        let states: Vec<String> =
            self.tcp_states.iter().filter(|(_, &n)| n > 0).map(|(s, n)| format!("{s} {n}")).collect();
        if !states.is_empty() {
            let _ = writeln!(o, "  TCP states: {}", states.join(", "));
        }
        let n = &self.nat;
        let _ = writeln!(
            o,
            "  created: {} sessions, {} BIB entries; expired: {} sessions; pool exhausted: {}; limit reached: {}; IPv4 SYNs held: {}",
            n.counters.sessions_created,
            n.counters.bibs_created,
            n.counters.sessions_expired,
            n.counters.pool_exhausted,
            n.counters.limit_reached,
            n.held_syns
        );
        let _ = writeln!(o, "\npool4: {} address(es), {} in use", self.pool4_addresses, self.pool4.len());
        for e in self.pool4_entries.iter().take(16) {
            let _ = writeln!(o, "  entry {e}");
        }
        if self.pool4_entries.len() > 16 {
            let _ = writeln!(o, "  ... {} more entries (nat64ctl config lists all)", self.pool4_entries.len() - 16);
        }
        if !self.pool4.is_empty() {
            let _ = writeln!(o, "  {:<18}{:>10}{:>10}{:>10}", "address", "tcp", "udp", "icmp");
            for u in self.pool4.iter().take(64) {
                let _ = writeln!(o, "  {:<18}{:>10}{:>10}{:>10}", u.address.to_string(), u.tcp, u.udp, u.icmp);
            }
            if self.pool4.len() > 64 {
                let _ = writeln!(o, "  ... {} more (nat64ctl stats --json lists all)", self.pool4.len() - 64);
            }
        }
        match self.ports.mode {
            crate::nat::PortMode::Session => {}
            crate::nat::PortMode::Blocks => {
                let _ = writeln!(
                    o,
                    "  port blocks: {} held by {} subscriber(s)",
                    self.ports.blocks_held, self.ports.block_subscribers
                );
            }
            crate::nat::PortMode::Deterministic => {
                let _ = writeln!(o, "  ports: deterministic (RFC 7422; nat64ctl who answers from the configuration)");
            }
        }
        if let Some(m) = &self.mapping_log {
            let _ = writeln!(
                o,
                "
mapping log {}: {} records written, {} lost",
                m.file, m.records, m.lost
            );
        }
        if let Some(y) = &self.sync {
            let _ = writeln!(o, "\n{}", y.render().trim_end());
        }
        self.render_dns64(&mut o, &rate);
        self.render_proxy(&mut o, &rate);
        o
    }

    /// The relay's block of the table, when it runs.
    fn render_proxy(&self, o: &mut String, rate: &Rate) {
        let Some(p) = &self.proxy else { return };
        let listen: Vec<String> = p.listen.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(o, "\nproxy on {}: {} open", listen.join(", "), p.active);
        let rows: [(&str, u64, ProxyField); 5] = [
            ("accepted", p.accepted, |p| p.accepted),
            ("relayed", p.relayed, |p| p.relayed),
            ("closed idle", p.idle_closed, |p| p.idle_closed),
            ("ways spliced", p.spliced, |p| p.spliced),
            ("ways without pipe", p.copy_fallback, |p| p.copy_fallback),
        ];
        for (label, v, f) in rows {
            let get = move |r: &StatsReport| r.proxy.as_ref().map_or(0, f);
            let _ = writeln!(o, "  {label:<22}{v:>12}{}", rate(v, &get));
        }
        for (reason, n) in p.refused.iter().filter(|(_, &n)| n > 0) {
            let _ = writeln!(o, "  refused {:<14}{n:>12}", reason.replace('_', " "));
        }
        if !p.sites.is_empty() {
            let _ = writeln!(
                o,
                "  {:<30}{:>12}{:>8}{:>8}{:>16}{:>16}",
                "site", "connections", "open", "failed", "bytes in", "bytes out"
            );
            for s in p.sites.iter().take(64) {
                let _ = writeln!(
                    o,
                    "  {:<30}{:>12}{:>8}{:>8}{:>16}{:>16}",
                    s.site, s.connections, s.active, s.failed, s.bytes_to_backend, s.bytes_to_client
                );
            }
            if p.sites.len() > 64 {
                let _ = writeln!(o, "  ... {} more sites (nat64ctl stats --json lists all)", p.sites.len() - 64);
            }
        }
    }

    /// The DNS64 block of the table, when the server runs.
    fn render_dns64(&self, o: &mut String, rate: &Rate) {
        let Some(d) = &self.dns64 else { return };
        let _ = writeln!(o, "\nDNS64 ({} answers cached)", d.cache_entries);
        for (i, (name, _, v)) in d.counters.fields().enumerate() {
            let get =
                move |r: &StatsReport| r.dns64.as_ref().and_then(|d| d.counters.fields().nth(i)).map_or(0, |f| f.2);
            let _ = writeln!(o, "  {:<22}{:>12}{}", name.replace('_', " "), v, rate(v, &get));
        }
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut o = String::new();
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(&mut o, "nat64d_build_info", "gauge", "The running nat64d's version and git revision (always 1).");
        let _ = writeln!(
            o,
            "nat64d_build_info{{version=\"{}\",revision=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            env!("NAT64D_GIT_REV")
        );
        head(&mut o, "nat64d_packets_total", "counter", "Packets translated, by direction and protocol.");
        for (dir, m) in &self.translated {
            for (p, t) in m {
                let _ = writeln!(o, "nat64d_packets_total{{direction=\"{dir}\",proto=\"{p}\"}} {}", t.packets);
            }
        }
        head(&mut o, "nat64d_bytes_total", "counter", "Bytes translated, by direction and protocol.");
        for (dir, m) in &self.translated {
            for (p, t) in m {
                let _ = writeln!(o, "nat64d_bytes_total{{direction=\"{dir}\",proto=\"{p}\"}} {}", t.bytes);
            }
        }
        head(&mut o, "nat64d_drops_total", "counter", "Packets dropped, by reason.");
        for (r, n) in &self.drops {
            let _ = writeln!(o, "nat64d_drops_total{{reason=\"{r}\"}} {n}");
        }
        let simple = [
            ("nat64d_icmp_errors_sent_total", "counter", "ICMP errors the gateway sent.", self.icmp_errors_sent),
            (
                "nat64d_icmp_errors_suppressed_total",
                "counter",
                "ICMP errors the rate limit held back.",
                self.icmp_errors_suppressed,
            ),
            ("nat64d_tun_write_errors_total", "counter", "Packets the TUN device refused.", self.tun_write_errors),
            (
                "nat64d_tun_queue_drops_total",
                "counter",
                "Packets the kernel dropped at the TUN queue before nat64d read them.",
                self.tun_queue_drops,
            ),
            ("nat64d_sessions_created_total", "counter", "Sessions created.", self.nat.counters.sessions_created),
            ("nat64d_sessions_expired_total", "counter", "Sessions expired.", self.nat.counters.sessions_expired),
            ("nat64d_bib_created_total", "counter", "Dynamic BIB entries created.", self.nat.counters.bibs_created),
            (
                "nat64d_pool_exhausted_total",
                "counter",
                "New flows refused: no free pool4 port.",
                self.nat.counters.pool_exhausted,
            ),
            ("nat64d_limit_reached_total", "counter", "New flows refused by a limit.", self.nat.counters.limit_reached),
            (
                "nat64d_gso_packets_total",
                "counter",
                "Super-packets translated whole (TUN offloads).",
                self.offload.gso_packets,
            ),
            (
                "nat64d_gso_segments_total",
                "counter",
                "Segments those super-packets carried.",
                self.offload.gso_segments,
            ),
            (
                "nat64d_gso_software_segmented_total",
                "counter",
                "Super-packets segmented in software.",
                self.offload.software_segmented,
            ),
            (
                "nat64d_bad_vnet_header_total",
                "counter",
                "Packets dropped for a virtio-net header that did not fit them.",
                self.offload.bad_vnet_header,
            ),
            ("nat64d_held_syns", "gauge", "IPv4 SYNs held (RFC 6146 3.5.2.2).", self.nat.held_syns),
            ("nat64d_static_bib_entries", "gauge", "Static BIB entries.", self.static_bibs),
            ("nat64d_uptime_seconds", "gauge", "Seconds since the daemon started.", self.uptime_secs),
            (
                "nat64d_start_time_seconds",
                "gauge",
                "When the daemon started, in seconds since 1970 (UTC).",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    .saturating_sub(self.uptime_secs),
            ),
            ("nat64d_workers", "gauge", "Worker threads (TUN queues).", self.workers as u64),
            (
                "nat64d_io_uring_workers",
                "gauge",
                "Workers batching TUN I/O through io_uring.",
                self.io.io_uring_workers,
            ),
            ("nat64d_io_batches_total", "counter", "TUN read batches (io_uring).", self.io.batches),
            ("nat64d_io_batched_packets_total", "counter", "Packets read in those batches.", self.io.batched_packets),
            ("nat64d_pool4_addresses", "gauge", "Configured pool4 addresses.", self.pool4_addresses as u64),
            ("nat64d_port_blocks", "gauge", "Port blocks held by subscribers (blocks mode).", self.ports.blocks_held),
            (
                "nat64d_port_block_subscribers",
                "gauge",
                "Subscribers holding port blocks (blocks mode).",
                self.ports.block_subscribers,
            ),
            (
                "nat64d_log_records_total",
                "counter",
                "Mapping log records written.",
                self.mapping_log.as_ref().map_or(0, |m| m.records),
            ),
            (
                "nat64d_log_records_lost_total",
                "counter",
                "Mapping log records lost (a full queue, or the file refused them).",
                self.mapping_log.as_ref().map_or(0, |m| m.lost),
            ),
        ];
        for (name, kind, help, v) in simple {
            head(&mut o, name, kind, help);
            let _ = writeln!(o, "{name} {v}");
        }
        head(&mut o, "nat64d_sessions", "gauge", "Sessions, by protocol.");
        for (p, n) in &self.sessions {
            let _ = writeln!(o, "nat64d_sessions{{proto=\"{p}\"}} {n}");
        }
        head(&mut o, "nat64d_tcp_sessions", "gauge", "TCP sessions, by RFC 6146 state.");
        for (s, n) in &self.tcp_states {
            let _ = writeln!(o, "nat64d_tcp_sessions{{state=\"{s}\"}} {n}");
        }
        head(&mut o, "nat64d_bib_entries", "gauge", "BIB entries, by protocol.");
        for (p, n) in &self.bibs {
            let _ = writeln!(o, "nat64d_bib_entries{{proto=\"{p}\"}} {n}");
        }
        if let Some(d) = &self.dns64 {
            for (name, help, v) in d.counters.fields() {
                let name = format!("nat64d_dns64_{name}_total");
                head(&mut o, &name, "counter", &format!("DNS64: {help}."));
                let _ = writeln!(o, "{name} {v}");
            }
            head(&mut o, "nat64d_dns64_cache_entries", "gauge", "DNS64: answers in the cache.");
            let _ = writeln!(o, "nat64d_dns64_cache_entries {}", d.cache_entries);
        }
        if self.xdp.xdp_workers > 0 {
            head(
                &mut o,
                "nat64d_dataplane_info",
                "gauge",
                "How packets reach the workers (AF_XDP: attach and copy mode).",
            );
            let _ = writeln!(o, "nat64d_dataplane_info{{dataplane=\"{}\"}} 1", self.dataplane.replace('"', "'"));
            for (name, help, v) in self.xdp.fields() {
                let (name, kind) = match name {
                    "xdp_workers" => ("nat64d_xdp_workers".to_string(), "gauge"),
                    n => (format!("nat64d_xdp_{n}_total"), "counter"),
                };
                head(&mut o, &name, kind, &format!("AF_XDP: {}", help.trim_end_matches('.')));
                let _ = writeln!(o, "{name} {v}");
            }
        }
        if let Some(y) = &self.sync {
            head(&mut o, "nat64d_sync_role", "gauge", "Sync: this gateway's role (1 for the role it has).");
            for r in ["active", "standby"] {
                let _ = writeln!(o, "nat64d_sync_role{{role=\"{r}\"}} {}", (y.role == r) as u8);
            }
            let fields: [(&str, &str, &str, u64); 9] = [
                ("nat64d_sync_connected", "gauge", "Sync: 1 while the peer is connected.", y.connected as u64),
                (
                    "nat64d_sync_records_total",
                    "counter",
                    "Sync: records sent (active) or applied (standby).",
                    y.records,
                ),
                ("nat64d_sync_conflicts_total", "counter", "Sync: records the standby could not hold.", y.conflicts),
                (
                    "nat64d_sync_lost_total",
                    "counter",
                    "Sync: changes lost to full queues (each starts a resync).",
                    y.lost,
                ),
                ("nat64d_sync_snapshots_total", "counter", "Sync: full snapshots sent or received.", y.snapshots),
                ("nat64d_sync_resyncs_total", "counter", "Sync: snapshots started after a loss.", y.resyncs),
                ("nat64d_sync_queue", "gauge", "Sync: changes waiting to be sent.", y.queue),
                (
                    "nat64d_sync_handshake_failures_total",
                    "counter",
                    "Sync: peers that failed the handshake (wrong key).",
                    y.handshake_failures,
                ),
                ("nat64d_sync_disconnects_total", "counter", "Sync: connections to the peer ended.", y.disconnects),
            ];
            for (name, kind, help, v) in fields {
                head(&mut o, name, kind, help);
                let _ = writeln!(o, "{name} {v}");
            }
            head(
                &mut o,
                "nat64d_sync_lag_seconds",
                "gauge",
                "Sync: heartbeat to acknowledgement (active), or clock gap (standby).",
            );
            let _ = writeln!(o, "nat64d_sync_lag_seconds {:.3}", y.lag_ms as f64 / 1000.0);
            if let Some(ms) = y.last_contact_ms {
                head(
                    &mut o,
                    "nat64d_sync_last_contact_seconds",
                    "gauge",
                    "Sync: seconds since the peer was last heard from.",
                );
                let _ = writeln!(o, "nat64d_sync_last_contact_seconds {:.3}", ms as f64 / 1000.0);
            }
        }
        if let Some(p) = &self.proxy {
            head(&mut o, "nat64d_proxy_connections", "gauge", "Proxy: connections open now.");
            let _ = writeln!(o, "nat64d_proxy_connections {}", p.active);
            for (name, help, v) in [
                ("accepted", "connections accepted", p.accepted),
                ("relayed", "connections relayed to a backend", p.relayed),
                ("idle_closed", "relayed connections closed for idle_timeout", p.idle_closed),
                ("spliced", "directions that went on by splice (a full buffer)", p.spliced),
                (
                    "copy_fallback",
                    "directions that found no pipe for splice (relayed through a buffer)",
                    p.copy_fallback,
                ),
            ] {
                let name = format!("nat64d_proxy_{name}_total");
                head(&mut o, &name, "counter", &format!("Proxy: {help}."));
                let _ = writeln!(o, "{name} {v}");
            }
            head(&mut o, "nat64d_proxy_refused_total", "counter", "Proxy: connections not relayed, by reason.");
            for (r, n) in &p.refused {
                let _ = writeln!(o, "nat64d_proxy_refused_total{{reason=\"{r}\"}} {n}");
            }
            let sites: [(&str, &str, &str, SiteField); 3] = [
                ("nat64d_proxy_site_connections_total", "counter", "connections relayed, by site", |s| s.connections),
                ("nat64d_proxy_site_connections", "gauge", "connections open, by site", |s| s.active),
                ("nat64d_proxy_site_failures_total", "counter", "backend refused, reset or timed out, by site", |s| {
                    s.failed
                }),
            ];
            for (name, kind, help, f) in sites {
                head(&mut o, name, kind, &format!("Proxy: {help}."));
                for s in &p.sites {
                    let _ = writeln!(o, "{name}{{site=\"{}\"}} {}", s.site, f(s));
                }
            }
            head(&mut o, "nat64d_proxy_site_bytes_total", "counter", "Proxy: bytes relayed, by site and direction.");
            for s in &p.sites {
                for (dir, v) in [("to_backend", s.bytes_to_backend), ("to_client", s.bytes_to_client)] {
                    let _ = writeln!(o, "nat64d_proxy_site_bytes_total{{site=\"{}\",direction=\"{dir}\"}} {v}", s.site);
                }
            }
        }
        head(&mut o, "nat64d_pool4_ports_in_use", "gauge", "Ports in use, by pool4 address and protocol.");
        for u in &self.pool4 {
            for (p, n) in [("tcp", u.tcp), ("udp", u.udp), ("icmp", u.icmp)] {
                let _ = writeln!(o, "nat64d_pool4_ports_in_use{{address=\"{}\",proto=\"{p}\"}} {n}", u.address);
            }
        }
        o
    }
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
pub fn human_duration(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StatsReport {
        let mut w = WorkerStats::default();
        w.xlat.out_6to4.packets[0] = 10;
        w.xlat.out_6to4.bytes[0] = 1000;
        w.xlat.in_4to6.packets[2] = 3;
        w.xlat.drops[DropReason::NoState as usize] = 7;
        let mut w2 = WorkerStats::default();
        w2.xlat.out_6to4.packets[0] = 5;
        w2.tun_write_errors = 1;
        w2.io = IoStats { io_uring_workers: 1, batches: 4, batched_packets: 10 };
        let census = Census {
            sessions: [2, 1, 0],
            tcp_states: [0, 0, 0, 2, 0, 0, 0, 0],
            bibs: [2, 1, 0],
            static_bibs: 1,
            held_syns: 0,
        };
        let pool = [(Ipv4Addr::new(203, 0, 113, 1), [2, 1, 0])];
        StatsReport::build(75, &[w, w2], &census, &NatCounters::default(), 16, &pool)
    }

    #[test]
    fn workers_are_summed_and_every_reason_is_present() {
        let r = sample();
        assert_eq!(r.translated["6to4"]["tcp"], Traffic { packets: 15, bytes: 1000 });
        assert_eq!(r.packets("4to6"), 3);
        assert_eq!(r.drops.len(), DropReason::COUNT);
        assert_eq!(r.drops["no_state"], 7);
        assert_eq!(r.tun_write_errors, 1);
        assert_eq!(r.io, IoStats { io_uring_workers: 1, batches: 4, batched_packets: 10 });
        // One worker batching, one not: the table says so, with the mean batch.
        assert!(r.render(None).contains("2 worker(s), 1 batching through io_uring (4 batches, 2.5 packets each)"));
        assert_eq!(r.tcp_states["established"], 2);
        let back: StatsReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r, "the JSON form carries everything");
    }

    #[test]
    fn table_shows_traffic_drops_state_and_pool() {
        let t = sample().render(None);
        for want in ["up 1m 15s", "IPv6 -> IPv4 tcp", "no_state", "established 2", "203.0.113.1"] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        let mut later = sample();
        later.translated.get_mut("6to4").unwrap().get_mut("tcp").unwrap().packets += 20;
        let t = later.render(Some((&sample(), 2.0)));
        assert!(t.contains("10.0/s"), "rate of 20 packets in 2 s:\n{t}");
    }

    #[test]
    fn prometheus_names_and_labels() {
        let p = sample().prometheus();
        assert!(p.contains("nat64d_packets_total{direction=\"6to4\",proto=\"tcp\"} 15\n"), "{p}");
        assert!(p.contains("nat64d_drops_total{reason=\"no_state\"} 7\n"));
        assert!(p.contains("nat64d_sessions{proto=\"tcp\"} 2\n"));
        assert!(p.contains("# TYPE nat64d_drops_total counter\n"));
        // Every sample line is NAME{LABELS} VALUE or NAME VALUE.
        for l in p.lines().filter(|l| !l.starts_with('#')) {
            let (name, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
            assert!(name.starts_with("nat64d_"), "{l}");
        }
    }

    // With the DNS64 server on: its block in the table (rates under
    // --watch) and its counters in Prometheus; without it, neither.
    #[test]
    fn dns64_counters_when_enabled() {
        assert!(!sample().render(None).contains("DNS64"));
        assert!(!sample().prometheus().contains("dns64"));
        let mut r = sample();
        let counters = Dns64Counters { queries_udp: 10, synthesized: 4, ..Dns64Counters::default() };
        r.dns64 = Some(Dns64Stats { counters, cache_entries: 3 });
        let mut later = r.clone();
        later.dns64.as_mut().unwrap().counters.queries_udp = 30;
        let t = later.render(Some((&r, 2.0)));
        assert!(t.contains("DNS64 (3 answers cached)"), "{t}");
        assert!(t.lines().any(|l| l.contains("queries udp") && l.contains("30") && l.contains("10.0/s")), "{t}");
        let p = later.prometheus();
        assert!(p.contains("# TYPE nat64d_dns64_synthesized_total counter\nnat64d_dns64_synthesized_total 4\n"), "{p}");
        assert!(p.contains("nat64d_dns64_cache_entries 3\n"));
    }
}
