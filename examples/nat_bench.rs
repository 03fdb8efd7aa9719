//! Stateful NAT64 figures in one run (`cargo run --release --example nat_bench`):
//! new sessions per second, established-flow lookup + translation per packet
//! (small table and 1M sessions), 1 vs 2 threads on the shared NAT, and
//! memory per session with 1M sessions (counting allocator).
use nat64d::nat::{Nat, NatMapper, NatTable};
use nat64d::testpkt::{bench_host, bench_nat_config, udp, V6};
use nat64d::{Prefix6052, Translator, Verdict, XlatConfig, OUT_BUF_LEN};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
// SAFETY: defers to the system allocator; only tracks live bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

fn prefix() -> Prefix6052 {
    bench_nat_config().prefix
}

/// Fill a table with `hosts` × `per_host` UDP sessions (each its own BIB entry); returns seconds taken.
fn fill(t: &mut NatTable, hosts: u32, per_host: u32) -> f64 {
    let server = prefix().embed(Ipv4Addr::new(198, 51, 100, 7));
    let meta = nat64d::FlowMeta {
        role: nat64d::Role::Packet,
        tcp_flags: 0,
        fragment: false,
        first_fragment: false,
        frag_id: 0,
        packet: &[],
    };
    let start = Instant::now();
    let mut m = NatMapper { table: t, now: 0 };
    for h in 0..hosts {
        for p in 0..per_host {
            let tuple =
                nat64d::Tuple6 { src: bench_host(h), dst: server, proto: 17, sport: 1024 + p as u16, dport: 53 };
            black_box(nat64d::Mapper::map_6to4(&mut m, &tuple, &meta).expect("session"));
        }
    }
    start.elapsed().as_secs_f64()
}

fn main() {
    // 1. New sessions per second and memory per session, 1M sessions, one thread.
    for (hosts, per_host) in [(1000u32, 1000u32), (1_000_000, 1)] {
        let before = LIVE.load(Ordering::Relaxed);
        let mut t = NatTable::new(bench_nat_config(), 0, 1);
        let secs = fill(&mut t, hosts, per_host);
        let n = (hosts * per_host) as f64;
        let bytes = (LIVE.load(Ordering::Relaxed) - before) as f64;
        println!(
            "create {:>7} sessions ({hosts} hosts x {per_host}): {:.2} M sessions/s, {:.0} bytes/session (BIB entry each)",
            n,
            n / secs / 1e6,
            bytes / n
        );
        drop(t);
    }

    // 2. Established flow: lookup + translation (in place), small table and 1M sessions.
    for (hosts, per_host) in [(10u32, 10u32), (1000, 1000)] {
        let mut t = NatTable::new(bench_nat_config(), 0, 1);
        fill(&mut t, hosts, per_host);
        let mut x = Translator::new(XlatConfig { ipv6_mtu: 1500, ..XlatConfig::default() });
        let mut out = vec![0u8; OUT_BUF_LEN];
        let server = prefix().embed(Ipv4Addr::new(198, 51, 100, 7));
        // Packets of 1024 established flows spread over the table.
        let pkts: Vec<Vec<u8>> = (0..1024u32)
            .map(|i| {
                let k = i.wrapping_mul(2_654_435_761) % (hosts * per_host);
                V6::new(bench_host(k / per_host), server, 17, udp(1024 + (k % per_host) as u16, 53, &[0u8; 64])).build()
            })
            .collect();
        let mut buf = vec![0u8; 64 + 200];
        let iters = 4_000_000u64;
        let start = Instant::now();
        for i in 0..iters {
            let p = &pkts[(i & 1023) as usize];
            buf[64..64 + p.len()].copy_from_slice(p);
            let v = x.translate_in_place(&mut buf, 64, p.len(), &mut out, &mut NatMapper { table: &mut t, now: 1 });
            debug_assert!(matches!(v, Verdict::Forward(_)));
            black_box(v);
        }
        let ns = start.elapsed().as_nanos() as f64 / iters as f64;
        println!(
            "established UDP 64 B, IPv6->IPv4 in place, {:>7} sessions: {ns:.1} ns/packet (incl. 110-byte packet copy)",
            hosts * per_host
        );
        assert_eq!(x.stats.out_6to4.packets[1], iters, "every packet translated");
    }

    // 3. Shared NAT (8 shards): 1 thread vs 2 threads on established flows.
    //    Each thread has its own 1024 flows; their ports spread over all port blocks.
    let nat = Nat::new(bench_nat_config(), 8);
    let server = prefix().embed(Ipv4Addr::new(198, 51, 100, 7));
    let flows = |t: u32| -> Vec<Vec<u8>> {
        (0..1024u32)
            .map(|i| {
                let port = 1024 + ((i * 7919 + t * 104_729) % 60_000) as u16;
                V6::new(bench_host(t * 32 + i % 32), server, 17, udp(port, 53, &[0u8; 64])).build()
            })
            .collect()
    };
    {
        let mut x = Translator::new(XlatConfig::default());
        let mut out = vec![0u8; OUT_BUF_LEN];
        for t in 0..2 {
            for pkt in flows(t) {
                assert!(matches!(x.translate(&pkt, &mut out, &mut nat.at(0)), Verdict::Forward(_)));
            }
        }
    }
    let run = |threads: u32| -> f64 {
        let per: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let (nat, pkts) = (&nat, flows(t));
                    s.spawn(move || {
                        let mut x = Translator::new(XlatConfig::default());
                        let mut out = vec![0u8; OUT_BUF_LEN];
                        let mut buf = vec![0u8; 64 + 200];
                        let mut n = 0u64;
                        let start = Instant::now();
                        while start.elapsed() < Duration::from_millis(1500) {
                            for p in &pkts {
                                buf[64..64 + p.len()].copy_from_slice(p);
                                black_box(x.translate_in_place(&mut buf, 64, p.len(), &mut out, &mut nat.at(1)));
                                n += 1;
                            }
                        }
                        assert_eq!(x.stats.out_6to4.packets[1], n, "every packet translated");
                        n
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        per.iter().sum::<u64>() as f64 / 1.5
    };
    let one = run(1);
    let two = run(2);
    println!(
        "shared NAT, 8 shards: 1 thread {:.2} Mpps, 2 threads {:.2} Mpps, scaling x{:.2}",
        one / 1e6,
        two / 1e6,
        two / one
    );
}
