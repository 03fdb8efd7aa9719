//! The mapping log's writer thread: every 100 ms it takes each NAT shard's
//! queued mapping events (an O(1) exchange under the shard's lock, so the
//! packet path never waits for the log), writes one JSON line per event
//! ([`crate::maplog::Record`]) and flushes, and sends them to the IPFIX
//! collector if one is set ([`crate::ipfix`]); every second it fsyncs. A
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

/// Where the records go.
pub struct Sinks {
    /// The JSON-lines file, by name and as opened.
    pub file: Option<(PathBuf, File)>,
    /// The IPFIX collector, a socket to send from, and the encoder.
    pub ipfix: Option<(std::net::SocketAddr, std::net::UdpSocket, crate::ipfix::Encoder)>,
}

impl Sinks {
    /// Open what `cfg` asks for (before the daemon touches anything).
    pub fn open(cfg: &crate::config::MappingLogSection) -> Result<Sinks, String> {
        let file = match &cfg.file {
            Some(p) => Some((p.clone(), open(p)?)),
            None => None,
        };
        let ipfix = match cfg.ipfix {
            Some(c) => {
                let any: std::net::SocketAddr =
                    if c.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
                let s = std::net::UdpSocket::bind(any)
                    .map_err(|e| format!("cannot open a socket for the IPFIX collector {c}: {e}"))?;
                Some((c, s, crate::ipfix::Encoder::new(cfg.ipfix_domain, cfg.ipfix_template_refresh)))
            }
            None => None,
        };
        Ok(Sinks { file, ipfix })
    }

    /// What the start line says.
    pub fn describe(&self) -> String {
        let mut v = vec![];
        if let Some((p, _)) = &self.file {
            v.push(p.display().to_string());
        }
        if let Some((c, _, _)) = &self.ipfix {
            v.push(format!("IPFIX to {c}"));
        }
        v.join(" and ")
    }
}

/// The writer: runs until `stats.stop` is set, then drains once more (after
/// recording the end of every block still held) and syncs.
pub fn run(nat: &Nat, sinks: Sinks, stats: &MapLogStats, epoch: Instant, close_at_stop: bool) {
    let wall0 = wall_clock_of(epoch);
    let Sinks { file, mut ipfix } = sinks;
    let (path, mut out) = match file {
        Some((p, f)) => (Some(p), Some(BufWriter::with_capacity(256 * 1024, f))),
        None => (None, None),
    };
    let mut batch_all = Vec::new();
    let mut spare = Vec::with_capacity(EVENT_CAP);
    let mut last_sync = Instant::now();
    let mut last_complaint: Option<Instant> = None;
    loop {
        let stopping = stats.stop.load(Ordering::Acquire);
        if stopping && close_at_stop {
            nat.close_blocks(epoch.elapsed().as_millis() as u64);
        }
        let (mut written, mut failed) = (0u64, 0u64);
        batch_all.clear();
        let full = nat.drain_events(&mut spare, |batch| {
            if ipfix.is_some() {
                batch_all.extend_from_slice(batch);
            }
            let Some(out) = out.as_mut() else {
                written += batch.len() as u64;
                return;
            };
            for e in batch {
                match Record::of(e, wall0 + e.at).write_line(out) {
                    Ok(()) => written += 1,
                    Err(_) => failed += 1,
                }
            }
        });
        if let Some(o) = out.as_mut() {
            if o.flush().is_err() {
                failed += written;
                written = 0;
            }
        }
        if let Some((collector, sock, enc)) = ipfix.as_mut() {
            let now_secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            for (msg, n) in enc.encode(&batch_all, |e| wall0 + e.at, now_secs) {
                if sock.send_to(&msg, *collector).is_err() {
                    failed += n as u64;
                }
            }
        }
        stats.records.fetch_add(written, Ordering::Relaxed);
        if full + failed > 0 {
            stats.lost.fetch_add(full + failed, Ordering::Relaxed);
            if last_complaint.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                error!(
                    "mapping log {}: {} record(s) lost ({full} to full queues, {failed} a sink refused)",
                    path.as_ref().map_or("(IPFIX)".into(), |p| p.display().to_string()),
                    full + failed
                );
                last_complaint = Some(Instant::now());
            }
        }
        if let Some(o) = out.as_mut() {
            if last_sync.elapsed() >= SYNC_EVERY || stopping {
                let _ = o.get_ref().sync_data();
                last_sync = Instant::now();
            }
        }
        if stats.reopen.swap(false, Ordering::AcqRel) {
            if let (Some(p), Some(o)) = (path.as_ref(), out.as_mut()) {
                let _ = o.flush();
                match open(p) {
                    Ok(f) => {
                        let _ = o.get_ref().sync_data();
                        *o = BufWriter::with_capacity(256 * 1024, f);
                        info!("mapping log {} reopened", p.display());
                    }
                    Err(e) => error!("{e}; still writing to the file opened before"),
                }
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
    use crate::xlat::{Mapper, Tuple6};

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
            nat.at(epoch.elapsed().as_millis() as u64).map_6to4(&t, &crate::testpkt::PLAIN).unwrap()
        };
        std::thread::scope(|s| {
            let sinks = Sinks { file: Some((path.clone(), open(&path).unwrap())), ipfix: None };
            let w = s.spawn(|| run(&nat, sinks, &stats, epoch, true));
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
