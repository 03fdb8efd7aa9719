//! End to end through the real daemon: an IPv6-only client namespace, a
//! gateway namespace running `nat64d` on a TUN device, an IPv4-only server
//! namespace (documentation addresses only). Needs root; without it the test
//! says it is skipped and why, unless NAT64D_REQUIRE_ROOT_TESTS is set (CI),
//! where that is a failure.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER6: &str = "2001:db8:64::c000:202";

struct Lab {
    ns: [String; 3],
    daemon: Option<Child>,
    /// Configuration file and control socket.
    dir: Option<std::path::PathBuf>,
    /// Stands in for systemd's notify socket.
    notify: Option<std::os::unix::net::UnixDatagram>,
    /// TUN offloads on in this lab's daemon.
    offload: bool,
    /// Batched I/O through io_uring in this lab's daemon.
    io_uring: bool,
    /// The AF_XDP dataplane (issue 20) instead of TUN.
    xdp: bool,
    id: u32,
}

/// The lab's configuration in the AF_XDP dataplane: the same file with
/// `dataplane = "xdp"` and the gateway's two veths as its interfaces.
fn xdp_config(text: String, id: u32) -> String {
    text.replacen(
        "\n[tun]\n",
        &format!("\ndataplane = \"xdp\"\n[xdp]\nipv6_interface = \"g{id}a\"\nipv4_interface = \"g{id}b\"\n\n[tun]\n"),
        1,
    )
}

/// The daemon's configuration file; `extra` is appended (a reload test changes it).
fn lab_config(dir: &std::path::Path, offload: bool, io_uring: bool, extra: &str) -> String {
    format!(
        r#"# nat64d end-to-end lab
pool6 = "2001:db8:64::/96"
pool4 = ["203.0.113.0/28", {{ net = "203.0.113.16/30", udp = "20000-20099", clients = "2001:db8:1::11/128" }}]

[tun]
name = "nat64"
queues = 2
offload = {offload}
io_uring = {io_uring}

[nat.timeouts]
icmp = 2

[control]
socket = "{}/control.sock"

[dns64]
enabled = true
listen = ["[2001:db8:1::1]:53"]
upstream = ["192.0.2.2:53"]
allow = ["2001:db8:1::/64"]
timeout_ms = 1500

[[static_bib]]
proto = "tcp"
ipv6 = "[2001:db8:1::10]:8080"
ipv4 = "203.0.113.1:8080"
{extra}"#,
        dir.display()
    )
}

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{cmd} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
    }
}

impl Lab {
    /// This lab's configuration file with `extra` appended.
    fn config_text(&self, extra: &str) -> String {
        let dir = self.dir.as_ref().expect("lab dir");
        let t = lab_config(dir, self.offload, self.io_uring, extra);
        if self.xdp {
            xdp_config(t, self.id)
        } else {
            t
        }
    }

    fn socket(&self) -> String {
        self.dir.as_ref().expect("lab dir").join("control.sock").display().to_string()
    }

    /// Run nat64ctl against the lab's daemon.
    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut a = vec!["--socket".to_string(), self.socket()];
        a.extend(args.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        run(env!("CARGO_BIN_EXE_nat64ctl"), &a)
    }

    /// sd_notify messages received so far, waiting up to `secs` for one containing `want`.
    fn notified(&self, want: &str, secs: u64) -> Vec<String> {
        let sock = self.notify.as_ref().expect("notify socket");
        let mut got = vec![];
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            while let Ok(n) = sock.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            if got.iter().any(|m| m.contains(want)) || start.elapsed() > Duration::from_secs(secs) {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.ctl(&["stats", "--json"]).expect("nat64ctl stats --json")).expect("stats JSON")
    }

    fn ip(&self, args: &[&str]) {
        run("ip", args).unwrap();
    }

    fn exec(&self, ns: usize, args: &[&str]) -> Result<String, String> {
        let mut a = vec!["netns", "exec", self.ns[ns].as_str()];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    fn up(offload: bool, io_uring: bool) -> Lab {
        let slot = offload as u32 + 2 * io_uring as u32;
        Lab::up_with(offload, io_uring, slot, false, &|dir| lab_config(dir, offload, io_uring, ""))
    }

    /// A lab whose daemon runs `config(dir)`; `slot` (0-9) keeps the names
    /// of labs running at once apart. `bare`: the TUN device is made
    /// persistent beforehand (so it outlives the daemon, and with it any
    /// route the daemon failed to take away), and the daemon runs with no
    /// `ip` binary on its PATH (issue 17: netlink, not `ip`).
    fn up_with(
        offload: bool,
        io_uring: bool,
        slot: u32,
        bare: bool,
        config_text: &dyn Fn(&std::path::Path) -> String,
    ) -> Lab {
        Lab::up_inner(offload, io_uring, slot, bare, false, config_text)
    }

    /// The lab on the AF_XDP dataplane: the gateway's veths have two queues
    /// (two workers), and the client and server send complete checksums
    /// (veth hands its peer the local stack's partial ones, which an AF_XDP
    /// socket cannot tell apart; a NIC's frames are always complete).
    fn up_xdp(slot: u32) -> Lab {
        let id = std::process::id() % 10_000 * 10 + slot;
        Lab::up_inner(false, false, slot, false, true, &|dir| xdp_config(lab_config(dir, false, false, ""), id))
    }

    fn up_inner(
        offload: bool,
        io_uring: bool,
        slot: u32,
        bare: bool,
        xdp: bool,
        config_text: &dyn Fn(&std::path::Path) -> String,
    ) -> Lab {
        let id = std::process::id() % 10_000 * 10 + slot;
        let ns = [format!("n64c{id}"), format!("n64g{id}"), format!("n64s{id}")];
        let mut lab = Lab { ns, daemon: None, dir: None, notify: None, offload, io_uring, xdp, id };
        let [c, g, s] = [lab.ns[0].clone(), lab.ns[1].clone(), lab.ns[2].clone()];
        for n in [&c, &g, &s] {
            lab.ip(&["netns", "add", n]);
            lab.ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        let (vc, vg0, vs, vg1) = (format!("c{id}"), format!("g{id}a"), format!("s{id}"), format!("g{id}b"));
        let q: &[&str] = if xdp { &["numtxqueues", "2", "numrxqueues", "2"] } else { &[] };
        for (a, ans, b) in [(&vc, &c, &vg0), (&vs, &s, &vg1)] {
            let mut args = vec!["link", "add", a.as_str(), "netns", ans.as_str()];
            args.extend_from_slice(q);
            args.extend_from_slice(&["type", "veth", "peer", "name", b.as_str(), "netns", g.as_str()]);
            args.extend_from_slice(q);
            lab.ip(&args);
        }
        if xdp {
            lab.exec(0, &["ethtool", "-K", &vc, "tx", "off"]).expect("ethtool (the client's checksums)");
            lab.exec(2, &["ethtool", "-K", &vs, "tx", "off"]).expect("ethtool (the server's checksums)");
        }
        lab.ip(&["-n", &c, "addr", "add", "2001:db8:1::10/64", "dev", &vc, "nodad"]);
        lab.ip(&["-n", &c, "addr", "add", "2001:db8:1::11/64", "dev", &vc, "nodad"]);
        lab.ip(&["-n", &c, "link", "set", &vc, "up"]);
        lab.ip(&["-n", &c, "-6", "route", "add", "default", "via", "2001:db8:1::1"]);
        lab.ip(&["-n", &g, "addr", "add", "2001:db8:1::1/64", "dev", &vg0, "nodad"]);
        lab.ip(&["-n", &g, "addr", "add", "192.0.2.1/24", "dev", &vg1]);
        lab.ip(&["-n", &g, "link", "set", &vg0, "up"]);
        lab.ip(&["-n", &g, "link", "set", &vg1, "up"]);
        lab.exec(1, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", "net.ipv4.ip_forward=1"]).unwrap();
        lab.ip(&["-n", &s, "addr", "add", "192.0.2.2/24", "dev", &vs]);
        lab.ip(&["-n", &s, "link", "set", &vs, "up"]);
        lab.ip(&["-n", &s, "route", "add", "203.0.113.0/24", "via", "192.0.2.1"]);
        let dir = std::env::temp_dir().join(format!("nat64d-e2e-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("nat64d.toml");
        std::fs::write(&config, config_text(&dir)).unwrap();
        let notify = std::os::unix::net::UnixDatagram::bind(dir.join("notify.sock")).unwrap();
        notify.set_nonblocking(true).unwrap();
        lab.notify = Some(notify);
        if bare {
            lab.ip(&["-n", &g, "tuntap", "add", "dev", "nat64", "mode", "tun"]);
        }
        lab.dir = Some(dir);
        lab.start_daemon(bare);
        lab
    }
}

impl Lab {
    /// Start nat64d in the gateway namespace on the lab's configuration and
    /// wait until it has its TUN device up; `bare`: no `ip` on its PATH.
    fn start_daemon(&mut self, bare: bool) {
        let dir = self.dir.clone().expect("lab dir");
        let config = dir.join("nat64d.toml");
        let ip_bin = run("sh", &["-c", "command -v ip"]).expect("ip").trim().to_string();
        let mut daemon = Command::new(&ip_bin);
        if bare {
            daemon.env("PATH", "/nonexistent");
        }
        let daemon = daemon
            .args(["netns", "exec", &self.ns[1], env!("CARGO_BIN_EXE_nat64d"), "--config", config.to_str().unwrap()])
            .env("NOTIFY_SOCKET", dir.join("notify.sock"))
            .env("WATCHDOG_USEC", "400000")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nat64d");
        self.daemon = Some(daemon);
        let start = Instant::now();
        if self.xdp {
            while !self.ctl(&["stats"]).is_ok_and(|o| o.contains("AF_XDP")) {
                assert!(start.elapsed() < Duration::from_secs(10), "nat64d did not start on AF_XDP");
                std::thread::sleep(Duration::from_millis(100));
            }
            return;
        }
        while !self.exec(1, &["ip", "link", "show", "nat64"]).is_ok_and(|o| o.contains(",UP")) {
            assert!(start.elapsed() < Duration::from_secs(10), "nat64d did not bring its TUN device up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM the daemon and wait for it (5 s at most): its stderr.
    fn stop_daemon(&mut self) -> String {
        let mut d = self.daemon.take().expect("daemon");
        run("kill", &["-TERM", &d.id().to_string()]).expect("send SIGTERM");
        let start = Instant::now();
        let status = loop {
            if let Some(st) = d.try_wait().expect("wait") {
                break st;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "nat64d did not stop within 5 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut d.stderr.take().expect("stderr"), &mut err).expect("read stderr");
        assert!(status.success(), "exit status {status}; stderr: {err}");
        err
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        for n in &self.ns {
            let _ = run("ip", &["netns", "del", n]);
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The lab's traffic tools (UDP/TCP clients and servers, DNS, raw packets).
const TOOLS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lab_tools.py");

/// `python3 tests/lab_tools.py ARGS...`, to run in a namespace.
fn tool<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![python(), TOOLS];
    v.extend_from_slice(args);
    v
}

/// Run a lab tool in namespace `ns` in the background.
fn spawn_tool(lab: &Lab, ns: usize, args: &[&str]) -> std::thread::JoinHandle<Result<String, String>> {
    let n = lab.ns[ns].clone();
    let mut a: Vec<String> = ["netns", "exec", &n].iter().map(|s| s.to_string()).collect();
    a.extend(tool(args).iter().map(|s| s.to_string()));
    std::thread::spawn(move || run("ip", &a.iter().map(String::as_str).collect::<Vec<_>>()))
}

fn python() -> &'static str {
    if run("python3", &["-c", "pass"]).is_ok() {
        "python3"
    } else {
        "python"
    }
}

/// The two labs run one after the other: each is timing-sensitive and the
/// machine has two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn lab_end_to_end_offloads_on() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    scenario(true, true);
}

// Both TUN modes end to end (issue 6): with offloads off every packet is read
// and written on its own.
#[test]
fn lab_end_to_end_offloads_off() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    scenario(false, true);
}

// Both I/O modes in both TUN modes (issue 6): without io_uring each packet
// costs a read(2) and a write(2).
#[test]
fn lab_end_to_end_offloads_on_plain_io() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    scenario(true, false);
}

#[test]
fn lab_end_to_end_offloads_off_plain_io() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    scenario(false, false);
}

/// True when the lab can run (root); otherwise says why it is skipped, or
/// fails when NAT64D_REQUIRE_ROOT_TESTS asks for the lab.
fn lab_possible() -> bool {
    let is_root = run("id", &["-u"]).is_ok_and(|o| o.trim() == "0");
    if !is_root {
        assert!(
            std::env::var_os("NAT64D_REQUIRE_ROOT_TESTS").is_none(),
            "NAT64D_REQUIRE_ROOT_TESTS is set but this is not root"
        );
        eprintln!("lab_e2e: SKIPPED: needs root (network namespaces and a TUN device); run as root to include it");
    }
    is_root
}

// Issue 20: the same scenarios on the AF_XDP dataplane (native XDP on the
// gateway's veths, copy mode, two queues), beside the TUN ones.
#[test]
fn lab_end_to_end_xdp() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab_possible() {
        return;
    }
    scenario_on(Lab::up_xdp(4));
}

fn scenario(offload: bool, io_uring: bool) {
    if !lab_possible() {
        return;
    }
    scenario_on(Lab::up(offload, io_uring));
}

fn scenario_on(lab: Lab) {
    // sd_notify: READY once translating, then watchdog pings (WATCHDOG_USEC 0.4 s: every 0.2 s).
    let n = lab.notified("READY=1", 5);
    assert!(n.iter().any(|m| m.starts_with("READY=1\nSTATUS=translating 2001:db8:64::/96")), "{n:?}");
    let n = lab.notified("WATCHDOG=1", 3);
    assert!(n.iter().any(|m| m == "WATCHDOG=1"), "watchdog pings while the workers run: {n:?}");

    // ICMPv6 echo → ICMPv4 echo and back (RFC 7915 4.2 / 5.2 with RFC 6146 3.5.3).
    let ping = lab.exec(0, &["ping", "-c", "3", "-W", "3", SERVER6]).expect("ping through NAT64");
    assert!(ping.contains("3 received") || ping.contains(" 0% packet loss"), "{ping}");

    // UDP: the server sees a pool4 source with the client's port kept (RFC 6146 3.5.1.1), and answers.
    let server = spawn_tool(&lab, 2, &["udp-echo", "192.0.2.2", "5353", "--upper", "--report"]);
    std::thread::sleep(Duration::from_millis(500));
    let got = lab
        .exec(
            0,
            &tool(&[
                "udp-ask",
                SERVER6,
                "5353",
                "--bind",
                "2001:db8:1::10",
                "--bport",
                "40123",
                "--payload",
                "hello nat64",
            ]),
        )
        .expect("UDP client");
    assert_eq!(got.trim(), "HELLO NAT64");
    let seen = server.join().unwrap().expect("UDP server");
    let mut f = seen.split_whitespace();
    let (src, port) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
    assert!(src.starts_with("203.0.113."), "source {src} is not a pool4 address");
    assert_eq!(port, "40123", "client port kept");

    // TCP: 6 MiB from the server, byte-exact (hashes equal at both ends).
    let sender = spawn_tool(&lab, 2, &["tcp-serve-data", "192.0.2.2", "8080", "--seed", "64", "--size", "6291456"]);
    std::thread::sleep(Duration::from_millis(800));
    let recv = lab.exec(0, &tool(&["tcp-recv", SERVER6, "8080"])).expect("TCP client");
    let sent = sender.join().unwrap().expect("TCP server");
    assert_eq!(recv.split_whitespace().next(), Some("6291456"), "all bytes arrived");
    assert_eq!(recv.trim(), sent.trim(), "same bytes at both ends");

    // A static BIB entry (RFC 6146 3.1): the IPv4 server reaches the IPv6
    // service at 203.0.113.1:8080; then hairpinning (RFC 6146 3.8): the second
    // IPv6 address reaches the same service through that pool4 address,
    // 2001:db8:64::cb00:7101, seen there from its own pool4 address, embedded.
    let service = spawn_tool(
        &lab,
        0,
        &["tcp-greet", "2001:db8:1::10", "8080", "--count", "2", "--hello-peer", "--timeout", "20"],
    );
    std::thread::sleep(Duration::from_millis(800));
    let from_v4 =
        lab.exec(2, &tool(&["tcp-fetch", "203.0.113.1", "8080"])).expect("IPv4 client through the static BIB entry");
    assert_eq!(from_v4.trim(), format!("hello {SERVER6}"), "the IPv6 service sees the IPv4 client, embedded");
    let hairpin = lab
        .exec(0, &tool(&["tcp-fetch", "2001:db8:64::cb00:7101", "8080", "--bind", "2001:db8:1::11"]))
        .expect("hairpinned IPv6 client");
    assert!(hairpin.trim().starts_with("hello 2001:db8:64::cb00:71"), "seen from a pool4 address, embedded: {hairpin}");
    let peers = service.join().unwrap().expect("IPv6 service");
    assert_eq!(peers.lines().count(), 2, "{peers}");

    counters_sessions_and_expiry(&lab);
    time_exceeded_from_ipv4_side(&lab);
    path_mtu_discovery(&lab);
    reload_keeps_sessions(&lab);
    malformed_packets_are_counted(&lab);
    edges_real_clients_touch(&lab);
    second_daemon_on_the_device_is_refused(&lab);
    dns64_then_nat64(&lab);

    // SIGTERM: a clean stop, exit status 0, with the final counters on stderr.
    let mut lab = lab;
    let mut d = lab.daemon.take().expect("daemon");
    let _ = lab.notified("", 0); // drain: a full notify queue would lose STOPPING=1
    run("kill", &["-TERM", &d.id().to_string()]).expect("send SIGTERM");
    let n = lab.notified("STOPPING=1", 5);
    assert!(n.iter().any(|m| m == "STOPPING=1"), "{n:?}");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = d.try_wait().expect("wait") {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "nat64d did not stop within 5 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut d.stderr.take().expect("stderr"), &mut err).expect("read stderr");
    assert!(status.success(), "exit status {status}; stderr: {err}");
    assert!(err.contains("stopped: "), "final counters on stderr: {err}");
    // Issue 13 item 8: stderr is a pipe here, not a terminal: no ANSI colour codes.
    assert!(!err.contains('\u{1b}'), "escape codes in logs written to a pipe: {err:?}");
    assert!(err.contains("dns64: 5 queries (5 UDP, 0 TCP), 0 from the cache, 3 synthesised, 1 refused"), "{err}");
}

/// The IPv4-only side's DNS server (scripts/lab_dns.py, as in the demo):
/// web.example. A 192.0.2.2, no AAAA; prints each question it gets; stops
/// 6 s after the last.
fn spawn_upstream_dns(lab: &Lab) -> std::thread::JoinHandle<Result<String, String>> {
    let ns = lab.ns[2].clone();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab_dns.py");
    std::thread::spawn(move || {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                python(),
                script,
                "--log",
                "--idle",
                "6",
                "192.0.2.2",
                "web.example=192.0.2.2",
                "alias.example=cname:web.example",
            ],
        )
    })
}

// Issue 5 in the lab: the IPv6-only client asks the gateway's DNS64 server
// (RFC 6147 5.1.5) for a name with only an A record upstream (a DNS server
// on the IPv4-only side), gets the address under pool6, and connects to it
// through the translator. ipv4only.arpa (RFC 8880) gives the prefix.
fn dns64_then_nat64(lab: &Lab) {
    let upstream = spawn_upstream_dns(lab);
    let web = spawn_tool(lab, 2, &["tcp-greet", "192.0.2.2", "8082", "--message", "hello via dns64"]);
    std::thread::sleep(Duration::from_millis(500));
    let got = lab.exec(0, &tool(&["dns-aaaa", "web.example"])).expect("DNS64 query");
    assert_eq!(got.trim(), SERVER6, "synthesised under pool6 from 192.0.2.2");
    let body = lab.exec(0, &tool(&["tcp-fetch", got.trim(), "8082"])).expect("connect to the synthesised address");
    assert_eq!(body.trim(), "hello via dns64");
    let mut v4only: Vec<String> =
        lab.exec(0, &tool(&["dns-aaaa", "ipv4only.arpa"])).expect("ipv4only.arpa").lines().map(String::from).collect();
    v4only.sort();
    assert_eq!(v4only, ["2001:db8:64::c000:aa", "2001:db8:64::c000:ab"]);
    // Issue 13 item 7 (RFC 6147 5.1.5, RFC 1034 3.6.2): the upstream answers
    // alias.example with a bare CNAME (it does not chase); the gateway
    // follows it to web.example and the client gets the synthesised address.
    let alias = lab.exec(0, &tool(&["dns-aaaa", "alias.example"])).expect("DNS64 query through a CNAME");
    assert_eq!(alias.trim(), SERVER6, "synthesised at the end of the chain");
    let _ = web.join();
    let asked = upstream.join().unwrap().expect("upstream DNS server");
    assert_eq!(
        asked.lines().collect::<Vec<_>>(),
        ["web.example 28", "web.example 1", "alias.example 28", "web.example 28", "alias.example 1", "web.example 1"],
        "AAAA, then A (RFC 6147 5.1.6); for the alias each hop asked again"
    );
    let d = &lab.stats()["dns64"];
    assert_eq!((d["synthesized"].as_u64(), d["local"].as_u64()), (Some(2), Some(1)), "{d}");
    assert_eq!(d["chased"].as_u64(), Some(2), "one hop for AAAA, one for A: {d}");

    // A reload changes the DNS64 settings at run time: with the client's
    // network no longer allowed it gets REFUSED (RFC 1035 4.1.1 rcode 5);
    // put back, it is served again (from the emptied cache: synthesised anew).
    let dir = lab.dir.clone().unwrap();
    let config = dir.join("nat64d.toml");
    let base = lab.config_text("");
    let elsewhere = base.replace(r#"allow = ["2001:db8:1::/64"]"#, r#"allow = ["2001:db8:9::/64"]"#);
    assert_ne!(base, elsewhere);
    std::fs::write(&config, &elsewhere).unwrap();
    let _ = lab.notified("", 0);
    let said = lab.ctl(&["reload"]).expect("reload");
    assert!(said.contains("applied"), "{said}");
    let upstream = spawn_upstream_dns(lab);
    std::thread::sleep(Duration::from_millis(300));
    let r = lab.exec(0, &tool(&["dns-aaaa", "web.example", "--rcode"])).expect("refused query");
    assert_eq!(r.trim(), "rcode 5", "REFUSED after the reload");
    std::fs::write(&config, &base).unwrap();
    lab.ctl(&["reload"]).expect("reload back");
    let r = lab.exec(0, &tool(&["dns-aaaa", "web.example", "--rcode"])).expect("served again");
    assert_eq!(r.lines().collect::<Vec<_>>(), ["rcode 0", SERVER6]);
    let _ = upstream.join();
    let d = &lab.stats()["dns64"];
    assert_eq!((d["refused"].as_u64(), d["synthesized"].as_u64()), (Some(1), Some(3)), "{d}");
}

fn packets(v: &serde_json::Value, dir: &str, proto: &str) -> u64 {
    v["translated"][dir][proto]["packets"].as_u64().unwrap_or_else(|| panic!("no {dir} {proto} in {v}"))
}

fn drops(v: &serde_json::Value, reason: &str) -> u64 {
    v["drops"][reason].as_u64().unwrap_or_else(|| panic!("no drop reason {reason} in {v}"))
}

/// Poll `f` until it holds or `secs` pass.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

// `nat64ctl stats` counts exactly the traffic sent; `nat64ctl sessions`
// lists the flow; an ICMP session expires after its configured lifetime
// (RFC 6146 4: ICMP_DEFAULT, set to 2 s in the lab's configuration).
fn counters_sessions_and_expiry(lab: &Lab) {
    // The 6 MiB transfer above went as super-packets exactly when offloads are on.
    let before = lab.stats();
    let gso = before["offload"]["gso_packets"].as_u64().unwrap();
    assert_eq!(gso > 0, lab.offload, "super-packets translated whole: {}", before["offload"]);
    // Both workers batch through io_uring exactly when it is asked for (this
    // kernel has it), and the traffic above came in batches.
    let io = &before["io"];
    let want = if lab.io_uring { 2 } else { 0 };
    assert_eq!(io["io_uring_workers"].as_u64(), Some(want), "{io}");
    let (batches, batched) = (io["batches"].as_u64().unwrap(), io["batched_packets"].as_u64().unwrap());
    assert_eq!(batches > 0, lab.io_uring, "{io}");
    assert!(batched >= batches, "{io}");
    let server = spawn_tool(lab, 2, &["udp-echo", "192.0.2.2", "5354", "--count", "20", "--timeout", "10"]);
    std::thread::sleep(Duration::from_millis(400));
    let got = lab
        .exec(
            0,
            &tool(&["udp-rounds", SERVER6, "5354", "--bind", "2001:db8:1::10", "--bport", "40200", "--count", "20"]),
        )
        .expect("20 UDP round trips");
    assert_eq!(got.trim(), "2000");
    server.join().unwrap().expect("UDP echo server");
    assert!(
        eventually(2, || {
            let after = lab.stats();
            packets(&after, "6to4", "udp") - packets(&before, "6to4", "udp") == 20
                && packets(&after, "4to6", "udp") - packets(&before, "4to6", "udp") == 20
        }),
        "20 UDP packets each way counted: before {before}, after {}",
        lab.stats()
    );
    let sessions = lab.ctl(&["sessions", "--proto", "udp", "--addr", "2001:db8:1::10"]).expect("nat64ctl sessions");
    assert!(sessions.contains("[2001:db8:1::10]:40200") && sessions.contains("192.0.2.2:5354"), "{sessions}");
    let table = lab.ctl(&["stats"]).expect("nat64ctl stats");
    assert!(table.contains("IPv6 -> IPv4 udp") && table.contains("pool4: 20 address(es)"), "{table}");
    assert!(table.contains("entry 203.0.113.16/30 udp 20000-20099 for 2001:db8:1::11/128"), "{table}");

    lab.exec(0, &["ping", "-c", "1", "-W", "3", SERVER6]).expect("ping");
    let icmp = |l: &Lab| l.stats()["sessions"]["icmp"].as_u64().unwrap();
    assert!(icmp(lab) >= 1, "the echo made an ICMP session");
    assert!(eventually(6, || icmp(lab) == 0), "ICMP sessions expire after icmp = 2 s (and the 1 s sweep)");
}

// RFC 7915 4.2: an ICMPv4 Time Exceeded from a router on the IPv4 side
// reaches the IPv6 client as ICMPv6 Time Exceeded, from the router's
// address under pool6. Hop limit 3: the gateway's kernel makes it 2, the
// translator 1, and the gateway's IPv4 forwarding expires it.
fn time_exceeded_from_ipv4_side(lab: &Lab) {
    // RFC 7915 4.2: the IPv4 server's Port Unreachable (ICMPv4 3/3) for a
    // UDP port nobody listens on reaches the client as ICMPv6 1/4: its
    // connected socket sees ECONNREFUSED.
    // From each client address: the second one has a customer pool of 100
    // UDP ports, which every source port must be able to reach.
    for from in ["2001:db8:1::10", "2001:db8:1::11"] {
        let r = lab.exec(0, &tool(&["udp-probe", SERVER6, "7", "--bind", from])).expect("probe a closed port");
        assert_eq!(
            r.trim(),
            "ECONNREFUSED",
            "Port Unreachable translated for {from}: {}",
            lab.ctl(&["stats"]).unwrap_or_default()
        );
    }
    if lab.xdp {
        // No kernel forwarding in front of the translator on AF_XDP: hop
        // limit 1 expires in the translator itself (RFC 7915 5.1), and its
        // Time Exceeded goes back out of the interface the packet came in on.
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.ns[0], "ping", "-c", "1", "-W", "3", "-t", "1", SERVER6])
            .output()
            .expect("ping -t 1");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Time exceeded"), "{text}");
        return;
    }
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns[0], "ping", "-c", "1", "-W", "3", "-t", "3", SERVER6])
        .output()
        .expect("ping -t 3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Time exceeded") && text.contains("2001:db8:64::c000:201"), "{text}");
}

// RFC 7915 4.2 / RFC 1191: a smaller IPv4 link answers the translated
// packets with Fragmentation Needed; the client receives Packet Too Big with
// the MTU plus 20 and the TCP transfer still completes, byte for byte.
fn path_mtu_discovery(lab: &Lab) {
    let g1 = format!("g{}b", lab.id);
    lab.ip(&["-n", &lab.ns[1], "link", "set", &g1, "mtu", "1400"]);
    let sink = spawn_tool(lab, 2, &["tcp-sink", "192.0.2.2", "9090"]);
    std::thread::sleep(Duration::from_millis(500));
    let sent = lab
        .exec(0, &tool(&["tcp-upload", SERVER6, "9090", "--seed", "9", "--size", "1048576"]))
        .expect("upload across the 1400-byte IPv4 link");
    let got = sink.join().unwrap().expect("TCP sink");
    assert_eq!(got.trim(), sent.trim(), "same bytes at both ends");
    let route = lab.exec(0, &["ip", "-6", "route", "get", SERVER6]).expect("route get");
    assert!(route.contains("mtu 1420"), "Packet Too Big taught the client the path MTU: {route}");
    lab.ip(&["-n", &lab.ns[1], "link", "set", &g1, "mtu", "1500"]);
    if lab.xdp {
        // On AF_XDP the 1400 above was the interface's own MTU, which the
        // translator follows from the kernel's link notifications (it sent
        // the Packet Too Big itself). The jumbo half below needs 9000-byte
        // frames, which neither a 4 KiB UMEM frame nor native XDP on veth holds.
        return;
    }

    // The other way round: a jumbo IPv6 link (MTU 9000) makes the client's
    // MSS larger than the TUN's 1500 allows after translation, so the IPv4
    // server's 1460-byte segments (or super-packets of them) would become
    // 1520-byte IPv6 packets: they are answered with Fragmentation Needed
    // (RFC 7915 4.1; with offloads, after segmenting the super-packet here),
    // the server lowers its segments, and a 1 MiB download arrives intact.
    let (c0, g0) = (format!("c{}", lab.id), format!("g{}a", lab.id));
    lab.ip(&["-n", &lab.ns[0], "-6", "route", "flush", "cache"]); // forget the 1420 just learnt
    lab.ip(&["-n", &lab.ns[0], "link", "set", &c0, "mtu", "9000"]);
    lab.ip(&["-n", &lab.ns[1], "link", "set", &g0, "mtu", "9000"]);
    let before = lab.stats();
    let source = spawn_tool(lab, 2, &["tcp-serve-data", "192.0.2.2", "9092", "--seed", "11", "--size", "1048576"]);
    std::thread::sleep(Duration::from_millis(500));
    let got = lab.exec(0, &tool(&["tcp-recv", SERVER6, "9092"])).expect("download with a jumbo client MSS");
    let sent = source.join().unwrap().expect("TCP source");
    assert_eq!(got.trim(), sent.trim(), "same bytes at both ends");
    let after = lab.stats();
    assert!(drops(&after, "packet_too_big") > drops(&before, "packet_too_big"), "Fragmentation Needed sent: {after}");
    if lab.offload {
        let sw = |v: &serde_json::Value| v["offload"]["software_segmented"].as_u64().unwrap();
        assert!(sw(&after) > sw(&before), "super-packets too big once translated were segmented here: {after}");
    }
    lab.ip(&["-n", &lab.ns[0], "link", "set", &c0, "mtu", "1500"]);
    lab.ip(&["-n", &lab.ns[1], "link", "set", &g0, "mtu", "1500"]);
}

// SIGHUP and `nat64ctl reload` apply a changed configuration while a TCP
// connection is open, and it completes intact; a bad file is refused with
// its file, line and key, and the running configuration stays.
fn reload_keeps_sessions(lab: &Lab) {
    let dir = lab.dir.clone().unwrap();
    let config = dir.join("nat64d.toml");
    let pid = lab.daemon.as_ref().unwrap().id().to_string();
    let sink = spawn_tool(lab, 2, &["tcp-sink", "192.0.2.2", "9091"]);
    std::thread::sleep(Duration::from_millis(500));
    // Twelve 64 KiB chunks, 0.25 s apart: the connection lives through the reloads below.
    let source = spawn_tool(
        lab,
        0,
        &["tcp-upload", SERVER6, "9091", "--seed", "12", "--size", "786432", "--chunks", "12", "--pause", "0.25"],
    );
    std::thread::sleep(Duration::from_millis(600));
    let extra = "\n[[static_bib]]\nproto = \"udp\"\nipv6 = \"[2001:db8:1::10]:53\"\nipv4 = \"203.0.113.2:53\"\n";
    std::fs::write(&config, lab.config_text(extra)).unwrap();
    let _ = lab.notified("", 0);
    run("kill", &["-HUP", &pid]).expect("SIGHUP");
    let n = lab.notified("READY=1", 3);
    let r = n.iter().position(|m| m.starts_with("RELOADING=1\nMONOTONIC_USEC=")).expect("RELOADING=1 sent");
    assert!(n[r..].iter().any(|m| m.starts_with("READY=1")), "READY=1 after the reload: {n:?}");
    assert!(
        eventually(3, || lab
            .ctl(&["bib", "--proto", "udp"])
            .is_ok_and(|b| b.contains("203.0.113.2:53") && b.contains("static"))),
        "SIGHUP applied the new static entry: {:?}",
        lab.ctl(&["bib"])
    );
    assert_eq!(lab.ctl(&["reload"]).expect("nat64ctl reload").trim(), "configuration unchanged");
    std::fs::write(&config, format!("{}\n[nat]\nshard = 4\n", lab.config_text(""))).unwrap();
    let bad = lab.ctl(&["reload"]).expect_err("a bad file is refused");
    assert!(bad.contains("nat64d.toml:") && bad.contains("'nat.shard'") && bad.contains("kept"), "{bad}");
    std::fs::write(&config, lab.config_text("")).unwrap();
    assert!(lab.ctl(&["reload"]).expect("reload").contains("live sessions kept"));
    assert!(!lab.ctl(&["bib", "--proto", "udp"]).unwrap().contains("203.0.113.2:53"), "the entry left with the file");
    let sent = source.join().unwrap().expect("slow TCP source");
    let got = sink.join().unwrap().expect("TCP sink");
    assert_eq!(got.trim(), sent.trim(), "the connection survived the reloads intact");
    // A reload that adds a pool4 network (RFC 6146 3.1 static entry on it):
    // the IPv4 side reaches the IPv6 service at the new address at once,
    // through the route the reload adds on TUN, or on AF_XDP through the
    // program swapped in behind the link.
    let grown = lab.config_text(
        "\n[[static_bib]]\nproto = \"tcp\"\nipv6 = \"[2001:db8:1::10]:8081\"\nipv4 = \"203.0.113.33:8081\"\n",
    );
    let grown =
        grown.replacen("pool4 = [\"203.0.113.0/28\", ", "pool4 = [\"203.0.113.0/28\", \"203.0.113.32/28\", ", 1);
    std::fs::write(&config, &grown).unwrap();
    assert!(lab.ctl(&["reload"]).expect("reload adding a pool4 network").contains("applied"));
    let service = spawn_tool(lab, 0, &["tcp-greet", "2001:db8:1::10", "8081", "--message", "new pool4 network"]);
    std::thread::sleep(Duration::from_millis(500));
    let got = lab.exec(2, &tool(&["tcp-fetch", "203.0.113.33", "8081"])).expect("IPv4 client to the new network");
    assert_eq!(got.trim(), "new pool4 network");
    let _ = service.join();
    std::fs::write(&config, lab.config_text("")).unwrap();
    assert!(lab.ctl(&["reload"]).expect("reload back").contains("applied"));
    // Static entries at run time.
    lab.ctl(&["bib", "add", "udp", "[2001:db8:1::10]:5353", "203.0.113.3:5353"]).expect("bib add");
    assert!(lab.ctl(&["bib", "--addr", "203.0.113.3"]).unwrap().contains("[2001:db8:1::10]:5353"));
    lab.ctl(&["bib", "remove", "udp", "[2001:db8:1::10]:5353"]).expect("bib remove");
    let again = lab.ctl(&["bib", "remove", "udp", "[2001:db8:1::10]:5353"]).expect_err("nothing left to remove");
    assert!(again.contains("no static BIB entry"), "{again}");
}

// Issue 13, in the lab with real sockets and tools, each step citing its rule.
fn edges_real_clients_touch(lab: &Lab) {
    // RFC 7915 section 4 (lowest-ipv6-mtu, default 1280): a 1400-byte UDP
    // reply from IPv4 with DF clear reaches the client in IPv6 fragments of
    // at most 1280 bytes (reassembled by the client), though the TUN's MTU
    // is 1500.
    let before = lab.stats();
    let server = spawn_tool(lab, 2, &["udp-echo", "192.0.2.2", "5360", "--reply-size", "1400", "--no-df"]);
    std::thread::sleep(Duration::from_millis(400));
    let got = lab
        .exec(
            0,
            &tool(&[
                "udp-ask",
                SERVER6,
                "5360",
                "--bind",
                "2001:db8:1::10",
                "--bport",
                "40300",
                "--payload",
                "big?",
                "--print-len",
            ]),
        )
        .expect("a 1400-byte reply");
    assert_eq!(got.trim(), "1400", "the whole datagram arrived: {}", lab.stats());
    server.join().unwrap().expect("UDP server");
    let frag = |v: &serde_json::Value| v["fragmented"]["4to6"].as_u64().unwrap();
    assert!(eventually(2, || frag(&lab.stats()) > frag(&before)), "sent as IPv6 fragments: {}", lab.stats());

    // RFC 6146 3.5.1.1 with pool4 port ranges in the file: the client with
    // a pool of its own (2001:db8:1::11) leaves from 203.0.113.16/30, its
    // UDP source port inside 20000-20099 (its own port 40600 is outside).
    let server = spawn_tool(lab, 2, &["udp-echo", "192.0.2.2", "5361", "--report"]);
    std::thread::sleep(Duration::from_millis(400));
    lab.exec(
        0,
        &tool(&["udp-ask", SERVER6, "5361", "--bind", "2001:db8:1::11", "--bport", "40600", "--payload", "hi"]),
    )
    .expect("UDP from the customer's address");
    let seen = server.join().unwrap().expect("UDP server");
    let mut f = seen.split_whitespace();
    let (src, port) = (f.next().unwrap_or(""), f.next().and_then(|p| p.parse::<u16>().ok()).unwrap_or(0));
    let last: u8 = src.rsplit('.').next().and_then(|o| o.parse().ok()).unwrap_or(0);
    assert!(src.starts_with("203.0.113.") && (16..20).contains(&last), "from the customer's pool: {seen}");
    assert!((20000..=20099).contains(&port), "inside the configured UDP range: {seen}");

    // RFC 6146 3.5.1: a UDP datagram to a pool4 address and port nobody
    // maps is answered with ICMPv4 Host Unreachable: the IPv4 sender's
    // connected socket sees EHOSTUNREACH instead of waiting.
    let before = lab.stats();
    let r = lab.exec(2, &tool(&["udp-probe", "203.0.113.9", "7777"])).expect("probe");
    assert_eq!(r.trim(), "EHOSTUNREACH", "answered with 3/1");
    assert!(drops(&lab.stats(), "no_state") > drops(&before, "no_state"));

    // RFC 4443 2.4 (f): the errors the translator makes are rate limited per
    // destination host. 3000 datagrams that expire in the translator (hop
    // limit 2: the gateway's kernel leaves 1) get at most the burst (20)
    // plus 100 a second per worker back; the rest are counted as held back.
    // The flood goes in bursts of 100 (a TUN queue holds 500), and on a busy
    // machine some may still be dropped at the queue before nat64d reads
    // them: what counts is that those that arrived are all accounted for.
    let before = lab.stats();
    // On AF_XDP no kernel forwarding decrements first: hop limit 1 expires in the translator.
    let hops = if lab.xdp { "1" } else { "2" };
    let flood =
        ["udp-flood", SERVER6, "9", "--bind", "2001:db8:1::10", "--count", "3000", "--hops", hops, "--burst", "100"];
    let sent = lab.exec(0, &tool(&flood)).expect("flood of expiring packets");
    let secs: f64 = sent.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let grew = |a: &serde_json::Value, r: &str| a[r].as_u64().unwrap() - before[r].as_u64().unwrap();
    let expired = |a: &serde_json::Value| drops(a, "hop_limit_exceeded") - drops(&before, "hop_limit_exceeded");
    // Every expired packet is either answered or held back, exactly.
    assert!(
        eventually(3, || {
            let a = lab.stats();
            expired(&a) >= 500 && grew(&a, "icmp_errors_sent") + grew(&a, "icmp_errors_suppressed") == expired(&a)
        }),
        "the flood reached the translator and every error was sent or held back: {}",
        lab.stats()
    );
    let a = lab.stats();
    let errors = grew(&a, "icmp_errors_sent");
    let bound = 2 * (20 + (100.0 * (secs + 1.0)) as u64);
    assert!(errors <= bound, "{errors} errors for {} expiring packets in {secs} s, limit {bound}", expired(&a));
    assert!(grew(&a, "icmp_errors_suppressed") > 0, "the limiter held some back: {a}");
    if lab.xdp {
        // No TUN device: the kernel's own drops are the sockets' (XDP_STATISTICS).
        let table = lab.ctl(&["stats"]).expect("nat64ctl stats");
        assert!(table.contains("AF_XDP:") && table.contains("fill ring empty"), "{table}");
        // Why copy mode: the kernel's refusal of zero copy on veth, named.
        assert!(table.contains("copy mode: zero copy refused: "), "{table}");
        return;
    }
    // Issue 18: what the kernel dropped at the TUN queue before nat64d read
    // it (a flood outruns the workers) shows beside nat64d's own counters.
    let tx = lab.exec(1, &["cat", "/sys/class/net/nat64/statistics/tx_dropped"]).unwrap();
    assert_eq!(lab.stats()["tun_queue_drops"].as_u64(), tx.trim().parse::<u64>().ok(), "the device's own counter");

    // Issue 13 item 6: the kernel's own multicast on the TUN device (here a
    // ping to ff02::1 out of it, as MLD reports go) is not for pool6: counted
    // apart, not as hop_limit_exceeded, and not among the table's drops.
    let before = lab.stats();
    let _ =
        lab.exec(1, &["ping", "-c", "2", "-i", "0.2", "-W", "1", "-t", "1", "-I", "2001:db8:1::1", "ff02::1%nat64"]);
    assert!(
        eventually(2, || drops(&lab.stats(), "not_for_pool6") >= drops(&before, "not_for_pool6") + 2),
        "{}",
        lab.stats()
    );
    assert_eq!(drops(&lab.stats(), "hop_limit_exceeded"), drops(&before, "hop_limit_exceeded"));
    let table = lab.ctl(&["stats"]).expect("nat64ctl stats");
    assert!(table.contains("(not for pool6, ignored"), "{table}");
}

// Issue 18: a second nat64d on the same TUN device (its own control socket,
// another MTU) is refused before it touches anything: exit status 1, the
// live device keeps its MTU, and translation goes on.
fn second_daemon_on_the_device_is_refused(lab: &Lab) {
    let sock = lab.dir.as_ref().unwrap().join("second.sock");
    if lab.xdp {
        // Issue 20: on AF_XDP the interfaces' queues are taken: a second
        // nat64d on them is refused before it attaches anything, and the
        // first goes on translating.
        let (g0, g1) = (format!("g{}a", lab.id), format!("g{}b", lab.id));
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.ns[1], env!("CARGO_BIN_EXE_nat64d"), "--pool4", "203.0.113.64/28"])
            .args(["--pool6", "2001:db8:64::/96", "--allow-non-global", "--dataplane", "xdp"])
            .args(["--xdp-ipv6", &g0, "--xdp-ipv4", &g1, "--control-socket"])
            .arg(&sock)
            .output()
            .expect("run a second nat64d");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("xdp: cannot open an AF_XDP socket") && err.contains("holds that queue"), "{err}");
        assert!(!sock.exists(), "the refused daemon removed its control socket");
        // Without a capability it needs, the refusal names it (setpriv takes
        // it out of the bounding set, so root's exec does not get it back).
        // (CAP_IPC_LOCK only matters while RLIMIT_MEMLOCK is below the 32 MiB UMEM.)
        let memlock_kb = run("sh", &["-c", "ulimit -l"]).unwrap_or_default().trim().parse::<u64>().ok();
        let mut caps = vec![("net_raw", "needs CAP_NET_RAW")];
        if memlock_kb.is_some_and(|kb| kb < 32 << 10) {
            caps.push(("ipc_lock", "give CAP_IPC_LOCK"));
        }
        for (cap, says) in caps {
            let out = Command::new("ip")
                .args(["netns", "exec", &lab.ns[1], "setpriv", "--inh-caps=-all", &format!("--bounding-set=-{cap}")])
                .args([env!("CARGO_BIN_EXE_nat64d"), "--pool4", "203.0.113.64/28", "--pool6", "2001:db8:64::/96"])
                .args(["--allow-non-global", "--dataplane", "xdp", "--xdp-ipv6", &g0, "--xdp-ipv4", &g1])
                .arg("--control-socket")
                .arg(&sock)
                .output()
                .expect("run nat64d without a capability");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "without {cap}: {err}");
            assert!(err.contains(says), "without {cap}: {err}");
        }
        let ping = lab.exec(0, &["ping", "-c", "1", "-W", "3", SERVER6]).expect("still translating");
        assert!(ping.contains("1 received"), "{ping}");
        return;
    }
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns[1], env!("CARGO_BIN_EXE_nat64d"), "--pool4", "203.0.113.64/28"])
        .args(["--pool6", "2001:db8:64::/96", "--allow-non-global", "--tun", "nat64", "--mtu", "1400"])
        .arg("--control-socket")
        .arg(&sock)
        .output()
        .expect("run a second nat64d");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is in use") && !err.contains('\u{1b}'), "{err}");
    let link = lab.exec(1, &["ip", "link", "show", "nat64"]).unwrap();
    assert!(link.contains("mtu 1500"), "the live device's MTU is untouched: {link}");
    assert!(!sock.exists(), "the refused daemon removed its control socket");
    let ping = lab.exec(0, &["ping", "-c", "1", "-W", "3", SERVER6]).expect("still translating");
    assert!(ping.contains("1 received"), "{ping}");
}

// Garbage from the network is dropped and counted by name, and the gateway
// keeps translating: truncated transport headers, an unknown protocol, a
// Routing header with Segments Left (RFC 7915 5.1: ICMPv6 Parameter
// Problem), a malformed ICMPv6 error, and 300 random payloads.
fn malformed_packets_are_counted(lab: &Lab) {
    let before = lab.stats();
    let sent = lab.exec(0, &tool(&["raw-garbage", SERVER6, "--src", "2001:db8:1::10"])).expect("raw sender");
    assert_eq!(sent.trim(), "305");
    let grew = |after: &serde_json::Value, r: &str| drops(after, r) > drops(&before, r);
    assert!(
        eventually(3, || {
            let a = lab.stats();
            ["l4_truncated", "unsupported_protocol", "segments_left", "icmp_inner_malformed"]
                .iter()
                .all(|r| grew(&a, r))
        }),
        "each kind of garbage counted by name: before {before}, after {}",
        lab.stats()
    );
    let ping = lab.exec(0, &["ping", "-c", "2", "-W", "3", SERVER6]).expect("still translating");
    assert!(ping.contains("2 received"), "{ping}");
}

/// Issue 14: port blocks and the mapping log in a live gateway (and issue
/// 17: the daemon has no `ip` binary and sets its persistent device up by
/// netlink, removing its routes at the stop). Two
/// addresses of one /64 share one 512-port block (RFC 7753); `nat64ctl who`
/// names the /64 for a port the IPv4 server saw, live and, after the daemon
/// stopped, from the mapping log alone at a time in the past; a time before
/// the log is "unknown". Nothing is lost.
#[test]
fn lab_port_blocks_and_the_mapping_log() {
    if !lab_possible() {
        return;
    }
    let config = |dir: &std::path::Path| {
        format!(
            r#"pool6 = "2001:db8:64::/96"
pool4 = ["203.0.113.0/30"]
[tun]
name = "nat64"
queues = 1
[nat.ports]
mode = "blocks"
block_size = 512
hold = 2
[mapping_log]
file = "{0}/mapping.jsonl"
ipfix = "127.0.0.1:4739"
ipfix_template_refresh = 1
[metrics]
listen = "127.0.0.1:9864"
[control]
socket = "{0}/control.sock"
"#,
            dir.display()
        )
    };
    let mut lab = Lab::up_with(true, false, 5, true, &config);
    // A real IPFIX decoder watches the export (RFC 7011 over UDP, RFC 8158 records).
    let pcap = lab.dir.as_ref().unwrap().join("ipfix.pcap");
    let mut capture = Command::new("ip")
        .args(["netns", "exec", &lab.ns[1], "tshark", "-q", "-i", "lo", "-f", "udp port 4739", "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tshark (apt-get install tshark)");
    std::thread::sleep(Duration::from_millis(2500));
    let before = nat64d::maplog::rfc3339(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64 - 60_000,
    );
    let server = spawn_tool(&lab, 2, &["udp-echo", "192.0.2.2", "5353", "--count", "2", "--report"]);
    std::thread::sleep(Duration::from_millis(500));
    for (client, port) in [("2001:db8:1::10", "40123"), ("2001:db8:1::11", "5000")] {
        lab.exec(0, &tool(&["udp-ask", SERVER6, "5353", "--bind", client, "--bport", port, "--payload", "x"]))
            .expect("UDP through a block");
    }
    let seen = server.join().unwrap().expect("UDP server");
    let seen: Vec<(String, u16)> = seen
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace();
            (f.next().unwrap().to_string(), f.next().unwrap().parse().unwrap())
        })
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].0, seen[1].0, "one address for the subscriber (paired)");
    assert_eq!(seen[0].1 / 512, seen[1].1 / 512, "both flows in one block: {seen:?}");
    assert_eq!(seen[0].1 % 512, 40123 % 512, "the port keeps its offset in the block");
    let target = format!("{}:{}", seen[1].0, seen[1].1);
    let live = lab.ctl(&["who", &target, "--proto", "udp"]).expect("nat64ctl who, live");
    assert!(live.contains("2001:db8:1::/64") && live.contains("block"), "{live}");
    let mine = lab.ctl(&["who", "2001:db8:1::11"]).expect("nat64ctl who IPv6");
    assert!(mine.contains(&seen[0].0) && mine.contains("block"), "{mine}");
    let st = lab.stats();
    assert_eq!(st["ports"]["blocks_held"], 1, "{}", st["ports"]);
    // Issue 17: the live daemon's /metrics passes Prometheus' own linter.
    let scrape = lab
        .exec(1, &["python3", "-c", "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9864/metrics').read().decode(), end='')"])
        .expect("scrape /metrics");
    assert!(scrape.contains("nat64d_port_blocks 1\n") && scrape.contains("nat64d_build_info{"), "{scrape}");
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    std::io::Write::write_all(&mut p.stdin.take().unwrap(), scrape.as_bytes()).unwrap();
    let o = p.wait_with_output().unwrap();
    assert!(
        o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let during = nat64d::maplog::rfc3339(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64,
    );
    // Stop: the block's end is logged; then ask the log alone.
    let mut d = lab.daemon.take().expect("daemon");
    run("kill", &["-TERM", &d.id().to_string()]).unwrap();
    assert!(d.wait().unwrap().success());
    // Issue 17: the device was persistent and outlives the daemon; the
    // routes nat64d added through netlink are gone with it.
    let left = lab.exec(1, &["ip", "route", "show", "dev", "nat64"]).unwrap()
        + &lab.exec(1, &["ip", "-6", "route", "show", "dev", "nat64"]).unwrap();
    assert!(left.trim().is_empty(), "routes left behind: {left}");
    let log = lab.dir.as_ref().unwrap().join("mapping.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 2, "one allocation, one release at the stop: {text}");
    std::thread::sleep(Duration::from_millis(1500));
    run("kill", &["-INT", &capture.id().to_string()]).unwrap();
    let _ = capture.wait();
    let decoded = run(
        "tshark",
        &[
            "-n",
            "-r",
            pcap.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "cflow.nat_event",
            "-e",
            "cflow.srcaddrv6",
            "-e",
            "cflow.port_range_start",
            "-e",
            "cflow.post_natsource_ipv4_address",
        ],
    )
    .expect("tshark reads the capture");
    let lo = seen[0].1 / 512 * 512;
    let blocks: Vec<&str> = decoded.lines().filter(|l| l.starts_with("16") || l.starts_with("17")).collect();
    assert_eq!(blocks.len(), 2, "one allocation (16), one de-allocation (17): {decoded}");
    for (l, ev) in blocks.iter().zip(["16", "17"]) {
        assert_eq!(*l, format!("{ev}\t2001:db8:1::\t{lo}\t{}", seen[0].0), "{decoded}");
    }
    let ctl = env!("CARGO_BIN_EXE_nat64ctl");
    let past = run(ctl, &["who", &target, "--at", &during, "--log", log.to_str().unwrap()]).expect("who from the log");
    assert!(past.contains("2001:db8:1::/64"), "{past}");
    let unknown = run(ctl, &["who", &target, "--at", &before, "--log", log.to_str().unwrap()]).unwrap_err();
    assert!(unknown.contains("unknown") && unknown.contains("before the oldest record"), "{unknown}");
}

/// Issue 15: a restart keeps live connections. A TCP upload of 30 s through
/// the gateway; 8 s in, SIGTERM and start nat64d again (the state file
/// carries the table over): the same connection completes and the bytes'
/// hash matches at both ends; a UDP flow keeps its pool4 address and port
/// across the restart, as the IPv4 server sees it.
#[test]
fn lab_restart_keeps_connections() {
    if !lab_possible() {
        return;
    }
    let config = |dir: &std::path::Path| {
        format!(
            "pool6 = \"2001:db8:64::/96\"\npool4 = [\"203.0.113.0/28\"]\n[tun]\nname = \"nat64\"\nqueues = 1\n[state]\nfile = \"{0}/nat64d.state\"\n[control]\nsocket = \"{0}/control.sock\"\n",
            dir.display()
        )
    };
    let mut lab = Lab::up_with(true, true, 6, false, &config);
    let udp = spawn_tool(&lab, 2, &["udp-echo", "192.0.2.2", "5354", "--count", "2", "--report", "--timeout", "60"]);
    let sink = spawn_tool(&lab, 2, &["tcp-sink", "192.0.2.2", "9090", "--timeout", "60"]);
    std::thread::sleep(Duration::from_millis(500));
    let ask = |lab: &Lab| {
        lab.exec(
            0,
            &tool(&["udp-ask", SERVER6, "5354", "--bind", "2001:db8:1::10", "--bport", "40321", "--payload", "x"]),
        )
        .expect("UDP through the gateway")
    };
    ask(&lab);
    // 3 MB in 60 pieces half a second apart: 30 s.
    let upload = spawn_tool(
        &lab,
        0,
        &[
            "tcp-upload",
            SERVER6,
            "9090",
            "--seed",
            "15",
            "--size",
            "3000000",
            "--chunks",
            "60",
            "--pause",
            "0.5",
            "--timeout",
            "60",
        ],
    );
    std::thread::sleep(Duration::from_secs(8));
    let t = Instant::now();
    let err = lab.stop_daemon();
    assert!(err.contains("state saved to"), "{err}");
    lab.start_daemon(false);
    let down = t.elapsed();
    ask(&lab);
    let sent = upload.join().unwrap().expect("TCP upload across the restart");
    let got = sink.join().unwrap().expect("TCP sink");
    assert_eq!(sent.trim(), got.trim(), "the same bytes arrived over the same connection");
    let seen: Vec<String> = udp.join().unwrap().expect("UDP server").lines().map(String::from).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], seen[1], "the UDP flow kept its pool4 address and port");
    let err = lab.stop_daemon();
    let restored = err
        .split("state restored from")
        .nth(1)
        .and_then(|l| l.split(" sessions").next())
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u32>().ok());
    assert!(restored.is_some_and(|n| n >= 2), "the TCP and UDP sessions came back: {err}");
    eprintln!("restart took {down:?} (stop, save, start, load, device up)");
}

/// Kills a helper process (nginx, say) when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the gateway namespace's /etc/netns directory (its hosts file).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Issue 19, the inbound relay, end to end: IPv4 visitors (curl in the
/// IPv4-only namespace) reach IPv6-only nginx backends (in the IPv6-only
/// namespace) through nat64d's relay by TLS SNI and HTTP Host, TLS not
/// terminated; the backends learn the visitor's address by PROXY v2 and
/// X-Forwarded-For; names outside the map, or resolving outside the backend
/// networks, are refused; a client holding half-sent ClientHellos does not
/// stop others; a reload adds a site.
#[test]
fn lab_inbound_proxy() {
    if !lab_possible() {
        return;
    }
    for bin in ["nginx", "curl", "openssl"] {
        if run("sh", &["-c", &format!("command -v {bin}")]).is_err() {
            assert!(
                std::env::var_os("NAT64D_REQUIRE_PEERS").is_none(),
                "{bin} is missing (apt-get install nginx-light curl openssl)"
            );
            eprintln!("lab_inbound_proxy: SKIPPED: {bin} is not installed");
            return;
        }
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let slot = 7;
    let id = std::process::id() % 10_000 * 10 + slot;
    // getaddrinfo in the gateway namespace reads this hosts file (ip netns
    // exec mounts /etc/netns/NAME/hosts over /etc/hosts): r.example lies in
    // the backend network, evil.example outside it.
    let netns_etc = std::path::PathBuf::from(format!("/etc/netns/n64g{id}"));
    std::fs::create_dir_all(&netns_etc).unwrap();
    let _etc = RemoveOnDrop(netns_etc.clone());
    std::fs::write(
        netns_etc.join("hosts"),
        "127.0.0.1 localhost\n2001:db8:1::10 r.example\n2001:db8:99::1 evil.example\n",
    )
    .unwrap();
    let config = |dir: &std::path::Path| {
        format!(
            r#"pool6 = "2001:db8:64::/96"
pool4 = ["203.0.113.0/28"]
[tun]
name = "nat64"
queues = 1
[control]
socket = "{0}/control.sock"
[proxy]
listen = ["192.0.2.1:80", "192.0.2.1:443"]
backends = ["2001:db8:1::/64"]
resolve = true
first_bytes_timeout_ms = 1500
per_client = 20
[[proxy.site]]
name = "a.example"
backend = "2001:db8:1::10"
[[proxy.site]]
name = "b.example"
backend = "[2001:db8:1::11]:8443"
client_address = "proxy-v2"
[[proxy.site]]
name = "*.c.example"
backend = "[2001:db8:1::11]:8080"
client_address = "x-forwarded-for"
[[proxy.site]]
name = "bulk.example"
backend = "[2001:db8:1::10]:9000"
"#,
            dir.display()
        )
    };
    let lab = Lab::up_with(true, true, slot, false, &config);
    let dir = lab.dir.clone().unwrap();
    let d = dir.display();
    for site in ["a", "b"] {
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={site}.example"),
                "-keyout",
                &format!("{d}/{site}.key"),
                "-out",
                &format!("{d}/{site}.crt"),
            ],
        )
        .expect("a self-signed certificate");
    }
    std::fs::create_dir_all(dir.join("nginx-tmp")).unwrap();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            r#"# One process (no master and workers): the test ends it by its PID.
master_process off;
user root;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
  default_type text/plain;
  access_log {d}/access.log;
  log_format pp '$proxy_protocol_addr $ssl_server_name';
  client_body_temp_path {d}/nginx-tmp; proxy_temp_path {d}/nginx-tmp; fastcgi_temp_path {d}/nginx-tmp;
  uwsgi_temp_path {d}/nginx-tmp; scgi_temp_path {d}/nginx-tmp;
  sendfile on;
  server {{ listen [2001:db8:1::10]:80; location / {{ return 200 "site a\n"; }} location = /big {{ alias {d}/big; }} }}
  server {{ listen [2001:db8:1::10]:443 ssl; ssl_certificate {d}/a.crt; ssl_certificate_key {d}/a.key; return 200 "site a over TLS\n"; }}
  server {{ listen [2001:db8:1::11]:8443 ssl proxy_protocol; ssl_certificate {d}/b.crt; ssl_certificate_key {d}/b.key;
           access_log {d}/proxy-protocol.log pp; return 200 "site b for $proxy_protocol_addr\n"; }}
  server {{ listen [2001:db8:1::11]:8080; return 200 "site c for $http_x_forwarded_for\n"; }}
}}
"#
        ),
    )
    .unwrap();
    let nginx = Command::new("ip")
        .args(["netns", "exec", &lab.ns[0], "nginx", "-c", &format!("{d}/nginx.conf"), "-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let _nginx = KillOnDrop(nginx);
    assert!(
        eventually(10, || lab.exec(0, &["ss", "-Hltn"]).is_ok_and(|o| o.contains("[2001:db8:1::11]:8080"))),
        "nginx did not start: {}",
        std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
    );
    // A visitor's request: curl in the IPv4 namespace, the name resolved to the gateway.
    let curl = |from: &str, url: &str, extra: &[&str]| -> Result<String, String> {
        let host = url.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or("");
        let port = if url.starts_with("https") { 443 } else { 80 };
        let resolve = format!("{host}:{port}:192.0.2.1");
        let mut a = vec!["curl", "-sS", "-k", "--max-time", "5", "--interface", from, "--resolve", &resolve];
        a.extend_from_slice(extra);
        a.push(url);
        lab.exec(2, &a)
    };
    let v = "192.0.2.2";
    // Two sites on one IPv4 address reach two backends; HTTP by Host, TLS
    // by SNI (RFC 6066 3) without terminating it: the certificate is nginx's.
    assert_eq!(curl(v, "http://a.example/", &[]).unwrap(), "site a\n");
    assert_eq!(curl(v, "https://a.example/", &[]).unwrap(), "site a over TLS\n");
    // PROXY v2 (HAProxy's specification 2.2): nginx sees the IPv4 visitor.
    assert_eq!(curl(v, "https://b.example/", &[]).unwrap(), "site b for 192.0.2.2\n");
    let logged = std::fs::read_to_string(dir.join("proxy-protocol.log")).unwrap_or_default();
    assert!(logged.contains("192.0.2.2 b.example"), "nginx logged the visitor: {logged:?}");
    // X-Forwarded-For: the relay's, not the visitor's claim; a wildcard site.
    assert_eq!(
        curl(v, "http://shop.c.example/", &["-H", "X-Forwarded-For: 198.51.100.66"]).unwrap(),
        "site c for 192.0.2.2\n"
    );
    // A name in no site, resolved into the backend network: relayed on the visitor's port.
    assert_eq!(curl(v, "http://r.example/", &[]).unwrap(), "site a\n");
    // RFC 9110 15.5.20: a name this address does not serve (it resolves to
    // nothing) is 421; one that resolves outside the backend networks too
    // (never an open proxy).
    for name in ["nosuch.example", "evil.example"] {
        let code = curl(v, &format!("http://{name}/"), &["-o", "/dev/null", "-w", "%{http_code}"]).unwrap();
        assert_eq!(code, "421", "{name}");
    }
    // TLS for a name not served: an unrecognized_name alert, no backend.
    let e = curl(v, "https://nosuch.example/", &[]).unwrap_err();
    assert!(e.contains("unrecognized name") || e.contains("alert"), "{e}");
    // Bulk both ways through one connection, with a half-close between: the
    // visitor sends 4 MiB after its head and its FIN; the backend must see
    // every byte and then the FIN (passed on as a FIN, not a close), and its
    // 3 MiB answer must still come back whole (the relay's buffers switch to
    // splice on full reads; RFC 9293 3.6: a FIN closes one direction only).
    let backend = r#"
import socket, hashlib, random
l = socket.socket(socket.AF_INET6)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("2001:db8:1::10", 9000)); l.listen(1); l.settimeout(20)
c, _ = l.accept(); c.settimeout(20)
data = b""
while b"\r\n\r\n" not in data:
    data += c.recv(65536)
h = hashlib.sha256(data.split(b"\r\n\r\n", 1)[1])
while True:
    b = c.recv(65536)
    if not b:
        break
    h.update(b)
c.sendall(h.hexdigest().encode() + b"\n" + random.Random(2).randbytes(3 << 20))
c.close()
"#;
    let visitor = r#"
import socket, hashlib, random
up = random.Random(1).randbytes(4 << 20)
s = socket.create_connection(("192.0.2.1", 80), source_address=("192.0.2.2", 0), timeout=20)
s.sendall(b"PUT /blob HTTP/1.1\r\nHost: bulk.example\r\nContent-Length: %d\r\n\r\n" % len(up) + up)
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    got += b
seen, _, down = got.partition(b"\n")
print(seen.decode() == hashlib.sha256(up).hexdigest(), down == random.Random(2).randbytes(3 << 20), len(got))
"#;
    let n0 = lab.ns[0].clone();
    let back = std::thread::spawn(move || run("ip", &["netns", "exec", &n0, "python3", "-c", backend]));
    assert!(eventually(5, || lab.exec(0, &["ss", "-Hltn"]).is_ok_and(|o| o.contains("[2001:db8:1::10]:9000"))));
    let out = lab.exec(2, &["python3", "-c", visitor]).expect("the bulk visitor");
    back.join().unwrap().expect("the bulk backend");
    assert!(out.starts_with("True True"), "bulk relay: backend saw / visitor got: {out}");

    // nginx's sendfile(2) of a sparse file: many small page fragments, so a
    // splice into the pipe stops short while the socket still holds more
    // (a relay that took a short splice for an empty socket stalls here).
    std::fs::File::create(dir.join("big")).unwrap().set_len(64 << 20).unwrap();
    let got = curl(v, "http://a.example/big", &["-o", "/dev/null", "-w", "%{size_download}"]);
    assert_eq!(got.as_deref(), Ok("67108864"), "a 64 MiB download through the relay");

    // Not TLS, not HTTP: closed, counted.
    let _ = lab.exec(2, &["bash", "-c", "exec 3<>/dev/tcp/192.0.2.1/443; printf '\\001\\002\\003' >&3; sleep 0.3"]);

    // A slow client from another address holds 30 half-sent ClientHellos
    // for 3 s: 20 are admitted (per_client), 10 refused, the admitted ones
    // closed at first_bytes_timeout_ms; a visitor elsewhere is served meanwhile.
    lab.ip(&["-n", &lab.ns[2], "addr", "add", "192.0.2.3/24", "dev", &format!("s{}", lab.id)]);
    let hold = r#"
import socket, time
held = []
for i in range(30):
    s = socket.create_connection(("192.0.2.1", 443), source_address=("192.0.2.3", 0))
    s.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    held.append(s)
time.sleep(3)
print(len(held))
"#;
    let n = lab.ns[2].clone();
    let slow = std::thread::spawn(move || run("ip", &["netns", "exec", &n, "python3", "-c", hold]));
    std::thread::sleep(Duration::from_millis(800));
    let listed: serde_json::Value = serde_json::from_str(&lab.ctl(&["proxy", "--json"]).unwrap()).unwrap();
    let naming = listed["connections"].as_array().unwrap().iter().filter(|c| c["site"].is_null()).count();
    assert_eq!(naming, 20, "nat64ctl proxy lists the held connections: {listed}");
    let t = Instant::now();
    assert_eq!(curl(v, "https://a.example/", &[]).unwrap(), "site a over TLS\n");
    assert!(t.elapsed() < Duration::from_secs(2), "a visitor waited {:?} behind the slow client", t.elapsed());
    slow.join().unwrap().expect("the slow client");
    let p = &lab.stats()["proxy"];
    assert_eq!(p["refused"]["over_per_client"], 10, "{p}");
    assert_eq!(p["refused"]["first_bytes_timeout"], 20, "{p}");
    assert_eq!(p["refused"]["resolve_failed"], 2, "{p}");
    assert_eq!(p["refused"]["backend_not_allowed"], 1, "{p}");
    assert_eq!(p["refused"]["not_tls_or_http"], 1, "{p}");
    let site = |name: &str| p["sites"].as_array().unwrap().iter().find(|s| s["site"] == name).cloned();
    assert_eq!(site("a.example").unwrap()["connections"], 4, "{p}");
    let bulk = site("bulk.example").unwrap_or_default();
    assert!(
        bulk["bytes_to_backend"].as_u64() > Some(4 << 20) && bulk["bytes_to_client"].as_u64() > Some(3 << 20),
        "{p}"
    );
    // Each way of the bulk connection filled its buffer and went on by splice.
    assert!(p["spliced"].as_u64() >= Some(2), "{p}");
    assert_eq!(p["copy_fallback"], 0, "{p}");
    for s in ["(resolved)", "*.c.example", "b.example"] {
        let s = site(s).unwrap_or_default();
        assert!(s["bytes_to_backend"].as_u64() > Some(0) && s["bytes_to_client"].as_u64() > Some(0), "{p}");
    }
    let text = lab.ctl(&["stats"]).unwrap();
    assert!(text.contains("proxy on 192.0.2.1:80, 192.0.2.1:443"), "{text}");

    // A reload adds a site; the relay keeps running, and a download open
    // through it across the reload (64 MiB at 24 MB/s, about 2.8 s) ends whole.
    let conf = dir.join("nat64d.toml");
    let mut c = std::fs::read_to_string(&conf).unwrap();
    c += "[[proxy.site]]\nname = \"d.example\"\nbackend = \"[2001:db8:1::10]:80\"\n";
    std::fs::write(&conf, c).unwrap();
    let slow = ["-o", "/dev/null", "-w", "%{size_download}", "--limit-rate", "24M", "--max-time", "20"];
    let (r, got) = std::thread::scope(|s| {
        let download = s.spawn(|| curl(v, "http://a.example/big", &slow));
        std::thread::sleep(Duration::from_millis(1000));
        let r = lab.ctl(&["reload"]).unwrap();
        (r, download.join().unwrap())
    });
    assert!(r.contains("applied"), "{r}");
    assert_eq!(got.as_deref(), Ok("67108864"), "a download open across the reload");
    assert_eq!(curl(v, "http://d.example/", &[]).unwrap(), "site a\n");
}
