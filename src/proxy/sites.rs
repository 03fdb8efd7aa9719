//! Which IPv6 backend serves a name, and which backend addresses may be
//! served at all. A name is looked up exactly first, then under the longest
//! `*.suffix` that covers it; a backend address (from the map, or from a
//! name's AAAA records in the driver) is used only when the policy allows
//! it, so the proxy is never open and never a way to the gateway itself.

use crate::addr::net::Net6;
use crate::proxy::sniff::HostName;
use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddrV6};

/// How the backend learns the visitor's address (`client_address` in the
/// configuration: "none", "proxy-v2", "forwarded", "x-forwarded-for").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAddress {
    /// Not at all.
    #[default]
    None,
    /// A PROXY protocol v2 header before the client's bytes.
    ProxyV2,
    /// Plain HTTP: a `Forwarded: for=` field (RFC 7239) in the head.
    Forwarded,
    /// Plain HTTP: an `X-Forwarded-For` field.
    XForwardedFor,
}

/// A site's backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    pub addr: SocketAddrV6,
    pub client_address: ClientAddress,
}

impl std::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotAllowed::Special => {
                "a loopback, unspecified, link-local, multicast or IPv4-mapped address is never a backend"
            }
            NotAllowed::InPool6 => "inside pool6: the visitor would go back out through NAT64",
            NotAllowed::OutsideBackends => "outside every proxy.backends network",
        })
    }
}

/// Why a backend address is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAllowed {
    /// Loopback, unspecified, link-local, multicast, IPv4-mapped or
    /// IPv4-compatible: never a customer's machine.
    Special,
    /// Inside pool6: it would send the visitor back out through NAT64.
    InPool6,
    /// Outside every configured backend prefix.
    OutsideBackends,
}

/// The addresses backends may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendPolicy {
    /// The customers' networks.
    pub prefixes: Vec<Net6>,
    pub pool6: Net6,
}

impl BackendPolicy {
    pub fn check(&self, a: Ipv6Addr) -> Result<(), NotAllowed> {
        // And never in ::/8 (IPv4-compatible) or ::ffff:0:0/96 (IPv4-mapped).
        if !crate::addr::is_server_v6(a) || u128::from(a) >> 120 == 0 || a.to_ipv4_mapped().is_some() {
            return Err(NotAllowed::Special);
        }
        if self.pool6.contains(a) {
            return Err(NotAllowed::InPool6);
        }
        if !self.prefixes.iter().any(|p| p.contains(a)) {
            return Err(NotAllowed::OutsideBackends);
        }
        Ok(())
    }
}

/// A site as the map holds it: its name as configured (lower-cased, `*.`
/// kept for a wildcard), which counters and listings use, and its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub name: String,
    pub backend: Backend,
}

/// Names to backends: exact names and `*.suffix` wildcards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteMap {
    exact: HashMap<String, Site>,
    /// Suffix without the `*.`, with its site.
    wildcard: HashMap<String, Site>,
}

impl SiteMap {
    /// Add `name` (`www.example`, or `*.example` for every name under
    /// `example`, not `example` itself). False when the name is malformed.
    pub fn insert(&mut self, name: &str, b: Backend) -> bool {
        let (suffix, map, star) = match name.strip_prefix("*.") {
            Some(s) => (s, &mut self.wildcard, "*."),
            None => (name, &mut self.exact, ""),
        };
        match HostName::parse(suffix.as_bytes()) {
            Some(h) => {
                let key = h.as_str().to_string();
                map.insert(key.clone(), Site { name: format!("{star}{key}"), backend: b });
                true
            }
            None => false,
        }
    }

    /// The backend for `name`: an exact entry, else the longest wildcard
    /// suffix that covers it.
    pub fn lookup(&self, name: &HostName) -> Option<&Site> {
        let n = name.as_str();
        if let Some(b) = self.exact.get(n) {
            return Some(b);
        }
        // Each dot, left to right, starts a longer-to-shorter suffix.
        n.match_indices('.').find_map(|(i, _)| self.wildcard.get(&n[i + 1..]))
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every site, exact names first.
    pub fn sites(&self) -> impl Iterator<Item = &Site> {
        self.exact.values().chain(self.wildcard.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(port: u16) -> Backend {
        Backend {
            addr: SocketAddrV6::new("2001:db8:100::1".parse().unwrap(), port, 0, 0),
            client_address: ClientAddress::None,
        }
    }

    fn h(s: &str) -> HostName {
        HostName::parse(s.as_bytes()).unwrap()
    }

    // Issue 19: exact names first, then the longest wildcard suffix; a
    // wildcard covers names below it, not the name itself; names compare
    // without case.
    #[test]
    fn exact_then_longest_wildcard() {
        let mut m = SiteMap::default();
        assert!(m.insert("www.example", be(1)));
        assert!(m.insert("*.example", be(2)));
        assert!(m.insert("*.shop.example", be(3)));
        assert!(m.insert("Mixed.Example", be(4)));
        assert!(!m.insert("*.", be(9)) && !m.insert("bad_name", be(9)) && !m.insert("a.*.example", be(9)));
        assert_eq!(m.lookup(&h("www.example")).unwrap().backend.addr.port(), 1);
        assert_eq!(m.lookup(&h("blog.example")).unwrap().backend.addr.port(), 2);
        assert_eq!(m.lookup(&h("a.b.shop.example")).unwrap().backend.addr.port(), 3);
        assert_eq!(m.lookup(&h("mixed.example")).unwrap().backend.addr.port(), 4);
        // Counted under the name as configured.
        assert_eq!(m.lookup(&h("x.shop.example")).unwrap().name, "*.shop.example");
        assert!(m.lookup(&h("example")).is_none());
        assert!(m.lookup(&h("other.test")).is_none());
    }

    // Issue 19: never an open proxy, never a path to the gateway's own
    // services, loopback, link-local or pool6-synthesised addresses.
    #[test]
    fn backend_addresses_only_in_customer_networks() {
        let p = BackendPolicy {
            prefixes: vec!["2001:db8:100::/48".parse().unwrap()],
            pool6: "2001:db8:64::/96".parse().unwrap(),
        };
        assert_eq!(p.check("2001:db8:100::5".parse().unwrap()), Ok(()));
        for (a, why) in [
            ("::1", NotAllowed::Special),
            ("::", NotAllowed::Special),
            ("::ffff:192.0.2.1", NotAllowed::Special),
            ("fe80::1", NotAllowed::Special),
            ("ff02::1", NotAllowed::Special),
            ("2001:db8:64::c000:201", NotAllowed::InPool6),
            ("2001:db8:200::1", NotAllowed::OutsideBackends),
        ] {
            assert_eq!(p.check(a.parse().unwrap()), Err(why), "{a}");
        }
        // A customer prefix that would cover pool6 still does not open it.
        let wide = BackendPolicy { prefixes: vec!["2001:db8::/32".parse().unwrap()], ..p };
        assert_eq!(wide.check("2001:db8:64::c000:201".parse().unwrap()), Err(NotAllowed::InPool6));
    }
}
