//! DNS messages from the network into the DNS64 server's pure parts: client
//! queries through the fast path and the cache, upstream answers through
//! the RFC 6147 core. Invariants in `nat64d::testpkt::run_dns64_fuzz_input`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nat64d::testpkt::run_dns64_fuzz_input(data));
