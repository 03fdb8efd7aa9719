//! Internet checksum arithmetic: the one's-complement sum of RFC 1071 and the
//! incremental update of RFC 1624 (eqn. 3: HC' = ~(~HC + ~m + m')).
//!
//! Sums are carried in a `u32` accumulator and folded to 16 bits at the end, so
//! several pieces (a pseudo-header, a header, a payload) can be added in turn.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Add `data` (as big-endian 16-bit words, an odd last byte padded with zero)
/// to the running sum `acc`. The result is not folded.
#[inline]
pub fn sum(mut acc: u32, data: &[u8]) -> u32 {
    // Sum in 64 bits over 8-byte chunks: 16 bits of headroom per addition, so
    // no carry is lost before the final fold.
    let mut wide: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let (s, carry) = wide.overflowing_add(w);
        wide = s + carry as u64;
    }
    let mut rest = chunks.remainder();
    while rest.len() >= 2 {
        acc = acc.wrapping_add(u16::from_be_bytes([rest[0], rest[1]]) as u32);
        rest = &rest[2..];
    }
    if let [b] = rest {
        acc = acc.wrapping_add((*b as u32) << 8);
    }
    // Fold the 64-bit sum to 32 bits, then add into the 32-bit accumulator.
    let mut w = (wide & 0xffff_ffff) + (wide >> 32);
    w = (w & 0xffff_ffff) + (w >> 32);
    let w = fold(w as u32 as u64 + (w >> 32)) as u32;
    fold(acc as u64 + w as u64) as u32
}

/// Fold a 64-bit one's-complement sum to 16 bits, without branches.
#[inline]
fn fold(v: u64) -> u16 {
    let v = (v & 0xffff_ffff) + (v >> 32); // < 2^33
    let v = (v & 0xffff) + (v >> 16); // < 2^17 + 2^16
    let v = (v & 0xffff) + (v >> 16); // <= 0xffff + 2
    ((v & 0xffff) + (v >> 16)) as u16
}

/// Fold a running sum to 16 bits (not complemented).
#[inline]
pub fn fold32(acc: u32) -> u16 {
    let v = (acc & 0xffff) + (acc >> 16);
    ((v & 0xffff) + (v >> 16)) as u16
}

/// The checksum field value for a running sum: its folded one's complement.
#[inline]
pub fn finish(acc: u32) -> u16 {
    !fold32(acc)
}

/// RFC 1071 checksum of `data` alone.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    if let Ok(h) = <&[u8; 20]>::try_from(data) {
        return !fold(sum20(h));
    }
    finish(sum(0, data))
}

/// Unfolded sum of a 20-byte IPv4 header as five 32-bit words: each adds
/// its two 16-bit halves at once (2^16 ≡ 1 mod 0xffff), no loop.
#[inline(always)]
fn sum20(h: &[u8; 20]) -> u64 {
    let w = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]) as u64;
    w(0) + w(4) + w(8) + w(12) + w(16)
}

/// Sum of the IPv4 pseudo-header (RFC 768 / RFC 793): addresses, protocol, length.
#[inline]
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    u16::from_be_bytes([s[0], s[1]]) as u32
        + u16::from_be_bytes([s[2], s[3]]) as u32
        + u16::from_be_bytes([d[0], d[1]]) as u32
        + u16::from_be_bytes([d[2], d[3]]) as u32
        + proto as u32
        + len as u32
}

/// Sum of the IPv6 pseudo-header (RFC 8200 8.1): addresses, upper-layer length, next header.
#[inline]
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: u32) -> u32 {
    let mut acc = sum_addr6(src) + sum_addr6(dst);
    acc += (len >> 16) + (len & 0xffff) + proto as u32;
    acc
}

/// Sum of the sixteen bytes of an IPv6 address, folded to 16 bits.
#[inline]
pub fn sum_addr6(a: Ipv6Addr) -> u32 {
    // One's-complement addition of the two 64-bit halves keeps the sum of
    // the 16-bit words modulo 0xffff, which is all a checksum needs.
    // The 32-bit words, summed unfolded (2^16 ≡ 1 mod 0xffff), then one
    // partial fold: the result is below 2^19, so sums of several still fit.
    let a = u128::from(a);
    let s = (a >> 96) as u64 + ((a >> 64) as u32) as u64 + ((a >> 32) as u32) as u64 + (a as u32) as u64;
    ((s & 0xffff) + ((s >> 16) & 0xffff) + (s >> 32)) as u32
}

/// Sum of an IPv4 address's two words.
#[inline]
pub fn sum_addr4(a: Ipv4Addr) -> u32 {
    let o = a.octets();
    u16::from_be_bytes([o[0], o[1]]) as u32 + u16::from_be_bytes([o[2], o[3]]) as u32
}

/// RFC 1624 eqn. 3 over sums: given the checksum field `old`, remove the
/// folded sum `removed` and add the folded sum `added`. A checksum that was
/// wrong before stays wrong by the same amount after.
#[inline]
pub fn update(old: u16, removed: u32, added: u32) -> u16 {
    // ~HC + ~m + m', where ~m is the one's complement of the folded sum m.
    let acc = (!old) as u32 + (!fold32(removed)) as u32 + fold32(added) as u32;
    !fold32(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 1071 section 3 worked example: words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example_sum() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold32(sum(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold32(sum(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    #[test]
    fn wide_and_narrow_paths_agree() {
        // Compare the chunked sum to a plain word-by-word sum on many lengths.
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8 ^ 0xa5).collect();
        for len in 0..data.len() {
            let mut naive: u64 = 0;
            for c in data[..len].chunks(2) {
                let w = if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) } else { (c[0] as u16) << 8 };
                naive += w as u64;
            }
            assert_eq!(fold32(sum(0, &data[..len])), fold(naive), "len {len}");
        }
    }

    #[test]
    fn address_sums_match_word_sums() {
        for a in ["::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8:64::c633:6407", "64:ff9b::ffff:ffff"] {
            let a: Ipv6Addr = a.parse().unwrap();
            let naive: u64 = a.segments().iter().map(|&w| w as u64).sum();
            assert_eq!(fold32(sum_addr6(a)), fold(naive), "{a}");
        }
        let h: [u8; 20] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xc3);
        assert_eq!(checksum(&h), finish(sum(0, &h[..19]) + (h[19] as u32)));
    }

    // RFC 1624 section 4: incremental update equals recomputation.
    #[test]
    fn rfc1624_incremental_matches_full() {
        let mut data =
            [0x45u8, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0, 0, 192, 0, 2, 1, 198, 51, 100, 7];
        let c = checksum(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        // Change the TTL/protocol word from 0x4001 to 0x3f01.
        let old = u16::from_be_bytes([data[8], data[9]]);
        data[8] = 0x3f;
        let new = u16::from_be_bytes([data[8], data[9]]);
        let upd = update(c, old as u32, new as u32);
        data[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(upd, checksum(&data));
    }
}
