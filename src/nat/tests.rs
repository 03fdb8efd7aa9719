//! Stateful NAT64 behaviour, packet by packet through the translator with
//! time passed in; each test names the RFC 6146 rule it checks.

use super::table::TCP_INCOMING_SYN;
use super::tcp::TcpState;
use super::*;
use crate::testpkt::{echo, icmp, tcp, udp, v4_checksums_ok, v6_checksums_ok, V4, V6};
use crate::xlat::{DropReason, Family, Translator, Verdict, XlatConfig, OUT_BUF_LEN};
use std::net::{Ipv4Addr, Ipv6Addr};

const A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x20);
const C: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x30);
const POOL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const OTHER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 8);
const SEC: Millis = 1000;
const MIN: Millis = 60 * SEC;

fn pf() -> crate::Prefix6052 {
    "2001:db8:64::/96".parse().unwrap()
}
fn cfg() -> NatConfig {
    NatConfig::new(pf(), &[POOL])
}

/// A table and a translator, driven packet by packet.
struct Lab {
    t: NatTable,
    x: Translator,
    out: Vec<u8>,
}

impl Lab {
    fn new(cfg: NatConfig) -> Self {
        Lab { t: NatTable::new(cfg, 0, 1), x: Translator::new(XlatConfig::default()), out: vec![0u8; OUT_BUF_LEN] }
    }
    fn send(&mut self, pkt: &[u8], now: Millis) -> (Verdict, Vec<u8>) {
        let v = self.x.translate(pkt, &mut self.out, &mut NatMapper { table: &mut self.t, now });
        if let Err(e) = self.t.check() {
            panic!("table inconsistent after {v:?}: {e}");
        }
        let bytes = match v {
            Verdict::Forward(o) | Verdict::Reply { out: o, .. } => self.out[o.start..o.start + o.len].to_vec(),
            Verdict::Drop(_) => vec![],
        };
        (v, bytes)
    }
    /// Send and expect one translated packet of `fam`.
    fn pass(&mut self, pkt: &[u8], now: Millis, fam: Family) -> Vec<u8> {
        match self.send(pkt, now) {
            (Verdict::Forward(o), b) if o.family == fam => b,
            (v, _) => panic!("expected a {fam:?} packet, got {v:?}"),
        }
    }
}

fn s6(a: Ipv4Addr) -> Ipv6Addr {
    pf().embed(a)
}
fn udp6(src: Ipv6Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    V6::new(src, s6(dst), 17, udp(sport, dport, b"q")).build()
}
fn udp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    V4::new(src, dst, 17, udp(sport, dport, b"r")).build()
}
fn tcp6(src: Ipv6Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    V6::new(src, s6(dst), 6, tcp(sport, dport, 1, flags, b"")).build()
}
fn tcp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    V4::new(src, dst, 6, tcp(sport, dport, 1, flags, b"")).build()
}
fn a4(p: &[u8], o: usize) -> Ipv4Addr {
    Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3])
}
fn a6(p: &[u8], o: usize) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&p[o..o + 16]).unwrap())
}
fn p16(p: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([p[o], p[o + 1]])
}
const ACK: u8 = 0x10;
const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

fn tcp_state(t: &NatTable, v6: (Ipv6Addr, u16)) -> Option<TcpState> {
    t.sessions().find(|s| s.v6 == v6).and_then(|s| s.state)
}

// RFC 6146 3.5.1: an outbound UDP packet creates a BIB entry (port kept,
// 3.5.1.1) and a session; the reply is translated back to the client.
#[test]
fn rfc6146_3_5_1_udp_out_and_back() {
    let mut l = Lab::new(cfg());
    let o = l.pass(&udp6(A, 5000, SERVER, 53), 0, Family::V4);
    assert_eq!((a4(&o, 12), p16(&o, 20)), (POOL, 5000), "pool4 address, port preserved");
    assert_eq!((a4(&o, 16), p16(&o, 22)), (SERVER, 53));
    assert!(v4_checksums_ok(&o));
    assert_eq!((l.t.bib_count(), l.t.session_count()), (1, 1));
    let back = l.pass(&udp4(SERVER, 53, POOL, 5000), SEC, Family::V6);
    assert_eq!((a6(&back, 8), a6(&back, 24)), (s6(SERVER), A));
    assert_eq!((p16(&back, 40), p16(&back, 42)), (53, 5000));
    assert!(v6_checksums_ok(&back));
}

// RFC 4787 REQ-1 (RFC 6146 3.5.1): endpoint-independent mapping: one BIB
// entry serves every destination of the same client port.
#[test]
fn rfc4787_req1_mapping_reused_across_destinations() {
    let mut l = Lab::new(cfg());
    l.t.add_static(Proto::Udp, (C, 1), (POOL, 5000)).unwrap(); // take 5000 so the port is not preserved
    let o1 = l.pass(&udp6(A, 5000, SERVER, 53), 0, Family::V4);
    let o2 = l.pass(&udp6(A, 5000, OTHER, 123), 0, Family::V4);
    assert_ne!(p16(&o1, 20), 5000);
    assert_eq!(p16(&o1, 20), p16(&o2, 20), "same pool4 port for both destinations");
    assert_eq!(l.t.session_count(), 2);
}

// RFC 6146 3.5.1: endpoint-independent filtering (default): any IPv4 host may use the BIB entry.
#[test]
fn rfc6146_3_5_1_endpoint_independent_filtering() {
    let mut l = Lab::new(cfg());
    l.pass(&udp6(A, 5000, SERVER, 53), 0, Family::V4);
    let o = l.pass(&udp4(OTHER, 9999, POOL, 5000), 0, Family::V6);
    assert_eq!(a6(&o, 24), A);
    assert_eq!(l.t.session_count(), 2, "a session for the new remote");
}

// RFC 6146 3.5.1: address-dependent filtering: only hosts the client sent to (any port).
#[test]
fn rfc6146_3_5_1_address_dependent_filtering() {
    let mut l = Lab::new(NatConfig { filtering: Filtering::AddressDependent, ..cfg() });
    l.pass(&udp6(A, 5000, SERVER, 53), 0, Family::V4);
    let (v, e) = l.send(&udp4(OTHER, 53, POOL, 5000), 0);
    assert!(matches!(v, Verdict::Reply { reason: DropReason::Filtered, .. }), "{v:?}");
    assert_eq!((e[20], e[21]), (3, 13), "ICMPv4 administratively prohibited");
    l.pass(&udp4(SERVER, 5353, POOL, 5000), 0, Family::V6);
}

// RFC 6146 3.5.1 (UDP) and 3.5.3 (ICMP queries): an inbound packet with no
// BIB entry is dropped and answered with ICMPv4 Destination Unreachable,
// Host Unreachable (3/1), quoting it, to its IPv4 sender; silent when the
// operator turns the answer off. TCP keeps its own rule (a SYN is held,
// other segments dropped silently).
#[test]
fn rfc6146_3_5_1_inbound_without_bib_answered() {
    let mut l = Lab::new(cfg());
    let probe = udp4(SERVER, 53, POOL, 5000);
    let (v, e) = l.send(&probe, 0);
    assert!(matches!(v, Verdict::Reply { reason: DropReason::NoState, .. }), "{v:?}");
    assert_eq!((e[20], e[21]), (3, 1), "ICMPv4 host unreachable");
    assert_eq!(&e[12..16], &POOL.octets(), "from the pool4 address it was sent to");
    assert_eq!(&e[16..20], &SERVER.octets(), "to the IPv4 sender");
    assert_eq!(&e[28..], &probe[..], "quoting the datagram");
    assert_eq!(l.x.stats.dropped(DropReason::NoState), 1);
    let (v, e) = l.send(&V4::new(SERVER, POOL, 1, echo(8, 77, 1, b"ping")).build(), 0);
    assert!(matches!(v, Verdict::Reply { .. }) && (e[20], e[21]) == (3, 1), "ICMP query: {v:?}");
    let v = l.send(&tcp4(SERVER, 80, POOL, 40000, ACK), 0).0;
    assert_eq!(v, Verdict::Drop(DropReason::NoState), "TCP without SYN: silent");
    let mut quiet = Lab::new(cfg());
    quiet.x = Translator::new(XlatConfig { icmp_no_state: false, ..XlatConfig::default() });
    assert_eq!(quiet.send(&probe, 0).0, Verdict::Drop(DropReason::NoState), "configured silent");
}

// RFC 6146 3.5.2.2: the TCP state machine driven by real packets.
#[test]
fn rfc6146_3_5_2_2_tcp_lifecycle() {
    let mut l = Lab::new(cfg());
    // Non-SYN in CLOSED creates nothing.
    assert_eq!(l.send(&tcp6(A, 40000, SERVER, 80, ACK), 0).0, Verdict::Drop(DropReason::NoState));
    assert_eq!(l.t.bib_count(), 0);
    l.pass(&tcp6(A, 40000, SERVER, 80, SYN), 0, Family::V4);
    assert_eq!(tcp_state(&l.t, (A, 40000)), Some(TcpState::V6Init));
    l.pass(&tcp4(SERVER, 80, POOL, 40000, SYN | ACK), 0, Family::V6);
    assert_eq!(tcp_state(&l.t, (A, 40000)), Some(TcpState::Established));
    l.pass(&tcp6(A, 40000, SERVER, 80, FIN | ACK), 0, Family::V4);
    assert_eq!(tcp_state(&l.t, (A, 40000)), Some(TcpState::V6FinRcv));
    l.pass(&tcp4(SERVER, 80, POOL, 40000, FIN | ACK), 0, Family::V6);
    assert_eq!(tcp_state(&l.t, (A, 40000)), Some(TcpState::V4FinV6FinRcv));
    // Closed connections go after TCP_TRANS, not TCP_EST.
    assert_eq!(l.send(&tcp4(SERVER, 80, POOL, 40000, ACK), 4 * MIN).0, Verdict::Drop(DropReason::NoState));
    assert_eq!(l.t.session_count(), 0);
}

// RFC 6146 3.5.2.2: RST moves ESTABLISHED to TRANS; traffic revives it.
#[test]
fn rfc6146_3_5_2_2_rst_then_revive() {
    let mut l = Lab::new(cfg());
    l.pass(&tcp6(A, 40000, SERVER, 80, SYN), 0, Family::V4);
    l.pass(&tcp4(SERVER, 80, POOL, 40000, SYN | ACK), 0, Family::V6);
    l.pass(&tcp4(SERVER, 80, POOL, 40000, RST), 0, Family::V6);
    assert_eq!(tcp_state(&l.t, (A, 40000)), Some(TcpState::Trans));
    l.pass(&tcp6(A, 40000, SERVER, 80, ACK), MIN, Family::V4);
    assert_eq!(tcp_state(&l.t, (A, 40000)), Some(TcpState::Established));
}

// RFC 6146 3.5.2.2: a V4 SYN to an existing BIB entry (endpoint-independent filtering)
// opens a session in V4 INIT; the policy switch drops externally initiated TCP.
#[test]
fn rfc6146_3_5_2_2_v4_syn_with_bib() {
    let mut l = Lab::new(cfg());
    l.pass(&tcp6(A, 40000, SERVER, 80, SYN), 0, Family::V4);
    l.pass(&tcp4(OTHER, 1234, POOL, 40000, SYN), 0, Family::V6);
    let st: Vec<_> = l.t.sessions().filter(|s| s.remote.0 == OTHER).map(|s| s.state).collect();
    assert_eq!(st, vec![Some(TcpState::V4Init)]);
    let mut l = Lab::new(NatConfig { drop_external_tcp: true, ..cfg() });
    l.pass(&tcp6(A, 40000, SERVER, 80, SYN), 0, Family::V4);
    assert!(matches!(
        l.send(&tcp4(OTHER, 1234, POOL, 40000, SYN), 0).0,
        Verdict::Reply { reason: DropReason::Filtered, .. }
    ));
}

// RFC 6146 4: every timeout just before and just after it fires (lazy expiry on lookup).
#[test]
fn rfc6146_4_timeouts_fire_exactly() {
    let t = Timeouts::default();
    // (set-up packets, lifetime, probe packet)
    type Case = (Vec<Vec<u8>>, Millis, Vec<u8>);
    let cases: Vec<(&str, Case)> = vec![
        ("udp 5 min", (vec![udp6(A, 5000, SERVER, 53)], t.udp, udp4(SERVER, 53, POOL, 5000))),
        (
            "icmp 60 s",
            (
                vec![V6::new(A, s6(SERVER), 58, echo(128, 77, 1, b"")).build()],
                t.icmp,
                V4::new(SERVER, POOL, 1, echo(0, 77, 1, b"")).build(),
            ),
        ),
        (
            "tcp trans 4 min (V6 INIT)",
            (vec![tcp6(A, 40000, SERVER, 80, SYN)], t.tcp_trans, tcp4(SERVER, 80, POOL, 40000, SYN | ACK)),
        ),
        (
            "tcp est 2 h 4 min",
            (
                vec![tcp6(A, 40000, SERVER, 80, SYN), tcp4(SERVER, 80, POOL, 40000, SYN | ACK)],
                t.tcp_est,
                tcp4(SERVER, 80, POOL, 40000, ACK),
            ),
        ),
    ];
    for (name, (setup, life, probe)) in cases {
        let mut l = Lab::new(cfg());
        for p in &setup {
            assert!(matches!(l.send(p, 0).0, Verdict::Forward(_)), "{name}: set-up");
        }
        let mut before = Lab { t: l.t.clone(), x: l.x.clone(), out: vec![0u8; OUT_BUF_LEN] };
        assert!(matches!(before.send(&probe, life - 1).0, Verdict::Forward(_)), "{name}: alive 1 ms before");
        let gone = match l.send(&probe, life).0 {
            Verdict::Drop(r) | Verdict::Reply { reason: r, .. } => Some(r),
            Verdict::Forward(_) => None,
        };
        assert_eq!(gone, Some(DropReason::NoState), "{name}: gone when it fires");
    }
}

// RFC 6146 4: UDP lifetimes are never below UDP_MIN (2 min).
#[test]
fn rfc6146_4_udp_min() {
    let mut c = cfg();
    c.timeouts.udp = 30 * SEC;
    let mut l = Lab::new(c);
    l.pass(&udp6(A, 5000, SERVER, 53), 0, Family::V4);
    l.pass(&udp4(SERVER, 53, POOL, 5000), 2 * MIN - 1, Family::V6);
}

// Expiry never sweeps the whole table at once; the budgeted sweep frees BIB entries and ports.
#[test]
fn expiry_sweep_is_incremental() {
    let mut l = Lab::new(cfg());
    for port in 0..1000u16 {
        l.pass(&udp6(A, 10000 + port, SERVER, 53), 0, Family::V4);
    }
    assert_eq!(l.t.session_count(), 1000);
    let now = Timeouts::default().udp;
    assert!(l.t.expire(now - 1, 5000) == 0, "nothing expires early");
    let mut calls = 0;
    while l.t.session_count() > 0 {
        assert!(l.t.expire(now, 100) <= 100);
        calls += 1;
        assert!(calls <= 11);
    }
    assert_eq!(l.t.bib_count(), 0);
    assert_eq!(l.t.ports_in_use(Proto::Udp, POOL), 0, "ports returned to pool4");
    assert_eq!(l.t.counters.sessions_expired, 1000);
}

// RFC 6146 3.8: hairpinning: B reaches A through A's pool4 transport address.
#[test]
fn rfc6146_3_8_hairpinning() {
    let mut l = Lab::new(cfg());
    l.pass(&udp6(A, 5000, SERVER, 53), 0, Family::V4); // A's BIB: POOL:5000
    let to_pool = l.pass(&udp6(B, 6000, POOL, 5000), 0, Family::V4);
    assert!(l.t.is_pool4(a4(&to_pool, 16)), "the translated packet is for pool4: loop it back in");
    let at_a = l.pass(&to_pool, 0, Family::V6);
    assert_eq!(a6(&at_a, 24), A);
    assert_eq!(p16(&at_a, 42), 5000);
    assert_eq!(a6(&at_a, 8), s6(POOL), "from B's pool4 address, embedded");
    assert_eq!(p16(&at_a, 40), 6000, "B's port (preserved)");
    assert!(v6_checksums_ok(&at_a));
}

// RFC 6146 3.1 / 3.5.1: a static BIB entry makes an IPv6 server reachable from IPv4.
#[test]
fn rfc6146_static_bib_inbound() {
    let srv: Ipv6Addr = "2001:db8:1::80".parse().unwrap();
    let mut l = Lab::new(cfg());
    l.t.add_static(Proto::Tcp, (srv, 80), (POOL, 8080)).unwrap();
    assert!(l.t.add_static(Proto::Tcp, (srv, 80), (POOL, 8081)).is_err(), "one entry per IPv6 transport address");
    assert!(l.t.add_static(Proto::Tcp, (B, 80), (POOL, 8080)).is_err(), "pool4 port taken");
    let o = l.pass(&tcp4(SERVER, 3333, POOL, 8080, SYN), 0, Family::V6);
    assert_eq!((a6(&o, 24), p16(&o, 42)), (srv, 80));
    let r = l.pass(&tcp6(srv, 80, SERVER, 3333, SYN | ACK), 0, Family::V4);
    assert_eq!((a4(&r, 12), p16(&r, 20)), (POOL, 8080));
    assert_eq!(tcp_state(&l.t, (srv, 80)), Some(TcpState::Established));
    // Static entries outlive their sessions; removing one keeps it until its sessions end.
    l.t.remove_static(Proto::Tcp, (srv, 80)).unwrap();
    assert_eq!(l.t.bib_count(), 1);
    l.t.expire(10 * 60 * MIN, 10);
    assert_eq!(l.t.bib_count(), 0);
}

// RFC 6146 3.5.3 / RFC 7915 4.3: an ICMPv4 error reaches the IPv6 host whose flow it concerns.
#[test]
fn rfc6146_icmp_error_delivered_to_right_host() {
    let mut l = Lab::new(cfg());
    l.pass(&udp6(A, 5000, SERVER, 53), 0, Family::V4);
    let ob = l.pass(&udp6(B, 5001, SERVER, 53), 0, Family::V4);
    // The router answers B's packet with Port Unreachable.
    let router = Ipv4Addr::new(198, 51, 100, 254);
    let err = V4::new(router, POOL, 1, icmp(3, 3, [0; 4], &ob)).build();
    let e = l.pass(&err, 0, Family::V6);
    assert_eq!((e[40], e[41]), (1, 4));
    assert_eq!(a6(&e, 24), B, "to B, not A");
    assert_eq!((a6(&e, 48 + 8), p16(&e, 48 + 40)), (B, 5001), "quoted packet back in B's terms");
    // An error about a flow nobody has is dropped.
    let stray = V4::new(POOL, SERVER, 17, udp(7777, 53, b"")).build();
    let err = V4::new(router, POOL, 1, icmp(3, 3, [0; 4], &stray)).build();
    assert_eq!(l.send(&err, 0).0, Verdict::Drop(DropReason::NoState));
}

// RFC 6146 3.5.3: ICMP queries: the identifier is mapped like a port.
#[test]
fn rfc6146_3_5_3_icmp_query() {
    let mut l = Lab::new(cfg());
    let o = l.pass(&V6::new(A, s6(SERVER), 58, echo(128, 77, 1, b"ping")).build(), 0, Family::V4);
    assert_eq!((o[20], p16(&o, 24)), (8, 77));
    let b = l.pass(&V4::new(SERVER, POOL, 1, echo(0, 77, 1, b"ping")).build(), 0, Family::V6);
    assert_eq!((b[40], p16(&b, 44), a6(&b, 24)), (129, 77, A));
}

// RFC 6146 3.5.1.1: no transport address left: dropped with ICMPv6 1/3 (address unreachable).
#[test]
fn rfc6146_3_5_1_1_pool_exhausted() {
    let mut c = cfg();
    c.pool4[0].addrs[0].ports[Proto::Udp as usize] = PortRange { lo: 2000, hi: 2003 };
    let mut l = Lab::new(c);
    for p in 0..4 {
        l.pass(&udp6(A, 6000 + p, SERVER, 53), 0, Family::V4);
    }
    let (v, e) = l.send(&udp6(B, 6000, SERVER, 53), 0);
    assert!(matches!(v, Verdict::Reply { reason: DropReason::PoolExhausted, .. }), "{v:?}");
    assert_eq!((e[40], e[41]), (1, 3));
    assert_eq!(l.t.counters.pool_exhausted, 1);
    // Existing flows still pass.
    l.pass(&udp6(A, 6001, SERVER, 53), 0, Family::V4);
}

// Limits: per host, per /64 and in total; at the limit new flows get ICMPv6 1/3.
#[test]
fn limits_per_host_net_and_total() {
    let mut c = cfg();
    c.limits = Limits { max_sessions: 10, sessions_per_host: 3, sessions_per_net64: 5, bibs_per_host: 100 };
    let mut l = Lab::new(c);
    for p in 0..3 {
        l.pass(&udp6(A, 7000 + p, SERVER, 53), 0, Family::V4);
    }
    let (v, _) = l.send(&udp6(A, 7003, SERVER, 53), 0);
    assert!(matches!(v, Verdict::Reply { reason: DropReason::LimitReached, .. }), "per host: {v:?}");
    l.pass(&udp6(B, 7000, SERVER, 53), 0, Family::V4);
    l.pass(&udp6(B, 7001, SERVER, 53), 0, Family::V4);
    let (v, _) = l.send(&udp6(B, 7002, SERVER, 53), 0);
    assert!(matches!(v, Verdict::Reply { reason: DropReason::LimitReached, .. }), "per /64 (A and B share one): {v:?}");
    for p in 0..3 {
        l.pass(&udp6(C, 7000 + p, SERVER, 53), 0, Family::V4);
    }
    // 8 sessions; inbound sessions to A's entries count against A too.
    assert!(matches!(l.send(&udp4(OTHER, 1, POOL, 7000), 0).0, Verdict::Drop(DropReason::LimitReached)));
    let d: Ipv6Addr = "2001:db8:3::1".parse().unwrap();
    l.pass(&udp6(d, 1, SERVER, 53), 0, Family::V4);
    l.pass(&udp6(d, 2, SERVER, 53), 0, Family::V4);
    let (v, _) = l.send(&udp6(d, 3, SERVER, 53), 0);
    assert!(matches!(v, Verdict::Reply { reason: DropReason::LimitReached, .. }), "total: {v:?}");
    assert_eq!(l.t.session_count(), 10);
}

// Only TCP, UDP and ICMP can be mapped: others are refused (ICMPv6 1/1) and counted.
#[test]
fn unsupported_protocol_refused() {
    let mut l = Lab::new(cfg());
    let (v, _) = l.send(&V6::new(A, s6(SERVER), 47, vec![0u8; 8]).build(), 0);
    assert!(matches!(v, Verdict::Reply { reason: DropReason::UnsupportedProtocol, .. }), "{v:?}");
}

// ---------------------------------------------------------------- shared between threads

fn send_shared(nat: &Nat, x: &mut Translator, out: &mut [u8], pkt: &[u8], now: Millis) -> (Verdict, Vec<u8>) {
    let v = x.translate(pkt, out, &mut nat.at(now));
    let b = match v {
        Verdict::Forward(o) | Verdict::Reply { out: o, .. } => out[o.start..o.start + o.len].to_vec(),
        Verdict::Drop(_) => vec![],
    };
    (v, b)
}

// With several shards a flow's two directions meet in one shard, and the port is still kept.
#[test]
fn sharded_flow_round_trip_keeps_port() {
    let nat = Nat::new(cfg(), 4);
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    for port in [5000u16, 5064, 5128, 5192, 40001] {
        let (v, o) = send_shared(&nat, &mut x, &mut out, &udp6(A, port, SERVER, 53), 0);
        assert!(matches!(v, Verdict::Forward(_)), "{v:?}");
        assert_eq!(p16(&o, 20), port, "RFC 6146 3.5.1.1: port kept in every shard");
        let (v, b) = send_shared(&nat, &mut x, &mut out, &udp4(SERVER, 53, POOL, port), 0);
        assert!(matches!(v, Verdict::Forward(_)), "{v:?}");
        assert_eq!((a6(&b, 24), p16(&b, 42)), (A, port));
    }
    assert_eq!(nat.session_count(), 5);
}

// A static entry whose IPv6 and IPv4 ports fall in different shards works both ways.
#[test]
fn sharded_static_bib_across_shards() {
    let srv: Ipv6Addr = "2001:db8:1::80".parse().unwrap();
    let nat = Nat::new(cfg(), 4);
    assert_ne!(pool4::shard_of_port(80, 4), pool4::shard_of_port(8080, 4));
    nat.add_static(Proto::Tcp, (srv, 80), (POOL, 8080)).unwrap();
    assert!(nat.add_static(Proto::Tcp, (srv, 80), (POOL, 8081)).is_err());
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    let (_, o) = send_shared(&nat, &mut x, &mut out, &tcp4(SERVER, 3333, POOL, 8080, SYN), 0);
    assert_eq!((a6(&o, 24), p16(&o, 42)), (srv, 80));
    let (_, r) = send_shared(&nat, &mut x, &mut out, &tcp6(srv, 80, SERVER, 3333, SYN | ACK), 0);
    assert_eq!((a4(&r, 12), p16(&r, 20)), (POOL, 8080), "the reply uses the static mapping");
    assert_eq!(nat.bib_count(), 1, "no second, dynamic entry");
    nat.remove_static(Proto::Tcp, (srv, 80)).unwrap();
}

// Sessions expire while other threads use them: no panic, no lost or doubled state.
#[test]
fn sessions_expire_while_threads_use_them() {
    let nat = Nat::new(NatConfig { limits: Limits { max_sessions: 4000, ..Limits::default() }, ..cfg() }, 4);
    let clock = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for (host, base) in [(A, 10000u16), (B, 10100), (C, 10000)] {
            let (nat, clock) = (&nat, &clock);
            s.spawn(move || {
                let mut x = Translator::new(XlatConfig::default());
                let mut out = vec![0u8; OUT_BUF_LEN];
                for round in 0..60u16 {
                    for p in 0..150u16 {
                        let now = clock.load(std::sync::atomic::Ordering::Relaxed);
                        let port = base + (p + round * 7) % 300;
                        let (v, o) = send_shared(nat, &mut x, &mut out, &udp6(host, port, SERVER, 53), now);
                        if let Verdict::Forward(_) = v {
                            // The reply must come back to this host and port, unless the session expired in between.
                            let (w, b) =
                                send_shared(nat, &mut x, &mut out, &udp4(SERVER, 53, a4(&o, 12), p16(&o, 20)), now);
                            // A thread descheduled between the two packets
                            // may find its session expired and the port
                            // another host's by then (the clock moved past the
                            // UDP lifetime): only then may the reply go elsewhere.
                            if let Verdict::Forward(_) = w {
                                let expired = clock.load(std::sync::atomic::Ordering::Relaxed) >= now + UDP_DEFAULT;
                                assert!(
                                    expired || (a6(&b, 24), p16(&b, 42)) == (host, port),
                                    "{:?}",
                                    (a6(&b, 24), p16(&b, 42))
                                );
                            }
                        }
                    }
                }
            });
        }
        let (nat, clock) = (&nat, &clock);
        s.spawn(move || {
            for _ in 0..200 {
                clock.fetch_add(20 * SEC, std::sync::atomic::Ordering::Relaxed);
                nat.expire(clock.load(std::sync::atomic::Ordering::Relaxed), 64);
                std::thread::yield_now();
            }
        });
    });
    for i in 0..nat.shard_count() {
        nat.lock_for_test(i).check().unwrap();
    }
    let c = nat.counters();
    assert_eq!(c.sessions_created - c.sessions_expired, nat.session_count() as u64);
    assert!(c.sessions_expired > 0, "expiry ran during the test");
}

// ---------------------------------------------------------------- fragments

/// The first and a later fragment of an IPv4 UDP datagram from SERVER:53 to POOL:`port`.
fn frags4(port: u16, ident: u16) -> (Vec<u8>, Vec<u8>) {
    let mut first = V4::new(SERVER, POOL, 17, udp(53, port, &[7u8; 24]));
    (first.df, first.mf, first.ident) = (false, true, ident);
    let mut later = V4 { raw_l4: true, ..V4::new(SERVER, POOL, 17, vec![8u8; 16]) };
    (later.df, later.frag_offset, later.ident) = (false, 4, ident);
    (first.build(), later.build())
}

// RFC 6146 3.4: later fragments follow the first fragment's mapping, for FRAGMENT_MIN.
#[test]
fn rfc6146_3_4_inbound_fragments() {
    let mut l = Lab::new(cfg());
    l.pass(&udp6(A, 5000, SERVER, 53), 0, Family::V4);
    let (first, later) = frags4(5000, 0x4242);
    // A later fragment before its first: no state to map it by.
    assert_eq!(l.send(&later, 0).0, Verdict::Drop(DropReason::FragmentNoState));
    let f = l.pass(&first, 0, Family::V6);
    let g = l.pass(&later, 1000, Family::V6);
    for p in [&f, &g] {
        assert_eq!((p[6], a6(p, 24), a6(p, 8)), (44, A, s6(SERVER)), "Fragment header, to A, from the server");
        assert_eq!(u32::from_be_bytes([p[44], p[45], p[46], p[47]]), 0x4242);
    }
    assert_eq!(p16(&g, 42) >> 3, 4, "offset kept");
    // After FRAGMENT_MIN the state is gone.
    let (first2, later2) = frags4(5000, 0x4343);
    l.pass(&first2, 10_000, Family::V6);
    assert_eq!(l.send(&later2, 10_000 + frag::FRAGMENT_MIN).0, Verdict::Drop(DropReason::FragmentNoState));
}

// RFC 6146 3.4: outbound IPv6 fragments take the pool4 address of their first fragment.
#[test]
fn rfc6146_3_4_outbound_fragments() {
    let mut l = Lab::new(cfg());
    let first = V6::new(A, s6(SERVER), 17, udp(5000, 53, &[1u8; 40])).fragment(0, true, 77).build();
    let later = V6 { raw_l4: true, ..V6::new(A, s6(SERVER), 17, vec![2u8; 16]) }.fragment(6, false, 77).build();
    let f = l.pass(&first, 0, Family::V4);
    let g = l.pass(&later, 0, Family::V4);
    assert_eq!((a4(&f, 12), a4(&g, 12)), (POOL, POOL));
    assert_eq!((a4(&g, 16), p16(&g, 4)), (SERVER, 77), "to the server, IPv4 ID from the Fragment header");
}

// The shared NAT keeps fragment state apart from the shards: later fragments have no port.
#[test]
fn sharded_fragments() {
    let nat = Nat::new(cfg(), 4);
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    send_shared(&nat, &mut x, &mut out, &udp6(A, 5000, SERVER, 53), 0);
    let (first, later) = frags4(5000, 9);
    assert!(matches!(send_shared(&nat, &mut x, &mut out, &first, 0).0, Verdict::Forward(_)));
    let (v, g) = send_shared(&nat, &mut x, &mut out, &later, 0);
    assert!(matches!(v, Verdict::Forward(_)), "{v:?}");
    assert_eq!(a6(&g, 24), A);
}

// ---------------------------------------------------------------- IPv4 SYN held (simultaneous open)

// RFC 6146 3.5.2.2: a V4 SYN with no BIB entry is held; a matching V6 SYN within
// TCP_INCOMING_SYN establishes the session and releases the held SYN to the IPv6 host.
#[test]
fn rfc6146_3_5_2_2_simultaneous_open() {
    let mut l = Lab::new(cfg());
    let syn4 = tcp4(SERVER, 80, POOL, 40000, SYN);
    assert_eq!(l.send(&syn4, 0).0, Verdict::Drop(DropReason::V4SynHeld));
    assert_eq!(l.t.held_syns(), 1);
    assert_eq!(l.send(&syn4, 100).0, Verdict::Drop(DropReason::V4SynHeld), "a retransmission is not held twice");
    assert_eq!(l.t.held_syns(), 1);
    l.pass(&tcp6(A, 40000, SERVER, 80, SYN), 5 * SEC, Family::V4);
    assert_eq!(tcp_state(&l.t, (A, 40000)), Some(TcpState::Established), "V4 INIT + V6 SYN → ESTABLISHED");
    let held = l.t.take_released_syn().expect("the held SYN is released");
    assert_eq!(held, syn4);
    let at_a = l.pass(&held, 5 * SEC, Family::V6);
    assert_eq!((a6(&at_a, 24), p16(&at_a, 42), at_a[40 + 13]), (A, 40000, SYN));
    assert_eq!(l.t.take_unanswered_syn(), None);
}

// RFC 6146 3.5.2.2: a held V4 SYN nobody answers within 6 s gets ICMPv4 Port Unreachable.
#[test]
fn rfc6146_3_5_2_2_unanswered_syn_port_unreachable() {
    let mut l = Lab::new(cfg());
    let syn4 = tcp4(SERVER, 80, POOL, 40000, SYN);
    l.send(&syn4, 0);
    l.t.expire(TCP_INCOMING_SYN - 1, 10);
    assert_eq!(l.t.take_unanswered_syn(), None, "not before TCP_INCOMING_SYN");
    l.t.expire(TCP_INCOMING_SYN, 10);
    let pkt = l.t.take_unanswered_syn().expect("timed out");
    let v = l.x.icmp4_error_for(&pkt, 3, 3, DropReason::V4SynHeld, &mut l.out);
    let Verdict::Reply { out: o, .. } = v else { panic!("{v:?}") };
    let e = &l.out[..o.len];
    assert_eq!((e[20], e[21], a4(e, 16)), (3, 3, SERVER));
    assert_eq!(&e[28..], &syn4[..], "quotes the SYN");
    assert!(v4_checksums_ok(e));
    // Too late now for the IPv6 side: a new V6 SYN opens a normal V6 INIT session.
    l.pass(&tcp6(A, 40000, SERVER, 80, SYN), TCP_INCOMING_SYN + 1, Family::V4);
    assert_eq!(tcp_state(&l.t, (A, 40000)), Some(TcpState::V6Init));
    assert_eq!(l.t.take_released_syn(), None);
}

// Held SYNs are bounded; with drop_external_tcp none is held.
#[test]
fn held_syns_bounded_and_policy() {
    let mut l = Lab::new(cfg());
    let mut limited = 0;
    for p in 0..300u16 {
        if l.send(&tcp4(SERVER, 1000 + p, POOL, 40000, SYN), 0).0 == Verdict::Drop(DropReason::LimitReached) {
            limited += 1;
        }
    }
    assert_eq!((l.t.held_syns(), limited), (table::MAX_HELD_SYNS, 300 - table::MAX_HELD_SYNS));
    let mut l = Lab::new(NatConfig { drop_external_tcp: true, ..cfg() });
    assert!(matches!(
        l.send(&tcp4(SERVER, 80, POOL, 40000, SYN), 0).0,
        Verdict::Reply { reason: DropReason::Filtered, .. }
    ));
    assert_eq!(l.t.held_syns(), 0);
}

// RFC 6146 3.5.2.2: under address-dependent filtering a V4 SYN from a new host is held,
// and released when the IPv6 host opens towards it.
#[test]
fn rfc6146_3_5_2_2_adf_syn_held_then_released() {
    let mut l = Lab::new(NatConfig { filtering: Filtering::AddressDependent, ..cfg() });
    l.pass(&tcp6(A, 40000, SERVER, 80, SYN), 0, Family::V4);
    assert_eq!(l.send(&tcp4(OTHER, 443, POOL, 40000, SYN), 0).0, Verdict::Drop(DropReason::V4SynHeld));
    l.pass(&tcp6(A, 40000, OTHER, 443, SYN), SEC, Family::V4);
    assert!(l.t.take_released_syn().is_some());
    let st: Vec<_> = l.t.sessions().filter(|s| s.remote == (OTHER, 443)).map(|s| s.state).collect();
    assert_eq!(st, vec![Some(TcpState::Established)]);
}

// The shared NAT holds and releases SYNs like a single table.
#[test]
fn sharded_simultaneous_open() {
    let nat = Nat::new(cfg(), 4);
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    let syn4 = tcp4(SERVER, 80, POOL, 40000, SYN);
    assert_eq!(send_shared(&nat, &mut x, &mut out, &syn4, 0).0, Verdict::Drop(DropReason::V4SynHeld));
    send_shared(&nat, &mut x, &mut out, &tcp6(A, 40000, SERVER, 80, SYN), SEC);
    assert_eq!(nat.take_released_syn(), Some(syn4));
    send_shared(&nat, &mut x, &mut out, &tcp4(OTHER, 81, POOL, 40001, SYN), SEC);
    nat.expire(SEC + TCP_INCOMING_SYN, 16);
    assert!(nat.take_unanswered_syn().is_some());
}

// A reload (Nat::reconfigure) keeps every session and BIB entry: a flow on
// an address taken out of pool4 still works both ways until it ends, new
// flows get the new pool, and the new timeouts apply from the next packet
// (RFC 6146 4 lifetimes, changed by the operator at run time).
#[test]
fn reconfigure_keeps_state_and_drains_removed_addresses() {
    let nat = Nat::new(cfg(), 4);
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    let (_, o) = send_shared(&nat, &mut x, &mut out, &udp6(A, 5000, SERVER, 53), 0);
    assert_eq!(a4(&o, 12), POOL);
    let new_pool = Ipv4Addr::new(203, 0, 113, 9);
    let mut c = NatConfig::new(pf(), &[new_pool]);
    c.timeouts.udp = 10 * MIN;
    nat.reconfigure(&c);
    assert_eq!(nat.session_count(), 1, "the reload kept the session");
    // The old flow still goes out from, and comes back to, its old address.
    let (_, o) = send_shared(&nat, &mut x, &mut out, &udp6(A, 5000, SERVER, 53), SEC);
    assert_eq!((a4(&o, 12), p16(&o, 20)), (POOL, 5000));
    let (v, b) = send_shared(&nat, &mut x, &mut out, &udp4(SERVER, 53, POOL, 5000), SEC);
    assert!(matches!(v, Verdict::Forward(_)), "{v:?}");
    assert_eq!(a6(&b, 24), A);
    // A new flow gets the new pool.
    let (_, o) = send_shared(&nat, &mut x, &mut out, &udp6(B, 6000, SERVER, 53), SEC);
    assert_eq!((a4(&o, 12), p16(&o, 20)), (new_pool, 6000));
    // The new UDP timeout counts from the last packet (at 1 s): alive at 9 min, gone after 10.
    nat.expire(9 * MIN, usize::MAX);
    assert_eq!(nat.session_count(), 2);
    nat.expire(10 * MIN + 2 * SEC, usize::MAX);
    assert_eq!(nat.session_count(), 0);
    for i in 0..4 {
        nat.lock_for_test(i).check().unwrap();
    }
    // A port still held by a live BIB entry on a kept address is not handed out twice.
    let (_, o) = send_shared(&nat, &mut x, &mut out, &udp6(A, 7000, SERVER, 53), 11 * MIN);
    nat.reconfigure(&c);
    let (_, o2) = send_shared(&nat, &mut x, &mut out, &udp6(B, 7000, SERVER, 53), 11 * MIN);
    assert_eq!((a4(&o, 12), p16(&o, 20)), (new_pool, 7000));
    assert_eq!(a4(&o2, 12), new_pool);
    assert_ne!(p16(&o2, 20), 7000, "RFC 6146 3.5.1.1: the reserved port is taken");
}

// Issue 18 (limits hold as configured, not per shard): with 16 shards and
// a flow's shard following its source port's block, 1500 /64s each using
// ports 3000-3019 (two blocks: two shards) reach the configured total of
// 30000 sessions, each /64 exactly its limit of 20; the next flow is
// refused by the total; with room in the total an innocent host is served
// on a port of every shard; and one /64 meets its limit exactly however its
// ports spread over the shards.
#[test]
fn limits_hold_for_the_whole_nat_not_per_shard() {
    let pool: Vec<Ipv4Addr> = (0..=255).map(|i| Ipv4Addr::new(203, 0, 113, i)).collect();
    let net = |i: u16, host: u16| Ipv6Addr::new(0x2001, 0xdb8, 0x100 + i / 256, i % 256, 0, 0, 0, host);
    let mk = |max_sessions: usize, per_net64: u32| {
        let mut c = NatConfig::new(pf(), &pool);
        c.limits =
            Limits { max_sessions, sessions_per_host: 65536, sessions_per_net64: per_net64, bibs_per_host: 65536 };
        Nat::new(c, 16)
    };
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    let mut flood = |nat: &Nat, x: &mut Translator| {
        let mut ok = 0;
        for i in 0..1500u16 {
            for port in 3000..3020 {
                let (v, _) = send_shared(nat, x, &mut out, &udp6(net(i, 1), port, SERVER, 53), 0);
                ok += matches!(v, Verdict::Forward(_)) as usize;
            }
        }
        ok
    };
    let nat = mk(30_000, 20);
    assert_eq!(flood(&nat, &mut x), 30_000, "the configured total, not a shard's share of it");
    assert_eq!(nat.session_count(), 30_000);
    let mut out = vec![0u8; OUT_BUF_LEN];
    let (v, _) = send_shared(&nat, &mut x, &mut out, &udp6(net(2000, 1), 4000, SERVER, 53), 0);
    assert!(matches!(v, Verdict::Reply { reason: DropReason::LimitReached, .. }), "the total is full: {v:?}");

    let nat = mk(40_000, 20);
    flood(&nat, &mut x);
    let innocent = net(3000, 7);
    for shard in 0..16u16 {
        let port = 10_000 + shard * 64; // one port in every shard's blocks
        let (v, _) = send_shared(&nat, &mut x, &mut out, &udp6(innocent, port, SERVER, 53), 0);
        assert!(matches!(v, Verdict::Forward(_)), "innocent host refused on port {port}: {v:?}");
    }
    let (v, _) = send_shared(&nat, &mut x, &mut out, &udp6(net(5, 9), 9000, SERVER, 53), 0);
    assert!(matches!(v, Verdict::Reply { reason: DropReason::LimitReached, .. }), "that /64 is at its 20: {v:?}");

    let nat = mk(1 << 20, 100);
    let spread = (0..150u16).filter(|&k| {
        let (v, _) = send_shared(&nat, &mut x, &mut out, &udp6(net(7, 1 + k % 3), 1024 + k * 97, SERVER, 53), 0);
        matches!(v, Verdict::Forward(_))
    });
    assert_eq!(spread.count(), 100, "one /64's limit, exactly, across all shards");
}

// ---- Port blocks (RFC 7753) and deterministic mapping (RFC 7422) ----

fn blocks_cfg(size: u16, max: u16, ports: Option<PortRange>) -> NatConfig {
    let mut c = cfg();
    c.ports = Ports { mode: PortMode::Blocks, block_size: size, max_blocks: max, subscriber: 64, hold: 2 * MIN };
    c.events = EventSel { blocks: true, sessions: false, destination: false };
    if let Some(r) = ports {
        c.pool4[0].addrs[0].ports = [r; 3];
    }
    c
}

fn sport_of(p: &[u8]) -> u16 {
    p16(p, 20)
}

fn drain(t: &mut NatTable) -> Vec<MapEvent> {
    let mut v = vec![];
    assert_eq!(t.drain_events(&mut v), 0, "no event lost");
    v
}

// RFC 7753 section 3 (port-set allocation): a subscriber's first flow gets
// it a block; every later flow of the subscriber, from any address of its
// /64, takes a port inside that block, keeping the port's offset in the
// block (port preservation inside the block); one record for all of them.
#[test]
fn rfc7753_a_subscriber_gets_a_block_and_its_flows_stay_in_it() {
    let mut l = Lab::new(blocks_cfg(512, 8, None));
    let p = l.pass(&udp6(A, 5000, SERVER, 53), 0, Family::V4);
    let (lo, hi) = l.t.block_owner(Proto::Udp, POOL, sport_of(&p)).map(|(_, lo, hi)| (lo, hi)).unwrap();
    assert_eq!(hi - lo + 1, 512);
    assert!(lo >= 1024);
    assert_eq!(sport_of(&p) % 512, 5000 % 512, "the port keeps its offset in the block");
    for (host, sport) in [(A, 5001), (B, 6000), (B, 40000), (A, 5000 + 512)] {
        let q = l.pass(&udp6(host, sport, OTHER, 53), SEC, Family::V4);
        assert!((lo..=hi).contains(&sport_of(&q)), "[{host}]:{sport} got {} outside {lo}-{hi}", sport_of(&q));
    }
    let (sub, _, _) = l.t.block_owner(Proto::Udp, POOL, lo).unwrap();
    assert_eq!(sub.to_string(), "2001:db8:1::/64");
    let ev = drain(&mut l.t);
    assert_eq!(ev.len(), 1, "one record for five flows: {ev:?}");
    assert_eq!((ev[0].kind, ev[0].v4, ev[0].lo, ev[0].hi, ev[0].v6_len), (EventKind::BlockAllocated, POOL, lo, hi, 64));
    // Another subscriber gets another block.
    let q = l.pass(&udp6(C, 5000, SERVER, 53), SEC, Family::V4);
    assert!(!(lo..=hi).contains(&sport_of(&q)));
}

// RFC 7753 section 3: a full block brings another, up to max_blocks; past
// that, a new flow is refused as pool exhaustion is (counted, ICMPv6 error
// per RFC 6146 3.5.1.1), while other subscribers are not affected.
#[test]
fn rfc7753_a_full_block_brings_another_up_to_the_maximum() {
    let mut l = Lab::new(blocks_cfg(64, 2, None));
    let mut ports = std::collections::HashSet::new();
    for i in 0..128u16 {
        let p = l.pass(&udp6(A, 3000 + i, SERVER, 53), 0, Family::V4);
        assert!(ports.insert(sport_of(&p)));
    }
    assert_eq!(l.t.blocks_of(A).len(), 2);
    assert_eq!(drain(&mut l.t).len(), 2, "two blocks, two records");
    let (v, _) = l.send(&udp6(A, 4000, SERVER, 53), 0);
    assert!(matches!(v, Verdict::Reply { .. }), "the 129th flow is refused with an ICMPv6 error: {v:?}");
    assert_eq!(l.t.counters.pool_exhausted, 1);
    l.pass(&udp6(C, 4000, SERVER, 53), 0, Family::V4);
}

// draft-ietf-sunset4-nat64-port-allocation / RFC 7753: a block goes back
// to the pool only after its last session ended plus the hold time, so a
// new owner's traffic cannot be blamed on the previous one. One 64-port
// block in the whole pool: the second subscriber waits until the hold ends.
#[test]
fn rfc7753_a_block_returns_only_after_the_hold_time() {
    let mut l = Lab::new(blocks_cfg(64, 1, Some(PortRange { lo: 1024, hi: 1087 })));
    l.pass(&udp6(A, 5000, SERVER, 53), 0, Family::V4);
    let udp_life = l.t.config().timeouts.udp;
    // The session expires at udp_life; the block is held for 2 min more.
    l.t.expire(udp_life, 1000);
    assert_eq!(l.t.session_count(), 0);
    let (v, _) = l.send(&udp6(C, 5000, SERVER, 53), udp_life + MIN);
    assert!(matches!(v, Verdict::Reply { .. }), "still A's during the hold: {v:?}");
    // A may come back to its own block meanwhile and keep it.
    l.pass(&udp6(B, 7000, SERVER, 53), udp_life + MIN, Family::V4);
    let back = udp_life + MIN;
    l.t.expire(back + udp_life, 1000);
    l.t.expire(back + udp_life + 2 * MIN - 1, 1000);
    assert_eq!(l.t.block_census().0, 1, "held until the end of the hold time");
    l.t.expire(back + udp_life + 2 * MIN, 1000);
    assert_eq!(l.t.block_census(), (0, 0));
    let p = l.pass(&udp6(C, 5000, SERVER, 53), back + udp_life + 2 * MIN, Family::V4);
    assert_eq!(l.t.block_owner(Proto::Udp, POOL, sport_of(&p)).unwrap().0.to_string(), "2001:db8:2::/64");
    let ev: Vec<_> = drain(&mut l.t).iter().map(|e| (e.kind, e.v6, e.at)).collect();
    let end = back + udp_life + 2 * MIN;
    assert_eq!(
        ev,
        vec![
            (EventKind::BlockAllocated, "2001:db8:1::".parse().unwrap(), 0),
            (EventKind::BlockReleased, "2001:db8:1::".parse().unwrap(), end),
            (EventKind::BlockAllocated, "2001:db8:2::".parse().unwrap(), end),
        ]
    );
}

// Port blocks across shards: a subscriber's flows all go to one shard and
// its blocks are that shard's, so replies (found by destination port) reach
// the same table; limits and the table's invariants hold in every shard.
#[test]
fn blocks_across_shards_route_replies_to_the_owner() {
    let nat = Nat::new(blocks_cfg(256, 4, None), 16);
    let mut out = vec![0u8; OUT_BUF_LEN];
    let mut x = Translator::new(XlatConfig::default());
    for h in 0..40u16 {
        let host = Ipv6Addr::new(0x2001, 0xdb8, 7, h, 0, 0, 0, 1);
        for sport in [1000, 2000, 33333, 65000] {
            let v = x.translate(&udp6(host, sport, SERVER, 53), &mut out, &mut nat.at(0));
            let Verdict::Forward(o) = v else { panic!("{v:?}") };
            let p = &out[o.start..o.start + o.len];
            let (v4, port4) = (a4(p, 12), sport_of(p));
            let back = x.translate(&udp4(SERVER, 53, v4, port4), &mut out, &mut nat.at(0));
            let Verdict::Forward(o) = back else { panic!("reply to {v4}:{port4}: {back:?}") };
            assert_eq!(a6(&out[o.start..], 24), host);
        }
    }
    for i in 0..16 {
        nat.lock_for_test(i).check().unwrap();
    }
}

// RFC 7422 section 2: deterministic mapping. Subscriber i of the clients
// prefix holds a block found by formula, with no state to log; replies
// reach it through the shard the formula names; a host outside the
// prefix gets nothing.
#[test]
fn rfc7422_deterministic_subscribers_take_their_formula_block() {
    let mut c = NatConfig::new(pf(), &[POOL, Ipv4Addr::new(203, 0, 113, 2), Ipv4Addr::new(203, 0, 113, 3)]);
    c.pool4[0].clients = Some("2001:db8:1::/56".parse().unwrap());
    c.ports = Ports { mode: PortMode::Deterministic, block_size: 512, subscriber: 64, ..Ports::default() };
    c.events = EventSel { blocks: true, sessions: false, destination: false };
    let det = DetMap::new(&c.pool4[0], &c.ports).unwrap();
    let nat = Nat::new(c, 16);
    let mut out = vec![0u8; OUT_BUF_LEN];
    let mut x = Translator::new(XlatConfig::default());
    for i in [0u16, 1, 5, 125, 200, 255] {
        let host = Ipv6Addr::new(0x2001, 0xdb8, 1, i, 0, 0, 0, 9);
        let (addr, b) = det.map(host).unwrap();
        let v = x.translate(&udp6(host, 5000, SERVER, 53), &mut out, &mut nat.at(0));
        let Verdict::Forward(o) = v else { panic!("{v:?}") };
        let p = out[o.start..o.start + o.len].to_vec();
        assert_eq!((a4(&p, 12), sport_of(&p) / 512), (addr, b), "subscriber {i}");
        let sub = crate::addr::Net6 { addr: Ipv6Addr::new(0x2001, 0xdb8, 1, i, 0, 0, 0, 0), len: 64 };
        assert_eq!(det.who(addr, sport_of(&p)), Some(sub));
        let back = x.translate(&udp4(SERVER, 53, addr, sport_of(&p)), &mut out, &mut nat.at(0));
        assert!(matches!(back, Verdict::Forward(_)), "reply for subscriber {i}: {back:?}");
    }
    let v = x.translate(&udp6(C, 5000, SERVER, 53), &mut out, &mut nat.at(0));
    assert!(matches!(v, Verdict::Reply { .. } | Verdict::Drop(_)), "{v:?}");
    for i in 0..16 {
        nat.lock_for_test(i).check().unwrap();
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    // RFC 7753: whatever the order of flows, expiries and hold times, no
    // port is ever in two blocks and every session's port lies in a block
    // its own subscriber holds (NatTable::check after every step).
    #[test]
    fn blocks_never_shared_and_sessions_stay_in_their_blocks(
        steps in proptest::collection::vec((0u8..6, 0u16..200, 0u8..4, 0u64..200_000), 1..300)
    ) {
        let mut l = Lab::new(blocks_cfg(16, 3, Some(PortRange { lo: 1024, hi: 1151 })));
        let mut now = 0;
        for (host, sport, op, dt) in steps {
            now += dt;
            let h = Ipv6Addr::new(0x2001, 0xdb8, host as u16 % 3, 0, 0, 0, 0, host as u16);
            match op {
                0 | 1 => { l.send(&udp6(h, 2000 + sport, SERVER, 53), now); }
                2 => { l.send(&tcp6(h, 2000 + sport, SERVER, 80, 0x02), now); }
                _ => {
                    l.t.expire(now, 500);
                    proptest::prop_assert!(l.t.check().is_ok(), "{:?}", l.t.check());
                }
            }
        }
    }
}

// Issue 14 section 4: a customer's prefix has its own pool4 address; its
// subscribers' blocks come from that address only, and the log's events
// name the customer, while everyone else uses the shared pool.
#[test]
fn a_customer_pool_serves_its_prefix_and_is_named_in_the_log() {
    let mut c = blocks_cfg(512, 4, None);
    let own = Ipv4Addr::new(203, 0, 113, 9);
    c.pool4.insert(0, PoolGroup { clients: Some("2001:db8:2::/48".parse().unwrap()), addrs: vec![PoolAddr::new(own)] });
    let mut l = Lab::new(c);
    let p = l.pass(&udp6(C, 5000, SERVER, 53), 0, Family::V4);
    assert_eq!(a4(&p, 12), own);
    let p = l.pass(&udp6(A, 5000, SERVER, 53), 0, Family::V4);
    assert_eq!(a4(&p, 12), POOL);
    let ev = drain(&mut l.t);
    assert_eq!(
        ev.iter().map(|e| (e.v4, e.customer.map(|n| n.to_string()))).collect::<Vec<_>>(),
        [(own, Some("2001:db8:2::/48".to_string())), (POOL, None)]
    );
}

// ---- Restarts keep the table (issue 15) ----

fn nat_flow(nat: &Nat, x: &mut Translator, out: &mut [u8], pkt: &[u8], now: Millis) -> Option<Vec<u8>> {
    match x.translate(pkt, out, &mut nat.at(now)) {
        Verdict::Forward(o) => Some(out[o.start..o.start + o.len].to_vec()),
        _ => None,
    }
}

// Issue 15: a snapshot written and read back into a fresh NAT (a restart
// 30 s later) keeps every mapping: the same client port gets the same pool4
// address and port, the reply comes back to it, the TCP connection is still
// ESTABLISHED (a bare ACK passes), and the static entry's session is there.
#[test]
fn a_restart_keeps_mappings_sessions_and_tcp_states() {
    let mut c = cfg();
    c.pool4[0].addrs.push(PoolAddr::new(Ipv4Addr::new(203, 0, 113, 2)));
    let nat = Nat::new(c.clone(), 4);
    nat.add_static(Proto::Tcp, (B, 8080), (POOL, 8080)).unwrap();
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    let u = nat_flow(&nat, &mut x, &mut out, &udp6(A, 5000, SERVER, 53), 0).unwrap();
    let t = nat_flow(&nat, &mut x, &mut out, &tcp6(A, 40000, SERVER, 443, 0x02), 0).unwrap();
    let (tv4, tport) = (a4(&t, 12), p16(&t, 20));
    nat_flow(&nat, &mut x, &mut out, &tcp4(SERVER, 443, tv4, tport, 0x12), 10).unwrap();
    nat_flow(&nat, &mut x, &mut out, &tcp6(A, 40000, SERVER, 443, 0x10), 20).unwrap();
    nat_flow(&nat, &mut x, &mut out, &tcp4(OTHER, 1234, POOL, 8080, 0x02), 20).unwrap();
    let bytes = nat.snapshot(1000, 1_796_133_727_000).encode();
    let st = state::State::decode(&bytes).unwrap();
    assert_eq!((st.bibs.len(), st.sessions.len()), (3, 3));

    let fresh = Nat::new(c, 4);
    fresh.add_static(Proto::Tcp, (B, 8080), (POOL, 8080)).unwrap();
    let r = fresh.restore(&st, 5, 30 * SEC);
    assert_eq!((r.bibs, r.sessions, r.dropped(), r.expired), (2, 3, 0, 0), "{r:?}");
    assert_eq!(fresh.session_count(), 3);
    let again = nat_flow(&fresh, &mut x, &mut out, &udp6(A, 5000, SERVER, 53), 10).unwrap();
    assert_eq!((a4(&again, 12), p16(&again, 20)), (a4(&u, 12), p16(&u, 20)), "same pool4 address and port");
    let back = nat_flow(&fresh, &mut x, &mut out, &udp4(SERVER, 53, a4(&u, 12), p16(&u, 20)), 10).unwrap();
    assert_eq!((a6(&back, 24), p16(&back, 42)), (A, 5000));
    // RFC 6146 3.5.2.2: only an ESTABLISHED session passes a bare ACK from IPv4 with no SYN.
    assert!(nat_flow(&fresh, &mut x, &mut out, &tcp4(SERVER, 443, tv4, tport, 0x10), 20).is_some(), "TCP state kept");
    for i in 0..4 {
        fresh.lock_for_test(i).check().unwrap();
    }
}

// Issue 15: what no longer fits is left out and counted: sessions whose
// lifetime ran out during the gap (UDP 5 min), entries on an address that
// left pool4, and everything when pool6 changed; a BIB entry left with no
// session goes too.
#[test]
fn a_restart_drops_what_expired_or_no_longer_fits() {
    let mut c = cfg();
    let other = Ipv4Addr::new(203, 0, 113, 2);
    c.pool4[0].addrs = vec![PoolAddr::new(other)];
    let nat = Nat::new(c, 1);
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    nat_flow(&nat, &mut x, &mut out, &udp6(A, 5000, SERVER, 53), 0).unwrap();
    nat_flow(&nat, &mut x, &mut out, &tcp6(A, 40000, SERVER, 443, 0x02), 0).unwrap();
    let st = nat.snapshot(0, 1_796_133_727_000);
    // Back after 6 minutes on a pool without that address: the UDP session
    // expired (5 min), the TCP one (4 min TCP_TRANS) too.
    let fresh = Nat::new(cfg(), 1);
    let r = fresh.restore(&st, 0, 6 * MIN);
    assert_eq!((r.sessions, r.expired, r.not_in_pool4), (0, 2, 2), "{r:?}");
    assert_eq!(fresh.session_count() + fresh.bib_count(), 0);
    // Same address still in pool4, 1 min later: both come back.
    let same = Nat::new(
        {
            let mut c = cfg();
            c.pool4[0].addrs = vec![PoolAddr::new(other)];
            c
        },
        1,
    );
    let r = same.restore(&st, 0, MIN);
    assert_eq!((r.bibs, r.sessions, r.dropped()), (2, 2, 0), "{r:?}");
    let moved = Nat::new(NatConfig::new("2001:db8:65::/96".parse().unwrap(), &[other]), 1);
    let r = moved.restore(&st, 0, MIN);
    assert_eq!((r.pool6_changed, r.sessions), (4, 0), "{r:?}");
}

// Issue 15 with RFC 7753: a subscriber's block survives the restart with
// its owner, so its next flow takes a port in the same block, and a held
// block keeps the rest of its hold time.
#[test]
fn a_restart_keeps_port_blocks() {
    let c = blocks_cfg(512, 4, None);
    let nat = Nat::new(c.clone(), 4);
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    let p = nat_flow(&nat, &mut x, &mut out, &udp6(A, 5000, SERVER, 53), 0).unwrap();
    let st = state::State::decode(&nat.snapshot(1000, 0).encode()).unwrap();
    assert_eq!(st.blocks.len(), 1);
    let fresh = Nat::new(c, 4);
    let r = fresh.restore(&st, 0, 10 * SEC);
    assert_eq!((r.blocks, r.sessions, r.dropped()), (1, 1, 0), "{r:?}");
    let q = nat_flow(&fresh, &mut x, &mut out, &udp6(B, 7000, OTHER, 53), 10).unwrap();
    assert_eq!((a4(&q, 12), p16(&q, 20) / 512), (a4(&p, 12), p16(&p, 20) / 512), "the same block, same address");
    assert_eq!(fresh.block_census(), (1, 1));
    for i in 0..4 {
        fresh.lock_for_test(i).check().unwrap();
    }
}

// RFC 6146 3.5.2.2 with the table's bound: held IPv4 SYNs that time out
// while earlier answers still wait (nobody took them) never make more than
// MAX_HELD_SYNS waiting answers (the fuzz campaign found 511).
#[test]
fn unanswered_syns_stay_bounded() {
    let mut l = Lab::new(cfg());
    // 200 time out and wait; then 256 more are held (200 < 256 waiting lets
    // them in) and time out too.
    for (round, n) in [(0u64, 200u16), (1, 300)] {
        for i in 0..n {
            l.send(&tcp4(SERVER, 1000 + i, POOL, 7000 + i + 1000 * round as u16, 0x02), round * 10 * SEC);
        }
        l.t.expire(round * 10 * SEC + TCP_INCOMING_SYN, 0);
        assert!(l.t.check().is_ok(), "{:?}", l.t.check());
    }
    let mut answers = 0;
    while l.t.take_unanswered_syn().is_some() {
        answers += 1;
    }
    assert_eq!(answers, super::table::MAX_HELD_SYNS);
}

// Issue 15: lifetimes read from a state file are capped at a week (the
// longest a configuration allows): a damaged count of u64::MAX restores a
// session that expires within the week instead of overflowing the clock.
#[test]
fn restored_lifetimes_are_capped() {
    let nat = Nat::new(cfg(), 1);
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    nat_flow(&nat, &mut x, &mut out, &udp6(A, 5000, SERVER, 53), 0).unwrap();
    let mut st = nat.snapshot(0, 0);
    st.sessions[0].remaining = u64::MAX;
    let fresh = Nat::new(cfg(), 1);
    let r = fresh.restore(&st, 1000, 0);
    assert_eq!(r.sessions, 1);
    assert!(fresh.sessions()[0].expires <= 1000 + WEEK);
}

// ---------------------------------------------------------------- active/standby sync (issue 15)

/// Everything the active recorded, as wire records through encode and decode.
fn sync_records(active: &Nat) -> Vec<sync::SyncRec> {
    let mut ev = Vec::new();
    assert_eq!(active.drain_sync(&mut ev), 0, "nothing lost");
    let recs: Vec<_> = ev
        .iter()
        .map(|e| match *e {
            sync::SyncEvent::Up(s) => sync::SyncRec::Up(s),
            sync::SyncEvent::Gone(s) => sync::SyncRec::Gone(s),
        })
        .collect();
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    sync::pack(recs, &mut buf, |b| {
        let mut part = Vec::new();
        sync::SyncRec::decode_all(b, &mut part).map(|()| out.extend(part))
    })
    .unwrap();
    out
}

/// A session as both gateways must agree on it: protocol, both sides, remote, TCP state.
type Flow = (Proto, (Ipv6Addr, u16), (Ipv4Addr, u16), (Ipv4Addr, u16), Option<u8>);

fn flows_of(nat: &Nat) -> Vec<Flow> {
    let mut v: Vec<_> =
        nat.sessions().iter().map(|s| (s.proto, s.v6, s.v4, s.remote, s.state.map(|t| t as u8))).collect();
    v.sort();
    v
}

// Issue 15 (sync): a standby fed the active's state changes holds every
// flow on the same pool4 address and port, in the same TCP state, and
// translates it when the traffic moves to it: a reply reaches the right
// client, and a mid-connection ACK passes (RFC 6146 3.5.2.2: without the
// ESTABLISHED session it would be dropped for want of state).
#[test]
fn a_standby_translates_synced_flows_with_the_same_mappings() {
    let (active, standby) = (Nat::new(cfg(), 4), Nat::new(cfg(), 4));
    active.set_sync_events(true);
    standby.set_standby(true, 0);
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    let ua = nat_flow(&active, &mut x, &mut out, &udp6(A, 5000, SERVER, 53), 0).unwrap();
    let ub = nat_flow(&active, &mut x, &mut out, &udp6(B, 5000, SERVER, 53), 0).unwrap();
    assert_ne!(p16(&ua, 20), p16(&ub, 20), "two clients, two pool4 ports");
    let t = nat_flow(&active, &mut x, &mut out, &tcp6(A, 40000, SERVER, 443, SYN), 0).unwrap();
    let tport = p16(&t, 20);
    nat_flow(&active, &mut x, &mut out, &tcp4(SERVER, 443, POOL, tport, SYN | ACK), 10).unwrap();
    nat_flow(&active, &mut x, &mut out, &tcp6(A, 40000, SERVER, 443, ACK), 20).unwrap();
    for r in sync_records(&active) {
        standby.apply_sync(&r, 100).unwrap();
    }
    assert_eq!(flows_of(&standby), flows_of(&active));
    assert!(flows_of(&standby).iter().any(|f| f.4 == Some(TcpState::Established as u8)));
    standby.check_all().unwrap();

    // The traffic moves: the standby takes over.
    standby.set_standby(false, 200);
    let back = nat_flow(&standby, &mut x, &mut out, &udp4(SERVER, 53, POOL, p16(&ub, 20)), 200).unwrap();
    assert_eq!((a6(&back, 24), p16(&back, 42)), (B, 5000), "the reply reaches the client that held the port");
    let again = nat_flow(&standby, &mut x, &mut out, &udp6(A, 5000, SERVER, 53), 200).unwrap();
    assert_eq!((a4(&again, 12), p16(&again, 20)), (a4(&ua, 12), p16(&ua, 20)), "same pool4 address and port");
    let ack = nat_flow(&standby, &mut x, &mut out, &tcp6(A, 40000, SERVER, 443, ACK), 200).unwrap();
    assert_eq!(p16(&ack, 20), tport, "the ESTABLISHED connection goes on from the same port");
    assert_eq!(standby.session_count(), 3, "nothing new made");
}

// Issue 15 (sync): sessions that end on the active end on the standby; a
// standby runs no expiry of its own (the active's word rules), and taking
// over gives each session its state's full lifetime again.
#[test]
fn a_standby_follows_ends_and_takes_over_with_fresh_lifetimes() {
    let (active, standby) = (Nat::new(cfg(), 4), Nat::new(cfg(), 4));
    active.set_sync_events(true);
    standby.set_standby(true, 0);
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    nat_flow(&active, &mut x, &mut out, &udp6(A, 5000, SERVER, 53), 0).unwrap();
    nat_flow(&active, &mut x, &mut out, &udp6(B, 6000, SERVER, 53), 0).unwrap();
    for r in sync_records(&active) {
        standby.apply_sync(&r, 0).unwrap();
    }
    // A's flow lives on (traffic the standby never sees); B's is idle and expires.
    nat_flow(&active, &mut x, &mut out, &udp6(A, 5000, SERVER, 53), 4 * MIN).unwrap();
    assert_eq!(active.expire(6 * MIN, 1000), 1);
    for r in sync_records(&active) {
        standby.apply_sync(&r, 6 * MIN).unwrap();
    }
    assert_eq!(flows_of(&standby), flows_of(&active), "B's end reached the standby");
    assert_eq!(standby.expire(60 * MIN, 1000), 0, "a standby's sessions do not time out on their own");
    standby.set_standby(false, 60 * MIN);
    assert_eq!(standby.expire(61 * MIN, 1000), 0, "taken over with a full UDP lifetime (RFC 6146 4: 5 min)");
    assert_eq!(standby.expire(66 * MIN, 1000), 1);
}

// Issue 15 (sync): a full snapshot (after a connection or a resync)
// replaces whatever the standby held, and the deltas recorded while it was
// taken, applied after it, end in the active's state (records are whole
// states, so replaying one already in the snapshot changes nothing).
#[test]
fn a_snapshot_replaces_the_standby_table_and_deltas_replay_safely() {
    let (active, standby) = (Nat::new(cfg(), 4), Nat::new(cfg(), 4));
    standby.set_standby(true, 0);
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    // The standby holds a stale flow the active no longer has.
    nat_flow(&standby, &mut x, &mut out, &udp6(C, 7000, SERVER, 53), 0).unwrap();
    active.set_sync_events(true);
    nat_flow(&active, &mut x, &mut out, &udp6(A, 5000, SERVER, 53), 0).unwrap();
    nat_flow(&active, &mut x, &mut out, &udp6(B, 6000, SERVER, 53), 0).unwrap();
    let snap = active.sync_snapshot(0);
    nat_flow(&active, &mut x, &mut out, &tcp6(A, 40000, SERVER, 443, SYN), 5 * MIN).unwrap();
    assert_eq!(active.expire(6 * MIN, 1000), 2, "both UDP flows end after the snapshot");
    let n = snap.len() as u64;
    standby.apply_sync(&sync::SyncRec::Begin { sessions: n }, 0).unwrap();
    for s in snap {
        standby.apply_sync(&sync::SyncRec::Up(s), 0).unwrap();
    }
    for r in sync_records(&active) {
        standby.apply_sync(&r, 6 * MIN).unwrap();
    }
    assert_eq!(flows_of(&standby), flows_of(&active));
    assert_eq!(standby.session_count(), 1);
    standby.check_all().unwrap();
}

// Issue 15 (sync): the state-change queue is bounded; what does not fit is
// counted (the driver then resynchronises), never grown into.
#[test]
fn sync_events_are_bounded_and_losses_counted() {
    let nat = Nat::new(cfg(), 1);
    nat.set_sync_events(true);
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    for port in 0..(events::EVENT_CAP as u16 + 100) {
        nat_flow(&nat, &mut x, &mut out, &udp6(A, 10000 + port, SERVER, 53), 0).unwrap();
    }
    let mut ev = Vec::new();
    assert_eq!(nat.drain_sync(&mut ev), 100);
    assert_eq!(ev.len(), events::EVENT_CAP);
    nat.set_sync_events(false);
    nat_flow(&nat, &mut x, &mut out, &udp6(B, 5000, SERVER, 53), 0).unwrap();
    assert_eq!((nat.drain_sync(&mut ev), ev.len()), (0, events::EVENT_CAP), "off: nothing recorded");
}

// Issue 15 (sync) with issue 14's mapping log: the log of a synced flow is
// the active's. A standby applying creates, ends and a snapshot's clear
// records none of them (its log would otherwise show ends of sessions it
// never saw begin); once promoted, it logs its own new flows.
#[test]
fn a_standby_does_not_log_what_the_active_logged() {
    let mut c = cfg();
    c.events = EventSel { blocks: true, sessions: true, destination: false };
    let (active, standby) = (Nat::new(c.clone(), 4), Nat::new(c, 4));
    active.set_sync_events(true);
    standby.set_standby(true, 0);
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    let logged = |n: &Nat| {
        let mut v = 0;
        n.drain_events(&mut Vec::new(), |e| v += e.len());
        v
    };
    nat_flow(&active, &mut x, &mut out, &udp6(A, 5000, SERVER, 53), 0).unwrap();
    nat_flow(&active, &mut x, &mut out, &udp6(B, 6000, SERVER, 53), 0).unwrap();
    assert!(logged(&active) >= 4, "the active logs two BIB entries and two sessions");
    for r in sync_records(&active) {
        standby.apply_sync(&r, 0).unwrap();
    }
    assert_eq!(flows_of(&standby), flows_of(&active));
    assert_eq!(active.expire(6 * MIN, 1000), 2);
    standby.apply_sync(&sync::SyncRec::Begin { sessions: 0 }, 6 * MIN).unwrap();
    for r in sync_records(&active) {
        let _ = standby.apply_sync(&r, 6 * MIN);
    }
    assert_eq!(logged(&standby), 0, "nothing of the active's flows in the standby's log");
    standby.set_standby(false, 7 * MIN);
    nat_flow(&standby, &mut x, &mut out, &udp6(A, 5001, SERVER, 53), 7 * MIN).unwrap();
    assert!(logged(&standby) >= 2, "promoted, it logs its own flow");
}

// RFC 6146 3.5.1.1 with a customer pool of 100 UDP ports (20000-20099 on
// one address, as `{ net = ..., udp = "20000-20099", clients = ... }`) in a
// 16-shard NAT: every one of the client's flows gets a port of the range
// whatever its source port, and the replies come back to it. (Before, a
// flow was homed by its source port's 64-port block and only the three
// shards owning 20000-20099 had ports to give: most flows were refused as
// pool_exhausted, found by the AF_XDP lab's port-unreachable probe.)
#[test]
fn a_narrow_customer_range_serves_every_source_port() {
    let mut c = cfg();
    let own = Ipv4Addr::new(203, 0, 113, 17);
    let mut addr = PoolAddr::new(own);
    addr.ports[Proto::Udp as usize] = super::pool4::PortRange { lo: 20000, hi: 20099 };
    c.pool4.insert(0, PoolGroup { clients: Some("2001:db8:2::30/128".parse().unwrap()), addrs: vec![addr] });
    let nat = Nat::new(c, 16);
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    let mut ports = std::collections::HashSet::new();
    for i in 0..100u16 {
        let sport = 40000 + i * 7;
        let p = nat_flow(&nat, &mut x, &mut out, &udp6(C, sport, SERVER, 53), 0)
            .unwrap_or_else(|| panic!("flow {i} from port {sport} refused: {:?}", nat.counters()));
        let (src, port) = (a4(&p, 12), p16(&p, 20));
        assert_eq!(src, own);
        assert!((20000..=20099).contains(&port), "{port}");
        assert!(ports.insert(port), "port {port} given twice");
        let back = nat_flow(&nat, &mut x, &mut out, &udp4(SERVER, 53, own, port), 1).expect("the reply");
        assert_eq!((a6(&back, 24), p16(&back, 42)), (C, sport), "the reply reaches the flow");
        // The flow's next packet finds the same mapping.
        let again = nat_flow(&nat, &mut x, &mut out, &udp6(C, sport, SERVER, 53), 2).unwrap();
        assert_eq!(p16(&again, 20), port);
    }
    // The range holds 100: the 101st flow is refused, not given a port twice.
    assert!(nat_flow(&nat, &mut x, &mut out, &udp6(C, 39999, SERVER, 53), 3).is_none());
}
