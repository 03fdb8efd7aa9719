//! The request handler: what the server answers, apart from how queries
//! arrive. The fast path answers refusals, garbage and cache hits from the
//! receive loop itself; the full path parses, resolves through the
//! upstreams applying RFC 6147, caches and encodes.

use super::upstream::exchange;
use super::{allowed, Settings, Shared};
use crate::dns64::wire::{self, HeadError, QueryHead, KEY_MAX, MAX_UDP_PAYLOAD};
use crate::dns64::{a_query_for, join_chain, reply_to, unfinished_chain, AaaaVerdict, MAX_CHAIN};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tracing::warn;

/// A receive loop's buffers for the fast path: the cache key and the
/// answer, reused from query to query.
pub(super) struct Scratch {
    pub(super) key: [u8; KEY_MAX],
    pub(super) out: Vec<u8>,
}

impl Scratch {
    pub(super) fn new() -> Self {
        Scratch { key: [0; KEY_MAX], out: Vec::with_capacity(4096) }
    }
}

/// What the fast path made of a datagram.
pub(super) enum Fast {
    Reply,
    Drop,
    Resolve(Option<QueryHead>),
}

/// Refusal, cache hit, or garbage: everything that needs no upstream.
pub(super) fn fast_path(
    sh: &Shared,
    s: &Settings,
    q: &[u8],
    src: SocketAddr,
    sc: &mut Scratch,
    udp: bool,
    now_ms: u64,
) -> Fast {
    let Scratch { key, out } = sc;
    let head = wire::parse_query(q, key);
    match head {
        Err(HeadError::Short) | Err(HeadError::Response) => {
            sh.c.dropped.fetch_add(1, Relaxed);
            Fast::Drop
        }
        _ if !allowed(s, src) => {
            sh.c.refused.fetch_add(1, Relaxed);
            match head {
                Ok(h) => wire::short_reply(q, &h, 5, false, out),
                _ => {
                    wire::header_reply(q, 5, out);
                }
            }
            Fast::Reply
        }
        Err(HeadError::Complex) => Fast::Resolve(None),
        Ok(h) => {
            if sh.cache.get(&key[..h.key_len], q, &h, now_ms, out) {
                sh.c.cache_hits.fetch_add(1, Relaxed);
                if udp && out.len() > h.udp_limit() {
                    sh.c.truncated.fetch_add(1, Relaxed);
                    let rcode = out[3] & 0xf;
                    wire::short_reply(q, &h, rcode, true, out);
                }
                return Fast::Reply;
            }
            Fast::Resolve(Some(h))
        }
    }
}

/// The full path: parse, resolve, cache, encode (and truncate for UDP).
pub(super) async fn answer(
    sh: &Shared,
    s: &Settings,
    q: &[u8],
    head: Option<(QueryHead, Vec<u8>)>,
    udp: bool,
) -> Option<Vec<u8>> {
    let msg = match whole_message(q) {
        Ok(m) if m.message_type() == MessageType::Query => m,
        Ok(_) => {
            sh.c.dropped.fetch_add(1, Relaxed);
            return None;
        }
        Err(_) => {
            let mut out = Vec::new();
            if wire::formerr(q, &mut out) {
                sh.c.formerr.fetch_add(1, Relaxed);
                return Some(out);
            }
            sh.c.dropped.fetch_add(1, Relaxed);
            return None;
        }
    };
    let resp = tokio::time::timeout(s.timeout, resolve(sh, s, &msg)).await.unwrap_or_else(|_| {
        sh.c.upstream_timeouts.fetch_add(1, Relaxed);
        sh.c.servfail.fetch_add(1, Relaxed);
        finish(&msg, reply_to(&msg, ResponseCode::ServFail))
    });
    let bytes = match resp.to_vec() {
        // A DNS message is at most 65535 bytes (the TCP length prefix).
        // hickory-proto's encoder already cuts a larger one and sets TC;
        // this is the second line of defence.
        Ok(b) if b.len() <= u16::MAX as usize => b,
        r => {
            if let Err(e) = r {
                warn!("dns64: cannot encode an answer: {e}");
            }
            sh.c.servfail.fetch_add(1, Relaxed);
            finish(&msg, reply_to(&msg, ResponseCode::ServFail)).to_vec().ok()?
        }
    };
    if let Some((h, key)) = &head {
        if resp.response_code() != ResponseCode::ServFail {
            sh.cache.put(key, &bytes, sh.now_ms());
        }
        if udp && bytes.len() > h.udp_limit() {
            sh.c.truncated.fetch_add(1, Relaxed);
            let mut out = Vec::new();
            wire::short_reply(q, h, bytes[3] & 0xf, true, &mut out);
            return Some(out);
        }
    } else if udp && bytes.len() > wire::udp_limit(msg.extensions().as_ref().map(|e| e.max_payload())) {
        sh.c.truncated.fetch_add(1, Relaxed);
        let mut m = reply_to(&msg, resp.response_code());
        m.set_truncated(true);
        return finish(&msg, m).to_vec().ok();
    }
    Some(bytes)
}

/// A message that ends where the datagram (or TCP frame) ends: bytes after
/// the last record make it malformed (RFC-strict servers answer FORMERR;
/// issue 18), where a lenient decoder would ignore them.
fn whole_message(q: &[u8]) -> Result<Message, ()> {
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
    let mut d = BinDecoder::new(q);
    let m = Message::read(&mut d).map_err(|_| ())?;
    if d.is_empty() {
        Ok(m)
    } else {
        Err(())
    }
}

/// The client-facing envelope of an answer: the query's id, RA, and an OPT
/// record of our own exactly when the client sent one (RFC 6891 7).
pub(super) fn finish(q: &Message, mut m: Message) -> Message {
    m.set_id(q.id()).set_message_type(MessageType::Response).set_recursion_available(true);
    m.set_recursion_desired(q.recursion_desired());
    *m.extensions_mut() = q.extensions().as_ref().map(|qe| {
        let mut e = Edns::new();
        e.set_max_payload(MAX_UDP_PAYLOAD).set_version(0).set_dnssec_ok(qe.flags().dnssec_ok);
        e
    });
    m
}

/// RFC 6147 5.1 to 5.5 with the upstream in the loop.
pub(super) async fn resolve(sh: &Shared, s: &Settings, q: &Message) -> Message {
    if q.op_code() != OpCode::Query {
        return finish(q, reply_to(q, ResponseCode::NotImp));
    }
    if q.queries().len() != 1 {
        sh.c.formerr.fetch_add(1, Relaxed);
        return finish(q, reply_to(q, ResponseCode::FormErr));
    }
    if q.extensions().as_ref().is_some_and(|e| e.version() > 0) {
        // RFC 6891 6.1.3: we speak EDNS version 0 only.
        return finish(q, reply_to(q, ResponseCode::BADVERS));
    }
    if let Some(m) = s.dns64.ipv4only(q) {
        sh.c.local.fetch_add(1, Relaxed);
        return finish(q, m);
    }
    let question = &q.queries()[0];
    let servfail = || {
        sh.c.servfail.fetch_add(1, Relaxed);
        finish(q, reply_to(q, ResponseCode::ServFail))
    };
    // RFC 6147 5.3.1: PTR under a prefix.
    if question.query_type() == RecordType::PTR && question.query_class() == DNSClass::IN {
        if let Some(target) = s.dns64.ptr_target(question.name()) {
            let mut pq = q.clone();
            pq.take_queries();
            pq.add_query(Query::query(target.clone(), RecordType::PTR));
            return match exchange(sh, s, &pq, s.timeout).await {
                Some(up) => {
                    sh.c.ptr_synthesized.fetch_add(1, Relaxed);
                    finish(q, s.dns64.ptr_answer(q, &target, &up))
                }
                None => servfail(),
            };
        }
    }
    let started = Instant::now();
    let wants = s.dns64.wants_synthesis(q);
    // 5.1.3: a AAAA query that times out is an error like any other
    // (5.1.2), so the A query still gets its chance: the AAAA query has
    // half the time when synthesis may follow.
    let budget = if wants { s.timeout / 2 } else { s.timeout };
    let up = match exchange(sh, s, q, budget).await {
        Some(up) if wants => finish_chain(sh, s, up, RecordType::AAAA, started, budget).await,
        Some(up) => up,
        None if wants => reply_to(q, ResponseCode::ServFail),
        None => return servfail(),
    };
    if !wants {
        sh.c.passed.fetch_add(1, Relaxed);
        return finish(q, up);
    }
    match s.dns64.aaaa_verdict(&up) {
        AaaaVerdict::Pass(m) => {
            sh.c.passed.fetch_add(1, Relaxed);
            finish(q, m)
        }
        AaaaVerdict::QueryA => {
            let Some(aq) = a_query_for(q, 0) else { return servfail() };
            match exchange(sh, s, &aq, s.timeout.saturating_sub(started.elapsed())).await {
                Some(a) => {
                    let a = finish_chain(sh, s, a, RecordType::A, started, s.timeout).await;
                    let m = s.dns64.synthesize(q, &up, &a);
                    if m.answers().iter().any(|r| r.record_type() == RecordType::AAAA) {
                        sh.c.synthesized.fetch_add(1, Relaxed);
                    } else if m.response_code() == ResponseCode::ServFail {
                        sh.c.servfail.fetch_add(1, Relaxed);
                    } else {
                        sh.c.passed.fetch_add(1, Relaxed);
                    }
                    finish(q, m)
                }
                // 5.1.2: the AAAA answer stands when the A query fails, but an
                // error there that the A query could not fix is a SERVFAIL.
                None if up.response_code() == ResponseCode::NoError => {
                    sh.c.passed.fetch_add(1, Relaxed);
                    finish(q, up)
                }
                None => servfail(),
            }
        }
    }
}

/// RFC 6147 5.1.5 with RFC 1034 3.6.2: when the upstream's answer is a
/// CNAME chain whose last name has no `qtype` data in it (the upstream did
/// not chase), ask for that name, at most [`MAX_CHAIN`] times and within
/// the query's `budget` from `started`, and return the whole chain with the
/// data at its end. A loop, the bound, or an upstream that fails leave the
/// answer as far as it got.
pub(super) async fn finish_chain(
    sh: &Shared,
    s: &Settings,
    mut resp: Message,
    qtype: RecordType,
    started: Instant,
    budget: Duration,
) -> Message {
    let Some(qname) = resp.queries().first().map(|q| q.name().clone()) else { return resp };
    let mut asked: Option<Name> = None;
    for _ in 0..MAX_CHAIN {
        let Some(end) = unfinished_chain(&resp, &qname, qtype) else { break };
        if asked.as_ref() == Some(&end) {
            break; // its answer had no data and no further CNAME: NODATA stands
        }
        asked = Some(end.clone());
        let mut next = Message::new();
        next.set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(true);
        next.add_query(Query::query(end, qtype));
        let Some(tail) = exchange(sh, s, &next, budget.saturating_sub(started.elapsed())).await else { break };
        sh.c.chased.fetch_add(1, Relaxed);
        resp = join_chain(&resp, &tail);
    }
    resp
}
