//! Replays the fuzz seeds and any saved fuzz corpus / crash files through
//! the same invariant checks the fuzz targets use, so `cargo test` guards
//! every input a fuzzer ever found interesting. With NAT64D_WRITE_SEEDS=1 it
//! (re)writes the seed files from the builders below.

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nat64d::testpkt::{
    echo, icmp, run_config_fuzz_input, run_control_fuzz_input, run_dns64_fuzz_input, run_fuzz_input,
    run_maplog_fuzz_input, run_nat_fuzz_input, run_offload_fuzz_input, run_sniff_fuzz_input, run_state_fuzz_input,
    run_sync_fuzz_input, tcp, udp, V4, V6,
};
use nat64d::OUT_BUF_LEN;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// DNS64 seeds: byte 0 even = a client query, odd = an upstream answer.
fn dns64_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let n = |s: &str| Name::from_ascii(s).unwrap();
    let query = |name: &str, t: RecordType, edns: bool| {
        let mut m = Message::new();
        m.set_id(0x1234).set_recursion_desired(true);
        m.add_query(Query::query(n(name), t));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(4096).set_dnssec_ok(true);
            m.set_edns(e);
        }
        [vec![0u8], m.to_vec().unwrap()].concat()
    };
    let q = |t| {
        let mut m = Message::new();
        m.add_query(Query::query(n("web.example."), t));
        m
    };
    let mut nodata = nat64d::dns64::reply_to(&q(RecordType::AAAA), ResponseCode::NoError);
    let soa = SOA::new(n("ns.example."), n("admin.example."), 1, 3600, 900, 86400, 60);
    nodata.add_name_server(Record::from_rdata(n("example."), 3600, RData::SOA(soa)));
    let mut a = nat64d::dns64::reply_to(&q(RecordType::A), ResponseCode::NoError);
    a.add_answer(Record::from_rdata(n("web.example."), 300, RData::CNAME(CNAME(n("cdn.example.")))));
    a.add_answer(Record::from_rdata(n("cdn.example."), 300, RData::A(A::new(192, 0, 2, 7))));
    vec![
        ("dns64", "query_aaaa", query("Web.Example.", RecordType::AAAA, false)),
        ("dns64", "query_aaaa_edns_do", query("web.example.", RecordType::AAAA, true)),
        (
            "dns64",
            "query_ptr",
            query("1.0.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.4.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", RecordType::PTR, false),
        ),
        ("dns64", "answer_nodata_soa", [vec![1u8], nodata.to_vec().unwrap()].concat()),
        ("dns64", "answer_cname_a", [vec![1u8], a.to_vec().unwrap()].concat()),
    ]
}

fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let c6: Ipv6Addr = "2001:db8:1::10".parse().unwrap();
    let s6: Ipv6Addr = "2001:db8:64::c633:6407".parse().unwrap();
    let (p4, s4) = (Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(198, 51, 100, 7));
    let mut big4 = V4::new(s4, p4, 17, udp(53, 5000, &[1u8; 1472]));
    big4.df = false;
    let mut frag4 = V4::new(s4, p4, 17, udp(53, 5000, &[2u8; 64]));
    (frag4.df, frag4.mf) = (false, true);
    let mut ttl1 = V4::new(s4, p4, 6, tcp(80, 1, 1, 0x10, b""));
    ttl1.ttl = 1;
    let mut rh = V6::new(c6, s6, 17, udp(1, 2, b""));
    rh.ext.push((43, vec![0, 0, 0, 1, 0, 0, 0, 0]));
    let quoted6 = V6::new(s6, c6, 17, udp(53, 5000, b"abc")).build();
    let quoted4 = V4::new(p4, s4, 6, tcp(5000, 80, 9, 0x02, b"")).build();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
    // offload: [derive header?, gso_size hi, lo, 8 more header bytes] then the packet.
    let derived = |gso: u16, pkt: Vec<u8>| [vec![1u8], gso.to_be_bytes().to_vec(), vec![0; 8], pkt].concat();
    let raw = |h: [u8; 10], pkt: Vec<u8>| [vec![0u8], h.to_vec(), pkt].concat();
    let mut v = vec![
        ("offload", "tso6", derived(1440, V6::new(c6, s6, 6, tcp(40000, 80, 1, 0x18, &data)).build())),
        ("offload", "tso4", derived(1448, V4::new(s4, p4, 6, tcp(80, 40000, 1, 0x10, &data)).build())),
        (
            "offload",
            "tso4_too_big_once_translated",
            derived(1460, V4::new(s4, p4, 6, tcp(80, 4, 1, 0x10, &data)).build()),
        ),
        ("offload", "uso6", derived(1200, V6::new(c6, s6, 17, udp(5000, 53, &data[..9000])).build())),
        (
            "offload",
            "csum_partial_single",
            raw([1, 0, 0, 0, 0, 0, 40, 0, 6, 0], V6::new(c6, s6, 17, udp(5000, 53, b"q")).build()),
        ),
        (
            "offload",
            "gso_type_wrong_family",
            raw([1, 1, 60, 0, 0xa0, 5, 40, 0, 16, 0], V6::new(c6, s6, 6, tcp(1, 2, 3, 0x10, &data[..4000])).build()),
        ),
        ("xlat_6to4", "udp", V6::new(c6, s6, 17, udp(5000, 53, b"query")).build()),
        ("xlat_6to4", "tcp_syn", V6::new(c6, s6, 6, tcp(40000, 80, 1, 0x02, b"")).build()),
        ("xlat_6to4", "echo", V6::new(c6, s6, 58, echo(128, 7, 1, b"ping")).build()),
        ("xlat_6to4", "fragment", V6::new(c6, s6, 17, udp(1, 2, &[3u8; 100])).fragment(0, true, 99).build()),
        ("xlat_6to4", "routing_header", rh.build()),
        ("xlat_6to4", "icmp6_error", V6::new(c6, s6, 58, icmp(1, 4, [0; 4], &quoted6)).build()),
        ("xlat_4to6", "udp", V4::new(s4, p4, 17, udp(53, 5000, b"answer")).build()),
        ("xlat_4to6", "tcp", V4::new(s4, p4, 6, tcp(80, 40000, 1, 0x12, b"")).build()),
        ("xlat_4to6", "echo_reply", V4::new(s4, p4, 1, echo(0, 7, 1, b"pong")).build()),
        ("xlat_4to6", "df_clear_big", big4.build()),
        ("xlat_4to6", "fragment", frag4.build()),
        ("xlat_4to6", "ttl1", ttl1.build()),
        ("xlat_4to6", "icmp4_error", V4::new(s4, p4, 1, icmp(3, 3, [0; 4], &quoted4)).build()),
        // op, host, port, remote, flags, time step (see testpkt::run_nat_fuzz_input)
        (
            "nat_sequence",
            "tcp_handshake",
            vec![0, 0, 1, 2, 3, 0x02, 0, 1, 1, 2, 3, 0x12, 1, 0, 1, 2, 3, 0x11, 1, 1, 1, 2, 3, 0x11, 200],
        ),
        (
            "nat_sequence",
            "udp_out_back_expire",
            vec![1, 2, 1, 5, 9, 0, 0, 3, 1, 5, 9, 0, 10, 6, 0, 0, 0, 255, 255, 3, 1, 5, 9, 0, 0],
        ),
        (
            "nat_sequence",
            "icmp_and_exhaustion",
            [vec![0u8], (0..40u8).flat_map(|i| [4, i % 16, i, 1, 0, 1]).collect::<Vec<u8>>()].concat(),
        ),
        ("xlat_icmp_error", "v6_port_unreach", [&[1u8, 1, 4, 0, 0, 0, 0][..], &quoted6].concat()),
        ("xlat_icmp_error", "v6_ptb", [&[1u8, 2, 0, 0, 0, 5, 0xdc][..], &quoted6].concat()),
        ("xlat_icmp_error", "v4_frag_needed", [&[0u8, 3, 4, 0, 0, 5, 0xdc][..], &quoted4].concat()),
        ("xlat_icmp_error", "v4_param_problem", [&[0u8, 12, 0, 9, 0, 0, 0][..], &quoted4].concat()),
    ];
    v.extend(dns64_seeds());
    // The configuration loader and the control request reader (issue 18).
    let example = include_str!("../systemd/nat64d.toml").as_bytes().to_vec();
    v.push(("config", "shipped_example", example));
    v.push((
        "config",
        "pool4_tables",
        b"pool4 = [\"203.0.113.0/28\", { net = \"198.51.100.7\", tcp = \"1024-2047\", clients = \"2001:db8:a::/48\" }]\n[nat.timeouts]\nudp = 300\n".to_vec(),
    ));
    v.push(("config", "bad_key", b"[nat]\nshard = 4\n".to_vec()));
    for (name, req) in [
        ("stats", r#"{"cmd":"stats"}"#),
        ("sessions", r#"{"cmd":"sessions","proto":"udp","addr":"2001:db8::1","limit":5}"#),
        ("bib_add", r#"{"cmd":"bib_add","proto":"tcp","ipv6":"[2001:db8::80]:80","ipv4":"203.0.113.1:80"}"#),
        ("garbage", "\u{0}\u{1}not json at all"),
    ] {
        v.push(("control", name, format!("{req}\n").into_bytes()));
    }
    // The state file (issue 15): one written by a NAT with a UDP flow, a TCP
    // connection, a static entry's session and a port block.
    v.push(("state", "small_table", state_seed()));
    // The sync wire (issue 15): a snapshot of a UDP flow and a TCP
    // connection, a state change, an end, a heartbeat.
    v.push(("sync", "snapshot_and_deltas", sync_seed()));
    // The mapping log reader and the IPFIX encoder (issue 14).
    v.push((
        "maplog",
        "two_records",
        br#"{"time":"2026-12-01T10:00:00.000Z","event":"block_allocated","proto":"udp","subscriber":"2001:db8:1::/64","pool4":"203.0.113.5","port_lo":40448,"port_hi":40959,"group":0}
{"time":"2026-12-01T12:00:00.000Z","event":"block_released","proto":"udp","subscriber":"2001:db8:1::/64","pool4":"203.0.113.5","port_lo":40448,"port_hi":40959,"group":0}
"#
        .to_vec(),
    ));
    v
}

fn state_seed() -> Vec<u8> {
    use nat64d::nat::state::{BibRec, BlockRec, SessionRec, State};
    use nat64d::nat::{tcp::TcpState, Proto};
    let a: std::net::Ipv6Addr = "2001:db8:1::10".parse().unwrap();
    let v4 = std::net::Ipv4Addr::new(203, 0, 113, 1);
    State {
        saved_at: 1_796_133_727_000,
        pool6: ("2001:db8:64::".parse().unwrap(), 96),
        bibs: vec![
            BibRec { proto: Proto::Udp, is_static: false, v6: a, port6: 5000, v4, port4: 5000 },
            BibRec { proto: Proto::Tcp, is_static: false, v6: a, port6: 40000, v4, port4: 40000 },
            BibRec {
                proto: Proto::Tcp,
                is_static: true,
                v6: "2001:db8:1::80".parse().unwrap(),
                port6: 80,
                v4,
                port4: 80,
            },
        ],
        sessions: vec![
            SessionRec {
                bib: 0,
                remote: std::net::Ipv4Addr::new(198, 51, 100, 7),
                rport: 53,
                state: TcpState::Established,
                remaining: 200_000,
            },
            SessionRec {
                bib: 1,
                remote: std::net::Ipv4Addr::new(198, 51, 100, 7),
                rport: 443,
                state: TcpState::Established,
                remaining: 7_000_000,
            },
            SessionRec {
                bib: 2,
                remote: std::net::Ipv4Addr::new(198, 51, 100, 8),
                rport: 1234,
                state: TcpState::V4Init,
                remaining: 100_000,
            },
        ],
        blocks: vec![BlockRec { v4, proto: Proto::Udp, block: 78, sub: u128::from(a) >> 64 << 64, held: None }],
    }
    .encode()
}

fn sync_seed() -> Vec<u8> {
    use nat64d::nat::sync::{SessionSync, SyncRec};
    use nat64d::nat::{tcp::TcpState, Proto};
    let udp = SessionSync {
        proto: Proto::Udp,
        is_static: false,
        v6: "2001:db8:1::10".parse().unwrap(),
        port6: 4444,
        v4: "203.0.113.1".parse().unwrap(),
        port4: 4444,
        remote: "198.51.100.2".parse().unwrap(),
        rport: 5353,
        state: TcpState::Closed,
        remaining: 300_000,
    };
    let tcp = SessionSync { proto: Proto::Tcp, port6: 41000, port4: 41000, rport: 80, state: TcpState::V6Init, ..udp };
    let mut o = vec![];
    for r in [
        SyncRec::Begin { sessions: 2 },
        SyncRec::Up(udp),
        SyncRec::Up(tcp),
        SyncRec::End { sessions: 2 },
        SyncRec::Up(SessionSync { state: TcpState::Established, remaining: 7_440_000, ..tcp }),
        SyncRec::Gone(udp),
        SyncRec::Beat { seq: 1, wall_ms: 1_796_000_000_000 },
    ] {
        r.encode(&mut o);
    }
    o
}

/// Runs one input the way its fuzz target does.
fn run_target(target: &str, data: &[u8]) {
    let mut out = vec![0u8; OUT_BUF_LEN];
    let mut scratch = vec![0u8; OUT_BUF_LEN];
    if target == "nat_sequence" {
        run_nat_fuzz_input(data, &mut out);
    } else if target == "offload" {
        run_offload_fuzz_input(data, &mut out);
    } else if target == "config" {
        run_config_fuzz_input(data);
    } else if target == "control" {
        run_control_fuzz_input(data);
    } else if target == "maplog" {
        run_maplog_fuzz_input(data);
    } else if target == "state" {
        run_state_fuzz_input(data);
    } else if target == "sniff" {
        run_sniff_fuzz_input(data);
    } else if target == "sync" {
        run_sync_fuzz_input(data);
    } else if target == "dns64" {
        run_dns64_fuzz_input(data);
    } else {
        run_fuzz_input(target, data, &mut out, &mut scratch);
    }
}

#[test]
fn seeds_keep_the_invariants() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (target, name, bytes) in seeds() {
        run_target(target, &bytes);
        if std::env::var_os("NAT64D_WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(root.join(target)).unwrap();
            std::fs::write(root.join(target).join(name), &bytes).unwrap();
        }
    }
}

#[test]
fn saved_corpus_and_artifacts_keep_the_invariants() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for kind in ["seeds", "corpus", "artifacts", "regressions"] {
        for target in [
            "xlat_6to4",
            "xlat_4to6",
            "xlat_icmp_error",
            "nat_sequence",
            "offload",
            "dns64",
            "config",
            "control",
            "maplog",
            "state",
            "sniff",
            "sync",
        ] {
            let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
                continue;
            };
            for f in dir.flatten() {
                // A running fuzzer may remove a corpus file it has reduced.
                let Ok(data) = std::fs::read(f.path()) else { continue };
                run_target(target, &data);
                n += 1;
            }
        }
    }
    assert!(n >= seeds().len(), "expected at least the committed seeds, replayed {n}");
}
