//! Stateful NAT64 (RFC 6146): pool4, the BIB and session tables, the TCP
//! state machine, timeouts and per-host limits, as pure code with time
//! passed in (milliseconds on any monotonic clock). [`NatTable`] is one
//! shard's state; [`NatMapper`] plugs it into the translator as its
//! [`crate::Mapper`].

pub mod frag;
pub mod pool4;
mod shared;
mod table;
pub mod tcp;

pub use pool4::{PoolAddr, PoolGroup, PortRange};
pub use shared::{Nat, NatHandle};
pub use table::{BibView, Census, NatCounters, NatError, NatMapper, NatTable, SessionView, TCP_INCOMING_SYN};

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

/// Session lifetimes (RFC 6146 section 4 defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// UDP_DEFAULT, 5 min; never below UDP_MIN, 2 min.
    pub udp: Millis,
    /// TCP_EST, 2 h 4 min.
    pub tcp_est: Millis,
    /// TCP_TRANS, 4 min.
    pub tcp_trans: Millis,
    /// ICMP_DEFAULT, 60 s.
    pub icmp: Millis,
}

/// RFC 6146 section 4: UDP_MIN.
pub const UDP_MIN: Millis = 2 * 60 * 1000;

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { udp: 5 * 60 * 1000, tcp_est: (2 * 60 + 4) * 60 * 1000, tcp_trans: 4 * 60 * 1000, icmp: 60 * 1000 }
    }
}

/// Inbound filtering (RFC 6146 3.5.1 to 3.5.3, RFC 4787).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    /// Any IPv4 host may reach a BIB entry (the default).
    EndpointIndependent,
    /// Only IPv4 hosts the IPv6 host has sent to.
    AddressDependent,
}

/// Bounds on state, so one host cannot take the gateway down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        }
    }
}

#[cfg(test)]
mod tests;
