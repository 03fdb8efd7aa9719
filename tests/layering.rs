//! The sans-IO core stays pure (STYLE.md: "the core never reaches I/O"):
//! no file under the core's modules imports a driver module (config,
//! daemon, dataplane, sys, the DNS64 server) or an I/O facility (sockets,
//! files, processes, a clock of its own, tokio, libc). Test files of the
//! core may use threads to test concurrency, nothing else on the list.
//!
//! A source-level check rather than a workspace split: see README,
//! "Architecture", for why.

use std::path::{Path, PathBuf};

/// The core: whole directories, and the DNS64 files apart from its server.
const CORE_DIRS: &[&str] = &["src/addr", "src/wire", "src/xlat", "src/nat", "src/proxy"];
const CORE_FILES: &[&str] = &["src/dns64/mod.rs", "src/dns64/cache.rs", "src/dns64/wire.rs", "src/counters.rs"];

/// What the core must not name.
const FORBIDDEN: &[&str] = &[
    "crate::config",
    "crate::daemon",
    "crate::dataplane",
    "crate::sys",
    "dns64::server",
    "std::fs",
    "std::process",
    "std::os::",
    "UdpSocket",
    "TcpStream",
    "TcpListener",
    "UnixStream",
    "Instant::now",
    "SystemTime",
    "tokio",
    "libc",
    "std::thread",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn core_imports_no_driver_and_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    for d in CORE_DIRS {
        rust_files(&root.join(d), &mut files);
    }
    files.extend(CORE_FILES.iter().map(|f| root.join(f)));
    assert!(files.len() > 20, "the core's files were found: {files:?}");
    let mut found = vec![];
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let is_test = f.file_name().is_some_and(|n| n == "tests.rs");
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for bad in FORBIDDEN {
                if code.contains(bad) && !(is_test && *bad == "std::thread") {
                    found.push(format!(
                        "{}:{}: {bad}: {}",
                        f.strip_prefix(root).unwrap().display(),
                        i + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "the core reaches out of its layer:\n{}", found.join("\n"));
}
