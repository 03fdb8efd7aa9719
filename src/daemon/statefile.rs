//! The state file on disk: written atomically (a temporary file in the same
//! directory, fsync, rename, fsync of the directory) at a stop and on
//! `nat64ctl snapshot`; read at start, before any packet. A file that
//! cannot be used is set aside (renamed `<file>.bad-<unix time>`) and
//! logged; the daemon then starts empty, never half-restored.

use crate::nat::state::{Restored, State};
use crate::nat::Nat;
use std::io::Write;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Save the NAT's state to `path`; a line for the log.
pub fn save(nat: &Nat, now: u64, path: &Path) -> Result<String, String> {
    let t = Instant::now();
    let st = nat.snapshot(now, wall_ms());
    let bytes = st.encode();
    let p = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write the state file {p}: {e}")
    })?;
    Ok(format!(
        "state saved to {p}: {} BIB entries, {} sessions, {} blocks, {} bytes in {} ms",
        st.bibs.len(),
        st.sessions.len(),
        st.blocks.len(),
        bytes.len(),
        t.elapsed().as_millis()
    ))
}

/// Load `path` into `nat` (if it exists); what was restored, or None.
pub fn load(nat: &Nat, now: u64, path: &Path) -> Option<Restored> {
    let p = path.display();
    let t = Instant::now();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!("state file {p}: {e}; starting with an empty table");
            return None;
        }
    };
    let st = match State::decode(&bytes) {
        Ok(s) => s,
        Err(e) => {
            let aside = format!("{}.bad-{}", path.display(), wall_ms() / 1000);
            match std::fs::rename(path, &aside) {
                Ok(()) => warn!("state file {p}: {e}; set aside as {aside}, starting with an empty table"),
                Err(r) => warn!("state file {p}: {e}; cannot set it aside ({r}); starting with an empty table"),
            }
            return None;
        }
    };
    let gap = wall_ms().saturating_sub(st.saved_at);
    let r = nat.restore(&st, now, gap);
    info!(
        "state restored from {p} (saved {:.1} s ago, read in {} ms): {} BIB entries, {} sessions, {} blocks; left out: {} expired meanwhile, {} not in pool4, {} under another pool6, {} placed elsewhere now (shards or port mode changed), {} over a limit",
        gap as f64 / 1000.0,
        t.elapsed().as_millis(),
        r.bibs,
        r.sessions,
        r.blocks,
        r.expired,
        r.not_in_pool4,
        r.pool6_changed,
        r.misplaced,
        r.over_limit
    );
    Some(r)
}
