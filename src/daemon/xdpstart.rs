//! Opening the AF_XDP dataplane: the interfaces and their queues, a UMEM
//! and sockets per queue, the steering program per interface (its own
//! XSKMAP), attached last (through BPF links: gone when the process is),
//! and the first snapshot of the next hops. Every refusal names the
//! interface, the step and the capability it needs.

use crate::addr::Net4;
use crate::config::{Config, PoolEntry, XdpAttach};
use crate::dataplane::hops::Shared;
use crate::dataplane::xdp::Queue;
use crate::sys::bpf::{self, AttachMode, Match, XDP_PASS};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

/// One interface's program: its link (dropped at the stop, which detaches
/// it), its XSKMAP and the program now behind the link.
pub struct Steering {
    name: String,
    link: OwnedFd,
    map: OwnedFd,
    prog: OwnedFd,
}

/// What a reload may change in the running dataplane: the pools the
/// programs steer.
pub struct XdpControl {
    steering: Vec<Steering>,
    pool6: Match<16>,
    /// Every pool4 network steered since the start: a network a reload
    /// removes stays steered until a restart (its BIB entries still serve
    /// live sessions), as its route stays on TUN.
    steered: Vec<Net4>,
    hops: Arc<Shared>,
}

fn matches(nets: &[Net4]) -> Vec<Match<4>> {
    nets.iter().map(|n| Match { addr: n.addr.octets(), len: n.len }).collect()
}

impl XdpControl {
    /// Steer `pool4`'s networks too (a reload): a new program per
    /// interface, loaded first (the verifier may refuse it), then swapped in
    /// behind each link at once. False when nothing had to change.
    pub fn steer(&mut self, pool4: &[PoolEntry]) -> Result<bool, String> {
        let mut want = self.steered.clone();
        for e in pool4 {
            if !want.contains(&e.net.0) {
                want.push(e.net.0);
            }
        }
        if want == self.steered {
            return Ok(false);
        }
        let m = matches(&want);
        let mut progs = Vec::with_capacity(self.steering.len());
        for st in &self.steering {
            let insns = bpf::steering_program(st.map.as_raw_fd(), self.pool6, &m, XDP_PASS);
            progs.push(bpf::load_xdp(&insns).map_err(|e| format!("xdp: {}: {e}", st.name))?);
        }
        for (i, (st, p)) in self.steering.iter().zip(&progs).enumerate() {
            if let Err(e) = bpf::link_update(&st.link, p) {
                // Put back the ones already swapped: all old or all new.
                for back in &self.steering[..i] {
                    let _ = bpf::link_update(&back.link, &back.prog);
                }
                return Err(format!("xdp: cannot swap the program on {}: {e}", st.name));
            }
        }
        for (st, p) in self.steering.iter_mut().zip(progs) {
            st.prog = p;
        }
        self.steered = want;
        self.hops.set_pool4(self.steered.clone());
        Ok(true)
    }
}

/// The opened dataplane: the workers' queues and what keeps the programs attached.
pub struct XdpPlane {
    pub queues: Vec<Queue>,
    pub control: XdpControl,
    /// "native"/"generic", and zero copy or copy.
    pub attach: AttachMode,
    pub zero_copy: bool,
    /// Why not zero copy: "asked for" (xdp.copy) or the kernel's refusal.
    pub copy_why: String,
    /// The interfaces as named, IPv6 side first.
    pub interfaces: Vec<String>,
    /// (IPv6 side, IPv4 side) MTUs: the translator's next-hop MTUs.
    pub mtus: (u16, u16),
    pub hops: Arc<Shared>,
}

impl XdpPlane {
    pub fn describe(&self) -> String {
        format!(
            "AF_XDP on {}, {} XDP, {}",
            self.interfaces.join(" (IPv6) and ") + if self.interfaces.len() > 1 { " (IPv4)" } else { "" },
            self.attach.label(),
            if self.zero_copy { "zero copy".to_string() } else { format!("copy mode: {}", self.copy_why) }
        )
    }
}

fn sysfs(name: &str, what: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/{what}")).ok().map(|s| s.trim().to_string())
}

/// Receive queues of `name` (its rx-N entries).
fn rx_queues(name: &str) -> usize {
    std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count())
        .unwrap_or(1)
        .max(1)
}

use crate::dataplane::xdp::MAX_MTU;

pub fn open(cfg: &Config) -> Result<XdpPlane, String> {
    let x = &cfg.xdp;
    let names: Vec<String> = x.interfaces().into_iter().map(String::from).collect();
    let mut ifindexes = vec![];
    let mut mtus = vec![];
    for n in &names {
        let i = crate::sys::ifindex(n).ok_or_else(|| format!("xdp: no interface '{n}' ([xdp] interfaces)"))?;
        let mtu: u16 = sysfs(n, "mtu").and_then(|m| m.parse().ok()).unwrap_or(1500);
        if !(1280..=MAX_MTU).contains(&mtu) {
            return Err(format!(
                "xdp: {n} has MTU {mtu}; the xdp dataplane needs 1280 to {MAX_MTU} (one 4 KiB UMEM frame per packet)"
            ));
        }
        ifindexes.push(i);
        mtus.push(mtu);
    }
    let counts: Vec<usize> = names.iter().map(|n| rx_queues(n)).collect();
    let have = counts.iter().copied().min().unwrap_or(1);
    if counts.iter().any(|&c| c != have) {
        tracing::warn!(
            "xdp: the interfaces have {} receive queues; serving queues 0 to {} on each (frames on the others go to the kernel untranslated)",
            counts.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" and "),
            have - 1
        );
    }
    let queues = if x.queues == 0 { have } else { x.queues.min(have) };
    if x.queues > have {
        tracing::warn!("xdp: {} queues asked for, the interfaces have {have}: {have} worker(s)", x.queues);
    }
    let mut qs = Vec::with_capacity(queues);
    for q in 0..queues {
        qs.push(Queue::open(&ifindexes, q as u32, x.frames, x.copy).map_err(|e| {
            let raw = e.to_string().starts_with("raw IP socket");
            let hint = match e.raw_os_error() {
                _ if raw => "",
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    " (needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_IPC_LOCK or a large enough RLIMIT_MEMLOCK)"
                }
                Some(libc::EBUSY) => " (another AF_XDP socket, another nat64d?, holds that queue)",
                // UMEM registration counts against RLIMIT_MEMLOCK without CAP_IPC_LOCK.
                Some(libc::ENOBUFS) | Some(libc::ENOMEM) => {
                    " (the UMEM is more than RLIMIT_MEMLOCK allows: give CAP_IPC_LOCK, raise LimitMEMLOCK, or lower xdp.frames)"
                }
                _ => "",
            };
            let what = if raw { "the raw IP sockets for" } else { "an AF_XDP socket on" };
            format!("xdp: cannot open {what} queue {q} of {}: {e}{hint}", names.join("/"))
        })?);
    }
    let zero_copy = qs.iter().all(|q| q.zero_copy());
    let copy_why = match qs.first().and_then(|q| q.zero_copy_refused()) {
        _ if x.copy => "xdp.copy".to_string(),
        Some(e) => format!("zero copy refused: {e}"),
        None => "zero copy not kept on every queue".to_string(),
    };
    let p6 = cfg.pool6;
    let pool6 = Match { addr: p6.addr().octets(), len: p6.prefix_len() };
    let mut steered: Vec<Net4> = vec![];
    for e in &cfg.pool4 {
        if !steered.contains(&e.net.0) {
            steered.push(e.net.0);
        }
    }
    let pool4 = matches(&steered);
    let mut steering = vec![];
    let mut attach = AttachMode::Native;
    for (n, &ifindex) in names.iter().zip(&ifindexes) {
        let map = bpf::xsk_map(queues as u32)
            .map_err(|e| format!("xdp: cannot make an XSKMAP for {n}: {e} (needs CAP_BPF)"))?;
        // Each interface's map holds its own sockets, by queue.
        let port = qs[0].ports.iter().position(|p| p.ifindex == ifindex).unwrap_or(0);
        for q in &qs {
            bpf::xsk_map_set(&map, q.queue, q.ports[port].socket.raw_fd())
                .map_err(|e| format!("xdp: cannot put queue {}'s socket in {n}'s map: {e}", q.queue))?;
        }
        let prog = bpf::load_xdp(&bpf::steering_program(map.as_raw_fd(), pool6, &pool4, XDP_PASS))
            .map_err(|e| format!("xdp: {n}: {e}"))?;
        let tries: &[AttachMode] = match x.attach {
            XdpAttach::Auto => &[AttachMode::Native, AttachMode::Generic],
            XdpAttach::Native => &[AttachMode::Native],
            XdpAttach::Generic => &[AttachMode::Generic],
        };
        let mut err = None;
        let mut link = None;
        'modes: for &m in tries {
            // A program a stopped nat64d left is detached shortly after
            // its process ends (the kernel defers it): a restart that comes
            // at once waits up to a second for it rather than failing.
            for attempt in 0..10 {
                match bpf::attach_xdp(&prog, ifindex, m) {
                    Ok(l) => {
                        if m == AttachMode::Generic {
                            attach = AttachMode::Generic;
                        }
                        link = Some(l);
                        break 'modes;
                    }
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)) && attempt < 9 => {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    Err(e) => {
                        err = Some((m, e));
                        break;
                    }
                }
            }
        }
        let Some(link) = link else {
            let (m, e) = err.map_or((AttachMode::Native, std::io::Error::other("no mode")), |x| x);
            let hint = match e.raw_os_error() {
                Some(libc::EBUSY) | Some(libc::EEXIST) => {
                    " (an XDP program is already attached: another nat64d? see `ip link show`)"
                }
                Some(libc::EPERM) => " (needs CAP_NET_ADMIN and CAP_BPF)",
                Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) if m == AttachMode::Native => {
                    " (the driver has no native XDP: set xdp.attach = \"generic\" or \"auto\")"
                }
                _ => "",
            };
            return Err(format!("xdp: cannot attach the program to {n} ({} mode): {e}{hint}", m.label()));
        };
        steering.push(Steering { name: n.clone(), link, map, prog });
    }
    let hops = crate::dataplane::hops::first()?;
    hops.set_pool4(steered.clone());
    let (links, routes, neigh) = hops.get().sizes();
    tracing::info!(
        "next hops: {links} Ethernet link(s), {routes} route(s), {neigh} neighbour(s) mirrored from the kernel"
    );
    let mtu6 = mtus[0];
    let mtu4 = *mtus.last().unwrap_or(&mtu6);
    let hops = Arc::new(hops);
    let control = XdpControl { steering, pool6, steered, hops: Arc::clone(&hops) };
    Ok(XdpPlane { queues: qs, control, attach, zero_copy, copy_why, interfaces: names, mtus: (mtu6, mtu4), hops })
}
