//! nat64d: the NAT64 gateway daemon. Flags → configuration overrides; the
//! rest lives in `nat64d::daemon`.

use clap::Parser;
use nat64d::config::{Config, Ipv4Net, LogLevel, Overrides, StaticBib};
use nat64d::Prefix6052;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// NAT64/DNS64 gateway: RFC 6146 stateful NAT64 with RFC 7915 translation over a TUN device,
/// and an RFC 6147 DNS64 server (--dns64-upstream, or [dns64] in the file).
///
/// Flags override the configuration file; a reload (SIGHUP or `nat64ctl reload`)
/// re-reads the file and applies the flags again.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// TOML configuration file (see systemd/nat64d.toml for every key).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration, print it as the daemon would run it, and exit.
    #[arg(long)]
    check: bool,
    /// RFC 6052 prefix IPv4 hosts are reached under (pool6) [default: 64:ff9b::/96].
    #[arg(long, value_name = "PREFIX")]
    pool6: Option<Prefix6052>,
    /// IPv4 addresses to translate to (pool4): ADDRESS or NETWORK/LEN (/16 to /32); repeat for more.
    #[arg(long, value_name = "NETWORK")]
    pool4: Vec<Ipv4Net>,
    /// TUN device to create or attach to [default: nat64].
    #[arg(long, value_name = "NAME")]
    tun: Option<String>,
    /// MTU of the TUN device, used as the next-hop MTU on both sides [default: 1500].
    #[arg(long)]
    mtu: Option<u16>,
    /// TUN queues, one worker thread each; 0 means one per CPU [default: 0].
    #[arg(long)]
    queues: Option<usize>,
    /// Turn TUN offloads (TSO/USO super-packets) off.
    #[arg(long)]
    no_offload: bool,
    /// Read and write one packet per system call instead of batching through io_uring.
    #[arg(long)]
    no_io_uring: bool,
    /// Do not configure the device's link state and routes (the operator does).
    #[arg(long)]
    no_setup: bool,
    /// Allow non-global IPv4 addresses under 64:ff9b::/96 (labs only; RFC 6052 3.1).
    #[arg(long)]
    allow_non_global: bool,
    /// Static BIB entry PROTO,[IPV6]:PORT,IPV4:PORT (e.g. tcp,[2001:db8::80]:80,203.0.113.1:8080):
    /// the IPv6 server is reachable from IPv4 at the pool4 address and port. Repeatable.
    #[arg(long = "bib", value_name = "ENTRY")]
    bibs: Vec<StaticBib>,
    /// NAT table shards (locks) [default: 16].
    #[arg(long)]
    shards: Option<usize>,
    /// Control socket for nat64ctl [default: /run/nat64d/control.sock].
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (off by default).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Log level: error, warn, info, debug or trace [default: info].
    #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
    log_level: Option<LogLevel>,
    /// Serve DNS64 (RFC 6147), forwarding to this resolver (ADDR:PORT); repeat for more.
    #[arg(long, value_name = "ADDR")]
    dns64_upstream: Vec<SocketAddr>,
    /// Address for the DNS64 server to answer on (UDP and TCP); repeatable
    /// [default: [::1]:53 and 127.0.0.1:53].
    #[arg(long, value_name = "ADDR")]
    dns64_listen: Vec<SocketAddr>,
    /// Client network the DNS64 server answers (others get REFUSED); repeatable
    /// [default: loopback only].
    #[arg(long, value_name = "NETWORK")]
    dns64_allow: Vec<nat64d::dns64::IpNet>,
    /// Run only the DNS64 server: no TUN device, no translation, no pool4
    /// needed (a resolver host apart from the gateway). Needs --dns64-upstream.
    #[arg(long)]
    dns64_only: bool,
}

fn parse_level(s: &str) -> Result<LogLevel, String> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
        .map_err(|_| format!("'{s}' is not one of error, warn, info, debug, trace"))
}

fn main() -> ExitCode {
    let a = Args::parse();
    let ov = Overrides {
        pool6: a.pool6,
        pool4: a.pool4,
        allow_non_global: a.allow_non_global,
        tun: a.tun,
        mtu: a.mtu,
        no_setup: a.no_setup,
        queues: a.queues,
        no_offload: a.no_offload,
        no_io_uring: a.no_io_uring,
        shards: a.shards,
        static_bib: a.bibs,
        socket: a.control_socket,
        metrics: a.metrics,
        log_level: a.log_level,
        dns64_upstream: a.dns64_upstream,
        dns64_listen: a.dns64_listen,
        dns64_allow: a.dns64_allow,
        dns64_only: a.dns64_only,
    };
    if a.check {
        return match Config::load(a.config.as_deref(), &ov) {
            Ok(c) => {
                print!("{}", c.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("nat64d: {e}");
                ExitCode::from(2)
            }
        };
    }
    ExitCode::from(nat64d::daemon::run(a.config, ov))
}
