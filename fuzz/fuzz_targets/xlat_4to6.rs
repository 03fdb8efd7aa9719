//! Arbitrary bytes as an IPv4 packet (version nibble forced to 4), through
//! the translator with two MTU settings; invariants in `check_invariants`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nat64d::testpkt::check_invariants;
use nat64d::{Translator, XlatConfig, OUT_BUF_LEN};
use std::cell::RefCell;

thread_local! {
    // Output and scratch buffers, allocated once: zeroing 2 × 72 KiB per run would dominate.
    static BUFS: RefCell<(Vec<u8>, Vec<u8>)> = RefCell::new((vec![0u8; OUT_BUF_LEN], vec![0u8; OUT_BUF_LEN]));
}

fuzz_target!(|data: &[u8]| {
    let mut pkt = data.to_vec();
    if let Some(b) = pkt.first_mut() {
        *b = (*b & 0x0f) | 0x40;
    }
    let mut bufs = BUFS.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let (out, scratch) = (&mut bufs.0, &mut bufs.1);
    for (v6, v4) in [(1280, 1500), (1500, 576)] {
        let mut x = Translator::new(XlatConfig { ipv6_mtu: v6, ipv4_mtu: v4, ..XlatConfig::default() });
        check_invariants(&mut x, &pkt, out, scratch);
    }
    BUFS.with(|b| *b.borrow_mut() = bufs);
});
