//! Configuration text: the loader never panics; accepted files show back and parse
//! to the same configuration; refusals name a line of the text
//! (`nat64d::testpkt::run_config_fuzz_input`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use nat64d::testpkt::run_config_fuzz_input;

fuzz_target!(|data: &[u8]| run_config_fuzz_input(data));
