//! nat64d: the NAT64 gateway daemon. The flags are the configuration's
//! overrides ([`nat64d::config::Overrides`]); the rest lives in `nat64d::daemon`.

use clap::Parser;
use nat64d::config::{Config, Overrides};
use std::path::PathBuf;
use std::process::ExitCode;

/// NAT64/DNS64 gateway: RFC 6146 stateful NAT64 with RFC 7915 translation over a TUN device,
/// and an RFC 6147 DNS64 server (--dns64-upstream, or [dns64] in the file).
///
/// Flags override the configuration file; a reload (SIGHUP or `nat64ctl reload`)
/// re-reads the file and applies the flags again.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// TOML configuration file (see systemd/nat64d.toml for every key).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration, print it as the daemon would run it, and exit.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    overrides: Overrides,
}

fn main() -> ExitCode {
    let a = Args::parse();
    if a.check {
        let source = a.config.as_ref().map_or("command line".into(), |p| p.display().to_string());
        let checked =
            Config::load(a.config.as_deref(), &a.overrides).and_then(|c| c.check_runnable(&source).map(|()| c));
        return match checked {
            Ok(c) => {
                print!("{}", c.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("nat64d: {e}");
                ExitCode::from(2)
            }
        };
    }
    ExitCode::from(nat64d::daemon::run(a.config, a.overrides))
}
