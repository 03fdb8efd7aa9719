//! nat64d: a NAT64/DNS64 gateway. This crate is its sans-IO core: RFC 6052
//! addresses ([`addr`]), packet views and checksums ([`wire`]) and RFC 7915
//! IP/ICMP translation ([`xlat`]). The daemon's I/O drivers sit around it.

// `unsafe` only in the syscall layers (src/dataplane/tun.rs, src/sys.rs).
#![deny(unsafe_code)]

pub mod addr;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod dns64;
pub mod nat;
pub mod sys;
pub mod wire;
pub mod xlat;

#[doc(hidden)]
pub mod testpkt;

pub use addr::Prefix6052;
pub use xlat::{
    DropReason, Family, FlowMeta, Mapper, Output, Rfc6052Mapper, Role, Stats, Translator, Tuple4, Tuple6, Verdict,
    XlatConfig, OUT_BUF_LEN,
};
