//! The per-packet path allocates nothing: a counting global allocator
//! watches `Translator::translate` over every kind of packet, including
//! fragmentation and ICMP errors in both directions.

use nat64d::testpkt::{echo, icmp, tcp, udp, V4, V6};
use nat64d::{Prefix6052, Rfc6052Mapper, Translator, Verdict, XlatConfig, OUT_BUF_LEN};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    // Only this test's thread is watched: the harness's threads may allocate.
    static WATCH: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if WATCH.with(|w| w.get()) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: defers to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn translate_never_allocates() {
    let pf: Prefix6052 = "2001:db8:64::/96".parse().unwrap();
    let (a4, b4) = (Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(198, 51, 100, 7));
    let (a6, b6) = (pf.embed(a4), pf.embed(b4));
    let q6 = V6::new(b6, a6, 17, udp(53, 5000, b"x")).build();
    let q4 = V4::new(a4, b4, 17, udp(5000, 53, b"x")).build();
    let mut big4 = V4::new(b4, a4, 17, udp(53, 5000, &[0u8; 3000]));
    big4.df = false;
    let mut ttl1 = V4::new(b4, a4, 17, udp(53, 5000, b""));
    ttl1.ttl = 1;
    let packets = [
        V6::new(a6, b6, 17, udp(5000, 53, &[0u8; 64])).build(),
        V6::new(a6, b6, 6, tcp(1, 80, 1, 0x02, b"")).build(),
        V6::new(a6, b6, 58, echo(128, 1, 1, b"")).build(),
        V6::new(a6, b6, 58, icmp(1, 4, [0; 4], &q6)).build(),
        V6::new(a6, b6, 17, udp(1, 2, &[0u8; 3000])).fragment(0, true, 7).build(),
        V4::new(b4, a4, 17, udp(53, 5000, &[0u8; 64])).build(),
        V4::new(b4, a4, 1, icmp(3, 4, [0, 0, 5, 0xdc], &q4)).build(),
        big4.build(),
        ttl1.build(),
    ];
    let mut m = Rfc6052Mapper::new(pf);
    let mut x = Translator::new(XlatConfig { ipv4_mtu: 1400, ..XlatConfig::default() });
    let mut out = vec![0u8; OUT_BUF_LEN];
    let mut inplace = vec![0u8; 64 + 4096];
    WATCH.with(|w| w.set(true));
    let before = ALLOCS.load(Ordering::Relaxed);
    let mut forwarded = 0;
    for _ in 0..100 {
        for p in &packets {
            if !matches!(x.translate(p, &mut out, &mut m), Verdict::Drop(_)) {
                forwarded += 1;
            }
            inplace[64..64 + p.len()].copy_from_slice(p);
            if !matches!(x.translate_in_place(&mut inplace, 64, p.len(), &mut out, &mut m), Verdict::Drop(_)) {
                forwarded += 1;
            }
        }
    }
    let after = ALLOCS.load(Ordering::Relaxed);
    WATCH.with(|w| w.set(false));
    // The ICMP error rate limit (RFC 4443 2.4 (f)) holds back most of the
    // 200 Time Exceeded errors to one host: those are counted, not lost.
    let held = x.stats.icmp_errors_suppressed as usize;
    assert!(held > 0, "the rate limit's path ran too");
    assert_eq!(forwarded + held, 2 * 100 * packets.len(), "every packet translated, answered or its error held back");
    assert_eq!(after - before, 0, "allocations on the packet path");
}
