//! The NAT state file reader and its restore into a NAT:
//! `nat64d::testpkt::run_state_fuzz_input`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nat64d::testpkt::run_state_fuzz_input;

fuzz_target!(|data: &[u8]| run_state_fuzz_input(data));
