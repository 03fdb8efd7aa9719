//! nat64d: the NAT64 gateway daemon. The flags are the configuration's
//! overrides ([`nat64d::config::Overrides`]); the rest lives in `nat64d::daemon`.

use clap::Parser;
use nat64d::cli::DaemonArgs as Args;
use nat64d::config::Config;
use std::process::ExitCode;

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
