//! The inbound proxy's first bytes: a TLS ClientHello or an HTTP head from
//! anyone; never a panic, and a prefix never decides otherwise than the
//! whole (`nat64d::testpkt::run_sniff_fuzz_input`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use nat64d::testpkt::run_sniff_fuzz_input;

fuzz_target!(|data: &[u8]| run_sniff_fuzz_input(data));
