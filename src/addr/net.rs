//! IP networks (`ADDR/LEN`, or a bare address for one host): the one home
//! for the network types every part of nat64d uses (pool4 entries, client
//! groups, DNS64's exclusion and client lists), with one error type.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a text is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("'{0}' is not an IP address")]
    Address(String),
    #[error("'/{len}': prefix length 0 to {max}")]
    Length { len: String, max: u8 },
    #[error("'{0}' is not an {1} network")]
    Family(String, &'static str),
    #[error("'{text}' has host bits set (the network is {network})")]
    HostBits { text: String, network: String },
}

/// True when `a` lies in `net`/`len` (lengths above 128 count as 128).
pub fn in_net6(a: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = !u128::MAX.checked_shr(len as u32).unwrap_or(0);
    u128::from(a) & mask == u128::from(net) & mask
}

/// True when `a` lies in `net`/`len` (lengths above 32 count as 32).
pub fn in_net4(a: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = !u32::MAX.checked_shr(len as u32).unwrap_or(0);
    u32::from(a) & mask == u32::from(net) & mask
}

/// An IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Net6 {
    pub addr: Ipv6Addr,
    pub len: u8,
}

impl Net6 {
    pub fn contains(&self, a: Ipv6Addr) -> bool {
        in_net6(a, self.addr, self.len)
    }
}

/// An IPv4 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Net4 {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Net4 {
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        in_net4(a, self.addr, self.len)
    }

    /// How many addresses the network holds.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.len.min(32))
    }

    /// Every address of the network, in order.
    pub fn addrs(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.addr);
        (0..self.size()).map(move |i| Ipv4Addr::from(base.wrapping_add(i as u32)))
    }

    /// Refuse an address with host bits set (`203.0.113.1/24`), where only a
    /// network makes sense.
    pub fn network(self, text: &str) -> Result<Self, NetError> {
        let mask = u32::MAX.checked_shl(32 - self.len.min(32) as u32).unwrap_or(0);
        if u32::from(self.addr) & !mask != 0 {
            return Err(NetError::HostBits {
                text: text.to_string(),
                network: format!("{}/{}", Ipv4Addr::from(u32::from(self.addr) & mask), self.len),
            });
        }
        Ok(self)
    }
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub len: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => in_net4(a, n, self.len),
            (IpAddr::V6(n), IpAddr::V6(a)) => in_net6(a, n, self.len),
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        let (a, l) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
        let addr: IpAddr = a.parse().map_err(|_| NetError::Address(a.to_string()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => {
                l.parse::<u8>().ok().filter(|&l| l <= max).ok_or(NetError::Length { len: l.to_string(), max })?
            }
        };
        Ok(IpNet { addr, len })
    }
}

/// `FromStr` through [`IpNet`] (one family only) and `Display` as `ADDR/LEN`.
macro_rules! net_text {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}/{}", self.addr, self.len)
            }
        }
    };
    ($t:ident, $v:ident, $family:literal) => {
        net_text!($t);
        impl FromStr for $t {
            type Err = NetError;
            fn from_str(s: &str) -> Result<Self, NetError> {
                match s.parse::<IpNet>()? {
                    IpNet { addr: IpAddr::$v(addr), len } => Ok($t { addr, len }),
                    _ => Err(NetError::Family(s.to_string(), $family)),
                }
            }
        }
    };
}

net_text!(IpNet);
net_text!(Net6, V6, "IPv6");
net_text!(Net4, V4, "IPv4");

#[cfg(test)]
mod tests {
    use super::*;

    // Network membership at the edge lengths: /0 holds everything, the full
    // length one address, longer lengths count as the full length.
    #[test]
    fn in_net_edge_lengths() {
        let (a6, b6): (Ipv6Addr, Ipv6Addr) = ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        assert!(in_net6(a6, b6, 0) && in_net6(a6, b6, 126) && !in_net6(a6, b6, 127));
        assert!(in_net6(a6, a6, 128) && !in_net6(a6, b6, 128) && !in_net6(a6, b6, 200));
        let (a4, b4) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
        assert!(in_net4(a4, b4, 0) && in_net4(a4, b4, 30) && !in_net4(a4, b4, 31));
        assert!(in_net4(a4, a4, 32) && !in_net4(a4, b4, 32) && !in_net4(a4, b4, 40));
    }

    #[test]
    fn parse_and_show() {
        let n: Net4 = "203.0.113.0/28".parse().unwrap();
        assert_eq!((n.size(), n.addrs().last()), (16, Some(Ipv4Addr::new(203, 0, 113, 15))));
        assert_eq!(n.to_string(), "203.0.113.0/28");
        assert_eq!("203.0.113.7".parse::<Net4>().unwrap().len, 32);
        assert!(matches!("2001:db8::/32".parse::<Net4>(), Err(NetError::Family(..))));
        assert!(matches!("2001:db8::/129".parse::<Net6>(), Err(NetError::Length { .. })));
        assert!(matches!("203.0.113.1/24".parse::<Net4>().unwrap().network("x"), Err(NetError::HostBits { .. })));
        assert_eq!("::1".parse::<IpNet>().unwrap().to_string(), "::1/128");
    }
}
