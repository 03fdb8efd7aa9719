//! The mapping log reader (`nat64ctl who --log`) and the IPFIX encoder:
//! `nat64d::testpkt::run_maplog_fuzz_input`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nat64d::testpkt::run_maplog_fuzz_input;

fuzz_target!(|data: &[u8]| run_maplog_fuzz_input(data));
