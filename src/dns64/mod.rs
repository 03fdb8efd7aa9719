//! DNS64 (RFC 6147) as pure code: messages in, messages out. The server
//! around it (sockets, upstream forwarding, client networks) is the I/O
//! part, in [`server`]; the answer cache is [`cache`] and the fast path's
//! wire parsing [`wire`]. What is here decides, for one query:
//!
//! - whether it is one DNS64 acts on at all ([`Dns64::wants_synthesis`]:
//!   AAAA, class IN, and not DO+CD, RFC 6147 5.5);
//! - what to do with the upstream's AAAA answer ([`Dns64::aaaa_verdict`],
//!   RFC 6147 5.1.1 to 5.1.4): pass it (with excluded addresses removed), or
//!   ask for the A records;
//! - the synthesised answer from the A answer ([`Dns64::synthesize`], RFC
//!   6147 5.1.5 to 5.1.7 and 5.2): one AAAA per A record and prefix, the
//!   CNAME/DNAME chain kept, the TTL bounded by the negative AAAA answer's
//!   SOA minimum, never the AD bit;
//! - `ipv4only.arpa` (RFC 8880 / RFC 7050) answered locally;
//! - PTR queries under a prefix's ip6.arpa zone (RFC 6147 5.3.1): the
//!   in-addr.arpa name to point at ([`Dns64::ptr_target`]) and the answer
//!   built from its lookup ([`Dns64::ptr_answer`]).

use crate::addr::{is_global_v4, Prefix6052};
use crate::addr::{Net4, Net6};
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use std::net::{Ipv4Addr, Ipv6Addr};

pub mod cache;
pub mod server;
pub mod wire;

/// RFC 6147 5.1.7: the TTL bound when the negative AAAA answer carried no SOA.
pub const NO_SOA_TTL: u32 = 600;
/// TTL of the locally answered `ipv4only.arpa` records (RFC 8880 7.2 gives
/// the zone's records a TTL of one day).
pub const IPV4ONLY_TTL: u32 = 86400;
/// RFC 7050 / 8880: the well-known IPv4-only name and its two addresses.
pub const IPV4ONLY_ARPA: &str = "ipv4only.arpa.";
pub const IPV4ONLY_ADDRS: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 0, 170), Ipv4Addr::new(192, 0, 0, 171)];

/// RFC 6147 5.1.4's default exclusion: IPv4-mapped addresses, ::ffff:0:0/96.
pub const MAPPED: Net6 = Net6 { addr: Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), len: 96 };

/// What to do with the upstream's answer to the AAAA query.
#[derive(Debug, Clone, PartialEq)]
pub enum AaaaVerdict {
    /// Send this to the client (RFC 6147 5.1.1, 5.1.2 NXDOMAIN, 5.1.4 with
    /// excluded addresses removed).
    Pass(Message),
    /// Ask the upstream for the A records and synthesise (NODATA, an error
    /// other than NXDOMAIN, or only excluded addresses).
    QueryA,
}

/// The DNS64 settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns64 {
    /// Prefixes to synthesise under, in order (RFC 6147 5.2).
    pub prefixes: Vec<Prefix6052>,
    /// AAAA records in these networks count as absent (default ::ffff:0:0/96).
    pub exclude6: Vec<Net6>,
    /// A records in these networks are never synthesised.
    pub exclude4: Vec<Net4>,
    /// Synthesise non-global IPv4 under 64:ff9b::/96 (labs only; RFC 6052 3.1 forbids it).
    pub allow_non_global: bool,
}

impl Dns64 {
    /// RFC 6147 defaults for `prefixes`: exclude ::ffff:0:0/96, nothing on the IPv4 side.
    pub fn new(prefixes: Vec<Prefix6052>) -> Self {
        Dns64 { prefixes, exclude6: vec![MAPPED], exclude4: vec![], allow_non_global: false }
    }

    /// True for a query DNS64 acts on: one AAAA question of class IN, and not
    /// both DO and CD set (RFC 6147 5.5: a validating client that sets CD
    /// gets the real answer to validate itself).
    pub fn wants_synthesis(&self, query: &Message) -> bool {
        let [q] = query.queries() else { return false };
        let do_bit = query.extensions().as_ref().is_some_and(|e| e.flags().dnssec_ok);
        q.query_type() == RecordType::AAAA && q.query_class() == DNSClass::IN && !(do_bit && query.checking_disabled())
    }

    fn excluded6(&self, a: Ipv6Addr) -> bool {
        self.exclude6.iter().any(|n| n.contains(a))
    }

    /// RFC 6147 5.1.1 to 5.1.4.
    pub fn aaaa_verdict(&self, resp: &Message) -> AaaaVerdict {
        match resp.response_code() {
            // 5.1.2: a name that does not exist has no A records either.
            ResponseCode::NXDomain => AaaaVerdict::Pass(resp.clone()),
            ResponseCode::NoError => {
                let aaaa = |r: &Record| match r.data() {
                    RData::AAAA(a) => Some(a.0),
                    _ => None,
                };
                let all: Vec<Ipv6Addr> = resp.answers().iter().filter_map(aaaa).collect();
                if all.iter().any(|&a| !self.excluded6(a)) {
                    // 5.1.1, with 5.1.4's excluded addresses taken out.
                    let mut m = resp.clone();
                    let kept: Vec<Record> =
                        m.take_answers().into_iter().filter(|r| aaaa(r).is_none_or(|a| !self.excluded6(a))).collect();
                    m.insert_answers(kept);
                    AaaaVerdict::Pass(m)
                } else {
                    // NODATA, or only excluded addresses (5.1.4).
                    AaaaVerdict::QueryA
                }
            }
            // 5.1.2: other errors are treated as an empty answer.
            _ => AaaaVerdict::QueryA,
        }
    }

    /// The IPv6 addresses synthesised from one IPv4 address, one per prefix
    /// (none when excluded, or non-global under the well-known prefix).
    pub fn synthesize_addr(&self, a: Ipv4Addr) -> impl Iterator<Item = Ipv6Addr> + '_ {
        let excluded = self.exclude4.iter().any(|n| n.contains(a));
        self.prefixes
            .iter()
            .filter(move |p| !excluded && (**p != Prefix6052::WKP || self.allow_non_global || is_global_v4(a)))
            .map(move |p| p.embed(a))
    }

    /// RFC 6147 5.1.5 to 5.1.7: the answer for the client, given the query,
    /// the upstream's AAAA answer and its A answer. When nothing can be
    /// synthesised (no A records, an error, every address excluded) the
    /// AAAA answer goes back as it was.
    pub fn synthesize(&self, query: &Message, aaaa: &Message, a: &Message) -> Message {
        let fallback = || {
            let mut m = aaaa.clone();
            m.set_id(query.id());
            m.set_authentic_data(false);
            m
        };
        if a.response_code() != ResponseCode::NoError {
            return fallback();
        }
        // 5.1.7: TTL bounded by the SOA minimum of the negative AAAA answer
        // (the smaller of the SOA's TTL and its MINIMUM field, as a negative
        // answer is cached, RFC 2308 5), or 600 s without one.
        let neg_ttl = aaaa
            .name_servers()
            .iter()
            .find_map(|r| match r.data() {
                RData::SOA(soa) => Some(soa.minimum().min(r.ttl())),
                _ => None,
            })
            .unwrap_or(NO_SOA_TTL);
        let mut answers = Vec::new();
        let mut synthesised = 0;
        for r in a.answers() {
            match r.data() {
                // 5.1.5: the chain is kept in the answer (DNAME has no typed
                // variant in hickory-proto 0.25: matched by type).
                RData::CNAME(_) => answers.push(r.clone()),
                _ if r.record_type() == RecordType::Unknown(39) => answers.push(r.clone()),
                RData::A(v4) => {
                    let ttl = r.ttl().min(neg_ttl);
                    for v6 in self.synthesize_addr(v4.0) {
                        answers.push(Record::from_rdata(r.name().clone(), ttl, RData::AAAA(AAAA(v6))));
                        synthesised += 1;
                    }
                }
                _ => {}
            }
        }
        if synthesised == 0 {
            return fallback();
        }
        let mut m = reply_to(query, ResponseCode::NoError);
        // 5.5: synthesised data is never claimed authentic.
        m.set_authentic_data(false);
        m.insert_answers(answers);
        m
    }

    /// RFC 8880 / RFC 7050: answer `ipv4only.arpa` locally: A with its two
    /// addresses, AAAA with them synthesised under every prefix (so clients
    /// discover the prefixes). None for any other query.
    pub fn ipv4only(&self, query: &Message) -> Option<Message> {
        let [q] = query.queries() else { return None };
        let name = Name::from_ascii(IPV4ONLY_ARPA).ok()?;
        if q.query_class() != DNSClass::IN || !q.name().to_lowercase().eq(&name) {
            return None;
        }
        let mut answers = Vec::new();
        for &v4 in &IPV4ONLY_ADDRS {
            match q.query_type() {
                RecordType::A => answers.push(Record::from_rdata(q.name().clone(), IPV4ONLY_TTL, RData::A(A(v4)))),
                RecordType::AAAA => {
                    // The special-purpose addresses are never global; RFC 8880 wants
                    // them synthesised anyway, under every prefix.
                    for p in &self.prefixes {
                        answers.push(Record::from_rdata(
                            q.name().clone(),
                            IPV4ONLY_TTL,
                            RData::AAAA(AAAA(p.embed(v4))),
                        ));
                    }
                }
                _ => {}
            }
        }
        let mut m = reply_to(query, ResponseCode::NoError);
        m.insert_answers(answers);
        Some(m)
    }

    /// RFC 6147 5.3.1: for a PTR query under one of the prefixes' ip6.arpa
    /// zones, the in-addr.arpa name of the embedded IPv4 address.
    pub fn ptr_target(&self, qname: &Name) -> Option<Name> {
        let v6 = parse_ip6_arpa(qname)?;
        let p = self.prefixes.iter().find(|p| p.contains(&v6))?;
        let o = p.extract(&v6)?.octets();
        Name::from_ascii(format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])).ok()
    }

    /// RFC 6147 5.3.1: the answer to a PTR query under a prefix: a CNAME
    /// from the ip6.arpa name to the in-addr.arpa name, then whatever the
    /// upstream answered for that name (its PTR records, or its error).
    pub fn ptr_answer(&self, query: &Message, target: &Name, upstream: &Message) -> Message {
        let mut m = reply_to(query, upstream.response_code());
        let mut answers = Vec::new();
        if let Some(q) = query.queries().first() {
            let ttl = upstream.answers().iter().map(|r| r.ttl()).min().unwrap_or(NO_SOA_TTL);
            answers.push(Record::from_rdata(q.name().clone(), ttl, RData::CNAME(CNAME(target.clone()))));
        }
        answers.extend(upstream.answers().iter().cloned());
        m.insert_answers(answers);
        // The CNAME is ours: the answer is not authenticated as a whole.
        m.set_authentic_data(false);
        m
    }
}

/// How many CNAME hops the server follows itself when the upstream left a
/// chain unfinished (RFC 1034 3.6.2 asks for a bound; loops end sooner).
pub const MAX_CHAIN: usize = 8;

/// RFC 6147 5.1.5 with RFC 1034 3.6.2: the last name of the CNAME chain in
/// `resp`'s answer that starts at `qname`, when the answer holds no record
/// of `qtype` for it (an upstream that does not chase: a forwarder, an
/// authoritative-only server). None when there is no chain, the chain ends
/// in data, the answer is an error, or the chain loops.
pub fn unfinished_chain(resp: &Message, qname: &Name, qtype: RecordType) -> Option<Name> {
    if resp.response_code() != ResponseCode::NoError {
        return None;
    }
    let mut at = qname.clone();
    let mut hops = 0;
    while let Some(next) = resp.answers().iter().find_map(|r| match r.data() {
        RData::CNAME(c) if r.name() == &at => Some(c.0.clone()),
        _ => None,
    }) {
        hops += 1;
        if hops > resp.answers().len() {
            return None; // a loop: more hops than records
        }
        at = next;
    }
    let has_data = resp.answers().iter().any(|r| r.name() == &at && r.record_type() == qtype);
    (hops > 0 && !has_data).then_some(at)
}

/// The answer to the client's question from a chain the server finished
/// itself: the chain's records (`head`'s answer) followed by the answer
/// for its last name (`tail`), whose RCODE and authority section (the SOA
/// RFC 6147 5.1.7 bounds TTLs with) stand for the whole.
pub fn join_chain(head: &Message, tail: &Message) -> Message {
    let mut m = tail.clone();
    m.set_id(head.id());
    m.take_queries();
    m.add_queries(head.queries().iter().cloned());
    let rest = m.take_answers();
    m.insert_answers(head.answers().iter().cloned().chain(rest).collect());
    // Data the server put together itself is not authenticated as a whole.
    m.set_authentic_data(false);
    m
}

/// A response skeleton for `query` (id, question, RD copied; RA set).
pub fn reply_to(query: &Message, rcode: ResponseCode) -> Message {
    let mut m = Message::new();
    m.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_checking_disabled(query.checking_disabled())
        .set_response_code(rcode);
    m.add_queries(query.queries().iter().cloned());
    m
}

/// The A query to send upstream for an AAAA query (same name, class and flags).
pub fn a_query_for(query: &Message, id: u16) -> Option<Message> {
    let [q] = query.queries() else { return None };
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(query.op_code())
        .set_recursion_desired(true)
        .set_checking_disabled(query.checking_disabled());
    m.add_query(Query::query(q.name().clone(), RecordType::A));
    *m.extensions_mut() = query.extensions().clone();
    Some(m)
}

/// The IPv6 address of a full 32-nibble ip6.arpa name (RFC 3596 2.5).
pub fn parse_ip6_arpa(name: &Name) -> Option<Ipv6Addr> {
    let labels: Vec<&[u8]> = name.iter().collect();
    if labels.len() != 34 || !labels[32].eq_ignore_ascii_case(b"ip6") || !labels[33].eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    let mut v = 0u128;
    for l in labels[..32].iter().rev() {
        let [c] = l else { return None };
        let d = (*c as char).to_digit(16)?;
        v = (v << 4) | d as u128;
    }
    Some(Ipv6Addr::from(v))
}

#[cfg(test)]
mod tests;
