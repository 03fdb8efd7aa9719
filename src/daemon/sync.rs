//! The sync driver (issue 15): carries [`crate::nat::sync`] records from an
//! active gateway to its standby over TCP, inside Noise
//! (`Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s`, the `snow` crate): the
//! pre-shared key authenticates both ends and encrypts everything; a peer
//! without it fails the handshake, gets nothing and is logged.
//!
//! Two threads, neither on the packet path. The server (active) accepts one
//! standby at a time on `[sync] listen`: it switches the tables' change
//! queues on, sends a full snapshot paced at `snapshot_rate`, then every
//! 10 ms the changes queued since, and a heartbeat every 500 ms the standby
//! acknowledges (lag is the time to that acknowledgement). A change lost
//! to a full queue, or more than `queue` changes waiting for a slow peer,
//! starts a new snapshot (a resync, counted), never silent divergence. The
//! fetcher (standby) connects to `[sync] peer`, applies what it receives,
//! and reconnects (then gets a full snapshot) when the active goes silent
//! for 3 s. `nat64ctl sync promote` / `demote` switch the roles at run time.
//!
//! Frames on the wire: a u16 big-endian length, then one Noise message.

use crate::config::{SyncRole, SyncSection};
use crate::nat::sync::{pack, SyncEvent, SyncRec, MAX_MESSAGE};
use crate::nat::Nat;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

const PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Bound into the handshake: a gateway speaking another sync version fails it.
const PROLOGUE: &[u8] = b"nat64d sync 1";
const TICK: Duration = Duration::from_millis(10);
const BEAT: Duration = Duration::from_millis(500);
/// A peer silent this long is taken for dead.
const SILENCE: Duration = Duration::from_secs(3);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Read the pre-shared key: 64 hex digits (whitespace around them ignored).
pub fn read_key(p: &Path) -> Result<[u8; 32], String> {
    let meta = std::fs::metadata(p).map_err(|e| format!("sync key {}: {e}", p.display()))?;
    if !meta.is_file() || meta.len() > 1024 {
        return Err(format!("sync key {}: not a small regular file", p.display()));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        // Like ssh with a private key: a secret others can read is refused.
        return Err(format!("sync key {}: mode {mode:04o} lets others read it; chmod 600 it", p.display()));
    }
    let text = std::fs::read_to_string(p).map_err(|e| format!("sync key {}: {e}", p.display()))?;
    let hex = text.trim();
    let bad = || format!("sync key {}: not 64 hex digits (make one with `openssl rand -hex 32`)", p.display());
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(k)
}

/// What `nat64ctl sync`, `stats` and the metrics show.
#[derive(Debug, Default)]
pub struct SyncStats {
    pub connected: AtomicBool,
    /// Records sent (active) or applied (standby).
    pub records: AtomicU64,
    /// Records a standby could not hold (another pool4, limits, its own flows).
    pub conflicts: AtomicU64,
    /// Changes lost to full queues (each starts a resync).
    pub lost: AtomicU64,
    /// Full snapshots sent or received.
    pub snapshots: AtomicU64,
    /// Snapshots started because of a loss or an overfull queue.
    pub resyncs: AtomicU64,
    /// Changes waiting to be sent now.
    pub queue: AtomicU64,
    /// Time from a heartbeat to its acknowledgement (active) or from the
    /// active's clock to this one (standby), ms.
    pub lag_ms: AtomicU64,
    /// Wall clock (UTC ms) of the last word from the peer.
    pub last_contact: AtomicU64,
    pub handshake_failures: AtomicU64,
    pub disconnects: AtomicU64,
    /// The last full snapshot: sessions, and ms it took.
    pub snapshot_sessions: AtomicU64,
    pub snapshot_ms: AtomicU64,
}

/// The sync side of a gateway.
pub struct Sync {
    role: AtomicU8,
    pub stats: SyncStats,
    cfg: SyncSection,
    key: [u8; 32],
    params: snow::params::NoiseParams,
    peer_now: Mutex<Option<SocketAddr>>,
    stop: AtomicBool,
}

fn role_of(b: u8) -> SyncRole {
    match b {
        1 => SyncRole::Active,
        2 => SyncRole::Standby,
        _ => SyncRole::Off,
    }
}

fn role_byte(r: SyncRole) -> u8 {
    match r {
        SyncRole::Off => 0,
        SyncRole::Active => 1,
        SyncRole::Standby => 2,
    }
}

/// The status `nat64ctl sync` prints and `stats` embeds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncReport {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    pub connected: bool,
    /// The peer connected now (its address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_to: Option<String>,
    pub records: u64,
    pub conflicts: u64,
    pub lost: u64,
    pub snapshots: u64,
    pub resyncs: u64,
    pub queue: u64,
    pub lag_ms: u64,
    /// Milliseconds since the peer was last heard from (None: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact_ms: Option<u64>,
    pub handshake_failures: u64,
    pub disconnects: u64,
    pub snapshot_sessions: u64,
    pub snapshot_ms: u64,
}

impl SyncReport {
    /// The lines `nat64ctl sync` and `nat64ctl stats` print.
    pub fn render(&self) -> String {
        let mut o = format!("sync: {}", self.role);
        match (&self.connected_to, self.role.as_str()) {
            (Some(p), "active") => o += &format!(", serving standby {p}"),
            (Some(p), _) => o += &format!(", following the active at {p}"),
            (None, "active") => {
                o += &format!(", no standby connected (listening on {})", self.listen.as_deref().unwrap_or("-"))
            }
            (None, _) => o += &format!(", not connected (peer {})", self.peer.as_deref().unwrap_or("-")),
        }
        o += "\n";
        let contact = self.last_contact_ms.map_or("never".to_string(), |ms| format!("{:.1} s ago", ms as f64 / 1000.0));
        o += &format!(
            "  records {}  conflicts {}  lost {}  snapshots {}  resyncs {}  queue {}  lag {} ms  last contact {}\n",
            self.records, self.conflicts, self.lost, self.snapshots, self.resyncs, self.queue, self.lag_ms, contact
        );
        o += &format!(
            "  last snapshot {} sessions in {} ms  handshake failures {}  disconnects {}\n",
            self.snapshot_sessions, self.snapshot_ms, self.handshake_failures, self.disconnects
        );
        o
    }
}

impl Sync {
    pub fn new(cfg: &SyncSection) -> Result<Sync, String> {
        let key = match &cfg.key_file {
            Some(p) => read_key(p)?,
            None => return Err("[sync] key_file is not set".into()),
        };
        let params = PATTERN.parse().map_err(|e| format!("sync: Noise pattern {PATTERN}: {e}"))?;
        Ok(Sync {
            role: AtomicU8::new(role_byte(cfg.role)),
            stats: SyncStats::default(),
            cfg: cfg.clone(),
            key,
            params,
            peer_now: Mutex::new(None),
            stop: AtomicBool::new(false),
        })
    }

    pub fn role(&self) -> SyncRole {
        role_of(self.role.load(Ordering::Acquire))
    }

    /// Become active (promote) or standby (demote); the NAT follows. A line for the log.
    pub fn set_role(&self, nat: &Nat, role: SyncRole, now: u64) -> Result<String, String> {
        if role == SyncRole::Standby && self.cfg.peer.is_none() {
            return Err("cannot demote: [sync] peer is not set (where would the state come from?)".into());
        }
        let was = role_of(self.role.swap(role_byte(role), Ordering::AcqRel));
        nat.set_standby(role == SyncRole::Standby, now);
        if was == role {
            return Ok(format!("already {}", role.label()));
        }
        let m = format!("sync role {} -> {}", was.label(), role.label());
        info!("{m}");
        Ok(m)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub fn report(&self) -> SyncReport {
        let s = &self.stats;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let last = g(&s.last_contact);
        SyncReport {
            role: self.role().label().into(),
            listen: self.cfg.listen.map(|a| a.to_string()),
            peer: self.cfg.peer.map(|a| a.to_string()),
            connected: s.connected.load(Ordering::Relaxed),
            connected_to: self.peer_now.lock().unwrap_or_else(|e| e.into_inner()).map(|a| a.to_string()),
            records: g(&s.records),
            conflicts: g(&s.conflicts),
            lost: g(&s.lost),
            snapshots: g(&s.snapshots),
            resyncs: g(&s.resyncs),
            queue: g(&s.queue),
            lag_ms: g(&s.lag_ms),
            last_contact_ms: (last > 0).then(|| wall_ms().saturating_sub(last)),
            handshake_failures: g(&s.handshake_failures),
            disconnects: g(&s.disconnects),
            snapshot_sessions: g(&s.snapshot_sessions),
            snapshot_ms: g(&s.snapshot_ms),
        }
    }

    fn connected(&self, to: Option<SocketAddr>) {
        self.stats.connected.store(to.is_some(), Ordering::Relaxed);
        *self.peer_now.lock().unwrap_or_else(|e| e.into_inner()) = to;
        if to.is_none() {
            self.stats.queue.store(0, Ordering::Relaxed);
        }
    }

    fn builder(&self) -> snow::Builder<'_> {
        snow::Builder::new(self.params.clone()).prologue(PROLOGUE).psk(0, &self.key)
    }
}

/// A Noise session over one TCP stream, framed.
struct Link {
    s: TcpStream,
    t: snow::TransportState,
    rbuf: Vec<u8>,
    msg: Vec<u8>,
    plain: Vec<u8>,
}

fn write_frame(s: &mut TcpStream, m: &[u8]) -> io::Result<()> {
    let mut f = Vec::with_capacity(m.len() + 2);
    f.extend_from_slice(&(m.len() as u16).to_be_bytes());
    f.extend_from_slice(m);
    s.write_all(&f)
}

/// Take one whole frame off the front of `rbuf`, if there is one.
fn take_frame(rbuf: &mut Vec<u8>) -> Option<Vec<u8>> {
    if rbuf.len() < 2 {
        return None;
    }
    let n = u16::from_be_bytes([rbuf[0], rbuf[1]]) as usize;
    if rbuf.len() < 2 + n {
        return None;
    }
    let f = rbuf[2..2 + n].to_vec();
    rbuf.drain(..2 + n);
    Some(f)
}

/// Read until a whole frame is there (blocking, under the socket's timeout).
fn read_frame(s: &mut TcpStream, rbuf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut b = [0u8; 4096];
    loop {
        if let Some(f) = take_frame(rbuf) {
            return Ok(f);
        }
        let n = s.read(&mut b)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        rbuf.extend_from_slice(&b[..n]);
    }
}

fn noise_err(e: snow::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl Link {
    fn handshake(sync: &Sync, mut s: TcpStream, initiator: bool) -> io::Result<Link> {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        s.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let b = sync.builder();
        let mut hs = if initiator { b.build_initiator() } else { b.build_responder() }.map_err(noise_err)?;
        let (mut msg, mut plain, mut rbuf) = (vec![0u8; 65535], vec![0u8; 65535], Vec::new());
        if initiator {
            let n = hs.write_message(&[], &mut msg).map_err(noise_err)?;
            write_frame(&mut s, &msg[..n])?;
            let f = read_frame(&mut s, &mut rbuf)?;
            hs.read_message(&f, &mut plain).map_err(noise_err)?;
        } else {
            let f = read_frame(&mut s, &mut rbuf)?;
            hs.read_message(&f, &mut plain).map_err(noise_err)?;
            let n = hs.write_message(&[], &mut msg).map_err(noise_err)?;
            write_frame(&mut s, &msg[..n])?;
        }
        let t = hs.into_transport_mode().map_err(noise_err)?;
        Ok(Link { s, t, rbuf, msg, plain })
    }

    fn send(&mut self, body: &[u8]) -> io::Result<()> {
        let n = self.t.write_message(body, &mut self.msg).map_err(noise_err)?;
        write_frame(&mut self.s, &self.msg[..n])
    }

    fn send_recs(&mut self, recs: impl IntoIterator<Item = SyncRec>) -> io::Result<()> {
        let mut buf = Vec::with_capacity(MAX_MESSAGE);
        pack(recs, &mut buf, |b| self.send(b))
    }

    /// Read what has arrived (waiting up to the socket's read timeout) and
    /// decode every whole frame into `out`. Ok(false) when nothing came.
    fn poll(&mut self, out: &mut Vec<SyncRec>) -> io::Result<bool> {
        let mut b = [0u8; 65536];
        match self.s.read(&mut b) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => self.rbuf.extend_from_slice(&b[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(false),
            Err(e) => return Err(e),
        }
        let mut part = Vec::new();
        while let Some(f) = take_frame(&mut self.rbuf) {
            let n = self.t.read_message(&f, &mut self.plain).map_err(noise_err)?;
            SyncRec::decode_all(&self.plain[..n], &mut part)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            out.append(&mut part);
        }
        Ok(true)
    }
}

/// Why a served connection ended.
enum End {
    Role,
    Io(io::Error),
    Silent,
}

/// The active's side: accept standbys on `listener` while active.
pub fn serve(sync: Arc<Sync>, st: Arc<super::State>, listener: TcpListener) {
    let (nat, epoch) = (&st.nat, st.epoch);
    if listener.set_nonblocking(true).is_err() {
        warn!("sync: cannot poll the listening socket; not serving standbys");
        return;
    }
    while !sync.stopping() {
        let (s, from) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => {
                warn!("sync: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if sync.role() != SyncRole::Active {
            info!("sync: {from} connected while this gateway is {}; closed", sync.role().label());
            continue;
        }
        let _ = s.set_nonblocking(false);
        let mut link = match Link::handshake(&sync, s, false) {
            Ok(l) => l,
            Err(e) => {
                sync.stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                warn!("sync: {from} failed the handshake ({e}): not holding the key, or not a nat64d; nothing sent");
                continue;
            }
        };
        info!("sync: standby {from} connected; sending a full snapshot");
        sync.connected(Some(from));
        let why = serve_one(&sync, nat, epoch, &mut link);
        nat.set_sync_events(false);
        sync.connected(None);
        sync.stats.disconnects.fetch_add(1, Ordering::Relaxed);
        match why {
            End::Role => info!("sync: no longer active; standby {from} let go"),
            End::Io(e) => warn!("sync: standby {from} lost: {e}"),
            End::Silent => warn!("sync: standby {from} silent for {} s; let go", SILENCE.as_secs()),
        }
    }
}

fn serve_one(sync: &Sync, nat: &Nat, epoch: Instant, link: &mut Link) -> End {
    let now = || epoch.elapsed().as_millis() as u64;
    if let Err(e) = link.s.set_read_timeout(Some(Duration::from_millis(1))) {
        return End::Io(e);
    }
    let cap = sync.cfg.queue;
    let mut pending: Vec<SyncEvent> = Vec::with_capacity(cap.min(1 << 16));
    let (mut seq, mut beats): (u64, std::collections::VecDeque<(u64, Instant)>) = (0, Default::default());
    let mut acks = Vec::new();
    'resync: loop {
        // Changes from here on queue; the snapshot is taken after, so
        // replaying them over it ends in the newest state.
        nat.set_sync_events(true);
        pending.clear();
        let t0 = Instant::now();
        let snap = nat.sync_snapshot(now());
        let total = snap.len() as u64;
        if let Err(e) = link.send_recs([SyncRec::Begin { sessions: total }]) {
            return End::Io(e);
        }
        let per_msg = MAX_MESSAGE / crate::nat::sync::UP_LEN;
        for (i, chunk) in snap.chunks(per_msg).enumerate() {
            if let Err(e) = link.send_recs(chunk.iter().map(|s| SyncRec::Up(*s))) {
                return End::Io(e);
            }
            sync.stats.records.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            // Paced: at most snapshot_rate sessions a second.
            let due = Duration::from_secs_f64(((i + 1) * per_msg) as f64 / sync.cfg.snapshot_rate as f64);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
            let lost = nat.drain_sync(&mut pending);
            if lost > 0 || pending.len() > cap {
                sync.stats.lost.fetch_add(lost, Ordering::Relaxed);
                sync.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                warn!("sync: {lost} changes lost, {} waiting, during a snapshot; starting again", pending.len());
                continue 'resync;
            }
            if sync.role() != SyncRole::Active || sync.stopping() {
                return End::Role;
            }
        }
        if let Err(e) = link.send_recs([SyncRec::End { sessions: total }]) {
            return End::Io(e);
        }
        sync.stats.snapshots.fetch_add(1, Ordering::Relaxed);
        sync.stats.snapshot_sessions.store(total, Ordering::Relaxed);
        sync.stats.snapshot_ms.store(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
        info!("sync: snapshot of {total} sessions sent in {} ms; now sending changes", t0.elapsed().as_millis());
        let mut next_beat = Instant::now();
        let mut last_word = Instant::now();
        loop {
            if sync.role() != SyncRole::Active || sync.stopping() {
                return End::Role;
            }
            let lost = nat.drain_sync(&mut pending);
            sync.stats.queue.store(pending.len() as u64, Ordering::Relaxed);
            if lost > 0 || pending.len() > cap {
                sync.stats.lost.fetch_add(lost, Ordering::Relaxed);
                sync.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                warn!("sync: {lost} changes lost to full queues ({} waiting); resynchronising", pending.len());
                continue 'resync;
            }
            if !pending.is_empty() {
                let n = pending.len() as u64;
                let recs = pending.drain(..).map(|e| match e {
                    SyncEvent::Up(s) => SyncRec::Up(s),
                    SyncEvent::Gone(s) => SyncRec::Gone(s),
                });
                if let Err(e) = link.send_recs(recs) {
                    return End::Io(e);
                }
                sync.stats.records.fetch_add(n, Ordering::Relaxed);
            }
            if Instant::now() >= next_beat {
                seq += 1;
                if let Err(e) = link.send_recs([SyncRec::Beat { seq, wall_ms: wall_ms() }]) {
                    return End::Io(e);
                }
                beats.push_back((seq, Instant::now()));
                if beats.len() > 64 {
                    beats.pop_front();
                }
                next_beat += BEAT;
            }
            match link.poll(&mut acks) {
                Ok(true) => {
                    last_word = Instant::now();
                    sync.stats.last_contact.store(wall_ms(), Ordering::Relaxed);
                }
                Ok(false) => {}
                Err(e) => return End::Io(e),
            }
            for a in acks.drain(..) {
                if let SyncRec::Ack { seq: s } = a {
                    while let Some(&(b, at)) = beats.front() {
                        if b > s {
                            break;
                        }
                        beats.pop_front();
                        if b == s {
                            sync.stats.lag_ms.store(at.elapsed().as_millis() as u64, Ordering::Relaxed);
                        }
                    }
                }
            }
            if last_word.elapsed() > SILENCE {
                return End::Silent;
            }
            std::thread::sleep(TICK);
        }
    }
}

/// The standby's side: while standby, fetch the active's state from `peer`.
pub fn fetch(sync: Arc<Sync>, st: Arc<super::State>) {
    let (nat, epoch) = (&st.nat, st.epoch);
    let now = || epoch.elapsed().as_millis() as u64;
    let Some(peer) = sync.cfg.peer else { return };
    let mut warned = false;
    while !sync.stopping() {
        if sync.role() != SyncRole::Standby {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let s = match TcpStream::connect_timeout(&peer, Duration::from_secs(1)) {
            Ok(s) => s,
            Err(e) => {
                if !warned {
                    warn!("sync: cannot reach the active at {peer}: {e}; retrying every second");
                    warned = true;
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let mut link = match Link::handshake(&sync, s, true) {
            Ok(l) => l,
            Err(e) => {
                sync.stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                warn!("sync: handshake with {peer} failed ({e}): is the key the same on both? is it active?");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        warned = false;
        info!("sync: connected to the active at {peer}");
        sync.connected(Some(peer));
        let why = fetch_one(&sync, nat, &mut link, &now);
        sync.connected(None);
        sync.stats.disconnects.fetch_add(1, Ordering::Relaxed);
        match why {
            End::Role => info!("sync: no longer standby; left {peer}"),
            End::Io(e) => warn!("sync: link to the active at {peer} lost: {e}; reconnecting"),
            End::Silent => warn!("sync: the active at {peer} silent for {} s; reconnecting", SILENCE.as_secs()),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn fetch_one(sync: &Sync, nat: &Nat, link: &mut Link, now: &dyn Fn() -> u64) -> End {
    if let Err(e) = link.s.set_read_timeout(Some(Duration::from_millis(200))) {
        return End::Io(e);
    }
    let (mut recs, mut last_word) = (Vec::new(), Instant::now());
    let mut snap_start: Option<Instant> = None;
    loop {
        if sync.role() != SyncRole::Standby || sync.stopping() {
            return End::Role;
        }
        match link.poll(&mut recs) {
            Ok(true) => last_word = Instant::now(),
            Ok(false) if last_word.elapsed() > SILENCE => return End::Silent,
            Ok(false) => continue,
            Err(e) => return End::Io(e),
        }
        sync.stats.last_contact.store(wall_ms(), Ordering::Relaxed);
        let t = now();
        let mut ack = None;
        for r in recs.drain(..) {
            match r {
                SyncRec::Begin { sessions } => {
                    info!("sync: receiving a full snapshot of {sessions} sessions");
                    snap_start = Some(Instant::now());
                    let _ = nat.apply_sync(&r, t);
                }
                SyncRec::End { sessions } => {
                    let ms = snap_start.take().map_or(0, |s| s.elapsed().as_millis() as u64);
                    sync.stats.snapshots.fetch_add(1, Ordering::Relaxed);
                    sync.stats.snapshot_sessions.store(sessions, Ordering::Relaxed);
                    sync.stats.snapshot_ms.store(ms, Ordering::Relaxed);
                    info!("sync: snapshot of {sessions} sessions applied in {ms} ms; {} held", nat.session_count());
                }
                SyncRec::Beat { seq, wall_ms: at } => {
                    sync.stats.lag_ms.store(wall_ms().saturating_sub(at), Ordering::Relaxed);
                    ack = Some(seq);
                }
                SyncRec::Up(_) | SyncRec::Gone(_) => {
                    sync.stats.records.fetch_add(1, Ordering::Relaxed);
                    if nat.apply_sync(&r, t).is_err() {
                        sync.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                }
                SyncRec::Ack { .. } => {}
            }
        }
        if let Some(seq) = ack {
            if let Err(e) = link.send_recs([SyncRec::Ack { seq }]) {
                return End::Io(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::read_key;
    use std::os::unix::fs::PermissionsExt;

    // Issue 15: the pre-shared key is 64 hex digits in a file only its owner
    // reads; anything else is refused at start with the file named.
    #[test]
    fn the_key_file_is_checked() {
        let dir = std::env::temp_dir().join(format!("nat64d-synckey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("sync.key");
        let write = |text: &str, mode: u32| {
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(&format!("{}\n", "0f".repeat(32)), 0o600);
        assert_eq!(read_key(&p).unwrap(), [0x0f; 32]);
        write(&"0f".repeat(32), 0o644);
        let e = read_key(&p).unwrap_err();
        assert!(e.contains("sync.key") && e.contains("0644"), "{e}");
        write(&"0f".repeat(31), 0o600);
        assert!(read_key(&p).unwrap_err().contains("64 hex digits"));
        write(&"zz".repeat(32), 0o400);
        assert!(read_key(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
