//! DNS wire format for the cache-hit fast path: just enough parsing of a
//! query to build its cache key and EDNS limits, and of a response to find
//! its TTL fields, without building a `Message` (RFC 1035 4.1, RFC 6891 6.1).
//! Anything unusual is `Complex` and takes the full hickory-proto path.

/// Largest UDP answer we send, whatever the client's EDNS size says (the
/// DNS flag day 2020 value: no IP fragmentation on ordinary paths).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Without EDNS, RFC 1035 4.2.1.
pub const PLAIN_UDP_PAYLOAD: u16 = 512;
/// Key bytes: a name (at most 255) plus type, class and a flags byte.
pub const KEY_MAX: usize = 255 + 5;

const QR: u16 = 0x8000;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;
const CD: u16 = 0x0010;
const OPT: u16 = 41;

/// EDNS0 as the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns0 {
    pub payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// The parts of a simple query the fast path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryHead {
    pub id: u16,
    pub flags: u16,
    /// Offset just past the question (name, type, class).
    pub qend: usize,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns0>,
    /// Length of the cache key written by [`parse_query`].
    pub key_len: usize,
}

impl QueryHead {
    /// The most a UDP answer to this query may carry (RFC 6891 6.2.5).
    pub fn udp_limit(&self) -> usize {
        udp_limit(self.edns.map(|e| e.payload))
    }
}

/// The most a UDP answer may carry for a query with this EDNS payload size
/// (None: no EDNS), RFC 6891 6.2.5 and RFC 1035 4.2.1, capped by ours.
pub fn udp_limit(edns_payload: Option<u16>) -> usize {
    match edns_payload {
        Some(p) => p.clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD) as usize,
        None => PLAIN_UDP_PAYLOAD as usize,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Shorter than a header: nothing to answer.
    Short,
    /// The QR bit is set: a response, never answered (no reflection loops).
    Response,
    /// Valid perhaps, but not the one-question shape the fast path handles.
    Complex,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parses a query of the common shape (opcode QUERY, one question with no
/// compression, no answer or authority records, at most an OPT record) and
/// writes its cache key (lower-cased name, type, class, RD/CD/DO/EDNS bits)
/// into `key`.
pub fn parse_query(b: &[u8], key: &mut [u8; KEY_MAX]) -> Result<QueryHead, HeadError> {
    if b.len() < 12 {
        return Err(HeadError::Short);
    }
    let flags = u16::from_be_bytes([b[2], b[3]]);
    if flags & QR != 0 {
        return Err(HeadError::Response);
    }
    let counts = [be16(b, 4), be16(b, 6), be16(b, 8), be16(b, 10)];
    if (flags >> 11) & 0xf != 0 || counts[0] != Some(1) || counts[1] != Some(0) || counts[2] != Some(0) {
        return Err(HeadError::Complex);
    }
    let arcount = counts[3].unwrap_or(0);
    if arcount > 1 {
        return Err(HeadError::Complex);
    }
    let mut at = 12;
    let mut k = 0;
    loop {
        let len = *b.get(at).ok_or(HeadError::Complex)? as usize;
        if len & 0xc0 != 0 {
            return Err(HeadError::Complex);
        }
        if k + len + 1 > 255 {
            return Err(HeadError::Complex);
        }
        let label = b.get(at..at + 1 + len).ok_or(HeadError::Complex)?;
        for (i, c) in label.iter().enumerate() {
            key[k + i] = if i == 0 { *c } else { c.to_ascii_lowercase() };
        }
        k += len + 1;
        at += len + 1;
        if len == 0 {
            break;
        }
    }
    let qtype = be16(b, at).ok_or(HeadError::Complex)?;
    let qclass = be16(b, at + 2).ok_or(HeadError::Complex)?;
    at += 4;
    let qend = at;
    let mut edns = None;
    if arcount == 1 {
        // The OPT record: root name, type 41, class = payload size,
        // TTL = extended RCODE, version, DO and flags (RFC 6891 6.1.2-6.1.3).
        if b.get(at) != Some(&0) || be16(b, at + 1) != Some(OPT) {
            return Err(HeadError::Complex);
        }
        let payload = be16(b, at + 3).ok_or(HeadError::Complex)?;
        let version = *b.get(at + 6).ok_or(HeadError::Complex)?;
        let ext_flags = be16(b, at + 7).ok_or(HeadError::Complex)?;
        let rdlen = be16(b, at + 9).ok_or(HeadError::Complex)? as usize;
        at += 11;
        // Options: well-formed TLVs (RFC 6891 6.1.2), or the full path
        // answers FORMERR. Client Subnet (8) has content rules of its own:
        // left to the full path too.
        let end = at + rdlen;
        while at < end {
            let code = be16(b, at).ok_or(HeadError::Complex)?;
            let len = be16(b, at + 2).ok_or(HeadError::Complex)? as usize;
            if code == 8 {
                return Err(HeadError::Complex);
            }
            at += 4 + len;
        }
        if at != end {
            return Err(HeadError::Complex);
        }
        if version != 0 {
            return Err(HeadError::Complex); // BADVERS, answered by the full path
        }
        edns = Some(Edns0 { payload, version, dnssec_ok: ext_flags & 0x8000 != 0 });
    }
    if at != b.len() {
        return Err(HeadError::Complex);
    }
    key[k..k + 2].copy_from_slice(&qtype.to_be_bytes());
    key[k + 2..k + 4].copy_from_slice(&qclass.to_be_bytes());
    key[k + 4] = u8::from(flags & RD != 0)
        | u8::from(flags & CD != 0) << 1
        | u8::from(edns.is_some_and(|e| e.dnssec_ok)) << 2
        | u8::from(edns.is_some()) << 3;
    Ok(QueryHead { id: u16::from_be_bytes([b[0], b[1]]), flags, qend, qtype, qclass, edns, key_len: k + 5 })
}

fn skip_name(b: &[u8], mut at: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *b.get(at)? as usize;
        match len & 0xc0 {
            0 if len == 0 => return Some(at + 1),
            0 => at += len + 1,
            0xc0 => return b.get(at + 1).map(|_| at + 2),
            _ => return None,
        }
    }
    None
}

/// The offsets of the TTL fields of every record of a response except OPT,
/// and the smallest TTL among them. None if the message is not well formed.
pub fn ttl_fields(b: &[u8]) -> Option<(Vec<u16>, Option<u32>)> {
    if b.len() < 12 || b.len() > u16::MAX as usize {
        return None;
    }
    let qd = be16(b, 4)?;
    let rr = be16(b, 6)? as usize + be16(b, 8)? as usize + be16(b, 10)? as usize;
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(b, at)? + 4;
    }
    let mut offs = Vec::with_capacity(rr);
    let mut min: Option<u32> = None;
    for _ in 0..rr {
        at = skip_name(b, at)?;
        let rtype = be16(b, at)?;
        let rdlen = be16(b, at + 8)? as usize;
        if rtype != OPT {
            let ttl = u32::from_be_bytes(b.get(at + 4..at + 8)?.try_into().ok()?);
            offs.push((at + 4) as u16);
            min = Some(min.map_or(ttl, |m| m.min(ttl)));
        }
        at += 10 + rdlen;
    }
    (at == b.len()).then_some((offs, min))
}

/// A header-only answer with `rcode` to a query whose question cannot be
/// used (FORMERR for one that could not be parsed, RFC 1035 4.1.1; REFUSED
/// for a client that may not ask), or false when there is nothing to
/// answer (shorter than a header, or a response).
pub fn header_reply(q: &[u8], rcode: u8, out: &mut Vec<u8>) -> bool {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return false;
    }
    out.clear();
    out.extend_from_slice(&q[..2]);
    let flags = (u16::from_be_bytes([q[2], q[3]]) & (0x7800 | RD)) | QR | RA | u16::from(rcode & 0xf);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    true
}

/// FORMERR for a query that could not be parsed ([`header_reply`]).
pub fn formerr(q: &[u8], out: &mut Vec<u8>) -> bool {
    header_reply(q, 1, out)
}

/// The answer to `q` with only its question (and an OPT record if it sent
/// one) and `rcode`, plus TC when `truncated`: what a client gets when the
/// answer does not fit (RFC 1035 4.2.1, RFC 7766 5: it retries over TCP) or
/// when it is refused.
pub fn short_reply(q: &[u8], h: &QueryHead, rcode: u8, truncated: bool, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&q[..2]);
    let mut flags = (h.flags & (0x7800 | RD | CD)) | QR | RA | u16::from(rcode & 0xf);
    if truncated {
        flags |= TC;
    }
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(h.edns.is_some())]);
    out.extend_from_slice(&q[12..h.qend]);
    if let Some(e) = h.edns {
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0, 0, if e.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
}

/// Fits a cached answer to the query: its id, the client's spelling of the
/// name (DNS 0x20 case randomisation), and every TTL reduced by the seconds
/// it has been cached.
pub fn patch_cached(out: &mut [u8], q: &[u8], h: &QueryHead, ttl_offs: &[u16], age_secs: u32) {
    out[..2].copy_from_slice(&q[..2]);
    if out.len() >= h.qend {
        out[12..h.qend - 4].copy_from_slice(&q[12..h.qend - 4]);
    }
    for &o in ttl_offs {
        let o = o as usize;
        let ttl = u32::from_be_bytes([out[o], out[o + 1], out[o + 2], out[o + 3]]);
        out[o..o + 4].copy_from_slice(&ttl.saturating_sub(age_secs).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn query(name: &str, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0xbeef).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::AAAA));
        if let Some(p) = edns {
            let mut e = Edns::new();
            e.set_max_payload(p).set_dnssec_ok(true);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    // RFC 1035 4.1.2 / 2.3.3: the key is the name compared without case,
    // with type, class and the bits that change the answer.
    #[test]
    fn key_ignores_case_and_keeps_the_bits() {
        let (mut k1, mut k2) = ([0u8; KEY_MAX], [0u8; KEY_MAX]);
        let h1 = parse_query(&query("Web.EXAMPLE.", None), &mut k1).unwrap();
        let h2 = parse_query(&query("web.example.", None), &mut k2).unwrap();
        assert_eq!(k1[..h1.key_len], k2[..h2.key_len]);
        let h3 = parse_query(&query("web.example.", Some(1232)), &mut k2).unwrap();
        assert_ne!(k1[..h1.key_len], k2[..h3.key_len], "EDNS and DO are part of the key");
        assert_eq!((h1.id, h1.qtype, h1.qclass), (0xbeef, 28, 1));
    }

    // RFC 6891 6.2.5 (and RFC 1035 4.2.1): a UDP answer fits the requestor's
    // size, at least 512; we never send more than 1232.
    #[test]
    fn udp_limit_follows_edns() {
        let mut k = [0u8; KEY_MAX];
        assert_eq!(parse_query(&query("a.example.", None), &mut k).unwrap().udp_limit(), 512);
        assert_eq!(parse_query(&query("a.example.", Some(100)), &mut k).unwrap().udp_limit(), 512);
        assert_eq!(parse_query(&query("a.example.", Some(4096)), &mut k).unwrap().udp_limit(), 1232);
        let h = parse_query(&query("a.example.", Some(1000)), &mut k).unwrap();
        assert_eq!(h.udp_limit(), 1000);
        assert!(h.edns.unwrap().dnssec_ok);
    }

    // RFC 1035 4.1.1: responses are not queries (never answered: no loops);
    // a short datagram has no header to answer; odd shapes take the full path.
    #[test]
    fn what_the_fast_path_refuses() {
        let mut k = [0u8; KEY_MAX];
        let mut q = query("a.example.", None);
        assert_eq!(parse_query(&q[..11], &mut k), Err(HeadError::Short));
        q[2] |= 0x80;
        assert_eq!(parse_query(&q, &mut k), Err(HeadError::Response));
        let mut two = query("a.example.", None);
        two[5] = 2;
        assert_eq!(parse_query(&two, &mut k), Err(HeadError::Complex));
        let mut trailing = query("a.example.", None);
        trailing.push(0);
        assert_eq!(parse_query(&trailing, &mut k), Err(HeadError::Complex));
    }

    // RFC 1035 3.2.1 / RFC 6891 6.1.2: every record's TTL is found, except
    // the OPT pseudo-record's, whose TTL field holds flags.
    #[test]
    fn ttl_fields_skip_opt_and_patch_counts_down() {
        let q = query("Web.Example.", Some(1232));
        let mut m = Message::from_vec(&query("web.example.", Some(1232))).unwrap();
        m.set_message_type(hickory_proto::op::MessageType::Response);
        for (i, ttl) in [(1u8, 300u32), (2, 60)] {
            m.add_answer(Record::from_rdata(
                Name::from_ascii("web.example.").unwrap(),
                ttl,
                RData::A(A::new(192, 0, 2, i)),
            ));
        }
        let wire = m.to_vec().unwrap();
        let (offs, min) = ttl_fields(&wire).unwrap();
        assert_eq!((offs.len(), min), (2, Some(60)));
        let mut k = [0u8; KEY_MAX];
        let h = parse_query(&q, &mut k).unwrap();
        let mut out = wire.clone();
        patch_cached(&mut out, &q, &h, &offs, 10);
        let r = Message::from_vec(&out).unwrap();
        let ttls: Vec<u32> = r.answers().iter().map(|a| a.ttl()).collect();
        assert_eq!(ttls, vec![290, 50]);
        assert_eq!(r.queries()[0].name().to_ascii(), "Web.Example.", "the client's 0x20 spelling");
        assert_eq!(ttl_fields(&wire[..wire.len() - 1]), None, "a cut message is not walked");
    }
}
