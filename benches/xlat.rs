//! Translation cost per packet, both directions (criterion).
//!
//! `cargo bench --bench xlat` — the fast-path cases are UDP 64 B / 1400 B and
//! TCP (no options, no fragmentation); echo and an ICMP error take the
//! slower paths. The mapper is the stateless RFC 6052 one, so the figures
//! are the translator's own cost, without NAT state lookups.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nat64d::testpkt::{echo, icmp, tcp, udp, V4, V6};
use nat64d::{Prefix6052, Rfc6052Mapper, Translator, XlatConfig, OUT_BUF_LEN};
use std::net::Ipv4Addr;

fn cases() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let pf: Prefix6052 = "2001:db8:64::/96".parse().unwrap();
    let (a4, b4) = (Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(198, 51, 100, 7));
    let (a6, b6) = (pf.embed(a4), pf.embed(b4));
    let v6 = |proto, l4: Vec<u8>| V6::new(a6, b6, proto, l4).build();
    let v4 = |proto, l4: Vec<u8>| {
        let mut p = V4::new(b4, a4, proto, l4);
        p.df = true;
        p.build()
    };
    let q6 = V6::new(b6, a6, 17, udp(53, 5000, &[0u8; 64])).build();
    let q4 = V4::new(a4, b4, 17, udp(5000, 53, &[0u8; 64])).build();
    vec![
        // Payload sizes are the transport payload: "UDP 64 B" carries 64 bytes of data.
        ("udp_64", v6(17, udp(5000, 53, &[0u8; 64])), v4(17, udp(53, 5000, &[0u8; 64]))),
        ("udp_1400", v6(17, udp(5000, 53, &[0u8; 1400])), v4(17, udp(53, 5000, &[0u8; 1400]))),
        ("tcp_1400", v6(6, tcp(40000, 80, 1, 0x10, &[0u8; 1400])), v4(6, tcp(80, 40000, 1, 0x10, &[0u8; 1400]))),
        ("tcp_ack", v6(6, tcp(40000, 80, 1, 0x10, b"")), v4(6, tcp(80, 40000, 1, 0x10, b""))),
        ("echo_64", v6(58, echo(128, 7, 1, &[0u8; 56])), v4(1, echo(0, 7, 1, &[0u8; 56]))),
        (
            "icmp_error",
            V6::new(a6, b6, 58, icmp(1, 4, [0; 4], &q6)).build(),
            V4::new(b4, a4, 1, icmp(3, 3, [0; 4], &q4)).build(),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let mut m = Rfc6052Mapper::new("2001:db8:64::/96".parse().unwrap());
    let mut x = Translator::new(XlatConfig { ipv6_mtu: 1500, ipv4_mtu: 1500, ..XlatConfig::default() });
    let mut out = vec![0u8; OUT_BUF_LEN];
    for (name, p6, p4) in cases() {
        // Every case must translate, or the figure measures a drop.
        assert!(matches!(x.translate(&p6, &mut out, &mut m), nat64d::Verdict::Forward(_)), "{name} 6to4");
        assert!(matches!(x.translate(&p4, &mut out, &mut m), nat64d::Verdict::Forward(_)), "{name} 4to6");
        let mut g = c.benchmark_group("xlat");
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("6to4", name), &p6, |b, p| {
            b.iter(|| x.translate(black_box(p), &mut out, &mut m))
        });
        g.bench_with_input(BenchmarkId::new("4to6", name), &p4, |b, p| {
            b.iter(|| x.translate(black_box(p), &mut out, &mut m))
        });
        // In place, as the dataplane runs it: the packet sits behind 64 bytes
        // of headroom and only its headers are rewritten. Each iteration
        // first restores the 40 bytes the rewrite touches (IPv6 header, or
        // IPv4 header and transport header); `restore` times that alone.
        for (dir, p) in [("6to4", &p6), ("4to6", &p4)] {
            let mut buf = vec![0u8; 64 + p.len()];
            buf[64..].copy_from_slice(p);
            g.bench_function(BenchmarkId::new(format!("{dir}_in_place"), name), |b| {
                b.iter(|| {
                    buf[64..104].copy_from_slice(&p[..40]);
                    x.translate_in_place(black_box(&mut buf), 64, p.len(), &mut out, &mut m)
                })
            });
            g.bench_function(BenchmarkId::new(format!("{dir}_restore"), name), |b| {
                b.iter(|| {
                    buf[64..104].copy_from_slice(black_box(&p[..40]));
                    black_box(&mut buf);
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
