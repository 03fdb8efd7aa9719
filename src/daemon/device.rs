//! The TUN device's link state and routes, set with the `ip` tool: MTU and
//! up, pool6 and pool4 routed into the device, routes for pool4 networks a
//! reload adds.

use crate::config::{Config, PoolEntry};
use std::process::Command;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run 'ip {}': {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("'ip {}' failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Bring the device up with its MTU and route pool6 and pool4 into it.
pub fn setup(name: &str, cfg: &Config) -> Result<(), String> {
    // No link-local address on the TUN device, so the kernel sends no MLD or
    // router solicitations into it; best effort (older kernels lack the knob).
    let _ = ip(&["link", "set", "dev", name, "addrgenmode", "none"]);
    ip(&["link", "set", "dev", name, "mtu", &cfg.tun.mtu.to_string(), "up"])?;
    ip(&["-6", "route", "replace", &cfg.pool6.to_string(), "dev", name])?;
    route_pool4(name, &cfg.pool4)
}

/// Packets the kernel dropped at the device's queue (routed into the TUN
/// while its queue was full, before nat64d read them): the device's TX
/// dropped counter.
pub fn queue_drops(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/statistics/tx_dropped")).ok()?.trim().parse().ok()
}

/// Route pool4 networks into the device.
pub fn route_pool4<'a>(name: &str, nets: impl IntoIterator<Item = &'a PoolEntry>) -> Result<(), String> {
    for e in nets {
        ip(&["-4", "route", "replace", &e.net.to_string(), "dev", name])?;
    }
    Ok(())
}
