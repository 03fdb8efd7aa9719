//! Bytes on the control socket: the request reader never panics, reads one
//! bounded line, and accepted requests survive a JSON round trip
//! (`nat64d::testpkt::run_control_fuzz_input`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use nat64d::testpkt::run_control_fuzz_input;

fuzz_target!(|data: &[u8]| run_control_fuzz_input(data));
