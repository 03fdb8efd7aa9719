use super::*;

const FULL: &str = r#"
pool6 = "2001:db8:64::/96"
pool4 = ["203.0.113.0/28", "198.51.100.7"]

[tun]
name = "nat64"
mtu = 1500
queues = 2

[nat]
shards = 8
filtering = "address-dependent"

[nat.timeouts]
udp = 300
icmp = 30

[[static_bib]]
proto = "tcp"
ipv6 = "[2001:db8:1::10]:80"
ipv4 = "203.0.113.1:8080"
"#;

fn parse_err(src: &str) -> ConfigError {
    Config::parse(src, "nat64d.toml").expect_err("config must be refused")
}

#[test]
fn empty_file_is_all_defaults() {
    let c = Config::parse("", "x.toml").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.pool6, Prefix6052::WKP);
    // The core counts milliseconds.
    assert_eq!(c.nat.timeouts.udp, 300_000, "RFC 6146 4: UDP_DEFAULT 5 min");
    assert_eq!(c.nat.timeouts.tcp_est, 7_440_000, "RFC 6146 4: TCP_EST 2 h 4 min");
    assert_eq!(c.nat.timeouts.tcp_trans, 240_000, "RFC 6146 4: TCP_TRANS 4 min");
    assert_eq!(c.nat.timeouts.icmp, 60_000, "RFC 6146 4: ICMP_DEFAULT 60 s");
    assert_eq!(c.control.socket, Path::new(DEFAULT_SOCKET));
    assert_eq!(c.metrics.listen, None, "metrics are off unless asked for");
}

#[test]
fn full_file_parses() {
    let c = Config::parse(FULL, "x.toml").unwrap();
    assert_eq!(c.pool6.to_string(), "2001:db8:64::/96");
    assert_eq!(c.pool4_addrs().len(), 17);
    assert_eq!(c.tun.queues, 2);
    assert_eq!(c.nat.filtering, Filtering::AddressDependent);
    assert_eq!(c.nat.timeouts.icmp, 30_000, "seconds in the file");
    assert_eq!(c.nat.timeouts.tcp_est, 7_440_000, "unset keys keep their defaults");
    assert_eq!(c.static_bib[0].proto, Proto::Tcp);
    let n = c.nat_config();
    assert_eq!(n.timeouts.icmp, 30_000);
    assert_eq!(n.filtering, Filtering::AddressDependent);
}

#[test]
fn the_shown_config_parses_back_to_itself() {
    let c = Config::parse(FULL, "x.toml").unwrap();
    let again = Config::parse(&c.to_toml(), "shown").unwrap();
    assert_eq!(c, again);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let e = parse_err("pool4 = [\"203.0.113.1\"]\n[nat]\nshard = 4\n");
    assert_eq!(e.line, Some(3), "{e}");
    assert_eq!(e.key.as_deref(), Some("nat.shard"), "{e}");
    let text = e.to_string();
    assert!(text.starts_with("nat64d.toml:3: key 'nat.shard': "), "{text}");
    assert!(text.contains("unknown field"), "{text}");
}

#[test]
fn bad_value_names_its_line() {
    let e = parse_err("pool6 = \"64:ff9b::/95\"\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("pool6")), "{e}");
    assert!(e.message.contains("RFC 6052"), "{e}");
    let e = parse_err("[tun]\nmtu = \"big\"\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("tun.mtu")), "{e}");
    let e = parse_err("pool4 = [\"203.0.113.1/33\"]\n");
    assert_eq!(e.line, Some(1), "{e}");
}

#[test]
fn toml_syntax_error_has_a_line() {
    let e = parse_err("pool4 = [\"203.0.113.1\"]\n\n[nat\n");
    assert_eq!(e.line, Some(3), "{e}");
}

#[test]
fn semantic_errors_name_the_key_and_line() {
    // RFC 6146 4: UDP_MIN is 2 minutes.
    let e = parse_err("pool4 = [\"203.0.113.1\"]\n[nat.timeouts]\nudp = 60\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("nat.timeouts.udp")), "{e}");
    let e = parse_err("pool4 = [\"10.0.0.0/15\"]\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("pool4")), "{e}");
    let e = parse_err("pool4 = [\"203.0.113.0/28\"]\n[tun]\nmtu = 1000\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("tun.mtu")), "{e}");
    let e = parse_err(
        "pool4 = [\"203.0.113.0/28\"]\n[[static_bib]]\nproto = \"tcp\"\nipv6 = \"[2001:db8::1]:80\"\nipv4 = \"192.0.2.1:80\"\n",
    );
    assert_eq!((e.line, e.key.as_deref()), (Some(5), Some("static_bib.ipv4")), "{e}");
    assert!(e.message.contains("not a pool4 address"), "{e}");
    let e = parse_err("pool4 = [\"203.0.113.1/24\"]\n");
    assert!(e.message.contains("host bits"), "{e}");
}

#[test]
fn command_line_overrides_the_file() {
    let dir = std::env::temp_dir().join(format!("nat64d-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("c.toml");
    std::fs::write(&p, FULL).unwrap();
    let ov = Overrides {
        mtu: Some(1400),
        queues: Some(1),
        pool4: vec!["203.0.113.0/28".parse().unwrap()],
        ..Default::default()
    };
    let c = Config::load(Some(&p), &ov).unwrap();
    assert_eq!((c.tun.mtu, c.tun.queues, c.pool4.len()), (1400, 1, 1));
    assert_eq!(c.nat.shards, 8, "the file's other keys stay");
    let missing = Config::load(Some(&dir.join("nope.toml")), &Overrides::default()).unwrap_err();
    assert!(missing.to_string().contains("nope.toml: cannot read"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reload_tells_what_needs_a_restart() {
    let a = Config::parse(FULL, "x").unwrap();
    let mut b = a.clone();
    b.nat.timeouts.icmp = 10_000;
    b.pool4.pop();
    b.static_bib.clear();
    assert!(a.restart_only_changes(&b).is_empty(), "pool4, timeouts and static BIB change at run time");
    b.pool6 = Prefix6052::WKP;
    b.tun.mtu = 1400;
    assert_eq!(a.restart_only_changes(&b), vec!["pool6", "tun"]);
}

#[test]
fn static_bib_command_line_form() {
    let b: StaticBib = "udp,[2001:db8::5]:53,203.0.113.2:53".parse().unwrap();
    assert_eq!((b.proto, b.ipv6.port(), b.ipv4.port()), (Proto::Udp, 53, 53));
    assert!("sctp,[2001:db8::5]:53,203.0.113.2:53".parse::<StaticBib>().unwrap_err().contains("protocol"));
    assert!("tcp,[2001:db8::5]:53".parse::<StaticBib>().is_err());
}

// The shipped example (systemd/nat64d.toml) parses, holds the defaults it
// claims, and mentions every key the daemon knows, so it stays in step.
#[test]
fn shipped_example_is_valid_and_complete() {
    let text = include_str!("../../systemd/nat64d.toml");
    let c = Config::parse(text, "systemd/nat64d.toml").unwrap();
    let d = Config { pool4: c.pool4.clone(), ..Config::default() };
    assert_eq!(c, d, "the example's values are the defaults (apart from pool4)");
    let mut shown = Config::default();
    shown.metrics.listen = Some("127.0.0.1:9864".parse().unwrap());
    shown.static_bib.push("tcp,[2001:db8::80]:80,203.0.113.1:80".parse().unwrap());
    shown.proxy.site.push(super::ProxySite {
        name: "www.example".into(),
        backend: "[2001:db8:100::80]:443".parse().unwrap(),
        client_address: Some(crate::proxy::ClientAddress::ProxyV2),
    });
    let idx = KeyIndex::new(&shown.to_toml());
    // Commented-out examples count: `# [[static_bib]]`, `# listen = ...`.
    let uncomment = |l: &str| {
        let body = l.trim_start().strip_prefix("# ").unwrap_or(l);
        let is_header = body.starts_with('[') && body.ends_with(']');
        let is_key = body
            .split_once(" = ")
            .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        if is_header || is_key {
            body.to_string()
        } else {
            l.to_string()
        }
    };
    let uncommented: String = text.lines().map(|l| uncomment(l) + "\n").collect();
    let example = KeyIndex::new(&uncommented);
    for (_, key) in &idx.keys {
        assert!(example.keys.iter().any(|(_, k)| k == key), "systemd/nat64d.toml does not document '{key}'");
    }
}

// Issue 5: the [dns64] section: enabled without an upstream is refused
// with its key and line; a full section parses into the server's settings;
// prefixes default to pool6; run-time keys reload, socket keys do not.
#[test]
fn dns64_section() {
    let e = parse_err("pool4 = [\"203.0.113.1\"]\n[dns64]\nenabled = true\n");
    assert_eq!(e.key.as_deref(), Some("dns64.upstream"));
    let e = parse_err("[dns64]\nonly = true\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("dns64.only")));
    let e = parse_err("[dns64]\nallow = [\"2001:db8::/129\"]\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("dns64.allow")));
    let e = parse_err("[dns64]\nexclude_a = [\"2001:db8::/32\"]\n");
    assert!(e.to_string().contains("not an IPv4 network"), "{e}");
    let src = "pool6 = \"2001:db8:64::/96\"\n[dns64]\nenabled = true\nupstream = [\"192.0.2.53:53\"]\n\
               allow = [\"2001:db8:1::/48\"]\nexclude_a = [\"192.0.2.0/24\"]\ntimeout_ms = 500\n";
    let c = Config::parse(src, "t.toml").unwrap();
    let s = c.dns64_settings();
    assert_eq!(s.dns64.prefixes, vec!["2001:db8:64::/96".parse().unwrap()]);
    assert_eq!(s.allow, vec!["2001:db8:1::/48".parse().unwrap()]);
    assert!(s.dns64.exclude4[0].contains("192.0.2.7".parse().unwrap()));
    assert_eq!(s.timeout, std::time::Duration::from_millis(500));
    let mut d = c.clone();
    d.dns64.allow.push(Text("::1".parse().unwrap()));
    d.dns64.upstream.push("192.0.2.54:53".parse().unwrap());
    assert!(c.restart_only_changes(&d).is_empty());
    d.dns64.listen = vec!["[2001:db8:1::1]:53".parse().unwrap()];
    assert_eq!(c.restart_only_changes(&d).len(), 1);
    // A flag turns it on.
    let ov = Overrides { dns64_upstream: vec!["127.0.0.1:5353".parse().unwrap()], ..Overrides::default() };
    let mut c = Config::default();
    ov.apply(&mut c);
    assert!(c.dns64.enabled && c.validate().is_ok());
}

// A reload compares whole sections: a section with no run-time keys is
// named whole, a mixed one by the key; keys not listed as reloadable need a
// restart (so a new key is safe by default).
#[test]
fn restart_changes_are_named_by_section_or_key() {
    let a = Config::parse(FULL, "x").unwrap();
    let mut b = a.clone();
    b.nat.shards = 4;
    b.nat.limits.max_sessions = 10;
    b.dns64.threads = 2;
    b.dns64.allow.clear();
    b.control.socket = "/tmp/other.sock".into();
    assert_eq!(a.restart_only_changes(&b), vec!["control", "dns64.threads", "nat.shards"]);
}

// RFC 6146 4 lifetimes are seconds in the file and milliseconds in the core:
// a value whose milliseconds overflow is refused as too large, not wrapped.
#[test]
fn timeout_overflow_is_refused_not_wrapped() {
    let e = parse_err("[nat.timeouts]\ntcp_est = 18446744073709552\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("nat.timeouts.tcp_est")), "{e}");
    assert!(e.message.contains("too large"), "{e}");
}

// Issue 18: careless input to the loader. A FIFO or a device is refused as
// not a regular file (instead of hanging, or reading /dev/zero for ever);
// an oversize file is refused by its size; a huge value is cut in the
// message, which still names the file, line and key.
#[test]
fn only_regular_files_of_sane_size_and_short_messages() {
    let e = Config::load(Some(Path::new("/dev/zero")), &Overrides::default()).unwrap_err();
    assert!(e.to_string().ends_with("/dev/zero: not a regular file"), "{e}");
    let dir = std::env::temp_dir().join(format!("nat64d-cfg-size-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
    if made {
        let start = std::time::Instant::now();
        let e = Config::load(Some(&fifo), &Overrides::default());
        assert!(e.is_err() && start.elapsed() < std::time::Duration::from_secs(1), "{e:?}");
    }
    let big = dir.join("big.toml");
    std::fs::write(&big, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).unwrap();
    let e = Config::load(Some(&big), &Overrides::default()).unwrap_err();
    assert!(e.message.contains("at most"), "{e}");
    let huge = format!("[tun]\nname = \"{}\"\n", "x".repeat(10 << 20));
    let e = parse_err(&huge);
    let shown = e.to_string();
    assert!(shown.starts_with("nat64d.toml:2: key 'tun.name': "), "{}", &shown[..100]);
    assert!(shown.len() < 1000, "a 10 MB value is not echoed whole: {} bytes", shown.len());
    std::fs::remove_dir_all(&dir).unwrap();
}

// Issue 18: `nat64d --check` runs every check of the daemon's start that
// depends on the file alone: a configuration without pool4 (and not
// DNS64-only) is refused by both, naming the key.
#[test]
fn check_runnable_needs_pool4_unless_dns64_only() {
    let c = Config::parse("", "x.toml").unwrap();
    let e = c.check_runnable("x.toml").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("pool4"));
    assert!(e.to_string().starts_with("x.toml: key 'pool4': no pool4 addresses"), "{e}");
    let c = Config::parse("pool4 = [\"203.0.113.1\"]\n", "x.toml").unwrap();
    assert!(c.check_runnable("x.toml").is_ok());
    let c = Config::parse("[dns64]\nenabled = true\nonly = true\nupstream = [\"127.0.0.1:53\"]\n", "x.toml").unwrap();
    assert!(c.check_runnable("x.toml").is_ok(), "DNS64 alone needs no pool4");
}

// Issue 18: a static BIB entry whose IPv6 side no server can have
// (multicast, unspecified, loopback, link-local), that lies in pool6, or
// that has port 0 is refused with its key and line.
#[test]
fn static_bib_entries_that_cannot_serve_are_refused() {
    let entry = |v6: &str, v4: &str| {
        format!("pool6 = \"2001:db8:64::/96\"\npool4 = [\"203.0.113.0/28\"]\n[[static_bib]]\nproto = \"udp\"\nipv6 = \"{v6}\"\nipv4 = \"{v4}\"\n")
    };
    for v6 in ["[ff02::1]:53", "[::]:53", "[::1]:53", "[fe80::1]:53", "[2001:db8:64::c000:201]:53"] {
        let e = parse_err(&entry(v6, "203.0.113.1:53"));
        assert_eq!(e.key.as_deref(), Some("static_bib.ipv6"), "{v6}: {e}");
        assert_eq!(e.line, Some(5), "{e}");
    }
    let e = parse_err(&entry("[2001:db8::5]:0", "203.0.113.1:53"));
    assert!(e.message.contains("port 0"), "{e}");
    assert!(Config::parse(&entry("[2001:db8::5]:53", "203.0.113.1:53"), "t").is_ok());
}

const HEAD: &str = "pool6 = \"2001:db8:64::/96\"\npool4 = [\"203.0.113.0/24\"]\nallow_non_global = true\n";

fn entry(i: u32) -> String {
    format!(
        "[[static_bib]]\nproto = \"udp\"\nipv6 = \"[2001:db8::{:x}]:53\"\nipv4 = \"203.0.113.{}:{}\"\n",
        i + 1,
        1 + i % 250,
        1000 + i / 250
    )
}

// Issue 18 (degraded): a file of many static entries is parsed one entry at
// a time. 20000 entries (1.8 MB of text) held about 46 MB in the TOML tree
// parsed whole; apart they stay under 12 MB (7 MB measured), and give the same configuration.
#[test]
fn many_static_entries_parse_in_bounded_memory() {
    let mut text = HEAD.to_string();
    for i in 0..20000 {
        text += &entry(i);
    }
    text += "[tun]\nsetup = false\n";
    let (fast, peak) = crate::test_alloc::peak_bytes(|| Config::parse(&text, "big.toml").unwrap());
    assert_eq!(fast.static_bib.len(), 20000);
    assert!(!fast.tun.setup, "a table after the entries is still read");
    assert!(peak < 12 << 20, "{peak} bytes held while parsing {} bytes", text.len());
    let (whole, whole_peak) = crate::test_alloc::peak_bytes(|| Config::parse_whole(&text, "big.toml").unwrap());
    assert_eq!(fast, whole);
    assert!(whole_peak > peak * 3, "the whole parse is the costly one ({whole_peak} vs {peak})");
}

// The fast path never accepts what the whole document refuses, nor reads it
// differently: each of these texts is parsed both ways and must agree
// (TOML 1.0: a static array cannot be extended by [[ ]], keys after an
// array-of-tables header belong to it, a header may be spelled with spaces).
#[test]
fn static_entries_apart_agree_with_the_whole_document() {
    let e = entry(0);
    let cases = [
        format!("{HEAD}{e}{}", entry(1)),
        format!("{HEAD}static_bib = []\n{e}"),
        format!("{HEAD}{e}[[ static_bib ]]\nproto = \"tcp\"\nipv6 = \"[2001:db8::9]:80\"\nipv4 = \"203.0.113.9:80\"\n"),
        format!("{HEAD}{e}extra = 1\n"),
        format!("{HEAD}{e}[static_bib.sub]\nx = 1\n"),
        format!("{HEAD}{e}[nat]\nshards = 4\n{}", entry(2)),
        format!("{HEAD}[[static_bib]]\n[[static_bib]]\n"),
        format!("{HEAD}{e}[tun]\nname = \"\"\"\n[[static_bib]]\n\"\"\"\n"),
        format!("{HEAD}{e}  [[static_bib]]  # indented, with a comment\nproto = \"tcp\"\nipv6 = \"[2001:db8::7]:22\"\nipv4 = \"203.0.113.7:22\"\n"),
        format!("{HEAD}{e}{e}"),
    ];
    for text in &cases {
        let fast = Config::parse(text, "t.toml");
        let whole = Config::parse_whole(text, "t.toml");
        assert_eq!(fast.as_ref().ok(), whole.as_ref().ok(), "{text}");
        assert_eq!(fast.as_ref().err().map(|e| e.to_string()), whole.as_ref().err().map(|e| e.to_string()), "{text}");
    }
}

// Issue 14 (RFC 7422 capacity): a deterministic mapping that cannot give
// every subscriber a block is refused with the arithmetic, at pool4.
#[test]
fn deterministic_mapping_that_does_not_fit_is_refused_with_the_numbers() {
    let text = "pool6 = \"2001:db8:64::/96\"\npool4 = [{ net = \"203.0.113.0/30\", clients = \"2001:db8:100::/48\" }]\n[nat.ports]\nmode = \"deterministic\"\nblock_size = 512\n";
    let e = parse_err(text);
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("pool4")));
    assert!(e.message.contains("65536 subscribers") && e.message.contains("needs 521 addresses"), "{e}");
    let ok = text.replace("/48", "/57");
    let c = Config::parse(&ok, "t.toml").unwrap();
    assert_eq!(c.nat.ports.mode, PortMode::Deterministic);
    let e = parse_err(&text.replace(", clients = \"2001:db8:100::/48\"", ""));
    assert!(e.message.contains("clients"), "{e}");
}

// Issue 14: block settings out of range, and static entries on ports that
// belong to subscribers' blocks, are refused naming the key.
#[test]
fn block_settings_are_checked() {
    let base = "pool6 = \"2001:db8:64::/96\"\npool4 = [\"203.0.113.1\"]\n[nat.ports]\nmode = \"blocks\"\n";
    for (extra, key) in [
        ("block_size = 4\n", "nat.ports.block_size"),
        ("max_blocks = 0\n", "nat.ports.max_blocks"),
        ("subscriber = 129\n", "nat.ports.subscriber"),
        ("hold = 90000\n", "nat.ports.hold"),
    ] {
        let e = parse_err(&format!("{base}{extra}"));
        assert_eq!(e.key.as_deref(), Some(key), "{extra}: {e}");
    }
    let e = parse_err(&format!(
        "{base}[[static_bib]]\nproto = \"tcp\"\nipv6 = \"[2001:db8::80]:80\"\nipv4 = \"203.0.113.1:8080\"\n"
    ));
    assert_eq!(e.key.as_deref(), Some("static_bib.ipv4"), "{e}");
    assert!(e.message.contains("below 1024"), "{e}");
    Config::parse(
        &format!("{base}[[static_bib]]\nproto = \"tcp\"\nipv6 = \"[2001:db8::80]:80\"\nipv4 = \"203.0.113.1:80\"\n"),
        "t.toml",
    )
    .unwrap();
}

// Issue 19: the [proxy] section: sites that name no host, backends outside
// the customers' networks or inside pool6, and a listener without backend
// networks are refused with their key; a good section parses.
#[test]
fn proxy_section() {
    let base = "pool6 = \"2001:db8:64::/96\"\npool4 = [\"203.0.113.1\"]\n[proxy]\nlisten = [\"192.0.2.1:80\"]\n";
    let e = parse_err(base);
    assert_eq!(e.key.as_deref(), Some("proxy.backends"));
    let with = |site: &str| format!("{base}backends = [\"2001:db8:100::/48\"]\n[[proxy.site]]\n{site}\n");
    for (site, key, says) in [
        ("name = \"bad_name\"\nbackend = \"[2001:db8:100::1]:80\"", "proxy.site.name", "not a host name"),
        ("name = \"a.example\"\nbackend = \"[2001:db8:200::1]:80\"", "proxy.site.backend", "outside every"),
        ("name = \"a.example\"\nbackend = \"[2001:db8:64::c000:201]:80\"", "proxy.site.backend", "pool6"),
        ("name = \"a.example\"\nbackend = \"[::1]:80\"", "proxy.site.backend", "loopback"),
    ] {
        let e = parse_err(&with(site));
        assert_eq!(e.key.as_deref(), Some(key), "{site}: {e}");
        assert!(e.to_string().contains(says), "{e}");
    }
    let e = parse_err(&with("name = \"a.example\"\nbackend = \"[2001:db8:100::1]:80\"\nclient_address = \"magic\""));
    assert!(e.to_string().contains("client_address"), "{e}");
    let c = Config::parse(
        &with("name = \"*.Example\"\nbackend = \"[2001:db8:100::1]:443\"\nclient_address = \"proxy-v2\""),
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.proxy.site[0].client_address, Some(crate::proxy::ClientAddress::ProxyV2));
    // A bare backend address: the visitor's port (held as 0, written back bare).
    let c = Config::parse(&with("name = \"a.example\"\nbackend = \"2001:db8:100::1\""), "t.toml").unwrap();
    assert_eq!(c.proxy.site[0].backend.port(), 0);
    assert!(c.to_toml().contains("backend = \"2001:db8:100::1\""));
    let e = Config::parse(&with("name = \"a.example\"\nbackend = \"[2001:db8:100::1]:0\""), "t.toml").unwrap_err();
    assert!(e.to_string().contains("port 0"), "{e}");
    assert!(c.proxy.enabled());
}

// Issue 20: the xdp dataplane needs the interface IPv6 clients reach; a bad
// mode, attach mode, name or frame count names its key and line; pool4
// reloads in both dataplanes, the [xdp] interfaces need a restart.
#[test]
fn xdp_section() {
    let e = parse_err("pool4 = [\"203.0.113.1\"]\ndataplane = \"xdp\"\n");
    assert_eq!(e.key.as_deref(), Some("xdp.ipv6_interface"));
    let e = parse_err("dataplane = \"xdp\"\n[xdp]\nipv6_interface = \"eth 0\"\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("xdp.ipv6_interface")));
    let e = parse_err("dataplane = \"dpdk\"\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("dataplane")));
    let e = parse_err("[xdp]\nattach = \"offload\"\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("xdp.attach")));
    let e = parse_err("[xdp]\nframes = 100\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("xdp.frames")));
    let xdp = "dataplane = \"xdp\"\n[xdp]\nipv6_interface = \"eth0\"\nipv4_interface = \"eth1\"\n";
    let a = Config::parse(&format!("pool4 = [\"203.0.113.1\"]\n{xdp}"), "t").unwrap();
    assert_eq!(a.xdp.interfaces(), vec!["eth0", "eth1"]);
    let b = Config::parse(&format!("pool4 = [\"203.0.113.2\"]\n{xdp}"), "t").unwrap();
    assert!(a.restart_only_changes(&b).is_empty(), "pool4 reloads on AF_XDP too (a new program is swapped in)");
    let mut c = b.clone();
    c.xdp.ipv4_interface = "eth2".into();
    assert_eq!(a.restart_only_changes(&c), vec!["xdp"], "the interfaces need a restart");
}
