//! A tight translation loop for profilers and A/B timing:
//! `cargo run --release --example xlat_loop -- [iterations]` prints ns per
//! packet for each case, copy vs in place, interleaved in rounds so that
//! drift on a shared machine hits every case alike; under
//! `valgrind --tool=callgrind` use `-- ITER CASE` to run one case only.
use nat64d::testpkt::{tcp, udp, V4, V6};
use nat64d::{Prefix6052, Rfc6052Mapper, Translator, XlatConfig, OUT_BUF_LEN};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let only = args.next();
    let pf: Prefix6052 = "2001:db8:64::/96".parse().expect("prefix");
    let (a4, b4) = (Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(198, 51, 100, 7));
    let cases: Vec<(String, Vec<u8>)> = vec![
        ("6to4_udp_64".into(), V6::new(pf.embed(a4), pf.embed(b4), 17, udp(5000, 53, &[0u8; 64])).build()),
        ("4to6_udp_64".into(), V4::new(b4, a4, 17, udp(53, 5000, &[0u8; 64])).build()),
        ("6to4_tcp_1400".into(), V6::new(pf.embed(a4), pf.embed(b4), 6, tcp(1, 80, 1, 0x10, &[0u8; 1400])).build()),
        ("4to6_tcp_1400".into(), V4::new(b4, a4, 6, tcp(80, 1, 1, 0x10, &[0u8; 1400])).build()),
    ];
    let mut m = Rfc6052Mapper::new(pf);
    let mut x = Translator::new(XlatConfig { ipv6_mtu: 1500, ..XlatConfig::default() });
    let mut out = vec![0u8; OUT_BUF_LEN];
    let mut buf = vec![0u8; 64 + 2000];
    let mut total = vec![[0f64; 2]; cases.len()];
    let rounds = if only.is_some() { 1 } else { 10 };
    for _ in 0..rounds {
        for (i, (name, pkt)) in cases.iter().enumerate() {
            if only.as_ref().is_some_and(|o| !name.starts_with(o.trim_end_matches("_in_place"))) {
                continue;
            }
            let in_place_only = only.as_ref().is_some_and(|o| o.ends_with("_in_place"));
            if !in_place_only {
                let t = Instant::now();
                for _ in 0..n / rounds {
                    black_box(x.translate(black_box(pkt), &mut out, &mut m));
                }
                total[i][0] += t.elapsed().as_nanos() as f64;
            }
            if only.is_none() || in_place_only {
                // In place: the packet is already in the buffer; the rewrite is idempotent for
                // these packets' lengths, so it is copied in once per round, outside the timing.
                buf[64..64 + pkt.len()].copy_from_slice(pkt);
                let t = Instant::now();
                for _ in 0..n / rounds {
                    buf[64..64 + 40].copy_from_slice(&pkt[..40]); // restore the headers only
                    black_box(x.translate_in_place(black_box(&mut buf), 64, pkt.len(), &mut out, &mut m));
                }
                total[i][1] += t.elapsed().as_nanos() as f64;
            }
        }
    }
    for (i, (name, _)) in cases.iter().enumerate() {
        println!("{name:14} copy {:6.1} ns   in place {:6.1} ns", total[i][0] / n as f64, total[i][1] / n as f64);
    }
}
