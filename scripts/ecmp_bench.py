#!/usr/bin/env python3
"""Scale-out benchmark (issue 16): new TCP connections per second and bulk
throughput through 1, 2 and 3 nat64d gateways behind ECMP, in one run, in
the lab of scripts/ecmp_lab.sh (deploy/ecmp's recipe: BIRD, source-address
hashing; a plain multipath route instead of the resilient group, see ENV
below). Not a test: it prints figures.

The load comes from examples/conn_load.rs, which speaks from all 32 client
host addresses (wrk and iperf3 speak from one, which the router's hash would
send to one gateway). On a small machine the load generator, the router and
the server share the cores with the gateways, so the aggregate stops
growing early; the table therefore also gives each gateway's own CPU per
connection (the nat64d process's user+system time over the connections it
created sessions for), which shows the work spreading even where the
aggregate cannot.

Usage (as root): scripts/ecmp_bench.py [--secs 5] [--reps 2] [--threads 16]
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "scripts", "ecmp_lab.sh")
PREFIX = "ecmpb"
RUN = f"/run/nat64d-{PREFIX}"
# A plain multipath route (hash-threshold): every change of the set shares
# the hosts out again at once. The recipe's resilient group keeps hosts
# where they are, so gateways that join between two measurements would get
# only the buckets no host uses (see deploy/ecmp/resilient-ecmp.sh).
ENV = dict(os.environ, ECMP_LAB=PREFIX, ECMP_PLAIN="1")
SERVER6 = "2001:db8:64::c633:6402"
LOAD = os.path.join(ROOT, "target", "release", "examples", "conn_load")
CTL = os.path.join(ROOT, "target", "release", "nat64ctl")
TICK = os.sysconf("SC_CLK_TCK")


def lab(*args, capture=False):
    r = subprocess.run(["bash", LAB, *args], env=ENV, check=True, text=True, capture_output=capture)
    return r.stdout.strip() if capture else None


def ns(name, *cmd, capture=True):
    r = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-{name}", *cmd], check=True, text=True, capture_output=capture)
    return r.stdout.strip()


def paths():
    return len(lab("paths", capture=True).split())


def wait_paths(n, secs=20):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if paths() == n:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the router did not reach {n} path(s) to pool6")


def nat64d_pid(gw):
    with open(f"{RUN}/{PREFIX}-gw{gw}.nat64d.pid") as f:
        return int(f.read())


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def sessions_created(gw):
    out = subprocess.run([CTL, "--socket", f"{RUN}/gw{gw}.sock", "stats", "--json"], check=True, text=True,
                         capture_output=True).stdout
    return json.loads(out)["nat"]["sessions_created"]


def set_gateways(n, running):
    """Gateways 1..n translating, the others stopped (their routes withdrawn)."""
    for gw in (1, 2, 3):
        if gw <= n and gw not in running:
            lab("gw-start", str(gw))
            running.add(gw)
        elif gw > n and gw in running:
            lab("gw-signal", str(gw), "TERM")
            running.discard(gw)
    wait_paths(n)
    time.sleep(1)


def measure(n, fn):
    """Run fn(); per active gateway: connections (sessions created) and CPU."""
    gws = range(1, n + 1)
    before = {g: (cpu_ticks(nat64d_pid(g)), sessions_created(g)) for g in gws}
    figure = fn()
    after = {g: (cpu_ticks(nat64d_pid(g)), sessions_created(g)) for g in gws}
    per = {g: (after[g][1] - before[g][1], (after[g][0] - before[g][0]) / TICK) for g in gws}
    return figure, per


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--secs", type=int, default=5)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--threads", type=int, default=16)
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("ecmp_bench.py: needs root (network namespaces, TUN)")
    subprocess.run(["cargo", "build", "--release", "--bin", "nat64d", "--bin", "nat64ctl", "--example", "conn_load"],
                   cwd=ROOT, check=True)
    lab("up")
    server = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-server", LOAD, "serve", "198.51.100.2", "80"])
    try:
        sources = lab("sources", capture=True)
        running = {1, 2, 3}
        rows = []
        for rep in range(a.reps):
            for n in (1, 2, 3):
                set_gateways(n, running)

                def cps():
                    out = ns("client", LOAD, "cps", SERVER6, "80", sources, str(a.secs), str(a.threads))
                    w = out.split()
                    return float(w[1]), int(w[3])

                def bulk():
                    out = ns("client", LOAD, "bulk", SERVER6, "80", sources, str(a.secs))
                    return float(out.split()[1])

                (c, errors), per_c = measure(n, cps)
                g, _ = measure(n, bulk)
                rows.append((n, rep, c, errors, g, per_c))
                shares = " ".join(f"gw{k}={v[0]}" for k, v in per_c.items())
                print(f"rep {rep + 1}, {n} gateway(s): {c:.0f} conn/s ({errors} errors), bulk {g:.2f} Gbit/s; "
                      f"connections {shares}", flush=True)
        print()
        print("| gateways | new TCP conn/s | bulk TCP, Gbit/s (32 streams) | connections per gateway | "
              "nat64d CPU per connection, us (per gateway) | nat64d busy, % of a core (per gateway) |")
        print("|---|---|---|---|---|---|")
        for n in (1, 2, 3):
            rs = [r for r in rows if r[0] == n]
            cps_v = sorted(r[2] for r in rs)
            g_v = sorted(r[4] for r in rs)
            conns, cpu = {}, {}
            for r in rs:
                for k, (cn, cs) in r[5].items():
                    conns[k] = conns.get(k, 0) + cn
                    cpu[k] = cpu.get(k, 0.0) + cs
            share = " / ".join(f"{conns[k]}" for k in sorted(conns))
            us = " / ".join(f"{1e6 * cpu[k] / conns[k]:.1f}" if conns[k] else "-" for k in sorted(conns))
            busy = " / ".join(f"{100 * cpu[k] / (a.secs * len(rs)):.0f}" for k in sorted(cpu))
            print(f"| {n} | {' / '.join(f'{v:.0f}' for v in cps_v)} | {' / '.join(f'{v:.2f}' for v in g_v)} "
                  f"| {share} | {us} | {busy} |")
    finally:
        server.kill()
        server.wait()
        lab("down")


if __name__ == "__main__":
    main()
