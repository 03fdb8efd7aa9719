//! nat64d: a NAT64/DNS64 gateway. The crate holds both halves:
//!
//! - the sans-IO core, pure code with time passed in: RFC 6052 addresses and
//!   IP networks ([`addr`]), packet views and checksums ([`wire`]), RFC 7915
//!   IP/ICMP translation ([`xlat`]), RFC 6146 NAT state ([`nat`]), and the
//!   RFC 6147 synthesis and answer cache ([`dns64`], apart from its
//!   `server` module);
//! - the drivers around it: the configuration ([`config`]), the TUN
//!   dataplane ([`dataplane`]), the DNS64 server (`dns64::server`), system
//!   calls ([`sys`]) and the daemon itself ([`daemon`]).
//!
//! The core never imports a driver. `unsafe` is allowed only in the syscall
//! layers: `dataplane/tun.rs`, `dataplane/uring.rs` and `sys/` (bpf(2) and
//! AF_XDP among them).
//!
//! With the `testkit` feature (for the fuzz crate, benches and integration
//! tests), [`testpkt`] adds packet builders and fuzz drivers; a normal build
//! has none of it.

#![deny(unsafe_code)]

pub mod addr;
pub mod cli;
pub mod config;
mod counters;
pub mod daemon;
pub mod dataplane;
pub mod dns64;
pub mod ipfix;
pub mod maplog;
pub mod nat;
pub mod proxy;
pub mod sys;
pub mod wire;
pub mod xlat;

#[cfg(any(test, feature = "testkit"))]
pub mod testpkt;

#[cfg(test)]
mod test_alloc;

pub use addr::Prefix6052;
pub use xlat::{
    DropReason, Family, FlowMeta, Mapper, Output, Rfc6052Mapper, Role, Stats, Translator, Tuple4, Tuple6, Verdict,
    XlatConfig, OUT_BUF_LEN,
};
