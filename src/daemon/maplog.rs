//! The mapping log's writer thread: every 100 ms it takes each NAT shard's
//! queued mapping events (an O(1) exchange under the shard's lock, so the
//! packet path never waits for the log), writes one JSON line per event
//! ([`crate::maplog::Record`]) and flushes; every second it fsyncs. A
//! reload or SIGHUP reopens the file by name (logrotate's contract; if the
//! reopen fails, records keep going to the open file and the error is
//! logged). An event that found its queue full, or a record the file
//! refused, is counted in `log_records_lost` and logged as an error.

use crate::maplog::Record;
use crate::nat::events::EVENT_CAP;
use crate::nat::Nat;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{error, info};

/// How often the queues are drained, and the file synced.
pub const DRAIN_EVERY: Duration = Duration::from_millis(100);
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// What `nat64ctl stats` and Prometheus show of the log.
#[derive(Debug, Default)]
pub struct MapLogStats {
    pub records: AtomicU64,
    pub lost: AtomicU64,
    /// Set by a reload: reopen the file by name.
    pub reopen: AtomicBool,
    pub stop: AtomicBool,
}

/// Open the log for appending (created 0640 if missing, its directory too).
pub fn open(path: &Path) -> Result<File, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| format!("cannot open the mapping log {}: {e}", path.display()))
}

/// The clock the NAT runs on (milliseconds since `epoch`) as UTC milliseconds.
pub fn wall_clock_of(epoch: Instant) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (now.saturating_sub(epoch.elapsed())).as_millis() as u64
}

/// The writer: runs until `stats.stop` is set, then drains once more (after
/// recording the end of every block still held) and syncs.
pub fn run(nat: &Nat, path: PathBuf, file: File, stats: &MapLogStats, epoch: Instant) {
    let wall0 = wall_clock_of(epoch);
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    let mut spare = Vec::with_capacity(EVENT_CAP);
    let mut last_sync = Instant::now();
    let mut last_complaint: Option<Instant> = None;
    loop {
        let stopping = stats.stop.load(Ordering::Acquire);
        if stopping {
            nat.close_blocks(epoch.elapsed().as_millis() as u64);
        }
        let (mut written, mut failed) = (0u64, 0u64);
        let full = nat.drain_events(&mut spare, |batch| {
            for e in batch {
                match Record::of(e, wall0 + e.at).write_line(&mut out) {
                    Ok(()) => written += 1,
                    Err(_) => failed += 1,
                }
            }
        });
        if out.flush().is_err() {
            failed += written;
            written = 0;
        }
        stats.records.fetch_add(written, Ordering::Relaxed);
        if full + failed > 0 {
            stats.lost.fetch_add(full + failed, Ordering::Relaxed);
            if last_complaint.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                error!(
                    "mapping log {}: {} record(s) lost ({full} to full queues, {failed} the file refused)",
                    path.display(),
                    full + failed
                );
                last_complaint = Some(Instant::now());
            }
        }
        if last_sync.elapsed() >= SYNC_EVERY || stopping {
            let _ = out.get_ref().sync_data();
            last_sync = Instant::now();
        }
        if stats.reopen.swap(false, Ordering::AcqRel) {
            let _ = out.flush();
            match open(&path) {
                Ok(f) => {
                    let _ = out.get_ref().sync_data();
                    out = BufWriter::with_capacity(256 * 1024, f);
                    info!("mapping log {} reopened", path.display());
                }
                Err(e) => error!("{e}; still writing to the file opened before"),
            }
        }
        if stopping {
            return;
        }
        std::thread::sleep(DRAIN_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maplog::Holdings;
    use crate::nat::{EventSel, NatConfig, PortMode, Ports};
    use crate::xlat::{FlowMeta, Mapper, Role, Tuple6};

    // Issue 14: block events reach the file as records `nat64ctl who` reads
    // back, the end of each block is recorded at a clean stop, and a
    // reopen (logrotate) moves the writing to a new file with nothing lost.
    #[test]
    fn blocks_reach_the_file_and_survive_a_rotation() {
        let dir = std::env::temp_dir().join(format!("nat64d-maplog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mapping.jsonl");
        let mut cfg = NatConfig::new("2001:db8:64::/96".parse().unwrap(), &["203.0.113.1".parse().unwrap()]);
        cfg.allow_non_global = true;
        cfg.ports = Ports { mode: PortMode::Blocks, block_size: 256, ..Ports::default() };
        cfg.events = EventSel { blocks: true, ..EventSel::default() };
        let nat = Nat::new(cfg, 4);
        let stats = MapLogStats::default();
        let epoch = Instant::now();
        let flow = |host: u16| {
            let t = Tuple6 {
                src: std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, host, 0, 0, 0, 1),
                dst: "2001:db8:64::c633:6407".parse().unwrap(),
                proto: 17,
                sport: 5000,
                dport: 53,
            };
            let meta = FlowMeta {
                role: Role::Packet,
                tcp_flags: 0,
                fragment: false,
                first_fragment: false,
                frag_id: 0,
                packet: &[],
            };
            nat.at(epoch.elapsed().as_millis() as u64).map_6to4(&t, &meta).unwrap()
        };
        std::thread::scope(|s| {
            let w = s.spawn(|| run(&nat, path.clone(), open(&path).unwrap(), &stats, epoch));
            let first = flow(1);
            std::thread::sleep(Duration::from_millis(250));
            std::fs::rename(&path, dir.join("mapping.jsonl.1")).unwrap();
            stats.reopen.store(true, Ordering::Release);
            std::thread::sleep(Duration::from_millis(250));
            flow(2);
            std::thread::sleep(Duration::from_millis(250));
            stats.stop.store(true, Ordering::Release);
            w.join().unwrap();
            let mut h = Holdings::default();
            h.read(std::io::BufReader::new(File::open(dir.join("mapping.jsonl.1")).unwrap())).unwrap();
            let old: Vec<_> = h.all().map(|x| x.subscriber.clone()).collect();
            assert_eq!(old, ["2001:db8:1:1::/64"], "the first block, in the rotated file");
            let mut h = Holdings::default();
            h.read(std::io::BufReader::new(File::open(&path).unwrap())).unwrap();
            let now = h.last_ms.unwrap();
            let held = h.who(first.src, first.sport, None, now - 1);
            assert!(held.is_empty(), "the first block's allocation is in the old file: {held:?}");
            assert_eq!(h.bad_lines, 0);
            let new: Vec<_> = h.all().map(|x| (x.subscriber.clone(), x.until.is_some())).collect();
            assert_eq!(new, [("2001:db8:1:2::/64".to_string(), true)], "the second block, closed at the stop");
            assert_eq!(stats.records.load(Ordering::Relaxed), 4, "2 allocations, 2 releases at the stop");
            assert_eq!(stats.lost.load(Ordering::Relaxed), 0);
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
