//! Stateful NAT64 (RFC 6146): pool4, the BIB and session tables, the TCP
//! state machine, timeouts and per-host limits, as pure code with time
//! passed in (milliseconds on any monotonic clock). [`NatTable`] is one
//! shard's state; [`NatMapper`] plugs it into the translator as its
//! [`crate::Mapper`].

pub mod blocks;
mod book;
pub mod events;
pub mod frag;
pub mod pool4;
mod shared;
pub mod state;
pub mod sync;
mod table;
pub mod tcp;

pub use blocks::{DetMap, PortMode, Ports};
pub use events::{EventKind, EventSel, MapEvent};
pub use pool4::{PoolAddr, PoolGroup, PortRange};
pub use shared::{Nat, NatHandle};
pub use table::{
    BibView, Census, NatCounters, NatError, NatMapper, NatTable, RestoreDrop, SessionView, TCP_INCOMING_SYN,
};

use crate::addr::Prefix6052;

/// Milliseconds on the caller's monotonic clock.
pub type Millis = u64;

/// The three protocols a stateful NAT64 maps (RFC 6146 section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Proto {
    Tcp = 0,
    Udp = 1,
    /// ICMP queries: the identifier plays the port.
    Icmp = 2,
}

impl Proto {
    pub const ALL: [Proto; 3] = [Proto::Tcp, Proto::Udp, Proto::Icmp];

    /// From an IPv4 protocol number (the translator's tuples use IPv4 numbering).
    pub fn from_ip(p: u8) -> Option<Proto> {
        match p {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            1 => Some(Proto::Icmp),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        ["tcp", "udp", "icmp"][self as usize]
    }
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "icmp" => Ok(Proto::Icmp),
            _ => Err(format!("'{s}' is not a protocol (tcp, udp or icmp)")),
        }
    }
}

/// Session lifetimes (RFC 6146 section 4 defaults). Milliseconds here;
/// seconds in the configuration file (`[nat.timeouts]`), converted by serde.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// UDP_DEFAULT, 5 min; never below UDP_MIN, 2 min.
    #[serde(with = "secs")]
    pub udp: Millis,
    /// TCP_EST, 2 h 4 min (established connections).
    #[serde(with = "secs")]
    pub tcp_est: Millis,
    /// TCP_TRANS, 4 min (opening and closing connections).
    #[serde(with = "secs")]
    pub tcp_trans: Millis,
    /// ICMP_DEFAULT, 60 s (echo sessions).
    #[serde(with = "secs")]
    pub icmp: Millis,
}

const SECOND: Millis = 1000;
const MINUTE: Millis = 60 * SECOND;
const HOUR: Millis = 60 * MINUTE;
/// A day and a week, the upper bounds the configuration accepts.
pub const DAY: Millis = 24 * HOUR;
pub const WEEK: Millis = 7 * DAY;

/// RFC 6146 section 4: UDP_MIN, the shortest UDP lifetime allowed.
pub const UDP_MIN: Millis = 2 * MINUTE;
/// RFC 6146 section 4: UDP_DEFAULT.
pub const UDP_DEFAULT: Millis = 5 * MINUTE;
/// RFC 6146 section 4: TCP_EST, also the shortest established lifetime allowed.
pub const TCP_EST: Millis = 2 * HOUR + 4 * MINUTE;
/// RFC 6146 section 4: TCP_TRANS, also the shortest transitory lifetime allowed.
pub const TCP_TRANS: Millis = 4 * MINUTE;
/// RFC 6146 section 4: ICMP_DEFAULT.
pub const ICMP_DEFAULT: Millis = 60 * SECOND;

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { udp: UDP_DEFAULT, tcp_est: TCP_EST, tcp_trans: TCP_TRANS, icmp: ICMP_DEFAULT }
    }
}

/// Whole seconds in the file, milliseconds in the core: a value whose
/// milliseconds do not fit a u64 is refused, not wrapped.
mod secs {
    use super::{Millis, SECOND};
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(ms / SECOND)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        let secs = u64::deserialize(d)?;
        secs.checked_mul(SECOND).ok_or_else(|| D::Error::custom(format!("{secs} s is too large")))
    }
}

/// Inbound filtering (RFC 6146 3.5.1 to 3.5.3, RFC 4787).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filtering {
    /// Any IPv4 host may reach a BIB entry (the default).
    EndpointIndependent,
    /// Only IPv4 hosts the IPv6 host has sent to.
    AddressDependent,
}

/// Bounds on state, so one host cannot take the gateway down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Sessions in the table, all protocols.
    pub max_sessions: usize,
    /// Sessions per IPv6 address.
    pub sessions_per_host: u32,
    /// Sessions per IPv6 /64.
    pub sessions_per_net64: u32,
    /// BIB entries per IPv6 address.
    pub bibs_per_host: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_sessions: 1 << 20, sessions_per_host: 65536, sessions_per_net64: 131_072, bibs_per_host: 65536 }
    }
}

/// Everything a NAT table needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatConfig {
    /// pool6: the RFC 6052 prefix remote IPv4 hosts are reached under.
    pub prefix: Prefix6052,
    /// Allow non-global IPv4 addresses under the well-known prefix (labs only, RFC 6052 3.1).
    pub allow_non_global: bool,
    pub pool4: Vec<PoolGroup>,
    pub timeouts: Timeouts,
    pub filtering: Filtering,
    /// Drop TCP connections started from the IPv4 side (RFC 6146 3.5.2.2 policy).
    pub drop_external_tcp: bool,
    pub limits: Limits,
    /// How ports are handed out: per session, in blocks, or by formula.
    pub ports: Ports,
    /// What the mapping log records.
    pub events: EventSel,
}

impl NatConfig {
    /// A configuration with RFC defaults for `prefix` and one group of `pool4` addresses.
    pub fn new(prefix: Prefix6052, pool4: &[std::net::Ipv4Addr]) -> Self {
        NatConfig {
            prefix,
            allow_non_global: false,
            pool4: vec![PoolGroup { clients: None, addrs: pool4.iter().map(|&a| PoolAddr::new(a)).collect() }],
            timeouts: Timeouts::default(),
            filtering: Filtering::EndpointIndependent,
            drop_external_tcp: false,
            limits: Limits::default(),
            ports: Ports::default(),
            events: EventSel::default(),
        }
    }
}

#[cfg(test)]
mod tests;
