//! The TUN device's link state and routes, through rtnetlink (no `ip`
//! binary at run time): IPv6 address generation off, MTU and up, pool6 and
//! pool4 routed into the device, routes for pool4 networks a reload adds,
//! and, at a stop, the routes nat64d added taken away again. Every error
//! names the operation the kernel refused and the kernel's reason.

use crate::addr::{Net4, Net6};
use crate::config::{Config, PoolEntry};
use rtnetlink::packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

/// A route into the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpNet {
    V6(Net6),
    V4(Net4),
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IpNet::V6(n) => write!(f, "{n}"),
            IpNet::V4(n) => write!(f, "{n}"),
        }
    }
}

/// A netlink connection, driven by a small single-threaded runtime of its own.
pub struct Device {
    rt: tokio::runtime::Runtime,
    handle: Handle,
    name: String,
    index: u32,
    /// Routes this process added (removed again at a stop).
    routes: Mutex<Vec<IpNet>>,
}

/// The kernel's reason for a refused request, as an errno text.
fn reason(e: rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => match m.code {
            Some(c) => std::io::Error::from_raw_os_error(-c.get()).to_string(),
            None => "no error code".into(),
        },
        other => other.to_string(),
    }
}

impl Device {
    /// Open a netlink connection for the device `name`.
    pub fn open(name: &str) -> Result<Device, String> {
        let index = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .ok_or_else(|| format!("netlink: no device '{name}' (/sys/class/net/{name}/ifindex)"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| format!("netlink: cannot start its runtime: {e}"))?;
        let (conn, handle, _) = rt
            .block_on(async { rtnetlink::new_connection() })
            .map_err(|e| format!("netlink: cannot open a socket: {e}"))?;
        rt.spawn(conn);
        Ok(Device { rt, handle, name: name.to_string(), index, routes: Mutex::new(vec![]) })
    }

    fn run(
        &self,
        what: impl Fn() -> String,
        f: impl std::future::Future<Output = Result<(), rtnetlink::Error>>,
    ) -> Result<(), String> {
        self.rt.block_on(f).map_err(|e| format!("netlink: {} refused by the kernel: {}", what(), reason(e)))
    }

    /// The route message for `net` into the device.
    fn route(&self, net: IpNet) -> rtnetlink::packet_route::route::RouteMessage {
        match net {
            IpNet::V6(n) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(n.addr, n.len)
                .output_interface(self.index)
                .build(),
            IpNet::V4(n) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(n.addr, n.len)
                .output_interface(self.index)
                .build(),
        }
    }

    /// Route `net` into the device (replacing a route to the same prefix).
    pub fn add_route(&self, net: IpNet) -> Result<(), String> {
        let (h, m) = (self.handle.clone(), self.route(net));
        self.run(
            || format!("route {net} dev {}", self.name),
            async move { h.route().add(m).replace().execute().await },
        )?;
        let mut r = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if !r.contains(&net) {
            r.push(net);
        }
        Ok(())
    }

    /// Take away the routes this process added (a clean stop). Those the
    /// kernel already removed with the device are not an error.
    pub fn remove_routes(&self) -> Vec<String> {
        let routes = std::mem::take(&mut *self.routes.lock().unwrap_or_else(|e| e.into_inner()));
        let mut errors = vec![];
        for net in routes {
            let (h, m) = (self.handle.clone(), self.route(net));
            let r = self.run(|| format!("removing route {net} dev {}", self.name), async move {
                h.route().del(m).execute().await
            });
            if let Err(e) = r {
                if !e.contains("No such process") && !e.contains("No such device") {
                    errors.push(e);
                }
            }
        }
        errors
    }

    /// Route pool4 networks into the device.
    pub fn route_pool4<'a>(&self, nets: impl IntoIterator<Item = &'a PoolEntry>) -> Result<(), String> {
        for e in nets {
            self.add_route(IpNet::V4(e.net.0))?;
        }
        Ok(())
    }
}

/// Bring the device up with its MTU and route pool6 and pool4 into it.
pub fn setup(name: &str, cfg: &Config) -> Result<Device, String> {
    let d = Device::open(name)?;
    // No link-local address on the TUN device, so the kernel sends no MLD or
    // router solicitations into it; best effort (older kernels lack the knob).
    let h = d.handle.clone();
    let m = LinkUnspec::new_with_index(d.index)
        .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
            In6AddrGenMode::None,
        )])]))
        .build();
    if let Err(e) =
        d.run(|| format!("IPv6 address generation off on {name}"), async move { h.link().set(m).execute().await })
    {
        tracing::debug!("{e}");
    }
    let h = d.handle.clone();
    let m = LinkUnspec::new_with_index(d.index).mtu(cfg.tun.mtu as u32).up().build();
    d.run(|| format!("MTU {} and up on {name}", cfg.tun.mtu), async move { h.link().set(m).execute().await })?;
    d.add_route(IpNet::V6(Net6 { addr: cfg.pool6.addr(), len: cfg.pool6.prefix_len() }))?;
    d.route_pool4(&cfg.pool4)?;
    Ok(d)
}

/// Packets the kernel dropped at the device's queue (routed into the TUN
/// while its queue was full, before nat64d read them): the device's TX
/// dropped counter.
pub fn queue_drops(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/statistics/tx_dropped")).ok()?.trim().parse().ok()
}
