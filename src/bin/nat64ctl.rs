//! nat64ctl: ask a running nat64d for its counters, sessions and BIB, change
//! static BIB entries, show the configuration, reload it.
//! Exit status: 0 done, 1 the daemon refused or cannot be reached, 2 usage.

use clap::{Parser, Subcommand};
use nat64d::config::{StaticBib, DEFAULT_SOCKET};
use nat64d::daemon::control::{call, BibList, Request, SessionList};
use nat64d::daemon::report::StatsReport;
use nat64d::nat::Proto;
use std::io::Write;
use std::net::{IpAddr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Control a running nat64d through its control socket.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The daemon's control socket.
    #[arg(long, short = 's', env = "NAT64D_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    socket: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
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
    /// Show the configuration in force.
    Config,
    /// Re-read the configuration file and apply it, keeping live sessions.
    Reload,
}

#[derive(Subcommand, Debug)]
enum BibCmd {
    /// Add a static entry: nat64ctl bib add tcp '[2001:db8::80]:80' 203.0.113.1:8080
    Add { proto: Proto, ipv6: SocketAddrV6, ipv4: SocketAddrV4 },
    /// Remove a static entry: nat64ctl bib remove tcp '[2001:db8::80]:80'
    Remove { proto: Proto, ipv6: SocketAddrV6 },
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nat64ctl: {e}");
            ExitCode::from(1)
        }
    }
}

fn get<T: serde::de::DeserializeOwned>(a: &Args, req: &Request) -> Result<T, String> {
    let v = call(&a.socket, req, TIMEOUT).map_err(|e| e.to_string())?;
    serde_json::from_value(v).map_err(|e| format!("unexpected answer from nat64d: {e}"))
}

fn run(a: &Args) -> Result<(), String> {
    let out = &mut std::io::stdout().lock();
    let p = |out: &mut std::io::StdoutLock, s: &str| {
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
    };
    match &a.cmd {
        Cmd::Stats { json, watch } => {
            let r: StatsReport = get(a, &Request::Stats)?;
            if *json && watch.is_none() {
                p(out, &(serde_json::to_string_pretty(&r).unwrap_or_default() + "\n"));
                return Ok(());
            }
            let Some(secs) = *watch else {
                p(out, &r.render(None));
                return Ok(());
            };
            if !(secs.is_finite() && secs >= 0.1) {
                return Err("--watch needs at least 0.1 seconds".into());
            }
            let (mut prev, mut at) = (r, Instant::now());
            p(out, &prev.render(None));
            loop {
                std::thread::sleep(Duration::from_secs_f64(secs));
                let r: StatsReport = get(a, &Request::Stats)?;
                let dt = at.elapsed().as_secs_f64();
                if *json {
                    p(out, &(serde_json::to_string(&r).unwrap_or_default() + "\n"));
                } else {
                    p(out, &format!("\n--- every {secs} s ---\n{}", r.render(Some((&prev, dt)))));
                }
                (prev, at) = (r, Instant::now());
            }
        }
        Cmd::Sessions { proto, addr, limit, json } => {
            let l: SessionList = get(a, &Request::Sessions { proto: *proto, addr: *addr, limit: *limit })?;
            if *json {
                p(out, &(serde_json::to_string_pretty(&l).unwrap_or_default() + "\n"));
                return Ok(());
            }
            let mut s = format!(
                "{:<6}{:<42}{:<22}{:<22}{:<14}{:>8}\n",
                "proto", "IPv6 client", "pool4", "IPv4 remote", "state", "expires"
            );
            for x in &l.sessions {
                s += &format!(
                    "{:<6}{:<42}{:<22}{:<22}{:<14}{:>7}s\n",
                    x.proto.label(),
                    x.ipv6.to_string(),
                    x.ipv4.to_string(),
                    x.remote.to_string(),
                    x.state.as_deref().unwrap_or("-"),
                    x.expires_in_secs
                );
            }
            s += &format!("{} session(s)", l.matching);
            if l.matching > l.sessions.len() {
                s += &format!(", {} listed (--limit)", l.sessions.len());
            }
            p(out, &(s + "\n"));
            Ok(())
        }
        Cmd::Bib { action: Some(BibCmd::Add { proto, ipv6, ipv4 }), .. } => {
            let m: String = get(a, &Request::BibAdd(StaticBib { proto: *proto, ipv6: *ipv6, ipv4: *ipv4 }))?;
            p(out, &format!("{m}: {} {ipv6} <-> {ipv4}\n", proto.label()));
            Ok(())
        }
        Cmd::Bib { action: Some(BibCmd::Remove { proto, ipv6 }), .. } => {
            let m: String = get(a, &Request::BibRemove { proto: *proto, ipv6: *ipv6 })?;
            p(out, &format!("{m}: {} {ipv6}\n", proto.label()));
            Ok(())
        }
        Cmd::Bib { action: None, proto, addr, limit, json } => {
            let list: BibList = get(a, &Request::Bib { proto: *proto, addr: *addr, limit: *limit })?;
            if *json {
                p(out, &(serde_json::to_string_pretty(&list).unwrap_or_default() + "\n"));
                return Ok(());
            }
            let l = &list.bibs;
            let mut s = format!("{:<6}{:<42}{:<22}{:<8}{:>9}\n", "proto", "IPv6", "IPv4", "kind", "sessions");
            for b in l {
                s += &format!(
                    "{:<6}{:<42}{:<22}{:<8}{:>9}\n",
                    b.proto.label(),
                    b.ipv6.to_string(),
                    b.ipv4.to_string(),
                    if b.is_static { "static" } else { "dynamic" },
                    b.sessions
                );
            }
            s += &format!("{} entr{}", list.matching, if list.matching == 1 { "y" } else { "ies" });
            if list.matching > l.len() {
                s += &format!(", {} listed (--limit)", l.len());
            }
            s += "\n";
            p(out, &s);
            Ok(())
        }
        Cmd::Config => {
            let v: serde_json::Value = get(a, &Request::Config)?;
            let file = v.get("file").and_then(|f| f.as_str()).unwrap_or("(none: flags and defaults only)");
            p(
                out,
                &format!(
                    "# configuration in force; file: {file}\n{}",
                    v.get("toml").and_then(|t| t.as_str()).unwrap_or("")
                ),
            );
            Ok(())
        }
        Cmd::Reload => {
            let m: String = get(a, &Request::Reload)?;
            p(out, &(m + "\n"));
            Ok(())
        }
    }
}
