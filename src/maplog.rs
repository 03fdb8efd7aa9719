//! The mapping log's records, and reading them back (`nat64ctl who`).
//!
//! One JSON object per line, one per allocation event:
//!
//! ```text
//! {"time":"2026-12-01T14:02:07.123Z","event":"block_allocated","proto":"udp","subscriber":"2001:db8:1::/64","pool4":"203.0.113.5","port_lo":40448,"port_hi":40959,"group":0}
//! {"time":"2026-12-01T14:09:31.002Z","event":"block_released","proto":"udp","subscriber":"2001:db8:1::/64","pool4":"203.0.113.5","port_lo":40448,"port_hi":40959,"group":0}
//! ```
//!
//! Per-session mode writes `bib_created`/`bib_deleted` and
//! `session_created`/`session_deleted`, with `ipv6` (the client's
//! transport address) and, when asked for, `remote`. A holding runs from an
//! opening record to the matching closing one; [`Holdings`] replays
//! records into those intervals and answers "who held this address and
//! port at that time". Times are UTC (RFC 3339, milliseconds).

use crate::addr::Net6;
use crate::nat::{EventKind, MapEvent, Proto};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, SocketAddrV4, SocketAddrV6};

/// One line of the mapping log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub time: String,
    pub event: EventKind,
    pub proto: Proto,
    /// The subscriber prefix (a /128 for one address).
    pub subscriber: Net6Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<SocketAddrV6>,
    pub pool4: Ipv4Addr,
    pub port_lo: u16,
    pub port_hi: u16,
    /// The pool4 entry's index in the configuration (per-customer pools).
    pub group: u16,
    /// The `clients` prefix of that pool4 entry: the customer whose own
    /// addresses these are (absent for the shared pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<Net6Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddrV4>,
}

/// A prefix written as text (`2001:db8:1::/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net6Text(pub Net6);

impl Serialize for Net6Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Net6Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Net6Text).map_err(|e| serde::de::Error::custom(format!("{e:?}")))
    }
}

impl Record {
    /// The record of `e`, which happened at `unix_ms`.
    pub fn of(e: &MapEvent, unix_ms: u64) -> Record {
        Record {
            time: rfc3339(unix_ms),
            event: e.kind,
            proto: e.proto,
            subscriber: Net6Text(Net6 { addr: e.v6, len: e.v6_len }),
            ipv6: (e.v6_len == 128).then(|| SocketAddrV6::new(e.v6, e.port6, 0, 0)),
            pool4: e.v4,
            port_lo: e.lo,
            port_hi: e.hi,
            group: e.group,
            customer: e.customer.map(Net6Text),
            remote: e.remote.map(|(a, p)| SocketAddrV4::new(a, p)),
        }
    }

    /// Write the record as one line.
    pub fn write_line(&self, out: &mut impl Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, self).map_err(std::io::Error::other)?;
        out.write_all(b"\n")
    }
}

/// Milliseconds since 1970-01-01 UTC as RFC 3339 (`2026-12-01T14:02:07.123Z`).
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, unix_ms % 1000)
}

/// RFC 3339 (UTC `Z` or a numeric offset; fractions of a second to the
/// millisecond; a date alone means its midnight UTC) to milliseconds since 1970.
pub fn parse_rfc3339(s: &str) -> Result<u64, String> {
    let bad = || format!("'{s}' is not an RFC 3339 time such as 2026-12-01T14:02:07Z");
    let num = |t: &str| -> Result<i64, String> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<i64>().map_err(|_| bad())
    };
    let s2 = s.trim();
    let (date, time) = match s2.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s2, None),
    };
    let mut dp = date.split('-');
    let (y, mo, d) = match (dp.next(), dp.next(), dp.next(), dp.next()) {
        (Some(y), Some(m), Some(d), None) if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            (num(y)?, num(m)?, num(d)?)
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&mo) || !(1..=days_in_month(y, mo)).contains(&d) || y < 1970 {
        return Err(bad());
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    if let Some(t) = time {
        let (clock, offset) = if let Some(c) = t.strip_suffix(['Z', 'z']) {
            (c, 0i64)
        } else if let Some(i) = t.rfind(['+', '-']) {
            let (c, o) = t.split_at(i);
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o[1..].split_once(':').ok_or_else(bad)?;
            let (oh, om) = (num(oh)?, num(om)?);
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            (c, sign * (oh * 60 + om) * 60_000)
        } else {
            return Err(bad());
        };
        let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
        let mut tp = hms.split(':');
        let (h, mi, sec) = match (tp.next(), tp.next(), tp.next(), tp.next()) {
            (Some(h), Some(m), Some(s), None) if h.len() == 2 && m.len() == 2 && s.len() == 2 => {
                (num(h)?, num(m)?, num(s)?)
            }
            _ => return Err(bad()),
        };
        if h > 23 || mi > 59 || sec > 60 {
            return Err(bad());
        }
        // Milliseconds: the first three digits of the fraction count (all
        // must be digits, however many there are).
        if !frac.bytes().all(|b| b.is_ascii_digit()) || (clock.contains('.') && frac.is_empty()) {
            return Err(bad());
        }
        let frac_ms = format!("{:0<3}", &frac[..frac.len().min(3)]).parse::<i64>().map_err(|_| bad())?;
        ms += ((h * 60 + mi) * 60 + sec) * 1000 + frac_ms - offset;
    }
    u64::try_from(ms).map_err(|_| bad())
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days-from-civil and its inverse (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

/// A subscriber's holding of pool4 ports, from one record to its closing one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holding {
    pub proto: Proto,
    pub subscriber: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<SocketAddrV6>,
    pub pool4: Ipv4Addr,
    pub port_lo: u16,
    pub port_hi: u16,
    pub group: u16,
    pub from: String,
    /// None: no closing record in the logs read (held at their end).
    pub until: Option<String>,
    #[serde(skip)]
    from_ms: u64,
    #[serde(skip)]
    until_ms: Option<u64>,
}

impl Holding {
    /// True when the holding covered `at` (from inclusive, until exclusive).
    pub fn covers(&self, at: u64) -> bool {
        self.from_ms <= at && self.until_ms.is_none_or(|u| at < u)
    }
}

/// Records replayed into holdings, with the span of time the logs cover.
#[derive(Debug, Default)]
pub struct Holdings {
    pub closed: Vec<Holding>,
    open: std::collections::HashMap<(Proto, Ipv4Addr, u16, u16, Option<SocketAddrV6>), Holding>,
    pub first_ms: Option<u64>,
    pub last_ms: Option<u64>,
    /// Lines that were not records (counted, skipped).
    pub bad_lines: u64,
}

impl Holdings {
    /// Replay one log (plain or gzip-compressed text), in order.
    pub fn read(&mut self, r: impl BufRead) -> std::io::Result<()> {
        for line in r.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(&line) {
                Ok(rec) => self.add(&rec),
                Err(_) => self.bad_lines += 1,
            }
        }
        Ok(())
    }

    /// Replay one record. Session records are left out: their BIB entry's
    /// record says who held the port.
    pub fn add(&mut self, r: &Record) {
        let Ok(at) = parse_rfc3339(&r.time) else {
            self.bad_lines += 1;
            return;
        };
        self.first_ms = Some(self.first_ms.map_or(at, |f| f.min(at)));
        self.last_ms = Some(self.last_ms.map_or(at, |l| l.max(at)));
        if matches!(r.event, EventKind::SessionCreated | EventKind::SessionDeleted) {
            return;
        }
        let key = (r.proto, r.pool4, r.port_lo, r.port_hi, r.ipv6);
        if r.event.opens() {
            let h = Holding {
                proto: r.proto,
                subscriber: r.subscriber.0.to_string(),
                ipv6: r.ipv6,
                pool4: r.pool4,
                port_lo: r.port_lo,
                port_hi: r.port_hi,
                group: r.group,
                from: r.time.clone(),
                until: None,
                from_ms: at,
                until_ms: None,
            };
            if let Some(mut prev) = self.open.insert(key, h) {
                // Opened twice without a close (a restart between): the old
                // one ended when the new one began, as far as the log knows.
                prev.until = Some(r.time.clone());
                prev.until_ms = Some(at);
                self.closed.push(prev);
            }
        } else if let Some(mut h) = self.open.remove(&key) {
            h.until = Some(r.time.clone());
            h.until_ms = Some(at);
            self.closed.push(h);
        }
    }

    /// Every holding, closed ones first.
    pub fn all(&self) -> impl Iterator<Item = &Holding> {
        self.closed.iter().chain(self.open.values())
    }

    /// Holdings of `port` on `addr` (of `proto` if given) that cover `at`.
    pub fn who(&self, addr: Ipv4Addr, port: u16, proto: Option<Proto>, at: u64) -> Vec<&Holding> {
        self.all()
            .filter(|h| h.pool4 == addr && (h.port_lo..=h.port_hi).contains(&port))
            .filter(|h| proto.is_none_or(|p| p == h.proto) && h.covers(at))
            .collect()
    }

    /// Holdings of the subscriber(s) inside `net` that cover `at`.
    pub fn of_subscriber(&self, net: Net6, at: u64) -> Vec<&Holding> {
        self.all()
            .filter(|h| {
                h.subscriber.parse::<Net6>().is_ok_and(|s| net.contains(s.addr) || s.contains(net.addr)) && h.covers(at)
            })
            .collect()
    }
}

/// Replay log files in the order given (oldest first, as logrotate
/// numbers them backwards: `mapping.jsonl.2.gz mapping.jsonl.1 mapping.jsonl`);
/// gzip-compressed ones are recognised by their magic bytes.
pub fn read_logs(paths: &[std::path::PathBuf]) -> Result<Holdings, String> {
    let mut h = Holdings::default();
    for p in paths {
        let f = std::fs::File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?;
        let mut r = std::io::BufReader::new(f);
        let gz = r.fill_buf().map(|b| b.starts_with(&[0x1f, 0x8b])).unwrap_or(false);
        let res = if gz { h.read(std::io::BufReader::new(flate2::bufread::MultiGzDecoder::new(r))) } else { h.read(r) };
        res.map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 3339 section 5.6: full-date "T" full-time, UTC as Z or an offset.
    #[test]
    fn rfc3339_round_trips_and_reads_offsets() {
        for (s, ms) in [
            ("1970-01-01T00:00:00.000Z", 0u64),
            ("2026-12-01T14:02:07.123Z", 1_796_133_727_123),
            ("2000-02-29T23:59:59.999Z", 951_868_799_999),
        ] {
            assert_eq!(rfc3339(ms), s);
            assert_eq!(parse_rfc3339(s), Ok(ms));
        }
        assert_eq!(parse_rfc3339("2026-12-01T15:02:07+01:00"), parse_rfc3339("2026-12-01T14:02:07Z"));
        assert_eq!(parse_rfc3339("2026-12-01T14:02:07.5Z"), Ok(1_796_133_727_500));
        // A fraction of any length reads to the millisecond (fuzzing found
        // 200 zeros overflowing a power of ten).
        assert_eq!(parse_rfc3339(&format!("2026-12-01T14:02:07.123{}Z", "0".repeat(200))), Ok(1_796_133_727_123));
        assert!(parse_rfc3339("2026-12-01T14:02:07.Z").is_err());
        // An offset of any size is refused, not multiplied into an overflow.
        assert!(parse_rfc3339("2026-12-01T14:02:07+99999999999999:00").is_err());
        assert!(parse_rfc3339("2026-12-01T14:02:07+24:00").is_err());
        assert_eq!(parse_rfc3339("2026-12-01"), Ok(1_796_083_200_000));
        for bad in
            ["2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "yesterday", "2026-12-01T14:02:07", "2026-12-01T25:00:00Z"]
        {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    fn rec(time: &str, event: EventKind, sub: &str, lo: u16, hi: u16) -> Record {
        Record {
            time: time.into(),
            event,
            proto: Proto::Udp,
            subscriber: Net6Text(sub.parse().unwrap()),
            ipv6: None,
            pool4: "203.0.113.5".parse().unwrap(),
            port_lo: lo,
            port_hi: hi,
            group: 0,
            customer: None,
            remote: None,
        }
    }

    // Issue 14: a block's holder is known from its allocation to its
    // release, a later holder after that, and nobody before the first record.
    #[test]
    fn holdings_name_who_held_a_port_when() {
        let mut h = Holdings::default();
        let lines = [
            rec("2026-12-01T10:00:00.000Z", EventKind::BlockAllocated, "2001:db8:1::/64", 40448, 40959),
            rec("2026-12-01T12:00:00.000Z", EventKind::BlockReleased, "2001:db8:1::/64", 40448, 40959),
            rec("2026-12-01T13:00:00.000Z", EventKind::BlockAllocated, "2001:db8:2::/64", 40448, 40959),
        ];
        let text: String =
            lines.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect::<String>() + "garbage\n";
        h.read(text.as_bytes()).unwrap();
        assert_eq!(h.bad_lines, 1);
        let a: Ipv4Addr = "203.0.113.5".parse().unwrap();
        let at = |s: &str| parse_rfc3339(s).unwrap();
        let who = |t: &str| h.who(a, 40500, None, at(t)).iter().map(|x| x.subscriber.clone()).collect::<Vec<_>>();
        assert_eq!(who("2026-12-01T11:00:00Z"), ["2001:db8:1::/64"]);
        assert!(who("2026-12-01T12:30:00Z").is_empty(), "between release and the next allocation");
        assert_eq!(who("2026-12-01T14:00:00Z"), ["2001:db8:2::/64"]);
        assert!(who("2026-12-01T09:00:00Z").is_empty());
        assert!(h.who(a, 40000, None, at("2026-12-01T11:00:00Z")).is_empty(), "another port");
        assert_eq!(h.of_subscriber("2001:db8:1::77/128".parse().unwrap(), at("2026-12-01T11:00:00Z")).len(), 1);
    }
}
