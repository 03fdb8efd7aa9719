//! Several gateways behind ECMP (issue 16), end to end: the recipe in
//! deploy/ecmp run by scripts/ecmp_lab.sh: one IPv6 client namespace with 32
//! host addresses in 8 /64s, a router running BIRD that learns pool6 from
//! three gateways by BGP and spreads IPv6 by source address over them, three
//! gateways each running nat64d (under a stand-in for systemd's watchdog)
//! and BIRD, one IPv4 server. Needs root and BIRD 2; without them the test
//! says it is skipped, unless NAT64D_REQUIRE_ROOT_TESTS / NAT64D_REQUIRE_PEERS
//! (CI) make that a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ecmp_lab.sh");
const TOOLS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lab_tools.py");
const SERVER6: &str = "2001:db8:64::c633:6402";
/// deploy/ecmp: BGP hold time, BFD's detection time (3 x 100 ms) with
/// room for a loaded machine, and the watchdog of nat64d-ecmp.conf.
const HOLD: Duration = Duration::from_secs(3);
const BFD: Duration = Duration::from_millis(1500);
const WATCHDOG: Duration = Duration::from_secs(3);

struct EcmpLab {
    prefix: String,
}

fn run(cmd: &str, args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let out = Command::new(cmd).args(args).envs(env.iter().copied()).output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl EcmpLab {
    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("ECMP_LAB", self.prefix.as_str()),
            ("NAT64D", env!("CARGO_BIN_EXE_nat64d")),
            ("NAT64CTL", env!("CARGO_BIN_EXE_nat64ctl")),
        ]
    }

    fn script(&self, args: &[&str]) -> Result<String, String> {
        run("bash", &[&[SCRIPT], args].concat(), &self.env())
    }

    fn up() -> EcmpLab {
        let lab = EcmpLab { prefix: format!("e{}", std::process::id() % 100_000) };
        lab.script(&["up"]).expect("scripts/ecmp_lab.sh up");
        lab
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// A lab tool in namespace `ns` (client, server, router, gw1...).
    fn tool(&self, ns: &str, args: &[&str]) -> Result<String, String> {
        let n = self.ns(ns);
        run("ip", &[&["netns", "exec", n.as_str(), "python3", TOOLS], args].concat(), &[])
    }

    fn spawn_tool(&self, ns: &str, args: &[&str]) -> std::thread::JoinHandle<Result<String, String>> {
        let n = self.ns(ns);
        let a: Vec<String> =
            [&["netns", "exec", n.as_str(), "python3", TOOLS], args].concat().iter().map(|s| s.to_string()).collect();
        std::thread::spawn(move || run("ip", &a.iter().map(String::as_str).collect::<Vec<_>>(), &[]))
    }

    /// The gateways the router's route to pool6 goes through now (1, 2, 3):
    /// the members of the resilient group (deploy/ecmp/resilient-ecmp.sh).
    fn paths(&self) -> BTreeSet<u32> {
        let out = self.script(&["paths"]).unwrap_or_default();
        out.split_whitespace().filter_map(|w| w.parse().ok()).collect()
    }

    /// How long until the router's set of gateways is `want` (None: not within `secs`).
    fn time_until_paths(&self, want: &[u32], secs: u64) -> Option<Duration> {
        let want: BTreeSet<u32> = want.iter().copied().collect();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            if self.paths() == want {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn stats(&self, gw: u32) -> serde_json::Value {
        let sock = format!("/run/nat64d-{}/gw{gw}.sock", self.prefix);
        let out = run(env!("CARGO_BIN_EXE_nat64ctl"), &["--socket", &sock, "stats", "--json"], &[])
            .expect("nat64ctl stats --json");
        serde_json::from_str(&out).expect("stats JSON")
    }

    /// `flows` UDP flows from each of `sources` to the server's whoami:
    /// per source, the IPv4 addresses the server saw it from.
    fn udp_flows(&self, sources: &[String], flows: usize) -> BTreeMap<String, Vec<String>> {
        let server = self.spawn_tool("server", &["udp-whoami", "198.51.100.2", "7777", "--timeout", "3"]);
        std::thread::sleep(Duration::from_millis(300));
        let joined = sources.join(",");
        let out = self
            .tool("client", &["udp-many", SERVER6, "7777", "--sources", &joined, "--flows", &flows.to_string()])
            .expect("udp-many");
        server.join().unwrap().expect("udp-whoami");
        out.lines()
            .map(|l| {
                let mut w = l.split_whitespace();
                let src = w.next().unwrap().to_string();
                let seen = w.map(|a| a.rsplit_once(':').map_or(a, |(ip, _)| ip).to_string()).collect();
                (src, seen)
            })
            .collect()
    }
}

impl Drop for EcmpLab {
    fn drop(&mut self) {
        let _ = self.script(&["down"]);
    }
}

/// The gateway whose pool4 slice holds `v4` (deploy/ecmp/gatewayN.toml:
/// 203.0.113.0/28, .16/28, .32/28).
fn owner(v4: &str) -> u32 {
    let last: u32 = v4.rsplit('.').next().and_then(|o| o.parse().ok()).expect("an IPv4 address");
    assert!(v4.starts_with("203.0.113.") && last < 48, "{v4} is in no gateway's pool4 slice");
    last / 16 + 1
}

/// Each source's one IPv4 address, and the gateway it came through;
/// panics when a flow went unanswered or a host's flows left from two
/// addresses (RFC 4787 REQ-1/REQ-2 per host, which source-address hashing
/// is there to keep without shared state).
fn one_address_per_host(seen: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, (String, u32)> {
    seen.iter()
        .map(|(src, v)| {
            assert!(!v.iter().any(|a| a == "-"), "{src}: a flow got no answer: {v:?}");
            let set: BTreeSet<&String> = v.iter().collect();
            assert_eq!(set.len(), 1, "{src}: its flows left from several IPv4 addresses: {v:?}");
            (src.clone(), (v[0].clone(), owner(&v[0])))
        })
        .collect()
}

fn possible() -> bool {
    let root = run("id", &["-u"], &[]).is_ok_and(|o| o.trim() == "0");
    if !root {
        assert!(
            std::env::var_os("NAT64D_REQUIRE_ROOT_TESTS").is_none(),
            "NAT64D_REQUIRE_ROOT_TESTS is set but not root"
        );
        eprintln!("lab_ecmp: SKIPPED: needs root (network namespaces, TUN devices)");
        return false;
    }
    if run("bird", &["--version"], &[]).is_err() {
        assert!(std::env::var_os("NAT64D_REQUIRE_PEERS").is_none(), "NAT64D_REQUIRE_PEERS is set but BIRD is missing");
        eprintln!("lab_ecmp: SKIPPED: needs BIRD 2 (apt-get install bird2)");
        return false;
    }
    true
}

#[test]
fn lab_three_gateways_behind_ecmp() {
    if !possible() {
        return;
    }
    let lab = EcmpLab::up();
    assert_eq!(lab.paths(), BTreeSet::from([1, 2, 3]), "the router has a path through each gateway");
    let sources: Vec<String> =
        lab.script(&["sources"]).expect("sources").trim().split(',').map(str::to_string).collect();
    assert_eq!(sources.len(), 32);

    // Spread: the router's source-address hash sends every host to one
    // gateway, and all gateways get some (32 hosts: the chance that one
    // gets none is 3 * (2/3)^32, below 1e-5).
    let first = one_address_per_host(&lab.udp_flows(&sources, 4));
    let mut hosts_per_gw = BTreeMap::new();
    for (_, gw) in first.values() {
        *hosts_per_gw.entry(*gw).or_insert(0u64) += 1;
    }
    eprintln!("hosts per gateway: {hosts_per_gw:?}");
    for gw in 1..=3 {
        let s = lab.stats(gw);
        let sessions = s["sessions"]["udp"].as_u64().unwrap();
        // nat64ctl stats, per gateway: exactly its hosts' flows.
        assert_eq!(sessions, 4 * hosts_per_gw.get(&gw).copied().unwrap_or(0), "gateway {gw}'s UDP sessions");
        assert!(sessions > 0, "gateway {gw} got no flows: {hosts_per_gw:?}");
    }

    let on = |gw: u32| -> Vec<String> { first.iter().filter(|(_, (_, g))| *g == gw).map(|(s, _)| s.clone()).collect() };
    // The victim is gateway 1, first in the group: under hash-threshold
    // (a plain multipath route) its leaving would shift gateway 2's hash
    // range too and move about half of gateway 2's hosts to gateway 3; the
    // resilient group gives away gateway 1's buckets only.
    let (victims, others): (Vec<String>, Vec<String>) = (on(1), [on(2), on(3)].concat());

    // Transfers through the two gateways that stay: 4 s each, paced.
    let mut transfers = vec![];
    for (i, gw) in [2u32, 3].iter().enumerate() {
        let port = (9001 + i).to_string();
        let src = on(*gw)[0].clone();
        let sink = lab.spawn_tool("server", &["tcp-sink", "198.51.100.2", &port, "--timeout", "20"]);
        std::thread::sleep(Duration::from_millis(300));
        let up = lab.spawn_tool(
            "client",
            &["tcp-upload", SERVER6, &port, "--bind", &src, "--seed", "16", "--size", "4000000", "--chunks", "40"]
                .iter()
                .copied()
                .chain(["--pause", "0.1", "--timeout", "20"])
                .collect::<Vec<_>>(),
        );
        transfers.push((gw, sink, up));
    }
    std::thread::sleep(Duration::from_millis(800));

    // kill -9 of gateway 1's nat64d: the kernel takes its TUN device and the
    // routes into it, BIRD withdraws them, the router drops the path.
    lab.script(&["gw-signal", "1", "KILL"]).unwrap();
    let t = lab.time_until_paths(&[2, 3], 10).expect("gateway 1 left the ECMP set after kill -9 of its nat64d");
    eprintln!("kill -9 nat64d: out of the ECMP set in {t:?}");
    assert!(t < HOLD, "withdrawn in {t:?}, not within the hold time {HOLD:?}");

    // Its hosts' new flows go through the others, one address per host.
    let moved = one_address_per_host(&lab.udp_flows(&victims, 2));
    assert!(moved.values().all(|(_, gw)| *gw != 1), "flows still reach gateway 1: {moved:?}");
    // The other hosts keep their gateway and their address (their mappings
    // were never touched): endpoint-independent mapping still holds.
    let again = one_address_per_host(&lab.udp_flows(&others, 2));
    let changed: Vec<_> = again.iter().filter(|(src, got)| *got != &first[*src]).collect();
    eprintln!("{} of the {} hosts of gateways 2 and 3 changed gateway", changed.len(), others.len());
    assert!(changed.is_empty(), "hosts changed address or gateway while another gateway died: {changed:?}");
    // And the transfers through the other gateways finish, whole.
    for (gw, sink, up) in transfers {
        let sent = up.join().unwrap().unwrap_or_else(|e| panic!("upload through gateway {gw}: {e}"));
        let got = sink.join().unwrap().unwrap_or_else(|e| panic!("sink for gateway {gw}: {e}"));
        assert_eq!(sent.trim(), got.trim(), "the transfer through gateway {gw} arrived whole");
    }

    // Restarted, gateway 1 is back in the set and takes buckets that have
    // been idle for the lab's idle timer (2 s): the lab's hosts are idle
    // for longer than that first, so some of them reach it again, each
    // still from one address.
    std::thread::sleep(Duration::from_secs(3));
    let start = Instant::now();
    lab.script(&["gw-start", "1"]).unwrap();
    lab.time_until_paths(&[1, 2, 3], 15).expect("gateway 1 back in the ECMP set after its restart");
    eprintln!("restart: back in the ECMP set in {:?}", start.elapsed());
    std::thread::sleep(Duration::from_secs(3));
    let back = one_address_per_host(&lab.udp_flows(&sources, 1));
    let n = back.values().filter(|(_, gw)| *gw == 1).count();
    eprintln!("after the restart, {n} of 32 hosts through gateway 1");
    assert!(n > 0, "no host reaches gateway 1 after its restart: {back:?}");

    // A hung nat64d (SIGSTOP: its device and routes stay): the watchdog
    // kills it when the pings stop, and the withdrawal follows.
    lab.script(&["gw-signal", "3", "STOP"]).unwrap();
    let t = lab.time_until_paths(&[1, 2], 10).expect("a hung nat64d left the ECMP set");
    eprintln!("hung nat64d (SIGSTOP): out of the ECMP set in {t:?}");
    assert!(t <= WATCHDOG + Duration::from_secs(1), "withdrawn in {t:?}, watchdog {WATCHDOG:?}");
    lab.script(&["gw-start", "3"]).unwrap();
    lab.time_until_paths(&[1, 2, 3], 15).expect("gateway 3 back after its restart");

    // A gateway that goes silent as a whole (its BIRD frozen: no withdrawal,
    // no keepalives, no BFD): BFD tells the router within 0.3 s (the hold
    // time, 3 s, would be the fallback).
    lab.script(&["gw-signal", "2", "STOP", "bird"]).unwrap();
    let t = lab.time_until_paths(&[1, 3], 10).expect("a silent gateway left the ECMP set");
    eprintln!("silent gateway (BIRD frozen): out of the ECMP set in {t:?}");
    assert!(t <= BFD, "dropped in {t:?}, not within BFD's time {BFD:?}");
    lab.script(&["gw-signal", "2", "CONT", "bird"]).unwrap();
    lab.time_until_paths(&[1, 2, 3], 15).expect("gateway 2 back once its BIRD runs again");
}
