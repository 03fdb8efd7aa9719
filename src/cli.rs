//! The command lines of `nat64d` and `nat64ctl` (clap definitions), in the
//! library so that the man pages and shell completions are generated from
//! them (`examples/gen_docs.rs`) and cannot drift from `--help`.

use crate::config::{Overrides, DEFAULT_SOCKET};
use crate::nat::Proto;
use clap::{Parser, Subcommand};
use std::net::{IpAddr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;

/// The version line: the crate's version and the git revision it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("NAT64D_GIT_REV"), ")");

/// NAT64/DNS64 gateway: RFC 6146 stateful NAT64 with RFC 7915 translation over a TUN device,
/// and an RFC 6147 DNS64 server (--dns64-upstream, or [dns64] in the file).
///
/// Flags override the configuration file; a reload (SIGHUP or `nat64ctl reload`)
/// re-reads the file and applies the flags again.
#[derive(Parser, Debug)]
#[command(name = "nat64d", version = VERSION)]
pub struct DaemonArgs {
    /// TOML configuration file (see systemd/nat64d.toml for every key).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the configuration, print it as the daemon would run it, and exit.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub overrides: Overrides,
}

/// Control a running nat64d through its control socket.
#[derive(Parser, Debug)]
#[command(name = "nat64ctl", version = VERSION)]
pub struct CtlArgs {
    /// The daemon's control socket.
    #[arg(long, short = 's', env = "NAT64D_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Packets and bytes translated, drops by reason, sessions and BIB entries, pool4 use.
    Stats {
        /// Print the report as JSON (for scripts).
        #[arg(long)]
        json: bool,
        /// Print again every SECONDS with rates, until interrupted.
        #[arg(long, value_name = "SECONDS")]
        watch: Option<f64>,
    },
    /// List sessions (RFC 6146 session table).
    Sessions {
        /// Only this protocol: tcp, udp or icmp.
        #[arg(long)]
        proto: Option<Proto>,
        /// Only sessions of this address (IPv6 client, pool4 address or IPv4 remote).
        #[arg(long)]
        addr: Option<IpAddr>,
        /// List at most this many [default: 1000].
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// List, add or remove BIB entries.
    Bib {
        #[command(subcommand)]
        action: Option<BibCmd>,
        /// Only this protocol (listing).
        #[arg(long)]
        proto: Option<Proto>,
        /// Only entries of this address (listing).
        #[arg(long)]
        addr: Option<IpAddr>,
        /// List at most this many [default: 1000; at most 100000].
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Name who held a pool4 address and port (or what an IPv6 subscriber
    /// held), now from the daemon, or at a past time from mapping logs, or
    /// from a deterministic configuration. Exit status 1 when nobody is named.
    Who {
        /// A pool4 address and port (203.0.113.5:40123), or an IPv6 address or prefix.
        target: String,
        /// Only this protocol: tcp, udp or icmp.
        #[arg(long)]
        proto: Option<Proto>,
        /// The moment asked about, RFC 3339 (2026-12-01T14:02:07Z) [default: now].
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Answer from these mapping logs, oldest first (gzip-compressed ones
        /// too), without the daemon: --log mapping.jsonl.2.gz --log mapping.jsonl.1 --log mapping.jsonl
        #[arg(long, value_name = "FILE")]
        log: Vec<PathBuf>,
        /// Answer from this configuration's deterministic mapping (RFC 7422), without the daemon.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Show the configuration in force.
    Config,
    /// Re-read the configuration file and apply it, keeping live sessions.
    Reload,
    /// Write the NAT state file now ([state] file; a stop writes it too).
    Snapshot,
    /// Active/standby sync ([sync]): the status, or a role change for
    /// keepalived or a BGP health script: nat64ctl sync promote | demote
    Sync {
        #[command(subcommand)]
        action: Option<SyncCmd>,
        #[arg(long)]
        json: bool,
    },
    /// List the inbound relay's open connections ([proxy]): visitor, site,
    /// backend, age, idle time, bytes each way; oldest first.
    Proxy {
        /// List at most this many [default: 1000; at most 100000].
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug, Clone, Copy)]
pub enum SyncCmd {
    /// Become the active gateway: take over the synced sessions (each gets
    /// its full lifetime again) and serve the standby.
    Promote,
    /// Become the standby: follow the active's state from [sync] peer.
    Demote,
    /// Show the status (the default).
    Status,
}

#[derive(Subcommand, Debug)]
pub enum BibCmd {
    /// Add a static entry: nat64ctl bib add tcp '[2001:db8::80]:80' 203.0.113.1:8080
    Add { proto: Proto, ipv6: SocketAddrV6, ipv4: SocketAddrV4 },
    /// Remove a static entry: nat64ctl bib remove tcp '[2001:db8::80]:80'
    Remove { proto: Proto, ipv6: SocketAddrV6 },
}
