//! The daemon's configuration: a TOML file (every key optional, with the
//! defaults below) plus command-line overrides. Pure code: text in, a
//! validated [`Config`] or an error naming the file, the line and the key out.
//!
//! The serde types below are the configuration's one source of truth: the
//! sections hold the core's own types where it has them (`nat::Timeouts`,
//! `nat::Limits`, `nat::Filtering`), the flags are [`flags::Overrides`], and
//! what can change at run time (SIGHUP, `nat64ctl reload`) is decided by
//! comparing whole sections ([`reload`]), so a reload either applies a whole
//! file or none of it.

use crate::addr::{IpNet, Net4, Net6, Prefix6052};
use crate::dns64::server::{ServerConfig, Settings as Dns64Settings};
use crate::dns64::Dns64;
use crate::nat::{
    DetMap, EventSel, Filtering, Limits, NatConfig, PortMode, Ports, Proto, Timeouts, DAY, TCP_EST, TCP_TRANS, UDP_MIN,
    WEEK,
};
use crate::xlat::{IcmpLimit, XlatConfig};
use serde::{Deserialize, Serialize};
use std::fmt::{self, Display};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::str::FromStr;

mod flags;
mod pool4;
mod reload;

pub use flags::Overrides;
pub use pool4::{PoolEntry, PoolNet, POOL4_MIN_LEN};
pub use reload::RELOADABLE;

/// Serialize with `Display`, deserialize with `FromStr` (prefixes, networks).
mod text {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// A site's backend: `"[2001:db8:100::80]:8443"`, or a bare address for
/// "on the port the visitor connected to" (one site served on 80 and 443),
/// held as port 0.
mod backend_addr {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use std::net::{Ipv6Addr, SocketAddrV6};

    pub fn serialize<S: Serializer>(v: &SocketAddrV6, s: S) -> Result<S::Ok, S::Error> {
        if v.port() == 0 {
            s.collect_str(v.ip())
        } else {
            s.collect_str(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddrV6, D::Error> {
        let s = String::deserialize(d)?;
        if let Ok(a) = s.parse::<SocketAddrV6>() {
            if a.port() == 0 {
                return Err(D::Error::custom("port 0: give a port, or the bare address for the visitor's port"));
            }
            return Ok(a);
        }
        match s.parse::<Ipv6Addr>() {
            Ok(ip) => Ok(SocketAddrV6::new(ip, 0, 0, 0)),
            Err(_) => Err(D::Error::custom(format!(
                "'{}' is neither [IPv6]:port nor an IPv6 address",
                s.chars().take(64).collect::<String>()
            ))),
        }
    }
}

/// A static BIB entry (RFC 6146 3.1): the IPv6 server `ipv6` is reachable
/// from IPv4 at the pool4 transport address `ipv4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticBib {
    pub proto: Proto,
    pub ipv6: SocketAddrV6,
    pub ipv4: SocketAddrV4,
}

impl StaticBib {
    /// Whether the entry can serve (issue 18): its IPv6 side a unicast
    /// address a host can have, outside pool6 (an entry there would loop
    /// through the translator), with a port for TCP and UDP. Which pool4
    /// addresses exist is checked by the caller.
    pub fn check(&self, pool6: &Prefix6052) -> Result<(), (&'static str, String)> {
        let a = self.ipv6.ip();
        if !crate::addr::is_server_v6(*a) {
            return Err((
                "static_bib.ipv6",
                format!("{a} is not an address a server can have (unspecified, loopback, multicast or link-local)"),
            ));
        }
        if pool6.contains(a) {
            return Err((
                "static_bib.ipv6",
                format!("{a} lies in pool6 {pool6}: it would loop through the translator"),
            ));
        }
        if self.proto != Proto::Icmp && (self.ipv6.port() == 0 || self.ipv4.port() == 0) {
            return Err(("static_bib", format!("{} port 0 is not a port", self.proto.label())));
        }
        Ok(())
    }
}

impl FromStr for StaticBib {
    type Err = String;
    /// `PROTO,[IPV6]:PORT,IPV4:PORT`, the command-line form.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("'{s}': {why} (expected PROTO,[IPV6]:PORT,IPV4:PORT)");
        let mut f = s.split(',');
        let (Some(p), Some(a6), Some(a4), None) = (f.next(), f.next(), f.next(), f.next()) else {
            return Err(bad("three comma-separated parts needed"));
        };
        let proto = p.trim().parse().map_err(|e: String| bad(&e))?;
        let ipv6 = a6.trim().parse().map_err(|_| bad("not [IPV6]:PORT"))?;
        let ipv4 = a4.trim().parse().map_err(|_| bad("not IPV4:PORT"))?;
        Ok(StaticBib { proto, ipv6, ipv4 })
    }
}

/// The TUN device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TunSection {
    /// Interface name (created, or attached to when it exists).
    pub name: String,
    /// MTU of the device: the next-hop MTU on both sides (at least 1280).
    pub mtu: u16,
    /// Set the link up with its MTU and route pool6 and pool4 into it.
    pub setup: bool,
    /// Queues, one worker thread each; 0 means one per CPU.
    pub queues: usize,
    /// TUN offloads (virtio-net headers, TSO/USO): super-packets translated
    /// whole. Falls back to off, with a warning, where the kernel refuses.
    pub offload: bool,
    /// Batched TUN reads and writes through io_uring (one system call per
    /// batch). Falls back to a read and a write per packet, with a warning,
    /// where io_uring is missing, disabled or filtered.
    pub io_uring: bool,
}

impl Default for TunSection {
    fn default() -> Self {
        TunSection { name: "nat64".into(), mtu: 1500, setup: true, queues: 0, offload: true, io_uring: true }
    }
}

/// How packets reach nat64d.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataplaneMode {
    /// A TUN device the kernel routes pool6 and pool4 into (the default).
    #[default]
    Tun,
    /// AF_XDP sockets on the interfaces themselves (`[xdp]`).
    Xdp,
}

impl DataplaneMode {
    pub fn label(self) -> &'static str {
        match self {
            DataplaneMode::Tun => "tun",
            DataplaneMode::Xdp => "xdp",
        }
    }
}

impl std::str::FromStr for DataplaneMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tun" => Ok(DataplaneMode::Tun),
            "xdp" => Ok(DataplaneMode::Xdp),
            _ => Err(format!("'{s}' is not a dataplane: tun or xdp")),
        }
    }
}

/// Where the XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpAttach {
    /// Native where the driver has it, generic otherwise (said at start).
    #[default]
    Auto,
    /// In the driver; refuse to start where it cannot be.
    Native,
    /// In the kernel's generic (skb) path: works on any interface, slower.
    Generic,
}

/// The AF_XDP dataplane (`dataplane = "xdp"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XdpSection {
    /// The interface IPv6 clients reach the gateway on.
    pub ipv6_interface: String,
    /// The interface towards the IPv4 side; empty: the same as ipv6_interface.
    pub ipv4_interface: String,
    pub attach: XdpAttach,
    /// Queues (one worker each) from queue 0 on; 0: every receive queue the
    /// interfaces have (the smaller count of the two).
    pub queues: usize,
    /// UMEM frames (4 KiB each) per worker: what the rings hold in flight.
    pub frames: usize,
    /// Copy mode even where the driver offers zero copy.
    pub copy: bool,
}

impl Default for XdpSection {
    fn default() -> Self {
        XdpSection {
            ipv6_interface: String::new(),
            ipv4_interface: String::new(),
            attach: XdpAttach::Auto,
            queues: 0,
            frames: 8192,
            copy: false,
        }
    }
}

impl XdpSection {
    /// The interfaces, IPv6 side first; one when they are the same.
    pub fn interfaces(&self) -> Vec<&str> {
        let v4 = if self.ipv4_interface.is_empty() { &self.ipv6_interface } else { &self.ipv4_interface };
        if *v4 == self.ipv6_interface {
            vec![self.ipv6_interface.as_str()]
        } else {
            vec![self.ipv6_interface.as_str(), v4.as_str()]
        }
    }
}

fn interface_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 15
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The translator's settings (RFC 7915's configuration functions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranslatorSection {
    /// RFC 7915 section 4 "lowest-ipv6-mtu": IPv4 packets with DF clear are
    /// fragmented so each IPv6 packet is at most this (1280 to 65535).
    pub lowest_ipv6_mtu: u16,
    /// Send ICMP errors for packets the translator drops (RFC 7915 4.4, 5.4).
    pub icmp_errors: bool,
    /// Answer IPv4 UDP and ICMP queries with no state (no BIB entry) with
    /// ICMPv4 Host Unreachable (RFC 6146 3.5.1, 3.5.3); false: silent.
    pub icmp_no_state: bool,
    /// Rate limit of those errors, per worker (RFC 4443 2.4 (f)).
    pub icmp_limit: IcmpLimit,
}

impl Default for TranslatorSection {
    fn default() -> Self {
        let x = XlatConfig::default();
        TranslatorSection {
            lowest_ipv6_mtu: x.lowest_ipv6_mtu,
            icmp_errors: x.icmp_errors,
            icmp_no_state: x.icmp_no_state,
            icmp_limit: x.icmp_limit,
        }
    }
}

/// The stateful NAT (RFC 6146).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatSection {
    /// Table shards (locks); each owns the pool4 ports of its 64-port blocks.
    pub shards: usize,
    /// Inbound filtering (RFC 4787): "endpoint-independent" or "address-dependent".
    pub filtering: Filtering,
    /// Drop TCP connections opened from the IPv4 side instead of holding the SYN (RFC 6146 3.5.2.2).
    pub drop_external_tcp: bool,
    /// Session lifetimes, seconds in the file (RFC 6146 section 4).
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// Port allocation: per session, in blocks, or deterministic (`[nat.ports]`).
    pub ports: Ports,
}

impl Default for NatSection {
    fn default() -> Self {
        NatSection {
            shards: 16,
            filtering: Filtering::EndpointIndependent,
            drop_external_tcp: false,
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            ports: Ports::default(),
        }
    }
}

/// `[state]`: the NAT state kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSection {
    /// Written at a stop (and by `nat64ctl snapshot`), read at start. None: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// `[sync]`: active/standby synchronisation of the NAT state (off unless
/// `role` is set). The active serves its standby on `listen`; a standby
/// fetches from `peer`. Both hold the same 32-byte key in `key_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSection {
    /// "off", "active" or "standby" at start; `nat64ctl sync promote` and
    /// `demote` change it at run time.
    pub role: SyncRole,
    /// Where this gateway, while active, accepts its standby.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Where this gateway, while standby, fetches the active's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<SocketAddr>,
    /// The pre-shared key: 64 hex digits (`openssl rand -hex 32`), the same on both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// State changes held for a slow standby before it is resynchronised.
    pub queue: usize,
    /// Sessions a second in a full snapshot (pacing, so it never starves the data path).
    pub snapshot_rate: u64,
}

/// A gateway's part in a synchronised pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncRole {
    #[default]
    Off,
    Active,
    Standby,
}

impl SyncRole {
    pub fn label(self) -> &'static str {
        match self {
            SyncRole::Off => "off",
            SyncRole::Active => "active",
            SyncRole::Standby => "standby",
        }
    }
}

impl Default for SyncSection {
    fn default() -> Self {
        SyncSection {
            role: SyncRole::Off,
            listen: None,
            peer: None,
            key_file: None,
            queue: 262_144,
            snapshot_rate: 200_000,
        }
    }
}

/// `[mapping_log]`: the record of who held which pool4 address and ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingLogSection {
    /// A JSON-lines file, appended to, reopened on SIGHUP and `nat64ctl
    /// reload` (logrotate's contract). None: no log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Add the IPv4 destination to session records (per-session mode only).
    pub destination: bool,
    /// An IPFIX collector (RFC 7011 over UDP, RFC 8158 NAT records). None: no export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipfix: Option<SocketAddr>,
    /// Seconds between template refreshes to the collector (RFC 7011 8.1).
    pub ipfix_template_refresh: u64,
    /// The IPFIX observation domain this gateway exports as.
    pub ipfix_domain: u32,
}

impl Default for MappingLogSection {
    fn default() -> Self {
        MappingLogSection { file: None, destination: false, ipfix: None, ipfix_template_refresh: 600, ipfix_domain: 1 }
    }
}

impl MappingLogSection {
    pub fn enabled(&self) -> bool {
        self.file.is_some() || self.ipfix.is_some()
    }
}

/// `[proxy]`: the inbound relay by TLS SNI and HTTP Host (issue 19): off
/// while `listen` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Addresses and ports to accept visitors on (typically the public IPv4 on 80 and 443).
    pub listen: Vec<SocketAddr>,
    /// The customers' networks: a backend address outside them is never used.
    pub backends: Vec<Text<Net6>>,
    /// How backends learn the visitor's address unless a site says otherwise.
    pub client_address: crate::proxy::ClientAddress,
    /// A name no site names is looked up (AAAA, by the system resolver) and
    /// relayed when an address lies in `backends`, on the port the visitor
    /// connected to.
    pub resolve: bool,
    /// Time for a visitor to send a whole ClientHello or request head, ms.
    pub first_bytes_timeout_ms: u64,
    /// Time to reach a backend, ms.
    pub connect_timeout_ms: u64,
    /// A relayed connection with no byte either way for this long is closed, s.
    pub idle_timeout: u64,
    /// Connections at once, in all.
    pub max_connections: u32,
    /// Connections at once from one visitor address.
    pub per_client: u32,
    /// The sites: `[[proxy.site]]` tables.
    pub site: Vec<ProxySite>,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            listen: vec![],
            backends: vec![],
            client_address: crate::proxy::ClientAddress::None,
            resolve: false,
            first_bytes_timeout_ms: 5000,
            connect_timeout_ms: 3000,
            idle_timeout: 300,
            max_connections: 4096,
            per_client: 64,
            site: vec![],
        }
    }
}

/// `[[proxy.site]]`: a name (or `*.suffix`) and its IPv6 backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySite {
    pub name: String,
    /// `[IPv6]:port`, or a bare IPv6 address: the port the visitor connected to.
    #[serde(with = "backend_addr")]
    pub backend: std::net::SocketAddrV6,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<crate::proxy::ClientAddress>,
}

impl ProxySection {
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty()
    }
}

/// The control socket `nat64ctl` talks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    pub socket: PathBuf,
}

impl Default for ControlSection {
    fn default() -> Self {
        ControlSection { socket: PathBuf::from(DEFAULT_SOCKET) }
    }
}

/// Where `nat64ctl` looks for the daemon unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/nat64d/control.sock";

/// The Prometheus endpoint (off unless `listen` is set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The flag's form: a level name in any case.
    pub fn parse(s: &str) -> Result<LogLevel, String> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(LogLevel::Error),
            "warn" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => Err(format!("'{s}' is not one of error, warn, info, debug, trace")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub level: LogLevel,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { level: LogLevel::Info }
    }
}

/// A value written as a string in the file (`Display` / `FromStr`):
/// networks and prefixes in lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text<T: Display + FromStr>(#[serde(with = "text")] pub T)
where
    T::Err: Display;

/// The DNS64 server (RFC 6147), off unless `enabled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns64Section {
    pub enabled: bool,
    /// Run the DNS64 server alone: no TUN device, no translation (a
    /// resolver host apart from the gateway).
    pub only: bool,
    /// UDP and TCP addresses to answer on.
    pub listen: Vec<SocketAddr>,
    /// Resolvers to forward to, tried in order.
    pub upstream: Vec<SocketAddr>,
    /// Prefixes to synthesise under; empty: the translator's pool6.
    pub prefixes: Vec<Text<Prefix6052>>,
    /// AAAA records in these networks count as absent (RFC 6147 5.1.4).
    pub exclude_aaaa: Vec<Text<Net6>>,
    /// A records in these networks are never synthesised.
    pub exclude_a: Vec<Text<Net4>>,
    /// Client networks served; others get REFUSED.
    pub allow: Vec<Text<IpNet>>,
    /// Upper bound on answering one query; then SERVFAIL.
    pub timeout_ms: u64,
    /// Threads of the DNS runtime.
    pub threads: usize,
    /// Answers kept in the cache (0: no cache).
    pub cache_size: usize,
    /// Longest time an answer is cached, seconds.
    pub cache_max_ttl: u32,
}

impl Default for Dns64Section {
    fn default() -> Self {
        Dns64Section {
            enabled: false,
            only: false,
            listen: vec![(Ipv6Addr::LOCALHOST, 53).into(), (Ipv4Addr::LOCALHOST, 53).into()],
            upstream: vec![],
            prefixes: vec![],
            exclude_aaaa: vec![Text(crate::dns64::MAPPED)],
            exclude_a: vec![],
            allow: vec![
                Text(IpNet { addr: Ipv4Addr::new(127, 0, 0, 0).into(), len: 8 }),
                Text(IpNet { addr: Ipv6Addr::LOCALHOST.into(), len: 128 }),
            ],
            timeout_ms: 2000,
            threads: 1,
            cache_size: 100_000,
            cache_max_ttl: 86_400,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// RFC 6052 prefix the IPv4 Internet is reached under.
    #[serde(with = "text")]
    pub pool6: Prefix6052,
    /// IPv4 addresses the IPv6 clients are translated to.
    pub pool4: Vec<PoolEntry>,
    /// Allow non-global IPv4 addresses under 64:ff9b::/96 (labs only; RFC 6052 3.1).
    pub allow_non_global: bool,
    /// How packets reach nat64d: "tun" (the default) or "xdp".
    pub dataplane: DataplaneMode,
    pub tun: TunSection,
    pub xdp: XdpSection,
    pub translator: TranslatorSection,
    pub nat: NatSection,
    pub static_bib: Vec<StaticBib>,
    pub control: ControlSection,
    pub metrics: MetricsSection,
    pub log: LogSection,
    pub mapping_log: MappingLogSection,
    pub state: StateSection,
    pub sync: SyncSection,
    pub dns64: Dns64Section,
    pub proxy: ProxySection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pool6: Prefix6052::WKP,
            pool4: vec![],
            allow_non_global: false,
            dataplane: DataplaneMode::Tun,
            tun: TunSection::default(),
            xdp: XdpSection::default(),
            translator: TranslatorSection::default(),
            nat: NatSection::default(),
            static_bib: vec![],
            control: ControlSection::default(),
            metrics: MetricsSection::default(),
            log: LogSection::default(),
            mapping_log: MappingLogSection::default(),
            state: StateSection::default(),
            sync: SyncSection::default(),
            dns64: Dns64Section::default(),
            proxy: ProxySection::default(),
        }
    }
}

/// A configuration error: where, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or "command line".
    pub source: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key path (`nat.timeouts.udp`), when known.
    pub key: Option<String>,
    pub message: String,
}

/// The longest configuration file read: a few KiB is usual, 120000 static
/// BIB entries take some 10 MiB; /dev/zero or a runaway generator stops here.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;
/// The longest message an error shows (a 10 MB value is cut, not echoed).
const MAX_MESSAGE: usize = 300;

/// Read a configuration file: a regular file of at most [`MAX_CONFIG_BYTES`]
/// (not a FIFO that never ends, not /dev/zero).
fn read_file(p: &Path) -> Result<String, String> {
    use std::io::Read;
    // Look before opening: opening a FIFO for reading waits for a writer.
    let meta = std::fs::metadata(p).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(format!("{} bytes; a configuration file may have at most {MAX_CONFIG_BYTES}", meta.len()));
    }
    let f = std::fs::File::open(p).map_err(|e| format!("cannot read: {e}"))?;
    let mut text = String::new();
    f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text).map_err(|e| format!("cannot read: {e}"))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!("more than {MAX_CONFIG_BYTES} bytes"));
    }
    Ok(text)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": key '{}'", cut(k))?;
        }
        write!(f, ": {}", cut(&self.message))
    }
}

/// `s`, or its first [`MAX_MESSAGE`] characters and how much was left out.
fn cut(s: &str) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(MAX_MESSAGE) {
        None => s.into(),
        Some((at, _)) => format!("{}... ({} more bytes)", &s[..at], s.len() - at).into(),
    }
}

impl std::error::Error for ConfigError {}

/// The table header in force at each line, and where each `key =` is.
struct KeyIndex {
    /// (line, dotted key) for every `key = value` line.
    keys: Vec<(usize, String)>,
}

impl KeyIndex {
    fn new(src: &str) -> Self {
        let mut section = String::new();
        let mut keys = vec![];
        for (i, raw) in src.lines().enumerate() {
            let l = raw.trim();
            if let Some(h) = l.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
                section = h.trim().to_string();
            } else if let Some(h) = l.strip_prefix('[').and_then(|h| h.split(']').next()) {
                section = h.trim().to_string();
            } else if let Some((k, _)) = l.split_once('=') {
                let k = k.trim().trim_matches('"');
                if !k.is_empty() && !k.starts_with('#') {
                    let full = if section.is_empty() { k.to_string() } else { format!("{section}.{k}") };
                    keys.push((i + 1, full));
                }
            }
        }
        KeyIndex { keys }
    }

    fn key_at(&self, line: usize) -> Option<String> {
        self.keys.iter().find(|(l, _)| *l == line).map(|(_, k)| k.clone())
    }

    /// The last line defining `key` (a later definition would be a TOML error anyway).
    fn line_of(&self, key: &str) -> Option<usize> {
        self.keys.iter().rev().find(|(_, k)| k == key).map(|(l, _)| *l)
    }
}

/// The `[[static_bib]]` tables parsed one at a time, apart from the rest
/// of the document: the TOML parser holds a whole document's tree with a
/// span for every key and value, which for 120000 static entries (a 10 MB
/// file) peaked at 277 MB; one entry at a time it is the entries alone.
/// Any doubt gives `None`, and the caller parses the text whole, which is
/// also what finds and words every error: text with multi-line strings (a
/// line there may look like a header), headers spelled any other way, an
/// entry that does not parse on its own, or a rest that has static entries
/// of its own.
fn parse_static_apart(src: &str) -> Option<Config> {
    if src.contains("\"\"\"") || src.contains("'''") {
        return None;
    }
    let header = |t: &str| {
        let t = t.trim();
        let t = t.split_once('#').map_or(t, |(h, _)| h.trim_end());
        t == "[[static_bib]]"
    };
    // The rest keeps its line numbers: each entry's lines become empty lines.
    let mut rest = String::with_capacity(src.len());
    let mut entries = Vec::new();
    let mut chunk: Option<String> = None;
    for line in src.split_inclusive('\n') {
        let starts_table = line.trim_start().starts_with('[');
        if starts_table {
            if let Some(c) = chunk.take() {
                entries.push(toml::from_str::<StaticBib>(&c).ok()?);
            }
            if header(line) {
                chunk = Some(String::new());
                rest.push('\n');
                continue;
            }
        }
        match chunk.as_mut() {
            Some(c) => {
                c.push_str(line);
                rest.push('\n');
            }
            None => rest.push_str(line),
        }
    }
    if let Some(c) = chunk.take() {
        entries.push(toml::from_str::<StaticBib>(&c).ok()?);
    }
    if entries.is_empty() {
        return None;
    }
    // The rest must not touch static_bib in any spelling (`static_bib = []`
    // before the tables is an error in the whole document, say).
    if rest.contains("static_bib") {
        return None;
    }
    let mut cfg: Config = toml::from_str(&rest).ok()?;
    cfg.static_bib = entries;
    Some(cfg)
}

impl Config {
    /// Parse and validate TOML text; `source` names it in errors.
    pub fn parse(src: &str, source: &str) -> Result<Config, ConfigError> {
        Config::parse_fast(src, source).unwrap_or_else(|| Config::parse_whole(src, source))
    }

    /// The fast path alone (static entries parsed one at a time): None when
    /// the text is not one it takes, and [`Config::parse`] parses it whole.
    #[doc(hidden)]
    pub fn parse_fast(src: &str, source: &str) -> Option<Result<Config, ConfigError>> {
        let cfg = parse_static_apart(src)?;
        Some(cfg.validate().map(|_| cfg).map_err(|(key, message)| ConfigError {
            source: source.to_string(),
            line: KeyIndex::new(src).line_of(&key),
            key: Some(key),
            message,
        }))
    }

    /// Parse the text as one TOML document (the reference the fast path in
    /// [`Config::parse`] must agree with; the fuzz target checks that it does).
    #[doc(hidden)]
    pub fn parse_whole(src: &str, source: &str) -> Result<Config, ConfigError> {
        // The key index is built only for an error (a file of 120000 static
        // entries would otherwise hold half a million key strings for nothing).
        let cfg: Config = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| src[..s.start.min(src.len())].matches('\n').count() + 1);
            let key = line.and_then(|l| KeyIndex::new(src).key_at(l));
            ConfigError { source: source.to_string(), line, key, message: e.message().trim().to_string() }
        })?;
        cfg.validate().map_err(|(key, message)| ConfigError {
            source: source.to_string(),
            line: KeyIndex::new(src).line_of(&key),
            key: Some(key),
            message,
        })?;
        Ok(cfg)
    }

    /// Read, parse and validate a file, then apply the command-line overrides.
    pub fn load(path: Option<&Path>, ov: &Overrides) -> Result<Config, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let name = p.display().to_string();
                let text = read_file(p).map_err(|message| ConfigError {
                    source: name.clone(),
                    line: None,
                    key: None,
                    message,
                })?;
                Config::parse(&text, &name)?
            }
            None => Config::default(),
        };
        ov.apply(&mut cfg);
        cfg.validate().map_err(|(key, message)| ConfigError {
            source: "command line".into(),
            line: None,
            key: Some(key),
            message,
        })?;
        Ok(cfg)
    }

    /// What the daemon checks before it starts, beyond a valid file: that it
    /// has something to translate to. `nat64d --check` runs it too, so a
    /// configuration it passes is one the daemon starts with.
    pub fn check_runnable(&self, source: &str) -> Result<(), ConfigError> {
        if self.pool4.is_empty() && !self.dns64.only {
            return Err(ConfigError {
                source: source.to_string(),
                line: None,
                key: Some("pool4".into()),
                message: "no pool4 addresses: give --pool4 or set pool4 = [\"203.0.113.0/28\"] in the configuration"
                    .into(),
            });
        }
        Ok(())
    }

    /// The proxy's sites and backend policy: names that are names, backends
    /// the policy allows; what the relay runs with.
    pub fn proxy_sites(&self) -> Result<(crate::proxy::SiteMap, crate::proxy::BackendPolicy), (&'static str, String)> {
        let p = &self.proxy;
        if p.enabled() && p.backends.is_empty() {
            return Err(("proxy.backends", "no backend networks: every site would be refused".into()));
        }
        if p.first_bytes_timeout_ms == 0 || p.connect_timeout_ms == 0 || p.idle_timeout == 0 {
            return Err(("proxy", "timeouts must be at least 1".into()));
        }
        if p.max_connections == 0 || p.per_client == 0 {
            return Err(("proxy", "max_connections and per_client must be at least 1".into()));
        }
        let policy = crate::proxy::BackendPolicy {
            prefixes: p.backends.iter().map(|t| t.0).collect(),
            pool6: Net6 { addr: self.pool6.addr(), len: self.pool6.prefix_len() },
        };
        let mut map = crate::proxy::SiteMap::default();
        for s in &p.site {
            let b =
                crate::proxy::Backend { addr: s.backend, client_address: s.client_address.unwrap_or(p.client_address) };
            if !map.insert(&s.name, b) {
                return Err(("proxy.site.name", format!("'{}' is not a host name or *.suffix", cut(&s.name))));
            }
            if let Err(why) = policy.check(*s.backend.ip()) {
                return Err(("proxy.site.backend", format!("{}: {why}", s.backend)));
            }
        }
        if map.len() != p.site.len() {
            return Err(("proxy.site.name", "a name is given twice".into()));
        }
        Ok((map, policy))
    }

    /// Checks serde cannot express; the error names the key.
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        if let Some((a, b)) = pool4::overlap(&self.pool4) {
            return err("pool4", format!("{a} and {b} overlap: one address, port and protocol would serve two flows"));
        }
        let total = self.pool4_size();
        if total > 1 << 16 {
            return err("pool4", format!("{total} addresses; at most 65536 are supported"));
        }
        if !interface_name_ok(&self.tun.name) {
            return err("tun.name", format!("'{}' is not an interface name (1-15 of [A-Za-z0-9._-])", self.tun.name));
        }
        if self.tun.mtu < 1280 {
            return err("tun.mtu", format!("{} is below 1280, the IPv6 minimum MTU", self.tun.mtu));
        }
        if self.translator.lowest_ipv6_mtu < 1280 {
            return err(
                "translator.lowest_ipv6_mtu",
                format!("{} is below 1280, the IPv6 minimum MTU", self.translator.lowest_ipv6_mtu),
            );
        }
        if self.tun.queues > 256 {
            return err("tun.queues", format!("{} queues; the kernel allows at most 256", self.tun.queues));
        }
        let x = &self.xdp;
        if self.dataplane == DataplaneMode::Xdp && !self.dns64.only {
            if x.ipv6_interface.is_empty() {
                return err("xdp.ipv6_interface", "the xdp dataplane needs the interface IPv6 clients reach".into());
            }
            for (k, n) in [("xdp.ipv6_interface", &x.ipv6_interface), ("xdp.ipv4_interface", &x.ipv4_interface)] {
                if !n.is_empty() && !interface_name_ok(n) {
                    return err(k, format!("'{n}' is not an interface name (1-15 of [A-Za-z0-9._-])"));
                }
            }
        }
        if x.queues > 256 {
            return err("xdp.queues", format!("{} queues; at most 256", x.queues));
        }
        if !(1024..=262_144).contains(&x.frames) {
            return err("xdp.frames", format!("{} frames per worker; 1024 to 262144", x.frames));
        }
        let y = &self.sync;
        if y.role != SyncRole::Off {
            if y.key_file.is_none() {
                return err("sync.key_file", "sync needs a pre-shared key: a file with 64 hex digits".into());
            }
            if y.role == SyncRole::Active && y.listen.is_none() {
                return err("sync.listen", "an active gateway needs an address to serve its standby on".into());
            }
            if y.role == SyncRole::Standby && y.peer.is_none() {
                return err("sync.peer", "a standby needs the active's sync address".into());
            }
        }
        if !(1024..=16 << 20).contains(&y.queue) {
            return err("sync.queue", format!("{} is not in 1024..=16777216", y.queue));
        }
        if !(1000..=100_000_000).contains(&y.snapshot_rate) {
            return err("sync.snapshot_rate", format!("{} is not in 1000..=100000000", y.snapshot_rate));
        }
        if !(1..=1024).contains(&self.nat.shards) {
            return err("nat.shards", format!("{} is not in 1..=1024", self.nat.shards));
        }
        let t = &self.nat.timeouts;
        let s = |ms: u64| ms / 1000;
        if t.udp < UDP_MIN {
            return err(
                "nat.timeouts.udp",
                format!("{} s is below UDP_MIN, {} s (RFC 6146 section 4)", s(t.udp), s(UDP_MIN)),
            );
        }
        if t.tcp_est < TCP_EST {
            return err(
                "nat.timeouts.tcp_est",
                format!("{} s is below TCP_EST, {} s (RFC 6146 section 4 forbids less)", s(t.tcp_est), s(TCP_EST)),
            );
        }
        if t.tcp_trans < TCP_TRANS {
            return err(
                "nat.timeouts.tcp_trans",
                format!(
                    "{} s is below TCP_TRANS, {} s (RFC 6146 section 4 forbids less)",
                    s(t.tcp_trans),
                    s(TCP_TRANS)
                ),
            );
        }
        if t.icmp < 1000 || t.udp > WEEK || t.tcp_est > WEEK || t.tcp_trans > DAY || t.icmp > DAY {
            return err(
                "nat.timeouts",
                "timeouts must be at least 1 s and at most a week (a day for tcp_trans and icmp)".into(),
            );
        }
        let l = &self.nat.limits;
        if l.max_sessions == 0 || l.sessions_per_host == 0 || l.sessions_per_net64 == 0 || l.bibs_per_host == 0 {
            return err("nat.limits", "limits must be at least 1".into());
        }
        if let Err((k, m)) = self.proxy_sites() {
            return err(k, m);
        }
        let t = self.mapping_log.ipfix_template_refresh;
        if !(1..=86_400).contains(&t) {
            return err("mapping_log.ipfix_template_refresh", format!("{t} s; between 1 s and a day"));
        }
        let ports = &self.nat.ports;
        if ports.uses_blocks() {
            if let Err((k, m)) = ports.check() {
                return err(k, m);
            }
        }
        let groups = pool4::groups(&self.pool4);
        if ports.mode == PortMode::Deterministic {
            for g in &groups {
                if let Err(m) = DetMap::new(g, ports) {
                    return err("pool4", format!("deterministic mapping (nat.ports): {m}"));
                }
            }
        }
        let (mut seen6, mut seen4) = (std::collections::HashSet::new(), std::collections::HashSet::new());
        for b in &self.static_bib {
            if ports.uses_blocks() && b.ipv4.port() >= crate::nat::blocks::BLOCK_FLOOR {
                return err(
                    "static_bib.ipv4",
                    format!(
                        "{}: with nat.ports.mode = \"{}\" ports from {} up belong to subscribers' blocks; give static entries ports below {}",
                        b.ipv4,
                        if ports.mode == PortMode::Blocks { "blocks" } else { "deterministic" },
                        crate::nat::blocks::BLOCK_FLOOR,
                        crate::nat::blocks::BLOCK_FLOOR
                    ),
                );
            }
            if let Err((k, m)) = b.check(&self.pool6) {
                return err(k, m);
            }
            if !self.pool4.iter().any(|e| e.net.0.contains(*b.ipv4.ip())) {
                return err("static_bib.ipv4", format!("{} is not a pool4 address", b.ipv4.ip()));
            }
            if !seen6.insert((b.proto, b.ipv6)) {
                return err("static_bib.ipv6", format!("{} {} has two static entries", b.proto.label(), b.ipv6));
            }
            if !seen4.insert((b.proto, b.ipv4)) {
                return err("static_bib.ipv4", format!("{} {} has two static entries", b.proto.label(), b.ipv4));
            }
        }
        let d = &self.dns64;
        if d.only && !d.enabled {
            return err("dns64.only", "the DNS64 server alone needs dns64.enabled = true (and an upstream)".into());
        }
        if d.enabled {
            if d.upstream.is_empty() {
                return err("dns64.upstream", "no upstream resolvers: DNS64 needs at least one to forward to".into());
            }
            if d.listen.is_empty() {
                return err("dns64.listen", "no addresses to listen on".into());
            }
        }
        if !(100..=30_000).contains(&d.timeout_ms) {
            return err("dns64.timeout_ms", format!("{} ms is not in 100..=30000", d.timeout_ms));
        }
        if !(1..=64).contains(&d.threads) {
            return err("dns64.threads", format!("{} is not in 1..=64", d.threads));
        }
        Ok(())
    }

    /// The translator's settings: the TUN MTU as both next hops', the rest
    /// from `[translator]`.
    pub fn xlat_config(&self) -> XlatConfig {
        let t = &self.translator;
        XlatConfig {
            ipv6_mtu: self.tun.mtu.max(1280),
            ipv4_mtu: self.tun.mtu,
            lowest_ipv6_mtu: t.lowest_ipv6_mtu,
            icmp_errors: t.icmp_errors,
            icmp_no_state: t.icmp_no_state,
            icmp_limit: t.icmp_limit,
            ..XlatConfig::default()
        }
    }

    /// The DNS64 prefixes: as configured, or the translator's.
    pub fn dns64_prefixes(&self) -> Vec<Prefix6052> {
        if self.dns64.prefixes.is_empty() {
            vec![self.pool6]
        } else {
            self.dns64.prefixes.iter().map(|p| p.0).collect()
        }
    }

    /// The DNS64 server's run-time settings.
    pub fn dns64_settings(&self) -> Dns64Settings {
        let d = &self.dns64;
        let mut core = Dns64::new(self.dns64_prefixes());
        core.exclude6 = d.exclude_aaaa.iter().map(|n| n.0).collect();
        core.exclude4 = d.exclude_a.iter().map(|n| n.0).collect();
        core.allow_non_global = self.allow_non_global;
        Dns64Settings {
            dns64: core,
            upstream: d.upstream.clone(),
            timeout: std::time::Duration::from_millis(d.timeout_ms),
            allow: d.allow.iter().map(|n| n.0).collect(),
        }
    }

    /// The DNS64 server's fixed settings.
    pub fn dns64_server(&self) -> ServerConfig {
        let d = &self.dns64;
        ServerConfig {
            listen: d.listen.clone(),
            threads: d.threads,
            cache_size: d.cache_size,
            cache_max_ttl: d.cache_max_ttl,
            ..ServerConfig::default()
        }
    }

    /// How many pool4 addresses there are.
    pub fn pool4_size(&self) -> u64 {
        self.pool4.iter().map(|e| e.net.0.size()).sum()
    }

    /// Every pool4 address, in order.
    pub fn pool4_addrs(&self) -> Vec<Ipv4Addr> {
        self.pool4.iter().flat_map(|e| e.net.addrs()).collect()
    }

    /// The NAT tables' configuration.
    pub fn nat_config(&self) -> NatConfig {
        let mut c = NatConfig::new(self.pool6, &[]);
        c.pool4 = pool4::groups(&self.pool4);
        c.allow_non_global = self.allow_non_global;
        c.timeouts = self.nat.timeouts;
        c.filtering = self.nat.filtering;
        c.drop_external_tcp = self.nat.drop_external_tcp;
        c.limits = self.nat.limits;
        c.ports = self.nat.ports;
        let on = self.mapping_log.enabled();
        c.events = EventSel {
            blocks: on && self.nat.ports.mode == PortMode::Blocks,
            sessions: on && self.nat.ports.mode == PortMode::Session,
            destination: self.mapping_log.destination,
        };
        c
    }

    /// The deterministic mappings of the pool4 groups (RFC 7422), in group
    /// order; empty unless nat.ports.mode is "deterministic".
    pub fn deterministic(&self) -> Vec<DetMap> {
        if self.nat.ports.mode != PortMode::Deterministic {
            return vec![];
        }
        pool4::groups(&self.pool4).iter().filter_map(|g| DetMap::new(g, &self.nat.ports).ok()).collect()
    }

    /// The configuration as TOML (for `nat64ctl config`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
