//! Prometheus' own tools check what nat64d exposes and ships (issue 17):
//! `promtool check metrics` on the exposition text (naming, units,
//! HELP/TYPE), and `promtool test rules` on the alerting rules in
//! `deploy/prometheus/` with their unit tests. Debian package prometheus.

use nat64d::daemon::report::StatsReport;
use std::io::Write;
use std::process::{Command, Stdio};

fn promtool() -> bool {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return true;
    }
    assert!(std::env::var_os("NAT64D_REQUIRE_PEERS").is_none(), "NAT64D_REQUIRE_PEERS is set but promtool is missing");
    eprintln!("promtool: SKIPPED: no promtool (apt-get install prometheus)");
    false
}

/// `promtool check metrics` on `text`: its complaints, empty when clean.
pub fn check_metrics(text: &str) -> String {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = p.wait_with_output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)).trim().to_string()
}

// Every metric family the report can expose, with DNS64 and the mapping
// log on so that their families appear too.
#[test]
fn promtool_finds_nothing_to_complain_about() {
    if !promtool() {
        return;
    }
    let r = StatsReport::example();
    let text = r.prometheus();
    assert!(text.contains("nat64d_build_info{version=\""), "{text}");
    // Issue 20: the AF_XDP families are in the text promtool checks.
    assert!(text.contains("nat64d_xdp_rx_frames_total 13") && text.contains("nat64d_dataplane_info{"), "{text}");
    let complaints = check_metrics(&text);
    assert!(complaints.is_empty(), "promtool check metrics:\n{complaints}");
}

#[test]
fn alerting_rules_pass_their_unit_tests() {
    if !promtool() {
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
    let o = Command::new("promtool").args(["check", "rules", "nat64d-alerts.yml"]).current_dir(dir).output().unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let o =
        Command::new("promtool").args(["test", "rules", "nat64d-alerts.test.yml"]).current_dir(dir).output().unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}
