//! Mapping events for the accountability log: who held which pool4
//! address and ports, from when to when. The tables record them into a
//! bounded queue of their own (allocated once, never on the packet path);
//! a writer drains the queues and turns each event into a record. An event
//! that finds its queue full is counted as lost, never waited for.

use super::{Millis, Proto};
use std::net::{Ipv4Addr, Ipv6Addr};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A subscriber was given a port block (RFC 7753 port-set allocation).
    BlockAllocated,
    /// A block went back to the pool (its last session ended plus the hold time).
    BlockReleased,
    /// A BIB entry was created (per-session mode).
    BibCreated,
    BibDeleted,
    /// A session was created (per-session mode).
    SessionCreated,
    SessionDeleted,
}

impl EventKind {
    /// True for the events that start a holding (the others end one).
    pub fn opens(self) -> bool {
        matches!(self, EventKind::BlockAllocated | EventKind::BibCreated | EventKind::SessionCreated)
    }
}

/// One mapping event. `Copy`, so queueing it never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapEvent {
    pub kind: EventKind,
    /// On the table's monotonic clock; the writer turns it into UTC.
    pub at: Millis,
    pub proto: Proto,
    /// The subscriber: its address (a BIB entry's IPv6 address) or, for a
    /// block, its prefix (`v6_len` bits of it).
    pub v6: Ipv6Addr,
    pub v6_len: u8,
    /// The IPv6 port (BIB and session events; 0 for blocks).
    pub port6: u16,
    pub v4: Ipv4Addr,
    /// The pool4 ports held: one port, or the block's range.
    pub lo: u16,
    pub hi: u16,
    /// The IPv4 remote of a session, when the log asks for destinations.
    pub remote: Option<(Ipv4Addr, u16)>,
    /// Index of the pool4 group (per-customer pool) the address belongs to.
    pub group: u16,
    /// That group's client prefix, when it is a customer's own addresses.
    pub customer: Option<crate::addr::Net6>,
}

/// What the tables record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventSel {
    /// Block allocations and releases (block mode).
    pub blocks: bool,
    /// BIB entries and sessions created and deleted (per-session mode).
    pub sessions: bool,
    /// The IPv4 remote in session events.
    pub destination: bool,
}

impl EventSel {
    pub fn any(&self) -> bool {
        self.blocks || self.sessions
    }
}

/// Events one table's queue holds between two drains (the writer drains
/// every 100 ms: 80000 events a second per table before one is lost).
pub const EVENT_CAP: usize = 8192;

/// A bounded event queue: its room is taken once, when recording starts.
/// The mapping log's queue holds [`MapEvent`]s; the sync driver's,
/// [`super::sync::SyncEvent`]s.
#[derive(Debug, Clone)]
pub struct EventQueue<T = MapEvent> {
    buf: Vec<T>,
    on: bool,
    /// Recording paused, room kept (a standby applying the active's records).
    muted: bool,
    /// Events that found the queue full.
    pub lost: u64,
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        EventQueue { buf: Vec::new(), on: false, muted: false, lost: 0 }
    }
}

impl<T: Copy> EventQueue<T> {
    pub fn new(on: bool) -> Self {
        EventQueue { buf: if on { Vec::with_capacity(EVENT_CAP) } else { Vec::new() }, on, muted: false, lost: 0 }
    }

    /// Start or stop recording; stopping empties the queue and gives back
    /// its room, starting takes the room once (off the packet path).
    pub fn set_on(&mut self, on: bool) {
        self.buf = if on { Vec::with_capacity(EVENT_CAP) } else { Vec::new() };
        self.on = on;
        self.lost = 0;
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Pause (or resume) recording without giving back the room.
    pub fn mute(&mut self, muted: bool) {
        self.muted = muted;
    }

    #[inline]
    pub fn push(&mut self, e: T) {
        if !self.on || self.muted {
            return;
        }
        if self.buf.len() < self.buf.capacity() {
            self.buf.push(e);
        } else {
            self.lost += 1;
        }
    }

    /// Exchange the queued events for `spare` (emptied first): O(1), so a
    /// writer holding the table's lock for it never delays a packet. The
    /// queue keeps `spare`'s room, which must be as large as its own.
    pub fn swap(&mut self, spare: &mut Vec<T>) {
        spare.clear();
        if spare.capacity() >= self.buf.capacity() {
            std::mem::swap(&mut self.buf, spare);
        } else {
            self.drain_into(spare);
        }
    }

    /// Move the queued events to `out` (in order), keeping the room.
    pub fn drain_into(&mut self, out: &mut Vec<T>) {
        out.extend_from_slice(&self.buf);
        self.buf.clear();
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}
