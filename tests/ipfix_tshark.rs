//! The IPFIX export (RFC 7011 with RFC 8158's NAT elements) read by a real
//! decoder: Wireshark's `tshark` (Debian package tshark). The messages the
//! encoder builds are written into a pcap file as UDP to port 4739 (IPFIX)
//! and decoded; every field must come out as it went in.

use nat64d::ipfix::Encoder;
use nat64d::nat::{EventKind, MapEvent, Proto};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;

/// A pcap file (Ethernet, IPv4, UDP 4739) holding `msgs`.
fn pcap(msgs: &[Vec<u8>]) -> Vec<u8> {
    let mut f = vec![];
    for v in [0xa1b2_c3d4u32.to_le_bytes(), [2, 0, 4, 0], [0; 4], [0; 4], 65535u32.to_le_bytes(), 1u32.to_le_bytes()] {
        f.extend_from_slice(&v);
    }
    for (i, m) in msgs.iter().enumerate() {
        let udp_len = 8 + m.len();
        let ip_len = 20 + udp_len;
        let frame_len = 14 + ip_len;
        for v in [
            (1_796_133_727 + i as u32).to_le_bytes(),
            0u32.to_le_bytes(),
            (frame_len as u32).to_le_bytes(),
            (frame_len as u32).to_le_bytes(),
        ] {
            f.extend_from_slice(&v);
        }
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let mut ip =
            vec![0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 10];
        let sum = ip.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]) as u32).sum::<u32>();
        let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&4739u16.to_be_bytes());
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(m);
    }
    f
}

fn event(kind: EventKind, v6_len: u8, remote: Option<(Ipv4Addr, u16)>) -> MapEvent {
    let block = v6_len < 128;
    MapEvent {
        kind,
        at: 0,
        proto: if block { Proto::Udp } else { Proto::Tcp },
        v6: if block { "2001:db8:1::".parse().unwrap() } else { Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10) },
        v6_len,
        port6: if block { 0 } else { 5000 },
        v4: Ipv4Addr::new(203, 0, 113, 5),
        lo: if block { 40448 } else { 40123 },
        hi: if block { 40959 } else { 40123 },
        remote,
        group: 0,
        customer: None,
    }
}

#[test]
fn tshark_decodes_the_nat_records() {
    if Command::new("tshark").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("NAT64D_REQUIRE_PEERS").is_none(),
            "NAT64D_REQUIRE_PEERS is set but tshark is missing"
        );
        eprintln!("ipfix_tshark: SKIPPED: no tshark (apt-get install tshark)");
        return;
    }
    let events = [
        event(EventKind::BlockAllocated, 64, None),
        event(EventKind::BibCreated, 128, None),
        event(EventKind::SessionCreated, 128, Some((Ipv4Addr::new(198, 51, 100, 7), 443))),
        event(EventKind::BlockReleased, 64, None),
    ];
    let mut enc = Encoder::new(1, 600);
    let msgs: Vec<Vec<u8>> =
        enc.encode(&events, |_| 1_796_133_727_123, 1_796_133_727).into_iter().map(|m| m.0).collect();
    let dir = std::env::temp_dir().join(format!("nat64d-ipfix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ipfix.pcap");
    std::fs::write(&file, pcap(&msgs)).unwrap();
    let fields = [
        "cflow.nat_event",
        "cflow.protocol",
        "cflow.srcaddrv6",
        "cflow.srcport",
        "cflow.post_natsource_ipv4_address",
        "cflow.post_naptsource_transport_port",
        "cflow.port_range_start",
        "cflow.port_range_end",
        "cflow.port_range_num_ports",
        "cflow.post_natdestination_ipv4_address",
        "cflow.post_naptdestination_transport_port",
        "cflow.observation_time_milliseconds",
    ];
    let mut args = vec!["-n".to_string(), "-r".into(), file.display().to_string(), "-T".into(), "fields".into()];
    for f in fields {
        args.push("-e".into());
        args.push(f.into());
    }
    args.extend([
        "-E".into(),
        "separator=|".into(),
        "-E".into(),
        "occurrence=a".into(),
        "-E".into(),
        "aggregator=,".into(),
    ]);
    let out = Command::new("tshark").args(&args).output().expect("tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    let row: Vec<&str> = text.lines().next().unwrap_or("").split('|').collect();
    assert_eq!(row.len(), fields.len(), "{text}");
    // One message, four records: natEvent 16 (port block allocation), 10
    // (NAT64 BIB create), 6 (NAT64 session create), 17 (block de-allocation).
    assert_eq!(row[0], "16,10,6,17", "{text}");
    assert_eq!(row[1], "17,6,6,17");
    assert_eq!(row[2], "2001:db8:1::,2001:db8:1::10,2001:db8:1::10,2001:db8:1::");
    assert_eq!(row[3], "5000,5000");
    assert_eq!(row[4], "203.0.113.5,203.0.113.5,203.0.113.5,203.0.113.5");
    assert_eq!(row[5], "40123,40123");
    assert_eq!((row[6], row[7], row[8]), ("40448,40448", "40959,40959", "512,512"));
    assert_eq!((row[9], row[10]), ("198.51.100.7", "443"));
    assert!(row[11].starts_with("Dec  1, 2026 14:02:07.123"), "observationTimeMilliseconds: {}", row[11]);
    let malformed = Command::new("tshark")
        .args(["-n", "-r", file.to_str().unwrap(), "-Y", "_ws.malformed || _ws.expert.severity >= warning"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&malformed.stdout).trim().is_empty(),
        "tshark complains: {}",
        String::from_utf8_lossy(&malformed.stdout)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
