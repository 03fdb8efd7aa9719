//! The mapping log as IPFIX (RFC 7011) with the NAT logging information
//! elements of RFC 8158, so that existing collectors ingest it: pure code,
//! events in, messages (UDP payloads) out.
//!
//! Three templates, sent in the first message and again every
//! `refresh` seconds (RFC 7011 8.1: over UDP, templates are resent
//! periodically, since a collector may start or lose packets):
//!
//! | id  | records | fields |
//! |-----|---------|--------|
//! | 256 | port block allocation / de-allocation (natEvent 16/17) | observationTimeMilliseconds, natEvent, protocolIdentifier, sourceIPv6Address, sourceIPv6PrefixLength, postNATSourceIPv4Address, portRangeStart, portRangeEnd, portRangeStepSize, portRangeNumPorts |
//! | 257 | NAT64 BIB create / delete (10/11), NAT64 session create / delete without destination (6/7) | observationTimeMilliseconds, natEvent, protocolIdentifier, sourceIPv6Address, sourceTransportPort, postNATSourceIPv4Address, postNAPTSourceTransportPort |
//! | 258 | NAT64 session create / delete with destination (6/7) | the fields of 257, postNATDestinationIPv4Address, postNAPTDestinationTransportPort |

use crate::nat::{EventKind, MapEvent, Proto};

/// IANA IPFIX information element numbers used here.
pub mod ie {
    pub const PROTOCOL_IDENTIFIER: u16 = 4;
    pub const SOURCE_TRANSPORT_PORT: u16 = 7;
    pub const SOURCE_IPV6_ADDRESS: u16 = 27;
    pub const SOURCE_IPV6_PREFIX_LENGTH: u16 = 29;
    pub const POST_NAT_SOURCE_IPV4_ADDRESS: u16 = 225;
    pub const POST_NAT_DESTINATION_IPV4_ADDRESS: u16 = 226;
    pub const POST_NAPT_SOURCE_TRANSPORT_PORT: u16 = 227;
    pub const POST_NAPT_DESTINATION_TRANSPORT_PORT: u16 = 228;
    pub const NAT_EVENT: u16 = 230;
    pub const OBSERVATION_TIME_MILLISECONDS: u16 = 323;
    pub const PORT_RANGE_START: u16 = 361;
    pub const PORT_RANGE_END: u16 = 362;
    pub const PORT_RANGE_STEP_SIZE: u16 = 363;
    pub const PORT_RANGE_NUM_PORTS: u16 = 364;
}

/// RFC 8158 section 4.1 natEvent values.
pub mod nat_event {
    pub const NAT64_SESSION_CREATE: u8 = 6;
    pub const NAT64_SESSION_DELETE: u8 = 7;
    pub const NAT64_BIB_CREATE: u8 = 10;
    pub const NAT64_BIB_DELETE: u8 = 11;
    pub const PORT_BLOCK_ALLOCATION: u8 = 16;
    pub const PORT_BLOCK_DEALLOCATION: u8 = 17;
}

pub const TEMPLATE_BLOCK: u16 = 256;
pub const TEMPLATE_BIB: u16 = 257;
pub const TEMPLATE_SESSION_DEST: u16 = 258;

const BLOCK_FIELDS: &[(u16, u16)] = &[
    (ie::OBSERVATION_TIME_MILLISECONDS, 8),
    (ie::NAT_EVENT, 1),
    (ie::PROTOCOL_IDENTIFIER, 1),
    (ie::SOURCE_IPV6_ADDRESS, 16),
    (ie::SOURCE_IPV6_PREFIX_LENGTH, 1),
    (ie::POST_NAT_SOURCE_IPV4_ADDRESS, 4),
    (ie::PORT_RANGE_START, 2),
    (ie::PORT_RANGE_END, 2),
    (ie::PORT_RANGE_STEP_SIZE, 2),
    (ie::PORT_RANGE_NUM_PORTS, 2),
];

const BIB_FIELDS: &[(u16, u16)] = &[
    (ie::OBSERVATION_TIME_MILLISECONDS, 8),
    (ie::NAT_EVENT, 1),
    (ie::PROTOCOL_IDENTIFIER, 1),
    (ie::SOURCE_IPV6_ADDRESS, 16),
    (ie::SOURCE_TRANSPORT_PORT, 2),
    (ie::POST_NAT_SOURCE_IPV4_ADDRESS, 4),
    (ie::POST_NAPT_SOURCE_TRANSPORT_PORT, 2),
];

const SESSION_DEST_EXTRA: &[(u16, u16)] =
    &[(ie::POST_NAT_DESTINATION_IPV4_ADDRESS, 4), (ie::POST_NAPT_DESTINATION_TRANSPORT_PORT, 2)];

/// The largest message built (fits a 1500-byte path with IPv6 and UDP headers).
pub const MAX_MESSAGE: usize = 1400;
const HEADER: usize = 16;

/// Builds IPFIX messages for one observation domain.
#[derive(Debug, Clone)]
pub struct Encoder {
    domain: u32,
    /// Data records sent so far (RFC 7011 3.1 sequence number).
    seq: u32,
    refresh_secs: u64,
    last_templates: Option<u64>,
}

fn record_len(fields: &[(u16, u16)]) -> usize {
    fields.iter().map(|f| f.1 as usize).sum()
}

/// Bytes of one data record of template `t`.
fn len_of(t: u16) -> usize {
    match t {
        TEMPLATE_BLOCK => record_len(BLOCK_FIELDS),
        TEMPLATE_BIB => record_len(BIB_FIELDS),
        _ => record_len(BIB_FIELDS) + record_len(SESSION_DEST_EXTRA),
    }
}

fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
        // The NAT64 maps ICMPv6 queries to ICMPv4 ones; the pool4 side is ICMP.
        Proto::Icmp => 1,
    }
}

impl Encoder {
    pub fn new(domain: u32, refresh_secs: u64) -> Self {
        Encoder { domain, seq: 0, refresh_secs: refresh_secs.max(1), last_templates: None }
    }

    /// Data records encoded so far.
    pub fn records(&self) -> u32 {
        self.seq
    }

    fn template_set(out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&2u16.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        let dest: Vec<(u16, u16)> = BIB_FIELDS.iter().chain(SESSION_DEST_EXTRA).copied().collect();
        for (id, fields) in
            [(TEMPLATE_BLOCK, BLOCK_FIELDS), (TEMPLATE_BIB, BIB_FIELDS), (TEMPLATE_SESSION_DEST, &dest[..])]
        {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&(fields.len() as u16).to_be_bytes());
            for (ie, len) in fields {
                out.extend_from_slice(&ie.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        let len = (out.len() - start) as u16;
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    fn template_of(e: &MapEvent) -> u16 {
        match e.kind {
            EventKind::BlockAllocated | EventKind::BlockReleased => TEMPLATE_BLOCK,
            EventKind::SessionCreated | EventKind::SessionDeleted if e.remote.is_some() => TEMPLATE_SESSION_DEST,
            _ => TEMPLATE_BIB,
        }
    }

    fn data_record(e: &MapEvent, unix_ms: u64, out: &mut Vec<u8>) {
        let ev = match e.kind {
            EventKind::BlockAllocated => nat_event::PORT_BLOCK_ALLOCATION,
            EventKind::BlockReleased => nat_event::PORT_BLOCK_DEALLOCATION,
            EventKind::BibCreated => nat_event::NAT64_BIB_CREATE,
            EventKind::BibDeleted => nat_event::NAT64_BIB_DELETE,
            EventKind::SessionCreated => nat_event::NAT64_SESSION_CREATE,
            EventKind::SessionDeleted => nat_event::NAT64_SESSION_DELETE,
        };
        out.extend_from_slice(&unix_ms.to_be_bytes());
        out.push(ev);
        out.push(proto_number(e.proto));
        out.extend_from_slice(&e.v6.octets());
        if Self::template_of(e) == TEMPLATE_BLOCK {
            out.push(e.v6_len);
            out.extend_from_slice(&e.v4.octets());
            out.extend_from_slice(&e.lo.to_be_bytes());
            out.extend_from_slice(&e.hi.to_be_bytes());
            out.extend_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&(e.hi.saturating_sub(e.lo) as u32 + 1).min(65535).to_be_bytes()[2..]);
        } else {
            out.extend_from_slice(&e.port6.to_be_bytes());
            out.extend_from_slice(&e.v4.octets());
            out.extend_from_slice(&e.lo.to_be_bytes());
            // Only the template with destination fields carries them (a BIB
            // event never has a remote; the record must match its template).
            if let (TEMPLATE_SESSION_DEST, Some((a, p))) = (Self::template_of(e), e.remote) {
                out.extend_from_slice(&a.octets());
                out.extend_from_slice(&p.to_be_bytes());
            }
        }
    }

    fn header(&self, out: &mut Vec<u8>, export_secs: u64) {
        out.extend_from_slice(&10u16.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&(export_secs as u32).to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.domain.to_be_bytes());
    }

    fn finish(msg: &mut [u8]) {
        let len = msg.len() as u16;
        msg[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Messages for `events` (each turned to UTC by `unix_ms`), at
    /// `now_secs` (UTC seconds): templates first when they are due, then
    /// data sets, each message at most [`MAX_MESSAGE`] bytes. With no
    /// events, a message only when the templates are due.
    /// Each message comes with the number of data records it carries.
    pub fn encode(
        &mut self,
        events: &[MapEvent],
        unix_ms: impl Fn(&MapEvent) -> u64,
        now_secs: u64,
    ) -> Vec<(Vec<u8>, usize)> {
        let mut msgs = vec![];
        let mut in_msg = 0;
        let due = self.last_templates.is_none_or(|t| now_secs >= t + self.refresh_secs);
        let mut msg = Vec::with_capacity(MAX_MESSAGE);
        self.header(&mut msg, now_secs);
        if due {
            Self::template_set(&mut msg);
            self.last_templates = Some(now_secs);
        }
        let mut set_start: Option<(usize, u16)> = None;
        let close_set = |msg: &mut Vec<u8>, set: &mut Option<(usize, u16)>| {
            if let Some((start, _)) = set.take() {
                let len = (msg.len() - start) as u16;
                msg[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
            }
        };
        for e in events {
            let t = Self::template_of(e);
            let need = len_of(t) + if set_start.is_some_and(|s| s.1 == t) { 0 } else { 4 };
            if msg.len() + need > MAX_MESSAGE {
                close_set(&mut msg, &mut set_start);
                Self::finish(&mut msg);
                msgs.push((std::mem::replace(&mut msg, Vec::with_capacity(MAX_MESSAGE)), in_msg));
                in_msg = 0;
                self.header(&mut msg, now_secs);
            }
            if set_start.is_none_or(|s| s.1 != t) {
                close_set(&mut msg, &mut set_start);
                set_start = Some((msg.len(), t));
                msg.extend_from_slice(&t.to_be_bytes());
                msg.extend_from_slice(&0u16.to_be_bytes());
            }
            Self::data_record(e, unix_ms(e), &mut msg);
            self.seq = self.seq.wrapping_add(1);
            in_msg += 1;
        }
        close_set(&mut msg, &mut set_start);
        if msg.len() > HEADER {
            Self::finish(&mut msg);
            msgs.push((msg, in_msg));
        }
        msgs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn block(kind: EventKind, i: u16) -> MapEvent {
        MapEvent {
            kind,
            at: i as u64,
            proto: Proto::Udp,
            v6: Ipv6Addr::new(0x2001, 0xdb8, 1, i, 0, 0, 0, 0),
            v6_len: 64,
            port6: 0,
            v4: Ipv4Addr::new(203, 0, 113, 5),
            lo: 40448,
            hi: 40959,
            remote: None,
            group: 0,
            customer: None,
        }
    }

    // RFC 7011 3.1 and 3.3: version 10, the message length, export time,
    // the sequence number counting data records sent before the message,
    // sets with their lengths; templates in the first message and again
    // only after the refresh interval (RFC 7011 8.1, over UDP).
    #[test]
    fn rfc7011_messages_carry_templates_then_data_with_sequence_numbers() {
        let mut enc = Encoder::new(7, 600);
        let ev: Vec<_> = (0..100).map(|i| block(EventKind::BlockAllocated, i)).collect();
        let msgs = enc.encode(&ev, |e| 1_796_133_727_000 + e.at, 1_796_133_727);
        assert!(msgs.len() > 1, "100 records of 39 bytes need more than one 1400-byte message");
        let mut seq = 0;
        for (k, (m, n)) in msgs.iter().enumerate() {
            assert!(m.len() <= MAX_MESSAGE);
            assert_eq!(u16::from_be_bytes([m[0], m[1]]), 10);
            assert_eq!(u16::from_be_bytes([m[2], m[3]]) as usize, m.len());
            assert_eq!(u32::from_be_bytes([m[8], m[9], m[10], m[11]]), seq, "message {k}");
            assert_eq!(u32::from_be_bytes([m[12], m[13], m[14], m[15]]), 7);
            // Walk the sets: their lengths add up to the message.
            let (mut o, mut records) = (HEADER, 0);
            while o < m.len() {
                let (id, len) =
                    (u16::from_be_bytes([m[o], m[o + 1]]), u16::from_be_bytes([m[o + 2], m[o + 3]]) as usize);
                assert!(len >= 4 && o + len <= m.len());
                assert_eq!(id == 2, k == 0 && o == HEADER, "templates only at the start of the first message");
                if id == TEMPLATE_BLOCK {
                    assert_eq!((len - 4) % 39, 0);
                    records += (len - 4) / 39;
                }
                o += len;
            }
            assert_eq!(records, *n);
            seq += records as u32;
        }
        assert_eq!(seq, 100);
        assert!(enc.encode(&[], |_| 0, 1_796_133_727 + 599).is_empty(), "nothing to say");
        let again = enc.encode(&[], |_| 0, 1_796_133_727 + 600);
        assert_eq!(u16::from_be_bytes([again[0].0[16], again[0].0[17]]), 2, "a template refresh");
    }
}
