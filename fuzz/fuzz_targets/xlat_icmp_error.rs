//! Arbitrary bytes as the packet quoted in an ICMP error of either family,
//! wrapped in a valid outer header so the fuzzer works on error translation
//! (RFC 7915 4.3 / 5.3: inner headers, RFC 4884 lengths, truncation).
#![no_main]
use libfuzzer_sys::fuzz_target;
use nat64d::testpkt::{check_invariants, wrap_in_icmp_error};
use nat64d::{Translator, XlatConfig, OUT_BUF_LEN};
use std::cell::RefCell;

thread_local! {
    // Output and scratch buffers, allocated once: zeroing 2 × 72 KiB per run would dominate.
    static BUFS: RefCell<(Vec<u8>, Vec<u8>)> = RefCell::new((vec![0u8; OUT_BUF_LEN], vec![0u8; OUT_BUF_LEN]));
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 7 {
        return;
    }
    let v6 = data[0] & 1 == 1;
    let pkt = wrap_in_icmp_error(v6, data[1], data[2], [data[3], data[4], data[5], data[6]], &data[7..]);
    let mut bufs = BUFS.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let (out, scratch) = (&mut bufs.0, &mut bufs.1);
    let mut x = Translator::new(XlatConfig::default());
    check_invariants(&mut x, &pkt, out, scratch);
    BUFS.with(|b| *b.borrow_mut() = bufs);
});
