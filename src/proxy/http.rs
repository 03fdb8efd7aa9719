//! What the proxy itself writes on plain HTTP: the short answer to a
//! refused request, and a request head carrying the visitor's address
//! (RFC 7239 `Forwarded`, or the de facto `X-Forwarded-For`) in place of any
//! such field the visitor sent, which no backend may trust.

use crate::proxy::sites::ClientAddress;
use crate::proxy::sniff::Refusal;
use std::io::Write;
use std::net::IpAddr;

/// The answer to a request that names no site here (RFC 9110 15.5.20: 421
/// Misdirected Request, the request was sent to a server that cannot
/// answer for that name).
pub const NO_SITE: &[u8] =
    b"HTTP/1.1 421 Misdirected Request\r\nContent-Type: text/plain\r\nContent-Length: 29\r\nConnection: close\r\n\r\nno such site on this address\n";

/// The answer to a head that did not arrive whole within the deadline
/// (RFC 9110 15.5.9).
pub const TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\nrequest timeout\n";

/// The answer when the backend refused or reset the connection (RFC 9110 15.6.3).
pub const BAD_GATEWAY: &[u8] =
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 22\r\nConnection: close\r\n\r\nbackend not reachable\n";

/// The answer when the backend did not answer in time (RFC 9110 15.6.5).
pub const GATEWAY_TIMEOUT: &[u8] =
    b"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\nContent-Length: 23\r\nConnection: close\r\n\r\nbackend did not answer\n";

/// The answer to a refused head.
pub fn refusal(r: Refusal) -> &'static [u8] {
    match r.http_status() {
        431 => b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 25\r\nConnection: close\r\n\r\nrequest header too large\n",
        _ => b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbad request\n",
    }
}

/// `head` (a request line of `line_len` bytes, header fields, the empty
/// line: as [`crate::proxy::sniff`] delimits it) into `out`, with one field
/// for `client` after the request line and every Forwarded and
/// X-Forwarded-For field the visitor sent left out. The visitor's
/// Connection fields are replaced by `Connection: close` (RFC 9112 9.6):
/// the relay sees only a connection's first head, so a second request on
/// it would reach the backend with whatever address fields the visitor
/// wrote; one request per connection keeps every request's field true. `field` is the site's
/// [`ClientAddress`]: `Forwarded` (RFC 7239 4, an IPv6 address quoted and
/// bracketed as 6 says) or `XForwardedFor`. The bytes written, or None when
/// `out` is too small or `field` names no header field.
pub fn with_forwarded(
    head: &[u8],
    line_len: usize,
    client: IpAddr,
    field: ClientAddress,
    out: &mut [u8],
) -> Option<usize> {
    let mut w = std::io::Cursor::new(out);
    w.write_all(head.get(..line_len)?).ok()?;
    let r = match (field, client) {
        (ClientAddress::Forwarded, IpAddr::V4(a)) => write!(w, "Forwarded: for={a}\r\n"),
        (ClientAddress::Forwarded, IpAddr::V6(a)) => write!(w, "Forwarded: for=\"[{a}]\"\r\n"),
        (ClientAddress::XForwardedFor, a) => write!(w, "X-Forwarded-For: {a}\r\n"),
        (ClientAddress::None | ClientAddress::ProxyV2, _) => return None,
    };
    r.ok()?;
    w.write_all(b"Connection: close\r\n").ok()?;
    let mut rest = head.get(line_len..)?;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |p| p + 1);
        let (line, next) = rest.split_at(end);
        let name = line.split(|&b| b == b':').next().unwrap_or(&[]);
        let theirs = line.contains(&b':')
            && (name.eq_ignore_ascii_case(b"forwarded")
                || name.eq_ignore_ascii_case(b"x-forwarded-for")
                || name.eq_ignore_ascii_case(b"connection"));
        if !theirs {
            w.write_all(line).ok()?;
        }
        rest = next;
    }
    Some(w.position() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::sniff::{sniff, Sniff, SniffLimits};

    fn rewrite(req: &[u8], client: &str, style: ClientAddress) -> String {
        let Sniff::Http { head_len, line_len, .. } = sniff(req, &SniffLimits::default()) else { panic!("not HTTP") };
        let mut out = [0u8; 1024];
        let n = with_forwarded(&req[..head_len], line_len, client.parse().unwrap(), style, &mut out).unwrap();
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

    // RFC 7239 4 and 6: for= the visitor, an IPv6 address bracketed and
    // quoted; what the visitor claimed is not passed on.
    #[test]
    fn rfc7239_forwarded_replaces_the_visitors_own() {
        let req = b"GET / HTTP/1.1\r\nHost: a.example\r\nForwarded: for=10.0.0.1\r\nx-forwarded-for: 1.2.3.4\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n";
        assert_eq!(
            rewrite(req, "198.51.100.7", ClientAddress::Forwarded),
            "GET / HTTP/1.1\r\nForwarded: for=198.51.100.7\r\nConnection: close\r\nHost: a.example\r\nAccept: */*\r\n\r\n"
        );
        assert_eq!(
            rewrite(req, "2001:db8::7", ClientAddress::Forwarded),
            "GET / HTTP/1.1\r\nForwarded: for=\"[2001:db8::7]\"\r\nConnection: close\r\nHost: a.example\r\nAccept: */*\r\n\r\n"
        );
        assert_eq!(
            rewrite(req, "198.51.100.7", ClientAddress::XForwardedFor),
            "GET / HTTP/1.1\r\nX-Forwarded-For: 198.51.100.7\r\nConnection: close\r\nHost: a.example\r\nAccept: */*\r\n\r\n"
        );
    }

    #[test]
    fn a_buffer_too_small_is_none_not_a_cut_head() {
        let req = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
        let mut out = [0u8; 30];
        assert_eq!(with_forwarded(req, 16, "192.0.2.1".parse().unwrap(), ClientAddress::Forwarded, &mut out), None);
        let mut big = [0u8; 256];
        assert_eq!(with_forwarded(req, 16, "192.0.2.1".parse().unwrap(), ClientAddress::ProxyV2, &mut big), None);
    }

    // The answers' Content-Length matches their bodies (RFC 9110 8.6).
    #[test]
    fn rfc9110_8_6_answers_have_their_length() {
        for a in [
            NO_SITE,
            TIMEOUT,
            BAD_GATEWAY,
            GATEWAY_TIMEOUT,
            refusal(Refusal::BadHost),
            refusal(Refusal::HttpHeadTooLarge),
        ] {
            let s = std::str::from_utf8(a).unwrap();
            let (head, body) = s.split_once("\r\n\r\n").unwrap();
            let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
            assert_eq!(len, body.len(), "{head}");
        }
    }
}
