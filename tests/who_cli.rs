//! `nat64ctl who` without a daemon (issue 14: offline forensics): from a
//! deterministic configuration (RFC 7422) and from mapping logs, rotated
//! and gzip-compressed ones included.

use std::io::Write;
use std::process::Command;

fn ctl(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_nat64ctl"))
        .args(["--socket", "/nonexistent/nat64d.sock"])
        .args(args)
        .output()
        .expect("run nat64ctl");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nat64d-who-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

// RFC 7422 section 2: the formula answers both ways from the configuration
// alone. 2001:db8:100::/56 of /64 subscribers on three addresses, 512-port
// blocks from 1024 (126 per address): subscriber 5 holds 203.0.113.1
// block 7 (3584-4095); subscriber 130 holds 203.0.113.2's fifth block.
#[test]
fn deterministic_who_from_the_configuration() {
    let d = dir("det");
    let cfg = d.join("nat64d.toml");
    std::fs::write(
        &cfg,
        "pool6 = \"2001:db8:64::/96\"\npool4 = [{ net = \"203.0.113.1\", clients = \"2001:db8:100::/56\" }, { net = \"203.0.113.2/31\", clients = \"2001:db8:200::/56\" }]\n[nat.ports]\nmode = \"deterministic\"\nsubscriber = 64\n",
    )
    .unwrap();
    // The first group has one address for 256 subscribers: refused, with the numbers.
    let (ok, _, err) = ctl(&["who", "203.0.113.1:3600", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && err.contains("needs 3 addresses"), "{err}");
    std::fs::write(
        &cfg,
        "pool6 = \"2001:db8:64::/96\"\npool4 = [{ net = \"203.0.113.0/30\", clients = \"2001:db8:100::/56\" }]\n[nat.ports]\nmode = \"deterministic\"\nsubscriber = 64\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let (ok, out, err) = ctl(&["who", "203.0.113.0:3600", "--proto", "tcp", "--config", c]);
    assert!(ok, "{err}");
    assert!(out.contains("2001:db8:100:5::/64") && out.contains("3584-4095") && out.contains("deterministic"), "{out}");
    let (ok, out, _) = ctl(&["who", "2001:db8:100:82::9", "--proto", "udp", "--config", c]);
    assert!(ok && out.contains("203.0.113.1:") && out.contains("2001:db8:100:82::/64"), "{out}");
    let (ok, _, err) = ctl(&["who", "203.0.113.0:80", "--config", c]);
    assert!(!ok && err.contains("nobody held"), "ports below 1024 are no block: {err}");
    std::fs::remove_dir_all(&d).unwrap();
}

// Issue 14: rotated logs, oldest first, the oldest gzip-compressed: a
// block allocated in the oldest file and released in the newest is found
// between the two; an address never handed out is "nobody"; an IPv4
// address without a port is refused with what to give.
#[test]
fn who_from_rotated_and_compressed_logs() {
    let d = dir("logs");
    let rec = |t: &str, ev: &str, sub: &str| {
        format!("{{\"time\":\"{t}\",\"event\":\"{ev}\",\"proto\":\"udp\",\"subscriber\":\"{sub}\",\"pool4\":\"203.0.113.5\",\"port_lo\":40448,\"port_hi\":40959,\"group\":0}}\n")
    };
    let old = d.join("mapping.jsonl.2.gz");
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&old).unwrap(), flate2::Compression::default());
    gz.write_all(rec("2026-11-30T10:00:00.000Z", "block_allocated", "2001:db8:1::/64").as_bytes()).unwrap();
    gz.finish().unwrap();
    let mid = d.join("mapping.jsonl.1");
    std::fs::write(
        &mid,
        rec("2026-11-30T12:00:00.000Z", "block_allocated", "2001:db8:9::/64")
            .replace("40448", "1024")
            .replace("40959", "1535"),
    )
    .unwrap();
    let new = d.join("mapping.jsonl");
    std::fs::write(&new, rec("2026-12-01T09:00:00.000Z", "block_released", "2001:db8:1::/64")).unwrap();
    let logs = ["--log", old.to_str().unwrap(), "--log", mid.to_str().unwrap(), "--log", new.to_str().unwrap()];
    let ask = |target: &str, at: &str| {
        let mut a = vec!["who", target, "--at", at];
        a.extend_from_slice(&logs);
        ctl(&a)
    };
    let (ok, out, err) = ask("203.0.113.5:40500", "2026-11-30T18:00:00Z");
    assert!(
        ok && out.contains("2001:db8:1::/64")
            && out.contains("from 2026-11-30T10:00:00.000Z until 2026-12-01T09:00:00.000Z"),
        "{out}{err}"
    );
    let (ok, _, err) = ask("203.0.113.5:40500", "2026-12-01T10:00:00Z");
    assert!(!ok && err.contains("nobody held"), "released by then: {err}");
    let (ok, _, err) = ask("203.0.113.5:40500", "2026-11-29T10:00:00Z");
    assert!(!ok && err.contains("unknown") && err.contains("2026-11-30T10:00:00.000Z"), "{err}");
    let (ok, _, err) = ask("203.0.113.5", "2026-11-30T18:00:00Z");
    assert!(!ok && err.contains("give the port"), "{err}");
    let (ok, out, _) = ask("2001:db8:9::1", "2026-12-01T18:00:00Z");
    assert!(ok && out.contains("1024-1535") && out.contains("logs end at"), "still held at the end of the logs: {out}");
    std::fs::remove_dir_all(&d).unwrap();
}
