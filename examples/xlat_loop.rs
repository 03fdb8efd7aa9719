//! A tight translation loop for profilers (perf, callgrind):
//! `cargo run --release --example xlat_loop -- 6to4|4to6 [iterations]`.
use nat64d::testpkt::{udp, V4, V6};
use nat64d::{Prefix6052, Rfc6052Mapper, Translator, XlatConfig, OUT_BUF_LEN};
use std::net::Ipv4Addr;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "6to4".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let pf: Prefix6052 = "2001:db8:64::/96".parse().expect("prefix");
    let (a4, b4) = (Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(198, 51, 100, 7));
    let pkt = if dir == "6to4" {
        V6::new(pf.embed(a4), pf.embed(b4), 17, udp(5000, 53, &[0u8; 64])).build()
    } else {
        V4::new(b4, a4, 17, udp(53, 5000, &[0u8; 64])).build()
    };
    let mut m = Rfc6052Mapper::new(pf);
    let mut x = Translator::new(XlatConfig { ipv6_mtu: 1500, ..XlatConfig::default() });
    let mut out = vec![0u8; OUT_BUF_LEN];
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(x.translate(std::hint::black_box(&pkt), &mut out, &mut m));
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{dir}: {ns:.1} ns/packet over {n} packets");
}
