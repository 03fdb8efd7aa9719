//! nat64ctl: ask a running nat64d for its counters, sessions and BIB, change
//! static BIB entries, show the configuration, reload it.
//! Exit status: 0 done, 1 the daemon refused or cannot be reached, 2 usage.

use clap::Parser;
use nat64d::addr::Net6;
use nat64d::cli::{BibCmd, Cmd, CtlArgs as Args};
use nat64d::config::{Config, Overrides, StaticBib};
use nat64d::daemon::control::{call, BibList, Request, SessionList, WhoLine};
use nat64d::daemon::relay::ProxyList;
use nat64d::daemon::report::StatsReport;
use nat64d::maplog::{parse_rfc3339, read_logs, rfc3339};
use nat64d::nat::Proto;
use std::io::Write;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

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
        Cmd::Who { target, proto, at, log, config, json } => {
            let lines = who(a, target, *proto, at.as_deref(), log, config.as_deref())?;
            if *json {
                p(out, &(serde_json::to_string_pretty(&lines).unwrap_or_default() + "\n"));
            } else {
                let mut s = String::new();
                for WhoOut { line: l, note } in &lines {
                    s += &format!(
                        "{:<5} {}:{}-{}  {}  {}{}\n",
                        l.proto.label(),
                        l.pool4,
                        l.port_lo,
                        l.port_hi,
                        l.subscriber,
                        l.kind,
                        note.as_deref().map(|n| format!("  {n}")).unwrap_or_default()
                    );
                }
                p(out, &s);
            }
            if lines.is_empty() {
                return Err(format!(
                    "nobody held {target}{}",
                    at.as_deref().map(|t| format!(" at {t}")).unwrap_or_default()
                ));
            }
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
        Cmd::Proxy { limit, json } => {
            let l: ProxyList = get(a, &Request::Proxy { limit: *limit })?;
            if *json {
                p(out, &(serde_json::to_string_pretty(&l).unwrap_or_default() + "\n"));
                return Ok(());
            }
            let mut s = format!(
                "{:<24}{:<24}{:<28}{:<44}{:>8}{:>8}{:>14}{:>14}\n",
                "client", "listen", "site", "backend", "age s", "idle s", "bytes in", "bytes out"
            );
            for c in &l.connections {
                let site = c.site.as_deref().unwrap_or("(naming)");
                let backend = c.backend.map_or("-".to_string(), |b| b.to_string());
                s += &format!(
                    "{:<24}{:<24}{:<28}{:<44}{:>8}{:>8}{:>14}{:>14}\n",
                    c.client.to_string(),
                    c.listen.to_string(),
                    site,
                    backend,
                    c.age_secs,
                    c.idle_secs,
                    c.bytes_to_backend,
                    c.bytes_to_client
                );
            }
            if l.active > l.connections.len() {
                s +=
                    &format!("({} of {} open connections listed; --limit lists more)\n", l.connections.len(), l.active);
            }
            p(out, &s);
            Ok(())
        }
        Cmd::Sync { action, json } => {
            use nat64d::cli::SyncCmd;
            use nat64d::daemon::control::SyncAction;
            let action = match action {
                Some(SyncCmd::Promote) => Some(SyncAction::Promote),
                Some(SyncCmd::Demote) => Some(SyncAction::Demote),
                Some(SyncCmd::Status) | None => None,
            };
            if action.is_some() {
                let m: String = get(a, &Request::Sync { action })?;
                p(out, &(m + "\n"));
                return Ok(());
            }
            let r: nat64d::daemon::sync::SyncReport = get(a, &Request::Sync { action: None })?;
            if *json {
                p(out, &(serde_json::to_string_pretty(&r).unwrap_or_default() + "\n"));
            } else {
                p(out, &r.render());
            }
            Ok(())
        }
        Cmd::Snapshot => {
            let m: String = get(a, &Request::Snapshot)?;
            p(out, &(m + "\n"));
            Ok(())
        }
        Cmd::Reload => {
            let m: String = get(a, &Request::Reload)?;
            p(out, &(m + "\n"));
            Ok(())
        }
    }
}

/// One answer of `who`: the holding, and when it was held.
#[derive(Debug, serde::Serialize)]
struct WhoOut {
    #[serde(flatten)]
    line: WhoLine,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

enum Target {
    Port(SocketAddrV4),
    Subscriber(Net6),
}

fn parse_target(t: &str) -> Result<Target, String> {
    if let Ok(sa) = t.parse::<SocketAddrV4>() {
        return Ok(Target::Port(sa));
    }
    if t.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(format!("'{t}': give the port too (203.0.113.5:40123): one address is shared by many subscribers"));
    }
    if let Ok(a) = t.parse::<std::net::Ipv6Addr>() {
        return Ok(Target::Subscriber(Net6 { addr: a, len: 128 }));
    }
    t.parse::<Net6>().map(Target::Subscriber).map_err(|_| {
        format!("'{t}' is neither a pool4 address and port (203.0.113.5:40123) nor an IPv6 address or prefix")
    })
}

fn who(
    a: &Args,
    target: &str,
    proto: Option<Proto>,
    at: Option<&str>,
    logs: &[PathBuf],
    config: Option<&std::path::Path>,
) -> Result<Vec<WhoOut>, String> {
    let target = parse_target(target)?;
    let at_ms = match at {
        Some(t) => Some(parse_rfc3339(t)?),
        None => None,
    };
    if !logs.is_empty() {
        let h = read_logs(logs)?;
        let (Some(first), Some(last)) = (h.first_ms, h.last_ms) else {
            return Err("unknown: the logs hold no records".into());
        };
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let t = at_ms.unwrap_or(now);
        if t < first {
            return Err(format!("unknown: {} lies before the oldest record read ({})", rfc3339(t), rfc3339(first)));
        }
        let found = match &target {
            Target::Port(sa) => h.who(*sa.ip(), sa.port(), proto, t),
            Target::Subscriber(net) => {
                h.of_subscriber(*net, t).into_iter().filter(|x| proto.is_none_or(|p| p == x.proto)).collect()
            }
        };
        let tail = if t > last { format!(" (the logs end at {}; held then)", rfc3339(last)) } else { String::new() };
        return Ok(found
            .into_iter()
            .map(|x| WhoOut {
                line: WhoLine {
                    kind: if x.ipv6.is_some() { "bib".into() } else { "block".into() },
                    proto: x.proto,
                    subscriber: x.subscriber.clone(),
                    ipv6: x.ipv6,
                    pool4: x.pool4,
                    port_lo: x.port_lo,
                    port_hi: x.port_hi,
                },
                note: Some(format!(
                    "from {} until {}{tail}",
                    x.from,
                    x.until.as_deref().unwrap_or("(no release logged)")
                )),
            })
            .collect());
    }
    if let Some(path) = config {
        let cfg = Config::load(Some(path), &Overrides::default()).map_err(|e| e.to_string())?;
        let maps = cfg.deterministic();
        if maps.is_empty() {
            return Err(format!(
                "{} does not use nat.ports.mode = \"deterministic\": give --log FILE, or ask the running daemon",
                path.display()
            ));
        }
        let ports = cfg.nat.ports;
        let protos: Vec<Proto> = Proto::ALL.into_iter().filter(|p| proto.is_none_or(|x| x == *p)).collect();
        let note = Some("deterministic: whenever this configuration was in force".to_string());
        let mut out = vec![];
        for m in &maps {
            let hit = match &target {
                Target::Port(sa) => m.who(*sa.ip(), sa.port()).map(|sub| (sub, *sa.ip(), ports.block_of(sa.port()))),
                Target::Subscriber(net) => m.map(net.addr).map(|(v4, b)| (ports.subscriber_of(net.addr), v4, b)),
            };
            if let Some((sub, v4, b)) = hit {
                let (lo, hi) = ports.block_range(b);
                for p in &protos {
                    out.push(WhoOut {
                        line: WhoLine {
                            kind: "deterministic".into(),
                            proto: *p,
                            subscriber: sub.to_string(),
                            ipv6: None,
                            pool4: v4,
                            port_lo: lo,
                            port_hi: hi,
                        },
                        note: note.clone(),
                    });
                }
            }
        }
        return Ok(out);
    }
    if at.is_some() {
        return Err("--at asks about the past: give --log FILE (or --config FILE for a deterministic mapping)".into());
    }
    let (addr, port) = match &target {
        Target::Port(sa) => (std::net::IpAddr::V4(*sa.ip()), Some(sa.port())),
        Target::Subscriber(net) => (std::net::IpAddr::V6(net.addr), None),
    };
    let lines: Vec<WhoLine> = get(a, &Request::Who { addr, port, proto })?;
    Ok(lines.into_iter().map(|line| WhoOut { line, note: Some("now".into()) }).collect())
}
