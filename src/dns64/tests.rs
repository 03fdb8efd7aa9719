//! RFC 6147 (DNS64) and RFC 8880 rules, message by message.

use super::*;
use hickory_proto::op::{Edns, OpCode};
use hickory_proto::rr::rdata::{PTR, SOA};

fn n(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn query(name: &str, t: RecordType) -> Message {
    let mut m = Message::new();
    m.set_id(0x1234).set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(true);
    m.add_query(Query::query(n(name), t));
    m
}

fn response(q: &Message, rcode: ResponseCode, answers: Vec<Record>, authority: Vec<Record>) -> Message {
    let mut m = reply_to(q, rcode);
    m.set_id(0x9999); // the upstream's own id
    m.insert_answers(answers);
    m.insert_name_servers(authority);
    m
}

fn a(name: &str, ttl: u32, ip: [u8; 4]) -> Record {
    Record::from_rdata(n(name), ttl, RData::A(A(Ipv4Addr::from(ip))))
}
fn aaaa(name: &str, ttl: u32, ip: &str) -> Record {
    Record::from_rdata(n(name), ttl, RData::AAAA(AAAA(ip.parse().unwrap())))
}
fn cname(name: &str, ttl: u32, target: &str) -> Record {
    Record::from_rdata(n(name), ttl, RData::CNAME(CNAME(n(target))))
}
fn soa(zone: &str, ttl: u32, minimum: u32) -> Record {
    let s = SOA::new(n("ns.example."), n("host.example."), 1, 7200, 900, 86400, minimum);
    Record::from_rdata(n(zone), ttl, RData::SOA(s))
}

fn nsp() -> Prefix6052 {
    "2001:db8:64::/96".parse().unwrap()
}
fn dns64() -> Dns64 {
    Dns64::new(vec![nsp()])
}

fn aaaas(m: &Message) -> Vec<(String, u32, Ipv6Addr)> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::AAAA(x) => Some((r.name().to_string(), r.ttl(), x.0)),
            _ => None,
        })
        .collect()
}

// RFC 6147 5.1.1: a name with AAAA records gets them, untouched.
#[test]
fn rfc6147_5_1_1_real_aaaa_passes() {
    let q = query("both.example.", RecordType::AAAA);
    let r = response(&q, ResponseCode::NoError, vec![aaaa("both.example.", 300, "2001:db8::1")], vec![]);
    assert_eq!(dns64().aaaa_verdict(&r), AaaaVerdict::Pass(r.clone()));
}

// RFC 6147 5.1.4: AAAA records in the excluded ::ffff:0:0/96 count as absent;
// mixed with real ones, only the excluded are removed.
#[test]
fn rfc6147_5_1_4_excluded_aaaa() {
    let q = query("mapped.example.", RecordType::AAAA);
    let only = response(&q, ResponseCode::NoError, vec![aaaa("mapped.example.", 300, "::ffff:192.0.2.9")], vec![]);
    assert_eq!(dns64().aaaa_verdict(&only), AaaaVerdict::QueryA);
    let mixed = response(
        &q,
        ResponseCode::NoError,
        vec![aaaa("mapped.example.", 300, "::ffff:192.0.2.9"), aaaa("mapped.example.", 300, "2001:db8::2")],
        vec![],
    );
    let AaaaVerdict::Pass(m) = dns64().aaaa_verdict(&mixed) else { panic!("a real AAAA remains") };
    assert_eq!(aaaas(&m), vec![("mapped.example.".into(), 300, "2001:db8::2".parse().unwrap())]);
}

// RFC 6147 5.1.2: NXDOMAIN is passed; other error RCODEs count as an empty answer.
#[test]
fn rfc6147_5_1_2_rcodes() {
    let q = query("nx.example.", RecordType::AAAA);
    let nx = response(&q, ResponseCode::NXDomain, vec![], vec![soa("example.", 60, 60)]);
    assert_eq!(dns64().aaaa_verdict(&nx), AaaaVerdict::Pass(nx.clone()));
    for rc in [ResponseCode::ServFail, ResponseCode::Refused, ResponseCode::FormErr] {
        assert_eq!(dns64().aaaa_verdict(&response(&q, rc, vec![], vec![])), AaaaVerdict::QueryA, "{rc:?}");
    }
    let nodata = response(&q, ResponseCode::NoError, vec![], vec![soa("example.", 60, 60)]);
    assert_eq!(dns64().aaaa_verdict(&nodata), AaaaVerdict::QueryA);
}

// RFC 6147 5.1.6 / 5.2: one AAAA per A record and per prefix, in prefix order;
// 5.1.7: TTL = min(A TTL, SOA minimum of the negative AAAA answer).
#[test]
fn rfc6147_5_1_6_and_5_1_7_synthesis_and_ttl() {
    let mut d = dns64();
    d.prefixes.push("2001:db8:aaaa::/48".parse().unwrap());
    let q = query("v4only.example.", RecordType::AAAA);
    let neg = response(&q, ResponseCode::NoError, vec![], vec![soa("example.", 3600, 60)]);
    let qa = a_query_for(&q, 7).unwrap();
    assert_eq!((qa.queries()[0].query_type(), qa.queries()[0].name()), (RecordType::A, &n("v4only.example.")));
    let ar = response(
        &qa,
        ResponseCode::NoError,
        vec![a("v4only.example.", 300, [198, 51, 100, 7]), a("v4only.example.", 300, [198, 51, 100, 8])],
        vec![],
    );
    let m = d.synthesize(&q, &neg, &ar);
    assert_eq!(m.id(), 0x1234, "the client's id");
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(m.queries(), q.queries(), "the client's question");
    let got = aaaas(&m);
    let want: Vec<(String, u32, Ipv6Addr)> = [
        "2001:db8:64::c633:6407",
        "2001:db8:aaaa:c633:64:700::",
        "2001:db8:64::c633:6408",
        "2001:db8:aaaa:c633:64:800::",
    ]
    .iter()
    .map(|s| ("v4only.example.".to_string(), 60, s.parse().unwrap()))
    .collect();
    assert_eq!(got, want);
    // Without an SOA in the negative answer: at most 600 s.
    let neg = response(&q, ResponseCode::NoError, vec![], vec![]);
    let ar = response(&qa, ResponseCode::NoError, vec![a("v4only.example.", 3600, [198, 51, 100, 7])], vec![]);
    assert!(aaaas(&d.synthesize(&q, &neg, &ar)).iter().all(|x| x.1 == NO_SOA_TTL));
    // The SOA's own TTL bounds it too (RFC 2308 5: a negative answer lives min(TTL, MINIMUM)).
    let neg = response(&q, ResponseCode::NoError, vec![], vec![soa("example.", 30, 900)]);
    assert!(aaaas(&d.synthesize(&q, &neg, &ar)).iter().all(|x| x.1 == 30));
}

// RFC 6147 5.1.5: the CNAME chain stays in the synthesised answer, the AAAA
// records at its end.
#[test]
fn rfc6147_5_1_5_cname_chain_kept() {
    let q = query("www.example.", RecordType::AAAA);
    let neg = response(&q, ResponseCode::NoError, vec![cname("www.example.", 300, "web.example.")], vec![]);
    assert_eq!(dns64().aaaa_verdict(&neg), AaaaVerdict::QueryA, "a chain ending without AAAA is NODATA");
    let ar = response(
        &q,
        ResponseCode::NoError,
        vec![cname("www.example.", 300, "web.example."), a("web.example.", 120, [198, 51, 100, 9])],
        vec![],
    );
    let m = dns64().synthesize(&q, &neg, &ar);
    assert!(matches!(m.answers()[0].data(), RData::CNAME(c) if c.0 == n("web.example.")));
    assert_eq!(aaaas(&m), vec![("web.example.".into(), 120, "2001:db8:64::c633:6409".parse().unwrap())]);
}

// RFC 6147 5.1.6: no A records (NODATA, NXDOMAIN, an error): the answer to
// the AAAA query goes back, with the client's id.
#[test]
fn rfc6147_nothing_to_synthesise_returns_the_aaaa_answer() {
    let q = query("none.example.", RecordType::AAAA);
    let neg = response(&q, ResponseCode::NoError, vec![], vec![soa("example.", 60, 60)]);
    for (rc, answers) in [
        (ResponseCode::NoError, vec![]),
        (ResponseCode::NXDomain, vec![]),
        (ResponseCode::ServFail, vec![]),
        (ResponseCode::NoError, vec![a("none.example.", 60, [198, 51, 100, 1])]),
    ] {
        let mut d = dns64();
        d.exclude4.push(Net4 { addr: Ipv4Addr::new(198, 51, 100, 0), len: 24 });
        let m = d.synthesize(&q, &neg, &response(&q, rc, answers, vec![]));
        assert_eq!((m.id(), m.response_code(), m.answers().len()), (0x1234, ResponseCode::NoError, 0), "{rc:?}");
        assert_eq!(m.name_servers().len(), 1, "the negative answer's SOA stays");
    }
}

// RFC 6052 3.1 (RFC 6147 5.1.6): non-global IPv4 is never synthesised under
// the well-known prefix, but is under a network-specific one.
#[test]
fn rfc6052_3_1_well_known_prefix_global_only() {
    let q = query("lan.example.", RecordType::AAAA);
    let neg = response(&q, ResponseCode::NoError, vec![], vec![]);
    let ar = response(&q, ResponseCode::NoError, vec![a("lan.example.", 60, [10, 1, 2, 3])], vec![]);
    let wkp = Dns64::new(vec![Prefix6052::WKP]);
    assert!(aaaas(&wkp.synthesize(&q, &neg, &ar)).is_empty());
    assert_eq!(aaaas(&dns64().synthesize(&q, &neg, &ar)).len(), 1);
    let ar = response(&q, ResponseCode::NoError, vec![a("pub.example.", 60, [8, 8, 4, 4])], vec![]);
    assert_eq!(aaaas(&wkp.synthesize(&q, &neg, &ar))[0].2, "64:ff9b::808:404".parse::<Ipv6Addr>().unwrap());
}

// RFC 6147 5.5: DO and CD together: no synthesis (the client validates);
// the AD bit is never set on a synthesised answer.
#[test]
fn rfc6147_5_5_dnssec_bits() {
    let mut q = query("v4only.example.", RecordType::AAAA);
    assert!(dns64().wants_synthesis(&q));
    let mut e = Edns::new();
    e.set_dnssec_ok(true);
    *q.extensions_mut() = Some(e);
    assert!(dns64().wants_synthesis(&q), "DO alone: synthesise");
    q.set_checking_disabled(true);
    assert!(!dns64().wants_synthesis(&q), "DO and CD: pass the real answer");
    assert!(!dns64().wants_synthesis(&query("x.example.", RecordType::A)), "only AAAA");
    let q = query("v4only.example.", RecordType::AAAA);
    let mut neg = response(&q, ResponseCode::NoError, vec![], vec![]);
    neg.set_authentic_data(true);
    let mut ar = response(&q, ResponseCode::NoError, vec![a("v4only.example.", 60, [198, 51, 100, 7])], vec![]);
    ar.set_authentic_data(true);
    assert!(!dns64().synthesize(&q, &neg, &ar).authentic_data());
}

// RFC 8880 / RFC 7050: ipv4only.arpa answered locally, A and AAAA.
#[test]
fn rfc8880_ipv4only_arpa() {
    let mut d = dns64();
    d.prefixes.push(Prefix6052::WKP);
    let m = d.ipv4only(&query("IPv4only.ARPA.", RecordType::AAAA)).expect("answered locally");
    let got: Vec<Ipv6Addr> = aaaas(&m).into_iter().map(|x| x.2).collect();
    let want: Vec<Ipv6Addr> = ["2001:db8:64::c000:aa", "64:ff9b::c000:aa", "2001:db8:64::c000:ab", "64:ff9b::c000:ab"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(got, want);
    let m = d.ipv4only(&query("ipv4only.arpa.", RecordType::A)).unwrap();
    assert_eq!(m.answers().len(), 2);
    assert!(d.ipv4only(&query("example.", RecordType::AAAA)).is_none());
    assert!(d.ipv4only(&query("sub.ipv4only.arpa.", RecordType::AAAA)).is_none());
}

// RFC 6147 5.3.1: a PTR query under the prefix's ip6.arpa zone points at the
// in-addr.arpa name of the embedded address, with a CNAME.
#[test]
fn rfc6147_5_3_1_ptr() {
    let name = "2.0.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.4.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    let target = dns64().ptr_target(&n(name)).expect("under the prefix");
    assert_eq!(target, n("2.2.0.192.in-addr.arpa."));
    let outside = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    assert_eq!(dns64().ptr_target(&n(outside)), None);
    for bad in ["0.ip6.arpa.", "example.", "x.0.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.4.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa."]
    {
        assert_eq!(dns64().ptr_target(&n(bad)), None, "{bad}");
    }
    let q = query(name, RecordType::PTR);
    let up = response(
        &q,
        ResponseCode::NoError,
        vec![Record::from_rdata(target.clone(), 300, RData::PTR(PTR(n("server.example."))))],
        vec![],
    );
    let m = dns64().ptr_answer(&q, &target, &up);
    assert!(matches!(m.answers()[0].data(), RData::CNAME(c) if c.0 == target));
    assert!(matches!(m.answers()[1].data(), RData::PTR(p) if p.0 == n("server.example.")));
    assert_eq!(m.id(), 0x1234);
}

// What the server sends must survive the wire format.
#[test]
fn synthesised_answer_round_trips_on_the_wire() {
    let q = query("v4only.example.", RecordType::AAAA);
    let neg = response(&q, ResponseCode::NoError, vec![], vec![soa("example.", 60, 60)]);
    let ar = response(&q, ResponseCode::NoError, vec![a("v4only.example.", 60, [198, 51, 100, 7])], vec![]);
    let m = dns64().synthesize(&q, &neg, &ar);
    let back = Message::from_vec(&m.to_vec().unwrap()).unwrap();
    assert_eq!(aaaas(&back), aaaas(&m));
    assert_eq!(back.message_type(), MessageType::Response);
}

#[test]
fn ip6_arpa_parsing() {
    let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let nibbles: String = format!("{:032x}", u128::from(v6)).chars().rev().map(|c| format!("{c}.")).collect();
    assert_eq!(parse_ip6_arpa(&n(&format!("{nibbles}ip6.arpa."))), Some(v6));
    assert_eq!(parse_ip6_arpa(&n(&format!("{nibbles}IP6.ARPA."))), Some(v6), "case-insensitive");
}
