#!/usr/bin/env python3
"""Inbound relay benchmark: nat64d's [proxy] against sniproxy and HAProxy
(both from Debian) on the same three-namespace path, in one run.

    visitor (IPv4-only) ── gateway (the relay) ── site (IPv6-only, nginx)

The visitor reaches https://a.example/ and http://a.example/ at the
gateway's 192.0.2.1; each relay picks the backend 2001:db8:1::10 by the
ClientHello's server name (443) or the Host field (80), without terminating
TLS. After an untimed warm-up, relays one at a time, round-robin over
--reps rounds (each round starting with the next relay):
  nat64d    the daemon with [proxy] (its defaults but per_client, since one
            visitor host stands in for many)
  sniproxy  listeners "protocol tls" and "protocol http", one table
  haproxy   443: mode tcp, req.ssl_sni after tcp-request inspect-delay;
            80: mode http, the Host field (how HAProxy routes by Host);
            option splice-auto; threads as many as CPUs (its default)

Figures (each --secs long; medians over the rounds):
  https_cps  wrk, `Connection: close`, 32 connections: short HTTPS requests
             (TLS 1.3 handshake + a 100-byte page + close), connections/s
  http_cps   the same over plain HTTP
  cpu/conn   the relay's CPU time (user + system, all its threads and
             children) per connection in those runs, microseconds
  bulk_tls / bulk_http  one connection, curl downloading a sparse file
             (zeros) for --secs, Gbit/s; and the relay's CPU per GB moved
Before the figures each relay must serve the page over both ports and
refuse a name it does not serve.

Run as root: scripts/proxy_bench.py [--relays nat64d,sniproxy,haproxy] [--reps 3] [--secs 5]
Needs: iproute2, nginx-light, wrk, curl, openssl, sniproxy, haproxy
(installed with --install). Documentation addresses only; the namespaces,
the processes, /etc/netns/pb-visitor and the sparse file in /dev/shm are
removed at the end.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import med, namespaces, need_root_and_tools, sh, stop, wait_for  # noqa: E402  (the translator benchmark's helpers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V, G, S = "pb-visitor", "pb-gw", "pb-site"
GW4 = "192.0.2.1"
SITE6 = "2001:db8:1::10"
NETNS_ETC = f"/etc/netns/{V}"
RELAYS = ("nat64d", "sniproxy", "haproxy")
BIG = f"/dev/shm/nat64d-proxy-bench-{os.getpid()}"


def bg(*args, ns=None, log=None):
    """A process in a namespace with its open-file limit raised to the hard
    limit (every relay gets the same), output to a log file."""
    cmd = list(args)
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    out = open(log, "w") if log else subprocess.DEVNULL

    def limits():
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                            preexec_fn=limits)


def tree_ticks(pid):
    """CPU time (user + system) so far of a process and all its descendants,
    in clock ticks (threads are counted in their process)."""
    parent, ticks = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(d)] = int(fields[1])
        ticks[int(d)] = int(fields[11]) + int(fields[12])
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += ticks.get(p, 0)
        todo.extend(c for c, pp in parent.items() if pp == p)
    return total


class Lab:
    def __init__(self, work):
        self.work, self.nginx = work, None

    def up(self):
        self.down()
        namespaces((V, G, S), [(V, "v0", G, "g0"), (S, "s0", G, "g1")])
        sh("ip", "-n", V, "addr", "add", "192.0.2.2/24", "dev", "v0")
        sh("ip", "-n", V, "link", "set", "v0", "up")
        sh("ip", "-n", V, "route", "add", "default", "via", GW4)
        sh("ip", "-n", G, "addr", "add", f"{GW4}/24", "dev", "g0")
        sh("ip", "-n", G, "addr", "add", "2001:db8:1::1/64", "dev", "g1", "nodad")
        for d in ("g0", "g1"):
            sh("ip", "-n", G, "link", "set", d, "up")
        sh("ip", "-n", S, "addr", "add", f"{SITE6}/64", "dev", "s0", "nodad")
        sh("ip", "-n", S, "link", "set", "s0", "up")
        sh("ip", "-n", S, "-6", "route", "add", "default", "via", "2001:db8:1::1")
        # The visitor finds a.example (and b.example, served by nobody) at the gateway.
        os.makedirs(NETNS_ETC, exist_ok=True)
        with open(f"{NETNS_ETC}/hosts", "w") as f:
            f.write(f"127.0.0.1 localhost\n{GW4} a.example b.example\n")
        sh("ping", "-c1", "-W2", GW4, ns=V, capture=True, check=False)
        sh("ping", "-c1", "-W2", "2001:db8:1::1", ns=S, capture=True, check=False)
        w = self.work
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-days", "2", "-subj", "/CN=a.example", "-keyout", f"{w}/a.key", "-out", f"{w}/a.crt", capture=True)
        os.makedirs(f"{w}/www", exist_ok=True)
        os.makedirs(f"{w}/nginx-tmp", exist_ok=True)
        with open(f"{w}/www/index.html", "w") as f:
            f.write("x" * 100)
        # Sparse, on tmpfs: its holes read as the shared zero page, so no
        # pass over the file is slower than another (on a disk file system
        # the first pass fills the page cache, which the first relay paid).
        with open(BIG, "wb") as f:
            f.truncate(256 << 30)
        os.symlink(BIG, f"{w}/www/big")
        with open(f"{w}/nginx.conf", "w") as f:
            f.write(f"""master_process off; user root; pid {w}/nginx.pid; error_log {w}/nginx-error.log;
events {{ worker_connections 8192; }}
http {{ access_log off; keepalive_timeout 0; sendfile on; default_type application/octet-stream;
  client_body_temp_path {w}/nginx-tmp; proxy_temp_path {w}/nginx-tmp; fastcgi_temp_path {w}/nginx-tmp;
  uwsgi_temp_path {w}/nginx-tmp; scgi_temp_path {w}/nginx-tmp;
  ssl_protocols TLSv1.3; ssl_session_cache shared:pb:10m;
  server {{ listen [{SITE6}]:80 backlog=4096; root {w}/www; }}
  server {{ listen [{SITE6}]:443 ssl backlog=4096; ssl_certificate {w}/a.crt; ssl_certificate_key {w}/a.key; root {w}/www; }}
}}
""")
        self.nginx = bg("nginx", "-c", f"{w}/nginx.conf", "-g", "daemon off;", ns=S)
        wait_for(lambda: f"[{SITE6}]:443" in sh("ss", "-Hltn", ns=S, capture=True))

    def down(self):
        stop(self.nginx)
        self.nginx = None
        for n in (V, G, S):
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        shutil.rmtree(NETNS_ETC, ignore_errors=True)
        if os.path.exists(BIG):
            os.unlink(BIG)


class Relay:
    def __init__(self, name, work):
        self.name, self.work, self.proc = name, work, None

    def start(self):
        w, n = self.work, self.name
        log = f"{w}/{n}.log"
        if n == "nat64d":
            with open(f"{w}/nat64d.toml", "w") as f:
                f.write(f"""pool6 = "2001:db8:64::/96"
pool4 = ["203.0.113.0/28"]
[tun]
name = "nat64"
queues = 1
[control]
socket = "{w}/ctl.sock"
[proxy]
listen = ["{GW4}:80", "{GW4}:443"]
backends = ["2001:db8:1::/64"]
per_client = 4096
[[proxy.site]]
name = "a.example"
backend = "{SITE6}"
""")
            self.proc = bg(os.path.join(ROOT, "target/release/nat64d"), "--config", f"{w}/nat64d.toml", ns=G, log=log)
        elif n == "sniproxy":
            with open(f"{w}/sniproxy.conf", "w") as f:
                f.write(f"""user root
pidfile {w}/sniproxy.pid
error_log {{
    filename {w}/sniproxy-error.log
    priority notice
}}
listener {GW4}:443 {{
    protocol tls
    table sites
}}
listener {GW4}:80 {{
    protocol http
    table sites
}}
table sites {{
    ^a\\.example$ [{SITE6}]
}}
""")
            self.proc = bg("sniproxy", "-f", "-c", f"{w}/sniproxy.conf", ns=G, log=log)
        elif n == "haproxy":
            with open(f"{w}/haproxy.cfg", "w") as f:
                f.write(f"""global
    maxconn 4096
defaults
    timeout connect 3s
    timeout client 30s
    timeout server 30s
    option splice-auto
frontend tls
    mode tcp
    bind {GW4}:443
    tcp-request inspect-delay 5s
    tcp-request content accept if {{ req.ssl_hello_type 1 }}
    use_backend site_tls if {{ req.ssl_sni -i a.example }}
backend site_tls
    mode tcp
    server a [{SITE6}]:443
frontend web
    mode http
    bind {GW4}:80
    use_backend site_web if {{ req.hdr(host),field(1,:) -i a.example }}
backend site_web
    mode http
    server a [{SITE6}]:80
""")
            self.proc = bg("haproxy", "-db", "-f", f"{w}/haproxy.cfg", ns=G, log=log)
        else:
            raise SystemExit(f"proxy_bench.py: unknown relay {n!r} (one of {', '.join(RELAYS)})")
        wait_for(lambda: f"{GW4}:443" in sh("ss", "-Hltn", ns=G, capture=True)
                 and f"{GW4}:80" in sh("ss", "-Hltn", ns=G, capture=True))

    def check(self):
        """The page over both ports, and a name not served refused."""
        for url in ("https://a.example/", "http://a.example/"):
            body = sh("curl", "-sk", "--max-time", "5", url, ns=V, capture=True, check=False)
            if body != "x" * 100:
                raise RuntimeError(f"{self.name}: {url} gave {body[:80]!r}")
        r = subprocess.run(["ip", "netns", "exec", V, "curl", "-sk", "--max-time", "5", "https://b.example/"],
                           capture_output=True, text=True)
        if r.returncode == 0 and r.stdout == "x" * 100:
            raise RuntimeError(f"{self.name}: relayed a name it does not serve")

    def ticks(self):
        return tree_ticks(self.proc.pid)

    def stop(self):
        stop(self.proc)
        self.proc = None
        wait_for(lambda: f"{GW4}:443" not in sh("ss", "-Hltn", ns=G, capture=True), secs=10)
        if self.name == "nat64d":
            wait_for(lambda: sh("ip", "-n", G, "link", "show", "nat64", capture=True, check=False) == "", secs=10)


def wrk(url, secs):
    """wrk with a new connection per request: (requests, seconds, errors)."""
    out = sh("wrk", "-t1", "-c32", f"-d{secs}s", "-H", "Connection: close", url, ns=V, capture=True,
             timeout=secs + 30)
    reqs, dur, errors = 0, float(secs), 0
    for line in out.splitlines():
        parts = line.split()
        if "requests in" in line:
            reqs = int(parts[0])
            dur = float(parts[3].rstrip(",").rstrip("s")) if parts[3].endswith("s,") else dur
        if line.strip().startswith("Socket errors:"):
            errors += sum(int(p.rstrip(",")) for p in parts[2::2] if p.rstrip(",").isdigit())
        if line.strip().startswith("Non-2xx"):
            errors += int(parts[-1])
    return reqs, dur, errors


def bulk(url, secs):
    """One connection downloading for secs: (bytes, seconds)."""
    r = subprocess.run(["ip", "netns", "exec", V, "curl", "-sk", "-o", "/dev/null", "--max-time", str(secs),
                        "-w", "%{size_download} %{time_total}", url], capture_output=True, text=True,
                       timeout=secs + 30)
    size, total = r.stdout.split()
    return int(size), float(total)


def run_round(relay, secs, res, figures=("cps", "bulk")):
    hz = os.sysconf("SC_CLK_TCK")
    cps = (("https", "https://a.example/"), ("http", "http://a.example/")) if "cps" in figures else ()
    for key, url in cps:
        c0 = relay.ticks()
        reqs, dur, errors = wrk(url, secs)
        c1 = relay.ticks()
        res[f"{key}_cps"].append(reqs / dur)
        res[f"{key}_us_per_conn"].append(1e6 * (c1 - c0) / hz / max(reqs, 1))
        res[f"{key}_errors"].append(errors)
    bulks = (("bulk_tls", "https://a.example/big"), ("bulk_http", "http://a.example/big")) if "bulk" in figures else ()
    for key, url in bulks:
        c0 = relay.ticks()
        size, total = bulk(url, secs)
        c1 = relay.ticks()
        res[key].append(8 * size / total / 1e9)
        res[f"{key}_cpu_s_per_gb"].append((c1 - c0) / hz / (size / 1e9) if size else float("nan"))


KEYS = ("https_cps", "https_us_per_conn", "https_errors", "http_cps", "http_us_per_conn", "http_errors",
        "bulk_tls", "bulk_tls_cpu_s_per_gb", "bulk_http", "bulk_http_cpu_s_per_gb")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--relays", default=",".join(RELAYS))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--figures", default="cps,bulk", help="cps (new connections), bulk (one connection), or both")
    ap.add_argument("--install", action="store_true", help="apt-get install the tools first")
    ap.add_argument("--json", help="also write the raw results here")
    a = ap.parse_args()
    relays = a.relays.split(",")
    figures = tuple(a.figures.split(","))
    need_root_and_tools("proxy_bench.py", "network namespaces", a.install,
                        ["iproute2", "iputils-ping", "nginx-light", "wrk", "curl", "openssl", "sniproxy", "haproxy"],
                        ["nginx", "wrk", "curl", "openssl", "ss"] + [r for r in relays if r != "nat64d"])
    if "nat64d" in relays:
        subprocess.run(["cargo", "build", "--release", "--bin", "nat64d"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="nat64d-proxy-bench-")
    lab = Lab(work)
    results = {r: {k: [] for k in KEYS} for r in relays}
    try:
        lab.up()
        # Untimed: the first relay of the first round would otherwise pay
        # for the machine's first pass over this path.
        warm = Relay(relays[0], work)
        try:
            warm.start()
            run_round(warm, 2, {k: [] for k in KEYS}, figures)
        finally:
            warm.stop()
        for rnd in range(a.reps):
            # Each round starts with the next relay, so none is always first.
            for name in relays[rnd % len(relays):] + relays[:rnd % len(relays)]:
                print(f"== round {rnd + 1}: {name}", file=sys.stderr, flush=True)
                relay = Relay(name, work)
                try:
                    relay.start()
                    relay.check()
                    run_round(relay, a.secs, results[name], figures)
                except Exception:
                    log = f"{work}/{name}.log"
                    if os.path.exists(log):
                        print(f"--- {log} ---\n" + open(log).read()[-3000:], file=sys.stderr)
                    raise
                finally:
                    relay.stop()
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    print_table(results, a)


def print_table(results, a):
    rows = [("https_cps", "short HTTPS requests, conn/s", "{:.0f}", True),
            ("https_us_per_conn", "relay CPU per HTTPS conn, us", "{:.1f}", False),
            ("http_cps", "short HTTP requests, conn/s", "{:.0f}", True),
            ("http_us_per_conn", "relay CPU per HTTP conn, us", "{:.1f}", False),
            ("bulk_tls", "one TLS connection, Gbit/s", "{:.2f}", True),
            ("bulk_tls_cpu_s_per_gb", "relay CPU per GB (TLS), s", "{:.3f}", False),
            ("bulk_http", "one HTTP connection, Gbit/s", "{:.2f}", True),
            ("bulk_http_cpu_s_per_gb", "relay CPU per GB (HTTP), s", "{:.3f}", False),
            ("https_errors", "wrk errors (HTTPS)", "{:.0f}", None),
            ("http_errors", "wrk errors (HTTP)", "{:.0f}", None)]
    relays = list(results)
    others = [r for r in relays if r != "nat64d"] if "nat64d" in relays else []
    print(f"\nmedians of {a.reps} rounds of {a.secs} s per figure; {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}\n")
    print("| figure | " + " | ".join(relays) + "".join(f" | nat64d/{o}" for o in others) + " |")
    print("|" + "---|" * (1 + len(relays) + len(others)))
    for key, label, fmt, higher in rows:
        vals = [med(results[r][key]) for r in relays]
        line = f"| {label} | " + " | ".join("-" if v != v else fmt.format(v) for v in vals)
        for o in others:
            x, y = med(results["nat64d"][key]), med(results[o][key])
            line += " | " + ("-" if higher is None or not y or x != x else f"{x / y:.2f}x")
        print(line + " |")
    if others:
        print("\n(ratios: above 1 means nat64d moves more; for the CPU rows, below 1 means nat64d uses less)")


if __name__ == "__main__":
    main()
