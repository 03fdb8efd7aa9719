#!/usr/bin/env python3
"""DNS64 benchmark: nat64d's DNS64 server against unbound's dns64 module,
side by side in one run, with dnsperf (all in one network namespace, on
loopback).

    dnsperf ──> unbound "dns64 iterator"  ──┐
    dnsperf ──> nat64d [dns64]             ──┴──> upstream (unbound, local-data)

The upstream is a second unbound answering every name under bench.test.
with one A record (192.0.2.1) and no AAAA (NODATA with an SOA), so every
AAAA query is synthesised (2001:db8:64::c000:201), by both servers under
the same prefix. Both DNS64 servers run one thread.

Figures (dnsperf, each --secs long, repeated --reps times, medians):
  cached   AAAA queries for 1000 names asked before (answers from the cache)
  miss     AAAA queries for names never asked (each costs an upstream AAAA
           and A query: the forwarding path)
Answers are checked first (one synthesised AAAA from each server). Each
server's CPU time during each run is read from /proc: with the generator on
the same two cores, CPU per query is the fairer figure when neither server
is saturated.

Run as root: scripts/dns_bench.py [--reps 3] [--secs 5] [--install] [--json FILE]
Needs: iproute2, unbound, dnsperf, dnsutils (installed with --install).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import cpu_ticks, need_root_and_tools, stop  # noqa: E402  (the same helpers as the translator benchmark)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NS = "n64-dnsbench"
UP, UNBOUND, NAT64D = 5301, 5302, 5303
PREFIX = "2001:db8:64::/96"
EXPECT = "2001:db8:64::c000:201"

UNBOUND_COMMON = """server:
  interface: 127.0.0.1@{port}
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{work}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  access-control: 127.0.0.0/8 allow
  num-threads: 1
"""
UPSTREAM_EXTRA = """  local-zone: "bench.test." redirect
  local-data: "bench.test. 300 IN A 192.0.2.1"
  local-data: "bench.test. 3600 IN SOA ns.bench.test. admin.bench.test. 1 3600 900 86400 300"
"""
DNS64_EXTRA = """  do-not-query-localhost: no
  module-config: "dns64 iterator"
  dns64-prefix: {prefix}
  local-zone: "test." nodefault
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@{up}
"""


def sh(*args, check=True, capture=False, ns=True):
    cmd = (["ip", "netns", "exec", NS] if ns else []) + list(args)
    r = subprocess.run(cmd, capture_output=capture, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr if capture else ''}")
    return r.stdout if capture else r.returncode


def bg(args, log):
    return subprocess.Popen(["ip", "netns", "exec", NS] + args, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def dig_aaaa(port, name):
    out = sh("dig", "+short", "+time=2", "+tries=1", "@127.0.0.1", "-p", str(port), name, "AAAA", capture=True,
             check=False)
    return out.split()


def wait_answer(port, secs=10):
    end = time.time() + secs
    while time.time() < end:
        if EXPECT in dig_aaaa(port, "ready.bench.test"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"no synthesised answer on port {port}")


def dnsperf(port, names_file, secs, pid=None):
    t0 = cpu_ticks(pid) if pid else 0
    out = sh("dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", names_file, "-l", str(secs), "-c", "4", "-q",
             "200", capture=True)
    r = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Queries sent:"):
            r["sent"] = int(line.split()[2])
        elif line.startswith("Queries lost:"):
            r["lost"] = int(line.split()[2])
        elif line.startswith("Queries per second:"):
            r["qps"] = float(line.split()[3])
        elif line.startswith("Response codes:"):
            r["codes"] = line.split(":", 1)[1].strip()
    if "qps" not in r:
        raise RuntimeError("dnsperf printed no rate:\n" + out)
    if pid:
        hz = os.sysconf("SC_CLK_TCK")
        r["cpu_pct"] = (cpu_ticks(pid) - t0) * 100 / hz / secs
        r["us_per_query"] = r["cpu_pct"] / 100 * 1e6 / r["qps"]
    return r


def names(path, prefix, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write(f"{prefix}{i}.bench.test AAAA\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--install", action="store_true", help="apt-get install the tools first")
    ap.add_argument("--json", help="also write the raw results here")
    a = ap.parse_args()
    need_root_and_tools("dns_bench.py", "a network namespace; nat64d opens a TUN device", a.install,
                        ["iproute2", "unbound", "dnsperf", "dnsutils"], ["unbound", "dnsperf", "dig"])
    subprocess.run(["cargo", "build", "--release", "--bin", "nat64d"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="nat64d-dnsbench-")
    procs = []
    results = {"unbound": {"cached": [], "miss": []}, "nat64d": {"cached": [], "miss": []}}
    ports = {"unbound": UNBOUND, "nat64d": NAT64D}
    try:
        sh("ip", "netns", "del", NS, check=False, ns=False)
        sh("ip", "netns", "add", NS, ns=False)
        sh("ip", "link", "set", "lo", "up")
        for name, port, extra in (("upstream", UP, UPSTREAM_EXTRA), ("unbound", UNBOUND, DNS64_EXTRA)):
            conf = os.path.join(work, f"{name}.conf")
            with open(conf, "w") as f:
                f.write(UNBOUND_COMMON.format(port=port, work=work) + extra.format(prefix=PREFIX, up=UP))
            procs.append(bg(["unbound", "-c", conf], os.path.join(work, f"{name}.log")))
        server_pid = {"unbound": procs[-1].pid}
        procs.append(bg([os.path.join(ROOT, "target/release/nat64d"), "--pool6", PREFIX, "--pool4", "203.0.113.1",
                         "--tun", "n64dns", "--queues", "1", "--control-socket", os.path.join(work, "ctl.sock"),
                         "--dns64-upstream", f"127.0.0.1:{UP}", "--dns64-listen", f"127.0.0.1:{NAT64D}"],
                        os.path.join(work, "nat64d.log")))
        server_pid["nat64d"] = procs[-1].pid  # `ip netns exec` execs the server itself
        for s, port in ports.items():
            wait_answer(port)
            print(f"{s}: ready.bench.test AAAA -> {EXPECT}", file=sys.stderr)
        cached = os.path.join(work, "cached.txt")
        names(cached, "c", 1000)
        # Enough unique names that dnsperf never wraps round to one it asked.
        n_miss = max(300_000, 80_000 * a.secs)
        for rep in range(a.reps):
            order = list(ports.items()) if rep % 2 == 0 else list(ports.items())[::-1]
            for s, port in order:
                dnsperf(port, cached, 1)  # warm the cache
                r = dnsperf(port, cached, a.secs, server_pid[s])
                results[s]["cached"].append(r)
                miss = os.path.join(work, "miss.txt")
                names(miss, f"m{rep}-{s}-", n_miss)
                r = dnsperf(port, miss, a.secs, server_pid[s])
                if r["sent"] >= n_miss:
                    raise RuntimeError(f"{s}: dnsperf wrapped round its {n_miss} names; raise n_miss")
                results[s]["miss"].append(r)
                print(f"rep {rep + 1} {s}: cached {results[s]['cached'][-1]['qps']:.0f} q/s, "
                      f"miss {r['qps']:.0f} q/s", file=sys.stderr, flush=True)
        stats = subprocess.run([os.path.join(ROOT, "target/release/nat64ctl"), "--socket",
                                os.path.join(work, "ctl.sock"), "stats", "--json"], capture_output=True, text=True)
        if stats.returncode == 0:
            results["nat64d_dns64_counters"] = json.loads(stats.stdout).get("dns64")
    finally:
        for p in procs:
            stop(p)
        sh("ip", "netns", "del", NS, check=False, ns=False)
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"\nDNS64, queries per second (dnsperf -c 4 -q 200, {a.secs} s x {a.reps}, medians; one server thread each)")
    print(f"{'figure':<34}{'unbound':>12}{'nat64d':>12}{'nat64d/unbound':>16}")
    for fig, label in (("cached", "cached synthesised AAAA"), ("miss", "cache miss (upstream AAAA + A)")):
        u = statistics.median(r["qps"] for r in results["unbound"][fig])
        n = statistics.median(r["qps"] for r in results["nat64d"][fig])
        print(f"{label:<34}{u:>12.0f}{n:>12.0f}{n / u:>15.2f}x")
        uc = statistics.median(r["us_per_query"] for r in results["unbound"][fig])
        nc = statistics.median(r["us_per_query"] for r in results["nat64d"][fig])
        ucp = statistics.median(r["cpu_pct"] for r in results["unbound"][fig])
        ncp = statistics.median(r["cpu_pct"] for r in results["nat64d"][fig])
        print(f"{'  server CPU, % of a core':<34}{ucp:>12.0f}{ncp:>12.0f}")
        print(f"{'  server CPU per query, us':<34}{uc:>12.2f}{nc:>12.2f}{uc / nc:>15.2f}x less")
    for s in ("unbound", "nat64d"):
        lost = sum(r.get("lost", 0) for f in ("cached", "miss") for r in results[s][f])
        codes = {}
        for f in ("cached", "miss"):
            for r in results[s][f]:
                parts = r.get("codes", "").split()
                for code, n in zip(parts[0::3], parts[1::3]):
                    codes[code.rstrip(",")] = codes.get(code.rstrip(","), 0) + int(n)
        seen = ", ".join(f"{c} {n}" for c, n in sorted(codes.items()))
        print(f"{s}: {lost} queries lost in all; response codes: {seen}")

if __name__ == "__main__":
    main()
