//! How much the mapping log writes for one workload, per allocation mode,
//! through the pure NAT API (issue 14's figures): `subscribers` IPv6 /64s,
//! each opening `flows` UDP flows to one server, then all of them expiring.
//! For each mode: records, bytes of JSON lines, IPFIX bytes, and the heap
//! the NAT holds per subscriber with its flows live.
//!
//!     cargo run --release --example log_volume [-- SUBSCRIBERS FLOWS]
//!
//! Defaults: 1000 subscribers x 100 flows, 16 shards, 512-port blocks.

use nat64d::addr::Net6;
use nat64d::ipfix::Encoder;
use nat64d::maplog::Record;
use nat64d::nat::{EventSel, MapEvent, Nat, NatConfig, PoolAddr, PortMode, Ports};
use nat64d::xlat::{Mapper, Tuple6};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; only counted.
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

struct Figures {
    records: usize,
    json_bytes: usize,
    ipfix_bytes: usize,
    heap_per_subscriber: isize,
}

fn run(mode: PortMode, subscribers: u16, flows: u16) -> Figures {
    let pool: Vec<Ipv4Addr> = (0..16).map(|i| Ipv4Addr::new(203, 0, 113, i)).collect();
    let mut cfg = NatConfig::new("2001:db8:64::/96".parse().unwrap(), &pool);
    cfg.allow_non_global = true;
    cfg.ports = Ports { mode, block_size: 512, max_blocks: 8, subscriber: 64, hold: 120_000 };
    cfg.events = EventSel { blocks: mode == PortMode::Blocks, sessions: mode == PortMode::Session, destination: false };
    if mode == PortMode::Deterministic {
        // 1024 subscribers of /64 in a /54: 16 addresses x 126 blocks = 2016 fit.
        cfg.pool4[0].clients = Some(Net6 { addr: "2001:db8:100::".parse().unwrap(), len: 54 });
        cfg.pool4[0].addrs = pool.iter().map(|&a| PoolAddr::new(a)).collect();
    }
    let nat = Nat::new(cfg, 16);
    // Drained as the daemon's writer does, often enough that nothing is lost.
    let mut spare = Vec::with_capacity(nat64d::nat::events::EVENT_CAP);
    let mut all: Vec<MapEvent> = vec![];
    let mut lost = 0;
    let before = LIVE.load(Ordering::Relaxed);
    for s in 0..subscribers {
        for f in 0..flows {
            let t = Tuple6 {
                src: Ipv6Addr::new(0x2001, 0xdb8, 0x100, s, 0, 0, 0, 1),
                dst: "2001:db8:64::c633:6407".parse().unwrap(),
                proto: 17,
                sport: 10000 + f,
                dport: 53,
            };
            nat.at(1000).map_6to4(&t, &nat64d::testpkt::PLAIN).expect("a mapping");
        }
        if s % 16 == 15 {
            let heap_now = LIVE.load(Ordering::Relaxed);
            lost += nat.drain_events(&mut spare, |b| all.extend_from_slice(b));
            // The drained events are the log's, not the NAT's memory.
            let _ = heap_now;
        }
    }
    lost += nat.drain_events(&mut spare, |b| all.extend_from_slice(b));
    let heap = LIVE.load(Ordering::Relaxed) - before - (all.capacity() * std::mem::size_of::<MapEvent>()) as isize;
    // Everything expires (UDP 5 min), then the blocks' hold time passes.
    for now in [1000 + 300_000, 1000 + 300_000 + 120_000] {
        while nat.expire(now, 2048) > 0 {
            lost += nat.drain_events(&mut spare, |b| all.extend_from_slice(b));
        }
        lost += nat.drain_events(&mut spare, |b| all.extend_from_slice(b));
    }
    assert_eq!(lost, 0, "events lost to full queues (drain more often)");
    let mut json = Vec::new();
    for e in &all {
        Record::of(e, 1_796_133_727_000 + e.at).write_line(&mut json).unwrap();
    }
    let ipfix: usize = Encoder::new(1, 600).encode(&all, |e| e.at, 1_796_133_727).iter().map(|m| m.0.len()).sum();
    Figures {
        records: all.len(),
        json_bytes: json.len(),
        ipfix_bytes: ipfix,
        heap_per_subscriber: heap / subscribers as isize,
    }
}

fn main() {
    let args: Vec<u16> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (subs, flows) = (args.first().copied().unwrap_or(1000), args.get(1).copied().unwrap_or(100));
    println!("{subs} subscribers x {flows} UDP flows, 16 shards, 512-port blocks");
    println!("{:<15}{:>10}{:>14}{:>14}{:>22}", "mode", "records", "JSON bytes", "IPFIX bytes", "heap/subscriber, live");
    let mut base = None;
    for (name, mode) in
        [("session", PortMode::Session), ("blocks", PortMode::Blocks), ("deterministic", PortMode::Deterministic)]
    {
        let f = run(mode, subs, flows);
        println!(
            "{:<15}{:>10}{:>14}{:>14}{:>20} B",
            name, f.records, f.json_bytes, f.ipfix_bytes, f.heap_per_subscriber
        );
        if mode == PortMode::Session {
            base = Some(f.records);
        } else if let (Some(b), true) = (base, f.records > 0) {
            println!("{:<15}{:>10}", "", format!("{}x fewer", b / f.records));
        }
    }
}
