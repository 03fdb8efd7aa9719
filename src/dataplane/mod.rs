//! Packet I/O around the pure core: the TUN device and the worker loop that
//! reads packets, runs them through the translator and the NAT, and writes
//! the results back; or, in the AF_XDP dataplane ([`xdp`]), frames straight
//! from the interfaces with their next hops ([`hops`]).

pub mod hops;
pub mod tun;
pub mod uring;
pub mod vnet;
pub mod worker;
pub mod xdp;
