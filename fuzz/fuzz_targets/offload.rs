//! A virtio-net header and a packet, as the kernel hands them over with TUN
//! offloads, through `worker::offload_packet` (super-packets translated whole,
//! segmented in software, partial checksums); the invariants and the input
//! handling are in `nat64d::testpkt::run_offload_fuzz_input`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nat64d::testpkt::run_offload_fuzz_input;
use nat64d::OUT_BUF_LEN;
use std::cell::RefCell;

thread_local! {
    static OUT: RefCell<Vec<u8>> = RefCell::new(vec![0u8; OUT_BUF_LEN]);
}

fuzz_target!(|data: &[u8]| {
    OUT.with(|o| run_offload_fuzz_input(data, &mut o.borrow_mut()));
});
