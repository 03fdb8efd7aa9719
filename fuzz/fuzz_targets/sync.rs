//! The sync wire (a message from the peer) and its records applied to a
//! standby: `nat64d::testpkt::run_sync_fuzz_input`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nat64d::testpkt::run_sync_fuzz_input;

fuzz_target!(|data: &[u8]| run_sync_fuzz_input(data));
