//! The DNS64 server against a real upstream on loopback: an in-process
//! authority for `test.` (threads with std sockets), real UDP and TCP
//! clients, one test per behaviour, each citing its rule. No root needed.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nat64d::dns64::server::{Dns64Server, ServerConfig, Settings};
use nat64d::dns64::Dns64;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn n(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn rec(name: &str, ttl: u32, d: RData) -> Record {
    Record::from_rdata(n(name), ttl, d)
}

/// The test zone: what the upstream answers to (name, type), or None to
/// stay silent. Every answer has AD set, to check it never survives
/// synthesis.
fn zone(q: &Message) -> Option<Message> {
    let qq = &q.queries()[0];
    let name = qq.name().to_lowercase().to_ascii();
    let t = qq.query_type();
    let mut m = Message::new();
    m.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(q.recursion_desired())
        .set_recursion_available(true)
        .set_authentic_data(true);
    m.add_query(qq.clone());
    let soa = || {
        let s = SOA::new(n("ns.test."), n("admin.test."), 1, 7200, 900, 86400, 60);
        rec("test.", 3600, RData::SOA(s))
    };
    let a = |name: &str, ip: [u8; 4]| rec(name, 300, RData::A(A(Ipv4Addr::from(ip))));
    let mut answers = vec![];
    match (name.as_str(), t) {
        ("a-only.test.", RecordType::A) => answers.push(a("a-only.test.", [192, 0, 2, 1])),
        ("both.test.", RecordType::A) => answers.push(a("both.test.", [192, 0, 2, 2])),
        ("both.test.", RecordType::AAAA) => {
            answers.push(rec("both.test.", 300, RData::AAAA(AAAA("2001:db8::2".parse().unwrap()))))
        }
        ("mapped.test.", RecordType::A) => answers.push(a("mapped.test.", [192, 0, 2, 3])),
        ("mapped.test.", RecordType::AAAA) => {
            answers.push(rec("mapped.test.", 300, RData::AAAA(AAAA("::ffff:192.0.2.3".parse().unwrap()))))
        }
        ("alias.test.", _) => {
            answers.push(rec("alias.test.", 300, RData::CNAME(CNAME(n("a-only.test.")))));
            if t == RecordType::A {
                answers.push(a("a-only.test.", [192, 0, 2, 1]));
            }
        }
        // Chains this upstream does not chase (a forwarder or an
        // authoritative-only server answers like this): the CNAME alone.
        ("chain.test.", _) => answers.push(rec("chain.test.", 300, RData::CNAME(CNAME(n("hop.test."))))),
        ("hop.test.", _) => answers.push(rec("hop.test.", 200, RData::CNAME(CNAME(n("a-only.test."))))),
        ("to-both.test.", _) => answers.push(rec("to-both.test.", 300, RData::CNAME(CNAME(n("both.test."))))),
        ("loop1.test.", _) => answers.push(rec("loop1.test.", 300, RData::CNAME(CNAME(n("loop2.test."))))),
        ("loop2.test.", _) => answers.push(rec("loop2.test.", 300, RData::CNAME(CNAME(n("loop1.test."))))),
        ("huge.test.", RecordType::A) => {
            // 3000 A records: about 48 KB; synthesised under four prefixes,
            // some 270 KB, more than a DNS message can hold.
            for i in 0..3000u32 {
                answers.push(a("huge.test.", [198, 51, (i >> 8) as u8, i as u8]));
            }
        }
        ("big.test.", RecordType::A) => {
            for i in 1..=100u8 {
                answers.push(a("big.test.", [198, 51, 100, i]));
            }
        }
        ("1.2.0.192.in-addr.arpa.", RecordType::PTR) => {
            answers.push(rec("1.2.0.192.in-addr.arpa.", 300, RData::PTR(PTR(n("a-only.test.")))))
        }
        ("nx.test.", _) => {
            m.set_response_code(ResponseCode::NXDomain);
        }
        ("fail.test.", _) => {
            m.set_response_code(ResponseCode::ServFail);
            return Some(m);
        }
        ("slow.test.", _) => return None,
        ("aaaa-silent.test.", RecordType::AAAA) => return None,
        ("aaaa-silent.test.", RecordType::A) => answers.push(a("aaaa-silent.test.", [192, 0, 2, 5])),
        _ => {}
    }
    if answers.is_empty() {
        m.add_name_server(soa());
    }
    m.insert_answers(answers);
    Some(m)
}

/// An upstream authority on 127.0.0.1 (UDP and TCP, one port). UDP answers
/// that do not fit the query's EDNS size go out truncated.
struct Upstream {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
}

fn upstream() -> Upstream {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let qc = queries.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((len, src)) = udp.recv_from(&mut buf) {
            qc.fetch_add(1, Ordering::SeqCst);
            let Ok(q) = Message::from_vec(&buf[..len]) else { continue };
            let Some(mut r) = zone(&q) else { continue };
            let limit = q.extensions().as_ref().map_or(512, |e| e.max_payload() as usize);
            let mut bytes = r.to_vec().unwrap();
            if bytes.len() > limit {
                r.take_answers();
                r.set_truncated(true);
                bytes = r.to_vec().unwrap();
            }
            let _ = udp.send_to(&bytes, src);
        }
    });
    let qc = queries.clone();
    std::thread::spawn(move || {
        for c in tcp.incoming() {
            let Ok(mut c) = c else { continue };
            qc.fetch_add(1, Ordering::SeqCst);
            let mut len = [0u8; 2];
            if c.read_exact(&mut len).is_err() {
                continue;
            }
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            if c.read_exact(&mut q).is_err() {
                continue;
            }
            if let Some(r) = Message::from_vec(&q).ok().and_then(|q| zone(&q)) {
                let b = r.to_vec().unwrap();
                let _ = c.write_all(&(b.len() as u16).to_be_bytes());
                let _ = c.write_all(&b);
            }
        }
    });
    Upstream { addr, queries }
}

fn prefix() -> nat64d::Prefix6052 {
    "2001:db8:64::/96".parse().unwrap()
}

fn settings(up: &Upstream) -> Settings {
    Settings {
        dns64: Dns64::new(vec![prefix()]),
        upstream: vec![up.addr],
        timeout: Duration::from_millis(800),
        allow: vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()],
    }
}

fn server_with(s: Settings) -> Dns64Server {
    let cfg = ServerConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()],
        ..ServerConfig::default()
    };
    Dns64Server::start(cfg, s).unwrap()
}

fn query(name: &str, t: RecordType) -> Message {
    let mut m = Message::new();
    m.set_id(0x4242).set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(true);
    m.add_query(Query::query(n(name), t));
    m
}

fn with_edns(mut m: Message, dnssec_ok: bool) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(1232).set_dnssec_ok(dnssec_ok);
    m.set_edns(e);
    m
}

fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let local = if server.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" };
    let s = UdpSocket::bind(local).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send_to(bytes, server).unwrap();
    let mut buf = [0u8; 65535];
    let n = s.recv(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

fn udp(server: SocketAddr, q: &Message) -> Message {
    let r = Message::from_vec(&udp_raw(server, &q.to_vec().unwrap()).expect("an answer")).unwrap();
    assert_eq!(r.id(), q.id());
    assert_eq!(r.message_type(), MessageType::Response);
    r
}

fn tcp(server: SocketAddr, q: &Message) -> Message {
    let mut c = TcpStream::connect(server).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    tcp_on(&mut c, q)
}

/// One query and its answer on an open connection.
fn tcp_on(c: &mut TcpStream, q: &Message) -> Message {
    let b = q.to_vec().unwrap();
    c.write_all(&(b.len() as u16).to_be_bytes()).unwrap();
    c.write_all(&b).unwrap();
    let mut len = [0u8; 2];
    c.read_exact(&mut len).unwrap();
    let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
    c.read_exact(&mut r).unwrap();
    Message::from_vec(&r).unwrap()
}

/// The answer section as (owner, type) pairs.
fn kinds(m: &Message) -> Vec<(String, RecordType)> {
    m.answers().iter().map(|x| (x.name().to_ascii(), x.record_type())).collect()
}

fn aaaas(m: &Message) -> Vec<(u32, Ipv6Addr)> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::AAAA(a) => Some((r.ttl(), a.0)),
            _ => None,
        })
        .collect()
}

fn v4(s: &Dns64Server) -> SocketAddr {
    s.local_addrs()[0]
}
fn v6(s: &Dns64Server) -> SocketAddr {
    s.local_addrs()[1]
}

// RFC 6147 5.1.1 + 5.1.5 + 5.1.7: a name with only an A record gets one
// AAAA under the prefix, TTL = min(A TTL 300, SOA minimum 60); AD is never
// set on synthesised data (5.5); a second query is a cache hit.
#[test]
fn rfc6147_5_1_synthesis_ttl_and_cache() {
    let up = upstream();
    let s = server_with(settings(&up));
    let r = udp(v6(&s), &query("a-only.test.", RecordType::AAAA));
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert_eq!(aaaas(&r), vec![(60, "2001:db8:64::c000:201".parse().unwrap())]);
    assert!(!r.authentic_data(), "RFC 6147 5.5: no AD on a synthesised answer");
    assert!(r.recursion_available());
    let before = up.queries.load(Ordering::SeqCst);
    let mut q = query("A-ONLY.test.", RecordType::AAAA);
    q.set_id(7);
    let r2 = udp(v6(&s), &q);
    assert_eq!(up.queries.load(Ordering::SeqCst), before, "answered from the cache");
    assert_eq!(aaaas(&r2), aaaas(&r));
    assert_eq!(r2.queries()[0].name().to_ascii(), "A-ONLY.test.", "the client's spelling of the name comes back");
    let st = s.stats().counters;
    assert_eq!((st.synthesized, st.cache_hits, st.queries_udp), (1, 1, 2));
}

// RFC 6147 5.1.1: real AAAA records pass untouched.
#[test]
fn rfc6147_5_1_1_real_aaaa_passes() {
    let up = upstream();
    let s = server_with(settings(&up));
    let r = udp(v4(&s), &query("both.test.", RecordType::AAAA));
    assert_eq!(aaaas(&r), vec![(300, "2001:db8::2".parse().unwrap())]);
    assert_eq!(s.stats().counters.passed, 1);
}

// RFC 6147 5.1.4: an answer holding only excluded (::ffff:0:0/96) AAAA
// records is treated as empty and synthesised.
#[test]
fn rfc6147_5_1_4_excluded_aaaa_synthesised() {
    let up = upstream();
    let s = server_with(settings(&up));
    let r = udp(v4(&s), &query("mapped.test.", RecordType::AAAA));
    assert_eq!(aaaas(&r), vec![(300, "2001:db8:64::c000:203".parse().unwrap())]);
}

// RFC 6147 5.1.5 (and 5.1.6's chain): the CNAME is kept and the AAAA is
// synthesised for the chain's end.
#[test]
fn rfc6147_5_1_5_cname_chain_kept() {
    let up = upstream();
    let s = server_with(settings(&up));
    let r = udp(v4(&s), &query("alias.test.", RecordType::AAAA));
    assert_eq!(kinds(&r), vec![("alias.test.".into(), RecordType::CNAME), ("a-only.test.".into(), RecordType::AAAA)]);
}

// RFC 6147 5.1.5 with RFC 1034 3.6.2 (issue 13 item 7): an upstream that
// answers with a bare CNAME chain (it does not chase) gets the chain's last
// name asked for, hop by hop; the client receives the whole chain and the
// AAAA synthesised at its end. A target with a real AAAA gets that AAAA,
// not a synthesised one (5.1.1). A loop ends without hanging.
#[test]
fn rfc6147_5_1_5_unfinished_chain_followed() {
    let up = upstream();
    let s = server_with(settings(&up));
    let before = up.queries.load(Ordering::SeqCst);
    let r = udp(v4(&s), &query("chain.test.", RecordType::AAAA));
    assert_eq!(up.queries.load(Ordering::SeqCst) - before, 6, "AAAA and A for each of the three names, once each");
    assert_eq!(
        kinds(&r),
        vec![
            ("chain.test.".into(), RecordType::CNAME),
            ("hop.test.".into(), RecordType::CNAME),
            ("a-only.test.".into(), RecordType::AAAA)
        ]
    );
    let aaaa = r.answers().iter().find_map(|x| match x.data() {
        RData::AAAA(a) => Some((a.0, x.ttl())),
        _ => None,
    });
    // 5.1.7: TTL = min(A TTL 300, the negative AAAA answer's SOA minimum 60).
    assert_eq!(aaaa, Some(("2001:db8:64::c000:201".parse().unwrap(), 60)));
    assert!(!r.authentic_data());
    assert_eq!(s.stats().counters.chased, 4, "two hops, for AAAA and for A: {:?}", s.stats());
    let r = udp(v4(&s), &query("to-both.test.", RecordType::AAAA));
    let got: Vec<Ipv6Addr> = r
        .answers()
        .iter()
        .filter_map(|x| match x.data() {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec!["2001:db8::2".parse::<Ipv6Addr>().unwrap()], "the real AAAA at the chain's end");
    let start = Instant::now();
    let r = udp(v4(&s), &query("loop1.test.", RecordType::AAAA));
    assert!(start.elapsed() < Duration::from_secs(1), "a loop is cut, not followed until the timeout");
    assert!(r.answers().iter().all(|x| x.record_type() == RecordType::CNAME), "{r:?}");
    // Cached as usual: asked again, answered without the upstream.
    let before = up.queries.load(Ordering::SeqCst);
    let again = udp(v4(&s), &query("chain.test.", RecordType::AAAA));
    assert_eq!(again.answers().len(), 3);
    assert_eq!(up.queries.load(Ordering::SeqCst), before, "from the cache");
}

// RFC 6147 5.1.2: NXDOMAIN passes as it is (no A query makes sense);
// another error from the AAAA query is treated as empty, and if the A
// query fails too the client gets the error (SERVFAIL).
#[test]
fn rfc6147_5_1_2_nxdomain_and_servfail() {
    let up = upstream();
    let s = server_with(settings(&up));
    let before = up.queries.load(Ordering::SeqCst);
    let r = udp(v4(&s), &query("nx.test.", RecordType::AAAA));
    assert_eq!(r.response_code(), ResponseCode::NXDomain);
    assert_eq!(up.queries.load(Ordering::SeqCst) - before, 1, "no A query after NXDOMAIN");
    let r = udp(v4(&s), &query("fail.test.", RecordType::AAAA));
    assert_eq!(r.response_code(), ResponseCode::ServFail);
}

// RFC 6147 5.1.2 / issue: an upstream that does not answer gives SERVFAIL
// within the configured bound (800 ms here), not silence.
#[test]
fn upstream_timeout_gives_servfail_in_bounded_time() {
    let up = upstream();
    let s = server_with(settings(&up));
    let t = Instant::now();
    let r = udp(v4(&s), &query("slow.test.", RecordType::AAAA));
    let took = t.elapsed();
    assert_eq!(r.response_code(), ResponseCode::ServFail);
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(s.stats().counters.upstream_timeouts >= 1 && s.stats().counters.servfail == 1);
}

// RFC 6147 5.1.3: a AAAA query that times out is treated as an error,
// and so (5.1.2) like an empty answer: the A query is made and synthesised
// from, within the same bound; with no SOA the TTL is at most 600 s (5.1.7).
#[test]
fn rfc6147_5_1_3_aaaa_timeout_still_synthesises() {
    let up = upstream();
    let s = server_with(settings(&up));
    let t = Instant::now();
    let r = udp(v4(&s), &query("aaaa-silent.test.", RecordType::AAAA));
    assert!(t.elapsed() < Duration::from_millis(1200), "{:?}", t.elapsed());
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert_eq!(aaaas(&r), vec![(300, "2001:db8:64::c000:205".parse().unwrap())]);
}

// RFC 1035 4.2.1 / RFC 7766 5: an answer larger than the client's UDP size
// goes out with TC, and the same query over TCP gets all of it (100 A
// records upstream, themselves fetched over TCP after a truncated UDP answer).
#[test]
fn truncation_then_tcp_retry() {
    let up = upstream();
    let s = server_with(settings(&up));
    let q = with_edns(query("big.test.", RecordType::AAAA), false);
    let r = udp(v4(&s), &q);
    assert!(r.truncated(), "1232-byte UDP limit");
    assert!(r.answers().is_empty());
    let r = tcp(v4(&s), &q);
    assert!(!r.truncated());
    assert_eq!(aaaas(&r).len(), 100);
    assert!(r.extensions().is_some(), "RFC 6891 7: OPT in the answer when the query had one");
    // And from the cache, still truncated over UDP.
    let r = udp(v4(&s), &q);
    assert!(r.truncated());
    assert!(s.stats().counters.truncated >= 2);
}

// RFC 1035 4.2.2: a message is at most 65535 bytes. A synthesis that
// would be larger (3000 A records under four prefixes) goes out cut to fit
// with TC set (RFC 2181 9), never with a corrupt TCP length prefix, and is
// not cached.
#[test]
fn oversized_synthesis_is_cut_not_corrupt() {
    let up = upstream();
    let mut st = settings(&up);
    st.dns64.prefixes = ["2001:db8:64::/96", "2001:db8:65::/96", "2001:db8:66::/96", "2001:db8:67::/96"]
        .map(|p| p.parse().unwrap())
        .to_vec();
    let s = server_with(st);
    let r = tcp(v4(&s), &with_edns(query("huge.test.", RecordType::AAAA), false));
    assert!(r.truncated() && r.response_code() == ResponseCode::NoError, "{:?}", r.response_code());
    assert!(!aaaas(&r).is_empty() && aaaas(&r).len() < 12_000, "{}", aaaas(&r).len());
    assert_eq!(s.stats().cache_entries, 0, "a cut answer is not cached");
    // The connection and the server carry on.
    assert_eq!(aaaas(&tcp(v4(&s), &query("a-only.test.", RecordType::AAAA))).len(), 4);
}

// RFC 6147 5.3.1: a PTR query under the prefix is answered with a CNAME
// into in-addr.arpa and the PTR found there.
#[test]
fn rfc6147_5_3_1_ptr_under_prefix() {
    let up = upstream();
    let s = server_with(settings(&up));
    let name = "1.0.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.4.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    let r = udp(v4(&s), &query(name, RecordType::PTR));
    let got: Vec<(String, String)> = r.answers().iter().map(|x| (x.name().to_ascii(), x.data().to_string())).collect();
    assert_eq!(
        got,
        vec![
            (name.to_string(), "1.2.0.192.in-addr.arpa.".to_string()),
            ("1.2.0.192.in-addr.arpa.".to_string(), "a-only.test.".to_string())
        ]
    );
}

// RFC 8880 / RFC 7050: ipv4only.arpa AAAA is answered locally with
// 192.0.0.170 and .171 under the prefix; the upstream is not asked.
#[test]
fn rfc8880_ipv4only_arpa() {
    let up = upstream();
    let s = server_with(settings(&up));
    let r = udp(v6(&s), &query("ipv4only.arpa.", RecordType::AAAA));
    let mut got: Vec<Ipv6Addr> = aaaas(&r).into_iter().map(|x| x.1).collect();
    got.sort();
    assert_eq!(got, vec!["2001:db8:64::c000:aa".parse::<Ipv6Addr>().unwrap(), "2001:db8:64::c000:ab".parse().unwrap()]);
    assert_eq!(up.queries.load(Ordering::SeqCst), 0);
}

// RFC 6147 5.5: DO and CD set: the validating client gets the real
// (empty) answer, no synthesis; DO alone: synthesis, and no AD.
#[test]
fn rfc6147_5_5_dnssec_bits() {
    let up = upstream();
    let s = server_with(settings(&up));
    let mut q = with_edns(query("a-only.test.", RecordType::AAAA), true);
    q.set_checking_disabled(true);
    let r = udp(v4(&s), &q);
    assert!(aaaas(&r).is_empty(), "DO+CD: no synthesis");
    let r = udp(v4(&s), &with_edns(query("a-only.test.", RecordType::AAAA), true));
    assert_eq!(aaaas(&r).len(), 1);
    assert!(!r.authentic_data());
    assert!(r.extensions().as_ref().unwrap().flags().dnssec_ok, "DO echoed (RFC 3225 3)");
}

// Issue 5: not an open resolver: a client outside the allowed networks
// gets REFUSED and the upstream is never asked.
#[test]
fn clients_outside_allow_are_refused() {
    let up = upstream();
    let mut st = settings(&up);
    st.allow = vec!["127.0.0.0/8".parse().unwrap()];
    let s = server_with(st);
    let r = udp(v6(&s), &query("a-only.test.", RecordType::AAAA));
    assert_eq!(r.response_code(), ResponseCode::Refused);
    let r = tcp(v6(&s), &query("a-only.test.", RecordType::AAAA));
    assert_eq!(r.response_code(), ResponseCode::Refused);
    assert_eq!(up.queries.load(Ordering::SeqCst), 0);
    assert_eq!(s.stats().counters.refused, 2);
    // Allowed by a reload, and served.
    s.update(settings(&up));
    assert_eq!(aaaas(&udp(v6(&s), &query("a-only.test.", RecordType::AAAA))).len(), 1);
}

// Issue 5 (reload): a TCP connection that stays open follows a settings
// update: served before it, refused after it, on the same connection.
// (Issue 18 checks the client ACL at accept, so a connection that starts
// refused is answered once and closed; the update is followed the other
// way round.)
#[test]
fn an_open_tcp_connection_follows_an_update() {
    let up = upstream();
    let s = server_with(settings(&up));
    let mut c = TcpStream::connect(v6(&s)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let q = query("a-only.test.", RecordType::AAAA);
    assert_eq!(aaaas(&tcp_on(&mut c, &q)).len(), 1);
    let mut st = settings(&up);
    st.allow = vec!["127.0.0.0/8".parse().unwrap()];
    s.update(st);
    assert_eq!(tcp_on(&mut c, &q).response_code(), ResponseCode::Refused);
}

// RFC 1035 4.1.1: a query that cannot be parsed gets FORMERR (header
// echoed); too short, too long or a response gets nothing; the server
// keeps serving.
#[test]
fn garbage_gets_formerr_or_nothing() {
    let up = upstream();
    let s = server_with(settings(&up));
    // A header claiming one question, and no question.
    let r = udp_raw(v4(&s), &[0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
    assert_eq!(&r[..2], &[0xab, 0xcd]);
    assert_eq!(r[2] & 0x80, 0x80, "QR");
    assert_eq!(r[3] & 0xf, 1, "FORMERR");
    // A label running past the end.
    let r = udp_raw(v4(&s), &[1, 2, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 60, b'a']).unwrap();
    assert_eq!(r[3] & 0xf, 1);
    // Random bytes of every short length, and responses, are dropped.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for len in 0..12 {
        sock.send_to(&vec![0x5a; len], v4(&s)).unwrap();
    }
    let mut resp = query("a-only.test.", RecordType::A);
    resp.set_message_type(MessageType::Response);
    sock.send_to(&resp.to_vec().unwrap(), v4(&s)).unwrap();
    // A datagram longer than any query we read whole (4096 bytes).
    let mut long = query("a-only.test.", RecordType::A).to_vec().unwrap();
    long.resize(5000, 0);
    sock.send_to(&long, v4(&s)).unwrap();
    // Two questions: FORMERR from the full path.
    let mut two = query("a-only.test.", RecordType::A);
    two.add_query(Query::query(n("both.test."), RecordType::A));
    assert_eq!(udp(v4(&s), &two).response_code(), ResponseCode::FormErr);
    // EDNS version 1: BADVERS (RFC 6891 6.1.3).
    let mut q = with_edns(query("a-only.test.", RecordType::A), false);
    q.extensions_mut().as_mut().unwrap().set_version(1);
    // (16 is both BADVERS and BADSIG; hickory-proto decodes it as the latter.)
    assert_eq!(u16::from(udp(v4(&s), &q).response_code()), u16::from(ResponseCode::BADVERS));
    // Still serving.
    assert_eq!(aaaas(&udp(v4(&s), &query("a-only.test.", RecordType::AAAA))).len(), 1);
    let st = s.stats().counters;
    assert_eq!(st.dropped, 14);
    assert_eq!(st.formerr, 3);
}

// Other types pass through as the upstream answered (A here), and the
// second asking is a cache hit with its TTL counted down.
#[test]
fn other_types_pass_and_ttls_count_down() {
    let up = upstream();
    let s = server_with(settings(&up));
    let r = udp(v4(&s), &query("both.test.", RecordType::A));
    assert_eq!(r.answers()[0].ttl(), 300);
    std::thread::sleep(Duration::from_millis(1100));
    let r = udp(v4(&s), &query("both.test.", RecordType::A));
    assert!(r.answers()[0].ttl() < 300, "{}", r.answers()[0].ttl());
    assert_eq!(s.stats().counters.cache_hits, 1);
}

// RFC 7766 6.2.1.1: pipelined queries on one TCP connection are resolved
// concurrently and answered as they complete: the answer for a name the
// upstream serves at once comes before the SERVFAIL for one it never
// answers, although it was asked second.
#[test]
fn rfc7766_pipelined_tcp_queries_answered_out_of_order() {
    let up = upstream();
    let s = server_with(settings(&up));
    let mut c = TcpStream::connect(v4(&s)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for (id, name) in [(1u16, "slow.test."), (2, "a-only.test.")] {
        let mut q = query(name, RecordType::AAAA);
        q.set_id(id);
        let b = q.to_vec().unwrap();
        c.write_all(&(b.len() as u16).to_be_bytes()).unwrap();
        c.write_all(&b).unwrap();
    }
    let mut order = vec![];
    for _ in 0..2 {
        let mut len = [0u8; 2];
        c.read_exact(&mut len).unwrap();
        let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
        c.read_exact(&mut r).unwrap();
        let m = Message::from_vec(&r).unwrap();
        order.push((m.id(), m.response_code()));
    }
    assert_eq!(order, vec![(2, ResponseCode::NoError), (1, ResponseCode::ServFail)]);
}

// `nat64d --dns64-only`: the daemon serves DNS64 with no TUN device and no
// pool4 (so no root either), its counters in `nat64ctl stats`, and stops
// cleanly on SIGTERM.
#[test]
fn daemon_in_dns64_only_mode() {
    let up = upstream();
    let dir = std::env::temp_dir().join(format!("nat64d-dns64only-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("control.sock");
    // A free port for UDP and TCP both.
    let port = loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = u.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            break p;
        }
    };
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut d = std::process::Command::new(env!("CARGO_BIN_EXE_nat64d"))
        .args(["--dns64-only", "--pool6", "2001:db8:64::/96", "--control-socket", sock.to_str().unwrap()])
        .args(["--dns64-upstream", &up.addr.to_string(), "--dns64-listen", &listen.to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ctl = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_nat64ctl"))
            .args(["--socket", sock.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let start = Instant::now();
    while !ctl(&["stats"]).status.success() {
        assert!(start.elapsed() < Duration::from_secs(10), "nat64d --dns64-only did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = udp(listen, &query("a-only.test.", RecordType::AAAA));
    assert_eq!(aaaas(&r), vec![(60, "2001:db8:64::c000:201".parse().unwrap())]);
    let stats: serde_json::Value = serde_json::from_slice(&ctl(&["stats", "--json"]).stdout).unwrap();
    assert_eq!(stats["dns64"]["synthesized"], 1, "{stats}");
    assert_eq!(stats["workers"], 0);
    let table = String::from_utf8_lossy(&ctl(&["stats"]).stdout).into_owned();
    assert!(table.contains("DNS64 only (no translation)") && table.contains("synthesized"), "{table}");
    assert!(!table.contains("translated"), "no translator figures: {table}");
    std::process::Command::new("kill").args(["-TERM", &d.id().to_string()]).status().unwrap();
    let status = d.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut d.stderr.take().unwrap(), &mut err).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("serving DNS64 only"), "{err}");
}

/// A real unbound (Debian's) on 127.0.0.1 serving local data only, with
/// `local-data` CNAMEs, which unbound answers without chasing: the chain's
/// first link alone. Stopped (by its PID) when dropped.
struct Unbound {
    addr: SocketAddr,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unbound() -> Option<Unbound> {
    let bin = ["/usr/sbin/unbound", "/usr/bin/unbound"].into_iter().find(|p| std::path::Path::new(p).exists());
    let Some(bin) = bin else {
        assert!(
            std::env::var_os("NAT64D_REQUIRE_PEERS").is_none(),
            "unbound is not installed (apt-get install unbound) and NAT64D_REQUIRE_PEERS is set"
        );
        eprintln!("dns64_server: SKIPPED the unbound test: unbound is not installed");
        return None;
    };
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("nat64d-unbound-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = format!(
        "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-daemonize: no\n  use-syslog: no\n  logfile: \"\"\n  \
         username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"\"\n  do-ip6: no\n  \
         access-control: 127.0.0.0/8 allow\n  module-config: \"iterator\"\n  do-not-query-localhost: yes\n  \
         local-zone: \"test.\" static\n  local-data: \"chain.test. 300 IN CNAME hop.test.\"\n  \
         local-data: \"hop.test. 300 IN CNAME web.example.\"\n  local-zone: \"example.\" static\n  \
         local-data: \"web.example. 300 IN A 192.0.2.2\"\n  \
         local-data: \"example. 3600 IN SOA ns.example. admin.example. 1 7200 900 86400 60\"\n\
         remote-control:\n  control-enable: no\n",
        d = dir.display()
    );
    let path = dir.join("unbound.conf");
    std::fs::write(&path, conf).unwrap();
    let child = std::process::Command::new(bin)
        .args(["-d", "-c", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start unbound");
    let u = Unbound { addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)), child, dir };
    // Ready when it answers.
    let start = Instant::now();
    while udp_try(u.addr, &query("web.example.", RecordType::A)).is_none() {
        assert!(start.elapsed() < Duration::from_secs(10), "unbound did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(u)
}

fn udp_try(to: SocketAddr, q: &Message) -> Option<Message> {
    let s = UdpSocket::bind("127.0.0.1:0").ok()?;
    s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
    s.send_to(&q.to_vec().ok()?, to).ok()?;
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).ok()?;
    Message::from_vec(&buf[..n]).ok()
}

// RFC 6147 5.1.5 with RFC 1034 3.6.2, against a real upstream that does
// not chase (unbound's local-data CNAMEs): the chain's first link is all
// unbound gives, and nat64d follows it to the A record and synthesises.
#[test]
fn rfc6147_5_1_5_chain_from_unbound_followed() {
    let Some(u) = unbound() else { return };
    let bare = udp_try(u.addr, &query("chain.test.", RecordType::A)).expect("unbound answers");
    assert_eq!(bare.answers().len(), 1, "unbound itself does not chase: {bare:?}");
    let s =
        server_with(Settings { upstream: vec![u.addr], timeout: Duration::from_millis(1500), ..settings(&upstream()) });
    let r = udp(v4(&s), &query("chain.test.", RecordType::AAAA));
    assert_eq!(
        kinds(&r),
        vec![
            ("chain.test.".into(), RecordType::CNAME),
            ("hop.test.".into(), RecordType::CNAME),
            ("web.example.".into(), RecordType::AAAA)
        ]
    );
    assert!(r
        .answers()
        .iter()
        .any(|x| matches!(x.data(), RData::AAAA(a) if a.0 == "2001:db8:64::c000:202".parse::<Ipv6Addr>().unwrap())));
}

/// True when the server closes `c` (EOF) within `within`, without a byte.
fn closed_within(c: &mut TcpStream, within: Duration) -> bool {
    c.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1];
    matches!(c.read(&mut b), Ok(0))
        || matches!(c.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

// RFC 7766 6.2 / issue 18: DNS64 over TCP cannot be taken by anyone. A
// client outside `allow` is closed at accept (it never holds a slot); one
// address holds at most its share of connections, and another client is
// still served; a query whose first byte came must arrive whole within the
// deadline (a half-sent length prefix does not hold the connection for the
// idle time).
#[test]
fn rfc7766_6_2_tcp_connections_are_bounded_per_client() {
    let up = upstream();
    let cfg = ServerConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()],
        max_tcp_per_host: 3,
        tcp_idle: Duration::from_secs(10),
        tcp_query_deadline: Duration::from_millis(500),
        ..ServerConfig::default()
    };
    let only_v6 = Settings { allow: vec!["::1".parse().unwrap()], ..settings(&up) };
    let s = Dns64Server::start(cfg.clone(), only_v6).unwrap();
    // Twenty refused connections (more than one address may hold) take no
    // slot of the allowed clients': each gets REFUSED for its query and is
    // closed; the allowed client is served meanwhile.
    let mut refused: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(v4(&s)).unwrap()).collect();
    let r = tcp(v6(&s), &query("a-only.test.", RecordType::AAAA));
    assert_eq!(r.response_code(), ResponseCode::NoError, "an allowed client is served");
    let mut beyond = refused.pop().unwrap();
    assert!(closed_within(&mut beyond, Duration::from_millis(500)), "beyond the refusal budget: closed at once");
    let mut c = refused.remove(0);
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(tcp_on(&mut c, &query("a-only.test.", RecordType::AAAA)).response_code(), ResponseCode::Refused);
    assert!(closed_within(&mut c, Duration::from_millis(500)), "closed after its one answer");
    drop(refused);

    let s = Dns64Server::start(cfg, settings(&up)).unwrap();
    let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(v4(&s)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut fourth = TcpStream::connect(v4(&s)).unwrap();
    assert!(closed_within(&mut fourth, Duration::from_millis(500)), "one address holds at most 3");
    let r = tcp(v6(&s), &query("a-only.test.", RecordType::AAAA));
    assert_eq!(r.response_code(), ResponseCode::NoError, "another client is served");
    drop(held);
    std::thread::sleep(Duration::from_millis(100));
    let mut c = TcpStream::connect(v4(&s)).unwrap();
    c.write_all(&[0]).unwrap(); // half a length prefix, then nothing
    let start = Instant::now();
    assert!(closed_within(&mut c, Duration::from_secs(3)), "a trickled query is cut");
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "at the query deadline, not the idle time: {:?}",
        start.elapsed()
    );
    let r = tcp(v4(&s), &query("a-only.test.", RecordType::AAAA));
    assert_eq!(r.response_code(), ResponseCode::NoError, "the slots came back");
}

// RFC 1035 4.1 (issue 18): a query with bytes after its question (and no
// record to hold them) is malformed: FORMERR, not an answer.
#[test]
fn trailing_bytes_after_the_question_get_formerr() {
    let up = upstream();
    let s = server_with(settings(&up));
    let mut b = query("a-only.test.", RecordType::AAAA).to_vec().unwrap();
    b.extend_from_slice(b"\0\0trailing");
    let r = udp_raw(v4(&s), &b).expect("an answer");
    assert_eq!(r[3] & 0xf, 1, "FORMERR");
    let ok = udp(v4(&s), &query("a-only.test.", RecordType::AAAA));
    assert_eq!(ok.response_code(), ResponseCode::NoError, "the same query without them is answered");
}
