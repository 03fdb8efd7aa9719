//! Active/standby synchronisation of the NAT state, as pure code: the
//! records an active gateway sends its standby (a session as it is now, a
//! session gone, the bounds of a full snapshot, heartbeats) and the
//! standby's acknowledgements, bytes in and out. The daemon's sync driver
//! (`daemon::sync`) carries them over TCP inside Noise transport messages.
//!
//! ```text
//! up      1 | proto u8 | static u8 | v6 [16] | port6 u16 | v4 [4] | port4 u16 |
//!         remote [4] | rport u16 | tcp state u8 | remaining ms u32       (38 bytes)
//! gone    2 | proto u8 | v6 [16] | port6 u16 | v4 [4] | port4 u16 |
//!         remote [4] | rport u16                                         (32 bytes)
//! begin   3 | sessions u64      a full snapshot follows: the standby empties its table
//! end     4 | sessions u64      the snapshot is whole
//! beat    5 | seq u64 | active's wall clock ms u64
//! ack     6 | seq u64           (standby to active) everything up to beat `seq` applied
//! ```
//!
//! Integers big-endian. A message is a run of whole records; any flaw
//! refuses the whole message ([`SyncError`]) and the driver resynchronises.
//! Records carry full state, never a difference, so applying one twice, or
//! an older one before a newer, ends in the newer state: a snapshot taken
//! while deltas queue can be followed by those deltas safely.

use super::tcp::TcpState;
use super::{Millis, Proto};
use std::net::{Ipv4Addr, Ipv6Addr};

/// One session with its BIB entry, as the active holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSync {
    pub proto: Proto,
    /// The BIB entry is static (configured on both gateways).
    pub is_static: bool,
    pub v6: Ipv6Addr,
    pub port6: u16,
    pub v4: Ipv4Addr,
    pub port4: u16,
    pub remote: Ipv4Addr,
    pub rport: u16,
    pub state: TcpState,
    /// Lifetime left when it was recorded, ms (capped at `u32::MAX`, 49 days).
    pub remaining: u32,
}

/// A state change the tables record for the sync driver. `Copy`, so
/// queueing it never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncEvent {
    /// Created, or its TCP state moved.
    Up(SessionSync),
    /// Ended (expired, closed, or its BIB entry removed).
    Gone(SessionSync),
}

/// One record on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRec {
    Up(SessionSync),
    Gone(SessionSync),
    Begin { sessions: u64 },
    End { sessions: u64 },
    Beat { seq: u64, wall_ms: u64 },
    Ack { seq: u64 },
}

pub const UP_LEN: usize = 38;
pub const GONE_LEN: usize = 32;

/// The largest message body the driver builds (a Noise message is at most
/// 65535 bytes, 16 of them the tag).
pub const MAX_MESSAGE: usize = 65535 - 16;

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("unknown sync record kind {0}")]
    Kind(u8),
    #[error("a sync record is cut short")]
    Short,
    #[error("a sync record holds a value that is not valid ({0})")]
    Value(&'static str),
}

impl SyncRec {
    /// Bytes it takes on the wire.
    pub fn len(&self) -> usize {
        match self {
            SyncRec::Up(_) => UP_LEN,
            SyncRec::Gone(_) => GONE_LEN,
            SyncRec::Begin { .. } | SyncRec::End { .. } | SyncRec::Ack { .. } => 9,
            SyncRec::Beat { .. } => 17,
        }
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Append it to `o`.
    pub fn encode(&self, o: &mut Vec<u8>) {
        let key = |o: &mut Vec<u8>, s: &SessionSync| {
            o.extend_from_slice(&s.v6.octets());
            o.extend_from_slice(&s.port6.to_be_bytes());
            o.extend_from_slice(&s.v4.octets());
            o.extend_from_slice(&s.port4.to_be_bytes());
            o.extend_from_slice(&s.remote.octets());
            o.extend_from_slice(&s.rport.to_be_bytes());
        };
        match self {
            SyncRec::Up(s) => {
                o.extend_from_slice(&[1, s.proto as u8, s.is_static as u8]);
                key(o, s);
                o.push(s.state as u8);
                o.extend_from_slice(&s.remaining.to_be_bytes());
            }
            SyncRec::Gone(s) => {
                o.extend_from_slice(&[2, s.proto as u8]);
                key(o, s);
            }
            SyncRec::Begin { sessions } => {
                o.push(3);
                o.extend_from_slice(&sessions.to_be_bytes());
            }
            SyncRec::End { sessions } => {
                o.push(4);
                o.extend_from_slice(&sessions.to_be_bytes());
            }
            SyncRec::Beat { seq, wall_ms } => {
                o.push(5);
                o.extend_from_slice(&seq.to_be_bytes());
                o.extend_from_slice(&wall_ms.to_be_bytes());
            }
            SyncRec::Ack { seq } => {
                o.push(6);
                o.extend_from_slice(&seq.to_be_bytes());
            }
        }
    }

    /// Every record of a message, in order; any flaw refuses it whole.
    pub fn decode_all(d: &[u8], out: &mut Vec<SyncRec>) -> Result<(), SyncError> {
        out.clear();
        let mut o = 0;
        while o < d.len() {
            let (r, n) = Self::decode_one(&d[o..])?;
            out.push(r);
            o += n;
        }
        Ok(())
    }

    fn decode_one(d: &[u8]) -> Result<(SyncRec, usize), SyncError> {
        let need = match d[0] {
            1 => UP_LEN,
            2 => GONE_LEN,
            3 | 4 | 6 => 9,
            5 => 17,
            k => return Err(SyncError::Kind(k)),
        };
        if d.len() < need {
            return Err(SyncError::Short);
        }
        let u16_at = |o: usize| u16::from_be_bytes([d[o], d[o + 1]]);
        let u64_at = |o: usize| u64::from_be_bytes(d[o..o + 8].try_into().unwrap_or([0; 8]));
        let v4_at = |o: usize| Ipv4Addr::new(d[o], d[o + 1], d[o + 2], d[o + 3]);
        let proto = |b: u8| Proto::ALL.get(b as usize).copied().ok_or(SyncError::Value("protocol"));
        // The key after kind and flags, at `o`: v6, port6, v4, port4, remote, rport.
        let session = |o: usize, proto: Proto, is_static: bool| SessionSync {
            proto,
            is_static,
            v6: Ipv6Addr::from(<[u8; 16]>::try_from(&d[o..o + 16]).unwrap_or([0; 16])),
            port6: u16_at(o + 16),
            v4: v4_at(o + 18),
            port4: u16_at(o + 22),
            remote: v4_at(o + 24),
            rport: u16_at(o + 28),
            state: TcpState::Closed,
            remaining: 0,
        };
        let r = match d[0] {
            1 => {
                let is_static = match d[2] {
                    0 => false,
                    1 => true,
                    _ => return Err(SyncError::Value("a flag")),
                };
                let mut s = session(3, proto(d[1])?, is_static);
                s.state = *TcpState::ALL.get(d[33] as usize).ok_or(SyncError::Value("TCP state"))?;
                s.remaining = u32::from_be_bytes([d[34], d[35], d[36], d[37]]);
                SyncRec::Up(s)
            }
            2 => SyncRec::Gone(session(2, proto(d[1])?, false)),
            3 => SyncRec::Begin { sessions: u64_at(1) },
            4 => SyncRec::End { sessions: u64_at(1) },
            5 => SyncRec::Beat { seq: u64_at(1), wall_ms: u64_at(9) },
            _ => SyncRec::Ack { seq: u64_at(1) },
        };
        Ok((r, need))
    }
}

impl SessionSync {
    /// The lifetime left at `now` of a session expiring at `expires`.
    pub fn remaining_of(expires: Millis, now: Millis) -> u32 {
        expires.saturating_sub(now).min(u32::MAX as u64) as u32
    }
}

/// Pack `recs` into message bodies of at most [`MAX_MESSAGE`] bytes; `each`
/// gets every full body (then it is reused).
pub fn pack<E>(
    recs: impl IntoIterator<Item = SyncRec>,
    buf: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    buf.clear();
    for r in recs {
        if buf.len() + r.len() > MAX_MESSAGE {
            each(buf)?;
            buf.clear();
        }
        r.encode(buf);
    }
    if !buf.is_empty() {
        each(buf)?;
        buf.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> SessionSync {
        SessionSync {
            proto: Proto::Tcp,
            is_static: false,
            v6: "2001:db8:1::10".parse().unwrap(),
            port6: 40000,
            v4: Ipv4Addr::new(203, 0, 113, 1),
            port4: 40001,
            remote: Ipv4Addr::new(198, 51, 100, 7),
            rport: 443,
            state: TcpState::Established,
            remaining: 7_200_000,
        }
    }

    // Issue 15: every record reads back as it was sent.
    #[test]
    fn records_round_trip() {
        let gone = SessionSync { state: TcpState::Closed, remaining: 0, ..up() };
        let recs = vec![
            SyncRec::Begin { sessions: 2 },
            SyncRec::Up(up()),
            SyncRec::Up(SessionSync { proto: Proto::Udp, is_static: true, ..up() }),
            SyncRec::End { sessions: 2 },
            SyncRec::Gone(gone),
            SyncRec::Beat { seq: 7, wall_ms: 1_796_133_727_123 },
            SyncRec::Ack { seq: 7 },
        ];
        let mut bytes = Vec::new();
        for r in &recs {
            let before = bytes.len();
            r.encode(&mut bytes);
            assert_eq!(bytes.len() - before, r.len());
        }
        let mut back = Vec::new();
        SyncRec::decode_all(&bytes, &mut back).unwrap();
        assert_eq!(back, recs);
    }

    // Issue 15: a flawed message is refused whole (the driver then resyncs).
    #[test]
    fn flawed_messages_are_refused() {
        let mut bytes = Vec::new();
        SyncRec::Up(up()).encode(&mut bytes);
        let mut out = Vec::new();
        assert_eq!(SyncRec::decode_all(&bytes[..UP_LEN - 1], &mut out), Err(SyncError::Short));
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert_eq!(SyncRec::decode_all(&bad, &mut out), Err(SyncError::Kind(9)));
        let mut bad = bytes.clone();
        bad[33] = 8;
        assert_eq!(SyncRec::decode_all(&bad, &mut out), Err(SyncError::Value("TCP state")));
        let mut bad = bytes.clone();
        bad[2] = 2;
        assert_eq!(SyncRec::decode_all(&bad, &mut out), Err(SyncError::Value("a flag")));
        let mut bad = bytes;
        bad[1] = 3;
        assert_eq!(SyncRec::decode_all(&bad, &mut out), Err(SyncError::Value("protocol")));
    }

    // Issue 15: messages stay within one Noise message and lose nothing.
    #[test]
    fn packing_fills_messages_without_splitting_records() {
        let recs: Vec<_> = (0..5000).map(|i| SyncRec::Up(SessionSync { rport: i as u16, ..up() })).collect();
        let (mut bodies, mut buf) = (Vec::new(), Vec::new());
        pack(recs.iter().copied(), &mut buf, |b| {
            bodies.push(b.to_vec());
            Ok::<_, ()>(())
        })
        .unwrap();
        assert!(bodies.len() > 1 && bodies.iter().all(|b| b.len() <= MAX_MESSAGE));
        let mut all = Vec::new();
        for b in &bodies {
            let mut out = Vec::new();
            SyncRec::decode_all(b, &mut out).unwrap();
            all.extend(out);
        }
        assert_eq!(all, recs);
    }
}
