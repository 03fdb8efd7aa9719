//! The daemon's command-line flags: settings that override the file (and
//! survive reloads). Defined once, here: `nat64d`'s `--help` is generated
//! from these doc comments (`#[command(flatten)]`), and [`Overrides::apply`]
//! is the one place a flag meets its key.

use super::{LogLevel, PoolNet, StaticBib, Text};
use crate::addr::{IpNet, Prefix6052};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Command-line settings that override the configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Overrides {
    /// RFC 6052 prefix IPv4 hosts are reached under (pool6) [default: 64:ff9b::/96].
    #[arg(long, value_name = "PREFIX")]
    pub pool6: Option<Prefix6052>,
    /// IPv4 addresses to translate to (pool4): ADDRESS or NETWORK/LEN (/16 to /32); repeat for more.
    #[arg(long, value_name = "NETWORK")]
    pub pool4: Vec<PoolNet>,
    /// How packets reach nat64d: tun (a TUN device the kernel routes into) or
    /// xdp (AF_XDP sockets on the interfaces, see --xdp-ipv6) [default: tun].
    #[arg(long, value_name = "MODE")]
    pub dataplane: Option<crate::config::DataplaneMode>,
    /// With --dataplane xdp: the interface IPv6 clients reach the gateway on.
    #[arg(long, value_name = "IFACE")]
    pub xdp_ipv6: Option<String>,
    /// With --dataplane xdp: the interface towards IPv4 [default: the --xdp-ipv6 one].
    #[arg(long, value_name = "IFACE")]
    pub xdp_ipv4: Option<String>,
    /// TUN device to create or attach to [default: nat64].
    #[arg(long, value_name = "NAME")]
    pub tun: Option<String>,
    /// MTU of the TUN device, used as the next-hop MTU on both sides [default: 1500].
    #[arg(long)]
    pub mtu: Option<u16>,
    /// TUN queues, one worker thread each; 0 means one per CPU [default: 0].
    #[arg(long)]
    pub queues: Option<usize>,
    /// Turn TUN offloads (TSO/USO super-packets) off.
    #[arg(long)]
    pub no_offload: bool,
    /// Read and write one packet per system call instead of batching through io_uring.
    #[arg(long)]
    pub no_io_uring: bool,
    /// Do not configure the device's link state and routes (the operator does).
    #[arg(long)]
    pub no_setup: bool,
    /// Allow non-global IPv4 addresses under 64:ff9b::/96 (labs only; RFC 6052 3.1).
    #[arg(long)]
    pub allow_non_global: bool,
    /// Static BIB entry PROTO,[IPV6]:PORT,IPV4:PORT (e.g. tcp,[2001:db8::80]:80,203.0.113.1:8080):
    /// the IPv6 server is reachable from IPv4 at the pool4 address and port. Repeatable.
    #[arg(long = "bib", value_name = "ENTRY")]
    pub static_bib: Vec<StaticBib>,
    /// NAT table shards (locks) [default: 16].
    #[arg(long)]
    pub shards: Option<usize>,
    /// Control socket for nat64ctl [default: /run/nat64d/control.sock].
    #[arg(long = "control-socket", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (off by default).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Log level: error, warn, info, debug or trace [default: info].
    #[arg(long, value_name = "LEVEL", value_parser = LogLevel::parse)]
    pub log_level: Option<LogLevel>,
    /// Serve DNS64 (RFC 6147), forwarding to this resolver (ADDR:PORT); repeat for more.
    #[arg(long, value_name = "ADDR")]
    pub dns64_upstream: Vec<SocketAddr>,
    /// Address for the DNS64 server to answer on (UDP and TCP); repeatable
    /// [default: [::1]:53 and 127.0.0.1:53].
    #[arg(long, value_name = "ADDR")]
    pub dns64_listen: Vec<SocketAddr>,
    /// Client network the DNS64 server answers (others get REFUSED); repeatable
    /// [default: loopback only].
    #[arg(long, value_name = "NETWORK")]
    pub dns64_allow: Vec<IpNet>,
    /// Run only the DNS64 server: no TUN device, no translation, no pool4
    /// needed (a resolver host apart from the gateway). Needs --dns64-upstream.
    #[arg(long)]
    pub dns64_only: bool,
}

fn set<T: Clone>(dst: &mut T, v: &Option<T>) {
    if let Some(v) = v {
        *dst = v.clone();
    }
}

impl Overrides {
    /// Write the flags over a configuration read from the file.
    pub fn apply(&self, cfg: &mut super::Config) {
        set(&mut cfg.pool6, &self.pool6);
        if !self.pool4.is_empty() {
            cfg.pool4 = self.pool4.iter().map(|&n| n.into()).collect();
        }
        cfg.allow_non_global |= self.allow_non_global;
        set(&mut cfg.dataplane, &self.dataplane);
        set(&mut cfg.xdp.ipv6_interface, &self.xdp_ipv6);
        set(&mut cfg.xdp.ipv4_interface, &self.xdp_ipv4);
        set(&mut cfg.tun.name, &self.tun);
        set(&mut cfg.tun.mtu, &self.mtu);
        cfg.tun.setup &= !self.no_setup;
        set(&mut cfg.tun.queues, &self.queues);
        cfg.tun.offload &= !self.no_offload;
        cfg.tun.io_uring &= !self.no_io_uring;
        set(&mut cfg.nat.shards, &self.shards);
        for b in &self.static_bib {
            if !cfg.static_bib.contains(b) {
                cfg.static_bib.push(*b);
            }
        }
        set(&mut cfg.control.socket, &self.socket);
        if self.metrics.is_some() {
            cfg.metrics.listen = self.metrics;
        }
        set(&mut cfg.log.level, &self.log_level);
        if !self.dns64_upstream.is_empty() {
            cfg.dns64.enabled = true;
            cfg.dns64.upstream = self.dns64_upstream.clone();
        }
        if !self.dns64_listen.is_empty() {
            cfg.dns64.listen = self.dns64_listen.clone();
        }
        cfg.dns64.only |= self.dns64_only;
        if !self.dns64_allow.is_empty() {
            cfg.dns64.allow = self.dns64_allow.iter().map(|&n| Text(n)).collect();
        }
    }
}
