//! Stateful NAT64 per-packet costs (criterion): `cargo bench --bench nat`.
//! - `established`: lookup of an established UDP flow plus in-place
//!   translation (IPv6 → IPv4, 64 bytes of data), in a table of 100 sessions;
//! - `new_session`: creating a BIB entry and a session (the mapping alone),
//!   timed without building or dropping tables.
//!
//! Larger tables, two threads and memory per session: `examples/nat_bench.rs`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use nat64d::nat::{NatMapper, NatTable};
use nat64d::testpkt::{bench_host, bench_nat_config, udp, V6};
use nat64d::{FlowMeta, Mapper, Role, Translator, Tuple6, Verdict, XlatConfig, OUT_BUF_LEN};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

fn bench(c: &mut Criterion) {
    let server = bench_nat_config().prefix.embed(Ipv4Addr::new(198, 51, 100, 7));
    let mut g = c.benchmark_group("nat");
    g.throughput(Throughput::Elements(1));

    let mut t = NatTable::new(bench_nat_config(), 0, 1);
    let mut x = Translator::new(XlatConfig::default());
    let mut out = vec![0u8; OUT_BUF_LEN];
    let pkts: Vec<Vec<u8>> = (0..100u32)
        .map(|i| V6::new(bench_host(i / 10), server, 17, udp(1024 + (i % 10) as u16, 53, &[0u8; 64])).build())
        .collect();
    for p in &pkts {
        assert!(matches!(x.translate(p, &mut out, &mut NatMapper { table: &mut t, now: 0 }), Verdict::Forward(_)));
    }
    let mut buf = vec![0u8; 64 + 200];
    let mut i = 0;
    g.bench_function("established", |b| {
        b.iter(|| {
            let p = &pkts[i % 100];
            i += 1;
            buf[64..64 + 40].copy_from_slice(&p[..40]);
            x.translate_in_place(black_box(&mut buf), 64, p.len(), &mut out, &mut NatMapper { table: &mut t, now: 1 })
        })
    });

    let meta =
        FlowMeta { role: Role::Packet, tcp_flags: 0, fragment: false, first_fragment: false, frag_id: 0, packet: &[] };
    g.bench_function("new_session", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let n = (iters - done).min(500_000);
                let mut t = NatTable::new(bench_nat_config(), 0, 1);
                let mut m = NatMapper { table: &mut t, now: 0 };
                let start = Instant::now();
                for k in 0..n as u32 {
                    let tuple = Tuple6 {
                        src: bench_host(k >> 10),
                        dst: server,
                        proto: 17,
                        sport: 1024 + (k & 1023) as u16,
                        dport: 53,
                    };
                    black_box(m.map_6to4(&tuple, &meta).expect("new session"));
                }
                total += start.elapsed();
                done += n;
            }
            total
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
