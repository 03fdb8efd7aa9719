//! nat64d: the NAT64 gateway daemon. Wiring only: flags → configuration,
//! the TUN device and its routes, one worker on the shared NAT.

use clap::Parser;
use nat64d::dataplane::{tun::Tun, worker};
use nat64d::nat::{Nat, NatConfig, Proto};
use nat64d::{Prefix6052, XlatConfig};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::process::{Command, ExitCode};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// NAT64 gateway: RFC 6146 stateful NAT64 with RFC 7915 translation over a TUN device.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// RFC 6052 prefix IPv4 hosts are reached under (pool6).
    #[arg(long, default_value = "64:ff9b::/96")]
    pool6: Prefix6052,
    /// IPv4 addresses to translate to (pool4): ADDRESS or PREFIX/LEN (at most /16); repeat for more.
    #[arg(long, required = true)]
    pool4: Vec<String>,
    /// TUN device to create or attach to.
    #[arg(long, default_value = "nat64")]
    tun: String,
    /// MTU of the TUN device, used as the next-hop MTU on both sides.
    #[arg(long, default_value_t = 1500)]
    mtu: u16,
    /// Do not configure the device's link state and routes (the operator does).
    #[arg(long)]
    no_setup: bool,
    /// Allow non-global IPv4 addresses under 64:ff9b::/96 (labs only; RFC 6052 3.1).
    #[arg(long)]
    allow_non_global: bool,
    /// Static BIB entry PROTO,[IPV6]:PORT,IPV4:PORT (e.g. tcp,[2001:db8::80]:80,203.0.113.1:8080):
    /// the IPv6 server is reachable from IPv4 at the pool4 address and port. Repeatable.
    #[arg(long = "bib", value_name = "ENTRY")]
    bibs: Vec<String>,
    /// NAT table shards (locks); each owns the pool4 ports of its 64-port blocks.
    #[arg(long, default_value_t = 16)]
    shards: usize,
}

fn pool4_addrs(items: &[String]) -> Result<Vec<Ipv4Addr>, String> {
    let mut out = vec![];
    for it in items {
        let (a, len) = match it.split_once('/') {
            Some((a, l)) => (a, l.parse::<u8>().map_err(|_| format!("--pool4 {it}: bad prefix length"))?),
            None => (it.as_str(), 32),
        };
        let a: Ipv4Addr = a.parse().map_err(|_| format!("--pool4 {it}: not an IPv4 address"))?;
        if !(16..=32).contains(&len) {
            return Err(format!("--pool4 {it}: prefix length must be 16 to 32"));
        }
        let base = u32::from(a) & (u32::MAX.checked_shl(32 - len as u32).unwrap_or(0));
        out.extend((0..(1u32 << (32 - len))).map(|i| Ipv4Addr::from(base + i)));
    }
    Ok(out)
}

type StaticBib = (Proto, (Ipv6Addr, u16), (Ipv4Addr, u16));

/// Parse `--bib PROTO,[IPV6]:PORT,IPV4:PORT`.
fn static_bib(s: &str) -> Result<StaticBib, String> {
    let bad = |why: &str| format!("--bib {s}: {why} (expected PROTO,[IPV6]:PORT,IPV4:PORT)");
    let mut f = s.split(',');
    let (Some(p), Some(a6), Some(a4), None) = (f.next(), f.next(), f.next(), f.next()) else {
        return Err(bad("three comma-separated parts needed"));
    };
    let proto = match p.trim().to_ascii_lowercase().as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "icmp" => Proto::Icmp,
        _ => return Err(bad("protocol must be tcp, udp or icmp")),
    };
    let v6: SocketAddrV6 = a6.trim().parse().map_err(|_| bad("not [IPV6]:PORT"))?;
    let v4: SocketAddrV4 = a4.trim().parse().map_err(|_| bad("not IPV4:PORT"))?;
    Ok((proto, (*v6.ip(), v6.port()), (*v4.ip(), v4.port())))
}

fn ip(args: &[&str]) -> Result<(), String> {
    let st = Command::new("ip").args(args).status().map_err(|e| format!("cannot run 'ip {}': {e}", args.join(" ")))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("'ip {}' failed ({st})", args.join(" ")))
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    let pool4 = match pool4_addrs(&a.pool4) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("nat64d: {e}");
            return ExitCode::from(2);
        }
    };
    let bibs: Vec<StaticBib> = match a.bibs.iter().map(|b| static_bib(b)).collect() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("nat64d: {e}");
            return ExitCode::from(2);
        }
    };
    let tun = match Tun::open(&a.tun) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("nat64d: cannot open TUN device '{}': {e} (root or CAP_NET_ADMIN needed)", a.tun);
            return ExitCode::from(1);
        }
    };
    if !a.no_setup {
        // No link-local address on the TUN device, so the kernel sends no MLD or
        // router solicitations into it; best effort (older kernels lack the knob).
        let _ = ip(&["link", "set", "dev", tun.name(), "addrgenmode", "none"]);
        let (mtu, pool6) = (a.mtu.to_string(), a.pool6.to_string());
        let mut steps = vec![
            vec!["link", "set", "dev", tun.name(), "mtu", &mtu, "up"],
            vec!["-6", "route", "replace", &pool6, "dev", tun.name()],
        ];
        for p in &a.pool4 {
            steps.push(vec!["-4", "route", "replace", p, "dev", tun.name()]);
        }
        for step in &steps {
            if let Err(e) = ip(step) {
                eprintln!("nat64d: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let mut cfg = NatConfig::new(a.pool6, &pool4);
    cfg.allow_non_global = a.allow_non_global;
    let nat = Nat::new(cfg, a.shards);
    for (i, &(proto, v6, v4)) in bibs.iter().enumerate() {
        if let Err(e) = nat.add_static(proto, v6, v4) {
            eprintln!("nat64d: --bib {}: {e}", a.bibs[i]);
            return ExitCode::from(2);
        }
    }
    let xcfg = XlatConfig { ipv6_mtu: a.mtu.max(1280), ipv4_mtu: a.mtu, ..XlatConfig::default() };
    eprintln!("nat64d: translating {} <-> {} address(es) of pool4 on {}", a.pool6, pool4.len(), tun.name());
    // SIGTERM / SIGINT: the worker sees the flag within its poll interval and stops cleanly.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("nat64d: cannot handle signal {sig}: {e}");
            return ExitCode::from(1);
        }
    }
    match worker::run(&tun, &nat, xcfg, &stop) {
        Ok(w) => {
            let stats = &w.xlat;
            let (o, i) = (&stats.out_6to4, &stats.in_4to6);
            let drops: u64 = stats.drops.iter().sum();
            eprintln!(
                "nat64d: stopped: {} packets IPv6->IPv4, {} IPv4->IPv6, {} dropped, {} ICMP errors sent, {} lost writing to the TUN device, {} sessions left",
                o.packets.iter().sum::<u64>(),
                i.packets.iter().sum::<u64>(),
                drops,
                stats.icmp_errors_sent,
                w.tun_write_errors,
                nat.session_count()
            );
            for r in nat64d::DropReason::ALL {
                if stats.dropped(*r) > 0 {
                    eprintln!("nat64d:   dropped {}: {}", r.label(), stats.dropped(*r));
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nat64d: {} failed: {e}", tun.name());
            ExitCode::from(1)
        }
    }
}
