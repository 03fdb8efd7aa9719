//! The inbound half (issue 19), its sans-IO core: what an IPv4 visitor's
//! first bytes name, which IPv6 backend serves that name, and the PROXY
//! protocol header that tells the backend who the visitor was. Bytes in,
//! decisions and bytes out; the listener, the relaying and the limits on
//! connections are the driver's (`daemon::relay`).
//!
//! - [`sniff`]: a TLS ClientHello's server name (RFC 8446 4.1.2, RFC 6066
//!   3) or an HTTP/1.x request's host (RFC 9112 3.2), from the bytes that
//!   have arrived so far, without terminating TLS; every refusal named.
//! - [`sites`]: the site map (exact names and `*.` suffixes) and the rule
//!   that a backend address must lie in the operator's backend prefixes and
//!   never be loopback, link-local, multicast, IPv4-mapped or inside pool6.
//! - [`proxyv2`]: the PROXY protocol version 2 header (HAProxy's
//!   specification), written into a fixed buffer.
//! - [`http`]: the short answers to refused requests (400, 421, 408, 431),
//!   and a head rewritten with the visitor's address (RFC 7239 Forwarded or
//!   X-Forwarded-For) in place of any the visitor sent.

pub mod http;
pub mod proxyv2;
pub mod sites;
pub mod sniff;

pub use sites::{Backend, BackendPolicy, ClientAddress, Site, SiteMap};
pub use sniff::{sniff, Refusal, Sniff, SniffLimits};
