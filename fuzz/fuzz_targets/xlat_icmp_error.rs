//! Arbitrary bytes quoted inside a valid ICMP error of either family (RFC 7915 4.3 / 5.3), through the translator, copying and in place; the invariants are
//! in `nat64d::testpkt::check_invariants`, the input handling in `run_fuzz_input`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nat64d::testpkt::run_fuzz_input;
use nat64d::OUT_BUF_LEN;
use std::cell::RefCell;

thread_local! {
    // Output and scratch buffers, allocated once: zeroing 2 × 72 KiB per run would dominate.
    static BUFS: RefCell<(Vec<u8>, Vec<u8>)> = RefCell::new((vec![0u8; OUT_BUF_LEN], vec![0u8; OUT_BUF_LEN]));
}

fuzz_target!(|data: &[u8]| {
    BUFS.with(|b| {
        let (out, scratch) = &mut *b.borrow_mut();
        run_fuzz_input("xlat_icmp_error", data, out, scratch);
    });
});
