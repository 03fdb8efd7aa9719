//! The control protocol between `nat64ctl` and the daemon, over a Unix
//! stream socket: the client sends one request as a line of JSON, the
//! daemon answers with one line of JSON and closes the connection.
//!
//! ```text
//! > {"cmd":"stats"}
//! < {"ok":true,"result":{...StatsReport...}}
//! > {"cmd":"bib_remove","proto":"tcp","ipv6":"[2001:db8::80]:80"}
//! < {"ok":false,"error":"no static BIB entry for [2001:db8::80]:80"}
//! ```
//!
//! The `sessions` and `bib` answers are streamed as the table is walked,
//! so their `matching` count follows the list in the line:
//! `{"ok":true,"result":{"sessions":[...],"matching":1500}}`.
//!
//! Commands: `stats`, `sessions` (optional `proto`, `addr`, `limit`),
//! `bib` (optional `proto`, `addr`), `bib_add` (`proto`, `ipv6`, `ipv4`),
//! `bib_remove` (`proto`, `ipv6`), `who` (`addr`, optional `port`, `proto`),
//! `config`, `reload`, `snapshot`, `proxy` (optional `limit`).

use crate::config::StaticBib;
use crate::nat::Proto;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Longest request line the daemon reads.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Stats,
    Sessions {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proto: Option<Proto>,
        /// Matches the IPv6 client, its pool4 address or the IPv4 remote.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addr: Option<IpAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    Bib {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proto: Option<Proto>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addr: Option<IpAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    BibAdd(StaticBib),
    /// Who holds a pool4 transport address now (`addr` IPv4 with `port`),
    /// or what an IPv6 client's subscriber holds (`addr` IPv6).
    Who {
        addr: IpAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proto: Option<Proto>,
    },
    BibRemove {
        proto: Proto,
        ipv6: SocketAddrV6,
    },
    Config,
    Reload,
    /// Write the state file now ([state] file).
    Snapshot,
    /// Active/standby sync: the status, or a role change.
    Sync {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<SyncAction>,
    },
    /// The inbound relay's open connections, oldest first.
    Proxy {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
}

/// A sync role change (`nat64ctl sync promote` / `demote`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncAction {
    /// Become the active gateway: take over the synced sessions and serve a standby.
    Promote,
    /// Become the standby: follow the active's state.
    Demote,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub result: serde_json::Value,
}

impl Response {
    pub fn ok(result: serde_json::Value) -> Self {
        Response { ok: true, error: None, result }
    }
    pub fn err(e: impl Into<String>) -> Self {
        Response { ok: false, error: Some(e.into()), result: serde_json::Value::Null }
    }
}

/// One session, as `sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLine {
    pub proto: Proto,
    pub ipv6: SocketAddrV6,
    pub ipv4: std::net::SocketAddrV4,
    pub remote: std::net::SocketAddrV4,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub expires_in_secs: u64,
}

/// The `sessions` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    /// Sessions matching the filter (more than listed when the limit cut it).
    pub matching: usize,
    pub sessions: Vec<SessionLine>,
}

/// The `bib` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BibList {
    /// Entries matching the filter (more than listed when the limit cut it).
    pub matching: usize,
    pub bibs: Vec<BibLine>,
}

/// One holding in a `who` answer: a BIB entry, a port block, or a
/// deterministic block, and who it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoLine {
    /// "bib", "block" or "deterministic".
    pub kind: String,
    pub proto: Proto,
    /// The subscriber: a prefix (blocks) or the client address as a /128.
    pub subscriber: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<SocketAddrV6>,
    pub pool4: Ipv4Addr,
    pub port_lo: u16,
    pub port_hi: u16,
}

/// The most lines one `sessions` or `bib` request may ask for (issue 18: a
/// dump of a million sessions took the daemon to 1.3 GB). Filters and the
/// counts in `nat64ctl stats` answer most questions without a dump.
pub const MAX_DUMP: usize = 100_000;

/// One BIB entry, as `bib` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BibLine {
    pub proto: Proto,
    pub ipv6: SocketAddrV6,
    pub ipv4: std::net::SocketAddrV4,
    #[serde(rename = "static")]
    pub is_static: bool,
    pub sessions: u32,
}

/// True when `a` is one of the addresses given.
pub fn addr_matches(want: Option<IpAddr>, v6: Ipv6Addr, v4s: &[Ipv4Addr]) -> bool {
    match want {
        None => true,
        Some(IpAddr::V6(a)) => a == v6,
        Some(IpAddr::V4(a)) => v4s.contains(&a),
    }
}

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot reach nat64d at {path}: {source} (is the daemon running? --socket names another socket)")]
    Connect { path: String, source: std::io::Error },
    #[error("nat64d at {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("nat64d at {path} sent an answer that is not valid: {why}")]
    Protocol { path: String, why: String },
    #[error("{0}")]
    Refused(String),
}

/// Send one request and wait (up to `timeout`) for its answer.
pub fn call(path: &Path, req: &Request, timeout: Duration) -> Result<serde_json::Value, CallError> {
    let p = path.display().to_string();
    let mut s = UnixStream::connect(path).map_err(|source| CallError::Connect { path: p.clone(), source })?;
    let io = |source| CallError::Io { path: p.clone(), source };
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line =
        serde_json::to_string(req).map_err(|e| CallError::Protocol { path: p.clone(), why: e.to_string() })?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).map_err(io)?;
    let r: Response =
        serde_json::from_str(&answer).map_err(|e| CallError::Protocol { path: p.clone(), why: e.to_string() })?;
    if r.ok {
        Ok(r.result)
    } else {
        Err(CallError::Refused(r.error.unwrap_or_else(|| "request refused".into())))
    }
}

/// Read one request line from a client (bounded), for the server.
pub fn read_request<R: Read>(s: &mut R) -> Result<Request, String> {
    let mut r = BufReader::new(Read::by_ref(s).take(MAX_REQUEST as u64));
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| format!("cannot read the request: {e}"))?;
    if !line.ends_with('\n') && line.len() >= MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    parse_request(line.trim())
}

/// One request line. Unknown fields are refused (serde's
/// `deny_unknown_fields` does not reach an internally tagged enum's unit
/// and newtype variants): every key must be one the request serialises
/// with, or be null.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let bad = |e: serde_json::Error| format!("not a valid request: {e}");
    let v: serde_json::Value = serde_json::from_str(line).map_err(bad)?;
    let req: Request = serde_json::from_value(v.clone()).map_err(bad)?;
    let known = serde_json::to_value(&req).map_err(bad)?;
    if let (Some(got), Some(known)) = (v.as_object(), known.as_object()) {
        if let Some((k, _)) = got.iter().find(|(k, v)| !v.is_null() && !known.contains_key(*k)) {
            return Err(format!("not a valid request: unknown field '{k}'"));
        }
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 18: a request with a field the command does not have is refused,
    // whatever the command's shape (unit, struct or newtype variant).
    #[test]
    fn unknown_fields_are_refused() {
        for line in [
            r#"{"cmd":"stats","verbose":true}"#,
            r#"{"cmd":"sessions","limit":5,"sort":"age"}"#,
            r#"{"cmd":"bib_add","proto":"udp","ipv6":"[2001:db8::5]:53","ipv4":"203.0.113.1:53","force":1}"#,
        ] {
            let e = parse_request(line).unwrap_err();
            assert!(e.contains("unknown field"), "{line}: {e}");
        }
        assert_eq!(
            parse_request(r#"{"cmd":"sessions","limit":null}"#).unwrap(),
            Request::Sessions { proto: None, addr: None, limit: None }
        );
    }

    #[test]
    fn requests_round_trip_as_documented() {
        let r: Request = serde_json::from_str(r#"{"cmd":"stats"}"#).unwrap();
        assert_eq!(r, Request::Stats);
        let r: Request =
            serde_json::from_str(r#"{"cmd":"bib_remove","proto":"tcp","ipv6":"[2001:db8::80]:80"}"#).unwrap();
        assert_eq!(r, Request::BibRemove { proto: Proto::Tcp, ipv6: "[2001:db8::80]:80".parse().unwrap() });
        let r: Request = serde_json::from_str(
            r#"{"cmd":"bib_add","proto":"udp","ipv6":"[2001:db8::5]:53","ipv4":"203.0.113.1:53"}"#,
        )
        .unwrap();
        assert!(matches!(r, Request::BibAdd(b) if b.proto == Proto::Udp));
        for bad in [r#"{"cmd":"nope"}"#, r#"{"proto":"tcp"}"#, "garbage", r#"{"cmd":"sessions","proto":"sctp"}"#] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
        let s = Request::Sessions { proto: Some(Proto::Icmp), addr: None, limit: Some(5) };
        assert_eq!(serde_json::from_str::<Request>(&serde_json::to_string(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn unreachable_daemon_is_one_clear_error() {
        let e = call(Path::new("/nonexistent/nat64d.sock"), &Request::Stats, Duration::from_secs(1)).unwrap_err();
        let t = e.to_string();
        assert!(t.starts_with("cannot reach nat64d at /nonexistent/nat64d.sock"), "{t}");
        assert!(!t.contains('\n'));
    }
}
