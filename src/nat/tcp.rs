//! The per-session TCP state machine of RFC 6146 section 3.5.2.2, as a pure
//! function from (state, side, flags) to (state, which lifetime to apply).

/// RFC 6146 3.5.2.2 session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    Closed,
    V6Init,
    V4Init,
    Established,
    V4FinRcv,
    V6FinRcv,
    V4FinV6FinRcv,
    Trans,
}

impl TcpState {
    /// Every state, in declaration order (`state as usize` indexes it).
    pub const ALL: [TcpState; 8] = [
        TcpState::Closed,
        TcpState::V6Init,
        TcpState::V4Init,
        TcpState::Established,
        TcpState::V4FinRcv,
        TcpState::V6FinRcv,
        TcpState::V4FinV6FinRcv,
        TcpState::Trans,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TcpState::Closed => "closed",
            TcpState::V6Init => "v6_init",
            TcpState::V4Init => "v4_init",
            TcpState::Established => "established",
            TcpState::V4FinRcv => "v4_fin_rcv",
            TcpState::V6FinRcv => "v6_fin_rcv",
            TcpState::V4FinV6FinRcv => "v4_fin_v6_fin_rcv",
            TcpState::Trans => "trans",
        }
    }
}

/// Which side a segment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    V6,
    V4,
}

/// The lifetime a transition sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// TCP_TRANS (4 min default).
    TransLife,
    /// TCP_EST (2 h 4 min default).
    EstLife,
    /// Leave the expiry time as it is.
    Keep,
}

pub const SYN: u8 = 0x02;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;

/// RFC 6146 3.5.2.2: the next state and lifetime for a segment with `flags`
/// from `side` in state `s`. CLOSED + V4 SYN is handled by the table (it
/// depends on the BIB and the filtering policy) and answers V4Init here.
pub fn transition(s: TcpState, side: Side, flags: u8) -> (TcpState, Lifetime) {
    use Lifetime::*;
    use Side::*;
    use TcpState::*;
    let syn = flags & SYN != 0;
    let fin = flags & FIN != 0;
    let rst = flags & RST != 0;
    match (s, side) {
        (Closed, V6) if syn => (V6Init, TransLife),
        (Closed, V4) if syn => (V4Init, TransLife),
        (Closed, _) => (Closed, Keep),
        (V6Init, V4) if syn => (Established, EstLife),
        (V6Init, V6) if syn => (V6Init, TransLife),
        (V4Init, V6) if syn => (Established, EstLife),
        (V4Init, V4) if syn => (V4Init, TransLife),
        (V6Init | V4Init, _) => (s, Keep),
        (Established, _) if rst => (Trans, TransLife),
        (Established, V4) if fin => (V4FinRcv, EstLife),
        (Established, V6) if fin => (V6FinRcv, EstLife),
        (Established, _) => (Established, EstLife),
        (V4FinRcv, V6) if fin => (V4FinV6FinRcv, TransLife),
        (V6FinRcv, V4) if fin => (V4FinV6FinRcv, TransLife),
        (V4FinRcv | V6FinRcv, _) => (s, EstLife),
        (V4FinV6FinRcv, _) => (V4FinV6FinRcv, Keep),
        (Trans, _) if rst => (Trans, Keep),
        (Trans, _) => (Established, EstLife),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Lifetime::*;
    use Side::*;
    use TcpState::*;

    // RFC 6146 3.5.2.2: every transition of the state machine, table-driven.
    #[test]
    fn rfc6146_3_5_2_2_transitions() {
        let ack = 0x10;
        let rows: &[(TcpState, Side, u8, TcpState, Lifetime)] = &[
            (Closed, V6, SYN, V6Init, TransLife),
            (Closed, V4, SYN, V4Init, TransLife),
            (Closed, V6, ack, Closed, Keep),
            (V6Init, V4, SYN | ack, Established, EstLife),
            (V6Init, V6, SYN, V6Init, TransLife),
            (V6Init, V6, ack, V6Init, Keep),
            (V4Init, V6, SYN, Established, EstLife),
            (V4Init, V4, SYN, V4Init, TransLife),
            (Established, V4, FIN | ack, V4FinRcv, EstLife),
            (Established, V6, FIN | ack, V6FinRcv, EstLife),
            (Established, V6, RST, Trans, TransLife),
            (Established, V4, RST, Trans, TransLife),
            (Established, V6, ack, Established, EstLife),
            (V4FinRcv, V6, FIN | ack, V4FinV6FinRcv, TransLife),
            (V6FinRcv, V4, FIN | ack, V4FinV6FinRcv, TransLife),
            (V4FinRcv, V4, ack, V4FinRcv, EstLife),
            (V6FinRcv, V6, ack, V6FinRcv, EstLife),
            (V4FinV6FinRcv, V6, ack, V4FinV6FinRcv, Keep),
            (V4FinV6FinRcv, V4, FIN, V4FinV6FinRcv, Keep),
            (Trans, V6, ack, Established, EstLife),
            (Trans, V4, ack, Established, EstLife),
            (Trans, V4, RST, Trans, Keep),
        ];
        for &(s, side, flags, want_s, want_l) in rows {
            assert_eq!(transition(s, side, flags), (want_s, want_l), "{s:?} + {side:?} {flags:#x}");
        }
    }
}
