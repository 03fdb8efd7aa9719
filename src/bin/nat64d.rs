//! The nat64d daemon. The translation core is in the library; the TUN
//! dataplane, configuration and control socket come with the daemon issue
//! (see README "Status"). Until then this binary says so plainly.

use std::process::ExitCode;

const HELP: &str = "\
nat64d: NAT64/DNS64 gateway (RFC 6146 / RFC 7915 / RFC 6052 / RFC 6147)

USAGE: nat64d [--help | --version]

The translation core is built and tested (cargo test); the daemon that runs
it on a TUN device is not written yet. See README.md, section Status.";

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--version" | "-V") => {
            println!("nat64d {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h") => {
            println!("{HELP}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("nat64d: the TUN dataplane is not implemented yet (translation core only); see README.md, section Status");
            ExitCode::from(2)
        }
    }
}
