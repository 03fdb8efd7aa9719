//! How long a restart's state file takes for a big table (issue 15): a NAT
//! with `N` sessions (default 1000000: 1000 hosts x 1000 UDP flows over 16
//! pool4 addresses), saved as the daemon saves it at a stop (snapshot,
//! encode, write, fsync, rename) and loaded as it loads it at start (read,
//! decode, restore into a fresh NAT).
//!
//! Then the same table as a standby gets it over sync (`[sync]`): the
//! walk of the shards, the records packed into messages, and those decoded
//! and applied to a standby (unpaced: the daemon paces the sending at
//! `snapshot_rate`, 200000 sessions a second by default).
//!
//!     cargo run --release --example state_bench [-- N]

use nat64d::nat::state::State;
use nat64d::nat::{Limits, Nat, NatConfig};
use nat64d::xlat::{Mapper, Tuple6};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let pool: Vec<Ipv4Addr> = (0..16).map(|i| Ipv4Addr::new(203, 0, 113, i)).collect();
    let mut cfg = NatConfig::new("2001:db8:64::/96".parse().unwrap(), &pool);
    cfg.allow_non_global = true;
    cfg.limits = Limits {
        max_sessions: 4 << 20,
        sessions_per_host: 1 << 20,
        sessions_per_net64: 1 << 20,
        bibs_per_host: 1 << 20,
    };
    let nat = Nat::new(cfg.clone(), 16);
    let cfg2 = cfg.clone();
    let t = Instant::now();
    for i in 0..n {
        let tup = Tuple6 {
            src: Ipv6Addr::new(0x2001, 0xdb8, 1, (i / 1000) as u16, 0, 0, 0, 1),
            dst: "2001:db8:64::c633:6407".parse().unwrap(),
            proto: 17,
            sport: 1024 + (i % 1000) as u16 * 60,
            dport: 53,
        };
        nat.at(0).map_6to4(&tup, &nat64d::testpkt::PLAIN).expect("a mapping");
    }
    println!("{} sessions made in {:.2} s", nat.session_count(), t.elapsed().as_secs_f64());
    let path = std::env::temp_dir().join(format!("nat64d-state-bench-{}.state", std::process::id()));
    let t = Instant::now();
    let st = nat.snapshot(1000, 1_796_133_727_000);
    let snap = t.elapsed();
    let bytes = st.encode();
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(&bytes).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let save = t.elapsed();
    let t = Instant::now();
    let read = std::fs::read(&path).unwrap();
    let st2 = State::decode(&read).unwrap();
    let decoded = t.elapsed();
    let fresh = Nat::new(cfg, 16);
    let r = fresh.restore(&st2, 0, 5_000);
    let load = t.elapsed();
    println!(
        "save: {:.2} s ({:.2} s walking the shards), {:.1} MB; load: {:.2} s ({:.2} s reading and decoding); restored {} sessions, {} dropped",
        save.as_secs_f64(),
        snap.as_secs_f64(),
        bytes.len() as f64 / 1e6,
        load.as_secs_f64(),
        decoded.as_secs_f64(),
        r.sessions,
        r.dropped()
    );
    let _ = std::fs::remove_file(&path);

    use nat64d::nat::sync::{pack, SyncRec};
    let t = Instant::now();
    let snap = nat.sync_snapshot(1000);
    let walked = t.elapsed();
    let recs = std::iter::once(SyncRec::Begin { sessions: snap.len() as u64 })
        .chain(snap.iter().map(|&x| SyncRec::Up(x)))
        .chain(std::iter::once(SyncRec::End { sessions: snap.len() as u64 }));
    let mut msgs: Vec<Vec<u8>> = vec![];
    let mut buf = Vec::new();
    pack(recs, &mut buf, |b| {
        msgs.push(b.to_vec());
        Ok::<(), ()>(())
    })
    .unwrap();
    let packed = t.elapsed();
    let standby = Nat::new(cfg2, 16);
    standby.set_standby(true, 0);
    let t = Instant::now();
    let (mut part, mut applied, mut refused) = (Vec::new(), 0u64, 0u64);
    for m in &msgs {
        SyncRec::decode_all(m, &mut part).unwrap();
        for r in &part {
            match (standby.apply_sync(r, 1000), r) {
                (Ok(_), SyncRec::Up(_)) => applied += 1,
                (Ok(_), _) => {}
                (Err(_), _) => refused += 1,
            }
        }
    }
    let apply = t.elapsed();
    println!(
        "sync snapshot: {:.2} s walking the shards, {:.2} s with packing into {} messages ({:.1} MB); \
         standby: {:.2} s decoding and applying ({:.0} sessions/s), {} applied, {} refused, {} held",
        walked.as_secs_f64(),
        packed.as_secs_f64(),
        msgs.len(),
        msgs.iter().map(Vec::len).sum::<usize>() as f64 / 1e6,
        apply.as_secs_f64(),
        snap.len() as f64 / apply.as_secs_f64(),
        applied,
        refused,
        standby.session_count()
    );
}
