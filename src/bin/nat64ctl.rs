//! nat64ctl: the operator's CLI for a running nat64d (stats, sessions, BIB,
//! reload). It talks to the daemon's control socket, which arrives with the
//! daemon issue; until then it says so plainly.

use std::process::ExitCode;

const HELP: &str = "\
nat64ctl: control a running nat64d

USAGE: nat64ctl [--help | --version]

The control socket (stats, sessions, bib, config, reload) arrives with the
daemon; see README.md, section Status.";

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--version" | "-V") => {
            println!("nat64ctl {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h") => {
            println!("{HELP}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "nat64ctl: no control socket yet: the nat64d daemon is not implemented (see README.md, section Status)"
            );
            ExitCode::from(2)
        }
    }
}
