//! The eBPF side of the AF_XDP dataplane, over the bpf(2) system call
//! alone (no libbpf, no clang, no ELF): the XDP program that picks the
//! frames nat64d translates is a few dozen instructions, assembled here by
//! [`steering_program`] with pool6 and pool4 as immediates, so it is built
//! wherever nat64d is, at start and at a reload that changes the pools.
//!
//! The program: an Ethernet frame carrying IPv6 to pool6, or IPv4 to a pool4
//! network, goes to the AF_XDP socket of its receive queue
//! (`bpf_redirect_map` on an XSKMAP); everything else (ARP, neighbour
//! discovery, the host's own traffic, routing daemons) goes on to the kernel
//! (`XDP_PASS`). It is attached through a BPF link, so it goes away with the
//! process, even after `kill -9`: a dead nat64d never leaves a program behind
//! that steers traffic into a socket nobody reads.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_PROG_LOAD: u32 = 5;
const BPF_PROG_TEST_RUN: u32 = 10;
const BPF_LINK_CREATE: u32 = 28;
const BPF_LINK_UPDATE: u32 = 29;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

/// XDP verdicts.
pub const XDP_DROP: i32 = 1;
pub const XDP_PASS: i32 = 2;
pub const XDP_REDIRECT: i32 = 4;

/// How the program is attached: in the driver, or in the generic (skb) path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
}

impl AttachMode {
    fn flags(self) -> u32 {
        match self {
            AttachMode::Generic => 1 << 1, // XDP_FLAGS_SKB_MODE
            AttachMode::Native => 1 << 2,  // XDP_FLAGS_DRV_MODE
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

/// bpf(2) with an attribute block of 128 bytes (larger than every command
/// here uses; the kernel wants the unused tail zero).
fn bpf(cmd: u32, attr: &mut [u8; 128]) -> io::Result<i64> {
    // SAFETY: the attribute block is 128 readable and writable bytes for the
    // call; the pointers written into it point at live buffers of the caller.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd as libc::c_long, attr.as_mut_ptr(), attr.len() as u32) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn put32(a: &mut [u8; 128], at: usize, v: u32) {
    a[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put64(a: &mut [u8; 128], at: usize, v: u64) {
    a[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn fd_of(rc: i64) -> OwnedFd {
    // SAFETY: a successful bpf(2) that makes an object returns a new descriptor we own.
    unsafe { OwnedFd::from_raw_fd(rc as RawFd) }
}

/// An XSKMAP with `entries` slots (one per receive queue).
pub fn xsk_map(entries: u32) -> io::Result<OwnedFd> {
    let mut a = [0u8; 128];
    put32(&mut a, 0, BPF_MAP_TYPE_XSKMAP);
    put32(&mut a, 4, 4); // key: the queue index
    put32(&mut a, 8, 4); // value: the socket's descriptor
    put32(&mut a, 12, entries);
    a[28..28 + 10].copy_from_slice(b"nat64d_xsk");
    bpf(BPF_MAP_CREATE, &mut a).map(fd_of)
}

/// Put the AF_XDP socket `xsk` in the map's slot `queue`.
pub fn xsk_map_set(map: &OwnedFd, queue: u32, xsk: RawFd) -> io::Result<()> {
    let key = queue;
    let value = xsk as u32;
    let mut a = [0u8; 128];
    put32(&mut a, 0, map.as_raw_fd() as u32);
    put64(&mut a, 8, &key as *const u32 as u64);
    put64(&mut a, 16, &value as *const u32 as u64);
    bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
}

/// Load an XDP program; a refusal carries the verifier's log.
pub fn load_xdp(insns: &[u64]) -> Result<OwnedFd, String> {
    let license = b"GPL\0";
    let mut log = vec![0u8; 64 * 1024];
    let mut a = [0u8; 128];
    put32(&mut a, 0, BPF_PROG_TYPE_XDP);
    put32(&mut a, 4, insns.len() as u32);
    put64(&mut a, 8, insns.as_ptr() as u64);
    put64(&mut a, 16, license.as_ptr() as u64);
    put32(&mut a, 24, 1); // log level
    put32(&mut a, 28, log.len() as u32);
    put64(&mut a, 32, log.as_mut_ptr() as u64);
    a[48..48 + 12].copy_from_slice(b"nat64d_steer");
    put32(&mut a, 68, BPF_XDP); // expected attach type
    match bpf(BPF_PROG_LOAD, &mut a) {
        Ok(fd) => Ok(fd_of(fd)),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let last: Vec<&str> = text.lines().rev().take(6).collect();
            let hint = if e.raw_os_error() == Some(libc::EPERM) { " (needs CAP_BPF and CAP_NET_ADMIN)" } else { "" };
            Err(format!(
                "the kernel refused the XDP program: {e}{hint}{}",
                if last.is_empty() {
                    String::new()
                } else {
                    format!("; verifier: {}", last.into_iter().rev().collect::<Vec<_>>().join(" | "))
                }
            ))
        }
    }
}

/// Attach `prog` to the interface through a BPF link: detached when the
/// returned descriptor closes (the process ends, however it ends).
pub fn attach_xdp(prog: &OwnedFd, ifindex: u32, mode: AttachMode) -> io::Result<OwnedFd> {
    let mut a = [0u8; 128];
    put32(&mut a, 0, prog.as_raw_fd() as u32);
    put32(&mut a, 4, ifindex);
    put32(&mut a, 8, BPF_XDP);
    put32(&mut a, 12, mode.flags());
    bpf(BPF_LINK_CREATE, &mut a).map(fd_of)
}

/// Swap the program behind a link for `prog`, atomically: every frame
/// meets either the old program or the new one.
pub fn link_update(link: &OwnedFd, prog: &OwnedFd) -> io::Result<()> {
    let mut a = [0u8; 128];
    put32(&mut a, 0, link.as_raw_fd() as u32);
    put32(&mut a, 4, prog.as_raw_fd() as u32);
    bpf(BPF_LINK_UPDATE, &mut a).map(|_| ())
}

/// Run the program once over `frame` (BPF_PROG_TEST_RUN): its verdict.
pub fn test_run(prog: &OwnedFd, frame: &[u8]) -> io::Result<i32> {
    let mut out = vec![0u8; frame.len() + 512];
    let mut a = [0u8; 128];
    put32(&mut a, 0, prog.as_raw_fd() as u32);
    put32(&mut a, 8, frame.len() as u32);
    put32(&mut a, 12, out.len() as u32);
    put64(&mut a, 16, frame.as_ptr() as u64);
    put64(&mut a, 24, out.as_mut_ptr() as u64);
    put32(&mut a, 32, 1);
    bpf(BPF_PROG_TEST_RUN, &mut a)?;
    Ok(i32::from_ne_bytes([a[4], a[5], a[6], a[7]]))
}

// ---- the program, assembled ------------------------------------------------

/// One eBPF instruction: opcode, registers, offset, immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from(dst & 0xf) << 8
        | u64::from(src & 0xf) << 12
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const LDX_H: u8 = 0x69; // BPF_LDX | BPF_MEM | BPF_H
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const MOV32_X: u8 = 0xbc;
const ADD64_K: u8 = 0x07;
const AND32_K: u8 = 0x54;
const JGT_X: u8 = 0x2d;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const JEQ32_K: u8 = 0x16;
const JNE32_K: u8 = 0x56;
const JA: u8 = 0x05;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LD_IMM64: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;
const HELPER_REDIRECT_MAP: i32 = 51;

/// A jump whose target is a label, patched once the labels are placed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Pass,
    V4,
    Redirect,
}

struct Asm {
    code: Vec<u64>,
    fixups: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.code.push(insn(code, dst, src, off, imm));
    }
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.code.len(), to));
        self.op(code, dst, src, 0, imm);
    }
    fn label(&mut self, l: Label) {
        self.labels.push((l, self.code.len()));
    }
    fn finish(mut self) -> Vec<u64> {
        for (at, to) in std::mem::take(&mut self.fixups) {
            let target = self.labels.iter().find(|(l, _)| *l == to).map_or(at + 1, |&(_, t)| t);
            let off = (target as i64 - at as i64 - 1) as i16;
            self.code[at] = (self.code[at] & !(0xffff << 16)) | u64::from(off as u16) << 16;
        }
        self.code
    }
}

/// A network as the program compares it: `len` leading bits of `addr`.
#[derive(Debug, Clone, Copy)]
pub struct Match<const N: usize> {
    pub addr: [u8; N],
    pub len: u8,
}

/// Masked 32-bit words of a network, as little-endian loads of the
/// address's bytes see them: (word index, mask, value).
fn words<const N: usize>(m: &Match<N>) -> impl Iterator<Item = (usize, u32, u32)> + '_ {
    (0..N / 4).filter_map(move |w| {
        let bits = (m.len as usize).saturating_sub(w * 32).min(32);
        if bits == 0 {
            return None;
        }
        let mut mask = [0u8; 4];
        for (i, b) in mask.iter_mut().enumerate() {
            let have = bits.saturating_sub(i * 8).min(8);
            *b = if have == 0 { 0 } else { 0xffu8 << (8 - have) };
        }
        let mut v = [0u8; 4];
        v.copy_from_slice(&m.addr[w * 4..w * 4 + 4]);
        let mask = u32::from_le_bytes(mask);
        Some((w, mask, u32::from_le_bytes(v) & mask))
    })
}

/// The steering program for pool6 and the pool4 networks: frames to them
/// go to the socket in `map`'s slot for their receive queue; when that slot
/// is empty, `miss` (`XDP_PASS` in service; a test makes it `XDP_DROP` to
/// see which frames the program picks).
pub fn steering_program(map: RawFd, pool6: Match<16>, pool4: &[Match<4>], miss: i32) -> Vec<u64> {
    const ETH: i16 = 14;
    let mut a = Asm { code: vec![], fixups: vec![], labels: vec![] };
    // r2 = data, r3 = data_end (struct xdp_md)
    a.op(LDX_W, 2, 1, 0, 0);
    a.op(LDX_W, 3, 1, 4, 0);
    // Ethernet and a minimal IPv4 header, or pass.
    a.op(MOV64_X, 4, 2, 0, 0);
    a.op(ADD64_K, 4, 0, 0, i32::from(ETH) + 20);
    a.jump(JGT_X, 4, 3, 0, Label::Pass);
    a.op(LDX_H, 5, 2, 12, 0);
    a.jump(JEQ_K, 5, 0, 0x0008, Label::V4); // 0x0800 read little-endian
    a.jump(JNE_K, 5, 0, 0xdd86, Label::Pass); // 0x86dd
                                              // IPv6: the whole fixed header, then the destination (bytes 24..40) against pool6.
    a.op(MOV64_X, 4, 2, 0, 0);
    a.op(ADD64_K, 4, 0, 0, i32::from(ETH) + 40);
    a.jump(JGT_X, 4, 3, 0, Label::Pass);
    for (w, mask, value) in words(&pool6) {
        a.op(LDX_W, 5, 2, ETH + 24 + 4 * w as i16, 0);
        if mask != u32::MAX {
            a.op(AND32_K, 5, 0, 0, mask as i32);
        }
        a.jump(JNE32_K, 5, 0, value as i32, Label::Pass);
    }
    a.jump(JA, 0, 0, 0, Label::Redirect);
    // IPv4: the destination (bytes 16..20) against each pool4 network.
    a.label(Label::V4);
    a.op(LDX_W, 5, 2, ETH + 16, 0);
    for m in pool4 {
        for (_, mask, value) in words(m) {
            a.op(MOV32_X, 6, 5, 0, 0);
            if mask != u32::MAX {
                a.op(AND32_K, 6, 0, 0, mask as i32);
            }
            a.jump(JEQ32_K, 6, 0, value as i32, Label::Redirect);
        }
        if m.len == 0 {
            a.jump(JA, 0, 0, 0, Label::Redirect);
        }
    }
    a.jump(JA, 0, 0, 0, Label::Pass);
    // bpf_redirect_map(map, ctx->rx_queue_index, miss)
    a.label(Label::Redirect);
    a.op(LDX_W, 2, 1, 16, 0);
    a.op(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map);
    a.op(0, 0, 0, 0, 0);
    a.op(MOV64_K, 3, 0, 0, miss);
    a.op(CALL, 0, 0, 0, HELPER_REDIRECT_MAP);
    a.op(EXIT, 0, 0, 0, 0);
    a.label(Label::Pass);
    a.op(MOV64_K, 0, 0, 0, XDP_PASS);
    a.op(EXIT, 0, 0, 0, 0);
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The encoding is the kernel's struct bpf_insn, little-endian: opcode,
    // dst/src nibbles, 16-bit offset, 32-bit immediate.
    #[test]
    fn instruction_encoding() {
        // r0 = 2; exit
        assert_eq!(insn(MOV64_K, 0, 0, 0, 2).to_le_bytes(), [0xb7, 0, 0, 0, 2, 0, 0, 0]);
        // r5 = *(u16 *)(r2 + 12)
        assert_eq!(insn(LDX_H, 5, 2, 12, 0).to_le_bytes(), [0x69, 0x25, 12, 0, 0, 0, 0, 0]);
        // a backward offset keeps its sign
        assert_eq!(insn(JA, 0, 0, -3, 0).to_le_bytes()[2..4], [0xfd, 0xff]);
    }

    // A /28 compares one masked word; a /96 three whole words; /0 none.
    #[test]
    fn networks_become_masked_words() {
        let w: Vec<_> = words(&Match { addr: [203, 0, 113, 16], len: 28 }).collect();
        assert_eq!(w, vec![(0, u32::from_le_bytes([255, 255, 255, 0xf0]), u32::from_le_bytes([203, 0, 113, 16]))]);
        let p6 = Match { addr: [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], len: 96 };
        assert_eq!(words(&p6).count(), 3);
        assert!(words(&p6).all(|(_, m, _)| m == u32::MAX));
        assert_eq!(words(&Match { addr: [0; 4], len: 0 }).count(), 0);
    }
}
