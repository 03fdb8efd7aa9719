//! Arbitrary bytes as an IPv4 packet (version nibble forced to 4), through
//! the translator with two MTU settings; invariants in `check_invariants`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nat64d::testpkt::check_invariants;
use nat64d::{Translator, XlatConfig, OUT_BUF_LEN};

fuzz_target!(|data: &[u8]| {
    let mut pkt = data.to_vec();
    if let Some(b) = pkt.first_mut() {
        *b = (*b & 0x0f) | 0x40;
    }
    let mut out = vec![0u8; OUT_BUF_LEN];
    let mut scratch = vec![0u8; OUT_BUF_LEN];
    for (v6, v4) in [(1280, 1500), (1500, 576)] {
        let mut x = Translator::new(XlatConfig { ipv6_mtu: v6, ipv4_mtu: v4, ..XlatConfig::default() });
        check_invariants(&mut x, &pkt, &mut out, &mut scratch);
    }
});
