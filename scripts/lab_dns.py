#!/usr/bin/env python3
"""A tiny authoritative DNS server for the namespace lab's IPv4-only side:
answers NAME A ADDRESS for the names given, NODATA (with an SOA) for their
other types, NXDOMAIN for everything else; NAME=cname:TARGET answers a
CNAME to TARGET for every type, without chasing it (as a forwarder or an
authoritative-only server may). UDP only. Lab use only.

    lab_dns.py [--log] [--idle SECS] LISTEN_ADDR NAME=IPV4|cname:TARGET ...

--log prints "NAME QTYPE" for each question; --idle stops the server after
SECS seconds without one (the end-to-end test uses both).
"""
import socket
import struct
import sys

SOA_RDATA = b"\x02ns\x00\x05admin\x00" + struct.pack(">5I", 1, 3600, 900, 86400, 60)


def main():
    args = sys.argv[1:]
    log = "--log" in args
    args = [a for a in args if a != "--log"]
    idle = None
    if args[:1] == ["--idle"]:
        idle, args = float(args[1]), args[2:]
    addr = args[0]
    zone = {}
    cnames = {}
    for a in args[1:]:
        name, value = a.split("=")
        name = name.lower().rstrip(".")
        if value.startswith("cname:"):
            target = value[len("cname:"):].rstrip(".")
            cnames[name] = b"".join(bytes([len(l)]) + l.encode() for l in target.split(".")) + b"\0"
        else:
            zone[name] = socket.inet_aton(value)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 53))
    s.settimeout(idle)
    while True:
        try:
            d, peer = s.recvfrom(4096)
        except socket.timeout:
            return
        if len(d) < 17 or d[2] & 0x80:
            continue
        i, labels = 12, []
        while i < len(d) and d[i] and d[i] < 64:
            labels.append(d[i + 1:i + 1 + d[i]].decode(errors="replace"))
            i += 1 + d[i]
        if i + 5 > len(d):
            continue
        qtype = struct.unpack(">H", d[i + 1:i + 3])[0]
        question = d[12:i + 5]
        name = ".".join(labels).lower()
        an, ns, body = 0, 0, b""
        rcode = 0
        if name in cnames:
            an, body = 1, b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, 300, len(cnames[name])) + cnames[name]
        elif name in zone and qtype == 1:
            an, body = 1, b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + zone[name]
        elif name in zone:
            ns, body = 1, b"\xc0\x0c" + struct.pack(">HHIH", 6, 1, 300, len(SOA_RDATA)) + SOA_RDATA
        else:
            rcode = 3
        flags = 0x8400 | (d[2] & 0x01) << 8 | rcode
        s.sendto(d[:2] + struct.pack(">5H", flags, 1, an, ns, 0) + question + body, peer)
        if log:
            print(name, qtype, flush=True)


if __name__ == "__main__":
    main()
