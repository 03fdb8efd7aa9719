//! pool4 entries in the file (RFC 6146 3.5.1.1): an address or network as
//! a string, or a table that adds per-protocol port ranges (to share an
//! address with other services, or split one between gateways) and the
//! client prefix the addresses are for (per-customer pools):
//!
//! ```toml
//! pool4 = [
//!     "203.0.113.0/28",
//!     { net = "198.51.100.7", tcp = "1024-65535", udp = "1024-65535", icmp = "0-65535" },
//!     { net = "198.51.100.8/30", clients = "2001:db8:a::/48" },
//! ]
//! ```

use super::Text;
use crate::addr::{Net4, Net6};
use crate::nat::{PoolAddr, PoolGroup, PortRange, Proto};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// A pool4 network: an IPv4 address or network, /16 to /32, host bits clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolNet(pub Net4);

/// The shortest pool4 prefix one entry may have (65536 addresses).
pub const POOL4_MIN_LEN: u8 = 16;

impl PoolNet {
    /// Every address of the entry.
    pub fn addrs(&self) -> impl Iterator<Item = Ipv4Addr> {
        self.0.addrs()
    }
}

impl FromStr for PoolNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let n: Net4 = s.parse().map_err(|e: crate::addr::NetError| e.to_string())?;
        if n.len < POOL4_MIN_LEN {
            return Err(format!("'{s}': pool4 prefix length must be {POOL4_MIN_LEN} to 32"));
        }
        n.network(s).map(PoolNet).map_err(|e| e.to_string())
    }
}

impl fmt::Display for PoolNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One pool4 entry: the network, its port ranges (TCP, UDP, ICMP
/// identifiers; `None` is the default: 1-65535, 1-65535, 0-65535) and the
/// clients it is for (`None`: every client not served by a pool of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolEntry {
    pub net: PoolNet,
    pub ports: [Option<PortRange>; 3],
    pub clients: Option<Net6>,
}

impl From<PoolNet> for PoolEntry {
    fn from(net: PoolNet) -> Self {
        PoolEntry { net, ports: [None; 3], clients: None }
    }
}

impl PoolEntry {
    /// The entry's addresses, each with its port ranges.
    pub fn pool_addrs(&self) -> impl Iterator<Item = PoolAddr> + '_ {
        self.net.addrs().map(|a| {
            let mut p = PoolAddr::new(a);
            for (r, set) in p.ports.iter_mut().zip(self.ports) {
                if let Some(set) = set {
                    *r = set;
                }
            }
            p
        })
    }

    fn is_short(&self) -> bool {
        self.ports == [None; 3] && self.clients.is_none()
    }
}

impl fmt::Display for PoolEntry {
    /// The entry as `nat64ctl stats` lists it: `198.51.100.7/32 tcp 1024-65535 ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.net)?;
        for (p, r) in Proto::ALL.iter().zip(self.ports) {
            if let Some(r) = r {
                write!(f, " {} {r}", p.label())?;
            }
        }
        if let Some(c) = self.clients {
            write!(f, " for {c}")?;
        }
        Ok(())
    }
}

/// The table form's keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    net: Text<PoolNet>,
    tcp: Option<Text<PortRange>>,
    udp: Option<Text<PortRange>>,
    icmp: Option<Text<PortRange>>,
    clients: Option<Text<Net6>>,
}

impl<'de> Deserialize<'de> for PoolEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PoolEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "an IPv4 address or network, or a table { net = ..., tcp/udp/icmp = \"LO-HI\", clients = ... }",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<PoolEntry, E> {
                s.parse::<PoolNet>().map(PoolEntry::from).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<PoolEntry, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(m))?;
                Ok(PoolEntry {
                    net: t.net.0,
                    ports: [t.tcp.map(|r| r.0), t.udp.map(|r| r.0), t.icmp.map(|r| r.0)],
                    clients: t.clients.map(|c| c.0),
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for PoolEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_short() {
            return s.collect_str(&self.net);
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("net", &self.net.to_string())?;
        for (p, r) in Proto::ALL.iter().zip(self.ports) {
            if let Some(r) = r {
                m.serialize_entry(p.label(), &r.to_string())?;
            }
        }
        if let Some(c) = self.clients {
            m.serialize_entry("clients", &c.to_string())?;
        }
        m.end()
    }
}

/// The NAT's address groups from the entries: one group per client prefix
/// (longest prefix first, so the most specific pool serves a client), then
/// the entries for everyone else.
pub fn groups(entries: &[PoolEntry]) -> Vec<PoolGroup> {
    let mut prefixes: Vec<Net6> = vec![];
    for c in entries.iter().filter_map(|e| e.clients) {
        if !prefixes.contains(&c) {
            prefixes.push(c);
        }
    }
    prefixes.sort_by_key(|p| std::cmp::Reverse(p.len));
    let group = |clients: Option<Net6>| PoolGroup {
        clients,
        addrs: entries.iter().filter(|e| e.clients == clients).flat_map(|e| e.pool_addrs()).collect(),
    };
    let mut g: Vec<PoolGroup> = prefixes.into_iter().map(|p| group(Some(p))).collect();
    if entries.iter().any(|e| e.clients.is_none()) {
        g.push(group(None));
    }
    g
}

/// Two entries whose networks share an address, if any (issue 18: two
/// entries for one address would hand one transport address to two flows).
pub fn overlap(entries: &[PoolEntry]) -> Option<(PoolNet, PoolNet)> {
    let span = |e: &PoolEntry| {
        let lo = u32::from(e.net.0.addr) as u64;
        (lo, lo + e.net.0.size() - 1, e.net)
    };
    let mut v: Vec<_> = entries.iter().map(span).collect();
    v.sort_by_key(|s| (s.0, s.1));
    v.windows(2).find(|w| w[1].0 <= w[0].1).map(|w| (w[0].2, w[1].2))
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    // RFC 6146 3.5.1.1: pool4 is addresses with port ranges per protocol;
    // the file writes an entry as a string, or as a table with ranges and
    // the clients it is for. Both forms parse, show back and reach the NAT.
    #[test]
    fn rfc6146_3_5_1_1_port_ranges_in_the_file() {
        let src = r#"pool4 = ["203.0.113.0/30", { net = "198.51.100.7", tcp = "1024-2047", udp = "5000" },
                      { net = "198.51.100.8/31", clients = "2001:db8:a::/48", icmp = "0-99" }]"#;
        let c = Config::parse(src, "t.toml").unwrap();
        assert_eq!(c.pool4.len(), 3);
        assert_eq!(c.pool4[1].ports[0], Some(PortRange { lo: 1024, hi: 2047 }));
        assert_eq!(c.pool4[1].ports[1], Some(PortRange { lo: 5000, hi: 5000 }));
        assert_eq!(c.pool4[1].to_string(), "198.51.100.7/32 tcp 1024-2047 udp 5000-5000");
        assert_eq!(Config::parse(&c.to_toml(), "shown").unwrap(), c, "nat64ctl config shows what parses back");
        let n = c.nat_config();
        assert_eq!(n.pool4.len(), 2, "the customer's group, then everyone else's");
        assert_eq!(n.pool4[0].clients.map(|c| c.to_string()).as_deref(), Some("2001:db8:a::/48"));
        assert_eq!(n.pool4[0].addrs.len(), 2);
        assert_eq!(
            n.pool4[0].addrs[0].ports,
            [PortRange { lo: 1, hi: 65535 }, PortRange { lo: 1, hi: 65535 }, PortRange { lo: 0, hi: 99 }]
        );
        let shared = &n.pool4[1].addrs[4];
        assert_eq!(
            (shared.addr, shared.ports[0], shared.ports[1]),
            ("198.51.100.7".parse().unwrap(), PortRange { lo: 1024, hi: 2047 }, PortRange { lo: 5000, hi: 5000 })
        );
        assert_eq!(shared.ports[2], PortRange::ALL, "unset: the default range");
    }

    // Bad entries name the file, line and key; so do overlapping ones
    // (issue 18: overlapping pool4 entries hijack flows).
    #[test]
    fn bad_and_overlapping_entries_are_refused() {
        let e = Config::parse("pool4 = [{ net = \"198.51.100.7\", tcp = \"2000-1000\" }]\n", "t.toml").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("pool4")), "{e}");
        assert!(e.message.contains("empty"), "{e}");
        let e = Config::parse("pool4 = [{ net = \"198.51.100.7\", sctp = \"1-2\" }]\n", "t.toml").unwrap_err();
        assert!(e.message.contains("sctp"), "{e}");
        for dup in [
            r#"["203.0.113.0/28", "203.0.113.0/28"]"#,
            r#"["203.0.113.0/28", "203.0.113.15"]"#,
            r#"["203.0.113.8/29", { net = "203.0.113.0/24", udp = "1-9" }]"#,
        ] {
            let e = Config::parse(&format!("\n\npool4 = {dup}\n"), "t.toml").unwrap_err();
            assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("pool4")), "{e}");
            assert!(e.message.contains("overlap"), "{e}");
        }
        assert!(
            Config::parse(r#"pool4 = ["203.0.113.0/28", "203.0.113.16/28"]"#, "t.toml").is_ok(),
            "adjacent is fine"
        );
    }
}
