//! Splitting a translated packet into fragments in place (RFC 7915 4.1: IPv4
//! with DF clear into IPv6 fragments; 5.1.1: IPv6 fragments into IPv4).
//!
//! The caller has written the packet as one header of `old_hdr` bytes and a
//! payload. `spread` moves each payload chunk to where its fragment will
//! start (stride `new_hdr + chunk`), last chunk first so nothing is
//! overwritten; the caller then writes each fragment's header.

/// Lay out `payload` bytes (starting at `out[old_hdr]`) as fragments of
/// `chunk` payload bytes (a multiple of 8) behind `new_hdr`-byte headers.
/// Returns (fragment count, total length), or None if `out` is too small.
pub(super) fn spread(
    out: &mut [u8],
    old_hdr: usize,
    new_hdr: usize,
    payload: usize,
    chunk: usize,
) -> Option<(usize, usize)> {
    debug_assert!(chunk > 0 && chunk % 8 == 0 && new_hdr >= old_hdr);
    if chunk == 0 {
        return None;
    }
    let count = payload.div_ceil(chunk);
    let total = count * new_hdr + payload;
    if total > out.len() || old_hdr + payload > out.len() {
        return None;
    }
    for k in (0..count).rev() {
        let from = old_hdr + k * chunk;
        let n = chunk.min(payload - k * chunk);
        let to = k * (new_hdr + chunk) + new_hdr;
        out.copy_within(from..from + n, to);
    }
    Some((count, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_chunks_behind_new_headers() {
        let mut out = vec![0u8; 200];
        // 2-byte header "HH", payload 0..20
        out[0] = b'H';
        out[1] = b'H';
        for i in 0..20u8 {
            out[2 + i as usize] = i;
        }
        let (n, total) = spread(&mut out, 2, 4, 20, 8).unwrap();
        assert_eq!((n, total), (3, 32));
        assert_eq!(&out[4..12], &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(&out[16..24], &[8, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(&out[28..32], &[16, 17, 18, 19]);
    }

    #[test]
    fn too_small_buffer_is_refused() {
        let mut out = vec![0u8; 30];
        assert_eq!(spread(&mut out, 2, 4, 20, 8), None);
    }
}
