#!/usr/bin/env python3
"""The namespace lab's traffic tools (tests/lab_e2e.rs runs them with
`ip netns exec`): small UDP and TCP clients and servers, a DNS AAAA query,
and a sender of malformed IPv6 packets. Each prints what the test checks
(addresses, byte counts, SHA-256 of the data) and stops by itself: every
socket has a timeout and every loop a bound.
"""

import argparse
import hashlib
import random
import socket
import struct
import sys
import time


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def listener(bind, port, backlog, timeout):
    l = socket.socket(family(bind), socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((bind, port))
    l.listen(backlog)
    l.settimeout(timeout)
    return l


def data(seed, size):
    return random.Random(seed).randbytes(size)


def read_all(c, gaps=False):
    """Read to the end: length and hash (and, with gaps, the longest wait
    between two receipts in milliseconds: a failover's stall)."""
    h, n, last, gap = hashlib.sha256(), 0, None, 0.0
    while True:
        b = c.recv(65536)
        t = time.monotonic()
        if last is not None:
            gap = max(gap, t - last)
        last = t
        if not b:
            return (n, h.hexdigest(), round(gap * 1000)) if gaps else (n, h.hexdigest())
        h.update(b)
        n += len(b)


def udp_echo(a):
    """Echo `count` datagrams (upper-cased with --upper, or replaced by
    `reply_size` bytes); with --report, print each sender's address and
    port. --no-df sends with DF clear (IP_PMTUDISC_DONT)."""
    s = socket.socket(family(a.bind), socket.SOCK_DGRAM)
    if a.no_df:
        # IP_MTU_DISCOVER (10) = IP_PMTUDISC_DONT (0): DF clear (not every
        # Python build names the constants).
        s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_MTU_DISCOVER", 10), getattr(socket, "IP_PMTUDISC_DONT", 0))
    s.bind((a.bind, a.port))
    s.settimeout(a.timeout)
    for _ in range(a.count):
        d, peer = s.recvfrom(2000)
        reply = b"y" * a.reply_size if a.reply_size else (d.upper() if a.upper else d)
        s.sendto(reply, peer)
        if a.report:
            print(peer[0], peer[1], flush=True)


def udp_ask(a):
    """Send `payload` from bind:bport up to `tries` times; print the first answer."""
    s = socket.socket(family(a.dest), socket.SOCK_DGRAM)
    s.bind((a.bind, a.bport))
    s.settimeout(a.timeout)
    for _ in range(a.tries):
        s.sendto(a.payload.encode(), (a.dest, a.port))
        try:
            d = s.recvfrom(65536)[0]
            print(len(d) if a.print_len else d.decode())
            return
        except socket.timeout:
            pass


def udp_probe(a):
    """One datagram on a connected socket to a port nobody maps; print the
    error the ICMP answer raised (EHOSTUNREACH, ECONNREFUSED...) or
    "silent" when none came within the timeout."""
    s = socket.socket(family(a.dest), socket.SOCK_DGRAM)
    # IP_RECVERR (11): report every ICMP error, not only the "hard" ones
    # (Linux passes Host Unreachable to a plain socket only with it).
    s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11), 1)
    s.settimeout(a.timeout)
    if a.bind:
        s.bind((a.bind, 0))
    s.connect((a.dest, a.port))
    s.send(b"anyone?")
    try:
        s.recv(2000)
        print("answered")
    except socket.timeout:
        print("silent")
    except OSError as e:
        import errno

        print(errno.errorcode.get(e.errno, str(e.errno)))


def udp_flood(a):
    """`count` datagrams from bind to dest:port with the given hop limit,
    as fast as they go, or in bursts of `burst` with `gap` seconds between
    them; print how many were sent and the seconds taken."""
    s = socket.socket(family(a.dest), socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, a.hops)
    s.bind((a.bind, 0))
    t = time.monotonic()
    for i in range(a.count):
        s.sendto(b"z" * 32, (a.dest, a.port))
        if a.burst and (i + 1) % a.burst == 0:
            time.sleep(a.gap)
    print(a.count, round(time.monotonic() - t, 3))


def udp_rounds(a):
    """`count` round trips of `size` bytes each; print the bytes that came back."""
    s = socket.socket(family(a.dest), socket.SOCK_DGRAM)
    s.bind((a.bind, a.bport))
    s.settimeout(a.timeout)
    n = 0
    for _ in range(a.count):
        s.sendto(b"x" * a.size, (a.dest, a.port))
        n += len(s.recvfrom(2000)[0])
    print(n)


def tcp_serve_data(a):
    """Accept one connection and send `size` pseudo-random bytes; print length and hash."""
    d = data(a.seed, a.size)
    c, _ = listener(a.bind, a.port, 1, a.timeout).accept()
    c.sendall(d)
    c.close()
    print(len(d), hashlib.sha256(d).hexdigest())


def tcp_sink(a):
    """Accept one connection and read it to the end; print length and hash
    (with --gaps, then the longest pause between receipts in ms)."""
    c, _ = listener(a.bind, a.port, 1, a.timeout).accept()
    c.settimeout(a.timeout)
    print(*read_all(c, a.gaps))


def tcp_recv(a):
    """Connect and read to the end; print length and hash."""
    c = socket.create_connection((a.dest, a.port), timeout=a.timeout)
    print(*read_all(c))


def tcp_upload(a):
    """Connect (from `bind` if given) and send `size` pseudo-random bytes,
    in `chunks` pieces with `pause` seconds between them; print length and hash."""
    d = data(a.seed, a.size)
    c = socket.create_connection((a.dest, a.port), timeout=a.timeout, source_address=(a.bind, 0) if a.bind else None)
    step = -(-len(d) // a.chunks)
    for i in range(0, len(d), step):
        c.sendall(d[i : i + step])
        if a.pause:
            time.sleep(a.pause)
    c.close()
    print(len(d), hashlib.sha256(d).hexdigest())


def tcp_greet(a):
    """Accept `count` connections; send `message` (or "hello PEER" with
    --hello-peer, printing each peer's address)."""
    l = listener(a.bind, a.port, a.count, a.timeout)
    for _ in range(a.count):
        c, peer = l.accept()
        c.sendall((f"hello {peer[0]}" if a.hello_peer else a.message).encode())
        c.close()
        if a.hello_peer:
            print(peer[0], flush=True)


def tcp_fetch(a):
    """Connect (from `bind` if given) and print the first 200 bytes received."""
    s = socket.socket(family(a.dest), socket.SOCK_STREAM)
    if a.bind:
        s.bind((a.bind, 0))
    s.settimeout(a.timeout)
    s.connect((a.dest, a.port))
    print(s.recv(200).decode())


def dns_aaaa(a):
    """One AAAA query over UDP to the gateway's DNS64 server; print the
    AAAA addresses of the answer, one per line (with --rcode, the rcode first)."""
    q = struct.pack(">6H", 0x1234, 0x0100, 1, 0, 0, 0)
    for label in a.name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 28, 1)
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(q, (a.server, 53))
    r = s.recv(4096)
    if a.rcode:
        print("rcode", r[3] & 15)
    an = struct.unpack(">H", r[6:8])[0]
    i = len(q)
    for _ in range(an):
        if r[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while r[i]:
                i += 1 + r[i]
            i += 1
        t, _c, _ttl, ln = struct.unpack(">HHIH", r[i : i + 10])
        i += 10
        if t == 28:
            print(socket.inet_ntop(socket.AF_INET6, r[i : i + ln]))
        i += ln


def raw_garbage(a):
    """Malformed IPv6 packets from `src` to `dest` through a raw socket:
    truncated UDP and TCP headers, an unknown protocol, a Routing header
    with Segments Left, a malformed ICMPv6 error, and 300 random payloads
    (seeded). Prints how many were sent."""
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    src = socket.inet_pton(socket.AF_INET6, a.src)
    dst = socket.inet_pton(socket.AF_INET6, a.dest)

    def pkt(nh, p):
        return bytes([0x60, 0, 0, 0]) + len(p).to_bytes(2, "big") + bytes([nh, 64]) + src + dst + p

    cases = [
        (17, b"\x01\x02\x03"),
        (6, b"\x00" * 7),
        (253, b"x" * 20),
        (43, bytes([17, 0, 0, 1, 0, 0, 0, 0]) + b"\x00" * 8),
        (58, bytes([1, 4, 0, 0, 0, 0, 0, 0]) + b"\x45" + b"\x00" * 10),
    ]
    r = random.Random(7)
    for _ in range(300):
        cases.append((r.choice([6, 17, 58, 44, 60, 43]), bytes(r.getrandbits(8) for _ in range(r.randrange(0, 120)))))
    for nh, p in cases:
        s.sendto(pkt(nh, p), (a.dest, 0))
    print(len(cases))


def udp_whoami(a):
    """Answer every datagram with the sender's address and port as seen
    here ("ADDR PORT"), until nothing came for `timeout` seconds."""
    s = socket.socket(family(a.bind), socket.SOCK_DGRAM)
    s.bind((a.bind, a.port))
    s.settimeout(a.timeout)
    try:
        while True:
            _, peer = s.recvfrom(2000)
            s.sendto(f"{peer[0]} {peer[1]}".encode(), peer)
    except socket.timeout:
        pass


def udp_many(a):
    """From each source address (comma-separated), `flows` UDP flows (one
    source port each) to a udp-whoami server; print one line per source:
    the source, then the IPv4 address:port of every flow as the server saw
    it ("-" for a flow that got no answer in `tries` attempts)."""
    socks = []
    for src in a.sources.split(","):
        for _ in range(a.flows):
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.bind((src, 0))
            s.settimeout(a.timeout)
            socks.append((src, s))
    seen = {}
    for src, s in socks:
        got = "-"
        for _ in range(a.tries):
            s.sendto(b"who am i", (a.dest, a.port))
            try:
                got = s.recvfrom(200)[0].decode().replace(" ", ":")
                break
            except socket.timeout:
                pass
        seen.setdefault(src, []).append(got)
        s.close()
    for src, v in seen.items():
        print(src, *v, flush=True)


def sd_watchdog(a):
    """Run `command` as systemd runs a Type=notify service with WatchdogSec
    and WatchdogSignal=SIGKILL: a notify socket in NOTIFY_SOCKET,
    WATCHDOG_USEC in the environment, and SIGKILL when WATCHDOG=1 has not
    come for that long after READY=1. Writes the child's PID to --pid-file;
    prints "watchdog: killed" (and how long the pings had stopped) or the
    child's exit status, and exits when the child does."""
    import os
    import signal
    import subprocess

    path = a.socket
    if os.path.exists(path):
        os.unlink(path)
    n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    n.bind(path)
    n.settimeout(0.05)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC=str(a.usec))
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    child = subprocess.Popen(command, env=env)
    # Stopped as a service is: a SIGTERM to the supervisor goes to the child.
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    with open(a.pid_file, "w") as f:
        f.write(str(child.pid))
    limit = a.usec / 1e6
    last = None
    while child.poll() is None:
        try:
            msg = n.recv(4096).decode()
            if "READY=1" in msg or "WATCHDOG=1" in msg:
                last = time.monotonic()
        except socket.timeout:
            pass
        if last is not None and time.monotonic() - last > limit:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            print(f"watchdog: killed after {time.monotonic() - last:.2f} s without a ping", flush=True)
            return
    print(f"exited: {child.returncode}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def cmd(name, fn, *args, timeout=20.0):
        c = sub.add_parser(name, help=fn.__doc__)
        c.set_defaults(fn=fn)
        c.add_argument("--timeout", type=float, default=timeout)
        for a in args:
            c.add_argument(*a[0], **a[1])
        return c

    def arg(*names, **kw):
        return (names, kw)

    bind_port = [arg("bind"), arg("port", type=int)]
    dest_port = [arg("dest"), arg("port", type=int)]
    client = [arg("--bind", required=True), arg("--bport", type=int, required=True)]
    cmd("udp-echo", udp_echo, *bind_port, arg("--count", type=int, default=1), arg("--upper", action="store_true"),
        arg("--report", action="store_true"), arg("--reply-size", type=int, default=0),
        arg("--no-df", action="store_true"), timeout=15.0)
    cmd("udp-ask", udp_ask, *dest_port, *client, arg("--payload", required=True), arg("--tries", type=int, default=4),
        arg("--print-len", action="store_true"), timeout=3.0)
    cmd("udp-probe", udp_probe, *dest_port, arg("--bind"), timeout=3.0)
    cmd("udp-flood", udp_flood, *dest_port, arg("--bind", required=True), arg("--count", type=int, default=1000),
        arg("--hops", type=int, default=64), arg("--burst", type=int, default=0), arg("--gap", type=float, default=0.002))
    cmd("udp-rounds", udp_rounds, *dest_port, *client, arg("--count", type=int, default=20),
        arg("--size", type=int, default=100), timeout=3.0)
    cmd("tcp-serve-data", tcp_serve_data, *bind_port, arg("--seed", type=int, required=True),
        arg("--size", type=int, required=True))
    cmd("tcp-sink", tcp_sink, *bind_port, arg("--gaps", action="store_true"))
    cmd("tcp-recv", tcp_recv, *dest_port)
    cmd("tcp-upload", tcp_upload, *dest_port, arg("--seed", type=int, required=True),
        arg("--size", type=int, required=True), arg("--chunks", type=int, default=1),
        arg("--pause", type=float, default=0.0), arg("--bind"))
    cmd("tcp-greet", tcp_greet, *bind_port, arg("--count", type=int, default=1), arg("--message", default="hello"),
        arg("--hello-peer", action="store_true"), timeout=15.0)
    cmd("tcp-fetch", tcp_fetch, *dest_port, arg("--bind"), timeout=10.0)
    cmd("dns-aaaa", dns_aaaa, arg("name"), arg("--server", default="2001:db8:1::1"), arg("--rcode", action="store_true"))
    cmd("raw-garbage", raw_garbage, arg("dest"), arg("--src", required=True))
    cmd("udp-whoami", udp_whoami, *bind_port, timeout=30.0)
    cmd("udp-many", udp_many, *dest_port, arg("--sources", required=True), arg("--flows", type=int, default=4),
        arg("--tries", type=int, default=3), timeout=1.0)
    cmd("sd-watchdog", sd_watchdog, arg("--socket", required=True), arg("--usec", type=int, required=True),
        arg("--pid-file", required=True), arg("command", nargs=argparse.REMAINDER))
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
