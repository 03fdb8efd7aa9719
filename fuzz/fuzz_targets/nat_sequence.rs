//! Sequences of packets both ways, with time advancing and expiry sweeps,
//! through a small stateful NAT64 table: no panic, the table stays
//! consistent and within its limits, translations agree with the BIB
//! (`nat64d::testpkt::run_nat_fuzz_input`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use nat64d::testpkt::run_nat_fuzz_input;
use nat64d::OUT_BUF_LEN;
use std::cell::RefCell;

thread_local! {
    static OUT: RefCell<Vec<u8>> = RefCell::new(vec![0u8; OUT_BUF_LEN]);
}

fuzz_target!(|data: &[u8]| {
    OUT.with(|o| run_nat_fuzz_input(data, &mut o.borrow_mut()));
});
