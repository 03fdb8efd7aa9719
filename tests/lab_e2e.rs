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
    fn ip(&self, args: &[&str]) {
        run("ip", args).unwrap();
    }

    fn exec(&self, ns: usize, args: &[&str]) -> Result<String, String> {
        let mut a = vec!["netns", "exec", self.ns[ns].as_str()];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    fn up() -> Lab {
        let id = std::process::id() % 100_000;
        let ns = [format!("n64c{id}"), format!("n64g{id}"), format!("n64s{id}")];
        let mut lab = Lab { ns, daemon: None };
        let [c, g, s] = [lab.ns[0].clone(), lab.ns[1].clone(), lab.ns[2].clone()];
        for n in [&c, &g, &s] {
            lab.ip(&["netns", "add", n]);
            lab.ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        let (vc, vg0, vs, vg1) = (format!("c{id}"), format!("g{id}a"), format!("s{id}"), format!("g{id}b"));
        lab.ip(&["link", "add", &vc, "netns", &c, "type", "veth", "peer", "name", &vg0, "netns", &g]);
        lab.ip(&["link", "add", &vs, "netns", &s, "type", "veth", "peer", "name", &vg1, "netns", &g]);
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
        let daemon = Command::new("ip")
            .args([
                "netns",
                "exec",
                &g,
                env!("CARGO_BIN_EXE_nat64d"),
                "--pool6",
                "2001:db8:64::/96",
                "--pool4",
                "203.0.113.0/28",
                "--tun",
                "nat64",
                "--bib",
                "tcp,[2001:db8:1::10]:8080,203.0.113.1:8080",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nat64d");
        lab.daemon = Some(daemon);
        let start = Instant::now();
        while !lab.exec(1, &["ip", "link", "show", "nat64"]).is_ok_and(|o| o.contains(",UP")) {
            assert!(start.elapsed() < Duration::from_secs(10), "nat64d did not bring its TUN device up");
            std::thread::sleep(Duration::from_millis(100));
        }
        lab
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
    }
}

fn python() -> &'static str {
    if run("python3", &["-c", "pass"]).is_ok() {
        "python3"
    } else {
        "python"
    }
}

#[test]
fn lab_ping_udp_tcp_static_bib_hairpin_sigterm() {
    let is_root = run("id", &["-u"]).is_ok_and(|o| o.trim() == "0");
    if !is_root {
        assert!(
            std::env::var_os("NAT64D_REQUIRE_ROOT_TESTS").is_none(),
            "NAT64D_REQUIRE_ROOT_TESTS is set but this is not root"
        );
        eprintln!("lab_e2e: SKIPPED: needs root (network namespaces and a TUN device); run as root to include it");
        return;
    }
    let lab = Lab::up();
    let py = python();

    // ICMPv6 echo → ICMPv4 echo and back (RFC 7915 4.2 / 5.2 with RFC 6146 3.5.3).
    let ping = lab.exec(0, &["ping", "-c", "3", "-W", "3", SERVER6]).expect("ping through NAT64");
    assert!(ping.contains("3 received") || ping.contains(" 0% packet loss"), "{ping}");

    // UDP: the server sees a pool4 source with the client's port kept (RFC 6146 3.5.1.1), and answers.
    let ns_s = lab.ns[2].clone();
    let server = std::thread::spawn(move || {
        run(
            "ip",
            &["netns", "exec", &ns_s, python(), "-c", "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('192.0.2.2',5353));s.settimeout(15)\nfor _ in range(3):\n d,a=s.recvfrom(2000);s.sendto(d.upper(),a)\n print(a[0],a[1],flush=True)\n break"],
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let got = lab
        .exec(0, &[py, "-c", &format!("import socket;s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM);s.bind(('2001:db8:1::10',40123));s.settimeout(3)\nfor i in range(4):\n s.sendto(b'hello nat64',('{SERVER6}',5353))\n try:\n  print(s.recvfrom(2000)[0].decode());break\n except socket.timeout: pass")])
        .expect("UDP client");
    assert_eq!(got.trim(), "HELLO NAT64");
    let seen = server.join().unwrap().expect("UDP server");
    let mut f = seen.split_whitespace();
    let (src, port) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
    assert!(src.starts_with("203.0.113."), "source {src} is not a pool4 address");
    assert_eq!(port, "40123", "client port kept");

    // TCP: 2 MB from the server, byte-exact (hashes equal at both ends).
    let ns_s = lab.ns[2].clone();
    let sender = std::thread::spawn(move || {
        run(
            "ip",
            &["netns", "exec", &ns_s, python(), "-c", "import socket,hashlib,random\nr=random.Random(64);data=bytes(r.getrandbits(8) for _ in range(2*1024*1024))\nl=socket.socket();l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);l.bind(('192.0.2.2',8080));l.listen(1);l.settimeout(20)\nc,_=l.accept();c.sendall(data);c.close()\nprint(hashlib.sha256(data).hexdigest())"],
        )
    });
    std::thread::sleep(Duration::from_millis(800));
    let recv = lab
        .exec(0, &[py, "-c", &format!("import socket,hashlib\nc=socket.create_connection(('{SERVER6}',8080),timeout=20);h=hashlib.sha256();n=0\nwhile True:\n b=c.recv(65536)\n if not b: break\n h.update(b);n+=len(b)\nprint(n,h.hexdigest())")])
        .expect("TCP client");
    let sent = sender.join().unwrap().expect("TCP server");
    let mut r = recv.split_whitespace();
    assert_eq!(r.next(), Some("2097152"), "all bytes arrived");
    assert_eq!(r.next(), Some(sent.trim()), "same bytes at both ends");

    // A static BIB entry (RFC 6146 3.1): the IPv4 server reaches the IPv6
    // service at 203.0.113.1:8080; then hairpinning (RFC 6146 3.8): the second
    // IPv6 address reaches the same service through that pool4 address,
    // 2001:db8:64::cb00:7101, seen there from its own pool4 address, embedded.
    let ns_c = lab.ns[0].clone();
    let service = std::thread::spawn(move || {
        run(
            "ip",
            &["netns", "exec", &ns_c, python(), "-c", "import socket\nl=socket.socket(socket.AF_INET6);l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);l.bind(('2001:db8:1::10',8080));l.listen(2);l.settimeout(20)\nfor _ in range(2):\n c,a=l.accept();c.sendall(('hello '+a[0]).encode());c.close();print(a[0],flush=True)"],
        )
    });
    std::thread::sleep(Duration::from_millis(800));
    let from_v4 = lab
        .exec(
            2,
            &[
                py,
                "-c",
                "import socket;c=socket.create_connection(('203.0.113.1',8080),timeout=10);print(c.recv(200).decode())",
            ],
        )
        .expect("IPv4 client through the static BIB entry");
    assert_eq!(from_v4.trim(), format!("hello {SERVER6}"), "the IPv6 service sees the IPv4 client, embedded");
    let hairpin = lab
        .exec(0, &[py, "-c", "import socket;s=socket.socket(socket.AF_INET6);s.bind(('2001:db8:1::11',0));s.settimeout(10);s.connect(('2001:db8:64::cb00:7101',8080));print(s.recv(200).decode())"])
        .expect("hairpinned IPv6 client");
    assert!(hairpin.trim().starts_with("hello 2001:db8:64::cb00:71"), "seen from a pool4 address, embedded: {hairpin}");
    let peers = service.join().unwrap().expect("IPv6 service");
    assert_eq!(peers.lines().count(), 2, "{peers}");

    // SIGTERM: a clean stop, exit status 0, with the final counters on stderr.
    let mut lab = lab;
    let mut d = lab.daemon.take().expect("daemon");
    run("kill", &["-TERM", &d.id().to_string()]).expect("send SIGTERM");
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
    assert!(err.contains("nat64d: stopped:"), "final counters on stderr: {err}");
}
