//! The name a connection asks for, from its first bytes: the server_name of
//! a TLS ClientHello or the host of an HTTP/1.x request. Pure: call it with
//! everything received so far; it answers [`Sniff::NeedMore`] until it can
//! decide, and never reads past `limits`. No allocation: names come back
//! in a fixed buffer, lower-cased.

use std::fmt;

/// How much a client may send before it has named a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SniffLimits {
    /// A ClientHello's handshake message, reassembled across records.
    pub max_client_hello: usize,
    /// An HTTP request line and header section, up to the empty line.
    pub max_http_head: usize,
}

impl Default for SniffLimits {
    fn default() -> Self {
        // RFC 8446 5.1: one record carries at most 2^14 bytes; a ClientHello
        // with post-quantum key shares is some 2 KB. 8 KiB of HTTP head is
        // what common servers allow.
        SniffLimits { max_client_hello: 16384, max_http_head: 8192 }
    }
}

/// A DNS host name as a site is named: lower-case LDH labels of 1 to 63
/// bytes, at most 253 bytes, no trailing dot (RFC 6066 3, RFC 1123 2.1).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HostName {
    buf: [u8; 253],
    len: u8,
}

impl HostName {
    /// `raw` checked and lower-cased; None when it is not a host name (an
    /// IP literal included: RFC 6066 3 does not allow them in server_name,
    /// and a site is a name).
    pub fn parse(raw: &[u8]) -> Option<HostName> {
        if raw.is_empty() || raw.len() > 253 {
            return None;
        }
        let mut h = HostName { buf: [0; 253], len: raw.len() as u8 };
        let mut label = 0usize;
        let mut all_digits = true;
        for (i, &c) in raw.iter().enumerate() {
            let c = c.to_ascii_lowercase();
            match c {
                b'a'..=b'z' | b'0'..=b'9' => label += 1,
                b'-' if label > 0 && raw.get(i + 1).is_some_and(|&n| n != b'.') => label += 1,
                b'.' if label > 0 => label = 0,
                _ => return None,
            }
            if label > 63 {
                return None;
            }
            if c.is_ascii_alphabetic() || c == b'-' {
                all_digits = false;
            }
            h.buf[i] = c;
        }
        // A trailing dot, or all digits and dots (an IPv4 literal).
        if label == 0 || all_digits {
            return None;
        }
        Some(h)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters, digits, '-' and '.' were stored.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Debug for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_str())
    }
}

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// Not enough yet to decide; read more (within the deadline).
    NeedMore,
    /// A TLS ClientHello naming `name`; `acme` when its ALPN offers
    /// `acme-tls/1` (RFC 8737: a TLS-ALPN-01 challenge, relayed like the rest).
    Tls { name: HostName, acme: bool },
    /// An HTTP/1.x request for `name`; the head (request line and header
    /// fields, with the empty line) is `head_len` bytes, its request line
    /// `line_len` (with its CRLF): where a Forwarded field may go.
    Http { name: HostName, head_len: usize, line_len: usize },
    /// Closed, and why.
    Refuse(Refusal),
}

/// Why a connection is closed before it reaches a backend; each has a
/// counter and, for HTTP, an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Neither a TLS handshake record nor an HTTP request line.
    NotTlsOrHttp,
    /// A TLS record or handshake that breaks RFC 8446's framing.
    BadTls,
    /// A ClientHello with no server_name (or one that is not a host name).
    NoServerName,
    /// A ClientHello above `max_client_hello`.
    ClientHelloTooLarge,
    /// An HTTP head that breaks RFC 9112 (obs-fold, space before a colon,
    /// a bare LF in the request line, no version).
    BadHttp,
    /// No Host field, several, or one that is not a host name (RFC 9112 3.2: 400).
    BadHost,
    /// An HTTP head above `max_http_head` (RFC 6585 5: 431).
    HttpHeadTooLarge,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::NotTlsOrHttp,
        Refusal::BadTls,
        Refusal::NoServerName,
        Refusal::ClientHelloTooLarge,
        Refusal::BadHttp,
        Refusal::BadHost,
        Refusal::HttpHeadTooLarge,
    ];

    /// The counter's name.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::NotTlsOrHttp => "not_tls_or_http",
            Refusal::BadTls => "bad_tls",
            Refusal::NoServerName => "no_server_name",
            Refusal::ClientHelloTooLarge => "client_hello_too_large",
            Refusal::BadHttp => "bad_http",
            Refusal::BadHost => "bad_host",
            Refusal::HttpHeadTooLarge => "http_head_too_large",
        }
    }

    /// The HTTP status an HTTP client gets for it (TLS clients get a close).
    pub fn http_status(self) -> u16 {
        match self {
            Refusal::HttpHeadTooLarge => 431,
            _ => 400,
        }
    }
}

/// Decide on `buf`, the bytes received so far.
pub fn sniff(buf: &[u8], limits: &SniffLimits) -> Sniff {
    match buf.first() {
        None => Sniff::NeedMore,
        // RFC 8446 5.1: ContentType handshake(22).
        Some(22) => tls(buf, limits),
        Some(c) if c.is_ascii_uppercase() => http(buf, limits),
        Some(_) => Sniff::Refuse(Refusal::NotTlsOrHttp),
    }
}

/// The handshake bytes of consecutive handshake records, read as one
/// stream (RFC 8446 5.1: a handshake message may span records).
struct Fragments<'a> {
    buf: &'a [u8],
    /// Offset of the next unread byte of the current record, and its end.
    at: usize,
    end: usize,
    /// The whole input has been consumed (more may yet arrive).
    short: bool,
    bad: bool,
}

impl<'a> Fragments<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fragments { buf, at: 0, end: 0, short: false, bad: false }
    }

    fn byte(&mut self) -> Option<u8> {
        while self.at == self.end {
            // The next record header: type 22, legacy version 3.x, length 1..=2^14.
            let h = self.end;
            let avail = &self.buf[h.min(self.buf.len())..self.buf.len().min(h + 5)];
            // What has arrived of the header is checked at once.
            if avail.first().is_some_and(|&t| t != 22) || avail.get(1).is_some_and(|&v| v != 3) {
                self.bad = true;
                return None;
            }
            let Some(hdr) = self.buf.get(h..h + 5) else {
                self.short = true;
                return None;
            };
            let len = u16::from_be_bytes([hdr[3], hdr[4]]) as usize;
            if hdr[0] != 22 || hdr[1] != 3 || len == 0 || len > 16384 {
                self.bad = true;
                return None;
            }
            self.at = h + 5;
            self.end = h + 5 + len;
        }
        let Some(&b) = self.buf.get(self.at) else {
            self.short = true;
            return None;
        };
        self.at += 1;
        Some(b)
    }

    fn u16(&mut self) -> Option<usize> {
        Some(((self.byte()? as usize) << 8) | self.byte()? as usize)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        for _ in 0..n {
            self.byte()?;
        }
        Some(())
    }
}

fn tls(buf: &[u8], limits: &SniffLimits) -> Sniff {
    let mut f = Fragments::new(buf);
    let r = client_hello(&mut f, limits);
    match r {
        Ok(s) => s,
        Err(()) if f.bad => Sniff::Refuse(Refusal::BadTls),
        Err(()) if f.short => Sniff::NeedMore,
        Err(()) => Sniff::Refuse(Refusal::BadTls),
    }
}

/// RFC 8446 4.1.2 ClientHello, reading only what locates server_name
/// (RFC 6066 3) and ALPN (RFC 7301 3.1). Err(()) with `f.short` is "more
/// bytes needed"; any other Err is malformed.
fn client_hello(f: &mut Fragments, limits: &SniffLimits) -> Result<Sniff, ()> {
    let msg_type = f.byte().ok_or(())?;
    if msg_type != 1 {
        return Err(());
    }
    let len = ((f.byte().ok_or(())? as usize) << 16) | f.u16().ok_or(())?;
    if len > limits.max_client_hello {
        return Ok(Sniff::Refuse(Refusal::ClientHelloTooLarge));
    }
    let mut left = len;
    // Reads within the message, counting down what is left of it.
    macro_rules! take {
        (byte) => {{
            left = left.checked_sub(1).ok_or(())?;
            f.byte().ok_or(())?
        }};
        (u16) => {{
            left = left.checked_sub(2).ok_or(())?;
            f.u16().ok_or(())?
        }};
        (skip $n:expr) => {{
            let n = $n;
            left = left.checked_sub(n).ok_or(())?;
            f.skip(n).ok_or(())?
        }};
    }
    take!(skip 2 + 32); // legacy_version, random
    let sid = take!(byte) as usize;
    if sid > 32 {
        return Err(());
    }
    take!(skip sid);
    let suites = take!(u16);
    if suites < 2 || suites % 2 != 0 {
        return Err(());
    }
    take!(skip suites);
    let comp = take!(byte) as usize;
    if comp < 1 {
        return Err(());
    }
    take!(skip comp);
    if left == 0 {
        // No extensions at all: no server_name.
        return Ok(Sniff::Refuse(Refusal::NoServerName));
    }
    let mut ext_left = take!(u16);
    if ext_left != left {
        return Err(());
    }
    let mut name: Option<HostName> = None;
    let mut acme = false;
    let mut seen_sni = false;
    while ext_left > 0 {
        let ty = take!(u16);
        let elen = take!(u16);
        ext_left = ext_left.checked_sub(4 + elen).ok_or(())?;
        match ty {
            0 => {
                // RFC 8446 4.2: an extension type appears at most once.
                if seen_sni {
                    return Err(());
                }
                seen_sni = true;
                // ServerNameList: a 2-byte length, then (type, 2-byte length, name).
                let mut list = take!(u16);
                if list + 2 != elen {
                    return Err(());
                }
                while list > 0 {
                    let nt = take!(byte);
                    let nlen = take!(u16);
                    list = list.checked_sub(3 + nlen).ok_or(())?;
                    if nlen > 255 {
                        take!(skip nlen);
                        continue;
                    }
                    let mut raw = [0u8; 255];
                    for b in raw.iter_mut().take(nlen) {
                        *b = take!(byte);
                    }
                    // RFC 6066 3: host_name(0) is the only type; one per type.
                    if nt == 0 && name.is_none() {
                        name = HostName::parse(&raw[..nlen]);
                        if name.is_none() {
                            return Ok(Sniff::Refuse(Refusal::NoServerName));
                        }
                    }
                }
            }
            16 => {
                // ProtocolNameList: a 2-byte length, then (1-byte length, name).
                let mut list = take!(u16);
                if list + 2 != elen {
                    return Err(());
                }
                while list > 0 {
                    let plen = take!(byte) as usize;
                    list = list.checked_sub(1 + plen).ok_or(())?;
                    let mut p = [0u8; 10];
                    for k in 0..plen {
                        let b = take!(byte);
                        if let Some(slot) = p.get_mut(k) {
                            *slot = b;
                        }
                    }
                    acme |= plen == 10 && &p == b"acme-tls/1";
                }
            }
            _ => take!(skip elen),
        }
    }
    match name {
        Some(name) => Ok(Sniff::Tls { name, acme }),
        None => Ok(Sniff::Refuse(Refusal::NoServerName)),
    }
}

fn http(buf: &[u8], limits: &SniffLimits) -> Sniff {
    let window = &buf[..buf.len().min(limits.max_http_head)];
    // The head ends at the first empty line (RFC 9112 2.1).
    let Some(end) = window.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) else {
        // A method is a token of capitals; a lone LF ends a line nobody
        // here accepts (RFC 9112 2.2 lets a server refuse bare LF).
        match window.iter().position(|&b| b == b'\n') {
            Some(e) => {
                let line = &window[..e];
                let Some(line) = line.strip_suffix(b"\r") else { return Sniff::Refuse(first_line_refusal(line)) };
                if request_line(line).is_none() {
                    return Sniff::Refuse(first_line_refusal(line));
                }
            }
            None if !request_line_prefix_ok(window) => return Sniff::Refuse(first_line_refusal(window)),
            None => {}
        }
        return if buf.len() >= limits.max_http_head {
            Sniff::Refuse(Refusal::HttpHeadTooLarge)
        } else {
            Sniff::NeedMore
        };
    };
    let head = &window[..end];
    // Every line with its CR (the empty line's CRLF and the last LF cut off).
    let mut lines = head[..end - 3].split(|&b| b == b'\n');
    let line = lines.next().unwrap_or(&[]);
    let line_len = line.len() + 1;
    let Some(line) = line.strip_suffix(b"\r") else { return Sniff::Refuse(first_line_refusal(line)) };
    let Some((target, version)) = request_line(line) else { return Sniff::Refuse(first_line_refusal(line)) };
    let mut host: Option<&[u8]> = None;
    let mut hosts = 0;
    for l in lines {
        let Some(l) = l.strip_suffix(b"\r") else { return Sniff::Refuse(Refusal::BadHttp) };
        // RFC 9112 5.2: obs-fold refused; 5.1: no whitespace before the colon.
        if l.first().is_some_and(|&c| c == b' ' || c == b'\t') {
            return Sniff::Refuse(Refusal::BadHttp);
        }
        let Some(colon) = l.iter().position(|&b| b == b':') else { return Sniff::Refuse(Refusal::BadHttp) };
        let (name, value) = (&l[..colon], &l[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&c| is_tchar(c)) {
            return Sniff::Refuse(Refusal::BadHttp);
        }
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            host = Some(value.trim_ascii());
        }
    }
    // RFC 9112 3.2: exactly one Host in an HTTP/1.1 request; 3.2.2: with an
    // absolute-form target its authority names the site.
    let authority = match absolute_authority(target) {
        Some(a) => Some(a),
        None if hosts == 1 => host,
        None => None,
    };
    if hosts > 1 || (version == b"HTTP/1.1" && hosts == 0) {
        return Sniff::Refuse(Refusal::BadHost);
    }
    let Some(name) = authority.and_then(|a| HostName::parse(strip_port(a)?)) else {
        return Sniff::Refuse(Refusal::BadHost);
    };
    Sniff::Http { name, head_len: end, line_len }
}

/// RFC 9110 5.6.2 tchar.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// The longest method taken (RFC 9110 9: registered methods are short).
const MAX_METHOD: usize = 16;

/// An incomplete first line that could still become a request line: a
/// method of capitals so far, or one and a space, then no control bytes.
fn request_line_prefix_ok(w: &[u8]) -> bool {
    let m = w.iter().take_while(|c| c.is_ascii_uppercase()).count();
    if m > MAX_METHOD {
        return false;
    }
    m == w.len() || (m > 0 && w[m] == b' ' && w[m..].iter().all(|&c| c == b'\r' || !c.is_ascii_control()))
}

/// A first line that is not a request line: an HTTP client that got it
/// wrong (a method and a space), or something else altogether.
fn first_line_refusal(line: &[u8]) -> Refusal {
    let m = line.iter().take_while(|c| c.is_ascii_uppercase()).count();
    if m > 0 && m <= MAX_METHOD && line.get(m) == Some(&b' ') {
        Refusal::BadHttp
    } else {
        Refusal::NotTlsOrHttp
    }
}

/// `METHOD SP target SP HTTP/1.x` (RFC 9112 3): the target and version.
fn request_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    // Methods of capitals only (every method a site serves), no control bytes.
    if parts.next().is_some()
        || method.is_empty()
        || method.len() > MAX_METHOD
        || !method.iter().all(u8::is_ascii_uppercase)
        || line.iter().any(u8::is_ascii_control)
        || target.is_empty()
        || !(version == b"HTTP/1.1" || version == b"HTTP/1.0")
    {
        return None;
    }
    Some((target, version))
}

/// The authority of an absolute-form target (`http://host:port/path`).
fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    let rest = target
        .strip_prefix(b"http://")
        .or_else(|| target.strip_prefix(b"HTTP://"))
        .or_else(|| target.strip_prefix(b"https://"))?;
    let end = rest.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(rest.len());
    Some(&rest[..end])
}

/// `host` or `host:port` (digits); None for userinfo or a bracketed literal.
fn strip_port(a: &[u8]) -> Option<&[u8]> {
    if a.contains(&b'@') || a.first() == Some(&b'[') {
        return None;
    }
    match a.iter().position(|&b| b == b':') {
        Some(c) if a[c + 1..].iter().all(u8::is_ascii_digit) => Some(&a[..c]),
        Some(_) => None,
        None => Some(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as a client sends it: one record, or `split` records.
    fn client_hello(sni: Option<&str>, alpn: &[&str], split: usize) -> Vec<u8> {
        let mut ext = vec![];
        if let Some(n) = sni {
            let mut list = vec![0u8];
            list.extend((n.len() as u16).to_be_bytes());
            list.extend(n.as_bytes());
            ext.extend(0u16.to_be_bytes());
            ext.extend(((list.len() + 2) as u16).to_be_bytes());
            ext.extend((list.len() as u16).to_be_bytes());
            ext.extend(list);
        }
        if !alpn.is_empty() {
            let mut list = vec![];
            for p in alpn {
                list.push(p.len() as u8);
                list.extend(p.as_bytes());
            }
            ext.extend(16u16.to_be_bytes());
            ext.extend(((list.len() + 2) as u16).to_be_bytes());
            ext.extend((list.len() as u16).to_be_bytes());
            ext.extend(list);
        }
        // supported_versions (43): TLS 1.3, as every modern client sends.
        ext.extend([0, 43, 0, 3, 2, 3, 4]);
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(32);
        body.extend([9u8; 32]);
        body.extend([0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend([1, 0]);
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut hs = vec![1];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut out = vec![];
        let step = hs.len().div_ceil(split.max(1));
        for chunk in hs.chunks(step) {
            out.extend([22, 3, 1]);
            out.extend((chunk.len() as u16).to_be_bytes());
            out.extend(chunk);
        }
        out
    }

    fn l() -> SniffLimits {
        SniffLimits::default()
    }

    fn tls_name(s: Sniff) -> (String, bool) {
        match s {
            Sniff::Tls { name, acme } => (name.as_str().to_string(), acme),
            other => panic!("not a TLS name: {other:?}"),
        }
    }

    // The sniff fuzz target's independent readings (testpkt) find what
    // sniff finds on the builder's ClientHello (RFC 6066 3) and on an
    // absolute-form request (RFC 9112 3.2.2: the target's authority wins).
    #[test]
    fn naive_readings_find_the_sniffed_names() {
        let ch = client_hello(Some("Www.Example.COM"), &["h2"], 1);
        assert_eq!(crate::testpkt::naive_sni(&ch), Some(vec![b"Www.Example.COM".to_vec()]));
        assert_eq!(crate::testpkt::naive_sni(&client_hello(None, &[], 1)), Some(vec![]));
        crate::testpkt::run_sniff_fuzz_input(&ch);
        let head = b"GET http://a.example:8080/x HTTP/1.1\r\nHost: b.example\r\n\r\n";
        let hosts = crate::testpkt::naive_http_hosts(head);
        assert_eq!(hosts, vec![b"a.example".to_vec(), b"b.example".to_vec()]);
        crate::testpkt::run_sniff_fuzz_input(head);
        crate::testpkt::run_sniff_fuzz_input(b"GET / HTTP/1.1\r\nhOsT:  C.example:443 \r\n\r\n");
    }

    // RFC 6066 3: the server_name extension's host_name names the site.
    #[test]
    fn rfc6066_3_server_name_from_client_hello() {
        let ch = client_hello(Some("Www.Example.COM"), &["h2", "http/1.1"], 1);
        assert_eq!(tls_name(sniff(&ch, &l())), ("www.example.com".into(), false));
    }

    // RFC 8446 5.1: a handshake message may be fragmented across records;
    // every prefix of the bytes is "more, please", never a refusal.
    #[test]
    fn rfc8446_5_1_client_hello_across_records_and_every_prefix() {
        for split in [1, 2, 3, 7] {
            let ch = client_hello(Some("site.example"), &[], split);
            for cut in 0..ch.len() {
                assert_eq!(sniff(&ch[..cut], &l()), Sniff::NeedMore, "split {split}, {cut} bytes");
            }
            assert_eq!(tls_name(sniff(&ch, &l())).0, "site.example", "split {split}");
        }
    }

    // RFC 8737 / RFC 7301: an ALPN offering acme-tls/1 is a TLS-ALPN-01
    // challenge: seen, and relayed like any other connection.
    #[test]
    fn rfc8737_acme_tls_alpn_seen() {
        let ch = client_hello(Some("a.example"), &["acme-tls/1"], 1);
        assert_eq!(tls_name(sniff(&ch, &l())), ("a.example".into(), true));
    }

    // RFC 6066 3: no server_name, an IP literal, or a name with a trailing
    // dot names no site.
    #[test]
    fn rfc6066_3_no_or_bad_server_name_refused() {
        for sni in
            [None, Some("192.0.2.1"), Some("a.example."), Some("a..example"), Some("-a.example"), Some("a_b.example")]
        {
            let ch = client_hello(sni, &["h2"], 1);
            assert_eq!(sniff(&ch, &l()), Sniff::Refuse(Refusal::NoServerName), "{sni:?}");
        }
    }

    // RFC 8446 5.1: a record longer than 2^14, another content type in the
    // middle, a handshake that is not a ClientHello: refused, not waited on.
    #[test]
    fn rfc8446_5_1_bad_framing_refused() {
        let mut big = client_hello(Some("a.example"), &[], 1);
        big[3..5].copy_from_slice(&16385u16.to_be_bytes());
        assert_eq!(sniff(&big, &l()), Sniff::Refuse(Refusal::BadTls));
        let mut two = client_hello(Some("a.example"), &[], 2);
        let second = 5 + u16::from_be_bytes([two[3], two[4]]) as usize;
        two[second] = 23;
        assert_eq!(sniff(&two, &l()), Sniff::Refuse(Refusal::BadTls));
        let mut sh = client_hello(Some("a.example"), &[], 1);
        sh[5] = 2;
        assert_eq!(sniff(&sh, &l()), Sniff::Refuse(Refusal::BadTls));
    }

    #[test]
    fn client_hello_over_the_limit_refused_from_its_length() {
        let ch = client_hello(Some("a.example"), &[], 1);
        let small = SniffLimits { max_client_hello: 40, ..l() };
        assert_eq!(sniff(&ch[..9], &small), Sniff::Refuse(Refusal::ClientHelloTooLarge));
    }

    fn http_name(s: Sniff) -> String {
        match s {
            Sniff::Http { name, .. } => name.as_str().to_string(),
            other => panic!("not an HTTP name: {other:?}"),
        }
    }

    // RFC 9112 3.2: the Host field names the site, its port aside.
    #[test]
    fn rfc9112_3_2_host_names_the_site() {
        let req = b"GET /x HTTP/1.1\r\nUser-Agent: t\r\nHOST: Blog.Example:80\r\n\r\nbody";
        match sniff(req, &l()) {
            Sniff::Http { name, head_len, line_len } => {
                assert_eq!(name.as_str(), "blog.example");
                assert_eq!((head_len, line_len), (req.len() - 4, 17));
            }
            other => panic!("{other:?}"),
        }
        for cut in 0..req.len() - 4 {
            assert_eq!(sniff(&req[..cut], &l()), Sniff::NeedMore, "{cut} bytes");
        }
    }

    // RFC 9112 3.2.2: an absolute-form target's authority names the site.
    #[test]
    fn rfc9112_3_2_2_absolute_form() {
        assert_eq!(http_name(sniff(b"GET http://b.example/p HTTP/1.1\r\nHost: a.example\r\n\r\n", &l())), "b.example");
    }

    // RFC 9112 3.2: no Host in HTTP/1.1, two Hosts, or a Host that is no
    // host name: 400. HTTP/1.0 without a Host names no site either.
    #[test]
    fn rfc9112_3_2_bad_host_refused() {
        for req in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: user@a.example\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.example:http\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
        ] {
            assert_eq!(sniff(req, &l()), Sniff::Refuse(Refusal::BadHost), "{}", String::from_utf8_lossy(req));
        }
    }

    // RFC 9112 5.1 and 5.2: whitespace before a colon and obs-fold are
    // refused; so is a bare LF and an unknown version.
    #[test]
    fn rfc9112_5_malformed_heads_refused() {
        for req in [
            &b"GET / HTTP/1.1\r\nHost : a.example\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a.example\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a.example\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: a.example\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: a.example\r\n\r\n",
        ] {
            assert_eq!(sniff(req, &l()), Sniff::Refuse(Refusal::BadHttp), "{}", String::from_utf8_lossy(req));
        }
    }

    // RFC 6585 5: a head that does not end within the limit: 431.
    #[test]
    fn rfc6585_5_head_too_large() {
        let mut req = b"GET / HTTP/1.1\r\nHost: a.example\r\nX: ".to_vec();
        req.resize(9000, b'a');
        assert_eq!(sniff(&req, &l()), Sniff::Refuse(Refusal::HttpHeadTooLarge));
        assert_eq!(Refusal::HttpHeadTooLarge.http_status(), 431);
    }

    #[test]
    fn other_protocols_refused_at_once() {
        for first in [&b"SSH-2.0-x\r\n"[..], b"\x00\x01", b"get / HTTP/1.1\r\n", b"\x16\x02\x00"] {
            assert!(matches!(sniff(first, &l()), Sniff::Refuse(_)), "{first:?}");
        }
    }
}
