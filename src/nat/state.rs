//! The NAT state file: what a restart keeps (BIB entries, sessions with
//! their TCP states and remaining lifetimes, port blocks with their hold
//! times), as pure code: records in, bytes out, and back.
//!
//! ```text
//! header   "NAT64DST" | version u32 | saved_at u64 (UTC ms) | pool6 [16] len u8 |
//!          bibs u64 | sessions u64 | blocks u64
//! bib      proto u8 | static u8 | v6 [16] | port6 u16 | v4 [4] | port4 u16        (26 bytes)
//! session  bib u32 (index of its BIB in this file) | remote [4] | rport u16 |
//!          tcp state u8 | remaining ms u64                                         (19 bytes)
//! block    v4 [4] | proto u8 | block u16 | subscriber [16] | held u8 | remaining ms u64 (32 bytes)
//! trailer  FNV-1a 64 of everything before it
//! ```
//!
//! All integers big-endian. Lifetimes are stored as what remained at
//! `saved_at`, so a load subtracts the wall-clock gap. A file that is
//! short, long, of another version or with a wrong checksum is refused
//! whole ([`StateError`]); nothing of it is applied.

use super::tcp::TcpState;
use super::{Millis, Proto};
use std::net::{Ipv4Addr, Ipv6Addr};

pub const MAGIC: &[u8; 8] = b"NAT64DST";
pub const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 17 + 24;
const BIB: usize = 26;
const SESSION: usize = 19;
const BLOCK: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BibRec {
    pub proto: Proto,
    pub is_static: bool,
    pub v6: Ipv6Addr,
    pub port6: u16,
    pub v4: Ipv4Addr,
    pub port4: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRec {
    /// Index of its BIB entry in [`State::bibs`].
    pub bib: u32,
    pub remote: Ipv4Addr,
    pub rport: u16,
    pub state: TcpState,
    /// Lifetime left when the file was saved.
    pub remaining: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRec {
    pub v4: Ipv4Addr,
    pub proto: Proto,
    pub block: u16,
    pub sub: u128,
    /// Held with no port in use: the hold time left when saved.
    pub held: Option<Millis>,
}

/// A whole saved state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// When it was saved (UTC milliseconds).
    pub saved_at: u64,
    /// The pool6 prefix it was saved under (address, length).
    pub pool6: (Ipv6Addr, u8),
    pub bibs: Vec<BibRec>,
    pub sessions: Vec<SessionRec>,
    pub blocks: Vec<BlockRec>,
}

impl Default for State {
    fn default() -> Self {
        State { saved_at: 0, pool6: (Ipv6Addr::UNSPECIFIED, 0), bibs: vec![], sessions: vec![], blocks: vec![] }
    }
}

/// Why a state file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("not a nat64d state file")]
    NotState,
    #[error("state file version {0}; this nat64d reads version {VERSION}")]
    Version(u32),
    #[error("the state file is cut short or has bytes left over")]
    Length,
    #[error("the state file's checksum does not match (damaged)")]
    Checksum,
    #[error("the state file holds a record that is not valid ({0})")]
    Record(&'static str),
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn proto_of(b: u8) -> Result<Proto, StateError> {
    Proto::ALL.get(b as usize).copied().ok_or(StateError::Record("protocol"))
}

/// `body` with its checksum appended: what a writer of these files does
/// (for the fuzz driver, which mutates bodies and must pass the check).
pub fn seal(body: &[u8]) -> Vec<u8> {
    let mut v = body.to_vec();
    v.extend_from_slice(&fnv(body).to_be_bytes());
    v
}

impl State {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(
            HEADER + self.bibs.len() * BIB + self.sessions.len() * SESSION + self.blocks.len() * BLOCK + 8,
        );
        o.extend_from_slice(MAGIC);
        o.extend_from_slice(&VERSION.to_be_bytes());
        o.extend_from_slice(&self.saved_at.to_be_bytes());
        o.extend_from_slice(&self.pool6.0.octets());
        o.push(self.pool6.1);
        for n in [self.bibs.len(), self.sessions.len(), self.blocks.len()] {
            o.extend_from_slice(&(n as u64).to_be_bytes());
        }
        for b in &self.bibs {
            o.push(b.proto as u8);
            o.push(b.is_static as u8);
            o.extend_from_slice(&b.v6.octets());
            o.extend_from_slice(&b.port6.to_be_bytes());
            o.extend_from_slice(&b.v4.octets());
            o.extend_from_slice(&b.port4.to_be_bytes());
        }
        for s in &self.sessions {
            o.extend_from_slice(&s.bib.to_be_bytes());
            o.extend_from_slice(&s.remote.octets());
            o.extend_from_slice(&s.rport.to_be_bytes());
            o.push(s.state as u8);
            o.extend_from_slice(&s.remaining.to_be_bytes());
        }
        for b in &self.blocks {
            o.extend_from_slice(&b.v4.octets());
            o.push(b.proto as u8);
            o.extend_from_slice(&b.block.to_be_bytes());
            o.extend_from_slice(&b.sub.to_be_bytes());
            o.push(b.held.is_some() as u8);
            o.extend_from_slice(&b.held.unwrap_or(0).to_be_bytes());
        }
        let sum = fnv(&o);
        o.extend_from_slice(&sum.to_be_bytes());
        o
    }

    /// Read a file's bytes back; any flaw refuses the whole file.
    pub fn decode(d: &[u8]) -> Result<State, StateError> {
        if d.len() < 8 || &d[..8] != MAGIC {
            return Err(StateError::NotState);
        }
        if d.len() < HEADER + 8 {
            return Err(StateError::Length);
        }
        let u16_at = |o: usize| u16::from_be_bytes([d[o], d[o + 1]]);
        let u32_at = |o: usize| u32::from_be_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]]);
        let u64_at = |o: usize| u64::from_be_bytes(d[o..o + 8].try_into().unwrap_or([0; 8]));
        let v6_at = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&d[o..o + 16]).unwrap_or([0; 16]));
        let v4_at = |o: usize| Ipv4Addr::new(d[o], d[o + 1], d[o + 2], d[o + 3]);
        let version = u32_at(8);
        if version != VERSION {
            return Err(StateError::Version(version));
        }
        let counts = [u64_at(37), u64_at(45), u64_at(53)];
        let need = counts
            .iter()
            .zip([BIB, SESSION, BLOCK])
            .try_fold(HEADER as u64 + 8, |acc, (&n, size)| n.checked_mul(size as u64).and_then(|x| x.checked_add(acc)));
        if need != Some(d.len() as u64) {
            return Err(StateError::Length);
        }
        let body = d.len() - 8;
        if fnv(&d[..body]) != u64_at(body) {
            return Err(StateError::Checksum);
        }
        let mut st = State { saved_at: u64_at(12), pool6: (v6_at(20), d[36]), ..State::default() };
        let mut o = HEADER;
        // Flags are 0 or 1 and unused fields zero: one state, one encoding.
        let flag = |b: u8| match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(StateError::Record("a flag")),
        };
        for _ in 0..counts[0] {
            st.bibs.push(BibRec {
                proto: proto_of(d[o])?,
                is_static: flag(d[o + 1])?,
                v6: v6_at(o + 2),
                port6: u16_at(o + 18),
                v4: v4_at(o + 20),
                port4: u16_at(o + 24),
            });
            o += BIB;
        }
        for _ in 0..counts[1] {
            let bib = u32_at(o);
            if bib as usize >= st.bibs.len() {
                return Err(StateError::Record("a session of no BIB entry"));
            }
            let state = *TcpState::ALL.get(d[o + 10] as usize).ok_or(StateError::Record("TCP state"))?;
            st.sessions.push(SessionRec {
                bib,
                remote: v4_at(o + 4),
                rport: u16_at(o + 8),
                state,
                remaining: u64_at(o + 11),
            });
            o += SESSION;
        }
        for _ in 0..counts[2] {
            let held = flag(d[o + 23])?;
            if !held && u64_at(o + 24) != 0 {
                return Err(StateError::Record("a hold time on a block in use"));
            }
            st.blocks.push(BlockRec {
                v4: v4_at(o),
                proto: proto_of(d[o + 4])?,
                block: u16_at(o + 5),
                sub: u128::from_be_bytes(d[o + 7..o + 23].try_into().unwrap_or([0; 16])),
                held: held.then(|| u64_at(o + 24)),
            });
            o += BLOCK;
        }
        Ok(st)
    }
}

/// Why restored entries were left out, counted for the start's log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    pub bibs: u64,
    pub sessions: u64,
    pub blocks: u64,
    /// Sessions whose lifetime ran out during the gap.
    pub expired: u64,
    /// Entries on an address no longer in pool4, or a port it no longer has.
    pub not_in_pool4: u64,
    /// Everything, when pool6 changed.
    pub pool6_changed: u64,
    /// Entries the shard layout or the port mode no longer places where they were.
    pub misplaced: u64,
    /// Entries a limit now refuses.
    pub over_limit: u64,
}

impl Restored {
    pub fn dropped(&self) -> u64 {
        self.not_in_pool4 + self.pool6_changed + self.misplaced + self.over_limit
    }

    pub fn add(&mut self, o: &Restored) {
        self.bibs += o.bibs;
        self.sessions += o.sessions;
        self.blocks += o.blocks;
        self.expired += o.expired;
        self.not_in_pool4 += o.not_in_pool4;
        self.pool6_changed += o.pool6_changed;
        self.misplaced += o.misplaced;
        self.over_limit += o.over_limit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        State {
            saved_at: 1_796_133_727_123,
            pool6: ("2001:db8:64::".parse().unwrap(), 96),
            bibs: vec![
                BibRec {
                    proto: Proto::Tcp,
                    is_static: false,
                    v6: "2001:db8:1::10".parse().unwrap(),
                    port6: 40000,
                    v4: Ipv4Addr::new(203, 0, 113, 1),
                    port4: 40000,
                },
                BibRec {
                    proto: Proto::Udp,
                    is_static: true,
                    v6: "2001:db8:1::53".parse().unwrap(),
                    port6: 53,
                    v4: Ipv4Addr::new(203, 0, 113, 1),
                    port4: 53,
                },
            ],
            sessions: vec![SessionRec {
                bib: 0,
                remote: Ipv4Addr::new(198, 51, 100, 7),
                rport: 443,
                state: TcpState::Established,
                remaining: 7_000_000,
            }],
            blocks: vec![BlockRec {
                v4: Ipv4Addr::new(203, 0, 113, 1),
                proto: Proto::Udp,
                block: 9,
                sub: 0x2001_0db8_0001 << 80,
                held: Some(30_000),
            }],
        }
    }

    // Issue 15: what is saved reads back the same.
    #[test]
    fn state_round_trips() {
        let s = sample();
        let bytes = s.encode();
        assert_eq!(bytes.len(), HEADER + 2 * BIB + SESSION + BLOCK + 8);
        assert_eq!(State::decode(&bytes), Ok(s));
    }

    // Issue 15: a damaged, cut, lengthened or foreign file is refused whole.
    #[test]
    fn damaged_files_are_refused_whole() {
        let bytes = sample().encode();
        let mut flipped = bytes.clone();
        flipped[HEADER + 3] ^= 1;
        assert_eq!(State::decode(&flipped), Err(StateError::Checksum));
        assert_eq!(State::decode(&bytes[..bytes.len() - 1]), Err(StateError::Length));
        assert_eq!(State::decode(&[&bytes[..], &[0]].concat()), Err(StateError::Length));
        assert_eq!(State::decode(b"garbage"), Err(StateError::NotState));
        let mut v2 = bytes.clone();
        v2[11] = 2;
        assert_eq!(State::decode(&v2), Err(StateError::Version(2)));
        let mut huge = bytes;
        huge[37..45].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            State::decode(&huge),
            Err(StateError::Length),
            "counts that overflow are a length error, not a panic"
        );
    }
}
