//! What a reload may change. Every key needs a restart unless it is listed
//! in [`RELOADABLE`] (so a new key is safe by default); the decision compares
//! whole sections of the old and new configuration as the file spells them,
//! and names the section (or, where a section mixes both kinds, the key).

use super::Config;
use serde_json::Value;

/// Keys (or whole sections) that a reload applies to the running daemon.
pub const RELOADABLE: &[&str] = &[
    "pool4",
    "static_bib",
    "nat.drop_external_tcp",
    "nat.timeouts",
    "nat.limits",
    "dns64.upstream",
    "dns64.prefixes",
    "dns64.exclude_aaaa",
    "dns64.exclude_a",
    "dns64.allow",
    "dns64.timeout_ms",
    // The relay's map, policy, timeouts and limits (its sockets need a restart).
    "proxy.backends",
    "proxy.client_address",
    "proxy.resolve",
    "proxy.first_bytes_timeout_ms",
    "proxy.connect_timeout_ms",
    "proxy.idle_timeout",
    "proxy.max_connections",
    "proxy.per_client",
    "proxy.site",
];

fn reloadable(path: &str) -> bool {
    RELOADABLE.iter().any(|r| path == *r || path.strip_prefix(r).is_some_and(|rest| rest.starts_with('.')))
}

/// True when some reloadable key lies inside `path` (the section mixes both kinds).
fn holds_reloadable(path: &str) -> bool {
    RELOADABLE.iter().any(|r| r.strip_prefix(path).is_some_and(|rest| rest.starts_with('.')))
}

fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if a == b || reloadable(path) {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if path.is_empty() || holds_reloadable(path) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                diff(&p, x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), out);
            }
        }
        _ => {
            if !out.iter().any(|o| o == path) {
                out.push(path.to_string());
            }
        }
    }
}

impl Config {
    /// Keys (or sections) that differ between `self` and `new` and cannot
    /// change without a restart (the device, the prefix, the table layout,
    /// the sockets), in key order.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<String> {
        let (Ok(a), Ok(b)) = (serde_json::to_value(self), serde_json::to_value(new)) else {
            return vec!["(the configuration cannot be compared)".into()];
        };
        let mut out = vec![];
        diff("", &a, &b, &mut out);
        out
    }
}
