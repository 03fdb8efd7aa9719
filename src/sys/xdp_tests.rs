//! The XDP program and AF_XDP sockets against the real kernel (root only):
//! the verifier takes the assembled program, it picks exactly the frames to
//! pool6 and pool4, and a socket bound to a veth receives what it picks.
//! Skipped (with a line saying so) when not root, unless
//! NAT64D_REQUIRE_ROOT_TESTS asks for them (CI).

use super::bpf::{self, AttachMode, Match, XDP_DROP, XDP_PASS};
use super::xsk::{self, Bind, Socket, Umem};
use std::os::fd::AsRawFd;
use std::process::Command;

fn root() -> bool {
    let root = super::testns::root();
    if !root {
        assert!(
            std::env::var_os("NAT64D_REQUIRE_ROOT_TESTS").is_none(),
            "NAT64D_REQUIRE_ROOT_TESTS is set but not root"
        );
        eprintln!("skipped: the XDP tests need root (CAP_BPF, CAP_NET_ADMIN)");
    }
    root
}

const POOL6: Match<16> = Match { addr: [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], len: 96 };
const POOL4: [Match<4>; 2] = [Match { addr: [203, 0, 113, 0], len: 28 }, Match { addr: [198, 51, 100, 7], len: 32 }];

fn eth(ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

fn v6_to(dst: [u8; 16]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 8, 0, 0]);
    eth(0x86dd, &h)
}

fn v4_to(dst: [u8; 4]) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 2];
    h.extend_from_slice(&dst);
    h.extend_from_slice(&[0, 53, 0x9c, 0x40, 0, 8, 0, 0]);
    eth(0x0800, &h)
}

// The steering rule (issue 20): IPv6 to pool6 and IPv4 to a pool4 network
// are taken (here, with an empty map and miss = XDP_DROP, dropped);
// everything else, ARP, other destinations, runts, goes on to the kernel.
#[test]
fn verifier_accepts_program_and_it_picks_only_pool_traffic() {
    if !root() {
        return;
    }
    let map = bpf::xsk_map(4).expect("XSKMAP");
    let prog = bpf::load_xdp(&bpf::steering_program(map.as_raw_fd(), POOL6, &POOL4, XDP_DROP)).expect("load");
    let mut in6 = POOL6.addr;
    in6[12..].copy_from_slice(&[192, 0, 2, 1]);
    let mut out6 = in6;
    out6[5] = 0x65; // 64:ff9b:: -> 64:ff65:: is outside the /96
    let cases: &[(&str, Vec<u8>, i32)] = &[
        ("IPv6 to pool6", v6_to(in6), XDP_DROP),
        ("IPv6 elsewhere", v6_to(out6), XDP_PASS),
        ("IPv4 to the /28", v4_to([203, 0, 113, 9]), XDP_DROP),
        ("IPv4 just past the /28", v4_to([203, 0, 113, 16]), XDP_PASS),
        ("IPv4 to the /32", v4_to([198, 51, 100, 7]), XDP_DROP),
        ("IPv4 next to the /32", v4_to([198, 51, 100, 8]), XDP_PASS),
        ("ARP", eth(0x0806, &[0; 28]), XDP_PASS),
        ("a runt", v4_to([203, 0, 113, 9])[..30].to_vec(), XDP_PASS),
        ("IPv6 cut inside its header", v6_to(in6)[..50].to_vec(), XDP_PASS),
    ];
    for (what, frame, want) in cases {
        assert_eq!(bpf::test_run(&prog, frame).expect("test run"), *want, "{what}");
    }
}

use super::testns::sh;

// A frame the program picks arrives on the AF_XDP socket of its queue,
// whole, with its Ethernet header and the XDP headroom before it.
#[test]
fn socket_on_veth_receives_picked_frames() {
    if !root() {
        return;
    }
    let t = std::thread::spawn(|| {
        let ifindex = super::testns::veth_pair();
        sh(&["ip", "-6", "addr", "add", "2001:db8:1::1/64", "dev", "va", "nodad"]);
        // Both ends are in this namespace: the gateway is a made-up address
        // whose neighbour entry is vb's MAC, so frames to pool6 cross to vb.
        sh(&["ip", "link", "set", "vb", "address", "02:00:00:00:00:0b"]);
        sh(&["ip", "-6", "neigh", "add", "2001:db8:1::99", "lladdr", "02:00:00:00:00:0b", "dev", "va"]);
        sh(&["ip", "-6", "route", "add", "64:ff9b::/96", "via", "2001:db8:1::99", "dev", "va"]);
        let map = bpf::xsk_map(1).expect("XSKMAP");
        let prog = bpf::load_xdp(&bpf::steering_program(map.as_raw_fd(), POOL6, &POOL4, XDP_PASS)).expect("load");
        let (_link, mode) = match bpf::attach_xdp(&prog, ifindex, AttachMode::Native) {
            Ok(l) => (l, AttachMode::Native),
            Err(_) => (bpf::attach_xdp(&prog, ifindex, AttachMode::Generic).expect("attach"), AttachMode::Generic),
        };
        let mut umem = Umem::new(64).expect("UMEM");
        let mut s = Socket::open(&umem, Bind { ifindex, queue: 0, shared_with: None, copy: false }).expect("socket");
        // veth has no XSK buffer pool: zero copy is tried, refused, and
        // the refusal kept for the start line (copy mode instead).
        assert!(!s.zero_copy);
        let refused = s.zero_copy_refused.as_ref().and_then(|e| e.raw_os_error());
        assert_eq!(refused, Some(libc::EOPNOTSUPP), "{:?}", s.zero_copy_refused);
        bpf::xsk_map_set(&map, 0, s.raw_fd()).expect("map");
        let mut free: Vec<u64> = (0..64).map(|i| (i * xsk::FRAME) as u64).collect();
        assert!(s.fill(&mut free, 64) > 0);
        let _ = Command::new("ping").args(["-6", "-c", "2", "-i", "0.2", "-W", "1", "64:ff9b::c000:201"]).output();
        let mut got = vec![];
        for _ in 0..10 {
            s.receive(&mut got, 16);
            if !got.is_empty() {
                break;
            }
            xsk::wait(&[s.raw_fd()], 100).expect("poll");
        }
        assert!(!got.is_empty(), "no frame on the socket ({} attach, zero copy {})", mode.label(), s.zero_copy);
        let (addr, len) = got[0];
        let (f, off) = umem.frame(addr).expect("frame");
        let f = &f[off..off + len as usize];
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(f[14 + 6], 58, "ICMPv6");
        assert_eq!(&f[14 + 24..14 + 40], &"64:ff9b::c000:201".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert!(off >= 256, "XDP headroom before the frame: {off}");
    });
    t.join().expect("the namespace thread");
}

// A reload swaps a new program in behind the link (BPF_LINK_UPDATE), in
// both attach modes; that the new program's pools then apply is the lab's
// check (tests/lab_e2e.rs, a reload adding a pool4 network).
#[test]
fn program_swapped_behind_the_link() {
    if !root() {
        return;
    }
    // Each mode on its own veth pair: a link's detach after its last
    // descriptor closes is deferred, so the next attach must not meet it.
    for mode in [AttachMode::Native, AttachMode::Generic] {
        let t = std::thread::spawn(move || {
            let ifindex = super::testns::veth_pair();
            let map = bpf::xsk_map(1).expect("XSKMAP");
            let one =
                bpf::load_xdp(&bpf::steering_program(map.as_raw_fd(), POOL6, &POOL4[..1], XDP_PASS)).expect("load");
            let two = bpf::load_xdp(&bpf::steering_program(map.as_raw_fd(), POOL6, &POOL4, XDP_PASS)).expect("load");
            let link = bpf::attach_xdp(&one, ifindex, mode).expect("attach");
            bpf::link_update(&link, &two).unwrap_or_else(|e| panic!("{} link update: {e}", mode.label()));
        });
        t.join().expect("the namespace thread");
    }
}
