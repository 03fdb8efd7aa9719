//! ICMP type/code mapping of RFC 7915 sections 4.2 (ICMPv4 → ICMPv6) and 5.2
//! (ICMPv6 → ICMPv4), Parameter Problem pointer mapping, and the RFC 1191
//! MTU plateaus used when a router reports MTU zero.

use super::DropReason;

/// What the ICMP header's second word becomes after translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rest {
    /// Unused (zero), apart from an RFC 4884 length where the type has one.
    Unused,
    /// Packet Too Big / Fragmentation Needed: the MTU is recomputed.
    Mtu,
    /// Parameter Problem with this translated pointer.
    Pointer(u8),
}

/// A translated ICMP error: new type, code and second word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ErrorMap {
    pub ty: u8,
    pub code: u8,
    pub rest: Rest,
}

/// ICMPv4 types that are errors (never answered with an error, RFC 1122 3.2.2).
pub(super) fn is_v4_error(ty: u8) -> bool {
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

/// ICMPv6 types below 128 are errors (RFC 4443 2.1).
pub(super) fn is_v6_error(ty: u8) -> bool {
    ty < 128
}

/// RFC 7915 4.2: an ICMPv4 error's new type, code and rest-of-header.
/// `pointer` is the ICMPv4 Parameter Problem pointer (byte 4).
pub(super) fn error_4to6(ty: u8, code: u8, pointer: u8) -> Result<ErrorMap, DropReason> {
    let m = |ty, code| Ok(ErrorMap { ty, code, rest: Rest::Unused });
    match (ty, code) {
        (3, 0 | 1 | 5 | 6 | 7 | 8 | 11 | 12) => m(1, 0),
        (3, 2) => Ok(ErrorMap { ty: 4, code: 1, rest: Rest::Pointer(6) }),
        (3, 3) => m(1, 4),
        (3, 4) => Ok(ErrorMap { ty: 2, code: 0, rest: Rest::Mtu }),
        (3, 9 | 10 | 13 | 15) => m(1, 1),
        (11, 0 | 1) => m(3, code),
        (12, 0 | 2) => Ok(ErrorMap { ty: 4, code: 0, rest: Rest::Pointer(pointer_4to6(pointer)?) }),
        (12, _) => Err(DropReason::IcmpUntranslatable),
        _ => Err(DropReason::IcmpUntranslatable),
    }
}

/// RFC 7915 5.2: an ICMPv6 error's new type, code and rest-of-header.
/// `pointer` is the ICMPv6 Parameter Problem pointer (32 bits).
pub(super) fn error_6to4(ty: u8, code: u8, pointer: u32) -> Result<ErrorMap, DropReason> {
    let m = |ty, code| Ok(ErrorMap { ty, code, rest: Rest::Unused });
    match (ty, code) {
        (1, 0 | 2 | 3) => m(3, 1),
        (1, 1) => m(3, 10),
        (1, 4) => m(3, 3),
        (2, _) => Ok(ErrorMap { ty: 3, code: 4, rest: Rest::Mtu }),
        (3, 0 | 1) => m(11, code),
        (4, 0) => Ok(ErrorMap { ty: 12, code: 0, rest: Rest::Pointer(pointer_6to4(pointer)?) }),
        (4, 1) => m(3, 2),
        _ => Err(DropReason::IcmpUntranslatable),
    }
}

/// RFC 7915 4.2: IPv4 header byte offset → IPv6 header byte offset.
pub(super) fn pointer_4to6(p: u8) -> Result<u8, DropReason> {
    Ok(match p {
        0 => 0,        // version / IHL → version / traffic class
        1 => 1,        // TOS → traffic class
        2 | 3 => 4,    // total length → payload length
        8 => 7,        // TTL → hop limit
        9 => 6,        // protocol → next header
        12..=15 => 8,  // source address
        16..=19 => 24, // destination address
        _ => return Err(DropReason::IcmpPointer),
    })
}

/// RFC 7915 5.2: IPv6 header byte offset → IPv4 header byte offset.
pub(super) fn pointer_6to4(p: u32) -> Result<u8, DropReason> {
    Ok(match p {
        0 => 0,
        1 => 1,
        4 | 5 => 2,
        6 => 9,
        7 => 8,
        8..=23 => 12,
        24..=39 => 16,
        _ => return Err(DropReason::IcmpPointer),
    })
}

/// RFC 1191 section 7 plateaus, largest first.
const PLATEAUS: [u16; 11] = [65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68];

/// RFC 1191 7: the largest plateau below the length of the packet that did not fit.
pub(super) fn plateau_below(len: u16) -> u16 {
    PLATEAUS.iter().copied().find(|&p| p < len).unwrap_or(68)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(ty: u8, code: u8, rest: Rest) -> Result<ErrorMap, DropReason> {
        Ok(ErrorMap { ty, code, rest })
    }
    const DROP: Result<ErrorMap, DropReason> = Err(DropReason::IcmpUntranslatable);

    // RFC 7915 4.2: every row of the ICMPv4 error table.
    #[test]
    fn rfc7915_4_2_error_table() {
        for code in [0, 1, 5, 6, 7, 8, 11, 12] {
            assert_eq!(error_4to6(3, code, 0), e(1, 0, Rest::Unused), "3/{code}");
        }
        assert_eq!(error_4to6(3, 2, 0), e(4, 1, Rest::Pointer(6)));
        assert_eq!(error_4to6(3, 3, 0), e(1, 4, Rest::Unused));
        assert_eq!(error_4to6(3, 4, 0), e(2, 0, Rest::Mtu));
        for code in [9, 10, 13, 15] {
            assert_eq!(error_4to6(3, code, 0), e(1, 1, Rest::Unused), "3/{code}");
        }
        for code in [14, 16, 200] {
            assert_eq!(error_4to6(3, code, 0), DROP, "3/{code}");
        }
        assert_eq!(error_4to6(11, 0, 0), e(3, 0, Rest::Unused));
        assert_eq!(error_4to6(11, 1, 0), e(3, 1, Rest::Unused));
        assert_eq!(error_4to6(12, 0, 9), e(4, 0, Rest::Pointer(6)));
        assert_eq!(error_4to6(12, 2, 8), e(4, 0, Rest::Pointer(7)));
        assert_eq!(error_4to6(12, 1, 0), DROP);
        for ty in [4, 5, 6, 9, 10, 13, 14, 15, 16, 17, 18, 42] {
            assert_eq!(error_4to6(ty, 0, 0), DROP, "type {ty}");
        }
    }

    // RFC 7915 5.2: every row of the ICMPv6 error table.
    #[test]
    fn rfc7915_5_2_error_table() {
        for code in [0, 2, 3] {
            assert_eq!(error_6to4(1, code, 0), e(3, 1, Rest::Unused), "1/{code}");
        }
        assert_eq!(error_6to4(1, 1, 0), e(3, 10, Rest::Unused));
        assert_eq!(error_6to4(1, 4, 0), e(3, 3, Rest::Unused));
        assert_eq!(error_6to4(1, 5, 0), DROP);
        assert_eq!(error_6to4(1, 6, 0), DROP);
        assert_eq!(error_6to4(2, 0, 0), e(3, 4, Rest::Mtu));
        assert_eq!(error_6to4(3, 0, 0), e(11, 0, Rest::Unused));
        assert_eq!(error_6to4(3, 1, 0), e(11, 1, Rest::Unused));
        assert_eq!(error_6to4(4, 0, 7), e(12, 0, Rest::Pointer(8)));
        assert_eq!(error_6to4(4, 1, 0), e(3, 2, Rest::Unused));
        assert_eq!(error_6to4(4, 2, 0), DROP);
        for ty in [100, 101, 127] {
            assert_eq!(error_6to4(ty, 0, 0), DROP);
        }
    }

    // RFC 7915 4.2: Parameter Problem pointer table, IPv4 → IPv6.
    #[test]
    fn rfc7915_4_2_pointer_table() {
        let rows: &[(u8, Option<u8>)] = &[
            (0, Some(0)),
            (1, Some(1)),
            (2, Some(4)),
            (3, Some(4)),
            (4, None),
            (5, None),
            (6, None),
            (7, None),
            (8, Some(7)),
            (9, Some(6)),
            (10, None),
            (11, None),
            (12, Some(8)),
            (15, Some(8)),
            (16, Some(24)),
            (19, Some(24)),
            (20, None),
        ];
        for &(p, want) in rows {
            assert_eq!(pointer_4to6(p).ok(), want, "pointer {p}");
        }
    }

    // RFC 7915 5.2: Parameter Problem pointer table, IPv6 → IPv4.
    #[test]
    fn rfc7915_5_2_pointer_table() {
        let rows: &[(u32, Option<u8>)] = &[
            (0, Some(0)),
            (1, Some(1)),
            (2, None),
            (3, None),
            (4, Some(2)),
            (5, Some(2)),
            (6, Some(9)),
            (7, Some(8)),
            (8, Some(12)),
            (23, Some(12)),
            (24, Some(16)),
            (39, Some(16)),
            (40, None),
            (1 << 20, None),
        ];
        for &(p, want) in rows {
            assert_eq!(pointer_6to4(p).ok(), want, "pointer {p}");
        }
    }

    // RFC 1191 7 (via RFC 7915 4.2): MTU 0 is estimated from the plateau below the packet size.
    #[test]
    fn rfc1191_plateaus() {
        assert_eq!(plateau_below(1500), 1492);
        assert_eq!(plateau_below(1492), 1006);
        assert_eq!(plateau_below(9000), 8166);
        assert_eq!(plateau_below(65535), 32000);
        assert_eq!(plateau_below(60), 68);
    }
}
